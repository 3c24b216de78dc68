//! One fleet on one Proxmox node and on a cluster of three: the cold build of the same
//! 60-CT fleet by the `pve` backend over the API, side by side in one run, with fixed
//! latencies. Each layout gets a fresh `pve-api-emulator` serving a cluster
//! (`etc/pve/.members`, `tests/common/cluster.rs`) with a real sshd per node whose `pct`
//! is the `pct-emulator` acting as that node.
//!
//! - **The fleet**: the generator of `benches/build.rs` (`benches/common`) with a shape
//!   whose branches cost the same: three chains of two templates (a base from the OS
//!   template, one cloned from it), nine standard CTs cloned from each of the six.
//! - **1 node**: every CT on pve1 (`proxmox_defaults.default_node`), a cluster of one.
//! - **3 nodes, a chain on each**: each chain, templates and clones, on its own node
//!   (`node` of every block): the independent branches apart, nothing crosses nodes.
//! - **3 nodes, clones crossing** (not in `--quick`): the templates on pve1, the standard
//!   CTs round robin over the three. `local-zfs` is not shared, so a clone for pve2 or
//!   pve3 is made on pve1 beside its template and migrated: both in pve1's pool, the
//!   clone holding its template's lock.
//! - **Latencies**: every API request 10 ms, each task's work by verb
//!   (`PVE_API_EMULATOR_TASK_LATENCY`), and `pct exec`/`push` over SSH (the
//!   `pct-emulator`'s `PVE_EMULATOR_TASK_LATENCY`, which each node's sshd sets: the API
//!   emulator's knobs do not reach it). A task's work lies between two of phoenix's polls
//!   of it (after 50, 150, 350, 750 … ms), so that jitter does not move its end to the
//!   next poll. The same `-j 2` per node in every run.
//!
//! Per layout: the makespan (the wall time of `phoenix build`), the time before its first
//! CT starts (login, inventory, and the preflight's SSH to each node, one after another),
//! and the longest base template (each node's first CT, built while nothing else of its
//! chain can run). The ratio is the 3-node makespan over a third of the 1-node one;
//! target: within 10 % where the graph allows. The graph does not allow 1.00: a third of
//! the 1-node run pays a third of its start, where the 3-node run pays all of its longer
//! one, and on 3 nodes each base template is built alone, the node's other worker idle
//! (on 1 node the three bases keep both busy). The run prints that estimate beside the
//! ratio, and the makespan over it. Clones crossing nodes do not allow 3× either: every
//! clone and every move runs in pve1's pool.
//!
//! Measured on a 2-CPU machine, three runs: 1 node 65.8–66.6 s, 3 nodes (a chain on
//! each) 24.8–25.6 s, ratio 1.12–1.15, where the graph allows 1.09–1.10 (the makespan
//! 1.03–1.05 of that: the 2 CPUs shared by three nodes' workers); clones crossing
//! 44.6–45.5 s (2.02–2.05). A fourth run beside someone else's `cargo build`: 70.4 s and
//! 28.8 s, 1.23 (1.09 of the 1.12 allowed). The process fails when a build fails, a CT
//! ends on another node than its block says, or the ratio is above 1.35: room for such a
//! neighbour, and still far below what a lost pool per node would give (about 3). `--quick` (8 CTs a node, where the base templates weigh more: the graph allows
//! about 1.25, measured 1.36–1.40) fails only when 3 nodes are not faster than 1.
//!
//! Run: `cargo bench --bench cluster` (about 140 s), or `-- --quick` (24 CTs, lower
//! latencies, 33 s; also what `cargo test --benches` runs). `PHOENIX_BENCH_KEEP=1` keeps
//! the temporary directory (each layout's cluster tree, and phoenix's events with the
//! millisecond each came).

#[path = "../tests/common/cluster.rs"]
mod cluster;
mod common;

use std::collections::BTreeMap;
use std::fs;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::time::{Duration, Instant};

use phoenix::build::events::Event;
use phoenix::fleet::config::Ctid;
use serde_json::Value;

use common::*;

const NODES: [&str; 3] = ["pve1", "pve2", "pve3"];
const JOBS: usize = 2;
/// Above this ratio (3 nodes over a third of 1) the benchmark fails: what the graph
/// allows, and room for a shared 2-CPU machine (measured: see the module doc).
const FAIL_ABOVE: f64 = 1.35;

/// What a run costs: its fleet and latencies.
struct Scale {
    cts: usize,
    request_ms: u64,
    /// `PVE_API_EMULATOR_TASK_LATENCY`: the work of each API task, by verb.
    tasks: &'static str,
    /// `PVE_EMULATOR_TASK_LATENCY` of each node's `pct` over SSH.
    pct: &'static str,
}

const FULL: Scale = Scale {
    cts: 60,
    request_ms: 10,
    tasks: "*=10,create=600,clone=100,start=300,shutdown=300,snapshot=100,resize=100,migrate=600",
    pct: "exec=300,push=100",
};

const QUICK: Scale = Scale {
    cts: 24,
    request_ms: 5,
    tasks: "*=5,create=250,clone=100,start=250,shutdown=250,snapshot=100,resize=100,migrate=250",
    pct: "exec=150,push=50",
};

/// Three chains of two templates, a base and one cloned from it; the standard CTs are
/// cloned from the six in equal numbers. The chains cost the same.
fn shape() -> (Vec<Tpl>, Vec<(Ctid, usize)>) {
    let t = |ctid, parent, name| Tpl {
        ctid,
        parent,
        name,
        features: "",
        gpu: false,
        unprivileged: true,
        disk_gb: 16,
    };
    let tpls = vec![
        t(900, None, "tpl-ubuntu"),
        t(901, Some(900), "tpl-web"),
        t(910, None, "tpl-debian"),
        t(911, Some(910), "tpl-build"),
        t(920, None, "tpl-alpine"),
        t(921, Some(920), "tpl-proxy"),
    ];
    let fans = tpls.iter().map(|t| (t.ctid, 1)).collect();
    (tpls, fans)
}

/// Where the CTs of the fleet go.
#[derive(Clone, Copy, PartialEq)]
enum Layout {
    OneNode,
    Chains,
    Crossing,
}

impl Layout {
    fn nodes(self) -> &'static [&'static str] {
        match self {
            Layout::OneNode => &NODES[..1],
            Layout::Chains | Layout::Crossing => &NODES,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Layout::OneNode => "1 node",
            Layout::Chains => "3 nodes, a chain on each",
            Layout::Crossing => "3 nodes, clones crossing",
        }
    }

    /// The node of a CT, a template or not, of the `chain`-th chain.
    fn node_of(self, ctid: Ctid, template: bool, chain: usize) -> &'static str {
        match self {
            Layout::OneNode => NODES[0],
            Layout::Chains => NODES[chain % NODES.len()],
            Layout::Crossing if template => NODES[0],
            Layout::Crossing => NODES[(ctid as usize) % NODES.len()],
        }
    }
}

/// The fleet of `n` CTs placed by `layout`: its config documents, and the node each CT
/// must end on.
fn fleet(n: usize, layout: Layout) -> ((Value, Value), BTreeMap<Ctid, &'static str>) {
    let (tpls, fans) = shape();
    let (mut lxc, mut hv) = fleet_json_of(&tpls, &fans, n);
    let parent = |c: Ctid, blocks: &serde_json::Map<String, Value>| -> Option<Ctid> {
        blocks[&c.to_string()]["clone_from_template_ctid"]
            .as_str()
            .and_then(|p| p.parse().ok())
    };
    let bases: Vec<Ctid> = tpls
        .iter()
        .filter(|t| t.parent.is_none())
        .map(|t| t.ctid)
        .collect();
    let blocks = lxc["lxc_configs"].as_object_mut().expect("lxc_configs");
    let mut placed = BTreeMap::new();
    for key in blocks.keys() {
        let ctid: Ctid = key.parse().expect("a CTID");
        let mut base = ctid;
        while let Some(p) = parent(base, blocks) {
            base = p;
        }
        let chain = bases.iter().position(|&b| b == base).expect("a base");
        let template = tpls.iter().any(|t| t.ctid == ctid);
        placed.insert(ctid, layout.node_of(ctid, template, chain));
    }
    match layout {
        Layout::OneNode => hv["proxmox_defaults"]["default_node"] = Value::from(NODES[0]),
        Layout::Chains | Layout::Crossing => {
            for (key, b) in blocks.iter_mut() {
                let ctid: Ctid = key.parse().expect("a CTID");
                b["node"] = Value::from(placed[&ctid]);
            }
        }
    }
    ((lxc, hv), placed)
}

/// One cold build, and what its events tell.
struct Built {
    layout: Layout,
    makespan: Duration,
    /// From phoenix's start to its first CT's.
    before_first: Duration,
    /// The longest of the bases (the CTs without a parent), start to finish.
    base: Duration,
    /// CTs on each node after the build.
    per_node: BTreeMap<String, usize>,
}

/// `phoenix --output json <args>`: its exit code, wall time, what it printed that is not
/// an event, and its events, each with when it came.
fn phoenix_events(
    dir: &Path,
    args: &[&str],
    env: &[(String, String)],
) -> (i32, Duration, String, Vec<(Duration, Event)>) {
    let json: Vec<&str> = ["--output", "json"].iter().chain(args).copied().collect();
    let started = Instant::now();
    let mut child = phoenix_command(dir, &json, env)
        .spawn()
        .expect("run phoenix");
    let mut stderr = child.stderr.take().expect("stderr");
    let errors = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let mut events = Vec::new();
    let mut other = String::new();
    for line in BufReader::new(child.stdout.take().expect("stdout")).lines() {
        let line = line.expect("phoenix's stdout");
        match serde_json::from_str::<Event>(&line) {
            Ok(e) => events.push((started.elapsed(), e)),
            Err(_) => other.push_str(&format!("{line}\n")),
        }
    }
    let status = child.wait().expect("wait for phoenix");
    let wall = started.elapsed();
    other.push_str(&errors.join().unwrap_or_default());
    (status.code().unwrap_or(-1), wall, other, events)
}

/// Builds the fleet laid out by `layout` on a fresh cluster under `root`.
fn build(root: &Path, layout: Layout, scale: &Scale, keep: bool) -> Result<Built, String> {
    let dir = root.join(layout.name().replace([' ', ','], "-"));
    let (docs, placed) = fleet(scale.cts, layout);
    let fleet = write_fleet_json(&dir, &docs);
    assert_eq!(fleet.nodes.len(), scale.cts);
    let request_ms = scale.request_ms.to_string();
    let c = cluster::Cluster::start_nodes_with(
        &dir.join("cluster"),
        layout.nodes(),
        &[],
        &[
            ("PVE_API_EMULATOR_LATENCY_MS", &request_ms),
            ("PVE_API_EMULATOR_TASK_LATENCY", scale.tasks),
        ],
        &[("PVE_EMULATOR_TASK_LATENCY", scale.pct)],
    );
    for n in layout.nodes() {
        let cache = c.files(n).join("var/lib/vz/template/cache");
        fs::create_dir_all(&cache).expect("template cache");
        fs::write(
            cache.join("ubuntu-24.04-standard_24.04-2_amd64.tar.zst"),
            "",
        )
        .expect("OS template");
    }
    let jobs = JOBS.to_string();
    let (code, makespan, out, events) = phoenix_events(&dir, &["build", "-j", &jobs], &c.env());
    if keep {
        let lines: String = events
            .iter()
            .map(|(at, e)| {
                format!(
                    "{} {}\n",
                    at.as_millis(),
                    serde_json::to_string(e).unwrap_or_default()
                )
            })
            .collect();
        fs::write(dir.join("events.txt"), lines).expect("events.txt");
    }
    if code != 0 {
        return Err(format!(
            "the build on {} failed (exit {code}):\n{out}",
            layout.name()
        ));
    }
    let mut per_node = BTreeMap::new();
    let mut misplaced = Vec::new();
    for (&ctid, &want) in &placed {
        let node = c.node_of(ctid).unwrap_or_else(|| "no node".into());
        if node != want {
            misplaced.push(format!("{ctid} on {node}, not {want}"));
        }
        *per_node.entry(node).or_insert(0) += 1;
    }
    if !misplaced.is_empty() {
        return Err(format!(
            "{}: CTs on other nodes than their blocks say: {}",
            layout.name(),
            misplaced.join(", ")
        ));
    }
    let mut started = BTreeMap::new();
    let mut base = Duration::ZERO;
    for (at, e) in &events {
        match e {
            Event::NodeStarted { ctid, .. } => {
                started.entry(*ctid).or_insert(*at);
            }
            Event::NodeFinished { ctid, .. } if fleet.graph.parent_of(*ctid).is_none() => {
                base = base.max(*at - started[ctid]);
            }
            _ => {}
        }
    }
    Ok(Built {
        layout,
        makespan,
        before_first: started.values().min().copied().unwrap_or_default(),
        base,
        per_node,
    })
}

fn s(d: Duration) -> String {
    format!("{:.1} s", d.as_secs_f64())
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    // `cargo bench` passes `--bench`; without it (`cargo test --benches`) the quick run.
    let quick = args.iter().any(|a| a == "--quick") || !args.iter().any(|a| a == "--bench");
    let scale = if quick { QUICK } else { FULL };
    let keep = std::env::var_os("PHOENIX_BENCH_KEEP").is_some();
    build_emulators();
    let mut tmp = tempfile::tempdir().expect("temp dir");
    if keep {
        eprintln!("keeping {}", tmp.path().display());
        tmp.disable_cleanup(true);
    }
    let (tpls, _) = shape();
    println!(
        "phoenix cluster benchmark{}: a cold build of {} CTs ({} templates in 3 chains, {} clones) over the API, -j {JOBS} per node",
        if quick { " (quick)" } else { "" },
        scale.cts,
        tpls.len(),
        scale.cts - tpls.len()
    );
    println!(
        "latency: every request {} ms; API tasks PVE_API_EMULATOR_TASK_LATENCY=\"{}\"; pct over SSH PVE_EMULATOR_TASK_LATENCY=\"{}\"",
        scale.request_ms, scale.tasks, scale.pct
    );
    println!(
        "machine: {} CPUs\n",
        std::thread::available_parallelism().map_or(1, |p| p.get())
    );

    let mut layouts = vec![Layout::OneNode, Layout::Chains];
    if !quick {
        layouts.push(Layout::Crossing);
    }
    let mut runs = Vec::new();
    for layout in layouts {
        match build(tmp.path(), layout, &scale, keep) {
            Ok(b) => runs.push(b),
            Err(e) => {
                eprintln!("FAIL: {e}");
                drop(tmp); // exit skips destructors
                std::process::exit(1);
            }
        }
    }

    let one = &runs[0];
    let third = one.makespan.as_secs_f64() / 3.0;
    println!("| layout | CTs per node | makespan | before the first CT | longest base template | makespan / (1 node / 3) |");
    println!("|---|---|---|---|---|---|");
    for r in &runs {
        let per_node: Vec<String> = r.per_node.iter().map(|(n, k)| format!("{n} {k}")).collect();
        println!(
            "| {} | {} | {} | {} | {} | {} |",
            r.layout.name(),
            per_node.join(", "),
            s(r.makespan),
            s(r.before_first),
            s(r.base),
            if r.layout == Layout::OneNode {
                "—".to_string()
            } else {
                format!("{:.2}", r.makespan.as_secs_f64() / third)
            }
        );
    }
    let three = &runs[1];
    let ratio = three.makespan.as_secs_f64() / third;
    // What the graph allows: a third of the 1-node run's work after its start, plus the
    // 3-node run's own start, plus each base template built while the node's other
    // workers (j - 1 of j) have nothing of its chain to run.
    let idle = three.base.as_secs_f64() * (JOBS - 1) as f64 / JOBS as f64;
    let allowed = three.before_first.as_secs_f64()
        + (one.makespan - one.before_first).as_secs_f64() / 3.0
        + idle;
    println!(
        "\n3 nodes against 1: {} / ({} / 3) = {ratio:.2} (target: within 10 % where the graph allows; {})",
        s(three.makespan),
        s(one.makespan),
        if quick {
            "fails unless 3 nodes are faster than 1".to_string()
        } else {
            format!("fails above {FAIL_ABOVE}")
        }
    );
    println!(
        "the graph allows about {:.2} ({}): {} more before the first CT ({} against {} / 3), and {} of each node's base template with {} of its {JOBS} workers idle; the makespan is {:.2} of that",
        allowed / third,
        s(Duration::from_secs_f64(allowed)),
        s(three.before_first.saturating_sub(one.before_first / 3)),
        s(three.before_first),
        s(one.before_first),
        s(Duration::from_secs_f64(idle)),
        JOBS - 1,
        three.makespan.as_secs_f64() / allowed
    );
    if let Some(cross) = runs.iter().find(|r| r.layout == Layout::Crossing) {
        let leaves = scale.cts - tpls.len();
        println!(
            "clones crossing: {:.2}; the graph does not allow 3×: all {leaves} clones are made on pve1 beside their templates, and the {} for pve2 and pve3 migrated from there (local-zfs is not shared), each in pve1's pool of {JOBS} holding its template's lock",
            cross.makespan.as_secs_f64() / third,
            leaves - leaves / NODES.len()
        );
    }
    let failed = if quick {
        (three.makespan >= one.makespan).then(|| "3 nodes were not faster than 1".to_string())
    } else {
        (ratio > FAIL_ABOVE).then(|| format!("the ratio {ratio:.2} is above {FAIL_ABOVE}"))
    };
    if let Some(why) = failed {
        eprintln!("FAIL: {why}");
        drop(tmp);
        std::process::exit(1);
    }
}
