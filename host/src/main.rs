//! The `spikenas-host` command: parses arguments and calls one library function
//! per subcommand.

mod cli;

fn main() -> std::process::ExitCode {
    // Before candle's first operation: single-threaded element-wise ops and memory reuse
    // (see kernels::runtime; measured 3-6x faster training on 2 cores).
    spikenas_host::kernels::tune_cpu_runtime();
    cli::main()
}
