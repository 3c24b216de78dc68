//! phoenix's state directory (`/var/lib/phoenix`, `--state-dir`, `PHOENIX_STATE_DIR`).
//!
//! | path | what |
//! |---|---|
//! | `manifests/<hash>.json` | every manifest phoenix built, content-addressed, so `why` can show old → new |
//! | `blobs/<blake3>` | the script contents those manifests name, for diffs |
//! | `logs/<ctid>/<run>.log` | one log per node per run (`phoenix log <CTID>`) |
//! | `secrets/key` | the key of the secret digests: 32 random bytes, readable by root only |
//! | `secrets/<ctid>.json` | keyed digests of the secret fields a node's hook last ran with ([`secrets`](crate::engine::secrets)) |
//! | `hooks-running/<ctid>` | a hook running now: its process group and start time |
//! | `pins/<ctid>.json` | a CT rolled back to an earlier generation and pinned there: which, when, by whom; `build` leaves it alone until `unpin` |
//! | `kept/<ctid>/<snapshot>.json` | a generation kept beyond its CT's life when the CT was replaced: where the host holds it (a backup, a subvolume), its build record, when |
//! | `removed.jsonl` | one line per snapshot `gc` removed (CTID, snapshot, when), so that asking for it later says when it went |
//! | `building/<ctid>.json` | a build of the CT that has changed the host and not reached its snapshot: the proof that a CT without a build snapshot is phoenix's unfinished one |
//! | `phoenix.lock` | the host lock: one `build`/`gc` at a time; holds the holder's pid and start |
//! | `sim/` | the `sim` backend's host |
//!
//! The host's snapshots are the truth about what is built; this directory only explains it.
//! Every file is written atomically (temp file + rename).

use crate::os::{now_secs, write_atomic};
use std::collections::BTreeMap;
use std::fs::{self, File};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::engine::hash::{Hashed, Manifest, NodeHash};
use crate::engine::secrets::{Digests, Key};
use crate::fleet::config::Ctid;
use crate::fleet::Fleet;

#[derive(Clone, Debug)]
pub struct StateDir {
    pub root: PathBuf,
}

/// A build that changed the host and has not reached its snapshot yet.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Building {
    /// The hash being built.
    pub hash: String,
    pub run: String,
    /// Seconds since the epoch.
    pub started: u64,
}

/// A CT held at an earlier generation by `phoenix rollback`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Pin {
    /// The generation (`phx-…`) the CT was rolled back to.
    pub snapshot: String,
    /// Its full hash, from the snapshot's build record (descendants are planned against it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash: Option<String>,
    /// Seconds since the epoch.
    pub pinned_at: u64,
    /// Who ran the rollback (`$SUDO_USER`, else `$USER`, else the uid).
    pub by: String,
    /// The generation the CT held before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// False while the rollback is under way: written before the first host change, set
    /// when the CT is back at `snapshot`. An unfinished rollback is never taken for a
    /// built CT.
    pub complete: bool,
    /// The CT ran before the rollback, so it is started again (also by a rollback run
    /// again to finish one that was cut short after the stop).
    #[serde(default)]
    pub restart: bool,
}

/// A generation kept beyond its CT's life (the CT was replaced).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Kept {
    pub ctid: Ctid,
    /// The generation's build snapshot (`phx-…`).
    pub snapshot: String,
    /// The snapshot's description: its build record, written again when it comes back.
    pub description: String,
    /// Where the host holds it.
    pub copy: crate::host::KeptCopy,
    /// Seconds since the epoch.
    pub kept_at: u64,
}

/// A snapshot `gc` removed.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Removed {
    pub ctid: Ctid,
    pub snapshot: String,
    /// Seconds since the epoch.
    pub removed_at: u64,
}

/// The parts of the state directory a build writes.
const PARTS: &[&str] = &[
    "manifests",
    "blobs",
    "logs",
    "secrets",
    "hooks-running",
    "scripts",
    "building",
    "pins",
    "kept",
];

impl StateDir {
    pub fn open(root: &Path) -> Result<StateDir, String> {
        crate::os::create_dir_all(root)
            .map_err(|e| format!("cannot create the state directory {}: {e}", root.display()))?;
        Ok(StateDir {
            root: root.to_path_buf(),
        })
    }

    /// Why a build could not write everything it writes here, if it could not: each part
    /// of the directory (and each building node's log directory) must be a directory
    /// phoenix can make files in. Checked before a build touches the host, and by `plan`,
    /// so that a node is never destroyed by a build that cannot record it.
    pub fn check_writable(&self, building: &[Ctid]) -> Vec<String> {
        let mut dirs: Vec<PathBuf> = vec![self.root.clone()];
        dirs.extend(PARTS.iter().map(|p| self.root.join(p)));
        dirs.extend(building.iter().map(|&c| self.log_dir(c)));
        let mut problems = Vec::new();
        for dir in dirs {
            if let Err(e) = crate::os::probe_writable(&dir) {
                problems.push(e);
                if dir == self.root {
                    break; // the parts say the same again
                }
            }
        }
        problems
    }

    fn pin_path(&self, ctid: Ctid) -> PathBuf {
        self.root.join("pins").join(format!("{ctid}.json"))
    }

    /// The pins, by CTID. A record that cannot be read is reported and counts as a pin
    /// on nothing known: the CT is left alone all the same.
    pub fn pins(&self) -> BTreeMap<Ctid, Pin> {
        self.records("pins", |ctid, path| {
            tracing::warn!(
                "{} is corrupt: CT {ctid} counts as pinned at an unknown generation; `phoenix unpin {ctid}` removes it",
                path.display()
            );
            Some(Pin {
                snapshot: String::new(),
                hash: None,
                pinned_at: 0,
                by: String::new(),
                from: None,
                complete: false,
                restart: false,
            })
        })
    }

    /// The `<ctid>.json` records of a part of the state directory, by CTID; `corrupt`
    /// says what a record that does not parse counts as.
    fn records<T: serde::de::DeserializeOwned>(
        &self,
        part: &str,
        corrupt: impl Fn(Ctid, &Path) -> Option<T>,
    ) -> BTreeMap<Ctid, T> {
        let Ok(dir) = fs::read_dir(self.root.join(part)) else {
            return BTreeMap::new();
        };
        dir.flatten()
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                let ctid: Ctid = name.strip_suffix(".json")?.parse().ok()?;
                let bytes = read_state_file(&e.path(), 4096)?;
                match serde_json::from_slice(&bytes) {
                    Ok(record) => Some((ctid, record)),
                    Err(_) => corrupt(ctid, &e.path()).map(|r| (ctid, r)),
                }
            })
            .collect()
    }

    pub fn write_pin(&self, ctid: Ctid, pin: &Pin) -> std::io::Result<()> {
        let bytes = serde_json::to_vec_pretty(pin).map_err(std::io::Error::other)?;
        write_atomic(&self.pin_path(ctid), &bytes)
    }

    /// Removes a pin; `Ok(false)` when there was none.
    pub fn remove_pin(&self, ctid: Ctid) -> std::io::Result<bool> {
        match fs::remove_file(self.pin_path(ctid)) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Records snapshots `gc` removed, one JSON line each (appended).
    pub fn record_removed(&self, removed: &[Removed]) -> std::io::Result<()> {
        use std::io::Write;
        if removed.is_empty() {
            return Ok(());
        }
        let path = self.root.join("removed.jsonl");
        let mut f = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)?;
        let mut text = String::new();
        for r in removed {
            text.push_str(&serde_json::to_string(r).map_err(std::io::Error::other)?);
            text.push('\n');
        }
        f.write_all(text.as_bytes())
    }

    /// When `gc` removed CT `ctid`'s snapshot `name`, if it did.
    pub fn removed(&self, ctid: Ctid, name: &str) -> Option<Removed> {
        let bytes = read_state_file(&self.root.join("removed.jsonl"), 64 * 1024 * 1024)?;
        String::from_utf8_lossy(&bytes)
            .lines()
            .rev()
            .filter_map(|l| serde_json::from_str::<Removed>(l).ok())
            .find(|r| r.ctid == ctid && r.snapshot == name)
    }

    fn kept_dir(&self, ctid: Ctid) -> PathBuf {
        self.root.join("kept").join(ctid.to_string())
    }

    /// Records a kept generation (written once the host holds it).
    pub fn record_kept(&self, kept: &Kept) -> std::io::Result<()> {
        let bytes = serde_json::to_vec_pretty(kept).map_err(std::io::Error::other)?;
        write_atomic(
            &self
                .kept_dir(kept.ctid)
                .join(format!("{}.json", kept.snapshot)),
            &bytes,
        )
    }

    /// CT `ctid`'s kept generations, newest first. A record that cannot be read is
    /// reported and left out.
    pub fn kept(&self, ctid: Ctid) -> Vec<Kept> {
        let Ok(dir) = fs::read_dir(self.kept_dir(ctid)) else {
            return Vec::new();
        };
        let mut out: Vec<Kept> = dir
            .flatten()
            .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
            .filter_map(|e| {
                let bytes = read_state_file(&e.path(), 1024 * 1024)?;
                let parsed = serde_json::from_slice::<Kept>(&bytes).ok();
                if parsed.is_none() {
                    tracing::warn!(
                        "{} is corrupt and is ignored: that kept generation cannot be rolled back to",
                        e.path().display()
                    );
                }
                parsed.filter(|k| k.ctid == ctid)
            })
            .collect();
        out.sort_by(|a, b| b.kept_at.cmp(&a.kept_at).then(b.snapshot.cmp(&a.snapshot)));
        out
    }

    /// Drops the record of a kept generation (the host's copy is gone).
    pub fn forget_kept(&self, ctid: Ctid, snapshot: &str) {
        let _ = fs::remove_file(self.kept_dir(ctid).join(format!("{snapshot}.json")));
    }

    /// Where phoenix last had each CT in a cluster (`placed.json`): how a CT that an admin
    /// or HA moved is told from one phoenix placed. A record that cannot be read is
    /// none (such a CT is then not reported as moved, and nothing else changes).
    pub fn placements(&self) -> BTreeMap<Ctid, String> {
        read_state_file(&self.root.join("placed.json"), 16 * 1024 * 1024)
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    /// Records where CTs are after a run (merged into what is recorded; `None` drops a
    /// CT that is gone).
    pub fn record_placements(
        &self,
        placed: &BTreeMap<Ctid, Option<String>>,
    ) -> std::io::Result<()> {
        let mut all = self.placements();
        for (ctid, node) in placed {
            match node {
                Some(n) => all.insert(*ctid, n.clone()),
                None => all.remove(ctid),
            };
        }
        let bytes = serde_json::to_vec_pretty(&all).map_err(std::io::Error::other)?;
        write_atomic(&self.root.join("placed.json"), &bytes)
    }

    fn building_path(&self, ctid: Ctid) -> PathBuf {
        self.root.join("building").join(format!("{ctid}.json"))
    }

    /// Records that a build of CT `ctid` is about to change the host. Written before the
    /// first change and removed by the snapshot ([`StateDir::end_build`]).
    pub fn begin_build(&self, ctid: Ctid, record: &Building) -> std::io::Result<()> {
        let bytes = serde_json::to_vec(record).map_err(std::io::Error::other)?;
        write_atomic(&self.building_path(ctid), &bytes)
    }

    /// The build of CT `ctid` is committed (or its CT is gone): no longer unfinished.
    pub fn end_build(&self, ctid: Ctid) {
        let _ = fs::remove_file(self.building_path(ctid));
    }

    /// The CTs whose build changed the host and never reached its snapshot. A record that
    /// cannot be read is no proof.
    pub fn unfinished_builds(&self) -> BTreeMap<Ctid, Building> {
        self.records("building", |_, _| None)
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
            let path = self.manifest_path(&h);
            let bytes = read_state_file(&path, MAX_MANIFEST_BYTES)?;
            // A manifest is named by the hash of its canonical JSON: one that does not
            // hash to its name is corrupt, and explains nothing. (The stored JSON is
            // hashed, not a re-serialisation, so a newer phoenix still reads old ones.)
            let verified = serde_json::from_slice::<serde_json::Value>(&bytes)
                .ok()
                .filter(|v| {
                    blake3::hash(crate::engine::canon::to_string(v).as_bytes())
                        .to_hex()
                        .as_str()
                        == h.as_str()
                })
                .and_then(|v| serde_json::from_value::<Manifest>(v).ok());
            if verified.is_none() {
                corrupt(&path);
            }
            return verified.map(|m| (h, m));
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

    /// A stored script by its blake3 digest, if it is there and still hashes to it.
    pub fn blob(&self, digest: &str) -> Option<Vec<u8>> {
        let path = self.root.join("blobs").join(digest);
        let bytes = read_state_file(&path, crate::fleet::config::MAX_SCRIPT_BYTES)?;
        if blake3::hash(&bytes).to_hex().as_str() != digest {
            corrupt(&path);
            return None;
        }
        Some(bytes)
    }

    fn secrets_dir(&self) -> PathBuf {
        self.root.join("secrets")
    }

    /// The key of the secret digests, if one was made (only a build makes it). One that is
    /// not 32 bytes is corrupt: reported, and nothing counts as recorded.
    pub fn secret_key(&self) -> Option<Key> {
        let path = self.secrets_dir().join("key");
        let bytes = crate::os::read_regular(&path, 64).ok()?;
        match <[u8; 32]>::try_from(bytes.as_slice()) {
            Ok(k) => Some(Key(k)),
            Err(_) => {
                tracing::warn!(
                    "{} is corrupt (not 32 bytes) and is ignored: remove it; every secret then counts as not on record, and the next build delivers them",
                    path.display()
                );
                None
            }
        }
    }

    /// The key of the secret digests, made from the kernel's random source when there is
    /// none. Called once per build, under the run lock.
    pub fn secret_key_or_create(&self) -> std::io::Result<Key> {
        if let Some(k) = self.secret_key() {
            return Ok(k);
        }
        let mut k = [0u8; 32];
        std::io::Read::read_exact(&mut File::open("/dev/urandom")?, &mut k)?;
        let dir = self.secrets_dir();
        fs::create_dir_all(&dir)?;
        fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o700))?;
        crate::os::write_private(&dir.join("key"), &k)?;
        Ok(Key(k))
    }

    /// The digests of the secret fields CT `ctid`'s hook last ran with, if recorded. An
    /// unreadable record counts as none (so its secrets are delivered again).
    pub fn secrets_delivered(&self, ctid: Ctid) -> Option<Digests> {
        let path = self.secrets_dir().join(format!("{ctid}.json"));
        let bytes = crate::os::read_regular(&path, 1024 * 1024).ok()?;
        let parsed = serde_json::from_slice(&bytes).ok();
        if parsed.is_none() {
            tracing::warn!(
                "{} is corrupt and is ignored: CT {ctid}'s secrets count as not on record, and the next build delivers them",
                path.display()
            );
        }
        parsed
    }

    /// Records the digests of the secret fields CT `ctid`'s hook has just run with.
    pub fn record_secrets(&self, ctid: Ctid, digests: &Digests) -> std::io::Result<()> {
        let bytes = serde_json::to_vec_pretty(digests).map_err(std::io::Error::other)?;
        crate::os::write_private(&self.secrets_dir().join(format!("{ctid}.json")), &bytes)
    }

    /// One file per hook running now (its process group and start time), so that the
    /// next run can end what a killed one left running.
    pub fn hooks_running_dir(&self) -> PathBuf {
        self.root.join("hooks-running")
    }

    pub fn log_dir(&self, ctid: Ctid) -> PathBuf {
        self.root.join("logs").join(ctid.to_string())
    }

    /// The newest log of a node, if any: the one written last (run ids sort by the
    /// second a run started, and two runs can start in one second).
    pub fn latest_log(&self, ctid: Ctid) -> Option<PathBuf> {
        let mut logs: Vec<(Option<std::time::SystemTime>, PathBuf)> =
            fs::read_dir(self.log_dir(ctid))
                .ok()?
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|e| e == "log"))
                .map(|p| (fs::metadata(&p).and_then(|m| m.modified()).ok(), p))
                .collect();
        logs.sort();
        logs.pop().map(|(_, p)| p)
    }
}

/// A manifest is a few KiB; one past this is not one.
const MAX_MANIFEST_BYTES: u64 = 16 * 1024 * 1024;

/// A state file's bytes if it is there and is a regular file of sane size; a FIFO, a
/// device, a directory or a link to one is reported (it is not believed, and never blocks
/// or reads without end) and counts as absent.
fn read_state_file(path: &Path, max: u64) -> Option<Vec<u8>> {
    match crate::os::read_if_any(path, max) {
        Ok(bytes) => bytes,
        Err(e) => {
            tracing::warn!(
                "{e}; it is ignored: remove it, and the next build that needs it writes it again"
            );
            None
        }
    }
}

/// Says that a state file is corrupt, where it is and what to do; the caller goes on
/// without it.
fn corrupt(path: &Path) {
    tracing::warn!(
        "{} is corrupt (its content does not match the hash it is named by) and is ignored: remove it; the next build that needs it writes it again",
        path.display()
    );
}

/// Who holds the host lock.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Holder {
    pub pid: u32,
    /// Seconds since the epoch; 0 when not known.
    pub started: u64,
    pub command: String,
    /// The holder's state directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_dir: Option<PathBuf>,
}

impl Holder {
    /// The process holding an `flock` on `file`, read from the kernel's `/proc/locks`
    /// when its own record is gone (a lock file unlinked by hand keeps its lock).
    fn from_kernel(file: &File) -> Option<Holder> {
        use std::os::unix::fs::MetadataExt;
        let meta = file.metadata().ok()?;
        // /proc/locks: `1: FLOCK  ADVISORY  WRITE 1234 08:01:56789 0 EOF`, the device as
        // hexadecimal major:minor and the inode in decimal.
        let dev = format!(
            "{:02x}:{:02x}:{}",
            libc::major(meta.dev()),
            libc::minor(meta.dev()),
            meta.ino()
        );
        let locks = fs::read_to_string("/proc/locks").ok()?;
        let pid: u32 = locks.lines().find_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.get(1) == Some(&"FLOCK") && f.get(5) == Some(&dev.as_str()))
                .then(|| f.get(4)?.parse().ok())
                .flatten()
        })?;
        let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let words: Vec<String> = cmdline
            .split(|&b| b == 0)
            .filter(|w| !w.is_empty())
            .map(|w| String::from_utf8_lossy(w).into_owned())
            .collect();
        let command = ["build", "gc"]
            .into_iter()
            .find(|c| words.iter().any(|w| w == c))
            .unwrap_or("run")
            .to_string();
        Some(Holder {
            pid,
            started: 0,
            command,
            state_dir: None,
        })
    }

    /// Who holds the lock, in words: `phoenix build (pid 123, started 5 s ago, state
    /// directory /var/lib/phoenix)`.
    pub fn describe(&self) -> String {
        let mut parts = vec![format!("pid {}", self.pid)];
        if self.started > 0 {
            parts.push(format!(
                "started {} s ago",
                now_secs().saturating_sub(self.started)
            ));
        }
        if let Some(d) = &self.state_dir {
            parts.push(format!("state directory {}", d.display()));
        }
        format!("phoenix {} ({})", self.command, parts.join(", "))
    }
}

/// The host lock, held for the life of a `build` or `gc`: an `flock` on the state
/// directory itself, so that deleting a file cannot let a second run in. Released when
/// dropped, or by the kernel when the process dies (so a killed run never leaves a stale
/// lock). `phoenix.lock` beside it says who holds it, for messages only.
pub struct HostLock {
    _dir: File,
}

pub enum LockError {
    Held(Option<Holder>),
    Io(String),
}

impl HostLock {
    pub fn acquire(state: &StateDir, command: &str, wait: bool) -> Result<HostLock, LockError> {
        let dir = File::open(&state.root)
            .map_err(|e| LockError::Io(format!("cannot open {}: {e}", state.root.display())))?;
        let path = state.root.join("phoenix.lock");
        take(&dir, wait, || {
            crate::os::read_regular(&path, 4096)
                .ok()
                .and_then(|t| serde_json::from_slice(&t).ok())
        })?;
        // Who holds it, for the next run's message; the lock itself is the directory's.
        let _ = crate::os::write_atomic(
            &path,
            &serde_json::to_vec(&me(command, &state.root)).unwrap_or_default(),
        );
        Ok(HostLock { _dir: dir })
    }

    /// The lock of the host itself (the LXC path, the Proxmox node): two runs with
    /// different state directories must not build on one host at once. The file holds
    /// who has it.
    pub fn acquire_host(
        path: &Path,
        state: &StateDir,
        command: &str,
        wait: bool,
    ) -> Result<HostLock, LockError> {
        crate::os::create_dir_all(path.parent().unwrap_or(path))
            .map_err(|e| LockError::Io(e.to_string()))?;
        let file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(path)
            .map_err(|e| LockError::Io(format!("cannot open {}: {e}", path.display())))?;
        take(&file, wait, || {
            crate::os::read_regular(path, 4096)
                .ok()
                .and_then(|t| serde_json::from_slice(&t).ok())
        })?;
        let mut bytes = serde_json::to_vec(&me(command, &state.root)).unwrap_or_default();
        bytes.push(b'\n');
        let _ = file
            .set_len(0)
            .and_then(|()| std::io::Write::write_all(&mut &file, &bytes));
        Ok(HostLock { _dir: file })
    }
}

fn me(command: &str, state: &Path) -> Holder {
    Holder {
        pid: std::process::id(),
        started: now_secs(),
        command: command.to_string(),
        state_dir: Some(state.to_path_buf()),
    }
}

/// Takes the `flock` on `file`, waiting for it or not; when it is held, says who holds it:
/// its record (`recorded`), else the kernel's lock table.
fn take(
    file: &File,
    wait: bool,
    recorded: impl FnOnce() -> Option<Holder>,
) -> Result<(), LockError> {
    if wait {
        return file.lock().map_err(|e| LockError::Io(e.to_string()));
    }
    match file.try_lock() {
        Ok(()) => Ok(()),
        Err(std::fs::TryLockError::WouldBlock) => Err(LockError::Held(
            recorded()
                .filter(|h| h.pid != std::process::id())
                .or_else(|| Holder::from_kernel(file)),
        )),
        Err(std::fs::TryLockError::Error(e)) => Err(LockError::Io(e.to_string())),
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
