//! The `pve` backend over the REST API against the same backend through local `pct`: a
//! no-op build of the 50-CT fleet of `benches/build.rs`, side by side in one run, on one
//! cluster tree.
//!
//! - **API**: `pve-api-emulator` answering every request after 50 ms (a loaded cluster's
//!   pveproxy, or a WAN hop), phoenix with a ticket login; SSH is not used by a no-op.
//! - **local pct**: the same tree read from `/etc/pve`, each `pct` (the `pct-emulator`)
//!   costing 600 ms before it runs (a real one starting Perl).
//!
//! Wall time and requests (or `pct` processes) of each. Targets: the API's no-op under
//! 1 s with at most 2 requests per CT plus a constant, and only reads. The process fails
//! when a build fails, or the API's no-op changes anything or needs more requests.
//!
//! Run: `cargo bench --bench pve_api` (the fleet is built first over the API, at no
//! latency; about a minute), `-- --quick` is the same (the no-op is the measurement).

#[path = "../tests/common/cluster.rs"]
mod cluster;
mod common;

use std::time::{Duration, Instant};

use common::*;

const NODES: usize = 50;
const REQUEST_MS: u64 = 50;
const PCT_MS: u64 = 600;

fn main() {
    build_emulators();
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    let fleet = write_fleet(dir, NODES);
    let mut c = cluster::Cluster::start(&dir.join("cluster"), &[]);
    std::fs::write(
        c.root
            .join("var/lib/vz/template/cache/ubuntu-24.04-standard_24.04-2_amd64.tar.zst"),
        "",
    )
    .expect("template");
    println!("pve backend, no-op build of {NODES} CTs: over the API at {REQUEST_MS} ms a request, and through local pct at {PCT_MS} ms a call");

    // The fleet, built over the API (no latency).
    let started = Instant::now();
    let (code, _, out) = phoenix(dir, &["build", "-j", "8"], &c.env());
    assert_eq!(code, 0, "the build over the API failed:\n{out}");
    println!("(built over the API in {} s)", secs(us(started.elapsed())));

    // No-op over the API, every request 50 ms.
    c.restart_emulator(&[("PVE_API_EMULATOR_LATENCY_MS", &REQUEST_MS.to_string())]);
    let before = c.requests().len();
    let (code, api_wall, out) = phoenix(dir, &["build"], &c.env());
    assert_eq!(code, 0, "the no-op build over the API failed:\n{out}");
    let requests = c.requests()[before..].to_vec();
    let writes: Vec<&String> = requests
        .iter()
        .filter(|r| !r.starts_with("GET ") && !r.starts_with("POST /api2/json/access/ticket "))
        .collect();

    // No-op through local pct on the same tree, every pct 600 ms.
    let pct_log = c.root.join("pct-calls.log");
    let pct_before = std::fs::read_to_string(&pct_log)
        .unwrap_or_default()
        .lines()
        .count();
    let path = format!(
        "{}:{}",
        c.bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let local = vec![
        ("PHOENIX_BACKEND".to_string(), "pve".to_string()),
        ("PHOENIX_PVE_ROOT".into(), c.root.display().to_string()),
        ("PHOENIX_PVE_NODE".into(), "pve".into()),
        ("PVE_EMULATOR_ROOT".into(), c.root.display().to_string()),
        ("PVE_EMULATOR_LATENCY_MS".into(), PCT_MS.to_string()),
        ("PATH".into(), path),
    ];
    let (code, pct_wall, out) = phoenix(dir, &["build"], &local);
    assert_eq!(code, 0, "the no-op build through local pct failed:\n{out}");
    let pct_calls: Vec<String> = std::fs::read_to_string(&pct_log)
        .unwrap_or_default()
        .lines()
        .skip(pct_before)
        .map(str::to_string)
        .collect();

    let per_ct = requests.len() as f64 / fleet.nodes.len() as f64;
    println!("\n| no-op build | wall time | requests / pct processes | changes |");
    println!("|---|---|---|---|");
    println!(
        "| over the API, {REQUEST_MS} ms a request | {} s | {} requests ({per_ct:.2} per CT) | {} |",
        secs(us(api_wall)),
        requests.len(),
        writes.len()
    );
    println!(
        "| local pct, {PCT_MS} ms a call | {} s | {} pct ({}) | 0 |",
        secs(us(pct_wall)),
        pct_calls.len(),
        pct_calls.join("; ")
    );
    let mut kinds: std::collections::BTreeMap<String, usize> = Default::default();
    for r in &requests {
        let path = r.split_whitespace().nth(1).unwrap_or("");
        let kind = if path.ends_with("/config") {
            "…/lxc/<id>/config"
        } else if path.ends_with("/snapshot") {
            "…/lxc/<id>/snapshot"
        } else {
            path.trim_start_matches("/api2/json")
        };
        *kinds
            .entry(format!(
                "{} {kind}",
                r.split_whitespace().next().unwrap_or("")
            ))
            .or_insert(0) += 1;
    }
    println!(
        "\nAPI requests: {}",
        kinds
            .iter()
            .map(|(k, n)| format!("{n} × {k}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let limit = 2 * NODES + 3;
    if !writes.is_empty() || requests.len() > limit {
        eprintln!(
            "FAIL: the no-op build over the API made {} requests (limit {limit}), {} of them changes: {writes:?}",
            requests.len(),
            writes.len()
        );
        std::process::exit(1);
    }
    if api_wall >= Duration::from_secs(1) {
        println!("note: over the 1 s target on this machine");
    }
}
