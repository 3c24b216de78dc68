//! `sim`: an embedded simulated Proxmox host.
//!
//! The zero-setup backend: the README demo, most tests and the benchmarks run on it. Its
//! state lives under `<state-dir>/sim/`, one JSON file per CT (`lxc/<ctid>.json`, like
//! PVE's one config file per CT), each change written atomically (temp file + rename)
//! under that CT's file lock (`locks/ct-<ctid>.lock`, as PVE locks each CT's config), so
//! that phoenix's workers and the `pct` that hooks call share one consistent host while
//! work on different CTs proceeds in parallel.
//!
//! It behaves like Proxmox where phoenix depends on it (`pct-spec.md`): a clone locks its
//! source (`CT is locked (disk)`) for the duration of the copy, snapshot names follow
//! PVE's rule, a clone starts stopped, `exec`/`push` need a running CT, a running CT
//! cannot be destroyed, error texts are PVE's. Commands run inside a CT are recorded,
//! not executed.
//!
//! Knobs (environment):
//! - `PHOENIX_SIM_LATENCY=*=50,clone=2000,exec=100`: milliseconds per verb (`*` default).
//! - `PHOENIX_SIM_FAULTS=exec:950=exit3,clone:910=locked*2,start:903=fail`: injected faults;
//!   `verb:ctid=effect[*count]`, effects `fail` (a permanent error), `locked` (the transient
//!   `CT is locked (disk)`), `exitN` (exec exits N), `sleepMS` (the call takes MS longer);
//!   `*count` limits a fault to its first `count` calls. `ctid` may be `*`.
//! - `PHOENIX_SIM_NVIDIA_VERSION=580.76.05|none`: the host kernel driver the sim reports.
//!
//! Every call is appended to `sim/calls.log` (one JSON object a line: verb, ctid,
//! mutating), which tests and benchmarks read to count host calls.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::thread::sleep;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::engine::snapshot::is_valid_snapshot_name;
use crate::fleet::config::Ctid;
use crate::host::{
    parse_char_majors, parse_nvidia_version, CreateSpec, CtInfo, Host, HostError, HostFacts,
    HostResult, SnapshotInfo,
};

const NODE: &str = "sim";

/// `/proc/devices` of a host with the NVIDIA driver loaded.
const PROC_DEVICES: &str = include_str!("../../tests/fixtures/host/proc-devices.txt");
/// `/proc/driver/nvidia/version` of such a host; the version is replaced by the sim's.
const PROC_NVIDIA_VERSION: &str =
    include_str!("../../tests/fixtures/host/proc-driver-nvidia-version.txt");
pub const DEFAULT_NVIDIA_VERSION: &str = "580.76.05";

/// A snapshot: its listing entry and the CT as it was.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct SimSnapshot {
    info: SnapshotInfo,
    config: BTreeMap<String, String>,
    raw_lxc: Vec<String>,
    files: BTreeMap<String, String>,
    history: Vec<String>,
}

/// One simulated CT.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct SimCt {
    ctid: Ctid,
    config: BTreeMap<String, String>,
    raw_lxc: Vec<String>,
    running: bool,
    lock: Option<String>,
    snapshots: Vec<SimSnapshot>,
    parent: Option<String>,
    /// Files pushed into the CT: path → content.
    files: BTreeMap<String, String>,
    /// Commands run inside, in order: the simulated rootfs content.
    history: Vec<String>,
}

impl SimCt {
    fn info(&self) -> CtInfo {
        CtInfo {
            ctid: self.ctid,
            running: self.running,
            lock: self.lock.clone(),
            config: self.config.clone(),
            raw_lxc: self.raw_lxc.clone(),
            snapshots: self.snapshots.iter().map(|s| s.info.clone()).collect(),
            parent_snapshot: self.parent.clone(),
        }
    }
    fn check_lock(&self) -> HostResult<()> {
        match &self.lock {
            Some(l) => Err(HostError::transient(format!("CT is locked ({l})"))),
            None => Ok(()),
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
enum Effect {
    Fail,
    Locked,
    Exit(i32),
    Sleep(u64),
}

#[derive(Clone, Debug)]
struct Fault {
    spec: String,
    verb: String,
    ctid: Option<Ctid>,
    effect: Effect,
    count: Option<u64>,
}

/// Parses `PHOENIX_SIM_FAULTS`.
fn parse_faults(text: &str) -> Result<Vec<Fault>, String> {
    text.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|spec| {
            let bad = || format!("PHOENIX_SIM_FAULTS: cannot read `{spec}` (expected verb:ctid=effect[*count], e.g. exec:950=exit3)");
            let (target, effect) = spec.split_once('=').ok_or_else(bad)?;
            let (verb, ctid) = target.split_once(':').ok_or_else(bad)?;
            let ctid = if ctid == "*" { None } else { Some(ctid.parse().map_err(|_| bad())?) };
            let (effect, count) = match effect.split_once('*') {
                Some((e, n)) => (e, Some(n.parse().map_err(|_| bad())?)),
                None => (effect, None),
            };
            let effect = match effect {
                "fail" => Effect::Fail,
                "locked" => Effect::Locked,
                e if e.starts_with("exit") => Effect::Exit(e[4..].parse().map_err(|_| bad())?),
                e if e.starts_with("sleep") => Effect::Sleep(e[5..].parse().map_err(|_| bad())?),
                _ => return Err(bad()),
            };
            Ok(Fault { spec: spec.to_string(), verb: verb.to_string(), ctid, effect, count })
        })
        .collect()
}

/// Parses `PHOENIX_SIM_LATENCY` into milliseconds per verb.
fn parse_latency(text: &str) -> Result<BTreeMap<String, u64>, String> {
    text.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|kv| {
            let (k, v) = kv
                .split_once('=')
                .ok_or_else(|| format!("PHOENIX_SIM_LATENCY: cannot read `{kv}` (expected verb=ms, e.g. *=50,clone=2000)"))?;
            let ms = v
                .trim()
                .parse()
                .map_err(|_| format!("PHOENIX_SIM_LATENCY: `{v}` is not a number of milliseconds"))?;
            Ok((k.trim().to_string(), ms))
        })
        .collect()
}

pub struct SimHost {
    dir: PathBuf,
    latency: BTreeMap<String, u64>,
    faults: Vec<Fault>,
    /// `<dir>/bin`, holding the `pct` link, made once per process.
    pct_dir: std::sync::OnceLock<Option<PathBuf>>,
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn missing(ctid: Ctid) -> HostError {
    HostError::not_found(format!(
        "Configuration file 'nodes/{NODE}/lxc/{ctid}.conf' does not exist"
    ))
}

/// A MAC in Proxmox's default `BC:24:11` range, derived from the CT and a counter so that
/// runs are reproducible.
fn new_mac(ctid: Ctid, salt: usize) -> String {
    let h = blake3::hash(format!("{ctid}:{salt}:{}", now()).as_bytes());
    let b = h.as_bytes();
    format!("BC:24:11:{:02X}:{:02X}:{:02X}", b[0], b[1], b[2])
}

fn with_hwaddr(net: &str, mac: &str) -> String {
    let mut parts: Vec<String> = net
        .split(',')
        .filter(|p| !p.starts_with("hwaddr="))
        .map(str::to_string)
        .collect();
    parts.push(format!("hwaddr={mac}"));
    parts.join(",")
}

impl SimHost {
    /// Opens (creating if needed) the simulated host under `<state_dir>/sim`.
    pub fn open(state_dir: &Path) -> Result<SimHost, String> {
        let dir = state_dir.join("sim");
        fs::create_dir_all(dir.join("lxc"))
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let latency = parse_latency(&std::env::var("PHOENIX_SIM_LATENCY").unwrap_or_default())?;
        let faults = parse_faults(&std::env::var("PHOENIX_SIM_FAULTS").unwrap_or_default())?;
        Ok(SimHost {
            dir,
            latency,
            faults,
            pct_dir: std::sync::OnceLock::new(),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn ct_path(&self, ctid: Ctid) -> PathBuf {
        self.dir.join("lxc").join(format!("{ctid}.json"))
    }

    /// Holds the config locks of these CTs (in ascending order, so two callers never wait
    /// on each other) for one read-modify-write, like PVE's `pve-config-<vmid>.lock`.
    fn locked<T>(&self, ctids: &[Ctid], f: impl FnOnce() -> HostResult<T>) -> HostResult<T> {
        let mut ids = ctids.to_vec();
        ids.sort_unstable();
        ids.dedup();
        let mut held = Vec::with_capacity(ids.len());
        for id in ids {
            held.push(self.lock_file(&format!("ct-{id}"))?);
        }
        let r = f();
        drop(held); // closing the files releases the locks
        r
    }

    /// Holds one named lock of the simulated host.
    fn locked_file<T>(&self, name: &str, f: impl FnOnce() -> HostResult<T>) -> HostResult<T> {
        let _held = self.lock_file(name)?;
        f()
    }

    fn lock_file(&self, name: &str) -> HostResult<File> {
        let dir = self.dir.join("locks");
        let open = || {
            OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(dir.join(format!("{name}.lock")))
        };
        let file = open()
            .or_else(|_| fs::create_dir_all(&dir).and_then(|()| open()))
            .map_err(|e| HostError::failed(format!("sim: cannot open lock {name}: {e}")))?;
        file.lock()
            .map_err(|e| HostError::failed(format!("sim: cannot take lock {name}: {e}")))?;
        Ok(file)
    }

    fn load(&self, ctid: Ctid) -> HostResult<Option<SimCt>> {
        match fs::read(self.ct_path(ctid)) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| HostError::failed(format!("sim: CT {ctid} state is corrupt: {e}"))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(HostError::failed(format!(
                "sim: cannot read CT {ctid}: {e}"
            ))),
        }
    }

    fn get(&self, ctid: Ctid) -> HostResult<SimCt> {
        self.load(ctid)?.ok_or_else(|| missing(ctid))
    }

    fn save(&self, ct: &SimCt) -> HostResult<()> {
        let path = self.ct_path(ct.ctid);
        let tmp = path.with_extension(format!("json.tmp{}", std::process::id()));
        let bytes = serde_json::to_vec_pretty(ct).map_err(|e| HostError::failed(e.to_string()))?;
        let write = || -> std::io::Result<()> {
            let mut f = File::create(&tmp)?;
            // Rename makes the write atomic for every reader and survives a killed
            // process; a simulated host needs no fsync.
            f.write_all(&bytes)?;
            fs::rename(&tmp, &path)
        };
        write().map_err(|e| HostError::failed(format!("sim: cannot write CT {}: {e}", ct.ctid)))
    }

    fn remove(&self, ctid: Ctid) -> HostResult<()> {
        fs::remove_file(self.ct_path(ctid))
            .map_err(|e| HostError::failed(format!("sim: cannot remove CT {ctid}: {e}")))
    }

    /// Records the call, applies its latency and any injected fault.
    fn call(&self, verb: &str, ctid: Option<Ctid>, mutating: bool) -> HostResult<Option<i32>> {
        self.record(verb, ctid, mutating);
        self.effects(verb, ctid)
    }

    fn record(&self, verb: &str, ctid: Option<Ctid>, mutating: bool) {
        let line = serde_json::json!({"verb": verb, "ctid": ctid, "mutating": mutating, "pid": std::process::id()});
        if let Ok(mut f) = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("calls.log"))
        {
            // One write per line: appends from threads and processes never interleave.
            let _ = f.write_all(format!("{line}\n").as_bytes());
        }
    }

    /// The time a verb takes, and the faults injected into it. An `exitN` fault is returned.
    fn effects(&self, verb: &str, ctid: Option<Ctid>) -> HostResult<Option<i32>> {
        let ms = self
            .latency
            .get(verb)
            .or_else(|| self.latency.get("*"))
            .copied()
            .unwrap_or(0);
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
                Effect::Locked => return Err(HostError::transient("CT is locked (disk)")),
                Effect::Exit(n) => exit = Some(n),
                Effect::Sleep(ms) => sleep(Duration::from_millis(ms)),
            }
        }
        Ok(exit)
    }

    /// True while a counted fault has calls left (and uses one).
    fn count_fault(&self, spec: &str, limit: u64) -> HostResult<bool> {
        self.locked_file("faults", || {
            let path = self.dir.join("faults.json");
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
        })
    }

    /// Reads one CT that must exist (the `pct` shim's `config`, `status`, ...).
    pub fn ct_info(&self, ctid: Ctid) -> HostResult<CtInfo> {
        self.ct(ctid)?.ok_or_else(|| missing(ctid))
    }

    /// A file pushed into a CT, for `pct pull`.
    pub fn pull(&self, ctid: Ctid, path: &str) -> HostResult<String> {
        self.call("pull", Some(ctid), false)?;
        let ct = self.get(ctid)?;
        if !ct.running {
            return Err(HostError::failed("can only pull files from a running VM"));
        }
        ct.files.get(path).cloned().ok_or_else(|| {
            HostError::failed(format!("failed to open {path}: No such file or directory"))
        })
    }

    /// Commands recorded inside a CT (tests compare host states with it).
    pub fn history(&self, ctid: Ctid) -> HostResult<Vec<String>> {
        Ok(self.get(ctid)?.history)
    }

    /// Stores pushed content directly (the shim's `push` reads the host file itself).
    pub fn push_content(&self, ctid: Ctid, dest: &str, content: String) -> HostResult<()> {
        self.call("push", Some(ctid), true)?;
        self.locked(&[ctid], || {
            let mut ct = self.get(ctid)?;
            if !ct.running {
                return Err(HostError::failed("can only push files to a running CT"));
            }
            ct.files.insert(dest.to_string(), content);
            self.save(&ct)
        })
    }
}

impl Host for SimHost {
    fn name(&self) -> &'static str {
        "sim"
    }

    fn inventory(&self) -> HostResult<BTreeMap<Ctid, CtInfo>> {
        self.call("inventory", None, false)?;
        let mut out = BTreeMap::new();
        let entries = fs::read_dir(self.dir.join("lxc"))
            .map_err(|e| HostError::failed(format!("sim: {e}")))?;
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let Some(ctid) = name
                .strip_suffix(".json")
                .and_then(|n| n.parse::<Ctid>().ok())
            else {
                continue;
            };
            if let Some(ct) = self.load(ctid)? {
                out.insert(ctid, ct.info());
            }
        }
        Ok(out)
    }

    fn ct(&self, ctid: Ctid) -> HostResult<Option<CtInfo>> {
        self.call("config", Some(ctid), false)?;
        Ok(self.load(ctid)?.map(|ct| ct.info()))
    }

    fn facts(&self) -> HostResult<HostFacts> {
        self.call("facts", None, false)?;
        let version = match std::env::var("PHOENIX_SIM_NVIDIA_VERSION") {
            Ok(v) if v == "none" => None,
            Ok(v) if !v.is_empty() => Some(v),
            _ => Some(DEFAULT_NVIDIA_VERSION.to_string()),
        };
        let nvidia_driver = version
            .and_then(|v| parse_nvidia_version(&PROC_NVIDIA_VERSION.replace("580.76.05", &v)));
        let (char_majors, nvidia_devices) = if nvidia_driver.is_some() {
            (
                parse_char_majors(PROC_DEVICES),
                [
                    "nvidia0",
                    "nvidia1",
                    "nvidiactl",
                    "nvidia-uvm",
                    "nvidia-uvm-tools",
                    "nvidia-modeset",
                ]
                .iter()
                .map(|d| format!("/dev/{d}"))
                .collect(),
            )
        } else {
            (BTreeMap::new(), Vec::new())
        };
        Ok(HostFacts {
            nvidia_driver,
            char_majors,
            nvidia_devices,
        })
    }

    fn create(&self, ctid: Ctid, spec: &CreateSpec) -> HostResult<()> {
        self.call("create", Some(ctid), true)?;
        self.locked(&[ctid], || {
            if self.load(ctid)?.is_some() {
                return Err(HostError::failed(format!(
                    "CT {ctid} already exists on node '{NODE}'"
                )));
            }
            let mut config = spec.options.clone();
            config.insert("arch".into(), "amd64".into());
            config.insert("ostype".into(), "ubuntu".into());
            config
                .entry("hostname".into())
                .or_insert_with(|| format!("CT{ctid}"));
            config
                .entry("memory".into())
                .or_insert_with(|| "512".into());
            config.insert(
                "unprivileged".into(),
                if spec.unprivileged { "1" } else { "0" }.into(),
            );
            config.insert(
                "rootfs".into(),
                format!(
                    "{}:subvol-{ctid}-disk-0,size={}G",
                    spec.storage, spec.rootfs_gb
                ),
            );
            if let Some(net) = config.get("net0").cloned() {
                if !net.contains("hwaddr=") {
                    config.insert("net0".into(), with_hwaddr(&net, &new_mac(ctid, 0)));
                }
            }
            self.save(&SimCt {
                ctid,
                config,
                raw_lxc: Vec::new(),
                running: false,
                lock: None,
                snapshots: Vec::new(),
                parent: None,
                files: BTreeMap::new(),
                history: vec![format!("extract {}", spec.ostemplate)],
            })
        })
    }

    fn clone_ct(
        &self,
        source: Ctid,
        snapname: &str,
        target: Ctid,
        hostname: &str,
        storage: &str,
    ) -> HostResult<()> {
        // Pre-fork: lock the source, create the target with `lock: create` (PVE order).
        self.record("clone", Some(target), true);
        self.locked(&[source, target], || {
            let mut src = self.get(source)?;
            src.check_lock()?;
            if self.load(target)?.is_some() {
                return Err(HostError::failed(format!(
                    "CT {target} already exists on node '{NODE}'"
                )));
            }
            let snap = src
                .snapshots
                .iter()
                .find(|s| s.info.name == snapname)
                .cloned()
                .ok_or_else(|| {
                    HostError::failed(format!("snapshot '{snapname}' does not exist"))
                })?;
            src.lock = Some("disk".into());
            self.save(&src)?;
            let mut config = snap.config.clone();
            config.insert("hostname".into(), hostname.to_string());
            self.save(&SimCt {
                ctid: target,
                config,
                raw_lxc: snap.raw_lxc.clone(),
                running: false,
                lock: Some("create".into()),
                snapshots: Vec::new(),
                parent: None,
                files: snap.files.clone(),
                history: snap.history.clone(),
            })
        })?;
        // The copy itself: the source stays locked meanwhile.
        let copied = self.effects("clone", Some(target));
        self.locked(&[source, target], || {
            if let Some(mut src) = self.load(source)? {
                src.lock = None;
                self.save(&src)?;
            }
            if let Err(e) = &copied {
                // PVE frees the new volumes and deletes the target config.
                let _ = self.remove(target);
                return Err(e.clone());
            }
            let mut ct = self.get(target)?;
            ct.lock = None;
            let mut salt = 1;
            for (k, v) in ct.config.iter_mut() {
                if k.starts_with("net") {
                    *v = with_hwaddr(v, &new_mac(target, salt));
                    salt += 1;
                }
            }
            if let Some(rootfs) = ct.config.get("rootfs").cloned() {
                let size = rootfs
                    .split(',')
                    .find(|p| p.starts_with("size="))
                    .unwrap_or("size=4G")
                    .to_string();
                ct.config.insert(
                    "rootfs".into(),
                    format!("{storage}:subvol-{target}-disk-0,{size}"),
                );
            }
            self.save(&ct)
        })
    }

    fn set(&self, ctid: Ctid, options: &[(String, String)]) -> HostResult<()> {
        self.call("set", Some(ctid), true)?;
        if options.is_empty() {
            return Err(HostError::failed("no options specified"));
        }
        self.locked(&[ctid], || {
            let mut ct = self.get(ctid)?;
            ct.check_lock()?;
            for (k, v) in options {
                if k == "unprivileged" {
                    return Err(HostError::failed(
                        "unable to modify read-only option: 'unprivileged'",
                    ));
                }
                if k == "delete" {
                    for key in v.split(',') {
                        ct.config.remove(key);
                    }
                } else {
                    ct.config.insert(k.clone(), v.clone());
                }
            }
            self.save(&ct)
        })
    }

    fn resize(&self, ctid: Ctid, disk: &str, size_gb: u64) -> HostResult<()> {
        self.call("resize", Some(ctid), true)?;
        self.locked(&[ctid], || {
            let mut ct = self.get(ctid)?;
            ct.check_lock()?;
            let vol = ct.config.get(disk).cloned().ok_or_else(|| {
                HostError::failed(format!("unable to parse volume ID for '{disk}'"))
            })?;
            let current = ct.info().rootfs_gb().unwrap_or(0);
            if size_gb < current {
                return Err(HostError::failed("unable to shrink disk size"));
            }
            let base = vol
                .split(',')
                .filter(|p| !p.starts_with("size="))
                .collect::<Vec<_>>()
                .join(",");
            ct.config
                .insert(disk.to_string(), format!("{base},size={size_gb}G"));
            self.save(&ct)
        })
    }

    fn set_raw_lxc(&self, ctid: Ctid, prefixes: &[&str], lines: &[String]) -> HostResult<()> {
        self.call("set_raw_lxc", Some(ctid), true)?;
        self.locked(&[ctid], || {
            let mut ct = self.get(ctid)?;
            ct.check_lock()?;
            ct.raw_lxc
                .retain(|l| !prefixes.iter().any(|p| l.starts_with(p)));
            ct.raw_lxc.extend(lines.iter().cloned());
            self.save(&ct)
        })
    }

    fn start(&self, ctid: Ctid) -> HostResult<()> {
        self.call("start", Some(ctid), true)?;
        self.locked(&[ctid], || {
            let mut ct = self.get(ctid)?;
            if ct.running {
                return Err(HostError::failed(format!("CT {ctid} already running")));
            }
            if ct.lock.as_deref().is_some_and(|l| l != "mounted") {
                ct.check_lock()?;
            }
            if ct.config.get("template").is_some_and(|t| t == "1") {
                return Err(HostError::failed("you can't start a CT if it's a template"));
            }
            ct.running = true;
            self.save(&ct)
        })
    }

    fn shutdown(&self, ctid: Ctid, _timeout_s: u64) -> HostResult<()> {
        self.call("shutdown", Some(ctid), true)?;
        self.locked(&[ctid], || {
            let mut ct = self
                .load(ctid)?
                .ok_or_else(|| HostError::failed(format!("CT {ctid} not running")))?;
            if !ct.running {
                return Err(HostError::failed(format!("CT {ctid} not running")));
            }
            ct.check_lock()?;
            ct.running = false;
            self.save(&ct)
        })
    }

    fn exec(&self, ctid: Ctid, argv: &[String], log: &mut dyn Write) -> HostResult<i32> {
        let injected = self.call("exec", Some(ctid), true)?;
        if argv.is_empty() {
            return Err(HostError::failed("missing command"));
        }
        self.locked(&[ctid], || {
            let mut ct = self.get(ctid)?;
            if !ct.running {
                return Err(HostError::failed(format!(
                    "container '{ctid}' not running!"
                )));
            }
            ct.history.push(argv.join(" "));
            self.save(&ct)
        })?;
        let code = injected.unwrap_or(0);
        if code != 0 {
            let _ = writeln!(log, "sim: `{}` exited {code} (injected)", argv.join(" "));
        }
        Ok(code)
    }

    fn push(&self, ctid: Ctid, local: &Path, dest: &str, _perms: u32) -> HostResult<()> {
        let content = fs::read(local).map_err(|_| {
            HostError::failed(format!("failed to open {} for reading", local.display()))
        })?;
        self.push_content(ctid, dest, String::from_utf8_lossy(&content).into_owned())
    }

    fn snapshot(&self, ctid: Ctid, name: &str, description: &str) -> HostResult<()> {
        self.call("snapshot", Some(ctid), true)?;
        if name == "current" || name == "vzdump" {
            return Err(HostError::failed(format!(
                "unable to use snapshot name '{name}' (reserved name)"
            )));
        }
        if !is_valid_snapshot_name(name) {
            return Err(HostError::failed(if name.len() > 40 {
                "400 Parameter verification failed.\nsnapname: value may only be 40 characters long"
                    .to_string()
            } else {
                format!("400 Parameter verification failed.\nsnapname: invalid format - invalid configuration ID '{name}'")
            }));
        }
        self.locked(&[ctid], || {
            let mut ct = self.get(ctid)?;
            if ct.config.get("template").is_some_and(|t| t == "1") {
                return Err(HostError::failed(
                    "you can't take a snapshot if it's a template",
                ));
            }
            ct.check_lock()?;
            if ct.snapshots.iter().any(|s| s.info.name == name) {
                return Err(HostError::failed(format!(
                    "snapshot name '{name}' already used"
                )));
            }
            ct.snapshots.push(SimSnapshot {
                info: SnapshotInfo {
                    name: name.to_string(),
                    description: description.to_string(),
                    snaptime: now(),
                    parent: ct.parent.clone(),
                },
                config: ct.config.clone(),
                raw_lxc: ct.raw_lxc.clone(),
                files: ct.files.clone(),
                history: ct.history.clone(),
            });
            ct.parent = Some(name.to_string());
            self.save(&ct)
        })
    }

    fn delete_snapshot(&self, ctid: Ctid, name: &str) -> HostResult<()> {
        self.call("delsnapshot", Some(ctid), true)?;
        self.locked(&[ctid], || {
            let mut ct = self.get(ctid)?;
            let Some(pos) = ct.snapshots.iter().position(|s| s.info.name == name) else {
                return Err(HostError::failed(format!(
                    "snapshot '{name}' does not exist"
                )));
            };
            ct.check_lock()?;
            let removed = ct.snapshots.remove(pos);
            for s in &mut ct.snapshots {
                if s.info.parent.as_deref() == Some(name) {
                    s.info.parent = removed.info.parent.clone();
                }
            }
            if ct.parent.as_deref() == Some(name) {
                ct.parent = removed.info.parent.clone();
            }
            self.save(&ct)
        })
    }

    fn destroy(&self, ctid: Ctid) -> HostResult<()> {
        self.call("destroy", Some(ctid), true)?;
        self.locked(&[ctid], || {
            let ct = self.get(ctid)?;
            ct.check_lock()?;
            if ct.running {
                return Err(HostError::failed(format!(
                    "unable to destroy CT {ctid} - container is running"
                )));
            }
            self.remove(ctid)
        })
    }

    fn unlock(&self, ctid: Ctid) -> HostResult<()> {
        self.call("unlock", Some(ctid), true)?;
        self.locked(&[ctid], || {
            let mut ct = self.get(ctid)?;
            if ct.lock.take().is_none() {
                return Err(HostError::failed("no lock found trying to remove any lock"));
            }
            self.save(&ct)
        })
    }

    fn pct_dir(&self) -> Option<PathBuf> {
        self.pct_dir
            .get_or_init(|| link_pct(&self.dir.join("bin")))
            .clone()
    }

    fn hook_env(&self) -> Vec<(String, String)> {
        let state = self.dir.parent().unwrap_or(&self.dir);
        vec![("PHOENIX_STATE_DIR".into(), state.display().to_string())]
    }
}

/// Makes `<bin>/pct` a link to this binary (which acts as `pct` under that name).
fn link_pct(bin: &Path) -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    // A binary replaced while it runs (an upgrade) reads as "<path> (deleted)".
    let exe = match exe.to_str().and_then(|s| s.strip_suffix(" (deleted)")) {
        Some(s) => PathBuf::from(s),
        None => exe,
    };
    fs::create_dir_all(bin).ok()?;
    let link = bin.join("pct");
    if fs::read_link(&link).ok().as_deref() != Some(exe.as_path()) {
        let tmp = bin.join(format!(".pct.{}", std::process::id()));
        let _ = fs::remove_file(&tmp);
        std::os::unix::fs::symlink(&exe, &tmp).ok()?;
        fs::rename(&tmp, &link).ok()?;
    }
    Some(bin.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host() -> (tempfile::TempDir, SimHost) {
        let t = tempfile::tempdir().unwrap();
        let h = SimHost {
            dir: t.path().join("sim"),
            latency: BTreeMap::new(),
            faults: Vec::new(),
            pct_dir: std::sync::OnceLock::new(),
        };
        fs::create_dir_all(h.dir.join("lxc")).unwrap();
        (t, h)
    }

    fn spec() -> CreateSpec {
        CreateSpec {
            ostemplate: "local:vztmpl/x.tar.zst".into(),
            storage: "local-zfs".into(),
            rootfs_gb: 8,
            unprivileged: true,
            options: BTreeMap::new(),
        }
    }

    #[test]
    fn behaves_like_pve_where_phoenix_depends_on_it() {
        let (_t, h) = host();
        h.create(100, &spec()).unwrap();
        assert!(h
            .create(100, &spec())
            .unwrap_err()
            .message
            .contains("already exists on node"));
        let mut log = Vec::new();
        assert!(h
            .exec(100, &["true".into()], &mut log)
            .unwrap_err()
            .message
            .contains("not running"));
        assert!(h
            .snapshot(100, "2024-01-01", "")
            .unwrap_err()
            .message
            .contains("invalid configuration ID"));
        h.snapshot(100, "phx-abc", "d").unwrap();
        assert!(h
            .snapshot(100, "phx-abc", "d")
            .unwrap_err()
            .message
            .contains("already used"));
        // clone from the snapshot: stopped, new MAC, source unlocked afterwards
        h.clone_ct(100, "phx-abc", 101, "child", "local-zfs")
            .unwrap();
        let inv = h.inventory().unwrap();
        assert!(!inv[&101].running);
        assert_eq!(inv[&100].lock, None);
        assert!(h
            .clone_ct(100, "nope", 102, "x", "local-zfs")
            .unwrap_err()
            .message
            .contains("does not exist"));
        h.start(101).unwrap();
        assert!(h
            .destroy(101)
            .unwrap_err()
            .message
            .contains("container is running"));
        assert!(h.get(999).unwrap_err().kind == crate::host::ErrorKind::NotFound);
    }

    #[test]
    fn parallel_clones_of_one_source_collide() {
        let (_t, mut h) = host();
        h.latency.insert("clone".into(), 300);
        h.create(100, &spec()).unwrap();
        h.snapshot(100, "s1", "").unwrap();
        let h = std::sync::Arc::new(h);
        let a = {
            let h = h.clone();
            std::thread::spawn(move || h.clone_ct(100, "s1", 101, "a", "local-zfs"))
        };
        std::thread::sleep(Duration::from_millis(50));
        let b = h.clone_ct(100, "s1", 102, "b", "local-zfs");
        assert!(a.join().unwrap().is_ok());
        let err = b.unwrap_err();
        assert_eq!(err.message, "CT is locked (disk)");
        assert_eq!(err.kind, crate::host::ErrorKind::Transient);
    }

    #[test]
    fn knobs_parse() {
        assert_eq!(parse_latency("*=50, clone=2000").unwrap()["clone"], 2000);
        assert!(parse_latency("clone").is_err());
        let f = parse_faults("exec:950=exit3,clone:*=locked*2").unwrap();
        assert_eq!(f[0].effect, Effect::Exit(3));
        assert_eq!(f[1].ctid, None);
        assert_eq!(f[1].count, Some(2));
        assert!(parse_faults("exec=1").is_err());
    }
}
