//! A CT on the `lxc` backend: its settings as values in `phoenix.json` (the truth, as a
//! Proxmox CT's `.conf` is on Proxmox), and what is made from them, as Proxmox makes
//! them at each start: LXC's `config` and the guest's hostname and network files.

use std::fmt::Write as _;
use std::fs;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::store::Store;
use super::NetworkMode;
use crate::host::{HostError, HostResult, Network, Passthrough, Settings};

/// Everything phoenix knows of a CT beyond what LXC runs: `<ctid>/phoenix.json`, and the
/// same file in each snapshot (the CT as it was when the snapshot was taken).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Meta {
    pub settings: Settings,
    pub unprivileged: bool,
    /// Root disk size, GiB: recorded (btrfs subvolumes and directories share their
    /// filesystem's space).
    pub disk_gb: Option<u64>,
    #[serde(default)]
    pub passthrough: Passthrough,
    /// The snapshot the current state descends from.
    #[serde(default)]
    pub parent_snapshot: Option<String>,
    /// A task's lock (`create`, `snapshot`, `rollback`, `destroyed`): set while it runs.
    #[serde(default)]
    pub lock: Option<String>,
    /// In a snapshot's copy: when it was taken and what it says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<SnapshotMeta>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotMeta {
    pub description: String,
    pub snaptime: u64,
}

impl Meta {
    pub fn read(path: &Path) -> HostResult<Meta> {
        let bytes = crate::os::read_regular(path, 1 << 20)
            .map_err(|e| HostError::failed(format!("{}: {}", path.display(), e.message)))?;
        serde_json::from_slice(&bytes).map_err(|e| {
            HostError::failed(format!(
                "{} is not a phoenix CT record ({e}): move the CT aside or restore the file",
                path.display()
            ))
        })
    }

    pub fn write(&self, path: &Path) -> HostResult<()> {
        let mut bytes = serde_json::to_vec_pretty(self).expect("a Meta serializes");
        bytes.push(b'\n');
        crate::os::write_atomic(path, &bytes)
            .map_err(|e| HostError::failed(format!("cannot write {}: {e}", path.display())))
    }
}

/// What the config is made for: the host's cgroup layout and the network mode.
pub struct Target<'a> {
    pub name: &'a str,
    pub rootfs: &'a Path,
    pub store: Store,
    pub cgroup2: bool,
    pub network: NetworkMode,
    /// `lxc.idmap` base of unprivileged CTs (root's subordinate ids).
    pub idmap: Option<(u64, u64)>,
}

/// LXC's `config` for a CT with these settings.
pub fn render(meta: &Meta, t: &Target) -> String {
    let s = &meta.settings;
    let mut c = String::new();
    c.push_str(
        "# Made by phoenix from phoenix.json at every change: edits here are overwritten.\n",
    );
    let mut line = |k: &str, v: &str| {
        let _ = writeln!(c, "{k} = {v}");
    };
    line("lxc.include", "/usr/share/lxc/config/common.conf");
    if meta.unprivileged {
        line("lxc.include", "/usr/share/lxc/config/userns.conf");
    }
    let features = s.features.clone().unwrap_or_default();
    if features.get("nesting").is_some_and(|v| v == "1") {
        line("lxc.include", "/usr/share/lxc/config/nesting.conf");
        // Docker and systemd inside need their cgroups writable.
        line("lxc.mount.auto", "cgroup:rw:force");
    }
    line("lxc.arch", "linux64");
    line("lxc.uts.name", s.hostname.as_deref().unwrap_or(t.name));
    line(
        "lxc.rootfs.path",
        &format!("{}:{}", t.store.name(), t.rootfs.display()),
    );
    // systemd halts on SIGRTMIN+3 (LXC's default, SIGPWR, only reaches sigpwr.target).
    line("lxc.signal.halt", "SIGRTMIN+3");
    if let Some((uid, gid)) = t.idmap.filter(|_| meta.unprivileged) {
        line("lxc.idmap", &format!("u 0 {uid} 65536"));
        line("lxc.idmap", &format!("g 0 {gid} 65536"));
    }
    if s.onboot == Some(true) {
        line("lxc.start.auto", "1");
    }
    let cg = if t.cgroup2 {
        "lxc.cgroup2"
    } else {
        "lxc.cgroup"
    };
    if let Some(mb) = s.memory_mb {
        let key = if t.cgroup2 {
            "memory.max"
        } else {
            "memory.limit_in_bytes"
        };
        line(&format!("{cg}.{key}"), &format!("{}", mb * 1024 * 1024));
    }
    if let Some(cores) = s.cores {
        let quota = cores * 100_000;
        if t.cgroup2 {
            line(&format!("{cg}.cpu.max"), &format!("{quota} 100000"));
        } else {
            line(&format!("{cg}.cpu.cfs_period_us"), "100000");
            line(&format!("{cg}.cpu.cfs_quota_us"), &quota.to_string());
        }
    }
    for major in &meta.passthrough.char_majors {
        line(&format!("{cg}.devices.allow"), &format!("c {major}:* rwm"));
    }
    for node in &meta.passthrough.nodes {
        let rel = node.trim_start_matches('/');
        line(
            "lxc.mount.entry",
            &format!("{node} {rel} none bind,optional,create=file"),
        );
    }
    match (&s.network, t.network) {
        (_, NetworkMode::Host) | (None, _) => line("lxc.net.0.type", "none"),
        (Some(n), NetworkMode::Config) => {
            line("lxc.net.0.type", "veth");
            line("lxc.net.0.link", &n.bridge);
            line("lxc.net.0.name", &n.name);
            line("lxc.net.0.flags", "up");
            if let Some(mac) = &n.mac {
                line("lxc.net.0.hwaddr", &mac.to_ascii_lowercase());
            }
            if n.ip.contains('/') {
                line("lxc.net.0.ipv4.address", &n.ip);
                if let Some(gw) = &n.gw {
                    line("lxc.net.0.ipv4.gateway", gw);
                }
            }
        }
    }
    c
}

/// The guest's own files that follow its settings, written into its root filesystem
/// before each start as Proxmox does: `/etc/hostname`, the `127.0.1.1` line of
/// `/etc/hosts`, `/etc/network/interfaces` (only `lo` when the CT shares the host's
/// network: the host's interfaces are not the guest's to configure), and
/// `/etc/resolv.conf` from `resolv` ([`resolv_conf`]) unless the guest has
/// `/etc/.pve-ignore.resolv.conf` (Proxmox's way to keep its own).
pub fn write_guest_files(
    rootfs: &Path,
    meta: &Meta,
    mode: NetworkMode,
    resolv: Option<&str>,
) -> HostResult<()> {
    let io = |p: &Path, e: std::io::Error| {
        HostError::failed(format!("cannot write {}: {e}", p.display()))
    };
    let etc = rootfs.join("etc");
    if !etc.is_dir() {
        return Ok(());
    }
    // A path inside the guest that is a link could point anywhere on the host.
    let regular_or_absent = |p: &Path| {
        p.symlink_metadata()
            .map_or(true, |m| m.file_type().is_file())
    };
    let hostname = meta.settings.hostname.clone().unwrap_or_default();
    if !hostname.is_empty() {
        let p = etc.join("hostname");
        if regular_or_absent(&p) {
            fs::write(&p, format!("{hostname}\n")).map_err(|e| io(&p, e))?;
        }
        let p = etc.join("hosts");
        if regular_or_absent(&p) {
            let old = fs::read_to_string(&p).unwrap_or_default();
            let mut lines: Vec<String> = old
                .lines()
                .filter(|l| !l.starts_with("127.0.1.1"))
                .map(str::to_string)
                .collect();
            if !lines.iter().any(|l| l.starts_with("127.0.0.1")) {
                lines.insert(0, "127.0.0.1\tlocalhost".into());
            }
            lines.insert(1, format!("127.0.1.1\t{hostname}"));
            fs::write(&p, lines.join("\n") + "\n").map_err(|e| io(&p, e))?;
        }
    }
    if let Some(text) = resolv.filter(|_| !etc.join(".pve-ignore.resolv.conf").exists()) {
        let p = etc.join("resolv.conf");
        // A link (systemd-resolved's stub, say) is replaced, never followed: with a
        // static address the stub has no server to ask.
        if p.symlink_metadata()
            .is_ok_and(|m| m.file_type().is_symlink())
        {
            fs::remove_file(&p).map_err(|e| io(&p, e))?;
        }
        if regular_or_absent(&p) {
            fs::write(&p, text).map_err(|e| io(&p, e))?;
        }
    }
    let net_dir = etc.join("network");
    if net_dir.is_dir() {
        let p = net_dir.join("interfaces");
        if regular_or_absent(&p) {
            fs::write(&p, interfaces(meta.settings.network.as_ref(), mode))
                .map_err(|e| io(&p, e))?;
        }
    }
    Ok(())
}

/// The CT's `/etc/resolv.conf`, as Proxmox writes it when a CT has no DNS settings of its
/// own: the host's `nameserver`, `search` and `domain` lines (`host`). A CT in a network
/// namespace of its own cannot reach a resolver on the host's loopback (systemd-resolved's
/// 127.0.0.53), so then the servers behind it (`upstream`, resolved's
/// `/run/systemd/resolve/resolv.conf`) are used. `None`: no server the CT can use.
pub fn resolv_conf(host: &str, upstream: Option<&str>, own_netns: bool) -> Option<String> {
    let pick = |text: &str| -> (Vec<String>, Vec<String>) {
        let mut servers = Vec::new();
        let mut search = Vec::new();
        for l in text.lines().map(str::trim) {
            let mut w = l.split_whitespace();
            match (w.next(), w.next()) {
                (Some("nameserver"), Some(ns)) => {
                    let loopback = ns
                        .parse::<std::net::IpAddr>()
                        .is_ok_and(|ip| ip.is_loopback());
                    if !(own_netns && loopback) {
                        servers.push(ns.to_string());
                    }
                }
                (Some("search" | "domain"), Some(_)) => search.push(l.to_string()),
                _ => {}
            }
        }
        (servers, search)
    };
    let (mut servers, mut search) = pick(host);
    if servers.is_empty() {
        (servers, search) = pick(upstream?);
    }
    if servers.is_empty() {
        return None;
    }
    let mut s = String::from(
        "# made by phoenix from the host's resolv.conf at each start (/etc/.pve-ignore.resolv.conf keeps your own)\n",
    );
    for l in search {
        let _ = writeln!(s, "{l}");
    }
    for ns in servers {
        let _ = writeln!(s, "nameserver {ns}");
    }
    Some(s)
}

fn interfaces(net: Option<&Network>, mode: NetworkMode) -> String {
    let mut s = String::from(
        "# made by phoenix from the CT's network settings at each start\nauto lo\niface lo inet loopback\n",
    );
    let Some(n) = net.filter(|_| mode == NetworkMode::Config) else {
        return s;
    };
    let _ = write!(s, "\nauto {}\n", n.name);
    // A static address and its route LXC sets itself (lxc.net.0.ipv4.*).
    let method = if n.ip == "dhcp" { "dhcp" } else { "manual" };
    let _ = writeln!(s, "iface {} inet {method}", n.name);
    s
}

/// `lxc.uts.name` of a config LXC or another tool wrote: the hostname of a CT phoenix
/// did not make.
pub fn foreign_hostname(config: &str) -> Option<String> {
    config.lines().find_map(|l| {
        let (k, v) = l.split_once('=')?;
        (k.trim() == "lxc.uts.name").then(|| v.trim().to_string())
    })
}

/// Settings the `lxc` backend cannot apply: Proxmox options it has no LXC key for.
pub fn unsupported(settings: &Settings) -> Option<String> {
    let keys: Vec<&str> = settings
        .extra
        .keys()
        .map(String::as_str)
        .chain(settings.delete.iter().map(String::as_str))
        .collect();
    (!keys.is_empty()).then(|| {
        format!(
            "the lxc backend has no setting {}: it takes hostname, memory, cores, net0, onboot, features and description",
            keys.join(", ")
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn meta() -> Meta {
        Meta {
            settings: Settings {
                hostname: Some("web".into()),
                memory_mb: Some(512),
                cores: Some(2),
                network: Some(Network {
                    name: "eth0".into(),
                    bridge: "br0".into(),
                    ip: "10.0.0.5/24".into(),
                    gw: Some("10.0.0.1".into()),
                    mac: Some("BC:24:11:00:00:01".into()),
                }),
                onboot: Some(true),
                features: Some([("nesting".to_string(), "1".to_string())].into()),
                ..Settings::default()
            },
            passthrough: Passthrough {
                char_majors: vec![195],
                nodes: vec!["/dev/nvidia0".into()],
            },
            ..Meta::default()
        }
    }

    #[test]
    fn settings_become_lxc_keys() {
        let rootfs = PathBuf::from("/var/lib/lxc/950/rootfs");
        let t = Target {
            name: "950",
            rootfs: &rootfs,
            store: Store::Btrfs,
            cgroup2: true,
            network: NetworkMode::Config,
            idmap: None,
        };
        let c = render(&meta(), &t);
        for want in [
            "lxc.uts.name = web\n",
            "lxc.rootfs.path = btrfs:/var/lib/lxc/950/rootfs\n",
            "lxc.include = /usr/share/lxc/config/nesting.conf\n",
            "lxc.start.auto = 1\n",
            "lxc.cgroup2.memory.max = 536870912\n",
            "lxc.cgroup2.cpu.max = 200000 100000\n",
            "lxc.cgroup2.devices.allow = c 195:* rwm\n",
            "lxc.mount.entry = /dev/nvidia0 dev/nvidia0 none bind,optional,create=file\n",
            "lxc.net.0.type = veth\n",
            "lxc.net.0.link = br0\n",
            "lxc.net.0.hwaddr = bc:24:11:00:00:01\n",
            "lxc.net.0.ipv4.address = 10.0.0.5/24\n",
            "lxc.net.0.ipv4.gateway = 10.0.0.1\n",
        ] {
            assert!(c.contains(want), "missing {want:?} in\n{c}");
        }
        assert!(!c.contains("lxc.idmap"));
        let v1 = render(
            &meta(),
            &Target {
                cgroup2: false,
                network: NetworkMode::Host,
                ..t
            },
        );
        assert!(
            v1.contains("lxc.cgroup.memory.limit_in_bytes = 536870912\n"),
            "{v1}"
        );
        assert!(
            v1.contains("lxc.cgroup.cpu.cfs_quota_us = 200000\n"),
            "{v1}"
        );
        assert!(v1.contains("lxc.net.0.type = none\n"), "{v1}");
        assert!(!v1.contains("veth"), "{v1}");
    }

    #[test]
    fn unprivileged_cts_get_an_id_map() {
        let rootfs = PathBuf::from("/x/rootfs");
        let m = Meta {
            unprivileged: true,
            ..meta()
        };
        let c = render(
            &m,
            &Target {
                name: "9",
                rootfs: &rootfs,
                store: Store::Dir,
                cgroup2: true,
                network: NetworkMode::Config,
                idmap: Some((100000, 200000)),
            },
        );
        assert!(
            c.contains("lxc.idmap = u 0 100000 65536\nlxc.idmap = g 0 200000 65536\n"),
            "{c}"
        );
        assert!(c.contains("lxc.rootfs.path = dir:/x/rootfs\n"));
    }

    #[test]
    fn guest_files_follow_the_settings() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::create_dir_all(root.join("etc/network")).unwrap();
        fs::write(
            root.join("etc/hosts"),
            "127.0.0.1\tlocalhost\n127.0.1.1\told\n",
        )
        .unwrap();
        write_guest_files(root, &meta(), NetworkMode::Config, None).unwrap();
        assert_eq!(
            fs::read_to_string(root.join("etc/hostname")).unwrap(),
            "web\n"
        );
        assert_eq!(
            fs::read_to_string(root.join("etc/hosts")).unwrap(),
            "127.0.0.1\tlocalhost\n127.0.1.1\tweb\n"
        );
        let ifaces = fs::read_to_string(root.join("etc/network/interfaces")).unwrap();
        assert!(
            ifaces.contains("auto eth0\niface eth0 inet manual\n"),
            "{ifaces}"
        );
        write_guest_files(root, &meta(), NetworkMode::Host, None).unwrap();
        let ifaces = fs::read_to_string(root.join("etc/network/interfaces")).unwrap();
        assert!(!ifaces.contains("eth0"), "{ifaces}");
        // A link planted in the guest is not followed out of it.
        fs::remove_file(root.join("etc/hostname")).unwrap();
        std::os::unix::fs::symlink("/tmp/phoenix-not-here", root.join("etc/hostname")).unwrap();
        write_guest_files(root, &meta(), NetworkMode::Host, None).unwrap();
        assert!(!Path::new("/tmp/phoenix-not-here").exists());
    }

    #[test]
    fn the_guest_resolves_names_with_the_hosts_servers() {
        let host = "# from DHCP\nsearch example.org\nnameserver 10.255.255.53\noptions edns0\n";
        let text = resolv_conf(host, None, true).unwrap();
        assert!(
            text.ends_with("search example.org\nnameserver 10.255.255.53\n"),
            "{text}"
        );
        // systemd-resolved's stub is the host's own: a CT with its own network uses the
        // servers behind it; one sharing the host's network can use the stub.
        let stub = "nameserver 127.0.0.53\noptions edns0 trust-ad\nsearch .\n";
        let upstream = "nameserver 192.0.2.53\nnameserver 2001:db8::53\n";
        let text = resolv_conf(stub, Some(upstream), true).unwrap();
        assert!(
            text.ends_with("nameserver 192.0.2.53\nnameserver 2001:db8::53\n"),
            "{text}"
        );
        assert!(!text.contains("127.0.0.53"), "{text}");
        assert!(resolv_conf(stub, Some(upstream), false)
            .unwrap()
            .contains("nameserver 127.0.0.53\n"));
        assert_eq!(resolv_conf(stub, None, true), None);
        assert_eq!(resolv_conf("", None, false), None);

        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::create_dir_all(root.join("etc")).unwrap();
        let written = resolv_conf(host, None, true).unwrap();
        // The guest's link to resolved's stub is replaced, not followed.
        std::os::unix::fs::symlink(
            "../run/systemd/resolve/stub-resolv.conf",
            root.join("etc/resolv.conf"),
        )
        .unwrap();
        write_guest_files(root, &meta(), NetworkMode::Config, Some(&written)).unwrap();
        let p = root.join("etc/resolv.conf");
        assert!(p.symlink_metadata().unwrap().file_type().is_file());
        assert_eq!(fs::read_to_string(&p).unwrap(), written);
        // Proxmox's marker keeps the guest's own.
        fs::write(&p, "nameserver 9.9.9.9\n").unwrap();
        fs::write(root.join("etc/.pve-ignore.resolv.conf"), "").unwrap();
        write_guest_files(root, &meta(), NetworkMode::Config, Some(&written)).unwrap();
        assert_eq!(fs::read_to_string(&p).unwrap(), "nameserver 9.9.9.9\n");
    }
}
