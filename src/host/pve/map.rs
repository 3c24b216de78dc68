//! phoenix's values ↔ a Proxmox CT config: how [`Settings`], [`Passthrough`] and
//! [`CtInfo`] are written into and read out of a [`ConfFile`]. The model writes with it
//! and the `pve` backend reads the same files with it.
//!
//! | value | config key |
//! |---|---|
//! | hostname, memory_mb, cores, onboot | `hostname`, `memory`, `cores`, `onboot` |
//! | network | `net0: name=..,bridge=..,gw=..,hwaddr=..,ip=..,type=veth` |
//! | features | `features` (a set; empty removes the key) |
//! | managed | `phoenix` in `tags` (other tags kept) |
//! | store_template | `phoenix-store` in `tags` |
//! | description | the `#` lines |
//! | disk size | `size=` of `rootfs` |
//! | passthrough | `lxc.cgroup2.devices.allow: c <major>:* rwm`, `lxc.mount.entry: /dev/x dev/x none bind,optional,create=file` |

use std::collections::BTreeMap;

use super::conf::{ConfFile, Section};
use super::props::{self, Features, NetConf, Tags};
use crate::host::{
    CtInfo, Ctid, Network, Passthrough, Settings, SnapshotInfo, MANAGED_TAG, STORE_TAG,
};

const DEVICE_ALLOW: &str = "lxc.cgroup2.devices.allow";
const MOUNT_ENTRY: &str = "lxc.mount.entry";

/// Whether a raw `lxc.*` entry is one of the device lines phoenix writes.
pub fn is_passthrough_entry(key: &str, value: &str) -> bool {
    (key == DEVICE_ALLOW && value.starts_with("c ") && value.ends_with(":* rwm"))
        || (key == MOUNT_ENTRY && value.starts_with("/dev/nvidia"))
}

/// The raw `lxc.*` entries of a passthrough.
pub fn passthrough_entries(p: &Passthrough) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = p
        .char_majors
        .iter()
        .map(|m| (DEVICE_ALLOW.to_string(), format!("c {m}:* rwm")))
        .collect();
    for node in &p.nodes {
        let create = if node.ends_with("-caps") {
            "dir"
        } else {
            "file"
        };
        out.push((
            MOUNT_ENTRY.to_string(),
            format!(
                "{node} {} none bind,optional,create={create}",
                node.trim_start_matches('/')
            ),
        ));
    }
    out
}

fn read_passthrough(section: &Section) -> Passthrough {
    let mut p = Passthrough::default();
    // `devN` entries (pve-container 5.0.7+) name the nodes; Proxmox derives the rules.
    for (k, v) in section.keys() {
        if k.strip_prefix("dev")
            .is_some_and(|n| n.parse::<u32>().is_ok())
        {
            if let Ok(d) = props::DevConf::parse(v) {
                if d.path.starts_with("/dev/nvidia") {
                    p.nodes.push(d.path);
                }
            }
        }
    }
    for (k, v) in section.lxc() {
        if !is_passthrough_entry(k, v) {
            continue;
        }
        if k == DEVICE_ALLOW {
            if let Some(m) = v
                .strip_prefix("c ")
                .and_then(|r| r.split(':').next())
                .and_then(|m| m.parse().ok())
            {
                p.char_majors.push(m);
            }
        } else if let Some(node) = v.split_whitespace().next() {
            p.nodes.push(node.to_string());
        }
    }
    p
}

/// Replaces a section's passthrough entries, keeping every other raw line.
pub fn write_passthrough(section: &mut Section, p: &Passthrough) {
    section.retain_lxc(|k, v| !is_passthrough_entry(k, v));
    for (k, v) in passthrough_entries(p) {
        section.push_lxc(&k, &v);
    }
}

/// The `devN` entries to add and the keys to delete so that a section passes exactly
/// `devices`' device nodes: entries for NVIDIA nodes no longer wanted go, others stay; a
/// new entry takes the first free number.
pub fn dev_changes(main: &Section, devices: &Passthrough) -> (Vec<(String, String)>, Vec<String>) {
    let mut have: BTreeMap<String, String> = BTreeMap::new(); // path → key
    let mut used = Vec::new();
    for (k, v) in main.keys() {
        if let Some(n) = k.strip_prefix("dev").and_then(|n| n.parse::<u32>().ok()) {
            used.push(n);
            if let Ok(d) = props::DevConf::parse(v) {
                have.insert(d.path.clone(), k.to_string());
            }
        }
    }
    let mut add = Vec::new();
    let mut next = 0u32;
    for node in &devices.nodes {
        if have.contains_key(node) {
            continue;
        }
        while used.contains(&next) {
            next += 1;
        }
        used.push(next);
        let mut d = props::DevConf::new(node);
        d.mode = Some("0666".into());
        add.push((format!("dev{next}"), d.to_string()));
    }
    let mut stale: Vec<String> = have
        .iter()
        .filter(|(path, _)| path.starts_with("/dev/nvidia") && !devices.nodes.contains(path))
        .map(|(_, key)| key.clone())
        .collect();
    stale.sort_by_key(|k| k[3..].parse::<u32>().unwrap_or(u32::MAX));
    (add, stale)
}

/// Settings as config keys and values to write (for `pct set`/`pct create` options and
/// the API's parameters alike), given the CT's current section (for its MAC and tags),
/// and the keys to delete.
pub fn setting_params(
    s: &Settings,
    current: Option<&Section>,
) -> (Vec<(String, String)>, Vec<String>) {
    let mut opts: Vec<(String, String)> = Vec::new();
    if let Some(h) = &s.hostname {
        opts.push(("hostname".into(), h.clone()));
    }
    if let Some(m) = s.memory_mb {
        opts.push(("memory".into(), m.to_string()));
    }
    if let Some(c) = s.cores {
        opts.push(("cores".into(), c.to_string()));
    }
    if let Some(net) = &s.network {
        let kept = current
            .and_then(|m| m.get("net0"))
            .and_then(read_network)
            .and_then(|n| n.mac);
        opts.push(("net0".into(), network_value(net, kept.as_deref())));
    }
    if let Some(b) = s.onboot {
        opts.push(("onboot".into(), if b { "1" } else { "0" }.into()));
    }
    let mut delete: Vec<String> = s.delete.clone();
    if let Some(f) = &s.features {
        if f.is_empty() {
            delete.push("features".into());
        } else {
            opts.push(("features".into(), Features::from_map(f).to_string()));
        }
    }
    if s.managed.is_some() || s.store_template.is_some() {
        match tags_marked(current.and_then(|m| m.get("tags")), s) {
            Some(t) => opts.push(("tags".into(), t)),
            None => delete.push("tags".into()),
        }
    }
    if let Some(d) = &s.description {
        opts.push(("description".into(), d.clone()));
    }
    for (k, v) in &s.extra {
        opts.push((k.clone(), v.clone()));
    }
    (opts, delete)
}

/// The network of `net0`, if it reads.
pub fn read_network(value: &str) -> Option<Network> {
    let n = NetConf::parse(value).ok()?;
    Some(Network {
        name: n.name,
        bridge: n.bridge.unwrap_or_default(),
        ip: n.ip.unwrap_or_default(),
        gw: n.gw,
        mac: n.hwaddr,
    })
}

/// `net0` for a network; `mac` is used when the network leaves it open.
pub fn network_value(net: &Network, mac: Option<&str>) -> String {
    let mut n = NetConf::new(&net.name);
    n.bridge = Some(net.bridge.clone());
    n.ip = Some(net.ip.clone());
    n.gw = net.gw.clone();
    n.hwaddr = net.mac.as_deref().or(mac).map(|m| m.to_ascii_uppercase());
    n.type_ = Some("veth".to_string());
    n.to_string()
}

/// Writes settings into a section (`None` leaves a key alone). `new_mac` supplies a MAC
/// for an interface that leaves it open and has none yet.
pub fn write_settings(section: &mut Section, s: &Settings, new_mac: &mut dyn FnMut() -> String) {
    if let Some(h) = &s.hostname {
        section.set("hostname", h);
    }
    if let Some(m) = s.memory_mb {
        section.set("memory", &m.to_string());
    }
    if let Some(c) = s.cores {
        section.set("cores", &c.to_string());
    }
    if let Some(net) = &s.network {
        let kept = section
            .get("net0")
            .and_then(read_network)
            .and_then(|n| n.mac);
        let mac = kept.unwrap_or_else(&mut *new_mac);
        section.set("net0", &network_value(net, Some(&mac)));
    }
    if let Some(b) = s.onboot {
        section.set("onboot", if b { "1" } else { "0" });
    }
    if let Some(f) = &s.features {
        if f.is_empty() {
            section.remove("features");
        } else {
            section.set("features", &Features::from_map(f).to_string());
        }
    }
    if s.managed.is_some() || s.store_template.is_some() {
        match tags_marked(section.get("tags"), s) {
            Some(t) => section.set("tags", &t),
            None => {
                section.remove("tags");
            }
        }
    }
    if let Some(d) = &s.description {
        section.set_description(d);
    }
    for (k, v) in &s.extra {
        section.set(k, v);
    }
    for k in &s.delete {
        section.remove(k);
    }
}

/// `tags` with phoenix's markers added or removed as `s` says (`managed`, `store_template`),
/// other tags kept; `None` when none are left.
pub fn tags_marked(tags: Option<&str>, s: &Settings) -> Option<String> {
    let mut tags = tags.map(Tags::parse).unwrap_or_default();
    for (tag, on) in [(MANAGED_TAG, s.managed), (STORE_TAG, s.store_template)] {
        match on {
            Some(true) => tags.insert(tag),
            Some(false) => tags.remove(tag),
            None => {}
        }
    }
    (!tags.is_empty()).then(|| tags.to_string())
}

/// The VMIDs of the `<vmid>.conf` files in a config directory (a missing one has none).
pub fn conf_ids(dir: &std::path::Path) -> std::io::Result<Vec<Ctid>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    Ok(entries
        .flatten()
        .filter_map(|e| {
            e.file_name()
                .to_str()?
                .strip_suffix(".conf")
                .and_then(crate::fleet::config::parse_ctid)
        })
        .collect())
}

/// Settings as a section has them.
pub fn read_settings(section: &Section) -> Settings {
    let num = |k: &str| section.get(k).and_then(|v| v.trim().parse().ok());
    let description = section.description();
    Settings {
        hostname: section.get("hostname").map(str::to_string),
        memory_mb: num("memory"),
        cores: num("cores"),
        network: section.get("net0").and_then(read_network),
        onboot: section.get("onboot").map(|v| v == "1"),
        features: Some(
            section
                .get("features")
                .and_then(|f| Features::parse(f).ok())
                .map(|f| f.to_map())
                .unwrap_or_default(),
        ),
        managed: Some(
            section
                .get("tags")
                .is_some_and(|t| Tags::parse(t).contains(MANAGED_TAG)),
        ),
        store_template: Some(
            section
                .get("tags")
                .is_some_and(|t| Tags::parse(t).contains(STORE_TAG)),
        ),
        description: (!description.is_empty()).then_some(description),
        extra: BTreeMap::new(),
        delete: Vec::new(),
    }
}

/// A CT whose config cannot be read: somebody else's as far as phoenix is concerned
/// (never touched), with why in its description. Logged as a warning, so that one bad
/// file beside the fleet does not stop every command.
pub fn unreadable_ct(ctid: Ctid, why: &str) -> CtInfo {
    let why = crate::os::excerpt(why, 200);
    tracing::warn!("CT {ctid} is left alone: its config cannot be read: {why}");
    let mut ct = ct_info(ctid, &ConfFile::new(), false);
    ct.settings.managed = Some(false);
    ct.unreadable = Some(why);
    ct
}

/// A CT on a cluster node that does not answer: nothing of it can be read (the plan calls
/// it unreachable, not somebody else's).
pub fn unreachable_ct(ctid: Ctid, node: &str, why: &str) -> CtInfo {
    let mut ct = ct_info(ctid, &ConfFile::new(), false);
    ct.settings.managed = Some(false);
    ct.unreadable = Some(crate::os::excerpt(why, 200));
    ct.node = Some(node.to_string());
    ct
}

/// Root disk size in GiB (rounded up) from `rootfs`.
pub fn disk_gb(section: &Section) -> Option<u64> {
    let mp = props::MountPoint::parse(section.get("rootfs")?).ok()?;
    mp.size_bytes.map(props::size_gib_ceil)
}

/// What phoenix reads of a CT from its config file.
pub fn ct_info(ctid: Ctid, conf: &ConfFile, running: bool) -> CtInfo {
    let main = conf.main();
    let flag = |k: &str| main.get(k).is_some_and(|v| v.trim() == "1");
    let snapshots = conf
        .snapshot_names()
        .into_iter()
        .filter_map(|name| {
            let s = conf.snapshot(name)?;
            Some(SnapshotInfo {
                name: name.to_string(),
                description: s.description(),
                snaptime: s.get("snaptime").and_then(|t| t.parse().ok()).unwrap_or(0),
                parent: s.get("parent").map(str::to_string),
            })
        })
        .collect();
    CtInfo {
        ctid,
        running,
        lock: main.get("lock").map(str::to_string),
        template: flag("template"),
        // Proxmox's default for a CT without the key is privileged.
        unprivileged: flag("unprivileged"),
        settings: read_settings(main),
        disk_gb: disk_gb(main),
        passthrough: read_passthrough(main),
        snapshots,
        parent_snapshot: main.get("parent").map(str::to_string),
        root_volume: main
            .get("rootfs")
            .and_then(|r| props::MountPoint::parse(r).ok())
            .map(|m| m.volume),
        unreadable: None,
        node: None,
        storage: main
            .get("rootfs")
            .and_then(|r| props::MountPoint::parse(r).ok())
            .and_then(|m| m.volume.split_once(':').map(|(s, _)| s.to_string())),
    }
}

/// A CT as Proxmox would hold its config, for a host that keeps none of its own.
pub fn conf_of(ct: &CtInfo) -> ConfFile {
    let mut conf = ConfFile::new();
    let main = conf.main_mut();
    write_settings(main, &ct.settings, &mut String::new);
    if let Some(gb) = ct.disk_gb {
        main.set(
            "rootfs",
            &format!("rootfs,size={}", props::format_size(gb * props::GIB)),
        );
    }
    if ct.unprivileged {
        main.set("unprivileged", "1");
    }
    if ct.template {
        main.set("template", "1");
    }
    if let Some(l) = &ct.lock {
        main.set("lock", l);
    }
    if let Some(p) = &ct.parent_snapshot {
        main.set("parent", p);
    }
    write_passthrough(main, &ct.passthrough);
    for s in &ct.snapshots {
        let mut section = Section::default();
        section.set_description(&s.description);
        if let Some(p) = &s.parent {
            section.set("parent", p);
        }
        section.set("snaptime", &s.snaptime.to_string());
        conf.add_snapshot(&s.name, section);
    }
    conf
}
