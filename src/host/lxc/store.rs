//! Where root filesystems live: btrfs subvolumes (snapshots and clones are O(1)
//! copy-on-write) or plain directories (full copies), decided by the filesystem under
//! the container path.

use std::path::Path;
use std::process::Command;

use crate::host::{HostError, HostResult};

/// `statfs(2)`'s `f_type` of btrfs.
const BTRFS_SUPER_MAGIC: i64 = 0x9123_683E;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Store {
    Btrfs,
    Dir,
}

impl Store {
    /// The store of the filesystem `path` is on (it must exist).
    pub fn detect(path: &Path) -> Result<Store, String> {
        use std::os::unix::ffi::OsStrExt;
        let c = std::ffi::CString::new(path.as_os_str().as_bytes())
            .map_err(|_| format!("{}: a path with a NUL byte", path.display()))?;
        // SAFETY: `c` is a valid NUL-terminated path and `st` a plain C struct that
        // statfs fills in.
        let mut st: libc::statfs = unsafe { std::mem::zeroed() };
        if unsafe { libc::statfs(c.as_ptr(), &mut st) } != 0 {
            return Err(format!(
                "cannot read the filesystem of {}: {}",
                path.display(),
                std::io::Error::last_os_error()
            ));
        }
        #[allow(clippy::unnecessary_cast)]
        Ok(if st.f_type as i64 == BTRFS_SUPER_MAGIC {
            Store::Btrfs
        } else {
            Store::Dir
        })
    }

    /// LXC's name for it, as in `lxc.rootfs.path = btrfs:/...`.
    pub fn name(self) -> &'static str {
        match self {
            Store::Btrfs => "btrfs",
            Store::Dir => "dir",
        }
    }

    /// A new, empty root filesystem at `path`.
    pub fn create(self, path: &Path) -> HostResult<()> {
        match self {
            Store::Btrfs => run(crate::os::host_command("btrfs")
                .args(["subvolume", "create"])
                .arg(path)),
            Store::Dir => std::fs::create_dir(path)
                .map_err(|e| HostError::failed(format!("cannot create {}: {e}", path.display()))),
        }
    }

    /// `to` (which must not exist) becomes a copy of `from`: a btrfs snapshot, read-only
    /// when asked, when both are on btrfs; a full copy otherwise.
    pub fn copy(self, from: &Path, to: &Path, read_only: bool) -> HostResult<()> {
        if self == Store::Btrfs && is_subvolume(from) {
            let mut cmd = crate::os::host_command("btrfs");
            cmd.args(["subvolume", "snapshot"]);
            if read_only {
                cmd.arg("-r");
            }
            return run(cmd.arg(from).arg(to));
        }
        self.create(to)?;
        // `cp -a` keeps owners, modes, links, devices, xattrs; reflinks share data on
        // filesystems that can.
        let mut src = from.as_os_str().to_owned();
        src.push("/.");
        run(crate::os::host_command("cp")
            .args(["-a", "--reflink=auto"])
            .arg(src)
            .arg(to))
    }

    /// Removes a root filesystem (and everything under it).
    pub fn remove(self, path: &Path) -> HostResult<()> {
        if path.symlink_metadata().is_err() {
            return Ok(());
        }
        if self == Store::Btrfs && is_subvolume(path) {
            let delete = |p: &Path| {
                run(crate::os::host_command("btrfs")
                    .args(["subvolume", "delete"])
                    .arg(p))
            };
            return delete(path).or_else(|first| {
                // Subvolumes made inside the CT (Docker's btrfs driver, say) must go
                // first: nested ones, deepest first, then the root filesystem.
                let mut nested = nested_subvolumes(path);
                if nested.is_empty() {
                    return Err(first);
                }
                nested.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
                nested.iter().try_for_each(|p| delete(p))?;
                delete(path)
            });
        }
        std::fs::remove_dir_all(path)
            .map_err(|e| HostError::failed(format!("cannot remove {}: {e}", path.display())))
    }
}

/// The subvolumes below `root`'s own (not crossing into other filesystems).
fn nested_subvolumes(root: &Path) -> Vec<std::path::PathBuf> {
    use std::os::unix::fs::MetadataExt;
    let Ok(dev) = root.symlink_metadata().map(|m| m.dev()) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            let Ok(m) = e.path().symlink_metadata() else {
                continue;
            };
            if !m.is_dir() {
                continue;
            }
            // Each subvolume has its own device number.
            if is_subvolume(&e.path()) {
                out.push(e.path());
            } else if m.dev() != dev {
                continue;
            }
            stack.push(e.path());
        }
    }
    out
}

/// Removes `dir` and everything under it, btrfs subvolumes included (nested ones
/// first), as LXC's tools cannot: what a test or a benchmark leaves behind.
pub fn remove_tree(dir: &Path) -> HostResult<()> {
    let mut subvolumes = nested_subvolumes(dir);
    if is_subvolume(dir) {
        subvolumes.push(dir.to_path_buf());
    }
    subvolumes.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    for s in &subvolumes {
        run(crate::os::host_command("btrfs")
            .args(["subvolume", "delete"])
            .arg(s))?;
    }
    match std::fs::remove_dir_all(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(HostError::failed(format!(
            "cannot remove {}: {e}",
            dir.display()
        ))),
        _ => Ok(()),
    }
}

/// A btrfs subvolume's root directory has inode number 256 (on btrfs: another
/// filesystem's inode 256 is an ordinary directory).
pub fn is_subvolume(path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    path.symlink_metadata()
        .is_ok_and(|m| m.is_dir() && m.ino() == 256)
        && Store::detect(path) == Ok(Store::Btrfs)
}

/// Runs a tool, its error output in the error.
pub fn run(cmd: &mut Command) -> HostResult<()> {
    let out = cmd
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| HostError::failed(format!("cannot run {:?}: {e}", cmd.get_program())))?;
    if out.status.success() {
        return Ok(());
    }
    let words = String::from_utf8_lossy(&out.stderr).trim().to_string();
    Err(HostError::failed(format!(
        "{} {} failed ({}): {}",
        cmd.get_program().to_string_lossy(),
        cmd.get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(" "),
        out.status,
        if words.is_empty() {
            String::from_utf8_lossy(&out.stdout).trim().to_string()
        } else {
            words
        }
    )))
}
