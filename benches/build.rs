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

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use phoenix::build::events::{Event, NodeOutcome};
use phoenix::build::{self, BuildOptions};
use phoenix::engine::plan::Consent;
use phoenix::exit;
use phoenix::fleet::config::Ctid;
use phoenix::fleet::Fleet;
use phoenix::host::sim::SimHost;
use phoenix::state::StateDir;
use serde_json::Value;

use common::*;

/// Milliseconds per verb, as `PHOENIX_SIM_LATENCY` takes them: clone dominates.
const LATENCY: &str = "*=5,clone=200,create=300,exec=20,start=30,shutdown=30,snapshot=20,push=10";
/// The same, ten times faster, for the smoke run.
const LATENCY_QUICK: &str = "*=1,clone=20,create=30,exec=2,start=3,shutdown=3,snapshot=2,push=1";
const JOBS: [usize; 3] = [1, 4, 16];

// ---------------------------------------------------------------------------------------
// Runs

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
    // The step scripts run on the host and call `pct`: the real binary answers it.
    std::env::set_var("PHOENIX_PCT_EXE", env!("CARGO_BIN_EXE_phoenix"));
    std::env::remove_var("PHOENIX_SIM_FAULTS");
    std::env::remove_var("PHOENIX_SIM_NVIDIA_VERSION");
    let state = StateDir::open(state_dir).expect("state dir");
    let host = SimHost::for_state_dir(state_dir).expect("sim host");
    let opts = BuildOptions {
        targets: Vec::new(),
        skip_gpu: false,
        jobs,
        max_jobs: None,
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
    // Never a `pct`: a link to this binary under that name would run the benchmark again
    // from inside a step script, and again from there.
    if args
        .first()
        .and_then(|a| std::path::Path::new(a).file_name())
        .is_some_and(|n| n == "pct")
    {
        eprintln!("this is phoenix's build benchmark, not pct (set PHOENIX_PCT_EXE)");
        std::process::exit(2);
    }
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
