//! Store templates against full clones (issue 24), side by side in one run on the `sim`
//! backend, whose model counts the bytes each call copies and whose latency follows them
//! (`clone_per_gib`).
//!
//! The example fleet, with the vLLM template (920) made 15 GiB by its hook (`fallocate -l
//! 15G` inside the CT, which the model keeps as that much data) and the leaf (950) given a
//! hook that takes a second. Two state directories, one without `store_vmid_range` (every
//! clone a full copy, as on Proxmox before) and one with it (template generations kept as
//! Proxmox templates, children linked), each through the same phases, one after the other:
//!
//! 1. a cold build (`-j 4`);
//! 2. the leaf's hook edited, and its rebuild: in place, as 950's own change is by default;
//! 3. the leaf's hook edited again, and its rebuild replacing it (`--replace 950`): a fresh
//!    clone of its template's generation.
//!
//! Per phase: the bytes the host copied (the sum of `bytes` in `sim/calls.log`), the clones
//! made, and the makespan (the run's `elapsed_ms`). 950 keeps no generations here
//! (`keep_generations: false`): a replaced CT's kept copy is a `vzdump`, a full copy either
//! way, reported apart when kept.
//!
//! Run: `cargo bench --bench store` (about a minute), or `-- --quick` (latencies ten times
//! smaller; also what `cargo test --benches` runs; CI runs it). The process fails when a build fails or when the linked leaf replace copies
//! anything; the ratios are reported.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

/// Milliseconds per verb, and per GiB copied: a full copy of 15 GiB costs 15 s (about
/// 1 GiB/s, a fast local ZFS).
const LATENCY: &str = "*=20,create=500,clone=300,template=300,exec=20,start=100,shutdown=100,snapshot=50,clone_per_gib=1000,backup_per_gib=1000,restore_per_gib=1000";
const LATENCY_QUICK: &str = "*=2,create=50,clone=30,template=30,exec=2,start=10,shutdown=10,snapshot=5,clone_per_gib=100,backup_per_gib=100,restore_per_gib=100";
/// What 950's hook takes.
const LEAF_HOOK_S: &str = "1";
const LEAF_HOOK_S_QUICK: &str = "0.1";
const GIB: f64 = (1u64 << 30) as f64;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for e in fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            fs::copy(e.path(), &target).unwrap();
        }
    }
}

/// One side: the example fleet in its own directory, with or without store templates.
struct Side {
    name: &'static str,
    dir: PathBuf,
    latency: &'static str,
}

/// What one phase cost on one side.
struct Cost {
    bytes: u64,
    clones: usize,
    backup_bytes: u64,
    makespan_ms: u64,
}

impl Side {
    fn new(
        root: &Path,
        name: &'static str,
        store: bool,
        latency: &'static str,
        hook_s: &str,
    ) -> Side {
        let dir = root.join(name);
        copy_dir(&repo().join("etc"), &dir.join("etc"));
        copy_dir(&repo().join("hooks"), &dir.join("hooks"));
        let hv = dir.join("etc/phoenix_hypervisor_config.json");
        let mut v: Value = serde_json::from_str(&fs::read_to_string(&hv).unwrap()).unwrap();
        if store {
            v["proxmox_defaults"]["store_vmid_range"] = "9000-9099".into();
        }
        fs::write(&hv, serde_json::to_string_pretty(&v).unwrap()).unwrap();
        let lxc = dir.join("etc/phoenix_lxc_configs.json");
        let mut v: Value = serde_json::from_str(&fs::read_to_string(&lxc).unwrap()).unwrap();
        v["lxc_configs"]["950"]["keep_generations"] = false.into();
        fs::write(&lxc, serde_json::to_string_pretty(&v).unwrap()).unwrap();
        append(
            &dir.join("hooks/phoenix_hypervisor_setup_920.sh"),
            "pct exec \"$1\" -- fallocate -l 15G /root/vllm-model.safetensors\n",
        );
        append(
            &dir.join("hooks/phoenix_hypervisor_setup_950.sh"),
            &format!("sleep {hook_s}\n"),
        );
        Side { name, dir, latency }
    }

    fn calls(&self) -> Vec<Value> {
        fs::read_to_string(self.dir.join("state/sim/calls.log"))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// `phoenix build <args>`; what it cost.
    fn build(&self, args: &[&str]) -> Cost {
        let before = self.calls().len();
        let out = Command::new(env!("CARGO_BIN_EXE_phoenix"))
            .arg("build")
            .args(args)
            .args(["--output", "json"])
            .env("PHOENIX_BACKEND", "sim")
            .env("PHOENIX_CONFIG_DIR", self.dir.join("etc"))
            .env("PHOENIX_HOOKS_DIR", self.dir.join("hooks"))
            .env("PHOENIX_STATE_DIR", self.dir.join("state"))
            .env("PHOENIX_SIM_LATENCY", self.latency)
            .env_remove("PHOENIX_SIM_FAULTS")
            .output()
            .expect("run phoenix");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{}: phoenix build {args:?} failed:\n{stdout}\n{}",
            self.name,
            String::from_utf8_lossy(&out.stderr)
        );
        let finished: Value = stdout
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find(|e| e["event"] == "run_finished")
            .expect("run_finished");
        let calls = &self.calls()[before..];
        let bytes_of = |verb: Option<&str>| -> u64 {
            calls
                .iter()
                .filter(|c| verb.is_none_or(|v| c["verb"] == v))
                .filter_map(|c| c["bytes"].as_u64())
                .sum()
        };
        Cost {
            bytes: bytes_of(None),
            clones: calls.iter().filter(|c| c["verb"] == "clone").count(),
            backup_bytes: bytes_of(Some("backup")),
            makespan_ms: finished["elapsed_ms"].as_u64().unwrap(),
        }
    }

    fn edit_leaf(&self, n: usize) {
        append(
            &self.dir.join("hooks/phoenix_hypervisor_setup_950.sh"),
            &format!("echo edit {n}\n"),
        );
    }
}

fn append(path: &Path, line: &str) {
    let text = fs::read_to_string(path).unwrap();
    fs::write(path, format!("{text}{line}")).unwrap();
}

fn ratio(a: f64, b: f64) -> String {
    if b == 0.0 {
        if a == 0.0 {
            "1 (both 0)".to_string()
        } else {
            "∞ (linked: 0)".to_string()
        }
    } else {
        format!("{:.2}", a / b)
    }
}

fn main() {
    // `cargo test --benches` runs it without `--bench`: the smoke run then.
    let args: Vec<String> = std::env::args().collect();
    let quick = args.iter().any(|a| a == "--quick")
        || std::env::var_os("PHOENIX_BENCH_QUICK").is_some()
        || !args.iter().any(|a| a == "--bench");
    let (latency, hook_s) = if quick {
        (LATENCY_QUICK, LEAF_HOOK_S_QUICK)
    } else {
        (LATENCY, LEAF_HOOK_S)
    };
    let tmp = tempfile::tempdir().unwrap();
    let full = Side::new(tmp.path(), "full", false, latency, hook_s);
    let linked = Side::new(tmp.path(), "linked", true, latency, hook_s);
    println!("store templates against full clones, on the sim backend, side by side");
    println!("latency: {latency}; 920 holds 15 GiB; 950's hook sleeps {hook_s} s\n");
    let phases: [(&str, Vec<&str>); 3] = [
        ("cold build (-j 4)", vec!["-j", "4"]),
        ("950 hook edited, rebuilt in place", vec![]),
        ("950 hook edited, --replace 950", vec!["--replace", "950"]),
    ];
    println!(
        "| phase | full clones: copied | clones | makespan | linked: copied | clones | makespan | copied ÷ | makespan ÷ |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    let mut leaf_replace = None;
    for (i, (phase, args)) in phases.iter().enumerate() {
        if i > 0 {
            full.edit_leaf(i);
            linked.edit_leaf(i);
        }
        let a = full.build(args);
        let b = linked.build(args);
        println!(
            "| {phase} | {:.2} GiB | {} | {:.2} s | {:.2} GiB | {} | {:.2} s | {} | {} |",
            a.bytes as f64 / GIB,
            a.clones,
            a.makespan_ms as f64 / 1000.0,
            b.bytes as f64 / GIB,
            b.clones,
            b.makespan_ms as f64 / 1000.0,
            ratio(a.bytes as f64, b.bytes as f64),
            ratio(a.makespan_ms as f64, b.makespan_ms as f64),
        );
        if a.backup_bytes + b.backup_bytes > 0 {
            println!(
                "|   of which kept copies (vzdump) | {:.2} GiB | | | {:.2} GiB | | | | |",
                a.backup_bytes as f64 / GIB,
                b.backup_bytes as f64 / GIB
            );
        }
        if i == 2 {
            leaf_replace = Some((a, b));
        }
    }
    let (a, b) = leaf_replace.unwrap();
    let hook_ms = (hook_s.parse::<f64>().unwrap() * 1000.0) as u64;
    println!(
        "\nleaf replace: linked copies {} bytes and takes {:.2} s, {:.1}× its hook's {:.2} s; full copies {:.2} GiB and takes {:.2} s",
        b.bytes,
        b.makespan_ms as f64 / 1000.0,
        b.makespan_ms as f64 / hook_ms as f64,
        hook_ms as f64 / 1000.0,
        a.bytes as f64 / GIB,
        a.makespan_ms as f64 / 1000.0
    );
    assert_eq!(b.bytes, 0, "the linked leaf replace copied data");
    assert!(
        a.bytes >= 15 << 30,
        "the full leaf replace copies the template's 15 GiB"
    );
}
