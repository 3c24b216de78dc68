//! What the build benchmarks share: the generated fleet, the models of what each node
//! costs, the makespan's lower bound, and running the real `phoenix` against the
//! emulators. Each bench includes it as `mod common`.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use phoenix::build::events::Step;
use phoenix::fleet::config::{self, Ctid, Paths};
use phoenix::fleet::Fleet;
use serde_json::{json, Value};

/// Verbs of the provisioning task (the one that holds the clone source's lock).
pub const PROVISION_VERBS: [&str; 3] = ["clone", "create", "destroy"];

// ---------------------------------------------------------------------------------------
// The fleet

/// A template of the generated fleet: ctid, parent, name, features, GPU, privilege.
pub struct Tpl {
    pub ctid: Ctid,
    pub parent: Option<Ctid>,
    pub name: &'static str,
    pub features: &'static str,
    pub gpu: bool,
    pub unprivileged: bool,
    pub disk_gb: u64,
}

/// Three base templates and chains of up to five templates.
pub fn templates() -> Vec<Tpl> {
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
pub const FANS: [(Ctid, usize); 7] = [
    (901, 40),
    (913, 35),
    (900, 30),
    (911, 25),
    (921, 24),
    (902, 20),
    (904, 15),
];

/// The two config documents of a fleet of `n` nodes (n ≥ 18).
pub fn fleet_json(n: usize) -> (Value, Value) {
    fleet_json_of(&templates(), &FANS, n)
}

/// The two config documents of a fleet of `n` nodes: `tpls`, and the rest standard
/// containers cloned from the templates of `fans`, each fan's size in proportion to its
/// weight (at least one).
pub fn fleet_json_of(tpls: &[Tpl], fans: &[(Ctid, usize)], n: usize) -> (Value, Value) {
    assert!(
        n >= tpls.len() + fans.len(),
        "a fleet of this shape needs at least {} nodes",
        tpls.len() + fans.len()
    );
    let leaves = n - tpls.len();
    let total: usize = fans.iter().map(|f| f.1).sum();
    let mut sizes: Vec<usize> = fans.iter().map(|f| (f.1 * leaves / total).max(1)).collect();
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
    for t in tpls {
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
    for ((source, _), size) in fans.iter().zip(&sizes) {
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

/// Writes the fleet of `n` nodes under `dir` (config dir and an empty hooks dir) and
/// loads it.
pub fn write_fleet(dir: &Path, n: usize) -> Fleet {
    let fleet = write_fleet_json(dir, &fleet_json(n));
    assert_eq!(fleet.nodes.len(), n);
    fleet
}

/// Writes a fleet's two config documents under `dir` (config dir and an empty hooks dir)
/// and loads it.
pub fn write_fleet_json(dir: &Path, (lxc, hv): &(Value, Value)) -> Fleet {
    let config_dir = dir.join("etc");
    let hooks_dir = dir.join("hooks");
    fs::create_dir_all(&config_dir).expect("config dir");
    fs::create_dir_all(&hooks_dir).expect("hooks dir");
    let pretty = |v: &Value| serde_json::to_string_pretty(v).expect("json");
    fs::write(config_dir.join(config::LXC_FILE), pretty(lxc)).expect("write lxc");
    fs::write(config_dir.join(config::HYPERVISOR_FILE), pretty(hv)).expect("write hv");
    phoenix::fleet::load(&Paths {
        config_dir,
        hooks_dir,
    })
    .unwrap_or_else(|p| panic!("the generated fleet is invalid:\n{p:?}"))
}

/// A point of a run's timeline: when an event was emitted, for which node, what it was.
#[derive(Clone, Copy)]
pub enum Mark {
    Run,
    NodeStarted,
    Step(Step),
    NodeFinished,
}

/// One line of `sim/calls.log`.
pub struct Call {
    pub verb: String,
    pub ctid: Option<Ctid>,
    pub mutating: bool,
}

pub fn parse_latency(text: &str) -> BTreeMap<String, u64> {
    text.split(',')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().parse().expect("latency")))
        .collect()
}

/// Microseconds a verb sleeps in the sim.
pub fn latency_of(lat: &BTreeMap<String, u64>, verb: &str) -> u64 {
    1000 * lat.get(verb).or_else(|| lat.get("*")).copied().unwrap_or(0)
}

// ---------------------------------------------------------------------------------------
// Models of what each node costs (from the -j1 run), and the lower bound

/// What each node costs, in microseconds, split like the engine's two tasks per node.
#[derive(Default)]
pub struct Model {
    /// Serial work outside any node (the plan's inventory and facts, the run's summary).
    pub preamble: u64,
    /// The provisioning task (clone/create: the part that holds the clone source's lock).
    pub provision: BTreeMap<Ctid, u64>,
    /// The rest (settings … snapshot, restart).
    pub finish: BTreeMap<Ctid, u64>,
}

/// The latency model: every call of the sequential (-j1) run, attributed to its node,
/// times its verb's latency. Calls without a CTID (`inventory`: the engine re-reads the
/// host inside a node's steps) go to the next call that names one; those before the first
/// such call are the run's preamble.
pub fn latency_model(calls: &[Call], lat: &BTreeMap<String, u64>) -> Model {
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
pub fn measured_model(timeline: &[(u64, Option<Ctid>, Mark)]) -> Model {
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

pub struct Bound {
    pub preamble: u64,
    pub chain: u64,
    pub chain_path: Vec<Ctid>,
    pub work: u64,
    /// The busiest clone source: its CTID, its clones, their provisioning back to back,
    /// and that refined: the source's own chain + the clones + the shortest tail after.
    pub source: (Ctid, usize, u64, u64),
}

impl Bound {
    pub fn at(&self, jobs: usize) -> u64 {
        let per_worker = self.work.div_ceil(jobs as u64);
        self.preamble + self.chain.max(per_worker).max(self.source.3)
    }
    pub fn limiting(&self, jobs: usize) -> &'static str {
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
pub fn bound(fleet: &Fleet, m: &Model) -> Bound {
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

// ---------------------------------------------------------------------------------------
// The real phoenix, and the emulators it runs against

/// Both emulators next to the `phoenix` under test (cargo builds only `phoenix` for a
/// bench).
pub fn build_emulators() {
    let phoenix = PathBuf::from(env!("CARGO_BIN_EXE_phoenix"));
    let release = phoenix.components().any(|c| c.as_os_str() == "release");
    let mut cargo = Command::new(env!("CARGO"));
    cargo.args(["build", "--quiet", "-p", "pct-emulator"]);
    // What `cargo bench` sets for the bench it runs (its package's name, manifest …):
    // ring's build script reruns when they change, so a cargo that saw them would rebuild
    // ring and all above it here, and the next `cargo bench` all of that again.
    for (key, _) in std::env::vars_os() {
        let k = key.to_string_lossy();
        if k.starts_with("CARGO_PKG_")
            || k.starts_with("CARGO_MANIFEST_")
            || [
                "CARGO_CRATE_NAME",
                "CARGO_BIN_NAME",
                "CARGO_PRIMARY_PACKAGE",
                "CARGO_TARGET_TMPDIR",
                "OUT_DIR",
            ]
            .contains(&k.as_ref())
        {
            cargo.env_remove(&key);
        }
    }
    if release {
        cargo.arg("--release");
    }
    assert!(
        cargo.status().expect("run cargo").success(),
        "cannot build the emulators"
    );
}

/// `phoenix <args>` on the fleet under `dir` (as [`write_fleet`] lays it out), with `env`,
/// its stdout and stderr piped.
pub fn phoenix_command(dir: &Path, args: &[&str], env: &[(String, String)]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_phoenix"));
    cmd.args(args)
        .env("PHOENIX_CONFIG_DIR", dir.join("etc"))
        .env("PHOENIX_HOOKS_DIR", dir.join("hooks"))
        .env("PHOENIX_STATE_DIR", dir.join("state"))
        .env("PHOENIX_LOG_FILE", dir.join("phoenix.log"))
        .env("NO_COLOR", "1")
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

/// [`phoenix_command`] run: its exit code, wall time and output (stdout, then stderr).
pub fn phoenix(dir: &Path, args: &[&str], env: &[(String, String)]) -> (i32, Duration, String) {
    let mut cmd = phoenix_command(dir, args, env);
    let started = Instant::now();
    let out = cmd.output().expect("run phoenix");
    let wall = started.elapsed();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), wall, text)
}

/// Seconds, from microseconds.
pub fn secs(us: u64) -> String {
    format!("{:.2}", us as f64 / 1e6)
}

pub fn us(d: Duration) -> u64 {
    d.as_micros() as u64
}
