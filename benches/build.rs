//! Benchmarks of the build engine on the `sim` backend (DESIGN §6–7).
//!
//! 1. A generated fleet (200 nodes by default: three base templates, template chains up to
//!    five levels deep, wide fans of standard containers off seven templates, the widest
//!    with 41 clones) is built from scratch at `-j 1, 4, 16` with fixed per-verb latencies.
//!    Each makespan is compared with a lower bound, max(longest chain, total work / N,
//!    busiest clone source), computed from per-node durations two ways: the host calls
//!    each node made in the `-j 1` run (`sim/calls.log`) times each verb's latency, and the
//!    `-j 1` run's wall time cut at each node's events (which adds the sim's own cost per
//!    call). How the busiest source's clones took their turns is reported too.
//! 2. A no-op rebuild (a second build on the same state dir) at 200 and 50 nodes: host
//!    calls (from `calls.log` and the run's `host_calls`) and wall time.
//!
//! Run: `cargo bench --bench build` (two to three minutes), or the smoke run
//! `cargo bench --bench build -- --quick` (or `PHOENIX_BENCH_QUICK=1`): 50 nodes with
//! latencies ten times smaller, a few seconds; `cargo test --benches` (no `--bench`
//! argument) runs that too. Knobs: `PHOENIX_BENCH_NODES`,
//! `PHOENIX_BENCH_JOBS=1,4,8,16`, `PHOENIX_BENCH_LATENCY`, `PHOENIX_BENCH_KEEP=1` (keep the
//! temporary directory). The makespan target
//! (within 10 % of the bound) is reported, not enforced: the process fails only when a
//! build fails, when a no-op rebuild mutates the host, or when its reads grow with the
//! node count.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use phoenix::build::events::{Event, NodeOutcome, Step};
use phoenix::build::{self, BuildOptions};
use phoenix::engine::plan::Consent;
use phoenix::exit;
use phoenix::fleet::config::{self, Ctid, Paths};
use phoenix::fleet::Fleet;
use phoenix::host::sim::SimHost;
use phoenix::state::StateDir;
use serde_json::{json, Value};

/// Milliseconds per verb, as `PHOENIX_SIM_LATENCY` takes them: clone dominates.
const LATENCY: &str = "*=5,clone=200,create=300,exec=20,start=30,shutdown=30,snapshot=20,push=10";
/// The same, ten times faster, for the smoke run.
const LATENCY_QUICK: &str = "*=1,clone=20,create=30,exec=2,start=3,shutdown=3,snapshot=2,push=1";
const JOBS: [usize; 3] = [1, 4, 16];
/// Verbs of the provisioning task (the one that holds the clone source's lock).
const PROVISION_VERBS: [&str; 3] = ["clone", "create", "destroy"];

// ---------------------------------------------------------------------------------------
// The fleet

/// A template of the generated fleet: ctid, parent, name, features, GPU, privilege.
struct Tpl {
    ctid: Ctid,
    parent: Option<Ctid>,
    name: &'static str,
    features: &'static str,
    gpu: bool,
    unprivileged: bool,
    disk_gb: u64,
}

/// Three base templates and chains of up to five templates.
fn templates() -> Vec<Tpl> {
    let t = |ctid, parent, name, features, gpu, unprivileged, disk_gb| Tpl {
        ctid,
        parent,
        name,
        features,
        gpu,
        unprivileged,
        disk_gb,
    };
    vec![
        // ubuntu → docker → docker-gpu → vllm → vllm-ml (five levels)
        t(900, None, "tpl-ubuntu", "", false, true, 16),
        t(
            901,
            Some(900),
            "tpl-docker",
            "nesting=1,keyctl=1",
            false,
            true,
            24,
        ),
        t(
            902,
            Some(901),
            "tpl-docker-gpu",
            "nesting=1,keyctl=1",
            true,
            true,
            32,
        ),
        t(
            903,
            Some(902),
            "tpl-vllm",
            "nesting=1,keyctl=1",
            true,
            true,
            64,
        ),
        t(
            904,
            Some(903),
            "tpl-vllm-ml",
            "nesting=1,keyctl=1",
            true,
            true,
            96,
        ),
        // debian (privileged) → build → ci → ci-heavy (four levels)
        t(910, None, "tpl-debian", "", false, false, 16),
        t(911, Some(910), "tpl-build", "", false, false, 32),
        t(912, Some(911), "tpl-ci", "nesting=1", false, false, 48),
        t(
            913,
            Some(912),
            "tpl-ci-heavy",
            "nesting=1",
            false,
            false,
            48,
        ),
        // alpine → web (two levels)
        t(920, None, "tpl-alpine", "", false, true, 8),
        t(921, Some(920), "tpl-web", "", false, true, 8),
    ]
}

/// Fans of standard containers: (source template, weight). At 200 nodes the weights are
/// the fan sizes; the busiest source (901) has 40 clones.
const FANS: [(Ctid, usize); 7] = [
    (901, 40),
    (913, 35),
    (900, 30),
    (911, 25),
    (921, 24),
    (902, 20),
    (904, 15),
];

/// The two config documents of a fleet of `n` nodes (n ≥ 18).
fn fleet_json(n: usize) -> (Value, Value) {
    let tpls = templates();
    assert!(
        n >= tpls.len() + FANS.len(),
        "a fleet needs at least 18 nodes"
    );
    let leaves = n - tpls.len();
    let total: usize = FANS.iter().map(|f| f.1).sum();
    let mut sizes: Vec<usize> = FANS.iter().map(|f| (f.1 * leaves / total).max(1)).collect();
    let mut i = 0;
    while sizes.iter().sum::<usize>() < leaves {
        let k = i % sizes.len();
        sizes[k] += 1;
        i += 1;
    }
    while sizes.iter().sum::<usize>() > leaves {
        let j = sizes
            .iter()
            .enumerate()
            .max_by_key(|(_, s)| **s)
            .map_or(0, |(j, _)| j);
        sizes[j] -= 1;
    }

    let mut blocks = serde_json::Map::new();
    let mut serial = 0u32;
    let mut block = |ctid: Ctid,
                     name: String,
                     parent: Option<Ctid>,
                     features: &str,
                     gpu: bool,
                     unprivileged: bool,
                     disk_gb: u64,
                     template: bool| {
        serial += 1;
        let mut b = json!({
            "name": name,
            "memory_mb": if gpu { 16384 } else { 2048 },
            "cores": if gpu { 8 } else { 2 },
            "storage_pool": "local-zfs",
            "storage_size_gb": disk_gb,
            "network_config": {
                "name": "eth0",
                "bridge": "vmbr0",
                "ip": format!("10.1.{}.{}/16", serial / 250, serial % 250 + 1),
                "gw": "10.1.0.1"
            },
            "features": features,
            "mac_address": format!("52:54:00:{:02X}:{:02X}:{:02X}", serial >> 16, (serial >> 8) & 0xff, serial & 0xff),
            "gpu_assignment": if gpu { "0" } else { "none" },
            "portainer_role": "none",
            "unprivileged": unprivileged,
            "is_template": template,
        });
        let o = b.as_object_mut().expect("object");
        match parent {
            None => {
                o.insert(
                    "template".into(),
                    json!("local:vztmpl/ubuntu-24.04-standard_24.04-2_amd64.tar.zst"),
                );
            }
            Some(p) => {
                o.insert("clone_from_template_ctid".into(), json!(p.to_string()));
            }
        }
        if template {
            o.insert(
                "template_snapshot_name".into(),
                json!(format!("{}-snap", name.trim_start_matches("tpl-"))),
            );
        }
        blocks.insert(ctid.to_string(), b);
    };
    for t in &tpls {
        block(
            t.ctid,
            t.name.to_string(),
            t.parent,
            t.features,
            t.gpu,
            t.unprivileged,
            t.disk_gb,
            true,
        );
    }
    let mut ctid: Ctid = 1000;
    for ((source, _), size) in FANS.iter().zip(&sizes) {
        let t = tpls.iter().find(|t| t.ctid == *source).expect("fan source");
        for k in 0..*size {
            // Every third container grows its disk (a `pct resize`).
            let disk = t.disk_gb + if k % 3 == 0 { 8 } else { 0 };
            block(
                ctid,
                format!("{}-{k}", t.name.trim_start_matches("tpl-")),
                Some(t.ctid),
                t.features,
                t.gpu,
                t.unprivileged,
                disk,
                false,
            );
            ctid += 1;
        }
    }
    let lxc = json!({
        "nvidia_driver_version": "580.76.05",
        "nvidia_repo_url": "https://developer.download.nvidia.com/compute/cuda/repos/ubuntu2404/x86_64/",
        "nvidia_runfile_url": "https://us.download.nvidia.com/XFree86/Linux-x86_64/580.76.05/NVIDIA-Linux-x86_64-580.76.05.run",
        "lxc_configs": blocks,
    });
    let hv = json!({
        "version": "0.1.0",
        "author": "phoenix build benchmark",
        "core_paths": {
            "lxc_config_file": "/usr/local/phoenix_hypervisor/etc/phoenix_lxc_configs.json",
            "hf_token_file": "/usr/local/phoenix_hypervisor/etc/phoenix_hf_token.conf"
        },
        "network": {
            "external_registry_url": "https://registry-1.docker.io",
            "portainer_server_ip": "10.0.0.99",
            "portainer_server_port": 9443,
            "portainer_agent_port": 9001
        },
        "docker": {
            "portainer_server_image": "portainer/portainer-ce:2.33.1-lts",
            "portainer_agent_image": "portainer/agent:2.33.1-lts"
        },
        "proxmox_defaults": { "zfs_lxc_pool": "rpool/data" },
        "behavior": { "rollback_on_failure": false, "debug_mode": false }
    });
    (lxc, hv)
}

/// Writes the fleet under `dir` (config dir and an empty hooks dir) and loads it.
fn write_fleet(dir: &Path, n: usize) -> Fleet {
    let config_dir = dir.join("etc");
    let hooks_dir = dir.join("hooks");
    fs::create_dir_all(&config_dir).expect("config dir");
    fs::create_dir_all(&hooks_dir).expect("hooks dir");
    let (lxc, hv) = fleet_json(n);
    let pretty = |v: &Value| serde_json::to_string_pretty(v).expect("json");
    fs::write(config_dir.join(config::LXC_FILE), pretty(&lxc)).expect("write lxc");
    fs::write(config_dir.join(config::HYPERVISOR_FILE), pretty(&hv)).expect("write hv");
    let fleet = phoenix::fleet::load(&Paths {
        config_dir,
        hooks_dir,
    })
    .unwrap_or_else(|p| panic!("the generated fleet is invalid:\n{p:?}"));
    assert_eq!(fleet.nodes.len(), n);
    fleet
}

// ---------------------------------------------------------------------------------------
// Runs

/// A point of a run's timeline: when an event was emitted, for which node, what it was.
#[derive(Clone, Copy)]
enum Mark {
    Run,
    NodeStarted,
    Step(Step),
    NodeFinished,
}

struct RunStats {
    wall: Duration,
    exit_code: i32,
    host_calls: BTreeMap<String, u64>,
    built: usize,
    fresh: usize,
    /// Transient host errors retried (`CT is locked` …).
    retries: usize,
    /// `CT step: error` of failed nodes.
    failures: Vec<String>,
    /// Every event, microseconds after the call to `build::run`.
    timeline: Vec<(u64, Option<Ctid>, Mark)>,
}

/// One `build::run` on the sim host under `state_dir`; latencies are set before it opens.
fn build_once(fleet: &Fleet, state_dir: &Path, jobs: usize, latency: &str) -> RunStats {
    std::env::set_var("PHOENIX_SIM_LATENCY", latency);
    std::env::remove_var("PHOENIX_SIM_FAULTS");
    std::env::remove_var("PHOENIX_SIM_NVIDIA_VERSION");
    let state = StateDir::open(state_dir).expect("state dir");
    let host = SimHost::for_state_dir(state_dir).expect("sim host");
    let opts = BuildOptions {
        targets: Vec::new(),
        jobs,
        fail_fast: false,
        consent: Consent::default(),
        ready_timeout: Duration::from_secs(30),
        hook_timeout: Duration::from_secs(60),
    };
    let calls: Mutex<BTreeMap<String, u64>> = Mutex::new(BTreeMap::new());
    let failures: Mutex<Vec<String>> = Mutex::new(Vec::new());
    let timeline: Mutex<Vec<(u64, Option<Ctid>, Mark)>> = Mutex::new(Vec::new());
    let retries = AtomicUsize::new(0);
    let t = Instant::now();
    let emit = |e: Event| {
        let at = t.elapsed().as_micros() as u64;
        let mark = match &e {
            Event::RunStarted { .. } | Event::RunFinished { .. } => Some((None, Mark::Run)),
            Event::NodeStarted { ctid, .. } => Some((Some(*ctid), Mark::NodeStarted)),
            Event::StepStarted { ctid, step } => Some((Some(*ctid), Mark::Step(*step))),
            Event::NodeFinished {
                ctid,
                outcome: NodeOutcome::Built | NodeOutcome::Failed,
                ..
            } => Some((Some(*ctid), Mark::NodeFinished)),
            _ => None,
        };
        if let Some((ctid, mark)) = mark {
            timeline.lock().expect("timeline").push((at, ctid, mark));
        }
        match e {
            Event::RunFinished { host_calls, .. } => *calls.lock().expect("calls") = host_calls,
            Event::Retry { .. } => {
                retries.fetch_add(1, Ordering::Relaxed);
            }
            Event::NodeFinished {
                ctid,
                outcome: NodeOutcome::Failed,
                failed_step,
                error,
                ..
            } => failures.lock().expect("failures").push(format!(
                "CT {ctid} {}: {}",
                failed_step.map_or("?", |s| s.name()),
                error.unwrap_or_default()
            )),
            _ => {}
        }
    };
    let r = build::run(
        fleet,
        &host,
        &state,
        &opts,
        &format!("bench-j{jobs}"),
        &emit,
    )
    .unwrap_or_else(|e| panic!("build -j{jobs} could not run: {e}"));
    let wall = t.elapsed();
    let mut timeline = timeline.into_inner().expect("timeline");
    timeline.push((wall.as_micros() as u64, None, Mark::Run));
    let count = |o: NodeOutcome| r.outcomes.values().filter(|&&x| x == o).count();
    RunStats {
        wall,
        exit_code: r.exit_code,
        host_calls: calls.into_inner().expect("calls"),
        built: count(NodeOutcome::Built),
        fresh: count(NodeOutcome::Fresh),
        retries: retries.into_inner(),
        failures: failures.into_inner().expect("failures"),
        timeline,
    }
}

/// One line of `sim/calls.log`.
struct Call {
    verb: String,
    ctid: Option<Ctid>,
    mutating: bool,
}

fn read_calls(state_dir: &Path) -> Vec<Call> {
    let text = fs::read_to_string(state_dir.join("sim").join("calls.log")).unwrap_or_default();
    text.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .map(|v| Call {
            verb: v["verb"].as_str().unwrap_or("").to_string(),
            ctid: v["ctid"].as_u64().map(|c| c as Ctid),
            mutating: v["mutating"].as_bool().unwrap_or(false),
        })
        .collect()
}

fn parse_latency(text: &str) -> BTreeMap<String, u64> {
    text.split(',')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().parse().expect("latency")))
        .collect()
}

/// Microseconds a verb sleeps in the sim.
fn latency_of(lat: &BTreeMap<String, u64>, verb: &str) -> u64 {
    1000 * lat.get(verb).or_else(|| lat.get("*")).copied().unwrap_or(0)
}

// ---------------------------------------------------------------------------------------
// Models of what each node costs (from the -j1 run), and the lower bound

/// What each node costs, in microseconds, split like the engine's two tasks per node.
#[derive(Default)]
struct Model {
    /// Serial work outside any node (the plan's inventory and facts, the run's summary).
    preamble: u64,
    /// The provisioning task (clone/create: the part that holds the clone source's lock).
    provision: BTreeMap<Ctid, u64>,
    /// The rest (settings … snapshot, restart).
    finish: BTreeMap<Ctid, u64>,
}

/// The latency model: every call of the sequential (-j1) run, attributed to its node,
/// times its verb's latency. Calls without a CTID (`inventory`: the engine re-reads the
/// host inside a node's steps) go to the next call that names one; those before the first
/// such call are the run's preamble.
fn latency_model(calls: &[Call], lat: &BTreeMap<String, u64>) -> Model {
    let mut m = Model::default();
    let mut pending: Vec<&Call> = Vec::new();
    let mut seen_node = false;
    for c in calls {
        let Some(ctid) = c.ctid else {
            pending.push(c);
            continue;
        };
        let floating: u64 = pending.drain(..).map(|p| latency_of(lat, &p.verb)).sum();
        if seen_node {
            *m.finish.entry(ctid).or_insert(0) += floating;
        } else {
            m.preamble += floating;
            seen_node = true;
        }
        let part = if PROVISION_VERBS.contains(&c.verb.as_str()) {
            &mut m.provision
        } else {
            &mut m.finish
        };
        *part.entry(ctid).or_insert(0) += latency_of(lat, &c.verb);
    }
    m.preamble += pending
        .iter()
        .map(|p| latency_of(lat, &p.verb))
        .sum::<u64>();
    m
}

/// The measured model: the wall time of the sequential (-j1) run, cut at its events. The
/// time from one event to the next belongs to the node of the first (its provisioning
/// until the node's `settings` step starts, its finish after); the time before the first
/// node and after the last is the preamble. This includes what the latency model leaves
/// out: the sim's own cost per call, the engine's between calls.
fn measured_model(timeline: &[(u64, Option<Ctid>, Mark)]) -> Model {
    let mut m = Model::default();
    let mut finishing: BTreeMap<Ctid, bool> = BTreeMap::new();
    let mut prev: (u64, Option<Ctid>) = (0, None);
    for &(at, ctid, mark) in timeline {
        let span = at - prev.0;
        match prev.1 {
            None => m.preamble += span,
            Some(c) => {
                let part = if finishing.get(&c).copied().unwrap_or(false) {
                    &mut m.finish
                } else {
                    &mut m.provision
                };
                *part.entry(c).or_insert(0) += span;
            }
        }
        if let (Some(c), Mark::Step(step)) = (ctid, mark) {
            if !matches!(
                step,
                Step::Preflight | Step::Destroy | Step::Create | Step::Clone
            ) {
                finishing.insert(c, true);
            }
        }
        prev = (
            at,
            match mark {
                Mark::Run => None,
                _ => ctid,
            },
        );
    }
    m
}

struct Bound {
    preamble: u64,
    chain: u64,
    chain_path: Vec<Ctid>,
    work: u64,
    /// The busiest clone source: its CTID, its clones, their provisioning back to back,
    /// and that refined: the source's own chain + the clones + the shortest tail after.
    source: (Ctid, usize, u64, u64),
}

impl Bound {
    fn at(&self, jobs: usize) -> u64 {
        let per_worker = self.work.div_ceil(jobs as u64);
        self.preamble + self.chain.max(per_worker).max(self.source.3)
    }
    fn limiting(&self, jobs: usize) -> &'static str {
        let per_worker = self.work.div_ceil(jobs as u64);
        if self.chain >= self.source.3 && self.chain >= per_worker {
            "chain"
        } else if self.source.3 >= per_worker {
            "busiest source"
        } else {
            "work/N"
        }
    }
}

/// bound(N) = preamble + max(longest chain, total work / N, busiest clone source).
fn bound(fleet: &Fleet, m: &Model) -> Bound {
    let prov = |c: Ctid| m.provision.get(&c).copied().unwrap_or(0);
    let cost = |c: Ctid| prov(c) + m.finish.get(&c).copied().unwrap_or(0);
    let mut order: Vec<Ctid> = fleet.nodes.keys().copied().collect();
    order.sort_by_key(|&c| fleet.graph.ancestry(c).len());
    // The longest chain from a root to the end of each node (when its clones may start)…
    let mut head: BTreeMap<Ctid, u64> = BTreeMap::new();
    for &c in &order {
        let before = fleet.graph.parent_of(c).map_or(0, |p| head[&p]);
        head.insert(c, before + cost(c));
    }
    // … and from the start of each node to the end of its subtree.
    let mut tail: BTreeMap<Ctid, u64> = BTreeMap::new();
    for &c in order.iter().rev() {
        let below = fleet
            .graph
            .children_of(c)
            .iter()
            .map(|k| tail[k])
            .max()
            .unwrap_or(0);
        tail.insert(c, cost(c) + below);
    }
    let (&end, &chain) = head
        .iter()
        .max_by_key(|(c, t)| (**t, std::cmp::Reverse(**c)))
        .expect("nodes");
    let work: u64 = fleet.nodes.keys().map(|&c| cost(c)).sum();
    let mut source = (0, 0, 0, 0);
    for &s in fleet.nodes.keys() {
        let kids = fleet.graph.children_of(s);
        if kids.is_empty() {
            continue;
        }
        let clones: u64 = kids.iter().map(|&k| prov(k)).sum();
        let shortest_tail = kids.iter().map(|&k| tail[&k] - prov(k)).min().unwrap_or(0);
        let refined = head[&s] + clones + shortest_tail;
        if refined > source.3 {
            source = (s, kids.len(), clones, refined);
        }
    }
    Bound {
        preamble: m.preamble,
        chain,
        chain_path: fleet.graph.ancestry(end),
        work,
        source,
    }
}

/// How the clones of `source` took their turns in a run: the delay from the source being
/// built to its first clone, the median time between consecutive clone starts, and the
/// time the source sat unlocked beyond that median between clones (all microseconds).
fn turns(fleet: &Fleet, timeline: &[(u64, Option<Ctid>, Mark)], source: Ctid) -> (u64, u64, u64) {
    let kids = fleet.graph.children_of(source);
    let built = timeline
        .iter()
        .find(|(_, c, m)| *c == Some(source) && matches!(m, Mark::NodeFinished))
        .map_or(0, |e| e.0);
    let mut starts: Vec<u64> = timeline
        .iter()
        .filter(|(_, c, m)| matches!(m, Mark::NodeStarted) && c.is_some_and(|c| kids.contains(&c)))
        .map(|e| e.0)
        .collect();
    starts.sort_unstable();
    let gaps: Vec<u64> = starts.windows(2).map(|w| w[1] - w[0]).collect();
    let mut sorted = gaps.clone();
    sorted.sort_unstable();
    let median = sorted.get(sorted.len() / 2).copied().unwrap_or(0);
    let first = starts.first().map_or(0, |s| s.saturating_sub(built));
    let idle = gaps.iter().map(|g| g.saturating_sub(median)).sum();
    (first, median, idle)
}

// ---------------------------------------------------------------------------------------
// Report

/// Seconds, from microseconds.
fn secs(us: u64) -> String {
    format!("{:.2}", us as f64 / 1e6)
}

fn us(d: Duration) -> u64 {
    d.as_micros() as u64
}

fn describe(name: &str, b: &Bound, clone_us: u64) {
    println!(
        "  {name}: preamble {} s, total work {} s, longest chain {} s ({}),",
        secs(b.preamble),
        secs(b.work),
        secs(b.chain),
        b.chain_path
            .iter()
            .map(|c| c.to_string())
            .collect::<Vec<_>>()
            .join("→")
    );
    println!(
        "    busiest clone source {}: {} clones, {} s back to back ({} ms a clone in the sim); with its own chain before and the shortest tail after: {} s",
        b.source.0,
        b.source.1,
        secs(b.source.2),
        clone_us / 1000,
        secs(b.source.3)
    );
}

fn join_counts(m: &BTreeMap<String, u64>) -> String {
    m.iter()
        .map(|(v, c)| format!("{v} {c}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// No-op rebuild of an `n`-node fleet: build it (-j16), then build again on the same state
/// dir. Returns the second run's calls per verb, its mutating and total calls (from
/// `calls.log`), and its wall time.
fn noop(
    root: &Path,
    n: usize,
    latency: &str,
) -> Result<(BTreeMap<String, u64>, usize, usize, Duration), String> {
    let dir = root.join(format!("noop-{n}"));
    let fleet = write_fleet(&dir, n);
    let state = dir.join("state");
    let first = build_once(&fleet, &state, 16, latency);
    if first.exit_code != exit::OK {
        return Err(format!(
            "the first build of {n} nodes failed: {:?}",
            first.failures
        ));
    }
    let before = read_calls(&state).len();
    let second = build_once(&fleet, &state, 16, latency);
    let calls = read_calls(&state);
    let after = &calls[before..];
    let mutating = after.iter().filter(|c| c.mutating).count();
    if second.exit_code != exit::OK || second.built != 0 || second.fresh != n {
        return Err(format!(
            "the no-op build of {n} nodes: exit {}, {} built, {} fresh",
            second.exit_code, second.built, second.fresh
        ));
    }
    Ok((second.host_calls, mutating, after.len(), second.wall))
}

fn main() {
    // `cargo bench` passes `--bench`; without it (`cargo test --benches`) run the smoke run.
    let args: Vec<String> = std::env::args().collect();
    let quick = args.iter().any(|a| a == "--quick")
        || !args.iter().any(|a| a == "--bench")
        || std::env::var_os("PHOENIX_BENCH_QUICK").is_some_and(|v| v != "0");
    let n: usize = std::env::var("PHOENIX_BENCH_NODES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if quick { 50 } else { 200 });
    let latency = std::env::var("PHOENIX_BENCH_LATENCY")
        .unwrap_or_else(|_| if quick { LATENCY_QUICK } else { LATENCY }.to_string());
    let latency = latency.as_str();
    let lat = parse_latency(latency);
    let mut jobs: Vec<usize> = std::env::var("PHOENIX_BENCH_JOBS")
        .ok()
        .map(|v| v.split(',').filter_map(|j| j.trim().parse().ok()).collect())
        .unwrap_or_else(|| JOBS.to_vec());
    if jobs.first() != Some(&1) {
        jobs.insert(0, 1); // the models come from the -j1 run
    }
    let mut tmp = tempfile::tempdir().expect("temp dir");
    if std::env::var_os("PHOENIX_BENCH_KEEP").is_some() {
        eprintln!("keeping {}", tmp.path().display());
        tmp.disable_cleanup(true);
    }
    let root = tmp.path();
    let mut ok = true;

    let fleet = write_fleet(&root.join("fleet"), n);
    let templates = fleet.nodes.values().filter(|n| n.is_template()).count();
    let depth = fleet
        .nodes
        .keys()
        .map(|&c| fleet.graph.ancestry(c).len())
        .max()
        .unwrap_or(0);
    println!(
        "phoenix build benchmark{}",
        if quick { " (quick)" } else { "" }
    );
    println!(
        "fleet: {n} nodes ({templates} templates, {} standard containers), depth {depth}; clones per source: {}",
        n - templates,
        fleet
            .nodes
            .keys()
            .filter(|&&c| !fleet.graph.children_of(c).is_empty())
            .map(|&c| format!("{c}→{}", fleet.graph.children_of(c).len()))
            .collect::<Vec<_>>()
            .join(" ")
    );
    println!("latency (ms): PHOENIX_SIM_LATENCY=\"{latency}\"");
    println!(
        "machine: {} CPUs",
        std::thread::available_parallelism().map_or(1, |p| p.get())
    );
    println!();

    // Full builds, each on a fresh state dir.
    let mut runs: Vec<(usize, RunStats)> = Vec::new();
    for &j in &jobs {
        let state = root.join(format!("state-j{j}"));
        let r = build_once(&fleet, &state, j, latency);
        if r.exit_code != exit::OK || r.built != n {
            eprintln!(
                "build -j{j}: exit {} with {} of {n} nodes built",
                r.exit_code, r.built
            );
            for f in r.failures.iter().take(5) {
                eprintln!("  {f}");
            }
            ok = false;
        }
        runs.push((j, r));
    }

    let calls = read_calls(&root.join("state-j1"));
    let lm = latency_model(&calls, &lat);
    let mm = measured_model(&runs[0].1.timeline);
    let lb = bound(&fleet, &lm);
    let mb = bound(&fleet, &mm);
    let serial = us(runs[0].1.wall);
    println!(
        "per-node durations, from the -j1 run ({} host calls: {})",
        calls.len(),
        join_counts(&runs[0].1.host_calls)
    );
    describe(
        "latency model (each node's calls in sim/calls.log × their verb's latency)",
        &lb,
        latency_of(&lat, "clone"),
    );
    describe(
        "measured model (the -j1 wall time cut at each node's events)",
        &mb,
        latency_of(&lat, "clone"),
    );
    println!(
        "  bound(N) = preamble + max(longest chain, total work / N, busiest source); target: makespan ≤ 1.10 × the latency-model bound"
    );
    println!();
    println!(
        "{:>4}  {:>8}  {:>7}  {:>6}  {:>14}  {:>7}  {:>6}  {:>6}  {:>8}  {:>7}  {:>6}",
        "jobs",
        "makespan",
        "bound",
        "ratio",
        "limited by",
        "bound'",
        "ratio'",
        "serial",
        "speed-up",
        "retries",
        "target"
    );
    for (j, r) in &runs {
        let made = us(r.wall);
        let (b, b2) = (lb.at(*j), mb.at(*j));
        let ratio = made as f64 / b as f64;
        println!(
            "{:>4}  {:>8}  {:>7}  {:>6.3}  {:>14}  {:>7}  {:>6.3}  {:>6}  {:>8.2}  {:>7}  {:>6}",
            j,
            secs(made),
            secs(b),
            ratio,
            lb.limiting(*j),
            secs(b2),
            made as f64 / b2 as f64,
            secs(serial),
            serial as f64 / made as f64,
            r.retries,
            if ratio <= 1.10 { "ok" } else { "MISSED" }
        );
    }
    println!("  times in seconds; bound and ratio: the latency model; bound' and ratio': the measured model;");
    println!(
        "  serial: the -j1 makespan (sum of the latency model: {} s); speed-up: serial / makespan",
        secs(lb.preamble + lb.work)
    );
    let src = lb.source.0;
    println!(
        "  turns on the busiest source {src} (its {} clones hold its lock one at a time):",
        lb.source.1
    );
    for (j, r) in &runs {
        let (first, median, idle) = turns(&fleet, &r.timeline, src);
        println!(
            "    -j{j}: first clone {} ms after {src} was built, then one every {} ms (median), idle beyond that {} ms",
            first / 1000,
            median / 1000,
            idle / 1000
        );
    }
    println!();

    // No-op rebuilds.
    let small = if quick { 20 } else { 50 };
    println!("no-op rebuild (a second build on the same state dir, -j16):");
    println!(
        "{:>6}  {:>10}  {:>8}  {:>10}  {:>9}  host calls per verb",
        "nodes", "host calls", "mutating", "read calls", "wall (ms)"
    );
    let mut reads = Vec::new();
    for size in [n, small] {
        match noop(root, size, latency) {
            Ok((per_verb, mutating, total, wall)) => {
                reads.push(total - mutating);
                ok &= mutating == 0;
                println!(
                    "{:>6}  {:>10}  {:>8}  {:>10}  {:>9}  {}",
                    size,
                    total,
                    mutating,
                    total - mutating,
                    wall.as_millis(),
                    join_counts(&per_verb)
                );
            }
            Err(e) => {
                eprintln!("{e}");
                ok = false;
            }
        }
    }
    if reads.len() == 2 && reads[0] != reads[1] {
        eprintln!("no-op rebuild: read calls grow with the node count ({reads:?})");
        ok = false;
    }
    if !ok {
        drop(tmp); // exit skips destructors
        std::process::exit(1);
    }
}
