//! The `spikenas-host` command: parses arguments and calls one library function
//! per subcommand.

mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}
