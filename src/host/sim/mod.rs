//! `sim`: a model of a Proxmox VE node whose state is real Proxmox files.
//!
//! The zero-setup backend (`--backend sim`: the README demo, most tests, the benchmarks)
//! and, behind the `pct` front-end, the engine of the `pve` backend's test double. Its
//! files are the truth, laid out as on a Proxmox node under one root (`<state-dir>/sim/`
//! for `--backend sim`):
//!
//! | path under the root | what |
//! |---|---|
//! | `etc/pve/nodes/<node>/lxc/<vmid>.conf` | CT configs in Proxmox's format ([`pve::conf`](crate::host::pve::conf)); `etc/pve/lxc` links to the node's directory |
//! | `etc/pve/storage.cfg` | storages (the installer's `local` and `local-zfs` unless one is there) |
//! | `var/lib/vz/template/cache/` | OS templates of `local` (a new node has Proxmox's standard ones, [`STANDARD_TEMPLATES`]) |
//! | `<pool>/subvol-<vmid>-disk-0/` | a `zfspool` volume: the CT's root filesystem (pushed files; commands run inside are recorded in `var/log/sim-commands.log`, not executed) |
//! | `<pool>/<volume>/.zfs/snapshot/<name>/` | its ZFS snapshots, in creation order in `.zfs/snapshots` |
//! | `<pool>/basevol-<vmid>-disk-0/` | a template's base volume; its linked clone `basevol-<vmid>-disk-0/subvol-<newid>-disk-0` is `<pool>/subvol-<newid>-disk-0/` (a copy: the model has no copy-on-write) |
//! | `run/lxc/<vmid>.running` | the CT runs |
//! | `run/lock/lxc/pve-config-<vmid>.lock` | the config file lock (10 s, as Proxmox) |
//! | `proc/driver/nvidia/version`, `proc/devices`, `dev/nvidia*` | host facts, read by the same code as on a real host |
//! | `calls.log` | one JSON line per call (`verb`, `ctid`, `mutating`, `pid`, and `bytes` copied for the verbs that move a volume's data) |
//!
//! A config written by hand or by another tool into the CT directory is that CT. It
//! behaves like Proxmox where phoenix depends on it (`pct-spec.md`): a clone locks its
//! source (`CT is locked (disk)`) for the whole copy, snapshot names follow Proxmox's rule,
//! a clone is stopped with fresh MACs, `exec`/`push` need a running CT, a running CT
//! cannot be destroyed, rollback only to the newest snapshot, error texts are Proxmox's
//! ([`pve::text`](crate::host::pve::text)). For the `pct-emulator` it also has Proxmox's
//! VMIDs unique across the cluster's nodes (`etc/pve/nodes/*/{lxc,qemu-server}`), `pct
//! create`'s pre-fork checks and rolled-back worker, `pct clone`'s options (linked clones
//! of templates), `pct template`, and `[pve:pending]` for what a running CT cannot take
//! at once (applied at the next start).
//!
//! **Data.** A volume's used size is the bytes of its files ([`used_bytes`]); commands run
//! inside a CT are recorded, not run, except `fallocate -l <size> <file>`, which makes the
//! file hold `<size>` bytes as far as the model counts (it keeps the size, not the bytes):
//! the way a hook gives a CT data (a 15 GiB model). Each call records the bytes it copies
//! in `calls.log`: a create what it extracted, a full clone its source's used size, a backup
//! and a restore the CT's; a linked clone, a snapshot, a rollback and a template conversion
//! nothing (ZFS shares the blocks). `<verb>_per_gib` in the latency knob makes a call's time
//! follow its bytes.
//!
//! Knobs: [`knobs`] (latency, faults), and `PHOENIX_SIM_NVIDIA_VERSION=580.76.05|none`,
//! the host kernel driver the model's `proc/` reports.

pub mod cluster;
pub mod knobs;

use std::collections::BTreeMap;
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::thread::sleep;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use knobs::{Effect, Fault, Latency};

use crate::host::pve::conf::{ConfFile, Section};
use crate::host::pve::props::{self, new_mac, MountPoint};
use crate::host::pve::storage::{self, Storage};
use crate::host::pve::{lock, map, text};
use crate::host::{
    CloneRequest, CloneSpec, CreateSpec, CtInfo, Ctid, ErrorKind, Host, HostError, HostFacts,
    HostResult, KeptCopy, Passthrough, Settings, Verb,
};

/// `/proc/devices` of a host with the NVIDIA driver loaded.
const PROC_DEVICES: &str = include_str!("../../../tests/fixtures/host/proc-devices.txt");
/// `/proc/driver/nvidia/version` of such a host; the version is replaced by the model's.
const PROC_NVIDIA_VERSION: &str =
    include_str!("../../../tests/fixtures/host/proc-driver-nvidia-version.txt");
pub const DEFAULT_NVIDIA_VERSION: &str = "580.76.05";
/// The node name of `--backend sim`.
pub const SIM_NODE: &str = "sim";
/// The OS templates a new model node holds in `local` (`pveam download local <name>`).
pub const STANDARD_TEMPLATES: &[&str] = &[
    "debian-12-standard_12.7-1_amd64.tar.zst",
    "debian-13-standard_13.1-2_amd64.tar.zst",
    "ubuntu-22.04-standard_22.04-1_amd64.tar.zst",
    "ubuntu-24.04-standard_24.04-2_amd64.tar.zst",
];
/// Where commands run inside a CT are recorded, in its root filesystem.
const COMMANDS_LOG: &str = "var/log/sim-commands.log";

pub struct SimHost {
    root: PathBuf,
    node: String,
    /// Where this node keeps its own files: the root, or `local/<node>` in a cluster
    /// ([`cluster`]).
    local: PathBuf,
    latency: Latency,
    faults: Vec<Fault>,
    /// Environment for the `pct` front-end to open this same host.
    env: Vec<(String, String)>,
    /// `<root>/bin`, holding the `pct` link, made once per process.
    pct_dir: std::sync::OnceLock<Option<PathBuf>>,
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn io_err(what: &str, path: &Path, e: std::io::Error) -> HostError {
    HostError::failed(format!("sim: cannot {what} {}: {e}", path.display()))
}

/// Copies a directory tree (files and directories), leaving out `.zfs`.
fn copy_tree(from: &Path, to: &Path) -> std::io::Result<()> {
    fs::create_dir_all(to)?;
    for e in fs::read_dir(from)? {
        let e = e?;
        if e.file_name() == ".zfs" {
            continue;
        }
        let target = to.join(e.file_name());
        if e.file_type()?.is_dir() {
            copy_tree(&e.path(), &target)?;
        } else {
            fs::copy(e.path(), &target)?;
        }
    }
    Ok(())
}

/// Empties a directory tree except `.zfs`.
fn clear_tree(dir: &Path) -> std::io::Result<()> {
    for e in fs::read_dir(dir)? {
        let e = e?;
        if e.file_name() == ".zfs" {
            continue;
        }
        if e.file_type()?.is_dir() {
            fs::remove_dir_all(e.path())?;
        } else {
            fs::remove_file(e.path())?;
        }
    }
    Ok(())
}

/// A path inside a CT, relative to its root filesystem; `None` for one that is not
/// absolute or leaves the root.
fn inside(path: &str) -> Option<PathBuf> {
    let rel = path.strip_prefix('/')?;
    let p = Path::new(rel);
    p.components()
        .all(|c| matches!(c, std::path::Component::Normal(_)))
        .then(|| p.to_path_buf())
}

/// How a file written by `fallocate -l` inside a CT begins: the model keeps the size it
/// was given after this mark, not the bytes.
const DATA_MARK: &str = "phoenix-sim-data ";

/// The bytes a volume (or one of its snapshots) holds, as the model counts them: each
/// file's length, or the size a `fallocate` inside the CT gave it; `.zfs` left out.
pub fn used_bytes(dir: &Path) -> u64 {
    fn walk(dir: &Path, top: bool) -> u64 {
        let Ok(entries) = fs::read_dir(dir) else {
            return 0;
        };
        let mut total = 0u64;
        for e in entries.flatten() {
            if top && e.file_name() == ".zfs" {
                continue;
            }
            let Ok(meta) = fs::symlink_metadata(e.path()) else {
                continue;
            };
            if meta.is_dir() {
                total = total.saturating_add(walk(&e.path(), false));
            } else if meta.is_file() {
                total = total.saturating_add(data_size(&e.path(), meta.len()));
            }
        }
        total
    }
    walk(dir, true)
}

/// A file's size as the model counts it: what `fallocate` gave it, else its length.
fn data_size(path: &Path, len: u64) -> u64 {
    if len > 64 {
        return len;
    }
    fs::read_to_string(path)
        .ok()
        .and_then(|t| t.strip_prefix(DATA_MARK)?.trim().parse().ok())
        .unwrap_or(len)
}

/// A size as util-linux reads it: `15G`, `512MiB` (powers of 1024), `2GB` (of 1000).
fn parse_size(text: &str) -> Option<u64> {
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (num, unit) = text.split_at(split);
    let n: u64 = num.parse().ok()?;
    let (power, base) = match unit {
        "" => (0, 1024),
        u => {
            let exp = ["K", "M", "G", "T", "P"]
                .iter()
                .position(|p| u.starts_with(p))?
                + 1;
            match &u[1..] {
                "" | "iB" => (exp, 1024u64),
                "B" => (exp, 1000u64),
                _ => return None,
            }
        }
    };
    n.checked_mul(base.checked_pow(power as u32)?)
}

/// `fallocate -l <size> <file>` inside a CT (`vol` its root): the file is made holding its
/// size, which every copy of the volume then costs. `None` for any other command; `Err`
/// is fallocate's own complaint (exit 1).
fn fallocate(vol: &Path, argv: &[String]) -> Option<Result<(), String>> {
    if argv.first().map(|a| a.rsplit('/').next().unwrap_or(a)) != Some("fallocate") {
        return None;
    }
    let mut length = None;
    let mut file = None;
    let mut args = argv[1..].iter();
    while let Some(a) = args.next() {
        if a == "-l" || a == "--length" {
            length = args.next().cloned();
        } else if let Some(v) = a.strip_prefix("--length=") {
            length = Some(v.to_string());
        } else if let Some(v) = a.strip_prefix("-l") {
            length = Some(v.to_string());
        } else if !a.starts_with('-') {
            file = Some(a.clone());
        }
    }
    let made = (|| {
        let length = length.ok_or("fallocate: no length argument specified")?;
        let bytes = parse_size(&length)
            .ok_or_else(|| format!("fallocate: invalid length value specified: '{length}'"))?;
        let file = file.ok_or("fallocate: no filename specified")?;
        let rel = inside(&format!("/{}", file.trim_start_matches('/')))
            .ok_or_else(|| format!("fallocate: cannot open {file}: Invalid argument"))?;
        fs::write(vol.join(rel), format!("{DATA_MARK}{bytes}\n"))
            .map_err(|e| format!("fallocate: cannot open {file}: {e}"))
    })();
    Some(made)
}

/// The OS type Proxmox detects, guessed from the template's name.
fn ostype(template: &str) -> &'static str {
    let name = template.rsplit(['/', ':']).next().unwrap_or(template);
    [
        "debian",
        "ubuntu",
        "centos",
        "fedora",
        "alpine",
        "archlinux",
        "opensuse",
        "rocky",
        "almalinux",
    ]
    .into_iter()
    .find(|os| name.starts_with(os))
    .unwrap_or("unmanaged")
}

/// The volume id of a section's `rootfs` (empty when it has none).
fn rootfs_volid(main: &Section) -> String {
    main.get("rootfs")
        .and_then(|r| MountPoint::parse(r).ok())
        .map(|m| m.volume)
        .unwrap_or_default()
}

/// Disk numbers per guest, as Proxmox's storage plugins count them [SPLUG].
const MAX_VOLUMES_PER_GUEST: u32 = 1024;

impl SimHost {
    /// The model behind `--backend sim`: node `sim` under `<state_dir>/sim`, knobs from the
    /// environment.
    pub fn for_state_dir(state_dir: &Path) -> Result<SimHost, String> {
        let mut h = SimHost::open(&state_dir.join("sim"), SIM_NODE)?;
        h.env = vec![
            ("PHOENIX_BACKEND".into(), "sim".into()),
            ("PHOENIX_STATE_DIR".into(), state_dir.display().to_string()),
        ];
        Ok(h)
    }

    /// Opens (creating if needed) a model of node `node` under `root`, knobs from the
    /// environment.
    pub fn open(root: &Path, node: &str) -> Result<SimHost, String> {
        let latency =
            knobs::parse_latency(&std::env::var("PHOENIX_SIM_LATENCY").unwrap_or_default())?;
        let faults = knobs::parse_faults(&std::env::var("PHOENIX_SIM_FAULTS").unwrap_or_default())?;
        SimHost::with_knobs(root, node, latency, faults)
    }

    /// Opens (creating if needed) a model of node `node` under `root` with the given knobs.
    pub fn with_knobs(
        root: &Path,
        node: &str,
        latency: Latency,
        faults: Vec<Fault>,
    ) -> Result<SimHost, String> {
        let host = SimHost {
            root: root.to_path_buf(),
            node: node.to_string(),
            local: cluster::local_root(root, node),
            latency,
            faults,
            env: Vec::new(),
            pct_dir: std::sync::OnceLock::new(),
        };
        host.lay_out().map_err(|e| {
            format!(
                "cannot set up the simulated host in {}: {e}",
                root.display()
            )
        })?;
        Ok(host)
    }

    fn lay_out(&self) -> std::io::Result<()> {
        crate::os::create_dir_all(&self.conf_dir())?;
        let link = self.root.join("etc/pve/lxc");
        if fs::symlink_metadata(&link).is_err() {
            let target = PathBuf::from("nodes").join(&self.node).join("lxc");
            match std::os::unix::fs::symlink(target, &link) {
                Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => return Err(e),
                _ => {}
            }
        }
        let cfg = self.root.join("etc/pve/storage.cfg");
        if !cfg.exists() {
            crate::os::write_atomic(&cfg, storage::DEFAULT_STORAGE_CFG.as_bytes())?;
            // A new node has downloaded Proxmox's standard system templates.
            let cache = self.root.join("var/lib/vz/template/cache");
            crate::os::create_dir_all(&cache)?;
            for t in STANDARD_TEMPLATES {
                fs::write(cache.join(t), b"")?;
            }
        }
        // A node that joins a cluster has its own `local`, with the standard templates.
        let cache = self.local.join("var/lib/vz/template/cache");
        if self.local != self.root && !cache.exists() {
            crate::os::create_dir_all(&cache)?;
            for t in STANDARD_TEMPLATES {
                fs::write(cache.join(t), b"")?;
            }
        }
        Ok(())
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn node(&self) -> &str {
        &self.node
    }

    fn conf_dir(&self) -> PathBuf {
        self.root.join("etc/pve/nodes").join(&self.node).join("lxc")
    }

    /// The config file of a CT.
    pub fn conf_path(&self, ctid: Ctid) -> PathBuf {
        self.conf_dir().join(format!("{ctid}.conf"))
    }

    fn running_path(&self, ctid: Ctid) -> PathBuf {
        self.root.join(format!("run/lxc/{ctid}.running"))
    }

    fn is_running(&self, ctid: Ctid) -> bool {
        self.running_path(ctid).exists()
    }

    fn set_running(&self, ctid: Ctid, running: bool) -> HostResult<()> {
        let p = self.running_path(ctid);
        let r = if running {
            fs::create_dir_all(p.parent().unwrap_or(&self.root)).and_then(|()| fs::write(&p, ""))
        } else {
            match fs::remove_file(&p) {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                other => other,
            }
        };
        r.map_err(|e| io_err("mark", &p, e))
    }

    /// Holds the config locks of these CTs for one read-modify-write, like Proxmox.
    fn locked<T>(&self, ctids: &[Ctid], f: impl FnOnce() -> HostResult<T>) -> HostResult<T> {
        let held = lock::take_configs(&self.root, ctids)?;
        let r = f();
        drop(held); // closing the files releases the locks
        r
    }

    fn read_conf(&self, ctid: Ctid) -> HostResult<Option<ConfFile>> {
        let path = self.conf_path(ctid);
        // As pmxcfs: a CT config is a regular file under 1 MiB.
        match crate::os::read_if_any(&path, 1 << 20) {
            Ok(Some(bytes)) => {
                let text = String::from_utf8_lossy(&bytes);
                ConfFile::parse(&text).map(Some).map_err(|e| {
                    HostError::failed(format!("{}:{}: {}", path.display(), e.line, e.message))
                })
            }
            Ok(None) => Ok(None),
            Err(e) => Err(HostError::failed(format!("cannot read {e}"))),
        }
    }

    fn get(&self, ctid: Ctid) -> HostResult<ConfFile> {
        self.read_conf(ctid)?
            .ok_or_else(|| text::config_missing(&self.node, ctid))
    }

    /// Writes a config atomically (as pmxcfs does): readers see the old or the new file.
    fn write_conf(&self, ctid: Ctid, conf: &ConfFile) -> HostResult<()> {
        let path = self.conf_path(ctid);
        crate::os::write_atomic(&path, conf.to_text().as_bytes())
            .map_err(|e| io_err("write", &path, e))
    }

    fn remove_conf(&self, ctid: Ctid) -> HostResult<()> {
        let path = self.conf_path(ctid);
        fs::remove_file(&path).map_err(|e| io_err("remove", &path, e))
    }

    fn storages(&self) -> HostResult<BTreeMap<String, Storage>> {
        let path = self.root.join("etc/pve/storage.cfg");
        let text = fs::read_to_string(&path).map_err(|e| io_err("read", &path, e))?;
        storage::parse(&text).map_err(|e| HostError::failed(format!("{}: {e}", path.display())))
    }

    fn storage(&self, id: &str) -> HostResult<Storage> {
        let s = self
            .storages()?
            .remove(id)
            .ok_or_else(|| text::unknown_storage(id))?;
        if !cluster::enabled_on(&s, &self.node) && self.local != self.root {
            return Err(text::storage_unavailable(id, &self.node));
        }
        Ok(s)
    }

    /// Where a storage's files are: the tree's root for a shared one, this node's own
    /// files otherwise.
    fn files_of(&self, s: &Storage) -> &Path {
        if cluster::is_shared(s) {
            &self.root
        } else {
            &self.local
        }
    }

    /// Where a `dir` storage keeps backups: `<path>/dump`.
    fn dump_dir(&self, store: &Storage) -> HostResult<PathBuf> {
        match (store.kind.as_str(), store.properties.get("path")) {
            ("dir", Some(path)) => Ok(self
                .files_of(store)
                .join(path.trim_start_matches('/'))
                .join("dump")),
            _ => Err(HostError::failed(format!(
                "sim: storage '{}' is of type '{}'; the model keeps backups on dir storages",
                store.id, store.kind
            ))),
        }
    }

    /// The file of a backup volume id (`local:backup/vzdump-lxc-…`).
    fn archive_path(&self, volid: &str) -> HostResult<PathBuf> {
        let (store, name) = volid
            .split_once(':')
            .ok_or_else(|| HostError::failed(format!("unable to parse volume ID '{volid}'")))?;
        let file = name
            .strip_prefix("backup/")
            .filter(|f| !f.contains('/') && !f.starts_with('.'))
            .ok_or_else(|| HostError::failed(format!("unable to parse volume ID '{volid}'")))?;
        Ok(self.dump_dir(&self.storage(store)?)?.join(file))
    }

    /// The volume id of a new root disk of CT `ctid` on a storage: the first disk number
    /// no volume of that CT uses yet, as Proxmox allocates it [STOR find_free_diskname,
    /// get_next_vm_diskname]. A volume left behind by a CT whose config is gone is never
    /// taken over: the new CT gets `disk-1`, with none of the old files or snapshots.
    fn new_volume(&self, storage: &Storage, ctid: Ctid) -> HostResult<String> {
        if !storage.holds("rootdir") {
            return Err(text::no_rootdir(&storage.id));
        }
        let name = |i: u32| match storage.kind.as_str() {
            "zfspool" => Ok(format!("{}:subvol-{ctid}-disk-{i}", storage.id)),
            "rbd" | "lvmthin" => Ok(format!("{}:vm-{ctid}-disk-{i}", storage.id)),
            "dir" => Ok(format!(
                "{}:{ctid}/subvol-{ctid}-disk-{i}.subvol",
                storage.id
            )),
            other => Err(HostError::failed(format!(
                "sim: storage '{}' is of type '{other}'; the model has zfspool and dir storages",
                storage.id
            ))),
        };
        for i in 0..MAX_VOLUMES_PER_GUEST {
            let volid = name(i)?;
            let (path, _) = self.volume(&volid)?;
            let base = path.with_file_name(format!("basevol-{ctid}-disk-{i}"));
            if !path.exists() && !base.exists() {
                return Ok(volid);
            }
        }
        Err(HostError::failed(format!(
            "unable to allocate an image name for VM {ctid} in storage '{}'",
            storage.id
        )))
    }

    /// Where a volume's files are, and whether its storage takes snapshots.
    fn volume(&self, volid: &str) -> HostResult<(PathBuf, bool)> {
        let (store, name) = volid
            .split_once(':')
            .ok_or_else(|| HostError::failed(format!("unable to parse volume ID '{volid}'")))?;
        let s = self.storage(store)?;
        let prop = |k: &str| s.properties.get(k).cloned().unwrap_or_default();
        let files = self.files_of(&s);
        match s.kind.as_str() {
            // A linked clone `basevol-100-disk-0/subvol-101-disk-0` is the dataset
            // `<pool>/subvol-101-disk-0` [ZFS parse_volname].
            "zfspool" => Ok((
                files
                    .join(prop("pool"))
                    .join(name.rsplit('/').next().unwrap_or(name)),
                true,
            )),
            // Ceph's images and LVM's thin volumes, kept as directories by the model. A
            // linked clone `base-100-disk-0/vm-101-disk-0` is the image `vm-101-disk-0`
            // [RBD parse_volname].
            "rbd" => Ok((
                files
                    .join("ceph")
                    .join(prop("pool"))
                    .join(name.rsplit('/').next().unwrap_or(name)),
                true,
            )),
            "lvmthin" => Ok((
                files
                    .join("dev")
                    .join(prop("vgname"))
                    .join(prop("thinpool"))
                    .join(name),
                true,
            )),
            "dir" => Ok((
                files
                    .join(prop("path").trim_start_matches('/'))
                    .join("images")
                    .join(name),
                false,
            )),
            other => Err(HostError::failed(format!(
                "sim: storage '{store}' is of type '{other}'; the model has zfspool and dir storages"
            ))),
        }
    }

    fn rootfs(&self, conf: &ConfFile) -> HostResult<(PathBuf, bool)> {
        let rootfs = conf
            .main()
            .get("rootfs")
            .ok_or_else(|| HostError::failed("CT has no rootfs"))?;
        let mp = MountPoint::parse(rootfs)
            .map_err(|e| HostError::failed(format!("unable to parse rootfs '{rootfs}': {e}")))?;
        self.volume(&mp.volume)
    }

    /// The ZFS snapshots of a volume, oldest first.
    fn zfs_snapshots(vol: &Path) -> Vec<String> {
        fs::read_to_string(vol.join(".zfs/snapshots"))
            .map(|t| t.lines().map(str::to_string).collect())
            .unwrap_or_default()
    }

    fn set_zfs_snapshots(vol: &Path, names: &[String]) -> HostResult<()> {
        let p = vol.join(".zfs/snapshots");
        let mut text = names.join("\n");
        if !text.is_empty() {
            text.push('\n');
        }
        crate::os::write_atomic(&p, text.as_bytes()).map_err(|e| io_err("write", &p, e))
    }

    /// Records the call, applies its latency and any injected fault. An `exitN` fault is
    /// returned.
    fn call(&self, verb: Verb, ctid: Option<Ctid>) -> HostResult<Option<i32>> {
        // ZFS shares the blocks: these copy nothing.
        let bytes = matches!(
            verb,
            Verb::Snapshot | Verb::Rollback | Verb::Template | Verb::Delsnapshot
        )
        .then_some(0);
        self.record(verb, ctid, bytes);
        self.effects(verb, ctid)
    }

    /// Records a call that copies data once its bytes are known (`None`: it failed
    /// before copying), and waits out their latency.
    fn copied<T>(&self, verb: Verb, ctid: Option<Ctid>, r: HostResult<(T, u64)>) -> HostResult<T> {
        match r {
            Ok((v, bytes)) => {
                self.record(verb, ctid, Some(bytes));
                Ok(v)
            }
            Err(e) => {
                self.record(verb, ctid, None);
                Err(e)
            }
        }
    }

    /// The latency of the bytes a call copies (`<verb>_per_gib`).
    fn copy_latency(&self, verb: Verb, bytes: u64) {
        let ms = self.latency.for_bytes(verb, bytes);
        if ms > 0 {
            sleep(Duration::from_millis(ms));
        }
    }

    fn record(&self, verb: Verb, ctid: Option<Ctid>, bytes: Option<u64>) {
        let mut line = serde_json::json!({"verb": verb, "ctid": ctid, "mutating": verb.is_mutating(), "pid": std::process::id()});
        if let Some(b) = bytes {
            line["bytes"] = b.into();
        }
        if let Ok(mut f) = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.root.join("calls.log"))
        {
            // One write per line: appends from threads and processes never interleave.
            let _ = f.write_all(format!("{line}\n").as_bytes());
        }
    }

    fn effects(&self, verb: Verb, ctid: Option<Ctid>) -> HostResult<Option<i32>> {
        let ms = knobs::latency_of(&self.latency, verb);
        if ms > 0 {
            sleep(Duration::from_millis(ms));
        }
        let mut exit = None;
        for fault in &self.faults {
            if fault.verb != verb || (fault.ctid.is_some() && fault.ctid != ctid) {
                continue;
            }
            if let Some(limit) = fault.count {
                if !self.count_fault(&fault.spec, limit)? {
                    continue;
                }
            }
            match fault.effect {
                Effect::Fail => {
                    return Err(HostError::failed(format!(
                        "simulated failure ({})",
                        fault.spec
                    )))
                }
                Effect::Locked => return Err(text::locked("disk")),
                Effect::Exit(n) => exit = Some(n),
                Effect::Sleep(ms) => sleep(Duration::from_millis(ms)),
                Effect::Stopped => {
                    if let Some(ct) = ctid {
                        self.locked(&[ct], || self.set_running(ct, false))?;
                    }
                }
            }
        }
        Ok(exit)
    }

    /// True while a counted fault has calls left (and uses one).
    fn count_fault(&self, spec: &str, limit: u64) -> HostResult<bool> {
        let _held = lock::take(&self.root, "run/lock/sim-faults.lock")?;
        let path = self.root.join("faults.json");
        let mut counts: BTreeMap<String, u64> = fs::read(&path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        let n = counts.entry(spec.to_string()).or_insert(0);
        let fire = *n < limit;
        if fire {
            *n += 1;
            let _ = fs::write(&path, serde_json::to_vec(&counts).unwrap_or_default());
        }
        Ok(fire)
    }

    /// One CT as its config file and running state say, without counting a call or
    /// waiting out a latency: the model's read API for tests and tools.
    pub fn observe(&self, ctid: Ctid) -> HostResult<Option<CtInfo>> {
        Ok(self.read_conf(ctid)?.map(|conf| {
            let mut ct = map::ct_info(ctid, &conf, self.is_running(ctid));
            ct.node = Some(self.node.clone());
            ct
        }))
    }

    /// Every CT, as [`SimHost::observe`] reads it.
    pub fn observe_all(&self) -> HostResult<BTreeMap<Ctid, CtInfo>> {
        let dir = self.conf_dir();
        let mut out = BTreeMap::new();
        for ctid in map::conf_ids(&dir).map_err(|e| io_err("read", &dir, e))? {
            match self.observe(ctid) {
                Ok(Some(ct)) => {
                    out.insert(ctid, ct);
                }
                Ok(None) => {}
                Err(e) => {
                    out.insert(ctid, map::unreadable_ct(ctid, &e.message));
                }
            }
        }
        Ok(out)
    }

    /// Commands run inside a CT, in order, the OS template's extraction first.
    pub fn history(&self, ctid: Ctid) -> HostResult<Vec<String>> {
        let conf = self.get(ctid)?;
        let (vol, _) = self.rootfs(&conf)?;
        Ok(fs::read_to_string(vol.join(COMMANDS_LOG))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect())
    }

    fn record_command(vol: &Path, line: &str) -> HostResult<()> {
        let p = vol.join(COMMANDS_LOG);
        let _ = fs::create_dir_all(p.parent().unwrap_or(vol));
        let mut f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&p)
            .map_err(|e| io_err("open", &p, e))?;
        f.write_all(format!("{line}\n").as_bytes())
            .map_err(|e| io_err("write", &p, e))
    }

    fn check_lock(main: &Section) -> HostResult<()> {
        match main.get("lock") {
            Some(l) => Err(text::locked(l)),
            None => Ok(()),
        }
    }

    fn is_template(main: &Section) -> bool {
        main.get("template").is_some_and(|t| t.trim() == "1")
    }

    fn write_facts(&self) -> HostResult<()> {
        let version = match std::env::var("PHOENIX_SIM_NVIDIA_VERSION") {
            Ok(v) if v == "none" => None,
            Ok(v) if !v.is_empty() => Some(v),
            // Files written by hand stay as they are. `proc/devices` is written last, so
            // that a run killed while writing them leaves nothing that counts as written.
            _ if self.local.join("proc/devices").exists() => return Ok(()),
            _ => Some(DEFAULT_NVIDIA_VERSION.to_string()),
        };
        let write = |rel: &str, text: &str| {
            let p = self.local.join(rel);
            crate::os::write_atomic(&p, text.as_bytes()).map_err(|e| io_err("write", &p, e))
        };
        let remove = |rel: &str| {
            let p = self.local.join(rel);
            let _ = fs::remove_file(p);
        };
        let nodes = [
            "nvidia0",
            "nvidia1",
            "nvidiactl",
            "nvidia-uvm",
            "nvidia-uvm-tools",
            "nvidia-modeset",
        ];
        match version {
            Some(v) => {
                for n in nodes {
                    write(&format!("dev/{n}"), "")?;
                }
                write(
                    "proc/driver/nvidia/version",
                    &PROC_NVIDIA_VERSION.replace(DEFAULT_NVIDIA_VERSION, &v),
                )?;
                write("proc/devices", PROC_DEVICES)?;
            }
            None => {
                remove("proc/driver/nvidia/version");
                write(
                    "proc/devices",
                    "Character devices:\n  1 mem\n  4 tty\n\nBlock devices:\n  8 sd\n",
                )?;
                for n in nodes {
                    remove(&format!("dev/{n}"));
                }
            }
        }
        Ok(())
    }
}

impl Host for SimHost {
    fn name(&self) -> &'static str {
        "sim"
    }

    fn inventory(&self) -> HostResult<BTreeMap<Ctid, CtInfo>> {
        self.call(Verb::Inventory, None)?;
        self.observe_all()
    }

    fn ct(&self, ctid: Ctid) -> HostResult<Option<CtInfo>> {
        self.call(Verb::Config, Some(ctid))?;
        self.observe(ctid)
    }

    fn not_found(&self, ctid: Ctid) -> HostError {
        text::config_missing(&self.node, ctid)
    }

    fn config_file(&self, ctid: Ctid) -> HostResult<Option<String>> {
        Ok(self.read_conf(ctid)?.map(|c| c.to_text()))
    }

    fn facts(&self) -> HostResult<HostFacts> {
        self.call(Verb::Facts, None)?;
        self.write_facts()?;
        HostFacts::read(&self.local).map_err(HostError::failed)
    }

    fn facts_on(&self, node: &str) -> HostResult<HostFacts> {
        self.on_node(node)?.facts()
    }

    fn cluster(&self) -> HostResult<Option<crate::host::ClusterView>> {
        self.cluster_view().map(Some)
    }

    fn migrate(&self, ctid: Ctid, node: &str, restart: bool) -> HostResult<()> {
        self.migrate_ct(ctid, node, restart)
    }

    fn check_storage_on(&self, node: &str, storage: &str, ostemplate: Option<&str>) -> Vec<String> {
        match self.on_node(node) {
            Ok(h) => h.check_storage(storage, ostemplate),
            Err(e) => vec![e.message],
        }
    }

    fn check_runtime_on(
        &self,
        node: &str,
        _unprivileged: bool,
        _network: Option<&crate::host::Network>,
    ) -> Vec<String> {
        self.node_down(node).into_iter().collect()
    }

    fn check_storage(&self, storage: &str, ostemplate: Option<&str>) -> Vec<String> {
        if self.local == self.root {
            return storage::check(&self.root, storage, ostemplate);
        }
        self.check_storage_here(storage, ostemplate)
    }

    fn links_clones_on(&self, storage: &str) -> Option<bool> {
        Some(
            self.storages()
                .is_ok_and(|s| storage::links_clones(&s, storage)),
        )
    }

    fn create(&self, ctid: Ctid, spec: &CreateSpec) -> HostResult<()> {
        let r = self
            .effects(Verb::Create, Some(ctid))
            .and_then(|_| self.create_now(ctid, spec));
        self.copied(Verb::Create, Some(ctid), r)
    }

    fn clone_ct(&self, spec: &CloneSpec) -> HostResult<()> {
        self.clone_with(&spec.request())
    }

    fn clone_with(&self, req: &CloneRequest) -> HostResult<()> {
        let r = self.clone_now(req);
        self.copied(Verb::Clone, Some(req.target), r)
    }

    fn template(&self, ctid: Ctid) -> HostResult<()> {
        self.call(Verb::Template, Some(ctid))?;
        self.template_now(ctid)
    }

    fn set(&self, ctid: Ctid, settings: &Settings) -> HostResult<()> {
        self.call(Verb::Set, Some(ctid))?;
        if settings.is_empty() {
            return Err(text::no_options());
        }
        if settings.extra.contains_key("unprivileged") {
            return Err(text::read_only_option("unprivileged"));
        }
        self.locked(&[ctid], || {
            let mut conf = self.get(ctid)?;
            Self::check_lock(conf.main())?;
            if !self.is_running(ctid) {
                Self::apply_pending(&mut conf);
                map::write_settings(conf.main_mut(), settings, &mut || new_mac(ctid));
                return self.write_conf(ctid, &conf);
            }
            // A running CT takes some keys at once; the others wait in `[pve:pending]`
            // [LCFG update_pct_config, vmconfig_hotplug_pending].
            let before = conf.main().clone();
            let mut after = before.clone();
            map::write_settings(&mut after, settings, &mut || new_mac(ctid));
            let mut keys: Vec<String> = before
                .keys()
                .chain(after.keys())
                .map(|(k, _)| k.to_string())
                .collect();
            keys.sort();
            keys.dedup();
            let mut deferred = Vec::new();
            for k in keys {
                let (old, new) = (before.get(&k), after.get(&k).map(str::to_string));
                if old == new.as_deref() || is_hot(&k, old.is_some()) {
                    continue;
                }
                match old {
                    Some(v) => after.set(&k, v),
                    None => {
                        after.remove(&k);
                    }
                }
                deferred.push((k, new));
            }
            *conf.main_mut() = after;
            if !deferred.is_empty() {
                let pending = conf.pending_or_insert();
                let mut delete = pending
                    .get("delete")
                    .map(props::PendingDelete::parse)
                    .unwrap_or_default();
                for (k, v) in deferred {
                    match v {
                        Some(v) => {
                            delete.remove(&k);
                            pending.set(&k, &v);
                        }
                        None => {
                            pending.remove(&k);
                            delete.insert(&k, false);
                        }
                    }
                }
                if delete.is_empty() {
                    pending.remove("delete");
                } else {
                    pending.set("delete", &delete.to_string());
                }
            }
            self.write_conf(ctid, &conf)
        })
    }

    fn resize(&self, ctid: Ctid, disk_gb: u64) -> HostResult<()> {
        self.call(Verb::Resize, Some(ctid))?;
        self.locked(&[ctid], || {
            let mut conf = self.get(ctid)?;
            Self::check_lock(conf.main())?;
            let rootfs = conf
                .main()
                .get("rootfs")
                .ok_or_else(|| HostError::failed("unable to parse volume ID for 'rootfs'"))?;
            let mut mp = MountPoint::parse(rootfs)
                .map_err(|e| HostError::failed(format!("unable to parse rootfs: {e}")))?;
            let want = disk_gb * props::GIB;
            if want < mp.size_bytes.unwrap_or(0) {
                return Err(text::shrink());
            }
            mp.size_bytes = Some(want);
            conf.main_mut().set("rootfs", &mp.to_string());
            self.write_conf(ctid, &conf)
        })
    }

    fn set_devices(&self, ctid: Ctid, devices: &Passthrough) -> HostResult<()> {
        self.call(Verb::Devices, Some(ctid))?;
        self.locked(&[ctid], || {
            let mut conf = self.get(ctid)?;
            Self::check_lock(conf.main())?;
            map::write_passthrough(conf.main_mut(), devices);
            self.write_conf(ctid, &conf)
        })
    }

    fn start(&self, ctid: Ctid) -> HostResult<()> {
        self.call(Verb::Start, Some(ctid))?;
        self.locked(&[ctid], || {
            if self.is_running(ctid) {
                return Err(text::already_running(ctid));
            }
            let mut conf = self.get(ctid)?;
            if conf.main().get("lock").is_some_and(|l| l != "mounted") {
                Self::check_lock(conf.main())?;
            }
            if Self::is_template(conf.main()) {
                return Err(text::template_start());
            }
            if conf.pending().is_some() {
                Self::apply_pending(&mut conf);
                self.write_conf(ctid, &conf)?;
            }
            self.set_running(ctid, true)
        })
    }

    fn shutdown(&self, ctid: Ctid, _timeout_s: u64) -> HostResult<()> {
        self.call(Verb::Shutdown, Some(ctid))?;
        self.stop_now(ctid)
    }

    fn stop(&self, ctid: Ctid) -> HostResult<()> {
        self.call(Verb::Stop, Some(ctid))?;
        self.stop_now(ctid)
    }

    fn exec(&self, ctid: Ctid, argv: &[String], out: &mut dyn Write) -> HostResult<i32> {
        let injected = self.call(Verb::Exec, Some(ctid))?;
        if argv.is_empty() {
            return Err(HostError::new(ErrorKind::Invalid, "missing command"));
        }
        let written = self.locked(&[ctid], || {
            let conf = self.get(ctid)?;
            if !self.is_running(ctid) {
                return Err(text::exec_not_running(ctid));
            }
            let (vol, _) = self.rootfs(&conf)?;
            Self::record_command(&vol, &argv.join(" "))?;
            // The one command the model carries out: data written into the CT.
            Ok(match injected {
                None | Some(0) => fallocate(&vol, argv),
                Some(_) => None,
            })
        })?;
        let code = injected.unwrap_or(0);
        if code != 0 {
            let _ = writeln!(out, "sim: `{}` exited {code} (injected)", argv.join(" "));
        }
        if let Some(Err(complaint)) = written {
            let _ = writeln!(out, "{complaint}");
            return Ok(1);
        }
        Ok(code)
    }

    fn push(&self, ctid: Ctid, local: &Path, dest: &str, perms: u32) -> HostResult<()> {
        self.call(Verb::Push, Some(ctid))?;
        if !self.is_running(ctid) {
            return Err(text::push_not_running());
        }
        let content = fs::read(local).map_err(|_| {
            HostError::failed(format!("failed to open {} for reading", local.display()))
        })?;
        let conf = self.get(ctid)?;
        let (vol, _) = self.rootfs(&conf)?;
        let rel = inside(dest).ok_or_else(|| {
            HostError::failed(format!("failed to create file: {dest}: Invalid argument"))
        })?;
        let target = vol.join(rel);
        let write = || -> std::io::Result<()> {
            fs::write(&target, &content)?;
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(&target, fs::Permissions::from_mode(perms & 0o7777))
        };
        write().map_err(|e| HostError::failed(format!("failed to create file: {dest}: {e}")))
    }

    fn pull(&self, ctid: Ctid, path: &str, local: &Path) -> HostResult<()> {
        self.call(Verb::Pull, Some(ctid))?;
        if !self.is_running(ctid) {
            return Err(text::pull_not_running());
        }
        let conf = self.get(ctid)?;
        let (vol, _) = self.rootfs(&conf)?;
        let src = inside(path)
            .map(|r| vol.join(r))
            .filter(|p| p.is_file())
            .ok_or_else(|| {
                HostError::failed(format!("failed to open {path}: No such file or directory"))
            })?;
        fs::copy(&src, local).map(|_| ()).map_err(|e| {
            HostError::failed(format!("failed to create file: {}: {e}", local.display()))
        })
    }

    fn snapshot(&self, ctid: Ctid, name: &str, description: &str) -> HostResult<()> {
        self.call(Verb::Snapshot, Some(ctid))?;
        if let Some(e) = text::bad_snapshot_name(name) {
            return Err(e);
        }
        self.locked(&[ctid], || {
            let mut conf = self.get(ctid)?;
            if Self::is_template(conf.main()) {
                return Err(text::template_snapshot());
            }
            Self::check_lock(conf.main())?;
            if conf.snapshot(name).is_some() {
                return Err(text::snapshot_used(name));
            }
            let (vol, snapshots) = self.rootfs(&conf)?;
            if !snapshots {
                return Err(HostError::failed("snapshot feature is not available"));
            }
            let copy = vol.join(".zfs/snapshot").join(name);
            copy_tree(&vol, &copy).map_err(|e| io_err("snapshot", &vol, e))?;
            let mut order = Self::zfs_snapshots(&vol);
            order.push(name.to_string());
            Self::set_zfs_snapshots(&vol, &order)?;
            let mut section = conf.main().copy_for_snapshot();
            section.set("snaptime", &now().to_string());
            section.set_description(description);
            conf.add_snapshot(name, section);
            conf.main_mut().set("parent", name);
            self.write_conf(ctid, &conf)
        })
    }

    fn delete_snapshot(&self, ctid: Ctid, name: &str) -> HostResult<()> {
        self.call(Verb::Delsnapshot, Some(ctid))?;
        self.locked(&[ctid], || {
            let mut conf = self.get(ctid)?;
            if conf.snapshot(name).is_none() {
                return Err(text::snapshot_missing(name));
            }
            Self::check_lock(conf.main())?;
            let removed = conf
                .remove_snapshot(name)
                .ok_or_else(|| text::snapshot_missing(name))?;
            let up = removed.get("parent").map(str::to_string);
            // Children of the deleted snapshot, and the live state, move up to its parent.
            let reparent = |s: &mut Section| {
                if s.get("parent") == Some(name) {
                    match &up {
                        Some(p) => s.set("parent", p),
                        None => {
                            s.remove("parent");
                        }
                    }
                }
            };
            let names: Vec<String> = conf
                .snapshot_names()
                .iter()
                .map(|s| s.to_string())
                .collect();
            for n in names {
                if let Some(s) = conf.snapshot_mut(&n) {
                    reparent(s);
                }
            }
            reparent(conf.main_mut());
            if let Ok((vol, true)) = self.rootfs(&conf) {
                let _ = fs::remove_dir_all(vol.join(".zfs/snapshot").join(name));
                let order: Vec<String> = Self::zfs_snapshots(&vol)
                    .into_iter()
                    .filter(|n| n != name)
                    .collect();
                Self::set_zfs_snapshots(&vol, &order)?;
            }
            self.write_conf(ctid, &conf)
        })
    }

    fn rollback(&self, ctid: Ctid, name: &str) -> HostResult<()> {
        self.call(Verb::Rollback, Some(ctid))?;
        self.locked(&[ctid], || {
            let mut conf = self.get(ctid)?;
            if Self::is_template(conf.main()) {
                return Err(HostError::new(
                    ErrorKind::Invalid,
                    "you can't rollback if vm is a template",
                ));
            }
            let snap = conf
                .snapshot(name)
                .cloned()
                .ok_or_else(|| text::snapshot_missing(name))?;
            let (vol, _) = self.rootfs(&conf)?;
            if Self::zfs_snapshots(&vol).last().map(String::as_str) != Some(name) {
                let volid = rootfs_volid(conf.main());
                return Err(text::rollback_not_latest(name, &volid));
            }
            Self::check_lock(conf.main())?;
            // A running CT is stopped first [LCFG __snapshot_rollback_vm_stop].
            self.set_running(ctid, false)?;
            clear_tree(&vol).map_err(|e| io_err("roll back", &vol, e))?;
            copy_tree(&vol.join(".zfs/snapshot").join(name), &vol)
                .map_err(|e| io_err("roll back", &vol, e))?;
            // The snapshot's config comes back; the description stays [ABS].
            let description = conf.main().description();
            let mut main = snap;
            main.remove("snaptime");
            main.set_description(&description);
            main.set("parent", name);
            *conf.main_mut() = main;
            self.write_conf(ctid, &conf)
        })
    }

    fn keeps_copies(&self) -> bool {
        true
    }

    /// `vzdump <ctid> --storage <storage> --mode stop`: a tar of the root filesystem with
    /// the config at `./etc/vzdump/pct.conf` [PVE::VZDump::LXC], in the storage's `dump/`
    /// as `vzdump-lxc-<ctid>-<YYYY_MM_DD-HH_MM_SS>.tar`, the note beside it as `.notes`.
    fn keep(&self, ctid: Ctid, storage: &str, note: &str) -> HostResult<KeptCopy> {
        let r = self
            .effects(Verb::Backup, Some(ctid))
            .and_then(|_| self.keep_now(ctid, storage, note));
        self.copied(Verb::Backup, Some(ctid), r)
    }

    /// `pct restore <ctid> <archive> --storage <storage> --force 1`: a new root volume
    /// from the archive, the config from its `etc/vzdump/pct.conf`; the CT of that id, if
    /// any, is replaced (it must be stopped). No snapshots come back.
    fn restore(&self, ctid: Ctid, kept: &KeptCopy, storage: &str) -> HostResult<()> {
        let r = self
            .effects(Verb::Restore, Some(ctid))
            .and_then(|_| self.restore_now(ctid, kept, storage));
        self.copied(Verb::Restore, Some(ctid), r)
    }

    /// `pvesm free <volid>`: the archive and its note go.
    fn forget(&self, kept: &KeptCopy) -> HostResult<()> {
        self.call(Verb::Forget, None)?;
        let archive = self.archive_path(&kept.location)?;
        match fs::remove_file(&archive) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(io_err("remove", &archive, e))
            }
            _ => {}
        }
        let mut notes = archive.into_os_string();
        notes.push(".notes");
        let _ = fs::remove_file(notes);
        Ok(())
    }

    fn destroy(&self, ctid: Ctid) -> HostResult<()> {
        self.call(Verb::Destroy, Some(ctid))?;
        self.locked(&[ctid], || {
            let conf = self.get(ctid)?;
            Self::check_lock(conf.main())?;
            if self.is_running(ctid) {
                return Err(text::destroy_running(ctid));
            }
            // A template's base volume stays while linked clones use it [STOR vdisk_free].
            if Self::is_template(conf.main()) {
                let volid = rootfs_volid(conf.main());
                if self.base_in_use(&volid)? {
                    let name = volid.split_once(':').map_or(volid.as_str(), |(_, n)| n);
                    return Err(text::base_in_use(name));
                }
            }
            if let Ok((vol, _)) = self.rootfs(&conf) {
                // `zfs destroy -r`: its snapshots go with it.
                match fs::remove_dir_all(&vol) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                        return Err(io_err("destroy", &vol, e))
                    }
                    _ => {}
                }
            }
            self.remove_conf(ctid)
        })
    }

    fn unlock(&self, ctid: Ctid) -> HostResult<()> {
        self.call(Verb::Unlock, Some(ctid))?;
        self.locked(&[ctid], || {
            let mut conf = self.get(ctid)?;
            if conf.main_mut().remove("lock").is_none() {
                return Err(text::no_lock());
            }
            self.write_conf(ctid, &conf)
        })
    }

    fn pct_dir(&self) -> Option<PathBuf> {
        self.pct_dir
            .get_or_init(|| crate::host::pct::link_into(&self.root.join("bin")))
            .clone()
    }

    fn hook_env(&self) -> Vec<(String, String)> {
        self.env.clone()
    }

    fn estimate_ms(&self, verb: Verb) -> u64 {
        knobs::latency_of(&self.latency, verb).max(1)
    }
}

impl SimHost {
    /// `pct restore`'s work; the bytes it copied (the restored volume's).
    fn restore_now(&self, ctid: Ctid, kept: &KeptCopy, storage: &str) -> HostResult<((), u64)> {
        let archive = self.archive_path(&kept.location)?;
        if !archive.is_file() {
            return Err(text::no_such_file(&kept.location));
        }
        let store = self.storage(storage)?;
        self.locked(&[ctid], || {
            let old = self.read_conf(ctid)?;
            if old.is_some() && self.is_running(ctid) {
                return Err(text::destroy_running(ctid));
            }
            let volid = self.new_volume(&store, ctid)?;
            let (vol, _) = self.volume(&volid)?;
            crate::os::create_dir_all(&vol).map_err(|e| io_err("create", &vol, e))?;
            let out = crate::os::host_command("tar")
                .arg("-xf")
                .arg(&archive)
                .arg("-C")
                .arg(&vol)
                .output()
                .map_err(|e| HostError::failed(format!("sim: cannot run tar: {e}")))?;
            if !out.status.success() {
                let _ = fs::remove_dir_all(&vol);
                return Err(HostError::failed(format!(
                    "unable to restore CT {ctid} - tar failed: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                )));
            }
            let conf_path = vol.join("etc/vzdump/pct.conf");
            let text = fs::read_to_string(&conf_path).map_err(|_| {
                HostError::failed(format!(
                    "unable to restore CT {ctid} - archive has no etc/vzdump/pct.conf"
                ))
            })?;
            let _ = fs::remove_file(&conf_path);
            let mut conf = ConfFile::parse(&text)
                .map_err(|e| HostError::failed(format!("unable to restore CT {ctid} - {e}")))?;
            let main = conf.main_mut();
            let size = main
                .get("rootfs")
                .and_then(|r| MountPoint::parse(r).ok())
                .and_then(|mp| mp.size_bytes);
            main.set(
                "rootfs",
                &match size {
                    Some(b) => format!("{volid},size={}", props::format_size(b)),
                    None => volid.clone(),
                },
            );
            main.remove("parent");
            main.remove("lock");
            // The CT it replaces goes, with its volume and snapshots.
            if let Some(old) = old {
                if let Ok((old_vol, _)) = self.rootfs(&old) {
                    if old_vol != vol {
                        let _ = fs::remove_dir_all(&old_vol);
                    }
                }
            }
            let bytes = used_bytes(&vol);
            self.copy_latency(Verb::Restore, bytes);
            self.write_conf(ctid, &conf)?;
            Ok(((), bytes))
        })
    }

    /// `vzdump`'s work; the bytes it copied (the CT's used size).
    fn keep_now(&self, ctid: Ctid, storage: &str, note: &str) -> HostResult<(KeptCopy, u64)> {
        let store = self.storage(storage)?;
        if !store.holds("backup") {
            return Err(HostError::new(
                ErrorKind::Invalid,
                format!("storage '{storage}' does not support backups"),
            ));
        }
        let dump = self.dump_dir(&store)?;
        self.locked(&[ctid], || {
            let conf = self.get(ctid)?;
            if self.is_running(ctid) {
                return Err(HostError::failed(format!(
                    "sim: CT {ctid} runs; phoenix keeps a stopped CT (vzdump --mode stop)"
                )));
            }
            let (vol, _) = self.rootfs(&conf)?;
            let bytes = used_bytes(&vol);
            self.copy_latency(Verb::Backup, bytes);
            crate::os::create_dir_all(&dump).map_err(|e| io_err("create", &dump, e))?;
            // One archive a second, as vzdump names them; the model waits out a clash.
            let mut t = now();
            let archive = loop {
                let stamp = crate::os::utc(t).replace(['-', ':'], "_").replace(' ', "-");
                let a = dump.join(format!("vzdump-lxc-{ctid}-{stamp}.tar"));
                if !a.exists() {
                    break a;
                }
                t += 1;
            };
            let staging = dump.join(format!(".{ctid}.pct.conf.d"));
            let conf_dir = staging.join("etc/vzdump");
            crate::os::create_dir_all(&conf_dir).map_err(|e| io_err("create", &conf_dir, e))?;
            let mut main_only = ConfFile::new();
            *main_only.main_mut() = conf.main().clone();
            fs::write(conf_dir.join("pct.conf"), main_only.to_text())
                .map_err(|e| io_err("write", &conf_dir, e))?;
            let tar = |args: &[&std::ffi::OsStr]| -> HostResult<()> {
                let out = crate::os::host_command("tar")
                    .args(args)
                    .output()
                    .map_err(|e| HostError::failed(format!("sim: cannot run tar: {e}")))?;
                if out.status.success() {
                    Ok(())
                } else {
                    Err(HostError::failed(format!(
                        "sim: tar failed: {}",
                        String::from_utf8_lossy(&out.stderr).trim()
                    )))
                }
            };
            let partial = archive.with_extension("tar.partial");
            let made = tar(&[
                "-cf".as_ref(),
                partial.as_os_str(),
                "--exclude=./.zfs".as_ref(),
                "-C".as_ref(),
                vol.as_os_str(),
                ".".as_ref(),
            ])
            .and_then(|()| {
                tar(&[
                    "-rf".as_ref(),
                    partial.as_os_str(),
                    "-C".as_ref(),
                    staging.as_os_str(),
                    "./etc/vzdump/pct.conf".as_ref(),
                ])
            });
            let _ = fs::remove_dir_all(&staging);
            made?;
            // Complete or not there at all.
            fs::rename(&partial, &archive).map_err(|e| io_err("rename", &archive, e))?;
            let name = archive
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let _ = fs::write(dump.join(format!("{name}.notes")), note);
            Ok((
                KeptCopy {
                    location: format!("{storage}:backup/{name}"),
                    node: None,
                    size_bytes: fs::metadata(&archive).ok().map(|m| m.len()),
                },
                bytes,
            ))
        })
    }

    /// `pct create`'s checks and worker; the bytes it extracted.
    fn create_now(&self, ctid: Ctid, spec: &CreateSpec) -> HostResult<((), u64)> {
        self.locked(&[ctid], || {
            // Pre-fork [A-LXC create_vm]: the VMID is free in the cluster, the storage
            // holds CT disks.
            self.check_vmid_unused(ctid)?;
            let volid = self.new_volume(&self.storage(&spec.storage)?, ctid)?;
            // The worker's failures name the CT. Proxmox writes a bare `lock: create`
            // config first and rolls back; the model checks before it writes anything.
            let worker = |e: HostError| {
                HostError::new(
                    e.kind,
                    format!("unable to create CT {ctid} - {}", e.message),
                )
            };
            let template =
                storage::ostemplate_path(&self.storages()?, &self.local, &spec.ostemplate)
                    .ok()
                    .filter(|p| p.is_file());
            if template.is_none() {
                return Err(worker(text::no_such_file(&spec.ostemplate)));
            }
            let mut conf = ConfFile::new();
            let main = conf.main_mut();
            main.set("arch", "amd64");
            main.set("hostname", &format!("CT{ctid}"));
            main.set("memory", "512");
            main.set("swap", "512");
            main.set("ostype", ostype(&spec.ostemplate));
            main.set(
                "rootfs",
                &format!(
                    "{volid},size={}",
                    props::format_size(spec.disk_gb * props::GIB)
                ),
            );
            if spec.unprivileged {
                main.set("unprivileged", "1");
            }
            map::write_settings(main, &spec.settings, &mut || new_mac(ctid));
            let (vol, _) = self.volume(&volid)?;
            extract_skeleton(&vol).map_err(worker)?;
            Self::record_command(&vol, &format!("extract {}", spec.ostemplate)).map_err(worker)?;
            let bytes = used_bytes(&vol);
            self.copy_latency(Verb::Create, bytes);
            self.write_conf(ctid, &conf).map_err(worker)?;
            Ok(((), bytes))
        })
    }

    /// `pct clone`'s checks and worker; the bytes it copied.
    fn clone_now(&self, req: &CloneRequest) -> HostResult<((), u64)> {
        let (source, target) = (req.source, req.target);
        // Pre-fork, in Proxmox's order [A-LXC clone_vm]: the storage exists; the source
        // gets `lock: disk`; the target's VMID is free; then the checks of the request.
        // A failure unlocks the source and leaves no target.
        if let Some(s) = &req.storage {
            self.storage(s)?;
        }
        let src = self.locked(&[source], || {
            let mut src = self.get(source)?;
            Self::check_lock(src.main())?;
            src.main_mut().set("lock", "disk");
            self.write_conf(source, &src)?;
            Ok(src)
        })?;
        let unlock_source = || {
            self.locked(&[source], || match self.read_conf(source)? {
                Some(mut c) if c.main().get("lock") == Some("disk") => {
                    c.main_mut().remove("lock");
                    self.write_conf(source, &c)
                }
                _ => Ok(()),
            })
        };
        // Proxmox writes the target config bare (`lock: create`) and fills it before
        // forking; the model writes it once, complete, so that nothing sees it bare.
        // `--target`: made here, then its config moves to that node [A-LXC clone_vm].
        let elsewhere = req.node.as_deref().filter(|n| *n != self.node);
        let plan = self.locked(&[target], || {
            self.check_vmid_unused(target)?;
            if let Some(node) = elsewhere {
                let section = match &req.snapname {
                    Some(s) => src.snapshot(s).unwrap_or(src.main()),
                    None => src.main(),
                };
                self.check_clone_target(node, req.storage.as_deref(), &cluster::volumes(section))?;
            }
            let plan = self.clone_plan(&src, req)?;
            self.write_conf(target, &plan.conf)?;
            Ok(plan)
        });
        let plan = match plan {
            Ok(p) => p,
            Err(e) => {
                unlock_source()?;
                return Err(e);
            }
        };
        // The worker: the copy (for a linked clone too: the model has no copy-on-write,
        // but counts what ZFS would copy: nothing); the source stays locked meanwhile.
        let copied = self.effects(Verb::Clone, Some(target)).and_then(|_| {
            let (vol, _) = self.volume(&plan.volid)?;
            let bytes = if plan.full { used_bytes(&plan.from) } else { 0 };
            self.copy_latency(Verb::Clone, bytes);
            copy_tree(&plan.from, &vol).map_err(|e| {
                HostError::failed(format!("clone failed: {}", io_err("copy", &plan.from, e)))
            })?;
            Ok(bytes)
        });
        unlock_source()?;
        self.locked(&[target], || {
            if let Err(e) = &copied {
                // Proxmox frees the new volumes and deletes the target config.
                if let Ok((vol, _)) = self.volume(&plan.volid) {
                    let _ = fs::remove_dir_all(vol);
                }
                if self.read_conf(target)?.is_some() {
                    self.remove_conf(target)?;
                }
                return Err(e.clone());
            }
            let mut conf = self.get(target)?;
            conf.main_mut().remove("lock");
            self.write_conf(target, &conf)?;
            match elsewhere {
                Some(node) => self.move_conf(target, node),
                None => Ok(()),
            }
        })?;
        copied.map(|bytes| ((), bytes))
    }

    fn template_now(&self, ctid: Ctid) -> HostResult<()> {
        self.locked(&[ctid], || {
            let mut conf = self.get(ctid)?;
            Self::check_lock(conf.main())?;
            if !conf.snapshot_names().is_empty() {
                return Err(text::template_with_snapshots());
            }
            if Self::is_template(conf.main()) {
                return Err(text::template_of_template());
            }
            if self.is_running(ctid) {
                return Err(text::template_running());
            }
            // The worker [LXC template_create, ZFS/RBD create_base]: the volume becomes
            // the base `basevol-<vmid>-disk-N` on ZFS, `base-<vmid>-disk-N` on RBD; the
            // model's other storages do not offer it.
            let rootfs = conf.main().get("rootfs").unwrap_or_default().to_string();
            let mut mp = MountPoint::parse(&rootfs).map_err(|e| {
                HostError::failed(format!("unable to parse rootfs '{rootfs}': {e}"))
            })?;
            let (store, name) = mp.volume.split_once(':').unwrap_or(("", ""));
            let (prefix, last) = match name.rsplit_once('/') {
                Some((p, l)) => (format!("{p}/"), l),
                None => (String::new(), name),
            };
            // RBD renames the image `vm-*` to `base-*` and protects it [RBD create_base].
            let kind = self.storage(store).map(|s| s.kind).unwrap_or_default();
            let based = match kind.as_str() {
                "zfspool" => last.strip_prefix("subvol-").map(|b| format!("basevol-{b}")),
                "rbd" => last.strip_prefix("vm-").map(|b| format!("base-{b}")),
                _ => None,
            }
            .ok_or_else(|| text::template_unavailable(&mp.volume))?;
            let based = format!("{store}:{prefix}{based}");
            let (from, _) = self.volume(&mp.volume)?;
            let (to, _) = self.volume(&based)?;
            fs::rename(&from, &to).map_err(|e| io_err("rename", &from, e))?;
            mp.volume = based;
            conf.main_mut().set("rootfs", &mp.to_string());
            conf.main_mut().set("template", "1");
            self.write_conf(ctid, &conf)
        })
    }

    fn stop_now(&self, ctid: Ctid) -> HostResult<()> {
        self.locked(&[ctid], || {
            if !self.is_running(ctid) {
                return Err(text::not_running(ctid));
            }
            let conf = self.get(ctid)?;
            Self::check_lock(conf.main())?;
            self.set_running(ctid, false)
        })
    }

    /// Who has a VMID anywhere in the cluster: whether it is a QEMU VM, and its node
    /// [CLU get_vmlist].
    fn vmid_owner(&self, vmid: Ctid) -> Option<(bool, String)> {
        let nodes = fs::read_dir(self.root.join("etc/pve/nodes")).ok()?;
        nodes.flatten().find_map(|n| {
            [("lxc", false), ("qemu-server", true)]
                .into_iter()
                .find(|(dir, _)| n.path().join(dir).join(format!("{vmid}.conf")).exists())
                .map(|(_, qemu)| (qemu, n.file_name().to_string_lossy().into_owned()))
        })
    }

    /// The VMID is free on every node [CLU check_vmid_unused].
    fn check_vmid_unused(&self, vmid: Ctid) -> HostResult<()> {
        match self.vmid_owner(vmid) {
            Some((true, node)) => Err(text::vm_already_exists(vmid, &node)),
            Some((false, node)) => Err(text::already_exists(vmid, &node)),
            None => Ok(()),
        }
    }

    /// A clone's config and disk, or the first of `pct clone`'s checks that fails, in
    /// Proxmox's order [A-LXC clone_vm]. The model clones the root disk only.
    fn clone_plan(&self, src: &ConfFile, req: &CloneRequest) -> HostResult<ClonePlan> {
        let full = req.full.unwrap_or(!Self::is_template(src.main()));
        if req.storage.is_some() && !full {
            return Err(text::clone_storage_linked());
        }
        let section = match &req.snapname {
            Some(s) => src.snapshot(s).ok_or_else(|| text::snapshot_missing(s))?,
            None => src.main(),
        };
        let rootfs = section
            .get("rootfs")
            .ok_or_else(|| HostError::failed("CT has no rootfs"))?;
        let mut mp = MountPoint::parse(rootfs)
            .map_err(|e| HostError::failed(format!("unable to parse rootfs '{rootfs}': {e}")))?;
        let (store, name) = mp.volume.split_once(':').unwrap_or(("", ""));
        let last = name.rsplit('/').next().unwrap_or(name);
        let (mut from, _) = self.volume(&mp.volume)?;
        if let Some(s) = &req.snapname {
            from = from.join(".zfs/snapshot").join(s);
        }
        let volid = if full {
            if self.is_running(req.source) && req.snapname.is_none() {
                return Err(text::clone_running_full());
            }
            let storage = self.storage(req.storage.as_deref().unwrap_or(store))?;
            self.new_volume(&storage, req.target)?
        } else {
            // ZFS offers `clone` for base volumes, not from a snapshot [ZFS
            // volume_has_feature]; RBD for its base images `base-*` [RBD
            // volume_has_feature] (phoenix links from a template, never a snapshot).
            let kind = self.storage(store).map(|s| s.kind).unwrap_or_default();
            let base = match kind.as_str() {
                "zfspool" => last.starts_with("basevol-"),
                "rbd" => last.starts_with("base-"),
                _ => false,
            };
            if !base || req.snapname.is_some() {
                return Err(text::clone_linked_unavailable(&mp.volume));
            }
            let linked = self.new_volume(&self.storage(store)?, req.target)?;
            let (_, disk) = linked.split_once(':').unwrap_or(("", &linked));
            format!("{store}:{last}/{disk}")
        };
        mp.volume = volid.clone();
        // The source's config less its history and its locks; every interface gets a
        // new MAC.
        let mut conf = ConfFile::new();
        let main = conf.main_mut();
        for (k, v) in section.keys() {
            let history = matches!(
                k,
                "lock" | "parent" | "snaptime" | "snapstate" | "template" | "digest"
            );
            if !history && !k.starts_with("unused") {
                main.set(k, v);
            }
        }
        for (k, v) in section.lxc() {
            main.push_lxc(k, v);
        }
        main.set_description(req.description.as_deref().unwrap_or(&section.description()));
        main.set("rootfs", &mp.to_string());
        main.set("lock", "create");
        if let Some(h) = &req.hostname {
            main.set("hostname", h);
        }
        let nets: Vec<(String, String)> = main
            .keys()
            .filter(|(k, _)| {
                k.strip_prefix("net")
                    .is_some_and(|n| n.parse::<u32>().is_ok())
            })
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        for (k, v) in nets {
            if let Ok(mut n) = props::NetConf::parse(&v) {
                n.hwaddr = Some(new_mac(req.target));
                main.set(&k, &n.to_string());
            }
        }
        Ok(ClonePlan {
            conf,
            from,
            volid,
            full,
        })
    }

    /// Whether a CT of this node has a linked clone of this base volume.
    fn base_in_use(&self, volid: &str) -> HostResult<bool> {
        let dir = self.conf_dir();
        let prefix = format!("{volid}/");
        for id in map::conf_ids(&dir).map_err(|e| io_err("read", &dir, e))? {
            let uses = self
                .read_conf(id)?
                .is_some_and(|c| rootfs_volid(c.main()).starts_with(&prefix));
            if uses {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Applies the `[pve:pending]` section, as a start or a change to a stopped CT does
    /// [LCFG vmconfig_apply_pending].
    fn apply_pending(conf: &mut ConfFile) {
        let Some(pending) = conf.remove_pending() else {
            return;
        };
        let main = conf.main_mut();
        for (k, v) in pending.keys() {
            if k == "delete" {
                for (d, _) in props::PendingDelete::parse(v).iter() {
                    main.remove(d);
                }
            } else {
                main.set(k, v);
            }
        }
    }
}

/// What `pct clone` makes: the new config, the files its disk starts from and the
/// disk's volume id.
struct ClonePlan {
    conf: ConfFile,
    from: PathBuf,
    volid: String,
    /// A full copy (else a linked clone of a base volume).
    full: bool,
}

/// Keys a running CT takes at once [LCFG vmconfig_hotplug_pending]; a new `mpN` or
/// `devN` is hot-plugged too. The others wait in `[pve:pending]` for the next start.
fn is_hot(key: &str, existed: bool) -> bool {
    let numbered = |stem: &str| {
        key.strip_prefix(stem)
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
    };
    matches!(
        key,
        "hostname"
            | "cores"
            | "description"
            | "onboot"
            | "startup"
            | "protection"
            | "hookscript"
            | "tags"
            | "memory"
            | "swap"
            | "cpulimit"
            | "cpuunits"
    ) || numbered("net")
        || (!existed && (numbered("mp") || numbered("dev")))
}

/// The directories every OS template's tarball carries; the model's "extraction".
const SKELETON: [&str; 8] = [
    "bin",
    "etc",
    "root",
    "tmp",
    "usr/bin",
    "usr/local/bin",
    "var/log",
    "var/tmp",
];

fn extract_skeleton(vol: &Path) -> HostResult<()> {
    use std::os::unix::fs::PermissionsExt;
    for dir in SKELETON {
        let d = vol.join(dir);
        crate::os::create_dir_all(&d).map_err(|e| io_err("create", &d, e))?;
        if dir.ends_with("tmp") {
            fs::set_permissions(&d, fs::Permissions::from_mode(0o1777))
                .map_err(|e| io_err("chmod", &d, e))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
