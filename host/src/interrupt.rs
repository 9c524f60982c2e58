//! Ctrl-C (SIGINT) and SIGTERM as a request to stop after the current training step,
//! so that the work done so far is kept and can be resumed.
//!
//! While a [`Guard`] lives, the first of these signals only sets a flag
//! ([`requested`]); the handler then goes back to the default, so a second one ends the
//! process at once. Outside a guard the signals keep their default action: a search,
//! which has nothing resumable, ends at once.

use std::sync::atomic::{AtomicI32, Ordering};

/// The signal received while a guard was installed (0: none).
static RECEIVED: AtomicI32 = AtomicI32::new(0);

/// The signal that asked to stop, if one did.
pub fn requested() -> Option<i32> {
    match RECEIVED.load(Ordering::SeqCst) {
        0 => None,
        s => Some(s),
    }
}

/// The name of signal `signal` for messages.
pub fn name(signal: i32) -> &'static str {
    #[cfg(unix)]
    {
        match signal {
            libc::SIGINT => "SIGINT (Ctrl-C)",
            libc::SIGTERM => "SIGTERM",
            _ => "a signal",
        }
    }
    #[cfg(not(unix))]
    {
        let _ = signal;
        "a signal"
    }
}

/// Catches SIGINT and SIGTERM until dropped (then the previous handlers are back).
#[derive(Debug)]
pub struct Guard {
    #[cfg(unix)]
    previous: Vec<(libc::c_int, libc::sigaction)>,
}

#[cfg(unix)]
extern "C" fn on_signal(signal: libc::c_int) {
    // Only an atomic store: nothing else is safe in a signal handler.
    RECEIVED.store(signal, Ordering::SeqCst);
}

impl Guard {
    /// Installs the handlers and clears an earlier request.
    #[cfg(unix)]
    pub fn install() -> std::io::Result<Guard> {
        RECEIVED.store(0, Ordering::SeqCst);
        let mut previous = Vec::new();
        for signal in [libc::SIGINT, libc::SIGTERM] {
            // SAFETY: a zeroed sigaction is a valid starting value; the handler only
            // stores to an atomic; `old` receives the previous action.
            unsafe {
                let mut action: libc::sigaction = std::mem::zeroed();
                action.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as usize;
                // Once caught, back to the default: a second Ctrl-C ends the process.
                action.sa_flags = libc::SA_RESETHAND | libc::SA_RESTART;
                libc::sigemptyset(&mut action.sa_mask);
                let mut old: libc::sigaction = std::mem::zeroed();
                if libc::sigaction(signal, &action, &mut old) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                previous.push((signal, old));
            }
        }
        Ok(Guard { previous })
    }

    /// Without signals to catch, a guard that catches nothing.
    #[cfg(not(unix))]
    pub fn install() -> std::io::Result<Guard> {
        Ok(Guard {})
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        #[cfg(unix)]
        for (signal, old) in &self.previous {
            // SAFETY: puts back the action `install` read.
            unsafe {
                libc::sigaction(*signal, old, std::ptr::null_mut());
            }
        }
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    #[test]
    fn a_signal_under_the_guard_is_a_request() {
        let guard = Guard::install().unwrap();
        assert_eq!(requested(), None);
        // SAFETY: raise delivers SIGTERM to this thread, whose handler only stores.
        unsafe {
            libc::raise(libc::SIGTERM);
        }
        assert_eq!(requested(), Some(libc::SIGTERM));
        assert_eq!(name(libc::SIGTERM), "SIGTERM");
        drop(guard);
        // A new guard starts clean.
        let _again = Guard::install().unwrap();
        assert_eq!(requested(), None);
    }
}
