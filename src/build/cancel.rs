//! Cancelling a run: the first SIGINT or SIGTERM asks the run to stop (nothing new
//! starts, running hooks are ended, host operations in flight finish), the second ends
//! the process at once with 128 + the signal, as shells expect.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

struct Flags {
    /// The signal that asked the run to stop, 0 while none has.
    signal: Arc<AtomicUsize>,
    /// Set by the first signal; a second one then exits.
    asked: Arc<AtomicBool>,
}

fn flags() -> &'static Flags {
    static FLAGS: OnceLock<Flags> = OnceLock::new();
    FLAGS.get_or_init(|| Flags {
        signal: Arc::new(AtomicUsize::new(0)),
        asked: Arc::new(AtomicBool::new(false)),
    })
}

/// Installs the handlers for SIGINT and SIGTERM (once per process).
pub fn install() -> std::io::Result<()> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let f = flags();
    for sig in [SIGINT, SIGTERM] {
        // Registered first, so it sees the flag as the previous signal left it.
        signal_hook::flag::register_conditional_shutdown(sig, 128 + sig, Arc::clone(&f.asked))?;
        signal_hook::flag::register_usize(sig, Arc::clone(&f.signal), sig as usize)?;
        signal_hook::flag::register(sig, Arc::clone(&f.asked))?;
    }
    Ok(())
}

/// The signal that cancelled the run, if one did.
pub fn requested() -> Option<i32> {
    match flags().signal.load(Ordering::SeqCst) {
        0 => None,
        s => i32::try_from(s).ok(),
    }
}

/// The signal's name, for messages.
pub fn name(sig: i32) -> &'static str {
    match sig {
        signal_hook::consts::SIGINT => "SIGINT",
        signal_hook::consts::SIGTERM => "SIGTERM",
        _ => "a signal",
    }
}
