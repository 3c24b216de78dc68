//! A base node's `template`, on a host without Proxmox: a root filesystem tarball by path,
//! or a Proxmox OS template name (`local:vztmpl/debian-12-standard_12.7-1_amd64.tar.zst`)
//! made from a `debootstrap` of the Debian release it names, cached once per release.
//!
//! The cache is `<cache>/<release>` (a btrfs subvolume where the cache is on btrfs, so a
//! new CT's root filesystem is a snapshot of it), made under an `flock` on
//! `<cache>/<release>.lock` into `<release>.partial` and renamed when complete: an
//! interrupted debootstrap leaves nothing that a later run takes for a cache.

use std::fs;
use std::path::{Path, PathBuf};

use super::store::{self, Store};
use crate::host::{HostError, HostResult};

/// Debian's mirror, unless `PHOENIX_LXC_MIRROR` names another.
pub const DEFAULT_MIRROR: &str = "http://deb.debian.org/debian";

/// What a minimal Debian needs to boot in a container and take part in the network:
/// systemd as init, ifupdown with a DHCP client, and TLS roots.
const PACKAGES: &str = "systemd-sysv,ifupdown,isc-dhcp-client,iproute2,netbase,ca-certificates";

/// Where a CT's root filesystem comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// A root filesystem tarball (any compression `tar` reads).
    Tarball(PathBuf),
    /// A Debian release, debootstrapped into the cache.
    Debian { release: &'static str },
}

/// Debian releases by their Proxmox template prefix.
const RELEASES: [(&str, &str); 2] = [("debian-12", "bookworm"), ("debian-13", "trixie")];

/// Resolves a node's `template`: an existing file (by path, or by a Proxmox volume name
/// under `vztmpl_dir`), else a Debian release by name, else what to provide.
pub fn resolve(template: &str, vztmpl_dir: &Path) -> Result<Source, String> {
    let path = Path::new(template);
    if path.is_absolute() {
        return if path.is_file() {
            Ok(Source::Tarball(path.to_path_buf()))
        } else {
            Err(format!(
                "OS template {template} is not a file on this host: give `template` an existing root filesystem tarball, or a debian-12/debian-13 template name (made with debootstrap)"
            ))
        };
    }
    let name = template
        .rsplit_once(":vztmpl/")
        .map_or(template, |(_, n)| n)
        .rsplit('/')
        .next()
        .unwrap_or(template);
    let local = vztmpl_dir.join(name);
    if !name.is_empty() && local.is_file() {
        return Ok(Source::Tarball(local));
    }
    RELEASES
        .iter()
        .find(|(prefix, _)| {
            name.strip_prefix(prefix)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with(['-', '_', '.']))
        })
        .map(|&(_, release)| Source::Debian { release })
        .ok_or_else(|| {
            format!(
                "the lxc backend cannot make OS template `{template}`: it debootstraps debian-12 (bookworm) and debian-13 (trixie) only. Put the tarball at {} or give `template` the path of a root filesystem tarball",
                local.display()
            )
        })
}

/// The cached root filesystem of a Debian release, made now if it is not there.
pub fn debian(cache: &Path, release: &str, mirror: &str) -> HostResult<PathBuf> {
    let done = cache.join(release);
    if done.is_dir() {
        return Ok(done);
    }
    fs::create_dir_all(cache)
        .map_err(|e| HostError::failed(format!("cannot create {}: {e}", cache.display())))?;
    // The cache's own filesystem, which need not be the containers'.
    let store = Store::detect(cache).map_err(HostError::failed)?;
    let lock_path = cache.join(format!("{release}.lock"));
    let lock = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| HostError::failed(format!("cannot open {}: {e}", lock_path.display())))?;
    // Another build making the same release: wait for it, then use its work.
    lock.lock()
        .map_err(|e| HostError::failed(format!("cannot lock {}: {e}", lock_path.display())))?;
    if done.is_dir() {
        return Ok(done);
    }
    let partial = cache.join(format!("{release}.partial"));
    store.remove(&partial)?;
    store.create(&partial)?;
    tracing::info!(release, mirror, cache = %cache.display(), "debootstrap: making the OS cache");
    store::run(
        crate::os::host_command("debootstrap")
            .args(["--variant=minbase", "--include", PACKAGES, release])
            .arg(&partial)
            .arg(mirror),
    )
    .map_err(|e| {
        HostError::failed(format!(
            "cannot make the {release} OS cache with debootstrap (is the package mirror {mirror} reachable? PHOENIX_LXC_MIRROR names another): {}",
            e.message
        ))
    })?;
    prepare(&partial)?;
    fs::rename(&partial, &done).map_err(|e| {
        HostError::failed(format!(
            "cannot rename {} to {}: {e}",
            partial.display(),
            done.display()
        ))
    })?;
    Ok(done)
}

/// Makes a debootstrapped tree a container's: no apt package cache, a network setup that
/// [`super::conf::write_guest_files`] completes at each start.
fn prepare(root: &Path) -> HostResult<()> {
    let io = |p: &Path, e: std::io::Error| HostError::failed(format!("{}: {e}", p.display()));
    let archives = root.join("var/cache/apt/archives");
    if let Ok(entries) = fs::read_dir(&archives) {
        for e in entries.flatten() {
            if e.path().extension().is_some_and(|x| x == "deb") {
                fs::remove_file(e.path()).map_err(|err| io(&e.path(), err))?;
            }
        }
    }
    let machine_id = root.join("etc/machine-id");
    // Empty: systemd gives each CT its own at first boot.
    fs::write(&machine_id, b"").map_err(|e| io(&machine_id, e))?;
    Ok(())
}

/// Unpacks a tarball into an empty root filesystem.
pub fn extract(tarball: &Path, into: &Path) -> HostResult<()> {
    store::run(
        crate::os::host_command("tar")
            .args([
                "--extract",
                "--numeric-owner",
                "--preserve-permissions",
                "--xattrs",
            ])
            .arg("--file")
            .arg(tarball)
            .arg("--directory")
            .arg(into),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_resolve_to_a_file_or_a_release() {
        let dir = tempfile::tempdir().unwrap();
        let vz = dir.path();
        assert_eq!(
            resolve("local:vztmpl/debian-12-standard_12.7-1_amd64.tar.zst", vz),
            Ok(Source::Debian {
                release: "bookworm"
            })
        );
        assert_eq!(
            resolve("debian-13-standard_13.1-2_amd64.tar.zst", vz),
            Ok(Source::Debian { release: "trixie" })
        );
        let ubuntu = resolve(
            "local:vztmpl/ubuntu-24.04-standard_24.04-2_amd64.tar.zst",
            vz,
        )
        .unwrap_err();
        assert!(
            ubuntu.contains("debian-12 (bookworm) and debian-13 (trixie) only"),
            "{ubuntu}"
        );
        assert!(
            ubuntu.contains("ubuntu-24.04-standard_24.04-2_amd64.tar.zst"),
            "{ubuntu}"
        );
        // debian-120 is not debian-12.
        assert!(resolve("debian-120.tar", vz).is_err());
        // A tarball the host has wins over debootstrap.
        let tar = vz.join("debian-12-standard_12.7-1_amd64.tar.zst");
        fs::write(&tar, b"").unwrap();
        assert_eq!(
            resolve("local:vztmpl/debian-12-standard_12.7-1_amd64.tar.zst", vz),
            Ok(Source::Tarball(tar.clone()))
        );
        assert_eq!(resolve(tar.to_str().unwrap(), vz), Ok(Source::Tarball(tar)));
        let missing = resolve("/nowhere/rootfs.tar.gz", vz).unwrap_err();
        assert!(
            missing.contains("/nowhere/rootfs.tar.gz is not a file"),
            "{missing}"
        );
    }
}
