//! `pve`: a Proxmox VE node driven through `pct`.
//!
//! Reads are files, in bulk: every CT config under `<root>/etc/pve/nodes/*/lxc/` (and the
//! VMs under `qemu-server/`, so a VMID taken anywhere in the cluster is seen), parsed by
//! [`conf`](super::conf) and mapped by [`map`](super::map), plus one `pct list` for which
//! CTs run. Every change is one `pct` invocation built as an argument vector; a non-zero
//! exit is an error carrying pct's last stderr line, classified into an
//! [`ErrorKind`] by [`text::classify`](super::text::classify). Host facts come from the
//! same root (`/proc/driver/nvidia/version`, `/proc/devices`, `/dev/nvidia*`).
//!
//! `PHOENIX_PVE_ROOT` (default `/`) moves the root, and `PHOENIX_PVE_NODE` names the local
//! node (default: the first label of `<root>/etc/hostname`); tests point both at the
//! `pct-emulator`'s tree.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::OnceLock;

use super::conf::ConfFile;
use super::{lock, map, text};
use crate::fleet::config::parse_ctid;
use crate::host::facts::version_at_least;
use crate::host::{
    CloneRequest, CloneSpec, CreateSpec, CtInfo, Ctid, ErrorKind, Host, HostError, HostFacts,
    HostResult, KeptCopy, Passthrough, Settings, Verb,
};

pub struct PveHost {
    root: PathBuf,
    node: String,
    pct: PathBuf,
    /// Whether device passthrough is `devN` entries ([`PveHost::has_devn`]), read once.
    devn: OnceLock<bool>,
}

/// The pve-container release that brought `devN` entries (PVE 8.1) [CCHG].
pub const DEVN_SINCE: &str = "5.0.7";

impl PveHost {
    /// The node under `PHOENIX_PVE_ROOT`, driven by the `pct` first on `PATH`.
    pub fn from_env() -> Result<PveHost, String> {
        let root = std::env::var_os("PHOENIX_PVE_ROOT")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/"));
        let node = match std::env::var("PHOENIX_PVE_NODE") {
            Ok(n) if !n.is_empty() => n,
            _ => fs::read_to_string(root.join("etc/hostname"))
                .ok()
                .and_then(|h| h.trim().split('.').next().map(str::to_string))
                .filter(|h| !h.is_empty())
                .ok_or_else(|| {
                    format!(
                        "cannot tell this node's name: {} is missing; set PHOENIX_PVE_NODE",
                        root.join("etc/hostname").display()
                    )
                })?,
        };
        let pct = crate::os::find_on_path("pct").ok_or_else(|| {
            "`pct` is not on PATH: the pve backend runs on a Proxmox VE node (or use --backend sim)"
                .to_string()
        })?;
        let host = PveHost {
            root,
            node,
            pct,
            devn: OnceLock::new(),
        };
        let dir = host.node_dir().join("lxc");
        if !dir.is_dir() {
            return Err(format!(
                "{} is not a directory: is this a Proxmox VE node named '{}'? (PHOENIX_PVE_ROOT, PHOENIX_PVE_NODE)",
                dir.display(),
                host.node
            ));
        }
        Ok(host)
    }

    fn node_dir(&self) -> PathBuf {
        self.root.join("etc/pve/nodes").join(&self.node)
    }

    fn conf_path(&self, ctid: Ctid) -> PathBuf {
        self.node_dir().join("lxc").join(format!("{ctid}.conf"))
    }

    fn read_conf(&self, ctid: Ctid) -> HostResult<Option<ConfFile>> {
        let path = self.conf_path(ctid);
        // pmxcfs keeps a CT config under 1 MiB; anything else there is not one.
        match crate::os::read_if_any(&path, 1 << 20) {
            Ok(Some(bytes)) => ConfFile::parse(&String::from_utf8_lossy(&bytes))
                .map(Some)
                .map_err(|e| HostError::failed(format!("{}: {e}", path.display()))),
            Ok(None) => Ok(None),
            Err(e) => Err(HostError::failed(format!("cannot read {e}"))),
        }
    }

    /// Runs one of Proxmox's other tools (`vzdump`, `pvesm`): the one beside `pct`, else
    /// the one on `PATH`. stdout comes back; a failure is its last stderr line.
    fn tool(&self, name: &str, args: &[String]) -> HostResult<String> {
        let beside = self.pct.with_file_name(name);
        let program = if beside.exists() {
            beside
        } else {
            crate::os::find_on_path(name).ok_or_else(|| {
                HostError::failed(format!(
                    "`{name}` is not on PATH: is this a Proxmox VE node?"
                ))
            })?
        };
        tracing::debug!(argv = ?args, "{name}");
        let out = crate::os::host_command(&program)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| HostError::failed(format!("cannot run {}: {e}", program.display())))?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        if !out.status.success() {
            return Err(pct_error(&stderr, out.status.code()));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Runs `pct <args>`; stdout comes back, a failure is pct's last stderr line.
    fn pct(&self, args: &[String]) -> HostResult<String> {
        let out = self.invoke(args, Stdio::piped())?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        if !out.status.success() {
            return Err(pct_error(&stderr, out.status.code()));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    fn invoke(&self, args: &[String], stdout: Stdio) -> HostResult<std::process::Output> {
        tracing::debug!(argv = ?args, "pct");
        crate::os::host_command(&self.pct)
            .args(args)
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(Stdio::piped())
            .output()
            .map_err(|e| HostError::failed(format!("cannot run {}: {e}", self.pct.display())))
    }

    /// Which CTs run, from one `pct list`.
    fn running(&self) -> HostResult<BTreeMap<Ctid, bool>> {
        let out = self.pct(&["list".to_string()])?;
        Ok(out
            .lines()
            .skip(1)
            .filter_map(|l| {
                let mut cols = l.split_whitespace();
                let ctid = parse_ctid(cols.next()?)?;
                Some((ctid, cols.next()? == "running"))
            })
            .collect())
    }

    /// VMIDs on other nodes, or VMs on this one: `(vmid, "CT"|"VM", node)`.
    fn cluster_ids(&self) -> Vec<(Ctid, &'static str, String)> {
        let mut out = Vec::new();
        let Ok(nodes) = fs::read_dir(self.root.join("etc/pve/nodes")) else {
            return out;
        };
        for node in nodes.flatten() {
            let name = node.file_name().to_string_lossy().into_owned();
            for (dir, kind) in [("lxc", "CT"), ("qemu-server", "VM")] {
                if name == self.node && kind == "CT" {
                    continue;
                }
                for id in map::conf_ids(&node.path().join(dir)).unwrap_or_default() {
                    out.push((id, kind, name.clone()));
                }
            }
        }
        out
    }

    /// `devN` entries, through `pct set`: Proxmox makes the device nodes and cgroup rules
    /// itself, for privileged and unprivileged CTs alike. Entries for NVIDIA devices no
    /// longer wanted are deleted; others are left alone.
    fn set_dev_entries(&self, ctid: Ctid, devices: &Passthrough) -> HostResult<()> {
        let conf = self.read_conf(ctid)?.ok_or_else(|| self.not_found(ctid))?;
        let (add, stale) = map::dev_changes(conf.main(), devices);
        if add.is_empty() && stale.is_empty() {
            return Ok(());
        }
        let mut args = vec!["set".to_string(), ctid.to_string()];
        for (k, v) in add {
            args.push(format!("--{k}"));
            args.push(v);
        }
        if !stale.is_empty() {
            args.push("--delete".into());
            args.push(stale.join(","));
        }
        self.pct(&args).map(|_| ())
    }

    /// Raw `lxc.cgroup2.devices.allow` and `lxc.mount.entry` lines, for pve-container
    /// before 5.0.7. `pct set` refuses `lxc.*` keys (pct-spec §1 set), so the file is
    /// edited the way Proxmox edits it: under the config lock, refused while the CT
    /// carries a `lock:`, written whole by a rename. Only phoenix's device lines change
    /// ([`map::write_passthrough`]); an unchanged file is not written.
    fn set_raw_passthrough(&self, ctid: Ctid, devices: &Passthrough) -> HostResult<()> {
        let _held = lock::take_configs(&self.root, &[ctid])?;
        let mut conf = self.read_conf(ctid)?.ok_or_else(|| self.not_found(ctid))?;
        if let Some(l) = conf.main().get("lock") {
            return Err(text::locked(l));
        }
        let before = conf.to_text();
        map::write_passthrough(conf.main_mut(), devices);
        let after = conf.to_text();
        if after == before {
            return Ok(());
        }
        let path = self.conf_path(ctid);
        tracing::debug!(ctid, path = %path.display(), "raw passthrough lines written");
        crate::os::write_atomic(&path, after.as_bytes())
            .map_err(|e| HostError::failed(format!("cannot write {}: {e}", path.display())))
    }

    /// Whether the node's pve-container takes `devN` entries: 5.0.7 or later, read from
    /// dpkg's status under the root. A node whose version cannot be read is taken to
    /// have them (every Proxmox VE still supported does).
    fn has_devn(&self) -> bool {
        *self.devn.get_or_init(|| {
            let version = HostFacts::read(&self.root)
                .ok()
                .and_then(|f| f.pve_container);
            tracing::info!(pve_container = ?version, "device passthrough as {}", match &version {
                Some(v) if !version_at_least(v, DEVN_SINCE) => "raw lxc.* lines",
                _ => "devN entries",
            });
            version.is_none_or(|v| version_at_least(&v, DEVN_SINCE))
        })
    }

    fn simple(&self, verb: &str, ctid: Ctid, rest: &[&str]) -> HostResult<()> {
        let mut args = vec![verb.to_string(), ctid.to_string()];
        args.extend(rest.iter().map(|s| s.to_string()));
        self.pct(&args).map(|_| ())
    }
}

/// pct's failure: its last non-empty stderr line (task errors are one line, §0).
fn pct_error(stderr: &str, code: Option<i32>) -> HostError {
    let line = stderr
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty() && !l.starts_with("trying to acquire lock"))
        .map(str::trim)
        .unwrap_or("");
    let message = if line.is_empty() {
        format!("pct failed with exit code {}", code.unwrap_or(-1))
    } else {
        line.to_string()
    };
    HostError::new(text::classify(stderr), message)
}

/// `pct set` / `pct create` options for settings, given the CT's current config (for its
/// MAC and tags), and the keys to delete.
fn setting_options(s: &Settings, current: Option<&ConfFile>) -> (Vec<String>, Vec<String>) {
    let (opts, delete) = map::setting_params(s, current.map(|c| c.main()));
    let mut out = Vec::new();
    for (k, v) in opts {
        out.push(format!("--{k}"));
        out.push(v);
    }
    (out, delete)
}

impl Host for PveHost {
    fn name(&self) -> &'static str {
        "pve"
    }

    /// Proxmox keeps its own locks under `/run/lock`; phoenix's sits beside them.
    fn lock_path(&self) -> Option<PathBuf> {
        Some(self.root.join("run/lock/phoenix.lock"))
    }

    fn describe(&self) -> String {
        format!("node {}", self.node)
    }

    fn inventory(&self) -> HostResult<BTreeMap<Ctid, CtInfo>> {
        let running = self.running()?;
        let mut out = BTreeMap::new();
        let dir = self.node_dir().join("lxc");
        let ids = map::conf_ids(&dir)
            .map_err(|e| HostError::failed(format!("{}: {e}", dir.display())))?;
        for ctid in ids {
            match self.read_conf(ctid) {
                Ok(Some(conf)) => {
                    let ct = map::ct_info(ctid, &conf, running.get(&ctid) == Some(&true));
                    out.insert(ctid, ct);
                }
                Ok(None) => {}
                Err(e) => {
                    out.insert(ctid, map::unreadable_ct(ctid, &e.message));
                }
            }
        }
        // A VMID taken elsewhere in the cluster is somebody else's.
        for (vmid, kind, node) in self.cluster_ids() {
            out.entry(vmid).or_insert_with(|| {
                let mut ct = map::ct_info(vmid, &ConfFile::new(), false);
                ct.settings.managed = Some(false);
                ct.settings.description = Some(format!("{kind} {vmid} on node '{node}'"));
                ct
            });
        }
        Ok(out)
    }

    fn ct(&self, ctid: Ctid) -> HostResult<Option<CtInfo>> {
        let Some(conf) = self.read_conf(ctid)? else {
            return Ok(None);
        };
        let running = self.running()?.get(&ctid) == Some(&true);
        Ok(Some(map::ct_info(ctid, &conf, running)))
    }

    fn config_file(&self, ctid: Ctid) -> HostResult<Option<String>> {
        Ok(self.read_conf(ctid)?.map(|c| c.to_text()))
    }

    fn not_found(&self, ctid: Ctid) -> HostError {
        text::config_missing(&self.node, ctid)
    }

    fn facts(&self) -> HostResult<HostFacts> {
        HostFacts::read(&self.root).map_err(HostError::failed)
    }

    fn check_storage(&self, storage: &str, ostemplate: Option<&str>) -> Vec<String> {
        super::storage::check(&self.root, storage, ostemplate)
    }

    fn links_clones_on(&self, storage: &str) -> Option<bool> {
        Some(
            super::storage::read(&self.root)
                .is_ok_and(|s| super::storage::links_clones(&s, storage)),
        )
    }

    fn create(&self, ctid: Ctid, spec: &CreateSpec) -> HostResult<()> {
        let mut args = vec![
            "create".to_string(),
            ctid.to_string(),
            spec.ostemplate.clone(),
            "--storage".into(),
            spec.storage.clone(),
            "--rootfs".into(),
            format!("{}:{}", spec.storage, spec.disk_gb),
            "--unprivileged".into(),
            if spec.unprivileged { "1" } else { "0" }.into(),
        ];
        // A new CT has nothing to delete (and `pct create` takes no `--delete`).
        args.extend(setting_options(&spec.settings, None).0);
        self.pct(&args).map(|_| ())
    }

    fn keeps_copies(&self) -> bool {
        true
    }

    /// `vzdump <ctid> --storage <storage> --mode stop`: the archive is the one vzdump says
    /// it creates ([`vzdump::archive`](super::vzdump::archive)).
    fn keep(&self, ctid: Ctid, storage: &str, note: &str) -> HostResult<KeptCopy> {
        let out = self.tool(
            "vzdump",
            &[
                ctid.to_string(),
                "--storage".into(),
                storage.to_string(),
                "--mode".into(),
                "stop".into(),
                "--notes-template".into(),
                note.to_string(),
            ],
        )?;
        let archive = super::vzdump::archive(out.lines(), storage).ok_or_else(|| {
            HostError::failed(format!(
                "vzdump of CT {ctid} did not say which archive it made"
            ))
        })?;
        let size_bytes = archive
            .path
            .and_then(|p| fs::metadata(self.root.join(p.trim_start_matches('/'))).ok())
            .map(|m| m.len());
        let location = archive.volid;
        Ok(KeptCopy {
            location,
            node: None,
            size_bytes,
        })
    }

    fn restore(&self, ctid: Ctid, kept: &KeptCopy, storage: &str) -> HostResult<()> {
        self.pct(&[
            "restore".into(),
            ctid.to_string(),
            kept.location.clone(),
            "--storage".into(),
            storage.to_string(),
            "--force".into(),
            "1".into(),
        ])
        .map(|_| ())
    }

    fn forget(&self, kept: &KeptCopy) -> HostResult<()> {
        self.tool("pvesm", &["free".into(), kept.location.clone()])
            .map(|_| ())
    }

    fn clone_ct(&self, spec: &CloneSpec) -> HostResult<()> {
        self.pct(&[
            "clone".into(),
            spec.source.to_string(),
            spec.target.to_string(),
            "--snapname".into(),
            spec.snapshot.clone(),
            "--hostname".into(),
            spec.hostname.clone(),
            "--full".into(),
            "1".into(),
            "--storage".into(),
            spec.storage.clone(),
        ])
        .map(|_| ())
    }

    /// `pct clone` with the request's options, as given (a linked clone of a template:
    /// `--full 0` and no `--snapname` or `--storage`).
    fn clone_with(&self, req: &CloneRequest) -> HostResult<()> {
        let mut args = vec![
            "clone".to_string(),
            req.source.to_string(),
            req.target.to_string(),
        ];
        let mut opt = |k: &str, v: Option<String>| {
            if let Some(v) = v {
                args.push(format!("--{k}"));
                args.push(v);
            }
        };
        opt("snapname", req.snapname.clone());
        opt("hostname", req.hostname.clone());
        opt("description", req.description.clone());
        opt(
            "full",
            req.full.map(|f| if f { "1" } else { "0" }.to_string()),
        );
        opt("storage", req.storage.clone());
        self.pct(&args).map(|_| ())
    }

    /// `pct template <vmid>`. Its worker's failure exits 0 with the error on stderr
    /// (pct-spec §0), so an error line there decides too (a wait for the config lock is
    /// not one).
    fn template(&self, ctid: Ctid) -> HostResult<()> {
        let args = ["template".to_string(), ctid.to_string()];
        let o = self.invoke(&args, Stdio::null())?;
        let stderr = String::from_utf8_lossy(&o.stderr);
        let complaint = stderr
            .lines()
            .any(|l| !l.trim().is_empty() && !l.starts_with("trying to acquire lock"));
        if !o.status.success() || complaint {
            return Err(pct_error(&stderr, o.status.code()));
        }
        Ok(())
    }

    fn set(&self, ctid: Ctid, settings: &Settings) -> HostResult<()> {
        let current = self.read_conf(ctid)?;
        let mut args = vec!["set".to_string(), ctid.to_string()];
        let (options, delete) = setting_options(settings, current.as_ref());
        args.extend(options);
        if !delete.is_empty() {
            args.push("--delete".into());
            args.push(delete.join(","));
        }
        self.pct(&args).map(|_| ())
    }

    fn resize(&self, ctid: Ctid, disk_gb: u64) -> HostResult<()> {
        self.simple("resize", ctid, &["rootfs", &format!("{disk_gb}G")])
    }

    /// `devN` entries where the node's pve-container has them (5.0.7+, PVE 8.1), raw
    /// `lxc.*` lines otherwise (see [`PveHost::has_devn`]).
    fn set_devices(&self, ctid: Ctid, devices: &Passthrough) -> HostResult<()> {
        if self.has_devn() {
            self.set_dev_entries(ctid, devices)
        } else {
            self.set_raw_passthrough(ctid, devices)
        }
    }

    fn start(&self, ctid: Ctid) -> HostResult<()> {
        self.simple("start", ctid, &[])
    }

    fn shutdown(&self, ctid: Ctid, timeout_s: u64) -> HostResult<()> {
        self.simple(
            "shutdown",
            ctid,
            &["--timeout", &timeout_s.to_string(), "--forceStop", "1"],
        )
    }

    fn stop(&self, ctid: Ctid) -> HostResult<()> {
        self.simple("stop", ctid, &[])
    }

    fn exec(&self, ctid: Ctid, argv: &[String], out: &mut dyn Write) -> HostResult<i32> {
        let mut args = vec!["exec".to_string(), ctid.to_string(), "--".to_string()];
        args.extend(argv.iter().cloned());
        let o = self.invoke(&args, Stdio::piped())?;
        let _ = out.write_all(&o.stdout);
        let _ = out.write_all(&o.stderr);
        let code = o.status.code().unwrap_or(-1);
        let stderr = String::from_utf8_lossy(&o.stderr);
        // pct's own failure (not running, no such CT) is 255 with its error; otherwise
        // the code is the command's.
        if code == 255 && text::classify(&stderr) != ErrorKind::Failed {
            return Err(pct_error(&stderr, Some(code)));
        }
        Ok(code)
    }

    fn push(&self, ctid: Ctid, local: &Path, dest: &str, perms: u32) -> HostResult<()> {
        let args = [
            "push".to_string(),
            ctid.to_string(),
            local.display().to_string(),
            dest.to_string(),
            "--perms".into(),
            format!("{perms:o}"),
        ];
        file_transfer(self.invoke(&args, Stdio::null())?)
    }

    fn pull(&self, ctid: Ctid, path: &str, local: &Path) -> HostResult<()> {
        let args = [
            "pull".to_string(),
            ctid.to_string(),
            path.to_string(),
            local.display().to_string(),
        ];
        file_transfer(self.invoke(&args, Stdio::null())?)
    }

    fn snapshot(&self, ctid: Ctid, name: &str, description: &str) -> HostResult<()> {
        self.simple("snapshot", ctid, &[name, "--description", description])
    }

    fn delete_snapshot(&self, ctid: Ctid, name: &str) -> HostResult<()> {
        self.simple("delsnapshot", ctid, &[name])
    }

    fn rollback(&self, ctid: Ctid, name: &str) -> HostResult<()> {
        self.simple("rollback", ctid, &[name])
    }

    fn destroy(&self, ctid: Ctid) -> HostResult<()> {
        self.simple("destroy", ctid, &["--purge", "1"])
    }

    fn unlock(&self, ctid: Ctid) -> HostResult<()> {
        self.simple("unlock", ctid, &[])
    }

    fn pct_dir(&self) -> Option<PathBuf> {
        // Hooks use the node's own pct.
        self.pct.parent().map(Path::to_path_buf)
    }

    fn hook_env(&self) -> Vec<(String, String)> {
        vec![("PHOENIX_BACKEND".into(), "pve".into())]
    }

    /// A real `pct` spends most of a second starting; creating and cloning take longest.
    fn estimate_ms(&self, verb: Verb) -> u64 {
        match verb {
            Verb::Create => 30_000,
            Verb::Clone => 20_000,
            Verb::Start | Verb::Shutdown | Verb::Stop | Verb::Destroy => 3_000,
            Verb::Exec => 2_000,
            Verb::Inventory | Verb::Config | Verb::Facts => 100,
            _ => 1_000,
        }
    }
}

/// `push` and `pull` exit 0 even when their worker failed (pct-spec §0): an error line on
/// stderr is the failure.
fn file_transfer(o: std::process::Output) -> HostResult<()> {
    let stderr = String::from_utf8_lossy(&o.stderr);
    if !o.status.success() || !stderr.trim().is_empty() {
        return Err(pct_error(&stderr, o.status.code()));
    }
    Ok(())
}
