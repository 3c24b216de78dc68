//! The steps of one node (DESIGN §5), run through the [`Host`] trait.
//!
//! A node's work is two tasks for the walker: [`Executor::provision`] (destroy for a
//! replace, then create or clone: the clone is the part that holds the source's lock) and
//! [`Executor::finish`] (a move to its node, settings, devices, start, NVIDIA, Docker,
//! hook, snapshot); a clone made beside its source on another node is moved to its own
//! by a third, [`Executor::relocate`], which no longer holds the source. The
//! `phx-<hash>` snapshot is the commit point: it is taken only after every step
//! succeeded, and the manifest is stored before it, so a snapshot never exists without
//! its explanation.
//!
//! Hook contract: the node's hook runs on the host as `phoenix_hypervisor_setup_<CTID>.sh
//! <CTID>` in the hooks directory, with `PHOENIX_CTID`, `PHOENIX_NAME`,
//! `PHOENIX_IS_TEMPLATE` (1/0), `PHOENIX_PARENT_CTID`, `PHOENIX_PARENT_SNAPSHOT` (empty for
//! base nodes), `PHOENIX_SNAPSHOT`, `PHOENIX_HASH`, `PHOENIX_CONFIG_FILE`,
//! `PHOENIX_CONFIG_BLOCK` (the block as JSON), `PHOENIX_NVIDIA_DRIVER_VERSION`,
//! `PHOENIX_NVIDIA_RUNFILE_URL`, `PHOENIX_NVIDIA_REPO_URL`, `PHOENIX_BACKEND`,
//! `PHOENIX_HOOKS_DIR`, `PHOENIX_DEBUG=1` when `behavior.debug_mode` is true,
//! `PHOENIX_SECRETS_ROTATED` (the changed secret fields, comma-separated) when it runs
//! again only to deliver them, and a `pct` on `PATH` that acts on the node's host. Exit 0 is success; anything else fails the
//! node, with the hook's output in the node's log (secret values replaced by `***`).
//!
//! Step scripts keep the original orchestrator's contract: they run on the host like
//! hooks, as `phoenix_hypervisor_lxc_nvidia.sh <CTID> <driver> <repo_url> <runfile_url>`
//! and `phoenix_hypervisor_lxc_docker.sh <CTID> <role> <server_ip> <agent_port>`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use super::events::{Event, Step};
use super::log::NodeLog;
use super::preflight::Problem;
use super::{gpu, hook};
use crate::engine::hash::Hashed;
use crate::engine::plan::{runtime_settings, Action, CloneVia, Entry, Move, RebuildMode};
use crate::engine::secrets::{self, Key, Rotated};
use crate::engine::snapshot::BuildRecord;
use crate::engine::store::{CloneFrom, StoreMake, StoreRecord, STORE_CHANGE};
use crate::fleet::config::{Ctid, Node, PortainerRole, Script};
use crate::fleet::Fleet;
use crate::host::{
    CloneRequest, CloneSpec, CreateSpec, CtInfo, Host, HostError, HostResult, Passthrough, Settings,
};
use crate::os::now_secs;
use crate::state::StateDir;

/// A node's failure: the step and what went wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StepError {
    pub step: Step,
    pub message: String,
    /// The last lines the failed script printed, secrets masked (empty for host calls).
    pub output: Vec<String>,
}

impl StepError {
    pub fn new(step: Step, message: impl Into<String>) -> StepError {
        StepError {
            step,
            message: message.into(),
            output: Vec::new(),
        }
    }
}

type StepResult<T = ()> = Result<T, StepError>;

fn fail<T>(step: Step, message: impl Into<String>) -> StepResult<T> {
    Err(StepError::new(step, message))
}

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
    /// The host facts of the nodes GPU CTs are built on.
    pub facts: &'a super::preflight::Facts,
    /// The nodes this host cannot build, found before the run ([`super::preflight`]).
    pub preflight: &'a BTreeMap<Ctid, Vec<Problem>>,
    pub state: &'a StateDir,
    pub run_id: &'a str,
    pub emit: &'a (dyn Fn(Event) + Sync),
    pub retry: Retry,
    pub ready_timeout: Duration,
    /// A hook running longer is killed (with what it started) and fails its node.
    pub hook_timeout: Duration,
    /// The key of the digests of delivered secrets (`None`: not recorded in this run).
    pub secret_key: Option<&'a Key>,
}

impl Executor<'_> {
    pub fn log_path(&self, ctid: Ctid) -> PathBuf {
        self.state
            .log_dir(ctid)
            .join(format!("{}.log", self.run_id))
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
        // An interrupted run starts no new host operation; the node stops here.
        if let Some(sig) = super::cancel::requested() {
            return fail(
                step,
                format!(
                    "the run was interrupted by {} before `{what}`",
                    super::cancel::name(sig)
                ),
            );
        }
        // A host driven through `pct` logs the command; another (lxc) logs the operation
        // in phoenix's words, never a `pct` line that was not run.
        let what = if self.host.speaks_pct() {
            log.line(&format!("$ {what}"));
            what.to_string()
        } else {
            let op = what.strip_prefix("pct ").unwrap_or(what).to_string();
            log.line(&format!("> {op}"));
            op
        };
        let what = what.as_str();
        let mut delay = self.retry.first_delay;
        let mut attempt = 1;
        loop {
            let result = f();
            // What the host logged meanwhile (a Proxmox task's lines) goes with the call.
            for line in self.host.take_log(ctid) {
                log.line(&line);
            }
            match result {
                Ok(v) => return Ok(v),
                Err(e) if e.kind.is_transient() && attempt < self.retry.attempts => {
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
                    attempt += 1;
                }
                Err(e) => {
                    log.line(&format!("  error: {}", e.message));
                    return fail(step, format!("{what}: {}", e.message));
                }
            }
        }
    }

    fn step(&self, ctid: Ctid, step: Step, log: &mut NodeLog) {
        log.line(&format!(
            "== {} ({} UTC)",
            step.name(),
            crate::os::utc(now_secs())
        ));
        (self.emit)(Event::StepStarted { ctid, step });
    }

    /// A node that failed the preflight fails before touching anything.
    fn preflight(&self, node: &Node, log: &mut NodeLog) -> StepResult {
        match self.preflight.get(&node.ctid) {
            Some(problems) => {
                self.step(node.ctid, Step::Preflight, log);
                for p in problems {
                    log.line(&p.message);
                }
                fail(Step::Preflight, super::preflight::failure(problems))
            }
            None => Ok(()),
        }
    }

    /// Destroy (for a replace), then create or clone.
    pub fn provision(&self, ctid: Ctid) -> StepResult {
        let entry = self.entries[&ctid];
        let node = self.node(ctid);
        let mut log = NodeLog::open(&self.log_path(ctid));
        log.line(&format!(
            "# phoenix run {}: CT {ctid} {} — {}",
            self.run_id,
            node.name(),
            entry.action.name()
        ));
        self.preflight(node, &mut log)?;
        let replace = matches!(
            entry.action,
            Action::Rebuild {
                mode: RebuildMode::Replace,
                ..
            }
        );
        if !matches!(entry.action, Action::Create) && !replace {
            return Ok(());
        }
        // The proof that a CT without its snapshot is this build's unfinished work, written
        // before the first change (and removed by the snapshot): without it, a later run
        // must not take such a CT for phoenix's own and destroy it.
        let record = crate::state::Building {
            hash: self.hashes[&ctid].hash.to_string(),
            run: self.run_id.to_string(),
            started: now_secs(),
        };
        self.state.begin_build(ctid, &record).map_err(|e| {
            StepError::new(
                if replace { Step::Destroy } else { Step::Create },
                format!(
                    "cannot record the build in {} before touching CT {ctid}: {e}",
                    self.state.root.join("building").display()
                ),
            )
        })?;
        if replace {
            self.destroy(ctid, &mut log)?;
        }
        match entry.parent {
            None => {
                self.step(ctid, Step::Create, &mut log);
                let spec = CreateSpec {
                    ostemplate: node.spec.template.clone().unwrap_or_default(),
                    storage: node.spec.storage_pool.clone(),
                    disk_gb: node.spec.storage_size_gb,
                    unprivileged: node.spec.unprivileged.unwrap_or(true),
                    settings: self.managed_settings(node),
                    node: entry.node.clone(),
                };
                let on = entry
                    .node
                    .as_deref()
                    .map(|n| format!(" (on node {n})"))
                    .unwrap_or_default();
                let what = if self.host.speaks_pct() {
                    format!("pct create {ctid} {}{on}", spec.ostemplate)
                } else {
                    format!("create {ctid} from {}{on}", spec.ostemplate)
                };
                self.call(ctid, Step::Create, &mut log, &what, || {
                    self.host.create(ctid, &spec)
                })
            }
            Some(parent) => {
                self.step(ctid, Step::Clone, &mut log);
                match &entry.clone {
                    Some(CloneFrom::Linked { store_template }) => {
                        return self.link(ctid, parent, *store_template, &mut log)
                    }
                    Some(CloneFrom::Full { reason }) => log.line(&format!(
                        "  a full clone: {}",
                        crate::render::plan::full_clone(reason)
                    )),
                    None => {}
                }
                let spec = CloneSpec {
                    source: parent,
                    snapshot: self.hashes[&parent].hash.snapshot().to_string(),
                    target: ctid,
                    hostname: node.name().to_string(),
                    storage: node.spec.storage_pool.clone(),
                    // Shared storage: made on its own node at once (`target`).
                    node: match &entry.clone_via {
                        Some(CloneVia::Target { .. }) => entry.node.clone(),
                        _ => None,
                    },
                };
                let target = spec
                    .node
                    .as_deref()
                    .map(|n| format!(" --target {n}"))
                    .unwrap_or_default();
                let what = if self.host.speaks_pct() {
                    format!(
                        "pct clone {parent} {ctid} --snapname {} --hostname {} --storage {}{target}",
                        spec.snapshot, spec.hostname, spec.storage
                    )
                } else {
                    let onto = spec
                        .node
                        .as_deref()
                        .map(|n| format!(" straight onto node {n} (target)"))
                        .unwrap_or_default();
                    format!(
                        "clone {parent}@{} as {ctid} ({}){onto}",
                        spec.snapshot, spec.hostname
                    )
                };
                self.call(ctid, Step::Clone, &mut log, &what, || {
                    self.host.clone_ct(&spec)
                })
            }
        }
    }

    /// A linked clone of the parent's store template: the new CT's disk shares the
    /// template's blocks, no data is copied.
    fn link(&self, ctid: Ctid, parent: Ctid, store: Ctid, log: &mut NodeLog) -> StepResult {
        // Shared storage: linked onto its own node at once (`target`).
        let onto = match &self.entries[&ctid].clone_via {
            Some(CloneVia::Target { .. }) => self.entries[&ctid].node.clone(),
            _ => None,
        };
        let req = CloneRequest {
            source: store,
            target: ctid,
            full: Some(false),
            hostname: Some(self.node(ctid).name().to_string()),
            node: onto.clone(),
            ..CloneRequest::default()
        };
        log.line(&format!(
            "  a linked clone of store template {store} ({} of CT {parent}): no data copied",
            self.hashes[&parent].hash.snapshot()
        ));
        let what = format!(
            "pct clone {store} {ctid} --hostname {} --full 0{}",
            self.node(ctid).name(),
            onto.map(|n| format!(" --target {n}")).unwrap_or_default()
        );
        self.call(ctid, Step::Clone, log, &what, || self.host.clone_with(&req))
    }

    /// The store templates the plan makes of a node's generation: on its own node, and on
    /// each other node that children on local storage are placed on.
    fn make_store_templates(&self, node: &Node, entry: &Entry, log: &mut NodeLog) -> StepResult {
        for make in entry
            .store_template
            .iter()
            .chain(&entry.remote_store_templates)
        {
            self.make_store_template(node, make, log)?;
        }
        Ok(())
    }

    /// The store template of a node's generation (`store_vmid_range`): a full clone of its
    /// build snapshot at the VMID the plan chose, made a Proxmox template, then tagged
    /// `phoenix-store` and described with its record marked complete. That mark is written
    /// last, so a creation cut short leaves nothing trusted; an untrusted store template of
    /// this generation at that VMID is destroyed first.
    fn make_store_template(&self, node: &Node, make: &StoreMake, log: &mut NodeLog) -> StepResult {
        let (ctid, vmid) = (node.ctid, make.vmid);
        self.step(ctid, Step::Store, log);
        let snap = self.hashes[&ctid].hash.snapshot();
        log.line(&format!(
            "  store template {vmid} of {snap}{}",
            make.node
                .as_deref()
                .map(|n| format!(" for node {n}"))
                .unwrap_or_default()
        ));
        if make.redo {
            self.clear_untrusted(ctid, vmid, log)?;
        }
        let built = self.host_ct(ctid, log)?;
        let generation = built.snapshot(snap.as_str()).ok_or_else(|| {
            StepError::new(
                Step::Store,
                format!("CT {ctid} has no snapshot {snap} to make its store template of"),
            )
        })?;
        let mut record = StoreRecord {
            // A full copy: whatever the node's own disk was linked to, this one is not.
            build: BuildRecord {
                linked: None,
                ..BuildRecord::parse(&generation.description)
            },
            made: Some(now_secs()),
            complete: false,
        };
        let storage = node.spec.storage_pool.clone();
        let req = CloneRequest {
            source: ctid,
            target: vmid,
            snapname: Some(snap.to_string()),
            full: Some(true),
            storage: Some(storage.clone()),
            hostname: Some(snap.to_string()),
            description: Some(record.description()),
            // Beside the CT it is made of, on that CT's node.
            node: None,
        };
        let what = format!(
            "pct clone {ctid} {vmid} --snapname {snap} --hostname {snap} --description … --full 1 --storage {storage}"
        );
        self.call(ctid, Step::Store, log, &what, || self.host.clone_with(&req))?;
        if let Some(to) = &make.node {
            // For another node: moved there while it is a plain CT without snapshots,
            // which any storage migrates.
            self.call(
                ctid,
                Step::Store,
                log,
                &format!("pct migrate {vmid} {to}"),
                || self.host.migrate(vmid, to, false),
            )?;
        }
        self.call(
            ctid,
            Step::Store,
            log,
            &format!("pct template {vmid}"),
            || self.host.template(vmid),
        )?;
        record.complete = true;
        let mark = Settings {
            managed: Some(true),
            store_template: Some(true),
            description: Some(record.description()),
            ..Settings::default()
        };
        self.call(
            ctid,
            Step::Store,
            log,
            &format!(
                "pct set {vmid} --tags {};{} --description …",
                crate::host::MANAGED_TAG,
                crate::host::STORE_TAG
            ),
            || self.host.set(vmid, &mark),
        )
    }

    /// Destroys what a cut-short store-template creation left at `vmid` (unlocking and
    /// stopping it first), if it is still there and still such a thing.
    fn clear_untrusted(&self, ctid: Ctid, vmid: Ctid, log: &mut NodeLog) -> StepResult {
        let ct = self.call(
            ctid,
            Step::Store,
            log,
            &format!("pct config {vmid}"),
            || self.host.ct(vmid),
        )?;
        let Some(ct) = ct else {
            return Ok(());
        };
        if !crate::engine::store::is_store_template(&ct) {
            return fail(
                Step::Store,
                format!("VMID {vmid} is no longer one of phoenix's store templates; refusing to destroy it: run the build again"),
            );
        }
        log.line(&format!(
            "  {vmid} holds an untrusted store template of this generation (its making was cut short): destroyed first"
        ));
        if ct.lock.is_some() {
            self.call(
                ctid,
                Step::Store,
                log,
                &format!("pct unlock {vmid}"),
                || self.host.unlock(vmid),
            )?;
        }
        if ct.running {
            self.call(ctid, Step::Store, log, &format!("pct stop {vmid}"), || {
                self.host.ensure_stopped(vmid)
            })?;
        }
        self.call(
            ctid,
            Step::Store,
            log,
            &format!("pct destroy {vmid}"),
            || self.host.destroy(vmid),
        )
    }

    /// A clone made beside its source on another node moves to its own (part of its
    /// clone step; the source is free again meanwhile).
    pub fn relocate(&self, ctid: Ctid) -> StepResult {
        let entry = self.entries[&ctid];
        let (Some(CloneVia::Migrate { source_node }), Some(to)) = (&entry.clone_via, &entry.node)
        else {
            return Ok(());
        };
        let mut log = NodeLog::open(&self.log_path(ctid));
        log.line(&format!(
            "# cloned on node {source_node}, beside its source; moved to node {to}"
        ));
        self.call(
            ctid,
            Step::Clone,
            &mut log,
            &format!("pct migrate {ctid} {to}"),
            || self.host.migrate(ctid, to, false),
        )
    }

    /// Moves a built CT to the node its block names (Proxmox's offline migration; a
    /// running CT is shut down, moved and started there). Snapshots its storage cannot
    /// move are deleted first (consent: `--drop-snapshots`), and its build snapshot is
    /// taken again there, with the same record.
    fn move_ct(&self, node: &Node, m: &Move, log: &mut NodeLog) -> StepResult {
        let ctid = node.ctid;
        self.step(ctid, Step::Migrate, log);
        log.line(&format!(
            "# CT {ctid} moves from node {} to node {}",
            m.from, m.to
        ));
        let dropping = !m.drops_snapshots.is_empty();
        let restart = m.restart && !dropping;
        if dropping {
            if m.restart {
                self.call(
                    ctid,
                    Step::Migrate,
                    log,
                    &format!("pct shutdown {ctid}"),
                    || self.host.shutdown(ctid, 120),
                )?;
            }
            // Newest first: the live state's parent goes last.
            for s in m.drops_snapshots.iter().rev() {
                self.call(
                    ctid,
                    Step::Migrate,
                    log,
                    &format!("pct delsnapshot {ctid} {s}"),
                    || self.host.delete_snapshot(ctid, s),
                )?;
            }
        }
        let what = format!(
            "pct migrate {ctid} {}{}",
            m.to,
            if restart { " --restart" } else { "" }
        );
        self.call(ctid, Step::Migrate, log, &what, || {
            self.host.migrate(ctid, &m.to, restart)
        })?;
        if dropping {
            let built = self
                .inventory
                .get(&ctid)
                .and_then(crate::engine::snapshot::current_build);
            if let Some(b) = built {
                self.call(
                    ctid,
                    Step::Migrate,
                    log,
                    &format!("pct snapshot {ctid} {}", b.name),
                    || self.host.snapshot(ctid, &b.name, &b.description),
                )?;
            }
            if m.restart {
                self.call(
                    ctid,
                    Step::Migrate,
                    log,
                    &format!("pct start {ctid}"),
                    || self.host.start(ctid),
                )?;
            }
        }
        Ok(())
    }

    /// What happens to a node's CT after its build failed (`behavior.rollback_on_failure`):
    /// when true, a CT the run created or replaced is destroyed, and one rebuilt or updated
    /// in place is rolled back to its newest `phx-*` snapshot (and started again if it was
    /// running); when false, the CT is left for inspection. Only phoenix's own CTs are
    /// touched. Returns what was done, in words for the summary.
    pub fn after_failure(&self, ctid: Ctid) -> Option<String> {
        // A failed move leaves the CT where it was (Proxmox undoes it); a CT that cannot
        // be reached cannot be touched.
        if matches!(
            self.entries[&ctid].action,
            Action::Migrate { .. } | Action::Unreachable { .. }
        ) {
            return None;
        }
        let ct = self.host.ct(ctid).ok().flatten()?;
        if !ct.is_managed() {
            return None;
        }
        let mut log = NodeLog::open(&self.log_path(ctid));
        if !self.fleet.hypervisor.rollback_on_failure {
            return Some(format!(
                "CT {ctid} is left as the failure left it (rollback_on_failure is off): look inside with `{}`",
                self.host.enter_hint(ctid)
            ));
        }
        let fresh = matches!(
            self.entries[&ctid].action,
            Action::Create
                | Action::Rebuild {
                    mode: RebuildMode::Replace,
                    ..
                }
        );
        let outcome = if fresh {
            let stopped = if ct.running {
                self.host.ensure_stopped(ctid)
            } else {
                Ok(())
            };
            stopped.and_then(|()| self.host.destroy(ctid)).map(|()| {
                self.state.end_build(ctid);
                format!("the half-built CT {ctid} was destroyed (rollback_on_failure)")
            })
        } else {
            // The snapshot the live state descends from is the newest one: the only one
            // Proxmox rolls back to.
            match ct.parent_snapshot.filter(|s| s.starts_with("phx-")) {
                None => return Some(format!(
                    "CT {ctid} could not be rolled back: its newest snapshot is not one of phoenix's; look inside with `{}`",
                    self.host.enter_hint(ctid)
                )),
                Some(snap) => {
                    let was_running = self.inventory.get(&ctid).is_some_and(|c| c.running);
                    self.host
                        .rollback(ctid, &snap)
                        .and_then(|()| if was_running { self.host.start(ctid) } else { Ok(()) })
                        .map(|()| format!("CT {ctid} was rolled back to {snap} (rollback_on_failure)"))
                }
            }
        };
        let said = outcome.unwrap_or_else(|e| {
            format!(
                "CT {ctid} could not be put back ({}): look inside with `{}`",
                e.message,
                self.host.enter_hint(ctid)
            )
        });
        log.line(&format!("# {said}"));
        Some(said)
    }

    /// Destroys the live CT of a node being replaced (stopping it first).
    fn destroy(&self, ctid: Ctid, log: &mut NodeLog) -> StepResult {
        let Some(ct) = self.inventory.get(&ctid) else {
            return Ok(());
        };
        if !ct.is_managed() {
            return fail(
                Step::Destroy,
                format!("CT {ctid} was not created by phoenix; refusing to destroy it"),
            );
        }
        self.step(ctid, Step::Destroy, log);
        if ct.running {
            self.call(
                ctid,
                Step::Destroy,
                log,
                &format!("pct stop {ctid}"),
                || self.host.ensure_stopped(ctid),
            )?;
        }
        self.keep_generation(ctid, ct, log)?;
        self.call(
            ctid,
            Step::Destroy,
            log,
            &format!("pct destroy {ctid}"),
            || self.host.destroy(ctid),
        )
    }

    /// Keeps the generation a CT about to be destroyed holds, where its node keeps
    /// generations and the host can: the history a rollback brings back. A copy that
    /// cannot be made stops the node before anything is destroyed.
    fn keep_generation(&self, ctid: Ctid, ct: &CtInfo, log: &mut NodeLog) -> StepResult {
        let keeps = self.node(ctid).keeps_generations() && self.host.keeps_copies();
        if !keeps || crate::engine::snapshot::current_build(ct).is_none() {
            return Ok(()); // nothing to keep, or not asked to
        }
        let storage = &self.fleet.hypervisor.backup_storage;
        let what = format!("vzdump {ctid} --storage {storage} --mode stop");
        let kept = self.call(ctid, Step::Destroy, log, &what, || {
            keep_generation(self.host, self.state, self.fleet, ct, "replaced")
        })?;
        if let Some(k) = kept {
            log.line(&format!("  kept {} as {}", k.snapshot, k.copy.location));
        }
        Ok(())
    }

    /// The node's runtime settings, its features and phoenix's marker.
    fn managed_settings(&self, node: &Node) -> Settings {
        let features = node.feature_set();
        Settings {
            features: Some(features),
            managed: Some(true),
            // A linked clone starts as a copy of its store template's config.
            store_template: Some(false),
            description: Some(format!(
                "Managed by phoenix: `phoenix why {}` explains its build. Changes made here are overwritten.",
                node.ctid
            )),
            ..runtime_settings(node)
        }
    }

    /// Everything after provisioning, ending with the snapshot (or just the settings, for
    /// an update).
    pub fn finish(&self, ctid: Ctid) -> StepResult {
        let entry = self.entries[&ctid];
        let node = self.node(ctid);
        let mut log = NodeLog::open(&self.log_path(ctid));
        let provisioned = matches!(
            entry.action,
            Action::Create
                | Action::Rebuild {
                    mode: RebuildMode::Replace,
                    ..
                }
        );
        if !provisioned {
            self.preflight(node, &mut log)?;
        }
        if let Some(m) = &entry.moves {
            self.move_ct(node, m, &mut log)?;
        }
        if let Action::Update { changes, secrets } | Action::Migrate { changes, secrets } =
            &entry.action
        {
            let settings = changes
                .iter()
                .any(|c| c.key != "running" && c.key != STORE_CHANGE);
            if settings {
                self.step(ctid, Step::Settings, &mut log);
                self.set(ctid, &runtime_settings(node), &mut log)?;
                if changes.iter().any(|c| c.key == "disk") {
                    self.grow_disk(ctid, node, &mut log)?;
                }
            }
            // A built CT that should run and does not (a run interrupted between its
            // snapshot and its restart, or a CT stopped by hand) is started.
            if changes.iter().any(|c| c.key == "running") {
                self.step(ctid, Step::Start, &mut log);
                self.call(
                    ctid,
                    Step::Start,
                    &mut log,
                    &format!("pct start {ctid}"),
                    || self.host.start(ctid),
                )?;
            }
            if !secrets.is_empty() {
                self.deliver_secrets(node, secrets, &mut log)?;
            }
            self.make_store_templates(node, entry, &mut log)?;
            return Ok(());
        }
        let in_place = matches!(
            entry.action,
            Action::Rebuild {
                mode: RebuildMode::InPlace,
                ..
            }
        );
        if in_place && !self.inventory.get(&ctid).is_some_and(CtInfo::is_managed) {
            return fail(
                Step::Settings,
                format!("CT {ctid} was not created by phoenix; refusing to rebuild it"),
            );
        }
        self.configure(node, &mut log)?;
        self.start_ready(node, &mut log)?;
        self.node_steps(node, &mut log)?;
        self.commit(node, &mut log)?;
        self.make_store_templates(node, entry, &mut log)?;
        log.line("# built");
        Ok(())
    }

    /// Settings, disk and devices, on a stopped CT.
    fn configure(&self, node: &Node, log: &mut NodeLog) -> StepResult {
        let ctid = node.ctid;
        self.step(ctid, Step::Settings, log);
        let current = self.host_ct(ctid, log)?;
        if current.running {
            // An in-place rebuild: stop first, so that features and device entries are
            // applied as configured (Proxmox defers them on a running CT).
            self.call(
                ctid,
                Step::Settings,
                log,
                &format!("pct shutdown {ctid}"),
                || self.host.shutdown(ctid, 120),
            )?;
        }
        let unmet = self.managed_settings(node).unmet_by(&current.settings);
        if !unmet.is_empty() {
            self.set(ctid, &unmet, log)?;
        }
        if current
            .disk_gb
            .is_some_and(|gb| gb < node.spec.storage_size_gb)
        {
            self.grow_disk(ctid, node, log)?;
        }
        // A node without GPUs loses what its clone source or an earlier build passed in.
        if node.has_gpu() || current.passthrough != Passthrough::default() {
            self.step(ctid, Step::Devices, log);
            let devices = if node.has_gpu() {
                let on = self.entries[&ctid].node.as_deref();
                let facts = self
                    .facts
                    .of(on)
                    .map_err(|m| StepError::new(Step::Devices, m))?;
                gpu::passthrough(node, facts).map_err(|m| StepError::new(Step::Devices, m))?
            } else {
                Passthrough::default()
            };
            log.line(&format!("  {devices:?}"));
            self.call(
                ctid,
                Step::Devices,
                log,
                &format!("pass GPU devices into CT {ctid}"),
                || self.host.set_devices(ctid, &devices),
            )?;
        }
        Ok(())
    }

    fn start_ready(&self, node: &Node, log: &mut NodeLog) -> StepResult {
        let ctid = node.ctid;
        self.step(ctid, Step::Start, log);
        self.call(ctid, Step::Start, log, &format!("pct start {ctid}"), || {
            self.host.start(ctid)
        })?;
        self.step(ctid, Step::WaitReady, log);
        self.wait_ready(ctid, node, log)
    }

    /// The built-in steps that apply, then the node's own hook.
    fn node_steps(&self, node: &Node, log: &mut NodeLog) -> StepResult {
        let ctid = node.ctid;
        let hooks = &self.fleet.hooks;
        // The step scripts, with the original orchestrator's arguments, on the host.
        if node.has_gpu() {
            self.step(ctid, Step::Nvidia, log);
            let n = &self.fleet.nvidia;
            let v = |o: &Option<String>| o.clone().unwrap_or_default();
            let args = [
                ctid.to_string(),
                v(&n.driver_version),
                v(&n.repo_url),
                v(&n.runfile_url),
            ];
            self.run_step_script(node, Step::Nvidia, &hooks.nvidia_step, &args, &[], log)?;
        }
        if node.nesting() {
            self.step(ctid, Step::Docker, log);
            let env = self.docker_env(node);
            let arg = |k: &str| {
                env.iter()
                    .find(|(key, _)| key == k)
                    .map(|(_, v)| v.clone())
                    .unwrap_or_default()
            };
            let args = [
                ctid.to_string(),
                arg("PHOENIX_PORTAINER_ROLE"),
                arg("PHOENIX_PORTAINER_SERVER_IP"),
                arg("PHOENIX_PORTAINER_AGENT_PORT"),
            ];
            self.run_step_script(node, Step::Docker, &hooks.docker_step, &args, &env, log)?;
        }
        if let Some(script) = hooks.node_hooks.get(&ctid) {
            self.step(ctid, Step::Hook, log);
            self.run_step_script(node, Step::Hook, script, &[ctid.to_string()], &[], log)?;
        }
        Ok(())
    }

    /// The commit: manifest stored, CT stopped, a stale snapshot of the same name
    /// removed, the snapshot taken; a standard container started again. Only then is the
    /// node built.
    fn commit(&self, node: &Node, log: &mut NodeLog) -> StepResult {
        let ctid = node.ctid;
        self.step(ctid, Step::Shutdown, log);
        self.state
            .store_manifest(self.fleet, ctid, &self.hashes[&ctid])
            .map_err(|e| {
                StepError::new(
                    Step::Snapshot,
                    format!(
                        "cannot store the manifest in {}: {e}",
                        self.state.root.display()
                    ),
                )
            })?;
        self.call(
            ctid,
            Step::Shutdown,
            log,
            &format!("pct shutdown {ctid}"),
            || match self.host.shutdown(ctid, 120) {
                Err(e) if e.kind == crate::host::ErrorKind::NotRunning => Ok(()),
                other => other,
            },
        )?;
        self.step(ctid, Step::Snapshot, log);
        let snap = self.hashes[&ctid].hash.snapshot();
        let now = self.host_ct(ctid, log)?;
        if now.snapshot(snap.as_str()).is_some() {
            // An older generation with this name (a reverted config): Proxmox refuses a
            // used name, and the live CT holds newer work, so the old one goes.
            self.call(
                ctid,
                Step::Snapshot,
                log,
                &format!("pct delsnapshot {ctid} {snap}"),
                || self.host.delete_snapshot(ctid, snap.as_str()),
            )?;
        }
        let description = BuildRecord {
            linked: now.linked_to(),
            ..self.build_record(ctid)
        }
        .description();
        self.call(
            ctid,
            Step::Snapshot,
            log,
            &format!("pct snapshot {ctid} {snap}"),
            || self.host.snapshot(ctid, snap.as_str(), &description),
        )?;
        // The build is committed: the CT is no longer unfinished work.
        self.state.end_build(ctid);
        // The hook ran with the block's secrets, and the build is committed.
        self.record_secrets(node, log);
        if crate::engine::plan::should_run(node) {
            self.step(ctid, Step::Restart, log);
            self.call(
                ctid,
                Step::Restart,
                log,
                &format!("pct start {ctid}"),
                || self.host.start(ctid),
            )?;
        }
        Ok(())
    }

    /// Delivers changed secrets to a built CT: its setup hook runs again on the live CT
    /// (hooks are idempotent by contract), started for it if it was stopped and stopped
    /// again after. `PHOENIX_SECRETS_ROTATED` names the fields. No snapshot is taken: the
    /// hash, and so the build, is the same.
    fn deliver_secrets(&self, node: &Node, secrets: &[Rotated], log: &mut NodeLog) -> StepResult {
        let ctid = node.ctid;
        let Some(script) = self.fleet.hooks.node_hooks.get(&ctid) else {
            return Ok(());
        };
        let names: Vec<&str> = secrets.iter().map(|s| s.field.as_str()).collect();
        log.line(&format!("# secrets to deliver: {}", names.join(", ")));
        let was_running = self.host_ct(ctid, log)?.running;
        if !was_running {
            self.start_ready(node, log)?;
        }
        self.step(ctid, Step::Hook, log);
        let rotated = [("PHOENIX_SECRETS_ROTATED".to_string(), names.join(","))];
        self.run_step_script(node, Step::Hook, script, &[ctid.to_string()], &rotated, log)?;
        if !was_running {
            self.step(ctid, Step::Shutdown, log);
            self.call(
                ctid,
                Step::Shutdown,
                log,
                &format!("pct shutdown {ctid}"),
                || self.host.shutdown(ctid, 120),
            )?;
        }
        self.record_secrets(node, log);
        log.line("# secrets delivered");
        Ok(())
    }

    /// Records which secret values the node's hook has run with (keyed digests, never the
    /// values). A record that cannot be written only means the next run delivers them
    /// again.
    fn record_secrets(&self, node: &Node, log: &mut NodeLog) {
        let Some(key) = self.secret_key else {
            return;
        };
        let digests = secrets::digests(key, node.ctid, &node.block);
        if let Err(e) = self.state.record_secrets(node.ctid, &digests) {
            log.line(&format!("# cannot record the delivered secrets: {e}"));
            tracing::warn!(
                ctid = node.ctid,
                "cannot record the secrets its hook ran with ({e}): the next build delivers them again"
            );
        }
    }

    fn set(&self, ctid: Ctid, settings: &Settings, log: &mut NodeLog) -> StepResult {
        self.call(
            ctid,
            Step::Settings,
            log,
            &format!("pct set {ctid} {}", show_settings(settings)),
            || self.host.set(ctid, settings),
        )
    }

    fn grow_disk(&self, ctid: Ctid, node: &Node, log: &mut NodeLog) -> StepResult {
        let gb = node.spec.storage_size_gb;
        self.call(
            ctid,
            Step::Settings,
            log,
            &format!("pct resize {ctid} rootfs {gb}G"),
            || self.host.resize(ctid, gb),
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
        ct.ok_or_else(|| {
            StepError::new(Step::Settings, format!("CT {ctid} vanished from the host"))
        })
    }

    /// What the node's snapshot description records.
    pub fn build_record(&self, ctid: Ctid) -> BuildRecord {
        let h = &self.hashes[&ctid];
        let node = self.node(ctid);
        BuildRecord {
            version: env!("CARGO_PKG_VERSION").to_string(),
            ctid: Some(ctid),
            name: node.name().to_string(),
            hash: Some(h.hash.to_string()),
            parent: Some(h.manifest.parent.as_ref().map(|p| p.hash.to_string())),
            base: self.in_place_base(ctid),
            built: Some(now_secs()),
            label: node.spec.template_snapshot_name.clone(),
            linked: None,
        }
    }

    /// For an in-place rebuild, the parent generation the CT's files still come from, when
    /// it is not the parent's current one: the old build's `base`, else its `parent`. An
    /// in-place rebuild re-runs the node's own steps; it never brings the parent's files.
    fn in_place_base(&self, ctid: Ctid) -> Option<String> {
        if !matches!(
            self.entries[&ctid].action,
            Action::Rebuild {
                mode: RebuildMode::InPlace,
                ..
            }
        ) {
            return None;
        }
        let old = BuildRecord::parse(
            &crate::engine::snapshot::current_build(self.inventory.get(&ctid)?)?.description,
        );
        let base = old.base.or(old.parent.flatten())?;
        let parent = self.hashes[&ctid].manifest.parent.as_ref()?;
        (base != parent.hash.as_str()).then_some(base)
    }

    /// Until the CT has booted ([`super::ready`]).
    fn wait_ready(&self, ctid: Ctid, node: &Node, log: &mut NodeLog) -> StepResult {
        super::ready::wait(
            self.host,
            ctid,
            &node.gpus(),
            self.ready_timeout,
            &mut |l| log.line(l),
        )
        .map(|_| ())
        .map_err(|message| StepError::new(Step::WaitReady, message))
    }

    fn nvidia_env(&self) -> Vec<(String, String)> {
        let n = &self.fleet.nvidia;
        let v = |o: &Option<String>| o.clone().unwrap_or_default();
        vec![
            ("PHOENIX_NVIDIA_DRIVER_VERSION".into(), v(&n.driver_version)),
            ("PHOENIX_NVIDIA_RUNFILE_URL".into(), v(&n.runfile_url)),
            ("PHOENIX_NVIDIA_REPO_URL".into(), v(&n.repo_url)),
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

    /// The hook contract's environment (module doc), `PATH` with the host's `pct` first.
    fn hook_env(&self, node: &Node) -> Vec<(String, String)> {
        let ctid = node.ctid;
        let h = &self.hashes[&ctid];
        let parent = self.fleet.graph.parent_of(ctid);
        let mut env: Vec<(String, String)> = vec![
            ("PHOENIX_CTID".into(), ctid.to_string()),
            ("PHOENIX_NAME".into(), node.name().to_string()),
            (
                "PHOENIX_IS_TEMPLATE".into(),
                if node.is_template() { "1" } else { "0" }.into(),
            ),
            (
                "PHOENIX_PARENT_CTID".into(),
                parent.map(|p| p.to_string()).unwrap_or_default(),
            ),
            (
                "PHOENIX_PARENT_SNAPSHOT".into(),
                parent
                    .map(|p| self.hashes[&p].hash.snapshot().to_string())
                    .unwrap_or_default(),
            ),
            ("PHOENIX_SNAPSHOT".into(), h.hash.snapshot().to_string()),
            ("PHOENIX_HASH".into(), h.hash.to_string()),
            (
                "PHOENIX_CONFIG_BLOCK".into(),
                serde_json::Value::Object(node.block.clone()).to_string(),
            ),
        ];
        env.extend(self.host_env());
        env
    }

    /// What every script phoenix runs on the host gets, the node's hooks and the initial
    /// set-up alike: the config file, the backend, the hooks directory, the NVIDIA
    /// settings, `PHOENIX_DEBUG`, and `PATH` with the host's `pct` first.
    pub fn host_env(&self) -> Vec<(String, String)> {
        let mut env: Vec<(String, String)> = vec![
            (
                "PHOENIX_CONFIG_FILE".into(),
                self.fleet.lxc_path().display().to_string(),
            ),
            ("PHOENIX_BACKEND".into(), self.host.name().to_string()),
            (
                "PHOENIX_HOOKS_DIR".into(),
                self.fleet.hooks.dir.display().to_string(),
            ),
        ];
        env.extend(self.nvidia_env());
        if self.fleet.hypervisor.debug_mode {
            env.push(("PHOENIX_DEBUG".into(), "1".into()));
        }
        env.extend(self.host.hook_env());
        if let Some(dir) = self.host.pct_dir() {
            let path_var = std::env::var_os("PATH").unwrap_or_default();
            let mut paths = vec![dir];
            paths.extend(std::env::split_paths(&path_var));
            let joined = std::env::join_paths(paths).unwrap_or_default();
            env.push(("PATH".into(), joined.to_string_lossy().into_owned()));
        }
        env
    }

    /// Runs `phoenix_hypervisor_initial_setup.sh` on the host, before any node; its
    /// output goes to `logs/setup/<run>.log`. `Err` says why it failed.
    pub fn initial_setup(&self, script: &std::path::Path) -> Result<(), String> {
        let log_path = self
            .state
            .root
            .join("logs/setup")
            .join(format!("{}.log", self.run_id));
        let mut log = NodeLog::open(&log_path);
        log.line(&format!("# phoenix run {}: host set-up", self.run_id));
        hook::run(
            script,
            &[],
            &self.fleet.hooks.dir,
            &self.host_env(),
            self.hook_timeout,
            &hook::Guard {
                record: &self.state.hooks_running_dir().join("setup"),
                secrets: &[],
            },
            &mut log,
        )
        .map_err(|e| {
            log.line(&format!("# failed: {e}"));
            let last = if e.output.is_empty() {
                String::new()
            } else {
                format!("; it said: {}", e.output.join(" | "))
            };
            format!("{e}{last} (its output: {})", log_path.display())
        })
    }

    /// Where a step script runs from: its file in the hooks directory, or the binary's
    /// own copy staged (executable) under the state directory.
    fn script_path(&self, script: &Script) -> std::io::Result<PathBuf> {
        if let Some(p) = &script.path {
            return Ok(p.clone());
        }
        let staged = self.state.root.join("scripts").join(&script.digest);
        // Staged once, and written again if what is there is not that script (a corrupt
        // or edited state directory must not change what runs).
        let intact = crate::os::read_regular(&staged, crate::fleet::config::MAX_SCRIPT_BYTES)
            .is_ok_and(|b| blake3::hash(&b).to_hex().as_str() == script.digest);
        if !intact {
            crate::os::write_atomic(&staged, &script.bytes)?;
        }
        std::fs::set_permissions(&staged, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
        Ok(staged)
    }

    /// Runs a node's hook or step script on the host as the original orchestrator did:
    /// `<script> <args>` in the hooks directory, with the hook environment (plus `extra`) and the
    /// host's `pct` first on `PATH`. The binary's own copy, when the hooks directory has
    /// none, is staged under the state directory first.
    fn run_step_script(
        &self,
        node: &Node,
        step: Step,
        script: &Script,
        args: &[String],
        extra: &[(String, String)],
        log: &mut NodeLog,
    ) -> StepResult {
        let ctid = node.ctid;
        let path = self
            .script_path(script)
            .map_err(|e| StepError::new(step, format!("cannot stage {}: {e}", script.origin)))?;
        let mut env = self.hook_env(node);
        env.extend(extra.iter().cloned());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        hook::run(
            &path,
            &args,
            &self.fleet.hooks.dir,
            &env,
            self.hook_timeout,
            &hook::Guard {
                record: &self.state.hooks_running_dir().join(format!("{ctid}")),
                secrets: &crate::fleet::config::secret_values(&node.block),
            },
            log,
        )
        .map_err(|failure| StepError {
            step,
            message: failure
                .message
                .replace(&path.display().to_string(), &script.origin),
            output: failure.output,
        })
    }
}

/// Keeps CT `ct`'s current generation apart (a backup on Proxmox), records it in the
/// state directory and forgets an older copy of the same generation: what `phoenix
/// rollback` restores after the CT was replaced. `None` when the node does not keep
/// generations, the host cannot, or the CT holds no build.
pub fn keep_generation(
    host: &dyn Host,
    state: &StateDir,
    fleet: &Fleet,
    ct: &CtInfo,
    why: &str,
) -> HostResult<Option<crate::state::Kept>> {
    let ctid = ct.ctid;
    let Some(node) = fleet.node(ctid) else {
        return Ok(None);
    };
    let built = match crate::engine::snapshot::current_build(ct) {
        Some(b) if node.keeps_generations() && host.keeps_copies() => b,
        _ => return Ok(None),
    };
    let note = format!(
        "phoenix: generation {} of CT {ctid} ({}), kept when it was {why}",
        built.name,
        node.name()
    );
    let copy = host.keep(ctid, &fleet.hypervisor.backup_storage, &note)?;
    let earlier = state
        .kept(ctid)
        .into_iter()
        .find(|k| k.snapshot == built.name && k.copy.location != copy.location);
    let kept = crate::state::Kept {
        ctid,
        snapshot: built.name.clone(),
        description: built.description.clone(),
        copy,
        kept_at: now_secs(),
    };
    state.record_kept(&kept).map_err(|e| {
        HostError::failed(format!(
            "cannot record the kept generation {} of CT {ctid} in {}: {e}",
            kept.snapshot,
            state.root.display()
        ))
    })?;
    // One copy of a generation is enough: an earlier one goes.
    if let Some(old) = earlier {
        let _ = host.forget(&old.copy);
    }
    Ok(Some(kept))
}

/// Settings as a log line shows them (`pct set`'s options).
fn show_settings(s: &Settings) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut opt = |k: &str, v: String| {
        parts.push(if v.contains(' ') {
            format!("--{k} '{v}'")
        } else {
            format!("--{k} {v}")
        })
    };
    if let Some(v) = &s.hostname {
        opt("hostname", v.clone());
    }
    if let Some(v) = s.memory_mb {
        opt("memory", v.to_string());
    }
    if let Some(v) = s.cores {
        opt("cores", v.to_string());
    }
    if let Some(n) = &s.network {
        opt("net0", crate::host::pve::map::network_value(n, None));
    }
    if let Some(v) = s.onboot {
        opt("onboot", if v { "1" } else { "0" }.to_string());
    }
    if let Some(f) = s.features.as_ref().filter(|f| !f.is_empty()) {
        let f: Vec<String> = f.iter().map(|(k, v)| format!("{k}={v}")).collect();
        opt("features", f.join(","));
    }
    if s.managed == Some(true) {
        opt("tags", crate::host::MANAGED_TAG.to_string());
    }
    if s.description.is_some() {
        opt("description", "…".to_string());
    }
    parts.join(" ")
}
