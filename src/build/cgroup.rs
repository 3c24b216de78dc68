//! A cgroup per hook, where the host has a writable cgroup v2 hierarchy (Proxmox VE 7
//! and later, or the `unified` mount of a hybrid host). A process group is left with one
//! `setsid`; a cgroup is left only by a process that writes itself elsewhere, so what a
//! hook started (daemonised or not) is found and ended with it.
//!
//! The hook's cgroup is a child of phoenix's own, `phoenix-hook.<name>.<pid>`: the hook
//! joins it between fork and exec, before it can start anything. Processes that a hook's
//! `pct exec` or `lxc-attach` runs inside a CT live in the CT's cgroup, not this one, and a
//! CT started by a hook is moved to its own by Proxmox (systemd) or LXC, so ending the
//! hook's cgroup never touches a container.

use std::ffi::CString;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// What every hook cgroup's name starts with; [`end`] touches nothing else.
const PREFIX: &str = "phoenix-hook.";

/// One hook's cgroup.
#[derive(Debug)]
pub struct HookCgroup {
    dir: PathBuf,
}

/// The mount point of the cgroup v2 hierarchy, from `/proc/self/mountinfo`.
fn v2_mount() -> Option<PathBuf> {
    let info = fs::read_to_string("/proc/self/mountinfo").ok()?;
    info.lines().find_map(|line| {
        let (left, right) = line.split_once(" - ")?;
        (right.split_whitespace().next()? == "cgroup2")
            .then(|| left.split_whitespace().nth(4).map(PathBuf::from))
            .flatten()
    })
}

/// phoenix's own cgroup v2 directory.
fn own_dir() -> Option<PathBuf> {
    let mount = v2_mount()?;
    let own = fs::read_to_string("/proc/self/cgroup").ok()?;
    let rel = own.lines().find_map(|l| l.strip_prefix("0::"))?;
    let dir = mount.join(rel.trim_start_matches('/'));
    dir.join("cgroup.procs").exists().then_some(dir)
}

impl HookCgroup {
    /// Makes the cgroup of a hook `name` (its CTID, or `setup`) of this process, if the
    /// host lets phoenix: `None` means the hook is held by its process group alone.
    /// `record` is called with its path first, so that a phoenix killed at any moment
    /// after leaves it findable.
    pub fn create(name: &str, record: impl FnOnce(&Path)) -> Option<HookCgroup> {
        let dir = own_dir()?.join(format!("{PREFIX}{name}.{}", std::process::id()));
        if dir.exists() {
            end(&dir);
        }
        record(&dir);
        match fs::create_dir(&dir) {
            Ok(()) => Some(HookCgroup { dir }),
            Err(e) => {
                tracing::debug!(dir = %dir.display(), "no cgroup per hook ({e}): process groups only");
                None
            }
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The `cgroup.procs` path as a C string, made before the fork (the child may not
    /// allocate).
    pub fn procs(&self) -> Option<CString> {
        CString::new(self.dir.join("cgroup.procs").as_os_str().as_bytes()).ok()
    }

    /// Its `cgroup.kill`, open for writing (Linux 5.14 and later), for the second
    /// signal's handler ([`super::cancel::track`]).
    pub fn kill_file(&self) -> Option<fs::File> {
        fs::OpenOptions::new()
            .write(true)
            .open(self.dir.join("cgroup.kill"))
            .ok()
    }
}

/// Ends every process in it, and removes it, however the hook's run ends (a hook that
/// could not even start included).
impl Drop for HookCgroup {
    fn drop(&mut self) {
        end(&self.dir);
    }
}

/// Writes the calling process into the cgroup whose `cgroup.procs` is `procs`. For
/// `pre_exec`: only async-signal-safe calls, no allocation. A failure leaves the hook in
/// phoenix's cgroup, held by its process group.
pub fn join(procs: &CString) {
    // SAFETY: open(2), write(2) and close(2) on a NUL-terminated path and a static
    // buffer; no memory is allocated or shared with the parent.
    unsafe {
        let fd = libc::open(procs.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
        if fd >= 0 {
            libc::write(fd, b"0".as_ptr().cast(), 1);
            libc::close(fd);
        }
    }
}

/// Kills every process in the hook cgroup `dir` (and any cgroup below it) and removes it;
/// says whether a process was still there. Anything not named like a hook cgroup is left
/// alone.
pub fn end(dir: &Path) -> bool {
    let named = dir
        .file_name()
        .is_some_and(|n| n.to_string_lossy().starts_with(PREFIX));
    // A record may be corrupt: only a directory of the cgroup v2 hierarchy is one.
    let in_hierarchy = v2_mount().is_some_and(|m| dir.starts_with(&m) && dir != m)
        && !dir
            .components()
            .any(|c| c == std::path::Component::ParentDir);
    if !named || !in_hierarchy {
        return false;
    }
    let populated = fs::read_to_string(dir.join("cgroup.events"))
        .is_ok_and(|e| e.lines().any(|l| l == "populated 1"));
    // cgroup.kill (Linux 5.14) kills the whole subtree at once, new forks included;
    // without it, the listed processes are killed until none is left.
    if fs::write(dir.join("cgroup.kill"), "1").is_err() {
        for _ in 0..100 {
            let procs = fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
            let pids: Vec<libc::pid_t> = procs.lines().filter_map(|l| l.parse().ok()).collect();
            if pids.is_empty() {
                break;
            }
            for pid in pids {
                // SAFETY: kill(2) sends a signal; no memory is touched.
                unsafe {
                    libc::kill(pid, libc::SIGKILL);
                }
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    // A cgroup whose processes are all dead (zombies included) can go.
    let until = Instant::now() + Duration::from_secs(2);
    loop {
        remove_tree(dir);
        if !dir.exists() || Instant::now() > until {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    if dir.exists() {
        tracing::warn!(dir = %dir.display(), "a hook's cgroup could not be removed");
    }
    populated
}

/// Removes a cgroup and the cgroups below it, deepest first (rmdir only: a cgroup's files
/// are the kernel's).
fn remove_tree(dir: &Path) {
    if let Ok(entries) = fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                remove_tree(&e.path());
            }
        }
    }
    let _ = fs::remove_dir(dir);
}

#[cfg(test)]
mod tests {
    #[test]
    fn end_touches_only_hook_cgroups_of_the_hierarchy() {
        let t = tempfile::tempdir().unwrap();
        for name in ["system.slice", "phoenix-hook.910.1"] {
            let other = t.path().join(name);
            std::fs::create_dir(&other).unwrap();
            assert!(!super::end(&other));
            assert!(other.exists() && !other.join("cgroup.kill").exists());
        }
    }
}
