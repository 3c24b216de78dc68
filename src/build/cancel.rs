//! Cancelling a run: the first SIGINT or SIGTERM asks the run to stop (nothing new
//! starts, running hooks are ended, host operations in flight finish), the second ends
//! the process at once with 128 + the signal, as shells expect — after killing the hooks
//! still running ([`track`]), so that even then nothing a hook started outlives phoenix.

use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

/// Hooks running now, for the second signal's handler: process groups, and open
/// `cgroup.kill` files (-1: none). Fixed arrays of atomics, so the handler reads them
/// without a lock or an allocation.
const SLOTS: usize = 256;
static GROUPS: [AtomicI32; SLOTS] = [const { AtomicI32::new(0) }; SLOTS];
static KILLS: [AtomicI32; SLOTS] = [const { AtomicI32::new(-1) }; SLOTS];

/// A hook registered with [`track`]; unregistered when dropped (before its `cgroup.kill`
/// file is closed: keep the file alive longer than this).
pub struct Tracked(usize);

impl Drop for Tracked {
    fn drop(&mut self) {
        KILLS[self.0].store(-1, Ordering::SeqCst);
        GROUPS[self.0].store(0, Ordering::SeqCst);
    }
}

/// Registers a running hook's process group and its cgroup's `cgroup.kill`, so that a
/// second signal kills them before phoenix exits. `None` when every slot is taken (the
/// next run then ends that hook from its record).
pub fn track(pgid: u32, kill: Option<&std::fs::File>) -> Option<Tracked> {
    let pgid = i32::try_from(pgid).ok().filter(|&p| p > 0)?;
    let slot = GROUPS.iter().position(|g| {
        g.compare_exchange(0, pgid, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
    })?;
    KILLS[slot].store(
        kill.map_or(-1, |f| f.as_raw_fd() as RawFd),
        Ordering::SeqCst,
    );
    Some(Tracked(slot))
}

/// Kills every tracked hook. Async-signal-safe: atomic loads, kill(2), write(2).
fn end_tracked() {
    for slot in 0..SLOTS {
        let pgid = GROUPS[slot].load(Ordering::SeqCst);
        if pgid > 0 {
            // SAFETY: kill(2) signals a process group; no memory is touched.
            unsafe {
                libc::kill(-pgid, libc::SIGKILL);
            }
        }
        let fd = KILLS[slot].load(Ordering::SeqCst);
        if fd >= 0 {
            // SAFETY: write(2) of a static byte to a descriptor that was open when read
            // (the slot is cleared before its file is closed).
            unsafe {
                libc::write(fd, b"1".as_ptr().cast(), 1);
            }
        }
    }
}

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
        let asked = Arc::clone(&f.asked);
        // SAFETY: the action only loads an atomic, then kills hooks (`end_tracked`:
        // async-signal-safe) and calls _exit(2).
        unsafe {
            signal_hook::low_level::register(sig, move || {
                if asked.load(Ordering::SeqCst) {
                    end_tracked();
                    signal_hook::low_level::exit(128 + sig);
                }
            })?;
        }
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
