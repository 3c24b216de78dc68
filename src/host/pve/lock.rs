//! The config file lock: every change to a CT's config holds
//! `/run/lock/lxc/pve-config-<vmid>.lock` (an `flock`), waiting up to 10 s and then
//! failing with `can't lock file '...' - got timeout` [LCFG config_file_lock, PTOOLS
//! lock_file_full]. The model takes it for each of its changes; the `pve` backend takes
//! it when it edits a config file itself (raw `lxc.*` lines, which `pct set` refuses).

use std::fs::{self, File, OpenOptions};
use std::path::Path;
use std::thread::sleep;
use std::time::{Duration, Instant};

use super::text;
use crate::host::{Ctid, HostError, HostResult};

/// Proxmox waits this long for a config file lock [PTOOLS lock_file_full].
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// The lock file of a CT's config, relative to the root.
pub fn config_lock_path(ctid: Ctid) -> String {
    format!("run/lock/lxc/pve-config-{ctid}.lock")
}

/// Takes the `flock` on `<root>/<rel>`, creating the file; closing the file releases
/// it. Times out after [`TIMEOUT`] with Proxmox's words.
pub fn take(root: &Path, rel: &str) -> HostResult<File> {
    let path = root.join(rel);
    let io = |what: &str, e: std::io::Error| {
        HostError::failed(format!("cannot {what} {}: {e}", path.display()))
    };
    let open = || {
        OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
    };
    let file = open()
        .or_else(|_| crate::os::create_dir_all(path.parent().unwrap_or(root)).and_then(|()| open()))
        .map_err(
            |e| match crate::os::in_the_way(path.parent().unwrap_or(root)) {
                // A file where the lock directory should be says so, not "File exists".
                Some(why) => HostError::failed(format!("cannot take the config lock: {why}")),
                None => io("open lock", e),
            },
        )?;
    let deadline = Instant::now() + TIMEOUT;
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(file),
            Err(fs::TryLockError::WouldBlock) if Instant::now() < deadline => {
                sleep(Duration::from_millis(2));
            }
            Err(fs::TryLockError::WouldBlock) => {
                return Err(text::lock_timeout(&format!("/{rel}")))
            }
            Err(fs::TryLockError::Error(e)) => return Err(io("lock", e)),
        }
    }
}

/// Takes the config locks of these CTs in ascending order, so two callers never wait on
/// each other.
pub fn take_configs(root: &Path, ctids: &[Ctid]) -> HostResult<Vec<File>> {
    let mut ids = ctids.to_vec();
    ids.sort_unstable();
    ids.dedup();
    ids.into_iter()
        .map(|id| take(root, &config_lock_path(id)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_held_lock_is_waited_for_and_released_on_close() {
        let t = tempfile::tempdir().unwrap();
        let held = take_configs(t.path(), &[101, 100, 101]).unwrap();
        assert_eq!(held.len(), 2);
        assert!(t.path().join("run/lock/lxc/pve-config-100.lock").exists());
        let f = File::open(t.path().join(config_lock_path(100))).unwrap();
        assert!(matches!(f.try_lock(), Err(fs::TryLockError::WouldBlock)));
        drop(held);
        assert!(take(t.path(), &config_lock_path(100)).is_ok());
    }
}

#[cfg(test)]
mod in_the_way_tests {
    use super::*;

    #[test]
    fn a_file_where_the_lock_directory_should_be_is_named() {
        let t = tempfile::tempdir().unwrap();
        fs::create_dir_all(t.path().join("run/lock")).unwrap();
        fs::write(t.path().join("run/lock/lxc"), "").unwrap();
        let e = take(t.path(), &config_lock_path(100)).unwrap_err();
        assert_eq!(
            e.message,
            format!(
                "cannot take the config lock: {} is a file, not a directory: move it aside (phoenix makes the directory)",
                t.path().join("run/lock/lxc").display()
            )
        );
    }
}
