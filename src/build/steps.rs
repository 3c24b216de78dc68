//! The steps of one node (DESIGN §5), run through the [`Host`] trait.
//!
//! A node's work is split in two tasks for the walker: `provision` (destroy for a replace,
//! then create or clone: the clone is the part that holds the source's lock) and `finish`
//! (settings, devices, start, NVIDIA, Docker, hook, snapshot). The `phx-<hash>` snapshot is
//! the commit point: it is taken only after every step succeeded, and the manifest is
//! stored before it, so a snapshot never exists without its explanation.
//!
//! Hook contract: the node's hook runs on the host as `phoenix_hypervisor_setup_<CTID>.sh
//! <CTID>` in the hooks directory, with `PHOENIX_CTID`, `PHOENIX_NAME`,
//! `PHOENIX_IS_TEMPLATE` (1/0), `PHOENIX_PARENT_CTID`, `PHOENIX_PARENT_SNAPSHOT` (empty for
//! base nodes), `PHOENIX_SNAPSHOT`, `PHOENIX_HASH`, `PHOENIX_CONFIG_FILE`,
//! `PHOENIX_CONFIG_BLOCK` (the block as JSON), `PHOENIX_NVIDIA_DRIVER_VERSION`,
//! `PHOENIX_NVIDIA_RUNFILE_URL`, `PHOENIX_NVIDIA_REPO_URL`, `PHOENIX_BACKEND`,
//! `PHOENIX_HOOKS_DIR`, and a `pct` on `PATH` that acts on the node's host. Exit 0 is
//! success; anything else fails the node, with the hook's output in the node's log.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::build::events::{Event, Step};
use crate::engine::hash::Hashed;
use crate::engine::plan::{runtime_settings, Action, Entry, RebuildMode};
use crate::fleet::config::{Ctid, Fleet, Node, PortainerRole, Script};
use crate::host::{
    CreateSpec, CtInfo, ErrorKind, Host, HostError, HostFacts, HostResult, MANAGED_TAG,
};
use crate::state::{now_secs, StateDir};

/// A node's failure: the step and what went wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StepError {
    pub step: Step,
    pub message: String,
}

type StepResult<T = ()> = Result<T, StepError>;

/// How transient host errors are retried.
#[derive(Clone, Copy, Debug)]
pub struct Retry {
    pub attempts: u32,
    pub first_delay: Duration,
}

impl Default for Retry {
    fn default() -> Self {
        let ms = std::env::var("PHOENIX_RETRY_DELAY_MS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(500);
        Retry {
            attempts: 6,
            first_delay: Duration::from_millis(ms),
        }
    }
}

/// Everything the steps of a run share.
pub struct Executor<'a> {
    pub fleet: &'a Fleet,
    pub hashes: &'a BTreeMap<Ctid, Hashed>,
    pub entries: BTreeMap<Ctid, &'a Entry>,
    pub inventory: &'a BTreeMap<Ctid, CtInfo>,
    pub host: &'a dyn Host,
    pub facts: &'a HostFacts,
    /// Why GPU nodes cannot be built on this host (driver mismatch), checked before the run.
    pub gpu_blocker: Option<String>,
    pub state: &'a StateDir,
    pub run_id: &'a str,
    pub emit: &'a (dyn Fn(Event) + Sync),
    pub retry: Retry,
    pub ready_timeout: Duration,
    /// A hook running longer is killed (with what it started) and fails its node.
    pub hook_timeout: Duration,
}

/// Where the steps of a node write what they do.
struct NodeLog {
    file: Option<File>,
}

impl NodeLog {
    fn line(&mut self, text: &str) {
        if let Some(f) = &mut self.file {
            let _ = writeln!(f, "{text}");
        }
    }
    fn bytes(&mut self, bytes: &[u8]) {
        if let Some(f) = &mut self.file {
            let _ = f.write_all(bytes);
        }
    }
}

impl Executor<'_> {
    pub fn log_path(&self, ctid: Ctid) -> PathBuf {
        self.state
            .log_dir(ctid)
            .join(format!("{}.log", self.run_id))
    }

    fn open_log(&self, ctid: Ctid) -> NodeLog {
        let path = self.log_path(ctid);
        let _ = fs::create_dir_all(path.parent().unwrap_or(&path));
        NodeLog {
            file: OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .ok(),
        }
    }

    fn node(&self, ctid: Ctid) -> &Node {
        &self.fleet.nodes[&ctid]
    }

    /// Runs a host call, retrying transient errors with exponential backoff.
    fn call<T>(
        &self,
        ctid: Ctid,
        step: Step,
        log: &mut NodeLog,
        what: &str,
        mut f: impl FnMut() -> HostResult<T>,
    ) -> StepResult<T> {
        log.line(&format!("$ {what}"));
        let mut delay = self.retry.first_delay;
        for attempt in 1.. {
            match f() {
                Ok(v) => return Ok(v),
                Err(e) if e.kind == ErrorKind::Transient && attempt < self.retry.attempts => {
                    log.line(&format!(
                        "  transient error (attempt {attempt}): {}; retrying in {} ms",
                        e.message,
                        delay.as_millis()
                    ));
                    (self.emit)(Event::Retry {
                        ctid,
                        step,
                        attempt,
                        delay_ms: delay.as_millis() as u64,
                        error: e.message.clone(),
                    });
                    std::thread::sleep(delay);
                    delay *= 2;
                }
                Err(e) => {
                    log.line(&format!("  error: {}", e.message));
                    return Err(StepError {
                        step,
                        message: format!("{what}: {}", e.message),
                    });
                }
            }
        }
        unreachable!("the retry loop returns")
    }

    fn step(&self, ctid: Ctid, step: Step, log: &mut NodeLog) {
        log.line(&format!(
            "== {} ({})",
            step.name(),
            crate::state::now_secs()
        ));
        (self.emit)(Event::StepStarted { ctid, step });
    }

    /// Destroy (for a replace), then create or clone.
    pub fn provision(&self, ctid: Ctid) -> StepResult {
        let entry = self.entries[&ctid];
        let node = self.node(ctid);
        let mut log = self.open_log(ctid);
        log.line(&format!(
            "# phoenix run {}: CT {ctid} {} — {}",
            self.run_id,
            node.name(),
            entry.reason
        ));
        if node.has_gpu() {
            if let Some(why) = &self.gpu_blocker {
                self.step(ctid, Step::Preflight, &mut log);
                log.line(why);
                return Err(StepError {
                    step: Step::Preflight,
                    message: why.clone(),
                });
            }
        }
        let replace = matches!(
            entry.action,
            Action::Rebuild {
                mode: RebuildMode::Replace,
                ..
            }
        );
        if replace {
            if let Some(ct) = self.inventory.get(&ctid) {
                if !ct.is_managed() {
                    return Err(StepError {
                        step: Step::Destroy,
                        message: format!(
                            "CT {ctid} was not created by phoenix; refusing to destroy it"
                        ),
                    });
                }
                self.step(ctid, Step::Destroy, &mut log);
                if ct.running {
                    self.call(
                        ctid,
                        Step::Destroy,
                        &mut log,
                        &format!("pct stop {ctid}"),
                        || self.host.shutdown(ctid, 60),
                    )?;
                }
                self.call(
                    ctid,
                    Step::Destroy,
                    &mut log,
                    &format!("pct destroy {ctid}"),
                    || self.host.destroy(ctid),
                )?;
            }
        }
        if !matches!(entry.action, Action::Create) && !replace {
            return Ok(());
        }
        match entry.parent {
            None => {
                self.step(ctid, Step::Create, &mut log);
                let spec = self.create_spec(node);
                self.call(
                    ctid,
                    Step::Create,
                    &mut log,
                    &format!("pct create {ctid} {}", spec.ostemplate),
                    || self.host.create(ctid, &spec),
                )
            }
            Some(parent) => {
                self.step(ctid, Step::Clone, &mut log);
                let snap = self.hashes[&parent].hash.snapshot();
                self.call(
                    ctid,
                    Step::Clone,
                    &mut log,
                    &format!(
                        "pct clone {parent} {ctid} --snapname {snap} --hostname {} --storage {}",
                        node.name(),
                        node.spec.storage_pool
                    ),
                    || {
                        self.host.clone_ct(
                            parent,
                            snap.as_str(),
                            ctid,
                            node.name(),
                            &node.spec.storage_pool,
                        )
                    },
                )
            }
        }
    }

    fn managed_settings(&self, node: &Node) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = runtime_settings(node).into_iter().collect();
        if let Some(f) = node.spec.features.as_deref().filter(|f| !f.is_empty()) {
            out.push(("features".into(), f.to_string()));
        }
        out.push(("tags".into(), MANAGED_TAG.into()));
        out.push((
            "description".into(),
            format!("Managed by phoenix: `phoenix why {}` explains its build. Changes made here are overwritten.", node.ctid),
        ));
        out
    }

    fn create_spec(&self, node: &Node) -> CreateSpec {
        CreateSpec {
            ostemplate: node.spec.template.clone().unwrap_or_default(),
            storage: node.spec.storage_pool.clone(),
            rootfs_gb: node.spec.storage_size_gb,
            unprivileged: node.spec.unprivileged.unwrap_or(true),
            options: self.managed_settings(node).into_iter().collect(),
        }
    }

    /// Everything after provisioning, ending with the snapshot (or just the settings, for
    /// an update).
    pub fn finish(&self, ctid: Ctid) -> StepResult {
        let entry = self.entries[&ctid];
        let node = self.node(ctid);
        let mut log = self.open_log(ctid);
        if let Action::Update { changes } = &entry.action {
            self.step(ctid, Step::Settings, &mut log);
            let opts: Vec<(String, String)> = changes
                .iter()
                .filter(|c| c.key != "rootfs")
                .map(|c| (c.key.clone(), c.new.clone()))
                .collect();
            if !opts.is_empty() {
                self.set(ctid, &opts, &mut log)?;
            }
            if changes.iter().any(|c| c.key == "rootfs") {
                self.grow_disk(ctid, node, &mut log)?;
            }
            return Ok(());
        }
        let in_place = matches!(
            entry.action,
            Action::Rebuild {
                mode: RebuildMode::InPlace,
                ..
            }
        );
        if in_place && node.has_gpu() {
            if let Some(why) = &self.gpu_blocker {
                self.step(ctid, Step::Preflight, &mut log);
                return Err(StepError {
                    step: Step::Preflight,
                    message: why.clone(),
                });
            }
        }
        if in_place && !self.inventory.get(&ctid).is_some_and(CtInfo::is_managed) {
            return Err(StepError {
                step: Step::Settings,
                message: format!("CT {ctid} was not created by phoenix; refusing to rebuild it"),
            });
        }

        // Settings: runtime fields, features, the phoenix marker; grow the disk.
        self.step(ctid, Step::Settings, &mut log);
        let current = self.host_ct(ctid, &mut log)?;
        if current.running {
            // An in-place rebuild: stop first, so that features and device entries are
            // applied as configured (Proxmox defers them on a running CT).
            self.call(
                ctid,
                Step::Settings,
                &mut log,
                &format!("pct shutdown {ctid}"),
                || self.host.shutdown(ctid, 120),
            )?;
        }
        self.set(ctid, &self.managed_settings(node), &mut log)?;
        if current
            .rootfs_gb()
            .is_some_and(|gb| gb < node.spec.storage_size_gb)
        {
            self.grow_disk(ctid, node, &mut log)?;
        }

        // Host-side GPU passthrough.
        if node.has_gpu() {
            self.step(ctid, Step::Devices, &mut log);
            let lines = gpu_config_lines(node, self.facts).map_err(|m| StepError {
                step: Step::Devices,
                message: m,
            })?;
            let prefixes = [
                "lxc.cgroup2.devices.allow: c ",
                "lxc.mount.entry: /dev/nvidia",
            ];
            for l in &lines {
                log.line(&format!("  {l}"));
            }
            self.call(
                ctid,
                Step::Devices,
                &mut log,
                &format!("write {} device lines to CT {ctid}'s config", lines.len()),
                || self.host.set_raw_lxc(ctid, &prefixes, &lines),
            )?;
        }

        // Start, wait until ready.
        self.step(ctid, Step::Start, &mut log);
        self.call(
            ctid,
            Step::Start,
            &mut log,
            &format!("pct start {ctid}"),
            || self.host.start(ctid),
        )?;
        self.step(ctid, Step::WaitReady, &mut log);
        self.wait_ready(ctid, node, &mut log)?;

        if node.has_gpu() {
            self.step(ctid, Step::Nvidia, &mut log);
            let env = self.nvidia_env();
            self.run_script(
                ctid,
                Step::Nvidia,
                &self.fleet.hooks.nvidia_step,
                "/tmp/phoenix-step-nvidia.sh",
                &env,
                &mut log,
            )?;
        }
        if node.nesting() {
            self.step(ctid, Step::Docker, &mut log);
            let env = self.docker_env(node);
            self.run_script(
                ctid,
                Step::Docker,
                &self.fleet.hooks.docker_step,
                "/tmp/phoenix-step-docker.sh",
                &env,
                &mut log,
            )?;
        }
        if let Some(hook) = self.fleet.hooks.node_hooks.get(&ctid) {
            self.step(ctid, Step::Hook, &mut log);
            self.run_hook(ctid, hook, &mut log)?;
        }

        // Commit: manifest stored, CT stopped, stale snapshot of the same name removed,
        // snapshot taken. Only then is the node built.
        self.step(ctid, Step::Shutdown, &mut log);
        self.state
            .store_manifest(self.fleet, ctid, &self.hashes[&ctid])
            .map_err(|e| StepError {
                step: Step::Snapshot,
                message: format!(
                    "cannot store the manifest in {}: {e}",
                    self.state.root.display()
                ),
            })?;
        self.call(
            ctid,
            Step::Shutdown,
            &mut log,
            &format!("pct shutdown {ctid}"),
            || match self.host.shutdown(ctid, 120) {
                Err(e) if e.message.contains("not running") => Ok(()),
                other => other,
            },
        )?;
        self.step(ctid, Step::Snapshot, &mut log);
        let snap = self.hashes[&ctid].hash.snapshot();
        let after = self.host_ct(ctid, &mut log)?;
        if after.snapshot(snap.as_str()).is_some() {
            // An older generation with this name (a reverted config): Proxmox refuses a
            // used name, and the live CT holds newer work, so the old one goes.
            self.call(
                ctid,
                Step::Snapshot,
                &mut log,
                &format!("pct delsnapshot {ctid} {snap}"),
                || self.host.delete_snapshot(ctid, snap.as_str()),
            )?;
        }
        let description = self.snapshot_description(ctid);
        self.call(
            ctid,
            Step::Snapshot,
            &mut log,
            &format!("pct snapshot {ctid} {snap}"),
            || self.host.snapshot(ctid, snap.as_str(), &description),
        )?;
        if !node.is_template() {
            self.step(ctid, Step::Restart, &mut log);
            self.call(
                ctid,
                Step::Restart,
                &mut log,
                &format!("pct start {ctid}"),
                || self.host.start(ctid),
            )?;
        }
        log.line("# built");
        Ok(())
    }

    fn set(&self, ctid: Ctid, opts: &[(String, String)], log: &mut NodeLog) -> StepResult {
        self.call(
            ctid,
            Step::Settings,
            log,
            &format!("pct set {ctid} {}", show_opts(opts)),
            || self.host.set(ctid, opts),
        )
    }

    fn grow_disk(&self, ctid: Ctid, node: &Node, log: &mut NodeLog) -> StepResult {
        let gb = node.spec.storage_size_gb;
        self.call(
            ctid,
            Step::Settings,
            log,
            &format!("pct resize {ctid} rootfs {gb}G"),
            || self.host.resize(ctid, "rootfs", gb),
        )
    }

    fn host_ct(&self, ctid: Ctid, log: &mut NodeLog) -> StepResult<CtInfo> {
        let ct = self.call(
            ctid,
            Step::Settings,
            log,
            &format!("pct config {ctid}"),
            || self.host.ct(ctid),
        )?;
        ct.ok_or_else(|| StepError {
            step: Step::Settings,
            message: format!("CT {ctid} vanished from the host"),
        })
    }

    pub fn snapshot_description(&self, ctid: Ctid) -> String {
        let h = &self.hashes[&ctid];
        let node = self.node(ctid);
        let mut d = format!(
            "phoenix {} build of CT {ctid} ({})\nhash: {}\nparent: {}\nbuilt: {}\n",
            env!("CARGO_PKG_VERSION"),
            node.name(),
            h.hash,
            h.manifest
                .parent
                .as_ref()
                .map_or("-".to_string(), |p| p.hash.to_string()),
            now_secs()
        );
        if let Some(label) = &node.spec.template_snapshot_name {
            d.push_str(&format!("label: {label}\n"));
        }
        d
    }

    fn wait_ready(&self, ctid: Ctid, node: &Node, log: &mut NodeLog) -> StepResult {
        let deadline = Instant::now() + self.ready_timeout;
        let mut probes: Vec<Vec<String>> = vec![vec!["true".into()]];
        for g in node.gpus() {
            probes.push(vec!["test".into(), "-e".into(), format!("/dev/nvidia{g}")]);
        }
        for probe in probes {
            loop {
                let mut sink = Vec::new();
                let r = self.host.exec(ctid, &probe, &mut sink);
                match r {
                    Ok(0) => break,
                    Ok(_)
                    | Err(HostError {
                        kind: ErrorKind::Transient | ErrorKind::Failed,
                        ..
                    }) if Instant::now() < deadline => {
                        std::thread::sleep(Duration::from_millis(500));
                    }
                    other => {
                        let what = match other {
                            Err(e) => e.message,
                            Ok(code) => format!("exit code {code}"),
                        };
                        return Err(StepError {
                            step: Step::WaitReady,
                            message: format!(
                                "CT {ctid} not ready after {} s: `{}` failed ({what})",
                                self.ready_timeout.as_secs(),
                                probe.join(" ")
                            ),
                        });
                    }
                }
            }
            log.line(&format!("  ready: {}", probe.join(" ")));
        }
        Ok(())
    }

    fn nvidia_env(&self) -> Vec<(String, String)> {
        let n = &self.fleet.nvidia;
        vec![
            (
                "PHOENIX_NVIDIA_DRIVER_VERSION".into(),
                n.driver_version.clone().unwrap_or_default(),
            ),
            (
                "PHOENIX_NVIDIA_RUNFILE_URL".into(),
                n.runfile_url.clone().unwrap_or_default(),
            ),
            (
                "PHOENIX_NVIDIA_REPO_URL".into(),
                n.repo_url.clone().unwrap_or_default(),
            ),
        ]
    }

    fn docker_env(&self, node: &Node) -> Vec<(String, String)> {
        let hv = &self.fleet.hypervisor;
        let role = match node.portainer_role() {
            PortainerRole::Server => "server",
            PortainerRole::Agent => "agent",
            PortainerRole::None => "none",
        };
        let mut env = vec![
            (
                "PHOENIX_GPU".into(),
                if node.has_gpu() { "1" } else { "0" }.into(),
            ),
            ("PHOENIX_PORTAINER_ROLE".into(), role.into()),
            (
                "PHOENIX_PORTAINER_SERVER_IMAGE".into(),
                hv.portainer_server_image.clone(),
            ),
            (
                "PHOENIX_PORTAINER_AGENT_IMAGE".into(),
                hv.portainer_agent_image.clone(),
            ),
            (
                "PHOENIX_PORTAINER_SERVER_IP".into(),
                hv.portainer_server_ip.clone().unwrap_or_default(),
            ),
            (
                "PHOENIX_PORTAINER_AGENT_PORT".into(),
                hv.portainer_agent_port.to_string(),
            ),
        ];
        if node.has_gpu() {
            env.extend(self.nvidia_env());
        }
        env
    }

    /// Pushes a built-in step script into the CT and runs it there.
    fn run_script(
        &self,
        ctid: Ctid,
        step: Step,
        script: &Script,
        dest: &str,
        env: &[(String, String)],
        log: &mut NodeLog,
    ) -> StepResult {
        let local = self.state.root.join("scripts").join(&script.digest);
        if !local.exists() {
            crate::state::write_atomic(&local, &script.bytes).map_err(|e| StepError {
                step,
                message: format!("cannot stage {}: {e}", script.origin),
            })?;
        }
        self.call(
            ctid,
            step,
            log,
            &format!("pct push {ctid} {} {dest}", script.origin),
            || self.host.push(ctid, &local, dest, 0o755),
        )?;
        let mut argv: Vec<String> = vec!["env".into()];
        argv.extend(env.iter().map(|(k, v)| format!("{k}={v}")));
        argv.push("bash".into());
        argv.push(dest.into());
        let shown = format!("pct exec {ctid} -- bash {dest}");
        let mut output = Vec::new();
        let code = self.call(ctid, step, log, &shown, || {
            output.clear();
            self.host.exec(ctid, &argv, &mut output)
        })?;
        log.bytes(&output);
        log.line(&format!("  exit {code}"));
        if code != 0 {
            return Err(StepError {
                step,
                message: format!("{} exited with code {code} inside CT {ctid}", script.origin),
            });
        }
        Ok(())
    }

    fn run_hook(&self, ctid: Ctid, hook: &Script, log: &mut NodeLog) -> StepResult {
        let node = self.node(ctid);
        let h = &self.hashes[&ctid];
        let parent = self.fleet.graph.parent_of(ctid);
        let path = hook.path.clone().unwrap_or_default();
        let mut cmd = Command::new(&path);
        cmd.arg(ctid.to_string())
            .current_dir(&self.fleet.hooks.dir)
            .stdin(Stdio::null())
            .env("PHOENIX_CTID", ctid.to_string())
            .env("PHOENIX_NAME", node.name())
            .env(
                "PHOENIX_IS_TEMPLATE",
                if node.is_template() { "1" } else { "0" },
            )
            .env(
                "PHOENIX_PARENT_CTID",
                parent.map(|p| p.to_string()).unwrap_or_default(),
            )
            .env(
                "PHOENIX_PARENT_SNAPSHOT",
                parent
                    .map(|p| self.hashes[&p].hash.snapshot().to_string())
                    .unwrap_or_default(),
            )
            .env("PHOENIX_SNAPSHOT", h.hash.snapshot().to_string())
            .env("PHOENIX_HASH", h.hash.as_str())
            .env("PHOENIX_CONFIG_FILE", self.fleet.lxc_path())
            .env(
                "PHOENIX_CONFIG_BLOCK",
                serde_json::Value::Object(node.block.clone()).to_string(),
            )
            .env("PHOENIX_BACKEND", self.host.name())
            .env("PHOENIX_HOOKS_DIR", &self.fleet.hooks.dir);
        for (k, v) in self.nvidia_env() {
            cmd.env(k, v);
        }
        for (k, v) in self.host.hook_env() {
            cmd.env(k, v);
        }
        if let Some(dir) = self.host.pct_dir() {
            let path_var = std::env::var_os("PATH").unwrap_or_default();
            let mut paths = vec![dir];
            paths.extend(std::env::split_paths(&path_var));
            cmd.env("PATH", std::env::join_paths(paths).unwrap_or_default());
        }
        let (out, err) = match &log.file {
            Some(f) => match (f.try_clone(), f.try_clone()) {
                (Ok(a), Ok(b)) => (Stdio::from(a), Stdio::from(b)),
                _ => (Stdio::null(), Stdio::null()),
            },
            None => (Stdio::null(), Stdio::null()),
        };
        cmd.stdout(out).stderr(err);
        log.line(&format!("$ {} {ctid}", path.display()));
        // Its own process group, so that a hook that outlives --hook-timeout is stopped
        // together with whatever it started.
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        let mut child = cmd.spawn().map_err(|e| StepError {
            step: Step::Hook,
            message: format!("cannot run hook {}: {e}", path.display()),
        })?;
        let deadline = Instant::now() + self.hook_timeout;
        let mut pause = Duration::from_millis(2);
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_millis(100));
                }
                Ok(None) => {
                    let group = format!("-{}", child.id());
                    let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
                    let _ = child.kill();
                    let _ = child.wait();
                    let limit = self.hook_timeout.as_secs();
                    log.line(&format!("  hook killed after {limit} s (--hook-timeout)"));
                    return Err(StepError {
                        step: Step::Hook,
                        message: format!(
                            "hook {} ran longer than --hook-timeout {limit} s and was killed",
                            path.display()
                        ),
                    });
                }
                Err(e) => {
                    return Err(StepError {
                        step: Step::Hook,
                        message: format!("cannot wait for hook {}: {e}", path.display()),
                    })
                }
            }
        };
        if status.success() {
            Ok(())
        } else {
            let code = status
                .code()
                .map_or_else(|| "a signal".to_string(), |c| format!("code {c}"));
            log.line(&format!("  hook exited with {code}"));
            Err(StepError {
                step: Step::Hook,
                message: format!("hook {} exited with {code}", path.display()),
            })
        }
    }
}

fn show_opts(opts: &[(String, String)]) -> String {
    opts.iter()
        .map(|(k, v)| {
            if v.contains(' ') {
                format!("--{k} '{v}'")
            } else {
                format!("--{k} {v}")
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Raw LXC lines that pass the node's GPUs through: device majors read from the host's
/// `/proc/devices`, never assumed.
pub fn gpu_config_lines(node: &Node, facts: &HostFacts) -> Result<Vec<String>, String> {
    let major = |names: &[&str]| {
        names
            .iter()
            .find_map(|n| facts.char_majors.get(*n).copied())
    };
    let nvidia = major(&["nvidia-frontend", "nvidia"]).ok_or(
        "the host's /proc/devices lists no `nvidia` character device: is the NVIDIA driver loaded?",
    )?;
    let uvm = major(&["nvidia-uvm"]).ok_or(
        "the host's /proc/devices lists no `nvidia-uvm` device: load it with `modprobe nvidia-uvm`",
    )?;
    let mut lines = vec![
        format!("lxc.cgroup2.devices.allow: c {nvidia}:* rwm"),
        format!("lxc.cgroup2.devices.allow: c {uvm}:* rwm"),
    ];
    if let Some(caps) = major(&["nvidia-caps"]) {
        lines.push(format!("lxc.cgroup2.devices.allow: c {caps}:* rwm"));
    }
    let mut devices: Vec<String> = Vec::new();
    for g in node.gpus() {
        let dev = format!("/dev/nvidia{g}");
        if !facts.nvidia_devices.contains(&dev) {
            return Err(format!(
                "CT {} is assigned GPU {g}, but the host has no {dev}",
                node.ctid
            ));
        }
        devices.push(dev);
    }
    for d in [
        "/dev/nvidiactl",
        "/dev/nvidia-uvm",
        "/dev/nvidia-uvm-tools",
        "/dev/nvidia-modeset",
    ] {
        if facts.nvidia_devices.iter().any(|x| x == d) {
            devices.push(d.to_string());
        }
    }
    for d in devices {
        lines.push(format!(
            "lxc.mount.entry: {d} {} none bind,optional,create=file",
            d.trim_start_matches('/')
        ));
    }
    Ok(lines)
}
