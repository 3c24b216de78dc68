//! One build run: read the host once, plan, check the GPU driver, then walk the nodes
//! that need work through their [`steps`] on `-j N` workers, emitting [`Event`]s. The
//! caller holds the run lock; [`run`] returns the exit code (see [`crate::exit`]).
//!
//! | module | role |
//! |---|---|
//! | [`tasks`] | the run's work as walker tasks, with costs from the host's estimates |
//! | [`steps`] | one node's steps, through the [`Host`] trait |
//! | [`hook`] | a node's hook: process group, time limit, output |
//! | [`cgroup`] | a cgroup per hook, for what leaves its process group |
//! | [`preflight`] | what the host must have before a node's first change |
//! | [`ready`] | when a started CT has booted: the probe steps and hooks wait for |
//! | [`gpu`] | the host devices a GPU node needs |
//! | [`log`] | a node's log for one run |
//! | [`counting`] | host calls per verb |
//! | [`cancel`] | SIGINT/SIGTERM: stop a run cleanly, or at once on the second |
//! | [`events`] | typed events every output is rendered from |

pub mod cancel;
pub mod cgroup;
pub mod counting;
pub mod events;
pub mod gpu;
pub mod hook;
pub mod log;
pub mod preflight;
pub mod ready;
pub mod steps;
pub mod tasks;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use counting::Counting;
use events::{Event, NodeOutcome};
use preflight::Problem;
use steps::{Executor, Retry, StepError};
use tasks::Part;

use crate::engine::hash::{self, Hashed};
use crate::engine::plan::{self, Action, Consent, Entry, Plan};
use crate::engine::secrets;
use crate::engine::walker::{self, Outcome};
use crate::exit;
use crate::fleet::config::Ctid;
use crate::fleet::Fleet;
use crate::host::{CtInfo, Host, HostError, HostResult};
use crate::state::StateDir;

#[derive(Clone, Debug)]
pub struct BuildOptions {
    pub targets: Vec<Ctid>,
    /// Leave GPU nodes and what descends from them out.
    pub skip_gpu: bool,
    /// Per cluster node.
    pub jobs: usize,
    /// Across the cluster (`None`: `jobs` on each node, nothing more).
    pub max_jobs: Option<usize>,
    pub fail_fast: bool,
    pub consent: Consent,
    pub ready_timeout: Duration,
    pub hook_timeout: Duration,
}

/// Locks that phoenix's own tasks set (pct-spec §5), and so may find left over.
const STALE_LOCKS: &[&str] = &["create", "disk", "snapshot", "snapshot-delete"];

/// The fleet's hashes, the host as read, the plan decided from both, and the nodes the
/// host cannot build.
pub struct Planned {
    pub hashes: BTreeMap<Ctid, Hashed>,
    pub inventory: BTreeMap<Ctid, CtInfo>,
    pub plan: Plan,
    /// The facts of the nodes GPU CTs are built on (read only when one builds).
    pub facts: preflight::Facts,
    /// The cluster as the host reported it (`None`: one machine).
    pub cluster: Option<crate::host::ClusterView>,
    /// Every problem of each node the host cannot build.
    pub preflight: BTreeMap<Ctid, Vec<Problem>>,
    /// Why the state directory cannot take what the build would write, if it cannot
    /// (checked only when the plan builds something).
    pub state_problems: Vec<String>,
}

/// Reads the host and decides the plan (the `plan` command, and the first half of `build`).
pub fn make_plan(
    fleet: &Fleet,
    host: &dyn Host,
    state: &StateDir,
    consent: &Consent,
    targets: &[Ctid],
    skip_gpu: bool,
) -> HostResult<Planned> {
    let started = Instant::now();
    let pins = state.pins();
    let hashes = hash::hash_fleet_fixed(fleet, &pinned_hashes(fleet, state, &pins));
    let hashed_ms = started.elapsed().as_millis() as u64;
    let inventory = host.inventory()?;
    // After the inventory: a node that stopped answering while it was read is down.
    let cluster = host.cluster()?;
    tracing::info!(
        nodes = hashes.len(),
        hashed_ms,
        cts = inventory.len(),
        backend = host.name(),
        "hashed the fleet and read the host"
    );
    let targets: Option<BTreeSet<Ctid>> =
        (!targets.is_empty()).then(|| targets.iter().copied().collect());
    let rotations = secrets::rotations(fleet, state.secret_key().as_ref(), |c| {
        state.secrets_delivered(c)
    });
    let context = plan::Context {
        skip_gpu,
        unfinished: state.unfinished_builds().into_keys().collect(),
        pins: pins
            .iter()
            .filter(|(c, _)| fleet.node(**c).is_some())
            .map(|(&c, p)| {
                (
                    c,
                    plan::Pinned {
                        pinned_snapshot: p.snapshot.clone(),
                        pinned_at: p.pinned_at,
                        pinned_by: p.by.clone(),
                        complete: p.complete,
                    },
                )
            })
            .collect(),
        store: store_setup(fleet, host, cluster.as_ref()),
        placement: cluster.clone().map(|cluster| plan::Placement {
            cluster,
            recorded: state.placements(),
        }),
    };
    let plan = plan::plan(
        fleet,
        &hashes,
        &inventory,
        &rotations,
        consent,
        &context,
        targets.as_ref(),
    );
    for e in &plan.entries {
        tracing::debug!(ctid = e.ctid, action = e.action.name(), "planned");
    }
    let facts = preflight::Facts::read(fleet, &plan.entries, host);
    let preflight = preflight::check(fleet, &plan.entries, host, &facts, cluster.as_ref());
    for p in preflight.values().flatten() {
        tracing::info!(ctid = p.ctid, check = ?p.check, "preflight: {}", p.message);
    }
    let building = plan.building();
    let state_problems = if building.is_empty() {
        Vec::new()
    } else {
        state.check_writable(&building)
    };
    Ok(Planned {
        hashes,
        inventory,
        plan,
        facts,
        cluster,
        preflight,
        state_problems,
    })
}

/// Store templates' setup: the range, and which of the fleet's storages link clones on
/// this host (read from its storage configuration, no `pct`). `None` when the range is
/// not set or the host makes no store templates.
fn store_setup(
    fleet: &Fleet,
    host: &dyn Host,
    cluster: Option<&crate::host::ClusterView>,
) -> Option<crate::engine::store::Setup> {
    let range = fleet.hypervisor.store_range?;
    let storages: BTreeSet<&str> = fleet
        .nodes
        .values()
        .map(|n| n.spec.storage_pool.as_str())
        .collect();
    let mut links = BTreeMap::new();
    for s in storages {
        let Some(l) = host.links_clones_on(s) else {
            tracing::warn!(
                "store_vmid_range is set, but the {} backend makes no store templates (on lxc, clones are btrfs snapshots already): every clone is made as without it",
                host.name()
            );
            return None;
        };
        links.insert(s.to_string(), l);
    }
    // Shared storages: one store template serves every node (clones link with `target`).
    let shared = cluster
        .map(|c| {
            c.nodes
                .iter()
                .flat_map(|n| &n.storages)
                .filter(|s| s.shared)
                .map(|s| s.id.clone())
                .collect()
        })
        .unwrap_or_default();
    Some(crate::engine::store::Setup {
        range,
        links,
        shared,
    })
}

/// The hashes of the generations pinned nodes are held at (their build records' hashes,
/// with the manifests phoenix stored for them, else today's), so that their descendants
/// are planned against them. A pin whose hash is unknown fixes nothing.
pub fn pinned_hashes(
    fleet: &Fleet,
    state: &StateDir,
    pins: &BTreeMap<Ctid, crate::state::Pin>,
) -> BTreeMap<Ctid, Hashed> {
    let today = || hash::hash_fleet(fleet);
    let mut out = BTreeMap::new();
    let mut current: Option<BTreeMap<Ctid, Hashed>> = None;
    for (&ctid, pin) in pins {
        if fleet.node(ctid).is_none() || !pin.complete {
            continue;
        }
        let Some(hash) = pin.hash.as_deref().and_then(hash::NodeHash::parse) else {
            continue;
        };
        let manifest = match state.manifest(hash.as_str()) {
            Some((_, m)) => m,
            None => current.get_or_insert_with(today)[&ctid].manifest.clone(),
        };
        out.insert(ctid, Hashed { manifest, hash });
    }
    out
}

/// Why a run could not start (a node's own failure is an outcome, not an error).
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("cannot read the host: {0}")]
    ReadHost(#[source] HostError),
    #[error("cannot remove the stale lock '{lock}' of CT {ctid}: {source}")]
    StaleLock {
        ctid: Ctid,
        lock: String,
        #[source]
        source: HostError,
    },
    #[error("the host set-up failed, so no CT was touched: {0}")]
    InitialSetup(String),
    #[error("the state directory cannot take what this build would write, so no CT was touched: {}", .0.join("; "))]
    StateDir(Vec<String>),
    #[error("the store templates this build needs cannot be made, so no CT was touched: {}", .0.join("; "))]
    Store(Vec<String>),
}

/// Result of a build, for the caller's summary.
pub struct RunResult {
    pub exit_code: i32,
    pub plan: Plan,
    pub outcomes: BTreeMap<Ctid, NodeOutcome>,
}

/// Reads the host and plans; a lock that a killed run left on one of phoenix's own CTs is
/// removed first (phoenix holds the run lock, so no task of its own holds it), and the
/// host read again.
fn read_host(
    fleet: &Fleet,
    host: &dyn Host,
    state: &StateDir,
    opts: &BuildOptions,
    emit: &(dyn Fn(Event) + Sync),
) -> Result<Planned, RunError> {
    let read = || {
        make_plan(
            fleet,
            host,
            state,
            &opts.consent,
            &opts.targets,
            opts.skip_gpu,
        )
        .map_err(RunError::ReadHost)
    };
    let planned = read()?;
    // Nothing is changed, a stale lock included, by a build that could not record it.
    if !planned.state_problems.is_empty() {
        return Err(RunError::StateDir(planned.state_problems));
    }
    if !planned.plan.store_problems.is_empty() {
        return Err(RunError::Store(planned.plan.store_problems));
    }
    let stale: Vec<(Ctid, String)> = planned
        .inventory
        .values()
        // phoenix's nodes, and its store templates (a clone of one killed mid-way leaves
        // it `lock: disk`, which would make it untrusted and its generation copied again).
        .filter(|ct| {
            ct.is_managed()
                && (fleet.node(ct.ctid).is_some() || crate::engine::store::is_store_template(ct))
        })
        .filter_map(|ct| {
            ct.lock
                .clone()
                .filter(|l| STALE_LOCKS.contains(&l.as_str()))
                .map(|l| (ct.ctid, l))
        })
        .collect();
    if stale.is_empty() {
        return Ok(planned);
    }
    for (ctid, lock) in stale {
        tracing::info!(ctid, lock = %lock, "removing a lock a killed run left");
        if let Err(source) = host.unlock(ctid) {
            return Err(RunError::StaleLock { ctid, lock, source });
        }
        emit(Event::StaleLock { ctid, lock });
    }
    read()
}

fn finished_event(entry: &Entry, outcome: NodeOutcome) -> Event {
    Event::NodeFinished {
        ctid: entry.ctid,
        name: entry.name.clone(),
        action: entry.action.name().to_string(),
        outcome,
        elapsed_ms: 0,
        failed_step: None,
        error: None,
        output: Vec::new(),
        blocked_by: None,
        log: None,
    }
}

pub fn run(
    fleet: &Fleet,
    host: &dyn Host,
    state: &StateDir,
    opts: &BuildOptions,
    run_id: &str,
    emit: &(dyn Fn(Event) + Sync),
) -> Result<RunResult, RunError> {
    let started = Instant::now();
    // Hooks a killed run left running go before anything touches their CTs (this run
    // holds the run lock, so no other run owns them).
    for ctid in hook::end_leftovers(&state.hooks_running_dir()) {
        tracing::info!(ctid, "a killed run's hook was ended");
    }
    let counting = Counting::new(host);
    let host: &dyn Host = &counting;
    let Planned {
        hashes,
        inventory,
        plan,
        facts,
        preflight,
        cluster,
        ..
    } = read_host(fleet, host, state, opts, emit)?;
    let building = plan.building();
    emit(Event::RunStarted {
        run: run_id.to_string(),
        backend: host.name().to_string(),
        jobs: opts.jobs,
        total: building.len(),
    });
    // Made on the first build with work; a state directory that cannot hold it only
    // means secrets count as not on record next time.
    let secret_key = if building.is_empty() {
        None
    } else {
        state
            .secret_key_or_create()
            .map_err(|e| {
                tracing::warn!(
                    "cannot make the key of the secret digests in {}: {e}; delivered secrets are not recorded",
                    state.root.display()
                )
            })
            .ok()
    };
    let exec = Executor {
        fleet,
        hashes: &hashes,
        entries: plan.entries.iter().map(|e| (e.ctid, e)).collect(),
        inventory: &inventory,
        host,
        facts: &facts,
        preflight: &preflight,
        state,
        run_id,
        emit,
        retry: Retry::default(),
        ready_timeout: opts.ready_timeout,
        hook_timeout: opts.hook_timeout,
        secret_key: secret_key.as_ref(),
    };
    // The original's host set-up runs before any node, on every build with work.
    if let (Some(script), false) = (&fleet.hooks.initial_setup, building.is_empty()) {
        exec.initial_setup(script).map_err(RunError::InitialSetup)?;
    }
    let (walked, failures) = walk(&exec, &building, opts);
    let outcomes = outcomes(&exec, &plan, &walked, &failures);
    record_placements(state, &plan, &inventory, &outcomes, cluster.is_some());
    let exit_code = match cancel::requested() {
        Some(sig) => 128 + sig,
        None => exit_code(&outcomes),
    };
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for o in outcomes.values() {
        *counts.entry(o.name().to_string()).or_insert(0) += 1;
    }
    emit(Event::RunFinished {
        elapsed_ms: started.elapsed().as_millis() as u64,
        counts,
        host_calls: counting.counts(),
        exit_code,
    });
    Ok(RunResult {
        exit_code,
        plan,
        outcomes,
    })
}

/// Each task's part and walker outcome, and the nodes that failed with why.
type Walked = (Vec<((Ctid, Part), Outcome)>, BTreeMap<Ctid, StepError>);

/// Runs the tasks of the nodes that build; emits each node's start and its end when it
/// built or failed. Returns each node's walker outcome (its worst task's) and the
/// failures.
fn walk(exec: &Executor, building: &[Ctid], opts: &BuildOptions) -> Walked {
    let work = tasks::tasks(exec.fleet, &exec.entries, building, exec.host);
    let node_started: Mutex<BTreeMap<Ctid, Instant>> = Mutex::new(BTreeMap::new());
    let failures: Mutex<BTreeMap<Ctid, StepError>> = Mutex::new(BTreeMap::new());
    let finished = |ctid: Ctid, outcome: NodeOutcome, err: Option<&StepError>| {
        let elapsed = node_started
            .lock()
            .ok()
            .and_then(|m| m.get(&ctid).map(|t| t.elapsed().as_millis() as u64))
            .unwrap_or(0);
        let entry = exec.entries[&ctid];
        (exec.emit)(Event::NodeFinished {
            ctid,
            name: entry.name.clone(),
            action: entry.action.name().to_string(),
            outcome,
            elapsed_ms: elapsed,
            failed_step: err.map(|e| e.step),
            error: err.map(|e| e.message.clone()),
            output: err.map(|e| e.output.clone()).unwrap_or_default(),
            blocked_by: None,
            log: Some(exec.log_path(ctid).display().to_string()),
        });
    };
    let cancelled: Mutex<BTreeSet<Ctid>> = Mutex::new(BTreeSet::new());
    let stop = || cancel::requested().is_some();
    let pools = work.pools(opts.jobs, opts.max_jobs);
    let walked = walker::walk_pools(&work.tasks, &pools, opts.fail_fast, &stop, |i| {
        let (ctid, part) = work.parts[i];
        if work.starts_node(i) {
            if let Ok(mut m) = node_started.lock() {
                m.insert(ctid, Instant::now());
            }
            let entry = exec.entries[&ctid];
            (exec.emit)(Event::NodeStarted {
                ctid,
                name: entry.name.clone(),
                action: entry.action.name().to_string(),
            });
        }
        let r = match part {
            Part::Provision => exec.provision(ctid),
            Part::Relocate => exec.relocate(ctid),
            Part::Finish => exec.finish(ctid),
        };
        match r {
            Ok(()) => {
                if part == Part::Finish {
                    finished(ctid, NodeOutcome::Built, None);
                }
                true
            }
            Err(e) => {
                // A node whose work the run's interruption cut short is cancelled, not
                // failed: nothing is wrong with it.
                let interrupted = cancel::requested().is_some();
                let verb = if interrupted { "cancelled" } else { "failed" };
                // The node's log ends with why it stopped, whatever step it was at.
                log::NodeLog::open(&exec.log_path(ctid)).line(&format!(
                    "# {verb} at {}: {}",
                    e.step.name(),
                    e.message
                ));
                if interrupted {
                    if let Ok(mut c) = cancelled.lock() {
                        c.insert(ctid);
                    }
                } else {
                    let mut e = e;
                    // A node whose store template failed is built (its snapshot is
                    // taken): it is not put back; what the store step left is untrusted,
                    // made again by the next build.
                    let said = if e.step == events::Step::Store {
                        Some("the node itself is built; the next build makes its store template again (`phoenix gc` removes what this one left)".to_string())
                    } else {
                        exec.after_failure(ctid)
                    };
                    if let Some(said) = said {
                        e.message = format!("{}; {said}", e.message);
                    }
                    finished(ctid, NodeOutcome::Failed, Some(&e));
                    if let Ok(mut f) = failures.lock() {
                        f.insert(ctid, e);
                    }
                }
                false
            }
        }
    });
    let failures = failures.into_inner().unwrap_or_default();
    let cancelled = cancelled.into_inner().unwrap_or_default();
    // Work the interruption cut short, and what waited on it, is cancelled.
    let walked: Vec<Outcome> = walked
        .iter()
        .enumerate()
        .map(|(i, o)| match o {
            Outcome::Failed if cancelled.contains(&work.parts[i].0) => Outcome::Cancelled,
            Outcome::Blocked { by } if cancelled.contains(&work.parts[*by].0) => Outcome::Cancelled,
            other => other.clone(),
        })
        .collect();
    (work.parts.into_iter().zip(walked).collect(), failures)
}

/// Every node's outcome: from the walk for nodes that build (emitting the end of those
/// blocked or cancelled), from the plan for the rest (emitting theirs).
fn outcomes(
    exec: &Executor,
    plan: &Plan,
    walked: &[((Ctid, Part), Outcome)],
    failures: &BTreeMap<Ctid, StepError>,
) -> BTreeMap<Ctid, NodeOutcome> {
    let mut result: BTreeMap<Ctid, NodeOutcome> = BTreeMap::new();
    for ((ctid, _), o) in walked {
        let ctid = *ctid;
        let entry = exec.entries[&ctid];
        let out = match o {
            Outcome::Succeeded => NodeOutcome::Built,
            Outcome::Failed => NodeOutcome::Failed,
            Outcome::Blocked { by } => {
                let root = walked[*by].0 .0;
                if root != ctid && !result.contains_key(&ctid) {
                    let mut ev = finished_event(entry, NodeOutcome::Blocked);
                    if let Event::NodeFinished { blocked_by, .. } = &mut ev {
                        *blocked_by = Some(root_cause(root, failures, exec.fleet));
                    }
                    (exec.emit)(ev);
                }
                NodeOutcome::Blocked
            }
            Outcome::Cancelled => {
                // Once per node (its provisioning may have succeeded before).
                if !matches!(
                    result.get(&ctid),
                    Some(NodeOutcome::Cancelled | NodeOutcome::Failed)
                ) {
                    (exec.emit)(finished_event(entry, NodeOutcome::Cancelled));
                }
                NodeOutcome::Cancelled
            }
        };
        let slot = result.entry(ctid).or_insert(out);
        if out == NodeOutcome::Failed || (*slot == NodeOutcome::Built && out != NodeOutcome::Built)
        {
            *slot = out;
        }
    }
    for e in &plan.entries {
        if result.contains_key(&e.ctid) {
            continue;
        }
        let (outcome, by) = match &e.action {
            Action::Fresh { .. } => (NodeOutcome::Fresh, None),
            Action::Held { .. } => (NodeOutcome::Held, None),
            Action::Blocked { by } => (NodeOutcome::Blocked, Some(*by)),
            Action::Unmanaged { .. } => (NodeOutcome::Unmanaged, None),
            Action::Skipped { .. } => (NodeOutcome::Skipped, None),
            Action::Pinned(_) => (NodeOutcome::Pinned, None),
            _ => continue,
        };
        let mut ev = finished_event(e, outcome);
        if let Event::NodeFinished { blocked_by, .. } = &mut ev {
            *blocked_by = by;
        }
        (exec.emit)(ev);
        result.insert(e.ctid, outcome);
    }
    result
}

/// Records where each CT is after the run (a cluster only): where the plan put those
/// built, where they were for the rest. Written only when it changes, so a no-op build
/// writes nothing.
fn record_placements(
    state: &StateDir,
    plan: &Plan,
    inventory: &BTreeMap<Ctid, CtInfo>,
    outcomes: &BTreeMap<Ctid, NodeOutcome>,
    cluster: bool,
) {
    if !cluster {
        return;
    }
    let before = state.placements();
    let mut now: BTreeMap<Ctid, Option<String>> = BTreeMap::new();
    for e in &plan.entries {
        let node = match outcomes.get(&e.ctid) {
            Some(NodeOutcome::Built | NodeOutcome::Fresh) => e.node.clone(),
            _ => inventory.get(&e.ctid).and_then(|c| c.node.clone()),
        };
        // A CT moved outside phoenix keeps its record until something places it: that
        // is how the move stays reported.
        if e.moved_outside.is_some() {
            continue;
        }
        if let Some(n) = node {
            if before.get(&e.ctid) != Some(&n) {
                now.insert(e.ctid, Some(n));
            }
        }
    }
    if now.is_empty() {
        return;
    }
    if let Err(e) = state.record_placements(&now) {
        tracing::warn!(
            "cannot record where the CTs are in {}: {e}; a CT moved outside phoenix may go unreported",
            state.root.display()
        );
    }
}

fn exit_code(outcomes: &BTreeMap<Ctid, NodeOutcome>) -> i32 {
    let has = |o: NodeOutcome| outcomes.values().any(|&x| x == o);
    if has(NodeOutcome::Failed) || has(NodeOutcome::Unmanaged) || has(NodeOutcome::Cancelled) {
        exit::BUILD_FAILED
    } else if has(NodeOutcome::Held) {
        exit::HELD
    } else {
        exit::OK
    }
}

/// The failed node at the top of a blocked chain.
fn root_cause(by: Ctid, failures: &BTreeMap<Ctid, StepError>, fleet: &Fleet) -> Ctid {
    let mut cur = by;
    while !failures.contains_key(&cur) {
        match fleet.graph.parent_of(cur) {
            Some(p) => cur = p,
            None => return by,
        }
    }
    cur
}
