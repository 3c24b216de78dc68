//! A base node's `template`, on a host without Proxmox: a root filesystem tarball by path,
//! or a Proxmox OS template name (`local:vztmpl/ubuntu-24.04-standard_24.04-2_amd64.tar.zst`)
//! made from a `debootstrap` of the release it names, cached once per release.
//!
//! | template name | release | mirror (override) | components | archive key |
//! |---|---|---|---|---|
//! | `debian-12-*`, `debian-13-*` | bookworm, trixie | `http://deb.debian.org/debian` (`PHOENIX_LXC_MIRROR`) | main | the host's `debian-archive-keyring` (debootstrap's default) |
//! | `ubuntu-22.04-*`, `ubuntu-24.04-*` | jammy, noble | `http://archive.ubuntu.com/ubuntu` (`PHOENIX_LXC_UBUNTU_MIRROR`) | main, universe (Docker's `docker.io` is in universe) | the host's `/usr/share/keyrings/ubuntu-archive-keyring.gpg`, else the copy phoenix carries |
//!
//! Signatures are always checked. Debian's debootstrap knows an Ubuntu release only when
//! it is newer than the release (bookworm's has no `noble`), and every Ubuntu script is
//! the same one (`gutsy`, to which the others link), so an Ubuntu release without a
//! script of its name is made with `gutsy`'s. Debian has no `ubuntu-keyring` package:
//! phoenix carries Ubuntu's archive keyring (`pkg/ubuntu-archive-keyring.gpg`, byte for
//! byte the file of `ubuntu-keyring` 2023.11.28.1; the 2018 signing key
//! F6ECB3762474EDA9D21B7022871920D1991BC93C signs every supported release) and writes it
//! into the cache when the host has none.
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
/// Ubuntu's, unless `PHOENIX_LXC_UBUNTU_MIRROR` names another.
pub const DEFAULT_UBUNTU_MIRROR: &str = "http://archive.ubuntu.com/ubuntu";

/// Ubuntu's archive keyring, as the `ubuntu-keyring` package installs it.
const UBUNTU_KEYRING: &[u8] = include_bytes!("../../../pkg/ubuntu-archive-keyring.gpg");
const HOST_UBUNTU_KEYRING: &str = "/usr/share/keyrings/ubuntu-archive-keyring.gpg";
const DEBOOTSTRAP_SCRIPTS: &str = "/usr/share/debootstrap/scripts";

/// What a minimal system needs to boot in a container and take part in the network:
/// systemd as init, ifupdown with a DHCP client, and TLS roots.
const PACKAGES: &str = "systemd-sysv,ifupdown,isc-dhcp-client,iproute2,netbase,ca-certificates";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Distro {
    Debian,
    Ubuntu,
}

/// A release phoenix makes with debootstrap.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Release {
    pub distro: Distro,
    /// Its code name: debootstrap's suite, and the cache's name.
    pub suite: &'static str,
}

/// Releases by their Proxmox template prefix.
const RELEASES: [(&str, Release); 4] = [
    ("debian-12", Release::debian("bookworm")),
    ("debian-13", Release::debian("trixie")),
    ("ubuntu-22.04", Release::ubuntu("jammy")),
    ("ubuntu-24.04", Release::ubuntu("noble")),
];

impl Release {
    const fn debian(suite: &'static str) -> Release {
        Release {
            distro: Distro::Debian,
            suite,
        }
    }
    const fn ubuntu(suite: &'static str) -> Release {
        Release {
            distro: Distro::Ubuntu,
            suite,
        }
    }
}

/// Where a CT's root filesystem comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// A root filesystem tarball (any compression `tar` reads).
    Tarball(PathBuf),
    /// A release, debootstrapped into the cache.
    Debootstrap(Release),
}

/// The package mirrors, per distribution.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mirrors {
    pub debian: String,
    pub ubuntu: String,
}

/// Resolves a node's `template`: an existing file (by path, or by a Proxmox volume name
/// under `vztmpl_dir`), else a release by name, else what to provide.
pub fn resolve(template: &str, vztmpl_dir: &Path) -> Result<Source, String> {
    let path = Path::new(template);
    if path.is_absolute() {
        return if path.is_file() {
            Ok(Source::Tarball(path.to_path_buf()))
        } else {
            Err(format!(
                "OS template {template} is not a file on this host: give `template` an existing root filesystem tarball, or a template name the lxc backend makes with debootstrap ({})",
                known()
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
        .map(|&(_, release)| Source::Debootstrap(release))
        .ok_or_else(|| {
            format!(
                "the lxc backend cannot make OS template `{template}`: it debootstraps {} only. Put the tarball at {} or give `template` the path of a root filesystem tarball",
                known(),
                local.display()
            )
        })
}

/// The template names phoenix makes, for messages.
fn known() -> String {
    let names: Vec<String> = RELEASES
        .iter()
        .map(|(prefix, r)| format!("{prefix} ({})", r.suite))
        .collect();
    names.join(", ")
}

/// The cached root filesystem of a release, made now if it is not there.
pub fn cached(cache: &Path, release: Release, mirrors: &Mirrors) -> HostResult<PathBuf> {
    let name = release.suite;
    let done = cache.join(name);
    if done.is_dir() {
        return Ok(done);
    }
    fs::create_dir_all(cache)
        .map_err(|e| HostError::failed(format!("cannot create {}: {e}", cache.display())))?;
    // The cache's own filesystem, which need not be the containers'.
    let store = Store::detect(cache).map_err(HostError::failed)?;
    let lock_path = cache.join(format!("{name}.lock"));
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
    let partial = cache.join(format!("{name}.partial"));
    store.remove(&partial)?;
    store.create(&partial)?;
    let plan = debootstrap(cache, release, mirrors)?;
    tracing::info!(release = name, mirror = %plan.mirror, cache = %cache.display(), "debootstrap: making the OS cache");
    store::run(
        crate::os::host_command("debootstrap")
            .args(&plan.options)
            .arg(name)
            .arg(&partial)
            .arg(&plan.mirror)
            .args(&plan.script),
    )
    .map_err(|e| {
        HostError::failed(format!(
            "cannot make the {name} OS cache with debootstrap (is the package mirror {} reachable? {} names another): {}",
            plan.mirror, plan.mirror_var, e.message
        ))
    })?;
    prepare(&partial, release, &plan.mirror)?;
    fs::rename(&partial, &done).map_err(|e| {
        HostError::failed(format!(
            "cannot rename {} to {}: {e}",
            partial.display(),
            done.display()
        ))
    })?;
    Ok(done)
}

/// One debootstrap run: its options, mirror and script.
#[derive(Debug, PartialEq, Eq)]
struct Debootstrap {
    options: Vec<String>,
    mirror: String,
    mirror_var: &'static str,
    /// The script, when the suite's own name would not find one.
    script: Option<PathBuf>,
}

/// How to debootstrap `release`: for Ubuntu, its components, the archive keyring (the
/// host's, else phoenix's copy written into `cache`) and, where debootstrap has no script
/// of the suite's name, Ubuntu's one script.
fn debootstrap(cache: &Path, release: Release, mirrors: &Mirrors) -> HostResult<Debootstrap> {
    let mut options = vec![
        "--variant=minbase".to_string(),
        "--include".into(),
        PACKAGES.into(),
    ];
    match release.distro {
        Distro::Debian => Ok(Debootstrap {
            options,
            mirror: mirrors.debian.clone(),
            mirror_var: "PHOENIX_LXC_MIRROR",
            script: None,
        }),
        Distro::Ubuntu => {
            let keyring = ubuntu_keyring(cache)?;
            options.push("--components=main,universe".into());
            options.push(format!("--keyring={}", keyring.display()));
            let scripts = Path::new(DEBOOTSTRAP_SCRIPTS);
            let script = if scripts.join(release.suite).is_file() {
                None
            } else if scripts.join("gutsy").is_file() {
                Some(scripts.join("gutsy"))
            } else {
                return Err(HostError::failed(format!(
                    "debootstrap has no script for Ubuntu ({} has neither {} nor gutsy): install a debootstrap that knows Ubuntu",
                    scripts.display(),
                    release.suite
                )));
            };
            Ok(Debootstrap {
                options,
                mirror: mirrors.ubuntu.clone(),
                mirror_var: "PHOENIX_LXC_UBUNTU_MIRROR",
                script,
            })
        }
    }
}

/// Ubuntu's archive keyring: the host's, else phoenix's copy, written into `cache`.
fn ubuntu_keyring(cache: &Path) -> HostResult<PathBuf> {
    let host = Path::new(HOST_UBUNTU_KEYRING);
    if host.is_file() {
        return Ok(host.to_path_buf());
    }
    let ours = cache.join("ubuntu-archive-keyring.gpg");
    if fs::read(&ours).is_ok_and(|k| k == UBUNTU_KEYRING) {
        return Ok(ours);
    }
    crate::os::write_atomic(&ours, UBUNTU_KEYRING)
        .map_err(|e| HostError::failed(format!("cannot write {}: {e}", ours.display())))?;
    Ok(ours)
}

/// Makes a debootstrapped tree a container's: no apt package cache, a network setup that
/// [`super::conf::write_guest_files`] completes at each start, and for Ubuntu the
/// `-updates` and `-security` pockets beside the release's, as Proxmox's Ubuntu
/// templates have them (debootstrap writes only the release's).
fn prepare(root: &Path, release: Release, mirror: &str) -> HostResult<()> {
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
    if release.distro == Distro::Ubuntu {
        let sources = root.join("etc/apt/sources.list");
        fs::write(&sources, ubuntu_sources(release.suite, mirror)).map_err(|e| io(&sources, e))?;
    }
    Ok(())
}

fn ubuntu_sources(suite: &str, mirror: &str) -> String {
    ["", "-updates", "-security"]
        .iter()
        .map(|pocket| format!("deb {mirror} {suite}{pocket} main universe\n"))
        .collect()
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
            Ok(Source::Debootstrap(Release::debian("bookworm")))
        );
        assert_eq!(
            resolve("debian-13-standard_13.1-2_amd64.tar.zst", vz),
            Ok(Source::Debootstrap(Release::debian("trixie")))
        );
        // The example fleet's template, and the Ubuntu LTS before it.
        assert_eq!(
            resolve(
                "local:vztmpl/ubuntu-24.04-standard_24.04-2_amd64.tar.zst",
                vz
            ),
            Ok(Source::Debootstrap(Release::ubuntu("noble")))
        );
        assert_eq!(
            resolve("ubuntu-22.04-standard_22.04-1_amd64.tar.zst", vz),
            Ok(Source::Debootstrap(Release::ubuntu("jammy")))
        );
        let other =
            resolve("local:vztmpl/alpine-3.20-default_20240908_amd64.tar.xz", vz).unwrap_err();
        assert!(
            other.contains("debian-12 (bookworm), debian-13 (trixie), ubuntu-22.04 (jammy), ubuntu-24.04 (noble) only"),
            "{other}"
        );
        assert!(
            other.contains("alpine-3.20-default_20240908_amd64.tar.xz"),
            "{other}"
        );
        // debian-120 is not debian-12, ubuntu-24.10 is not ubuntu-24.04.
        assert!(resolve("debian-120.tar", vz).is_err());
        assert!(resolve("ubuntu-24.10-standard_24.10-1_amd64.tar.zst", vz).is_err());
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

    #[test]
    fn ubuntu_is_debootstrapped_from_its_mirror_with_universe_and_its_signatures_checked() {
        let cache = tempfile::tempdir().unwrap();
        let mirrors = Mirrors {
            debian: "http://deb.example/debian".into(),
            ubuntu: "http://ubuntu.example/ubuntu".into(),
        };
        let plan = debootstrap(cache.path(), Release::ubuntu("noble"), &mirrors).unwrap();
        assert_eq!(plan.mirror, "http://ubuntu.example/ubuntu");
        assert!(plan
            .options
            .contains(&"--components=main,universe".to_string()));
        assert!(!plan.options.iter().any(|o| o.contains("no-check-gpg")));
        let keyring = plan
            .options
            .iter()
            .find_map(|o| o.strip_prefix("--keyring="))
            .expect("a keyring");
        // The host's, or phoenix's copy: Ubuntu's archive keyring either way.
        let bytes = fs::read(keyring).unwrap();
        if !Path::new(HOST_UBUNTU_KEYRING).is_file() {
            assert_eq!(bytes, UBUNTU_KEYRING);
            assert!(keyring.starts_with(cache.path().to_str().unwrap()));
        }
        // Where debootstrap has no `noble` (Debian 12's), Ubuntu's one script.
        let scripts = Path::new(DEBOOTSTRAP_SCRIPTS);
        if scripts.join("gutsy").is_file() && !scripts.join("noble").is_file() {
            assert_eq!(plan.script, Some(scripts.join("gutsy")));
        }
        let debian = debootstrap(cache.path(), Release::debian("bookworm"), &mirrors).unwrap();
        assert_eq!(debian.mirror, "http://deb.example/debian");
        assert_eq!(debian.script, None);
        assert!(!debian.options.iter().any(|o| o.starts_with("--keyring")));
        assert_eq!(
            ubuntu_sources("noble", "http://ubuntu.example/ubuntu"),
            "deb http://ubuntu.example/ubuntu noble main universe\n\
             deb http://ubuntu.example/ubuntu noble-updates main universe\n\
             deb http://ubuntu.example/ubuntu noble-security main universe\n"
        );
    }

    /// The keyring phoenix carries is Ubuntu's: its 2018 archive signing key, which
    /// signs every supported release.
    #[test]
    fn the_carried_keyring_holds_ubuntus_archive_signing_key() {
        // An OpenPGP v4 fingerprint is the SHA-1 of 0x99, the key packet's length (two
        // bytes) and its body; the keyring is a sequence of packets.
        let fingerprints = primary_key_fingerprints(UBUNTU_KEYRING);
        assert!(
            fingerprints.contains(&"F6ECB3762474EDA9D21B7022871920D1991BC93C".to_string()),
            "{fingerprints:?}"
        );
        // Byte for byte the keyring of ubuntu-keyring 2023.11.28.1 (its sha256 in the
        // commit that added it): the 2012 archive and CD image keys beside the 2018 one.
        assert_eq!(fingerprints.len(), 3, "{fingerprints:?}");
    }

    fn primary_key_fingerprints(mut bytes: &[u8]) -> Vec<String> {
        let mut out = Vec::new();
        while let Some((&head, rest)) = bytes.split_first() {
            assert!(head & 0x80 != 0, "not an OpenPGP packet");
            let (tag, len, rest) = if head & 0x40 != 0 {
                let (len, rest) = match rest[0] {
                    o @ 0..=191 => (o as usize, &rest[1..]),
                    o @ 192..=223 => (
                        (((o as usize) - 192) << 8) + rest[1] as usize + 192,
                        &rest[2..],
                    ),
                    _ => (
                        u32::from_be_bytes(rest[1..5].try_into().unwrap()) as usize,
                        &rest[5..],
                    ),
                };
                (head & 0x3f, len, rest)
            } else {
                let n = [1, 2, 4][(head & 3) as usize];
                let len = rest[..n].iter().fold(0usize, |l, &b| l << 8 | b as usize);
                ((head >> 2) & 0x0f, len, &rest[n..])
            };
            let (body, next) = rest.split_at(len);
            if tag == 6 {
                let mut data = vec![0x99, (len >> 8) as u8, len as u8];
                data.extend_from_slice(body);
                out.push(sha1(&data).iter().map(|b| format!("{b:02X}")).collect());
            }
            bytes = next;
        }
        out
    }

    /// SHA-1 (FIPS 180-4), for OpenPGP v4 fingerprints only.
    fn sha1(data: &[u8]) -> [u8; 20] {
        let mut h: [u32; 5] = [0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0];
        let mut msg = data.to_vec();
        msg.push(0x80);
        while msg.len() % 64 != 56 {
            msg.push(0);
        }
        msg.extend_from_slice(&((data.len() as u64) * 8).to_be_bytes());
        for chunk in msg.chunks(64) {
            let mut w = [0u32; 80];
            for i in 0..16 {
                w[i] = u32::from_be_bytes(chunk[4 * i..4 * i + 4].try_into().unwrap());
            }
            for i in 16..80 {
                w[i] = (w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16]).rotate_left(1);
            }
            let [mut a, mut b, mut c, mut d, mut e] = h;
            for (i, wi) in w.iter().enumerate() {
                let (f, k) = match i {
                    0..=19 => ((b & c) | (!b & d), 0x5A827999),
                    20..=39 => (b ^ c ^ d, 0x6ED9EBA1),
                    40..=59 => ((b & c) | (b & d) | (c & d), 0x8F1BBCDC),
                    _ => (b ^ c ^ d, 0xCA62C1D6),
                };
                let t = a
                    .rotate_left(5)
                    .wrapping_add(f)
                    .wrapping_add(e)
                    .wrapping_add(k)
                    .wrapping_add(*wi);
                (e, d, c, b, a) = (d, c, b.rotate_left(30), a, t);
            }
            for (x, y) in h.iter_mut().zip([a, b, c, d, e]) {
                *x = x.wrapping_add(y);
            }
        }
        let mut out = [0u8; 20];
        for (i, x) in h.iter().enumerate() {
            out[4 * i..4 * i + 4].copy_from_slice(&x.to_be_bytes());
        }
        out
    }

    #[test]
    fn sha1_is_sha1() {
        let hex = |d: [u8; 20]| d.iter().map(|b| format!("{b:02x}")).collect::<String>();
        assert_eq!(
            hex(sha1(b"abc")),
            "a9993e364706816aba3e25717850c26c9cd0d89d"
        );
        assert_eq!(hex(sha1(b"")), "da39a3ee5e6b4b0d3255bfef95601890afd80709");
    }
}
