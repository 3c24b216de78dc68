//! The `pve` backend on the `pct-emulator`: real `phoenix` and real `pct` processes, each
//! `pct` costing `PVE_EMULATOR_LATENCY_MS` before it runs (a real one spends 0.5–1 s
//! starting Perl).
//!
//! 1. **No-op build** of a 50-CT fleet (the generator of `benches/build.rs`) at 600 ms a
//!    `pct`: `pct` processes and wall time, side by side with the original orchestrator's
//!    way of finding the same out, `pct status` + `pct listsnapshot` per CT, run for real
//!    against the same node. Target: at most 1 `pct` process and under 1 s.
//! 2. **Full build** of that fleet at `-j 1` and `-j 4` (50 ms a `pct`): `pct` processes per
//!    node, split into the changes the steps make and the reads around them, and makespan
//!    ÷ lower bound as in `benches/build.rs`, the bound from the `-j 1` run (its wall time
//!    cut at each node's events, and its `pct` calls × the latency).
//!
//! Run: `cargo bench --bench pve` (about three minutes), or `cargo bench --bench pve --
//! --quick` (5 ms a `pct` for the full build, 60 ms for the original's loop; seconds).
//! The process fails when a build fails or a no-op build runs more than one `pct`.
//! The `pct-emulator` binary is built next to `phoenix` if it is not there.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use phoenix::build::events::Step;
use phoenix::fleet::config::Ctid;
use phoenix::fleet::Fleet;
use serde_json::Value;

const NODES: usize = 50;
/// A real `pct`'s start-up, for the no-op build and the original's loop.
const PCT_MS: u64 = 600;

/// An emulated Proxmox node `pve` and a fleet beside it.
struct Node {
    dir: PathBuf,
    root: PathBuf,
    bin: PathBuf,
    fleet: Fleet,
}

/// `pct-emulator` next to the `phoenix` under test, brought up to date there (cargo
/// builds only the `phoenix` binary for a bench).
fn emulator() -> PathBuf {
    let phoenix = PathBuf::from(env!("CARGO_BIN_EXE_phoenix"));
    let release = phoenix.components().any(|c| c.as_os_str() == "release");
    let mut cargo = Command::new(env!("CARGO"));
    cargo.args(["build", "--quiet", "-p", "pct-emulator"]);
    if release {
        cargo.arg("--release");
    }
    let status = cargo.status().expect("run cargo");
    assert!(status.success(), "cannot build pct-emulator");
    phoenix.with_file_name("pct-emulator")
}

/// When each event of a run came (microseconds), for which node, and what it was.
type Timeline = Vec<(u64, Option<Ctid>, Mark)>;

impl Node {
    fn new(dir: &Path) -> Node {
        let fleet = write_fleet(dir, NODES);
        let root = dir.join("pve");
        let bin = dir.join("bin");
        let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
        let put = |rel: &str, bytes: &[u8]| {
            let p = root.join(rel);
            fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
            fs::write(p, bytes).expect("write");
        };
        fs::create_dir_all(root.join("etc/pve/nodes/pve/lxc")).expect("node dir");
        put("etc/hostname", b"pve\n");
        put(
            "etc/pve/storage.cfg",
            phoenix::host::pve::storage::DEFAULT_STORAGE_CFG.as_bytes(),
        );
        put(
            "var/lib/vz/template/cache/ubuntu-24.04-standard_24.04-2_amd64.tar.zst",
            b"",
        );
        let host = repo.join("tests/fixtures/host");
        put(
            "proc/driver/nvidia/version",
            &fs::read(host.join("proc-driver-nvidia-version.txt")).expect("fixture"),
        );
        put(
            "proc/devices",
            &fs::read(host.join("proc-devices.txt")).expect("fixture"),
        );
        for n in ["nvidia0", "nvidiactl", "nvidia-uvm", "nvidia-uvm-tools"] {
            put(&format!("dev/{n}"), b"");
        }
        fs::create_dir_all(&bin).expect("bin");
        static EMULATOR: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
        std::os::unix::fs::symlink(EMULATOR.get_or_init(emulator), bin.join("pct"))
            .expect("pct link");
        Node {
            dir: dir.to_path_buf(),
            root,
            bin,
            fleet,
        }
    }

    fn env(&self, cmd: &mut Command, pct_ms: u64) {
        let path = format!(
            "{}:{}",
            self.bin.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        cmd.env("PATH", path)
            .env("PVE_EMULATOR_ROOT", &self.root)
            .env("PVE_EMULATOR_LATENCY_MS", pct_ms.to_string())
            .env_remove("PVE_EMULATOR_FAULTS");
    }

    /// `phoenix build -j N --output json`: exit code, wall time and each event's time.
    fn build(&self, jobs: usize, pct_ms: u64) -> (i32, Duration, Timeline) {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_phoenix"));
        cmd.args(["build", "-j", &jobs.to_string(), "--output", "json"])
            .env("PHOENIX_BACKEND", "pve")
            .env("PHOENIX_PVE_ROOT", &self.root)
            .env("PHOENIX_CONFIG_DIR", self.dir.join("etc"))
            .env("PHOENIX_HOOKS_DIR", self.dir.join("hooks"))
            .env("PHOENIX_STATE_DIR", self.dir.join("state"))
            .env("PHOENIX_LOG_FILE", self.dir.join("phoenix.log"))
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        self.env(&mut cmd, pct_ms);
        let started = Instant::now();
        let mut child = cmd.spawn().expect("run phoenix");
        let mut timeline = Vec::new();
        let stdout = child.stdout.take().expect("stdout");
        for line in BufReader::new(stdout).lines() {
            let at = us(started.elapsed());
            let Ok(v) = serde_json::from_str::<Value>(&line.expect("line")) else {
                continue;
            };
            let ctid = v["ctid"].as_u64().map(|c| c as Ctid);
            let mark = match v["event"].as_str() {
                Some("run_started") => Mark::Run,
                Some("node_started") => Mark::NodeStarted,
                Some("node_finished") => Mark::NodeFinished,
                Some("step_started") => match serde_json::from_value::<Step>(v["step"].clone()) {
                    Ok(s) => Mark::Step(s),
                    Err(_) => continue,
                },
                _ => continue,
            };
            timeline.push((at, ctid, mark));
        }
        let status = child.wait().expect("wait");
        (status.code().unwrap_or(-1), started.elapsed(), timeline)
    }

    /// The `pct` invocations logged so far.
    fn calls(&self) -> Vec<String> {
        fs::read_to_string(self.root.join("pct-calls.log"))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// The original orchestrator's way to tell what is built: `pct status` and `pct
    /// listsnapshot` for every CT, one after the other.
    fn original_survey(&self, pct_ms: u64) -> (usize, Duration) {
        let started = Instant::now();
        let mut processes = 0;
        for &ctid in self.fleet.nodes.keys() {
            for verb in ["status", "listsnapshot"] {
                let mut cmd = Command::new(self.bin.join("pct"));
                cmd.args([verb, &ctid.to_string()])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null());
                self.env(&mut cmd, pct_ms);
                let ok = cmd.status().expect("run pct").success();
                assert!(ok, "pct {verb} {ctid} failed");
                processes += 1;
            }
        }
        (processes, started.elapsed())
    }
}

/// A logged `pct` line as the verb and the CT it acts on (a clone acts on its target).
fn parse_call(line: &str) -> Call {
    let words: Vec<&str> = line.split_whitespace().collect();
    let verb = words.get(1).copied().unwrap_or("").to_string();
    let at = if verb == "clone" { 3 } else { 2 };
    let ctid = words.get(at).and_then(|w| w.parse().ok());
    Call {
        mutating: !matches!(
            verb.as_str(),
            "list" | "status" | "config" | "listsnapshot" | "pull"
        ),
        verb,
        ctid,
    }
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick")
        || std::env::var_os("PHOENIX_BENCH_QUICK").is_some()
        || !std::env::args().any(|a| a == "--bench");
    let build_ms: u64 = if quick { 5 } else { 50 };
    let survey_ms: u64 = if quick { 60 } else { PCT_MS };
    let tmp = tempfile::tempdir().expect("tempdir");
    println!(
        "pve backend on the pct-emulator: {NODES} CTs, `pct` at {build_ms} ms for full builds{}",
        if quick { " (quick)" } else { "" }
    );

    // Full builds: -j1 (the model) then -j4, each on a fresh node.
    let mut runs = BTreeMap::new();
    for jobs in [1usize, 4] {
        let node = Node::new(&tmp.path().join(format!("j{jobs}")));
        let (code, wall, timeline) = node.build(jobs, build_ms);
        assert_eq!(code, 0, "the -j{jobs} build failed");
        runs.insert(jobs, (node, wall, timeline));
    }
    let (node1, _, timeline1) = &runs[&1];
    let calls: Vec<Call> = node1.calls().iter().map(|l| parse_call(l)).collect();
    let mut per_verb: BTreeMap<String, u64> = BTreeMap::new();
    for c in &calls {
        *per_verb.entry(c.verb.clone()).or_insert(0) += 1;
    }
    let mutating = calls.iter().filter(|c| c.mutating).count();
    let reads = calls.len() - mutating;
    println!(
        "\nfull build: {} pct processes, {:.1} per CT: {:.1} changes the steps make (the minimum: each is one step's command) + {:.1} reads ({} `pct list`: one for the plan, two per CT for its running state)",
        calls.len(),
        calls.len() as f64 / NODES as f64,
        mutating as f64 / NODES as f64,
        reads as f64 / NODES as f64,
        per_verb.get("list").copied().unwrap_or(0)
    );
    println!(
        "  per verb: {}",
        per_verb
            .iter()
            .map(|(v, n)| format!("{v} {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let lat = parse_latency(&format!("*={build_ms}"));
    let models = [
        ("measured", measured_model(timeline1)),
        ("latency", latency_model(&calls, &lat)),
    ];
    println!("\n| -j | makespan | bound (measured) | ÷ | bound (pct calls × {build_ms} ms) | ÷ |");
    println!("|---|---|---|---|---|---|");
    for (jobs, (_, wall, _)) in &runs {
        let b: Vec<u64> = models
            .iter()
            .map(|(_, m)| bound(&runs[&1].0.fleet, m).at(*jobs))
            .collect();
        let w = us(*wall);
        println!(
            "| {jobs} | {} s | {} s | {:.3} | {} s | {:.3} |",
            secs(w),
            secs(b[0]),
            w as f64 / b[0] as f64,
            secs(b[1]),
            w as f64 / b[1] as f64
        );
    }

    // No-op: the -j4 node again, every pct at a real pct's cost.
    let (node4, _, _) = &runs[&4];
    let before = node4.calls().len();
    let (code, noop_wall, _) = node4.build(4, PCT_MS);
    assert_eq!(code, 0, "the no-op build failed");
    let noop_calls = node4.calls()[before..].to_vec();
    let (orig_processes, orig_wall) = node4.original_survey(survey_ms);
    println!(
        "\nno-op build, `pct` at {PCT_MS} ms: {} pct process(es) ({}), {} s",
        noop_calls.len(),
        noop_calls.join("; "),
        secs(us(noop_wall))
    );
    println!(
        "original (`pct status` + `pct listsnapshot` per CT), `pct` at {survey_ms} ms: {orig_processes} pct processes, {} s; {:.0}× the processes, {:.1}× the time{}",
        secs(us(orig_wall)),
        orig_processes as f64 / noop_calls.len().max(1) as f64,
        orig_wall.as_secs_f64() / noop_wall.as_secs_f64(),
        if survey_ms == PCT_MS { "" } else { " (quick: at a tenth of a real pct's cost)" }
    );
    if noop_calls.len() > 1 {
        eprintln!("FAIL: a no-op build ran {} pct processes", noop_calls.len());
        std::process::exit(1);
    }
}
