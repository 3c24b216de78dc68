//! Load + validate + hash of a 10,000-node fleet: deep chains of templates (depth 50) and
//! wide fans of containers (hundreds per template), some GPU and nesting nodes, a few
//! hooks and a `lib/` file. The fleet is generated once into a temporary directory.
//!
//! Target (DESIGN: a no-op `plan` of a large fleet must feel instant): under 0.5 s and
//! under 200 MB peak memory on a 2-core machine. Before criterion runs, five runs are
//! timed and their peak resident set size (`VmHWM`, reset through `/proc/self/clear_refs`
//! after the fleet is generated) is printed.

use std::fs;
use std::hint::black_box;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use criterion::Criterion;
use phoenix::engine::hash;
use phoenix::fleet::config::{self, Paths};
use serde_json::{json, Map, Value};

// The allocator of the `phoenix` binary (src/main.rs), so that the figures are its figures.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

const NODES: usize = 10_000;
const BASES: usize = 10;
/// Templates per chain, the base included: a chain is 50 deep.
const CHAIN: usize = 50;

/// A permutation of the node indices onto CTIDs, so that numeric order says nothing about
/// the edges (a parent often has a higher CTID than its child).
fn ctid(i: usize) -> u32 {
    100_000 + ((i * 7919) % NODES) as u32
}

fn block(i: usize, parent: Option<usize>, template: bool) -> Value {
    let gpu = i.is_multiple_of(7);
    let nesting = i.is_multiple_of(3);
    let mut b = Map::new();
    b.insert("name".into(), json!(format!("node-{}", ctid(i))));
    b.insert("memory_mb".into(), json!(2048 + (i % 8) * 1024));
    b.insert("cores".into(), json!(1 + i % 8));
    b.insert(
        "template".into(),
        json!("local:vztmpl/ubuntu-24.04-standard_24.04-2_amd64.tar.zst"),
    );
    b.insert("storage_pool".into(), json!("local-zfs"));
    b.insert(
        "storage_size_gb".into(),
        json!(if template { 32 } else { 64 }),
    );
    b.insert(
        "network_config".into(),
        json!({
            "name": "eth0",
            "bridge": "vmbr0",
            "ip": format!("10.{}.{}.{}/8", 1 + i / 65536, (i / 256) % 256, i % 256),
            "gw": "10.0.0.1"
        }),
    );
    b.insert(
        "features".into(),
        json!(if nesting { "nesting=1,keyctl=1" } else { "" }),
    );
    b.insert(
        "mac_address".into(),
        json!(format!(
            "52:54:00:{:02X}:{:02X}:{:02X}",
            i >> 16,
            (i >> 8) & 0xff,
            i & 0xff
        )),
    );
    b.insert(
        "gpu_assignment".into(),
        json!(if gpu { "0" } else { "none" }),
    );
    let role = if i.is_multiple_of(50) && !template {
        "agent"
    } else {
        "none"
    };
    b.insert("portainer_role".into(), json!(role));
    b.insert("unprivileged".into(), json!(true));
    if template {
        b.insert("is_template".into(), json!(true));
        b.insert("template_snapshot_name".into(), json!(format!("snap-{i}")));
    }
    if let Some(p) = parent {
        b.insert(
            "clone_from_template_ctid".into(),
            json!(ctid(p).to_string()),
        );
    }
    if gpu && !template {
        b.insert(
            "vllm_model".into(),
            json!("Qwen/Qwen2.5-Coder-0.5B-Instruct-GPTQ-Int8"),
        );
        b.insert("vllm_tensor_parallel_size".into(), json!(1));
    }
    if i.is_multiple_of(97) {
        b.insert(
            "x_custom".into(),
            json!({"tier": i % 3, "labels": ["a", "b"], "api_token": "secret"}),
        );
    }
    Value::Object(b)
}

/// Writes the fleet, the host settings and the hooks under `dir`.
fn generate(dir: &Path) -> Paths {
    let mut configs = Map::new();
    // Bases and their chains: node `base + k * BASES` is at depth k of chain `base`.
    let templates = BASES * CHAIN;
    for i in 0..templates {
        let parent = (i >= BASES).then(|| i - BASES);
        configs.insert(ctid(i).to_string(), block(i, parent, true));
    }
    // Fans: the containers hang off the deepest and the middle template of each chain.
    let fan_parents: Vec<usize> = (0..BASES)
        .flat_map(|b| [b + (CHAIN - 1) * BASES, b + (CHAIN / 2) * BASES])
        .collect();
    for i in templates..NODES {
        let parent = fan_parents[i % fan_parents.len()];
        configs.insert(ctid(i).to_string(), block(i, Some(parent), false));
    }
    let lxc = json!({
        "$schema": "./phoenix_lxc_configs.schema.json",
        "nvidia_driver_version": "580.76.05",
        "nvidia_repo_url": "https://developer.download.nvidia.com/compute/cuda/repos/ubuntu2404/x86_64/",
        "nvidia_runfile_url": "https://us.download.nvidia.com/XFree86/Linux-x86_64/580.76.05/NVIDIA-Linux-x86_64-580.76.05.run",
        "lxc_configs": configs,
    });
    let config_dir = dir.join("etc");
    let hooks_dir = dir.join("hooks");
    fs::create_dir_all(&config_dir).unwrap();
    fs::create_dir_all(hooks_dir.join("lib")).unwrap();
    let text = serde_json::to_string_pretty(&lxc).unwrap();
    fs::write(config_dir.join(config::LXC_FILE), &text).unwrap();
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    fs::copy(
        repo.join("etc").join(config::HYPERVISOR_FILE),
        config_dir.join(config::HYPERVISOR_FILE),
    )
    .unwrap();
    fs::copy(
        repo.join("hooks/lib/phoenix_hook_lib.sh"),
        hooks_dir.join("lib/phoenix_hook_lib.sh"),
    )
    .unwrap();
    for i in (0..NODES).step_by(500) {
        let hook = hooks_dir.join(config::hook_file_name(ctid(i)));
        fs::write(&hook, format!("#!/bin/sh\n# node {i}\necho configured\n")).unwrap();
        fs::set_permissions(&hook, fs::Permissions::from_mode(0o755)).unwrap();
    }
    eprintln!(
        "fleet: {NODES} nodes ({templates} templates in {BASES} chains of {CHAIN}, fans of {}), {:.1} MiB of JSON",
        (NODES - templates) / fan_parents.len(),
        text.len() as f64 / 1048576.0
    );
    Paths {
        config_dir,
        hooks_dir,
    }
}

fn load_and_hash(paths: &Paths) -> usize {
    let fleet = match phoenix::fleet::load(paths) {
        Ok(f) => f,
        Err(problems) => panic!("generated fleet is invalid:\n{}", problems.render(false)),
    };
    let hashes = hash::hash_fleet(&fleet);
    assert_eq!(hashes.len(), NODES);
    black_box(&hashes);
    hashes.len()
}

/// `VmHWM` / `VmRSS` of this process, in MiB.
fn memory(field: &str) -> Option<f64> {
    let status = fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// A few runs, timed, and the peak resident set size one run reaches.
fn report_single_runs(paths: &Paths) {
    // Writing 5 resets the peak RSS (VmHWM) to the current RSS (Linux >= 4.0).
    let reset = fs::write("/proc/self/clear_refs", "5").is_ok();
    let before = memory("VmRSS:").unwrap_or(0.0);
    let mut times: Vec<f64> = (0..5)
        .map(|_| {
            let start = Instant::now();
            load_and_hash(paths);
            start.elapsed().as_secs_f64() * 1000.0
        })
        .collect();
    let peak = memory("VmHWM:").unwrap_or(0.0);
    times.sort_by(f64::total_cmp);
    eprintln!(
        "5 runs: min {:.0} ms, median {:.0} ms, max {:.0} ms; peak RSS {peak:.1} MiB{} (RSS before the runs {before:.1} MiB)",
        times[0],
        times[2],
        times[4],
        if reset { "" } else { " (since process start: clear_refs unavailable)" }
    );
}

fn main() {
    // PHOENIX_BENCH_FLEET_DIR keeps the generated fleet (etc/, hooks/) for the CLI:
    // `PHOENIX_CONFIG_DIR=$D/etc PHOENIX_HOOKS_DIR=$D/hooks phoenix validate`.
    let tmp = tempfile::tempdir().unwrap();
    let dir = std::env::var_os("PHOENIX_BENCH_FLEET_DIR")
        .map_or_else(|| tmp.path().to_path_buf(), Into::into);
    let paths = generate(&dir);
    report_single_runs(&paths);

    let mut c = Criterion::default()
        .sample_size(10)
        .measurement_time(Duration::from_secs(10))
        .configure_from_args();
    c.bench_function("load+validate+hash 10k nodes", |b| {
        b.iter(|| load_and_hash(&paths))
    });
    let fleet =
        phoenix::fleet::load(&paths).unwrap_or_else(|_| panic!("generated fleet is invalid"));
    c.bench_function("hash only 10k nodes", |b| {
        b.iter(|| black_box(hash::hash_fleet(&fleet)))
    });
    c.final_summary();
}
