//! phoenix's state directory (`/var/lib/phoenix`, `--state-dir`, `PHOENIX_STATE_DIR`).
//!
//! | path | what |
//! |---|---|
//! | `manifests/<hash>.json` | every manifest phoenix built, content-addressed, so `why` can show old → new |
//! | `blobs/<blake3>` | the script contents those manifests name, for diffs |
//! | `logs/<ctid>/<run>.log` | one log per node per run (`phoenix log <CTID>`) |
//! | `phoenix.lock` | the host lock: one `build`/`gc` at a time; holds the holder's pid and start |
//! | `sim/` | the `sim` backend's host |
//!
//! The host's snapshots are the truth about what is built; this directory only explains it.
//! Every file is written atomically (temp file + rename).

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::engine::hash::{Hashed, Manifest, NodeHash};
use crate::fleet::config::{Ctid, Fleet};

pub const DEFAULT_STATE_DIR: &str = "/var/lib/phoenix";

pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// `YYYY-MM-DD HH:MM:SS` (UTC) of seconds since the epoch.
pub fn utc(t: u64) -> String {
    let days = (t / 86400) as i64;
    let (h, m, s) = ((t % 86400) / 3600, (t % 3600) / 60, t % 60);
    // Days to a civil date (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let mo = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(mo <= 2);
    format!("{y:04}-{mo:02}-{d:02} {h:02}:{m:02}:{s:02}")
}

/// A short age: `42s`, `5m`, `3h`, `2d`.
pub fn age(s: u64) -> String {
    match s {
        0..=119 => format!("{s}s"),
        120..=7199 => format!("{}m", s / 60),
        7200..=172_799 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86400),
    }
}

/// Writes a file atomically: readers see the old content or the new, never a part. Safe
/// to call from many threads for the same path (each writes its own temporary file).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir)?;
    }
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = path.with_extension(format!("tmp{}.{n}", std::process::id()));
    let written = File::create(&tmp).and_then(|mut f| {
        f.write_all(bytes)?;
        f.sync_all()
    });
    match written.and_then(|()| fs::rename(&tmp, path)) {
        Ok(()) => Ok(()),
        Err(e) => {
            let _ = fs::remove_file(&tmp);
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn many_threads_write_one_path_atomically() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("blobs/abc");
        std::thread::scope(|s| {
            for i in 0..16u8 {
                let path = &path;
                s.spawn(move || super::write_atomic(path, &[i; 4096]).unwrap());
            }
        });
        let got = std::fs::read(&path).unwrap();
        assert!(got.len() == 4096 && got.iter().all(|&b| b == got[0]));
        assert_eq!(
            std::fs::read_dir(dir.path().join("blobs")).unwrap().count(),
            1,
            "temporary files left"
        );
    }

    #[test]
    fn utc_dates() {
        assert_eq!(super::utc(0), "1970-01-01 00:00:00");
        assert_eq!(super::utc(951_782_400), "2000-02-29 00:00:00");
        assert_eq!(super::utc(1_795_341_202), "2026-11-22 09:53:22");
    }
}

#[derive(Clone, Debug)]
pub struct StateDir {
    pub root: PathBuf,
}

impl StateDir {
    pub fn open(root: &Path) -> Result<StateDir, String> {
        fs::create_dir_all(root)
            .map_err(|e| format!("cannot create the state directory {}: {e}", root.display()))?;
        Ok(StateDir {
            root: root.to_path_buf(),
        })
    }

    fn manifest_path(&self, hash: &NodeHash) -> PathBuf {
        self.root.join("manifests").join(format!("{hash}.json"))
    }

    /// Stores a manifest and the scripts it names (only what is not stored yet).
    pub fn store_manifest(
        &self,
        fleet: &Fleet,
        ctid: Ctid,
        hashed: &Hashed,
    ) -> std::io::Result<()> {
        let path = self.manifest_path(&hashed.hash);
        if !path.exists() {
            let bytes =
                serde_json::to_vec_pretty(&hashed.manifest).map_err(std::io::Error::other)?;
            write_atomic(&path, &bytes)?;
        }
        let hooks = &fleet.hooks;
        let mut scripts = vec![&hooks.nvidia_step, &hooks.docker_step];
        scripts.extend(hooks.node_hooks.get(&ctid));
        scripts.extend(hooks.lib.values());
        for s in scripts {
            let blob = self.root.join("blobs").join(&s.digest);
            if !blob.exists() {
                write_atomic(&blob, &s.bytes)?;
            }
        }
        Ok(())
    }

    /// A stored manifest by full hash, or by the 32-digit prefix a snapshot name carries.
    pub fn manifest(&self, hash_or_prefix: &str) -> Option<(NodeHash, Manifest)> {
        if let Some(h) = NodeHash::parse(hash_or_prefix) {
            let bytes = fs::read(self.manifest_path(&h)).ok()?;
            return serde_json::from_slice(&bytes).ok().map(|m| (h, m));
        }
        let dir = fs::read_dir(self.root.join("manifests")).ok()?;
        for e in dir.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with(hash_or_prefix) {
                return self.manifest(name.trim_end_matches(".json"));
            }
        }
        None
    }

    pub fn blob(&self, digest: &str) -> Option<Vec<u8>> {
        fs::read(self.root.join("blobs").join(digest)).ok()
    }

    pub fn log_dir(&self, ctid: Ctid) -> PathBuf {
        self.root.join("logs").join(ctid.to_string())
    }

    /// The newest log of a node, if any.
    pub fn latest_log(&self, ctid: Ctid) -> Option<PathBuf> {
        let mut logs: Vec<PathBuf> = fs::read_dir(self.log_dir(ctid))
            .ok()?
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "log"))
            .collect();
        logs.sort();
        logs.pop()
    }
}

/// Who holds the host lock.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Holder {
    pub pid: u32,
    pub started: u64,
    pub command: String,
}

/// The host lock, held for the life of a `build` or `gc`. Released when dropped, or by the
/// kernel when the process dies (so a killed run never leaves a stale lock).
pub struct HostLock {
    _file: File,
}

pub enum LockError {
    Held(Option<Holder>),
    Io(String),
}

impl HostLock {
    pub fn acquire(state: &StateDir, command: &str, wait: bool) -> Result<HostLock, LockError> {
        let path = state.root.join("phoenix.lock");
        let mut file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|e| LockError::Io(format!("cannot open {}: {e}", path.display())))?;
        if wait {
            file.lock().map_err(|e| LockError::Io(e.to_string()))?;
        } else {
            match file.try_lock() {
                Ok(()) => {}
                Err(std::fs::TryLockError::WouldBlock) => {
                    let mut text = String::new();
                    let _ = file.read_to_string(&mut text);
                    return Err(LockError::Held(serde_json::from_str(&text).ok()));
                }
                Err(std::fs::TryLockError::Error(e)) => return Err(LockError::Io(e.to_string())),
            }
        }
        let holder = Holder {
            pid: std::process::id(),
            started: now_secs(),
            command: command.to_string(),
        };
        let _ = file.set_len(0);
        let _ = file.rewind();
        let _ = file.write_all(&serde_json::to_vec(&holder).unwrap_or_default());
        let _ = file.sync_all();
        Ok(HostLock { _file: file })
    }
}

impl crate::engine::why::History for StateDir {
    fn manifest(&self, hash_or_prefix: &str) -> Option<(NodeHash, Manifest)> {
        StateDir::manifest(self, hash_or_prefix)
    }
    fn blob(&self, digest: &str) -> Option<Vec<u8>> {
        StateDir::blob(self, digest)
    }
    fn manifests_at(&self) -> String {
        self.root.join("manifests").display().to_string()
    }
}
