//! A build run: lock the host, read it once, plan, check the GPU driver, then walk the
//! nodes that need work through the [`steps`](crate::build::steps) on `-j N` workers, emitting
//! [`Event`]s. Returns the exit code (see [`crate::exit`]).

pub mod events;
pub mod steps;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::build::events::{Event, NodeOutcome, Step};
use crate::build::steps::{Executor, Retry, StepError};
use crate::engine::hash::{self, Hashed};
use crate::engine::plan::{self, Action, Consent, Plan};
use crate::engine::walker::{self, Outcome, Task};
use crate::exit;
use crate::fleet::config::{Ctid, Fleet};
use crate::host::{CreateSpec, CtInfo, Host, HostFacts, HostResult};
use crate::state::StateDir;

#[derive(Clone, Debug)]
pub struct BuildOptions {
    pub targets: Vec<Ctid>,
    pub jobs: usize,
    pub fail_fast: bool,
    pub consent: Consent,
    pub ready_timeout: Duration,
    pub hook_timeout: Duration,
}

/// A host wrapper that counts calls per verb (the summary reports them).
pub struct Counting<'a> {
    pub inner: &'a dyn Host,
    pub counts: Mutex<BTreeMap<String, u64>>,
}

impl<'a> Counting<'a> {
    pub fn new(inner: &'a dyn Host) -> Self {
        Counting {
            inner,
            counts: Mutex::new(BTreeMap::new()),
        }
    }
    fn count(&self, verb: &str) {
        if let Ok(mut c) = self.counts.lock() {
            *c.entry(verb.to_string()).or_insert(0) += 1;
        }
    }
    pub fn snapshot(&self) -> BTreeMap<String, u64> {
        self.counts.lock().map(|c| c.clone()).unwrap_or_default()
    }
}

impl Host for Counting<'_> {
    fn name(&self) -> &'static str {
        self.inner.name()
    }
    fn inventory(&self) -> HostResult<BTreeMap<Ctid, CtInfo>> {
        self.count("inventory");
        self.inner.inventory()
    }
    fn ct(&self, ctid: Ctid) -> HostResult<Option<CtInfo>> {
        self.count("config");
        self.inner.ct(ctid)
    }
    fn facts(&self) -> HostResult<HostFacts> {
        self.count("facts");
        self.inner.facts()
    }
    fn create(&self, ctid: Ctid, spec: &CreateSpec) -> HostResult<()> {
        self.count("create");
        self.inner.create(ctid, spec)
    }
    fn clone_ct(
        &self,
        source: Ctid,
        snapname: &str,
        target: Ctid,
        hostname: &str,
        storage: &str,
    ) -> HostResult<()> {
        self.count("clone");
        self.inner
            .clone_ct(source, snapname, target, hostname, storage)
    }
    fn set(&self, ctid: Ctid, options: &[(String, String)]) -> HostResult<()> {
        self.count("set");
        self.inner.set(ctid, options)
    }
    fn resize(&self, ctid: Ctid, disk: &str, size_gb: u64) -> HostResult<()> {
        self.count("resize");
        self.inner.resize(ctid, disk, size_gb)
    }
    fn set_raw_lxc(&self, ctid: Ctid, prefixes: &[&str], lines: &[String]) -> HostResult<()> {
        self.count("set_raw_lxc");
        self.inner.set_raw_lxc(ctid, prefixes, lines)
    }
    fn start(&self, ctid: Ctid) -> HostResult<()> {
        self.count("start");
        self.inner.start(ctid)
    }
    fn shutdown(&self, ctid: Ctid, timeout_s: u64) -> HostResult<()> {
        self.count("shutdown");
        self.inner.shutdown(ctid, timeout_s)
    }
    fn exec(&self, ctid: Ctid, argv: &[String], log: &mut dyn std::io::Write) -> HostResult<i32> {
        self.count("exec");
        self.inner.exec(ctid, argv, log)
    }
    fn push(&self, ctid: Ctid, local: &std::path::Path, dest: &str, perms: u32) -> HostResult<()> {
        self.count("push");
        self.inner.push(ctid, local, dest, perms)
    }
    fn snapshot(&self, ctid: Ctid, name: &str, description: &str) -> HostResult<()> {
        self.count("snapshot");
        self.inner.snapshot(ctid, name, description)
    }
    fn delete_snapshot(&self, ctid: Ctid, name: &str) -> HostResult<()> {
        self.count("delsnapshot");
        self.inner.delete_snapshot(ctid, name)
    }
    fn destroy(&self, ctid: Ctid) -> HostResult<()> {
        self.count("destroy");
        self.inner.destroy(ctid)
    }
    fn unlock(&self, ctid: Ctid) -> HostResult<()> {
        self.count("unlock");
        self.inner.unlock(ctid)
    }
    fn pct_dir(&self) -> Option<std::path::PathBuf> {
        self.inner.pct_dir()
    }
    fn hook_env(&self) -> Vec<(String, String)> {
        self.inner.hook_env()
    }
    fn estimate_ms(&self, verb: &str) -> u64 {
        self.inner.estimate_ms(verb)
    }
}

/// Locks that phoenix's own tasks set (pct-spec §5), and so may find left over.
const STALE_LOCKS: &[&str] = &["create", "disk", "snapshot", "snapshot-delete"];

/// The fleet's hashes, the host as read, and the plan decided from both.
pub struct Planned {
    pub hashes: BTreeMap<Ctid, Hashed>,
    pub inventory: BTreeMap<Ctid, CtInfo>,
    pub plan: Plan,
}

/// Reads the host and decides the plan (the `plan` command, and the first half of `build`).
pub fn make_plan(
    fleet: &Fleet,
    host: &dyn Host,
    consent: &Consent,
    targets: &[Ctid],
) -> HostResult<Planned> {
    let hashes = hash::hash_fleet(fleet);
    let inventory = host.inventory()?;
    let targets: Option<BTreeSet<Ctid>> =
        (!targets.is_empty()).then(|| targets.iter().copied().collect());
    let plan = plan::plan(fleet, &hashes, &inventory, consent, targets.as_ref());
    Ok(Planned {
        hashes,
        inventory,
        plan,
    })
}

/// Why GPU nodes cannot be built here, if they cannot (DESIGN §5 step 4).
pub fn gpu_blocker(fleet: &Fleet, facts: &HostFacts) -> Option<String> {
    let want = fleet.nvidia.driver_version.as_deref();
    match (&facts.nvidia_driver, want) {
        (_, None) => Some(format!(
            "GPU nodes need nvidia_driver_version in {}",
            fleet.lxc_path().display()
        )),
        (None, Some(w)) => Some(format!(
            "the host has no NVIDIA kernel driver (/proc/driver/nvidia/version is missing), but GPU nodes need {w}: the GPU subtree is not built"
        )),
        (Some(have), Some(w)) if have != w => Some(format!(
            "the host's NVIDIA kernel driver is {have} (/proc/driver/nvidia/version) but nvidia_driver_version is {w}: the userspace driver must equal the kernel's, so the GPU subtree is not built. Set nvidia_driver_version (and the runfile URL) to {have}, or upgrade the host driver"
        )),
        _ => None,
    }
}

/// Result of a build, for the caller's summary.
pub struct RunResult {
    pub exit_code: i32,
    pub plan: Plan,
    pub outcomes: BTreeMap<Ctid, NodeOutcome>,
}

pub fn run(
    fleet: &Fleet,
    host: &dyn Host,
    state: &StateDir,
    opts: &BuildOptions,
    run_id: &str,
    emit: &(dyn Fn(Event) + Sync),
) -> Result<RunResult, String> {
    let started = Instant::now();
    let counting = Counting::new(host);
    let host: &dyn Host = &counting;
    let read = || {
        make_plan(fleet, host, &opts.consent, &opts.targets)
            .map_err(|e| format!("cannot read the host: {e}"))
    };
    let mut planned = read()?;
    // phoenix holds the host lock, so a lock on one of its own CTs was left by a run that
    // was killed mid-task (its task died with it). Remove it, then read the host again.
    let stale: Vec<(Ctid, String)> = planned
        .inventory
        .values()
        .filter(|ct| ct.is_managed() && fleet.node(ct.ctid).is_some())
        .filter_map(|ct| {
            ct.lock
                .clone()
                .filter(|l| STALE_LOCKS.contains(&l.as_str()))
                .map(|l| (ct.ctid, l))
        })
        .collect();
    if !stale.is_empty() {
        for (ctid, lock) in stale {
            host.unlock(ctid)
                .map_err(|e| format!("cannot remove the stale lock '{lock}' of CT {ctid}: {e}"))?;
            emit(Event::StaleLock { ctid, lock });
        }
        planned = read()?;
    }
    let Planned {
        hashes,
        inventory,
        plan,
    } = planned;
    let building: Vec<Ctid> = plan
        .entries
        .iter()
        .filter(|e| e.action.builds())
        .map(|e| e.ctid)
        .collect();
    let needs_gpu = building.iter().any(|c| fleet.nodes[c].has_gpu());
    let facts = if needs_gpu {
        host.facts()
            .map_err(|e| format!("cannot read host facts: {e}"))?
    } else {
        HostFacts::default()
    };
    let gpu_blocker = if needs_gpu {
        gpu_blocker(fleet, &facts)
    } else {
        None
    };

    emit(Event::RunStarted {
        run: run_id.to_string(),
        backend: host.name().to_string(),
        jobs: opts.jobs,
        total: building.len(),
    });

    let exec = Executor {
        fleet,
        hashes: &hashes,
        entries: plan.entries.iter().map(|e| (e.ctid, e)).collect(),
        inventory: &inventory,
        host,
        facts: &facts,
        gpu_blocker,
        state,
        run_id,
        emit,
        retry: Retry::default(),
        ready_timeout: opts.ready_timeout,
        hook_timeout: opts.hook_timeout,
    };

    // Two tasks per provisioned node (provision, finish), one for the rest.
    #[derive(Clone, Copy)]
    enum Part {
        Provision,
        Finish,
    }
    let mut tasks: Vec<Task> = Vec::new();
    let mut parts: Vec<(Ctid, Part)> = Vec::new();
    let mut finish_task: BTreeMap<Ctid, usize> = BTreeMap::new();
    let est = |v: &str| host.estimate_ms(v);
    for &ctid in &building {
        let entry = exec.entries[&ctid];
        let node = &fleet.nodes[&ctid];
        let parent_dep: Vec<usize> = entry
            .parent
            .and_then(|p| {
                exec.entries
                    .get(&p)
                    .filter(|e| e.action.snapshots())
                    .map(|_| p)
            })
            .and_then(|p| finish_task.get(&p).copied())
            .into_iter()
            .collect();
        let provisioned = matches!(
            entry.action,
            Action::Create
                | Action::Rebuild {
                    mode: plan::RebuildMode::Replace,
                    ..
                }
        );
        // The host calls of `Executor::finish` (see steps.rs), for priorities only.
        let mut finish_cost = 2 * est("config")
            + est("set")
            + est("start")
            + est("exec")
            + est("shutdown")
            + est("snapshot");
        if node.has_gpu() {
            finish_cost += est("set_raw_lxc") + 2 * est("exec") + est("push");
        }
        if fleet.hooks.node_hooks.contains_key(&ctid) {
            finish_cost += est("exec");
        }
        if node.nesting() {
            finish_cost += est("exec") + est("push");
        }
        if !node.is_template() {
            finish_cost += est("start");
        }
        let finish_deps = if provisioned {
            let (verb, resource) = match entry.parent {
                Some(p) => ("clone", Some(format!("clone-source:{p}"))),
                None => ("create", None),
            };
            tasks.push(Task {
                deps: parent_dep,
                resource,
                cost: est(verb),
            });
            parts.push((ctid, Part::Provision));
            vec![tasks.len() - 1]
        } else {
            parent_dep
        };
        tasks.push(Task {
            deps: finish_deps,
            resource: None,
            cost: finish_cost,
        });
        parts.push((ctid, Part::Finish));
        finish_task.insert(ctid, tasks.len() - 1);
    }

    let node_started: Mutex<BTreeMap<Ctid, Instant>> = Mutex::new(BTreeMap::new());
    let failures: Mutex<BTreeMap<Ctid, StepError>> = Mutex::new(BTreeMap::new());
    let finished = |ctid: Ctid, outcome: NodeOutcome, err: Option<&StepError>| {
        let entry = exec.entries[&ctid];
        let elapsed = node_started
            .lock()
            .ok()
            .and_then(|m| m.get(&ctid).map(|t| t.elapsed().as_millis() as u64))
            .unwrap_or(0);
        emit(Event::NodeFinished {
            ctid,
            name: entry.name.clone(),
            action: entry.action.name().to_string(),
            outcome,
            elapsed_ms: elapsed,
            failed_step: err.map(|e| e.step),
            error: err.map(|e| e.message.clone()),
            blocked_by: None,
            log: Some(exec.log_path(ctid).display().to_string()),
        });
    };
    let outcomes = walker::walk(&tasks, opts.jobs, opts.fail_fast, |i| {
        let (ctid, part) = parts[i];
        let first = matches!(part, Part::Provision)
            || !matches!(parts.get(i.wrapping_sub(1)), Some((c, Part::Provision)) if *c == ctid);
        if first {
            if let Ok(mut m) = node_started.lock() {
                m.insert(ctid, Instant::now());
            }
            let entry = exec.entries[&ctid];
            emit(Event::NodeStarted {
                ctid,
                name: entry.name.clone(),
                action: entry.action.name().to_string(),
            });
        }
        let r = match part {
            Part::Provision => exec.provision(ctid),
            Part::Finish => exec.finish(ctid),
        };
        match r {
            Ok(()) => {
                if matches!(part, Part::Finish) {
                    finished(ctid, NodeOutcome::Built, None);
                }
                true
            }
            Err(e) => {
                finished(ctid, NodeOutcome::Failed, Some(&e));
                if let Ok(mut f) = failures.lock() {
                    f.insert(ctid, e);
                }
                false
            }
        }
    });

    // Outcomes per node: from the walker for built nodes, from the plan for the rest.
    let mut result: BTreeMap<Ctid, NodeOutcome> = BTreeMap::new();
    let failures = failures.into_inner().unwrap_or_default();
    for (i, o) in outcomes.iter().enumerate() {
        let (ctid, _) = parts[i];
        let out = match o {
            Outcome::Succeeded => NodeOutcome::Built,
            Outcome::Failed => NodeOutcome::Failed,
            Outcome::Blocked { by } => {
                let root = parts[*by].0;
                if root != ctid && !result.contains_key(&ctid) {
                    let entry = exec.entries[&ctid];
                    emit(Event::NodeFinished {
                        ctid,
                        name: entry.name.clone(),
                        action: entry.action.name().to_string(),
                        outcome: NodeOutcome::Blocked,
                        elapsed_ms: 0,
                        failed_step: None,
                        error: None,
                        blocked_by: Some(root_cause(root, &failures, &exec)),
                        log: None,
                    });
                }
                NodeOutcome::Blocked
            }
            Outcome::Cancelled => {
                if !result.contains_key(&ctid) {
                    let entry = exec.entries[&ctid];
                    emit(Event::NodeFinished {
                        ctid,
                        name: entry.name.clone(),
                        action: entry.action.name().to_string(),
                        outcome: NodeOutcome::Cancelled,
                        elapsed_ms: 0,
                        failed_step: None,
                        error: None,
                        blocked_by: None,
                        log: None,
                    });
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
            Action::Fresh => (NodeOutcome::Fresh, None),
            Action::Held { .. } => (NodeOutcome::Held, None),
            Action::Blocked { by } => (NodeOutcome::Blocked, Some(*by)),
            Action::Unmanaged => (NodeOutcome::Unmanaged, None),
            _ => continue,
        };
        emit(Event::NodeFinished {
            ctid: e.ctid,
            name: e.name.clone(),
            action: e.action.name().to_string(),
            outcome,
            elapsed_ms: 0,
            failed_step: None,
            error: (outcome == NodeOutcome::Unmanaged || outcome == NodeOutcome::Held)
                .then(|| e.reason.clone()),
            blocked_by: by,
            log: None,
        });
        result.insert(e.ctid, outcome);
    }

    let has = |o: NodeOutcome| result.values().any(|&x| x == o);
    let exit_code =
        if has(NodeOutcome::Failed) || has(NodeOutcome::Unmanaged) || has(NodeOutcome::Cancelled) {
            exit::BUILD_FAILED
        } else if has(NodeOutcome::Held) {
            exit::HELD
        } else {
            exit::OK
        };
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for o in result.values() {
        let name = serde_json::to_value(o)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        *counts.entry(name).or_insert(0) += 1;
    }
    emit(Event::RunFinished {
        elapsed_ms: started.elapsed().as_millis() as u64,
        counts,
        host_calls: counting.snapshot(),
        exit_code,
    });
    let _ = Step::Preflight;
    Ok(RunResult {
        exit_code,
        plan,
        outcomes: result,
    })
}

/// The failed node at the top of a blocked chain.
fn root_cause(by: Ctid, failures: &BTreeMap<Ctid, StepError>, exec: &Executor) -> Ctid {
    let mut cur = by;
    while !failures.contains_key(&cur) {
        match exec.fleet.graph.parent_of(cur) {
            Some(p) => cur = p,
            None => return by,
        }
    }
    cur
}
