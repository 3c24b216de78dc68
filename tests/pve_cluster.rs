//! One fleet across a Proxmox cluster (DESIGN §10) end to end: the real `phoenix` over the
//! API against the model served as a cluster of three nodes (`pve-api-emulator` on a tree
//! with `etc/pve/.members`: one `etc/pve`, each node's own `local` and `local-zfs`, `ceph`
//! shared), with a real `sshd` per node whose `pct` is the `pct-emulator` acting as that
//! node (`tests/common/cluster.rs`).

#[path = "common/cluster.rs"]
mod cluster;
mod common;

use std::collections::BTreeSet;
use std::fs;

use cluster::Cluster;
use common::{Fixture, Run};
use serde_json::Value;

const NODES: [&str; 3] = ["pve1", "pve2", "pve3"];

struct Three {
    f: Fixture,
    c: Cluster,
}

impl Three {
    /// `f` on pve1, pve2 and pve3; pve2 has the GPUs.
    fn new(f: Fixture) -> Three {
        Three::with(f, &[])
    }

    fn with(f: Fixture, emulator_env: &[(&str, &str)]) -> Three {
        let c = Cluster::start_nodes(
            &f.tmp.path().join("cluster"),
            &NODES,
            &["pve2"],
            emulator_env,
        );
        Three { f, c }
    }

    fn phoenix(&self, args: &[&str]) -> Run {
        let env = self.c.env();
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let r = self.f.phoenix_env(args, &env);
        assert!(
            !r.stdout.contains(cluster::ROOT_PASSWORD)
                && !r.stderr.contains(cluster::ROOT_PASSWORD),
            "a secret was printed"
        );
        assert!(!r.stderr.contains("panicked"), "{}", r.stderr);
        r
    }

    fn requests_since(&self, n: usize) -> Vec<String> {
        self.c.requests()[n..].to_vec()
    }

    /// `pct` as an admin types it on `node`.
    fn pct(&self, node: &str, args: &[&str]) -> std::process::Output {
        std::process::Command::new(self.c.bin.join("pct"))
            .args(args)
            .env("PVE_EMULATOR_ROOT", &self.c.root)
            .env("PVE_EMULATOR_NODE", node)
            .output()
            .unwrap()
    }
}

fn is_read(request: &str) -> bool {
    request.starts_with("GET ") || request.starts_with("POST /api2/json/access/ticket ")
}

/// The changing requests, each as `METHOD PATH` without `/api2/json`.
fn changes(requests: &[String]) -> Vec<String> {
    requests
        .iter()
        .filter(|r| !is_read(r))
        .map(|r| {
            let mut w = r.split_whitespace();
            let (m, p) = (w.next().unwrap_or(""), w.next().unwrap_or(""));
            format!(
                "{m} {}",
                p.trim_start_matches("/api2/json")
                    .split('?')
                    .next()
                    .unwrap_or("")
            )
        })
        .collect()
}

/// The CTIDs changed by requests (`/nodes/<n>/lxc/<id>/…`, a clone as `clone of <id>`).
fn changed(requests: &[String]) -> BTreeSet<String> {
    changes(requests)
        .iter()
        .filter_map(|r| {
            let path = r.split_whitespace().nth(1)?;
            let parts: Vec<&str> = path.split('/').collect();
            match parts.as_slice() {
                ["", "nodes", _, "lxc", id, "clone"] => Some(format!("clone of {id}")),
                ["", "nodes", _, "lxc", id, ..] => Some(id.to_string()),
                ["", "nodes", _, "lxc"] => Some("new".to_string()),
                _ => None,
            }
        })
        .collect()
}

/// The example fleet spread over the cluster: the templates on pve1, the GPU CTs on
/// pve2, the rest (Portainer) on pve3.
fn spread() -> Fixture {
    let f = Fixture::example();
    f.edit_lxc(|v| {
        for (_, b) in v["lxc_configs"].as_object_mut().unwrap() {
            let gpu = b
                .get("gpu_assignment")
                .and_then(Value::as_str)
                .is_some_and(|g| g != "none");
            let template = b.get("is_template").and_then(Value::as_bool) == Some(true);
            let node = if gpu {
                "pve2"
            } else if template {
                "pve1"
            } else {
                "pve3"
            };
            b["node"] = Value::from(node);
        }
    });
    f
}

/// The example fleet less its GPU branch: 900 → 902 → 910.
fn small() -> Fixture {
    let f = Fixture::example();
    f.edit_lxc(|v| {
        let configs = v["lxc_configs"].as_object_mut().unwrap();
        configs.retain(|k, _| ["900", "902", "910"].contains(&k.as_str()));
    });
    f
}

fn entry(plan: &Value, ctid: u32) -> Value {
    plan["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["ctid"] == ctid)
        .cloned()
        .unwrap_or_else(|| panic!("no {ctid} in {plan:#}"))
}

fn finished(r: &Run) -> Vec<Value> {
    common::events(r)
        .into_iter()
        .filter(|e| e["event"] == "node_finished")
        .collect()
}

fn outcome(r: &Run, ctid: u32) -> Value {
    finished(r)
        .into_iter()
        .find(|e| e["ctid"] == ctid)
        .unwrap_or_else(|| panic!("no end of {ctid}:\n{}\n{}", r.stdout, r.stderr))
}

#[test]
fn the_example_fleet_spread_over_three_nodes_builds_no_ops_and_rebuilds_exactly_a_hooks_subtree() {
    let t = Three::new(spread());
    let r = t.phoenix(&["plan", "--output", "json"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let plan = r.json();
    for (ctid, node, via) in [
        (900, "pve1", None),
        (901, "pve2", Some(("migrate", "pve1"))),
        (902, "pve1", None),
        (903, "pve2", Some(("migrate", "pve1"))),
        (910, "pve3", Some(("migrate", "pve1"))),
        (920, "pve2", None),
        (950, "pve2", None),
    ] {
        let e = entry(&plan, ctid);
        assert_eq!(e["node"], node, "{e:#}");
        match via {
            Some((v, from)) => {
                assert_eq!(e["clone_via"]["via"], v, "{e:#}");
                assert_eq!(e["clone_via"]["source_node"], from, "{e:#}");
            }
            None => assert!(e.get("clone_via").is_none(), "{e:#}"),
        }
    }
    let human = t.phoenix(&["plan"]);
    assert!(
        human.stdout.contains("NODE")
            && human
                .stdout
                .contains("cloned on node pve1 beside 902, then migrated to pve3"),
        "{}",
        human.stdout
    );

    let r = t.phoenix(&["build", "--output", "json"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert_eq!(
        common::built(&r),
        common::set(&[900, 901, 902, 903, 910, 920, 950])
    );
    // Each CT's config is in its node's directory, its disk in its node's own pool.
    for (ctid, node) in [
        (900, "pve1"),
        (901, "pve2"),
        (902, "pve1"),
        (903, "pve2"),
        (910, "pve3"),
        (920, "pve2"),
        (950, "pve2"),
    ] {
        assert_eq!(t.c.node_of(ctid).as_deref(), Some(node), "CT {ctid}");
        let conf = fs::read_to_string(t.c.conf(ctid)).unwrap();
        assert!(conf.contains("\n[phx-"), "{ctid}: {conf}");
        assert!(
            t.c.files(node)
                .join(format!("rpool/data/subvol-{ctid}-disk-0"))
                .is_dir(),
            "CT {ctid}'s disk is on {node}"
        );
    }
    // The clone made beside its source and moved: on pve1, then migrated.
    let reqs = changes(&t.c.requests());
    for r in [
        "POST /nodes/pve1/lxc/902/clone",
        "POST /nodes/pve1/lxc/910/migrate",
        "POST /nodes/pve1/lxc/900/clone",
        "POST /nodes/pve1/lxc/901/migrate",
        "POST /nodes/pve2/lxc/903/clone",
    ] {
        assert!(reqs.iter().any(|x| x == r), "no {r} in {reqs:#?}");
    }
    // GPU CTs got their devices and driver on pve2, the node with the GPUs, over its SSH.
    let conf = fs::read_to_string(t.c.conf(950)).unwrap();
    assert!(conf.contains("dev0: /dev/nvidia0"), "{conf}");
    assert!(
        t.c.commands(903)
            .contains("bash /tmp/phoenix-step-nvidia.sh"),
        "{}",
        t.c.commands(903)
    );
    let log = t.phoenix(&["log", "910"]).stdout;
    assert!(
        log.contains("> migrate 910 pve3") && log.contains("cloned on node pve1"),
        "{log}"
    );

    // A no-op: only reads, 2 per CT and a constant.
    let before = t.c.requests().len();
    let r = t.phoenix(&["build"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("7 fresh"), "{}", r.stdout);
    let again = t.requests_since(before);
    assert!(again.iter().all(|r| is_read(r)), "{again:#?}");
    assert!(
        again.len() <= 2 * 7 + 3,
        "{} requests: {again:#?}",
        again.len()
    );
    let status = t.phoenix(&["status", "--output", "json"]).json();
    let on: Vec<(u64, String)> = status["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            (
                n["ctid"].as_u64().unwrap(),
                n["node"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert!(
        on.contains(&(910, "pve3".into())) && on.contains(&(950, "pve2".into())),
        "{on:?}"
    );

    // A hook edit rebuilds exactly its subtree, on its nodes.
    let before = t.c.requests().len();
    let untouched: Vec<Vec<u8>> = [900, 901, 902, 903, 910]
        .iter()
        .map(|c| fs::read(t.c.conf(*c)).unwrap())
        .collect();
    let hook = t.f.hook_path(920);
    let mut text = fs::read_to_string(&hook).unwrap();
    text.push_str("\necho tuned\n");
    fs::write(&hook, text).unwrap();
    let r = t.phoenix(&["build"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert_eq!(
        changed(&t.requests_since(before)),
        ["920", "950", "clone of 903"]
            .into_iter()
            .map(String::from)
            .collect(),
    );
    let after: Vec<Vec<u8>> = [900, 901, 902, 903, 910]
        .iter()
        .map(|c| fs::read(t.c.conf(*c)).unwrap())
        .collect();
    assert_eq!(after, untouched);
    assert_eq!(t.c.node_of(920).as_deref(), Some("pve2"));
}

#[test]
fn a_clone_across_nodes_takes_target_on_shared_storage_and_is_moved_after_on_local_storage() {
    // 900 on pve1's local-zfs; 902 on pve2 in ceph (shared): made there at once; 910 on
    // pve3's local-zfs, cloned from 902 on pve2: made beside 902, then moved.
    let f = small();
    f.edit_block(900, |b| {
        b.insert("node".into(), "pve1".into());
    });
    f.edit_block(902, |b| {
        b.insert("node".into(), "pve2".into());
        b.insert("storage_pool".into(), "ceph".into());
    });
    f.edit_block(910, |b| {
        b.insert("node".into(), "pve3".into());
    });
    let t = Three::new(f);
    let plan = t.phoenix(&["plan", "--output", "json"]).json();
    assert_eq!(entry(&plan, 902)["clone_via"]["via"], "target");
    assert_eq!(entry(&plan, 910)["clone_via"]["via"], "migrate");
    assert_eq!(entry(&plan, 910)["clone_via"]["source_node"], "pve2");
    let r = t.phoenix(&["build"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let reqs = changes(&t.c.requests());
    assert!(
        reqs.contains(&"POST /nodes/pve1/lxc/900/clone".to_string()),
        "{reqs:#?}"
    );
    assert!(
        !reqs.iter().any(|r| r.contains("/902/migrate")),
        "902 needed no move: {reqs:#?}"
    );
    assert!(
        reqs.contains(&"POST /nodes/pve2/lxc/910/migrate".to_string()),
        "{reqs:#?}"
    );
    let log902 = t.phoenix(&["log", "902"]).stdout;
    assert!(
        log902.contains("straight onto node pve2 (target)"),
        "{log902}"
    );
    assert_eq!(t.c.node_of(902).as_deref(), Some("pve2"));
    let conf = fs::read_to_string(t.c.conf(902)).unwrap();
    assert!(conf.contains("rootfs: ceph:vm-902-disk-0"), "{conf}");
    assert!(t.c.root.join("ceph/vm-pool/vm-902-disk-0").is_dir());
    assert_eq!(t.c.node_of(910).as_deref(), Some("pve3"));
    assert!(t
        .c
        .files("pve3")
        .join("rpool/data/subvol-910-disk-0")
        .is_dir());
    assert!(
        !t.c.files("pve2")
            .join("rpool/data/subvol-910-disk-0")
            .exists(),
        "the copy beside the source went with the move"
    );
    let r = t.phoenix(&["build"]);
    assert!(r.stdout.contains("3 fresh"), "{}", r.stdout);
}

#[test]
fn a_block_moved_to_another_node_is_migrated_with_its_data_and_snapshots_and_is_fresh_after() {
    let f = small();
    f.edit_hv(|hv| hv["proxmox_defaults"]["default_node"] = Value::from("pve1"));
    let t = Three::new(f);
    assert_eq!(t.phoenix(&["build"]).code, 0);
    // A second generation of 910 (its hook changed: rebuilt in place), and its data.
    let hook = t.f.hook_path(910);
    let mut text = fs::read_to_string(&hook).unwrap();
    text.push_str("\necho again\n");
    fs::write(&hook, text).unwrap();
    assert_eq!(t.phoenix(&["build"]).code, 0);
    let disk = |node: &str| t.c.files(node).join("rpool/data/subvol-910-disk-0");
    fs::write(disk("pve1").join("root/data.txt"), "the CT's data\n").unwrap();
    let snaps = t.c.snapshots(910);
    assert_eq!(snaps.len(), 2, "{snaps:?}");

    t.f.edit_block(910, |b| {
        b.insert("node".into(), "pve3".into());
    });
    let plan = t.phoenix(&["plan", "--output", "json"]).json();
    let e = entry(&plan, 910);
    assert_eq!(e["action"], "migrate", "{e:#}");
    assert_eq!(e["node"], "pve3");
    assert_eq!(e["moves"]["from"], "pve1");
    assert_eq!(e["moves"]["to"], "pve3");
    assert_eq!(e["moves"]["cause"], "placed");
    assert_eq!(e["moves"]["restart"], true, "it runs");
    // `why` says it moves and is not rebuilt.
    let why = t.phoenix(&["why", "910"]).stdout;
    assert!(
        why.contains("would be migrated, not rebuilt")
            && why.contains("placement is not content")
            && why.contains("migrated pve1 → pve3"),
        "{why}"
    );
    let why_json = t.phoenix(&["why", "910", "--output", "json"]);
    assert_eq!(why_json.code, 0, "{}", why_json.stderr);

    let before = t.c.requests().len();
    let r = t.phoenix(&["build", "--output", "json"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert_eq!(outcome(&r, 910)["action"], "migrate");
    assert_eq!(outcome(&r, 910)["outcome"], "built");
    let done = changes(&t.requests_since(before));
    assert_eq!(
        done,
        vec!["POST /nodes/pve1/lxc/910/migrate".to_string()],
        "a move, nothing else"
    );
    assert_eq!(t.c.node_of(910).as_deref(), Some("pve3"));
    assert_eq!(t.c.snapshots(910), snaps, "its snapshots went with it");
    assert_eq!(
        fs::read_to_string(disk("pve3").join("root/data.txt")).unwrap(),
        "the CT's data\n"
    );
    assert!(!disk("pve1").exists());
    assert!(
        disk("pve3").join(".zfs/snapshot").join(&snaps[0]).is_dir(),
        "the ZFS snapshots were sent along"
    );
    let status = t.phoenix(&["status", "--output", "json"]).json();
    let row = status["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["ctid"] == 910)
        .cloned()
        .unwrap();
    assert_eq!(row["state"], "running", "started again on pve3");
    assert_eq!(row["node"], "pve3");
    assert_eq!(row["action"], "fresh");
    let why = t.phoenix(&["why", "910"]).stdout;
    assert!(why.contains("is up to date"), "{why}");
}

#[test]
fn a_ct_moved_by_hand_is_reported_and_left_where_it_is() {
    let t = Three::new(small());
    assert_eq!(t.phoenix(&["build"]).code, 0);
    assert_eq!(
        t.c.node_of(910).as_deref(),
        Some("pve1"),
        "new CTs go to the URL's node"
    );
    // An admin moves it.
    let out = t.pct("pve1", &["migrate", "910", "pve2", "--restart", "1"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(t.c.node_of(910).as_deref(), Some("pve2"));

    let plan = t.phoenix(&["plan", "--output", "json"]).json();
    let e = entry(&plan, 910);
    assert_eq!(e["action"], "fresh", "{e:#}");
    assert_eq!(e["node"], "pve2");
    assert_eq!(e["moved_outside"], "pve1");
    let human = t.phoenix(&["plan"]).stdout;
    assert!(
        human.contains("on node pve2, where it was moved outside phoenix (phoenix left it on pve1); nothing places it, so it stays"),
        "{human}"
    );
    let before = t.c.requests().len();
    let r = t.phoenix(&["build"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        t.requests_since(before).iter().all(|r| is_read(r)),
        "left where it is"
    );
    assert_eq!(t.c.node_of(910).as_deref(), Some("pve2"));

    // Once its block asks for pve1, it goes back, and the plan says why.
    t.f.edit_block(910, |b| {
        b.insert("node".into(), "pve1".into());
    });
    let e = entry(&t.phoenix(&["plan", "--output", "json"]).json(), 910);
    assert_eq!(e["action"], "migrate");
    assert_eq!(e["moves"]["cause"], "moved_outside");
    let r = t.phoenix(&["build"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(t.c.node_of(910).as_deref(), Some("pve1"));
}

#[test]
fn a_node_offline_fails_its_subtree_the_others_build_and_the_next_build_converges() {
    let t = Three::new(spread());
    t.c.set_online("pve2", false);
    let plan = t.phoenix(&["plan", "--output", "json"]);
    assert_eq!(plan.code, 1, "{}", plan.stderr);
    let pre = plan.json()["preflight"].as_array().unwrap().clone();
    let failing: BTreeSet<u64> = pre.iter().map(|p| p["ctid"].as_u64().unwrap()).collect();
    assert_eq!(
        failing,
        [901, 903, 920, 950].into_iter().collect(),
        "{pre:#?}"
    );
    assert!(
        pre.iter().all(|p| p["check"] == "node"
            && p["message"]
                .as_str()
                .unwrap()
                .contains("node 'pve2' is offline")),
        "{pre:#?}"
    );
    let r = t.phoenix(&["build", "--output", "json"]);
    assert_eq!(r.code, 1, "{}\n{}", r.stdout, r.stderr);
    for ctid in [900, 902, 910] {
        assert_eq!(outcome(&r, ctid)["outcome"], "built", "{ctid}");
    }
    for ctid in [901, 903] {
        let o = outcome(&r, ctid);
        assert_eq!(o["outcome"], "failed");
        assert_eq!(o["failed_step"], "preflight");
        assert!(o["error"].as_str().unwrap().contains("pve2"), "{o:#}");
    }
    // 920 and 950 (on pve2 too) descend from 903.
    assert_eq!(outcome(&r, 920)["outcome"], "blocked");
    assert_eq!(outcome(&r, 950)["outcome"], "blocked");
    assert!(
        !t.c.requests()
            .iter()
            .any(|r| r.contains("/nodes/pve2/") && !is_read(r)),
        "nothing was asked of pve2"
    );

    // pve2 is back: the rest is built, and then nothing is left to do.
    t.c.set_online("pve2", true);
    let r = t.phoenix(&["build"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(
        r.stdout.contains("4 created") && r.stdout.contains("3 fresh"),
        "{}",
        r.stdout
    );
    let r = t.phoenix(&["build"]);
    assert!(r.stdout.contains("7 fresh"), "{}", r.stdout);
}

#[test]
fn a_node_that_goes_down_mid_build_leaves_nothing_that_looks_built_and_the_next_build_converges() {
    // Tasks on pve3 are slow, so that it can go down while 910's build runs.
    let t = Three::with(small_spread(), &[("PVE_API_EMULATOR_SLOW", "pve3=150")]);
    let env = t.c.env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let mut child = t.f.command(&["build"], &env).spawn().unwrap();
    // Once 910 has been moved to pve3 (its build then goes on there), pve3 goes down.
    let start = std::time::Instant::now();
    while t.c.node_of(910).as_deref() != Some("pve3") {
        assert!(start.elapsed().as_secs() < 60, "910 never reached pve3");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    t.c.set_online("pve3", false);
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(1));
    let conf = fs::read_to_string(t.c.conf(910)).unwrap();
    assert!(!conf.contains("\n[phx-"), "no build snapshot: {conf}");
    let plan = t.phoenix(&["plan", "--output", "json"]);
    assert_eq!(entry(&plan.json(), 910)["action"], "unreachable");
    // Back: the unfinished build is replaced and the fleet converges.
    t.c.set_online("pve3", true);
    let plan = t.phoenix(&["plan", "--output", "json"]).json();
    let e = entry(&plan, 910);
    assert_eq!(e["action"], "rebuild", "{e:#}");
    assert_eq!(e["cause"], "unfinished");
    let r = t.phoenix(&["build"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(t.phoenix(&["build"]).stdout.contains("3 fresh"));
}

/// 900 and 902 on pve1, 910 on pve3.
fn small_spread() -> Fixture {
    let f = small();
    for (ctid, node) in [(900, "pve1"), (902, "pve1"), (910, "pve3")] {
        f.edit_block(ctid, |b| {
            b.insert("node".into(), node.into());
        });
    }
    f
}

#[test]
fn ssh_that_does_not_reach_a_node_fails_the_cts_built_there_by_name() {
    let mut t = Three::new(small_spread());
    t.c.stop_sshd("pve3");
    let r = t.phoenix(&["build", "--output", "json"]);
    assert_eq!(r.code, 1, "{}\n{}", r.stdout, r.stderr);
    assert_eq!(outcome(&r, 900)["outcome"], "built");
    assert_eq!(outcome(&r, 902)["outcome"], "built");
    let o = outcome(&r, 910);
    assert_eq!(o["failed_step"], "preflight", "{o:#}");
    assert!(
        o["error"].as_str().unwrap().contains("node 'pve3'"),
        "{o:#}"
    );
    assert!(t.c.node_of(910).is_none(), "nothing was made for it");
}

#[test]
fn lost_quorum_stops_every_change_with_a_clear_error() {
    let t = Three::new(small());
    assert_eq!(t.phoenix(&["build"]).code, 0);
    phoenix::host::sim::cluster::Members::set_quorate(&t.c.root, false).unwrap();
    t.f.write_hook(910, "#!/bin/sh\necho changed\n");
    let before = t.c.requests().len();
    for args in [&["build"][..], &["plan"][..]] {
        let r = t.phoenix(args);
        assert_eq!(r.code, 6, "{}\n{}", r.stdout, r.stderr);
        assert!(
            r.stderr.contains("has lost quorum") && r.stderr.contains("pvecm status"),
            "{}",
            r.stderr
        );
    }
    assert!(t.requests_since(before).iter().all(|r| is_read(r)));
}

#[test]
fn gc_and_gc_orphans_reach_every_node() {
    let t = Three::new(spread());
    assert_eq!(t.phoenix(&["build"]).code, 0);
    // New generations of 910 (pve3) and 950 (pve2): their old snapshots are gc's.
    for ctid in [910, 950] {
        let hook = t.f.hook_path(ctid);
        let mut text = fs::read_to_string(&hook).unwrap();
        text.push_str("\necho again\n");
        fs::write(&hook, text).unwrap();
    }
    assert_eq!(t.phoenix(&["build"]).code, 0);
    assert_eq!(t.c.snapshots(910).len(), 2);
    assert_eq!(t.c.snapshots(950).len(), 2);
    let before = t.c.requests().len();
    let r = t.phoenix(&["gc", "--keep", "0"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let done = changes(&t.requests_since(before));
    assert!(
        done.iter()
            .any(|r| r.starts_with("DELETE /nodes/pve3/lxc/910/snapshot/phx-"))
            && done
                .iter()
                .any(|r| r.starts_with("DELETE /nodes/pve2/lxc/950/snapshot/phx-")),
        "{done:#?}"
    );
    assert_eq!(t.c.snapshots(910).len(), 1);
    assert_eq!(t.c.snapshots(950).len(), 1);
    // Leaving the config: destroyed on their nodes.
    t.f.edit_lxc(|v| {
        let c = v["lxc_configs"].as_object_mut().unwrap();
        c.remove("910");
        c.remove("950");
    });
    let before = t.c.requests().len();
    let r = t.phoenix(&["gc", "--orphans"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let done = changes(&t.requests_since(before));
    assert!(
        done.contains(&"DELETE /nodes/pve3/lxc/910".to_string())
            && done.contains(&"DELETE /nodes/pve2/lxc/950".to_string()),
        "{done:#?}"
    );
    assert!(t.c.node_of(910).is_none() && t.c.node_of(950).is_none());
}

#[test]
fn a_node_the_cluster_does_not_have_is_named_with_the_nodes_it_has_before_any_change() {
    let f = small();
    f.edit_block(910, |b| {
        b.insert("node".into(), "pve9".into());
    });
    f.edit_hv(|hv| hv["proxmox_defaults"]["default_node"] = Value::from("pve7"));
    let t = Three::new(f);
    for args in [&["plan"][..], &["build"][..]] {
        let r = t.phoenix(args);
        assert_eq!(r.code, 3, "{}\n{}", r.stdout, r.stderr);
        assert!(
            r.stderr
                .contains("CT 910 is placed on node 'pve9', which is not a node of the cluster (it has: pve1, pve2, pve3)")
                && r.stderr.contains("default_node 'pve7' is not a node of the cluster"),
            "{}",
            r.stderr
        );
    }
    let r = t.phoenix(&["plan", "--output", "json"]);
    assert_eq!(r.json()["error"]["kind"], "invalid_config");
    assert_eq!(r.codes(), ["config::unknown-node", "config::unknown-node"]);
    assert!(t.c.requests().iter().all(|r| is_read(r)), "nothing changed");
    // On the simulated host, which is one machine, a `node` is refused the same way.
    let r = t.f.sim(&["plan"]);
    assert_eq!(r.code, 3, "{}", r.stderr);
    assert!(r.stderr.contains("(it has: sim)"), "{}", r.stderr);
}

#[test]
fn a_storage_a_node_lacks_fails_the_preflight_of_the_cts_placed_there() {
    let f = small_spread();
    f.edit_block(910, |b| {
        b.insert("storage_pool".into(), "ceph".into());
    });
    let t = Three::new(f);
    // Ceph reaches pve1 and pve2 only.
    let cfg = fs::read_to_string(t.c.root.join("etc/pve/storage.cfg")).unwrap();
    fs::write(
        t.c.root.join("etc/pve/storage.cfg"),
        cfg.replace("\tkrbd 1\n", "\tkrbd 1\n\tnodes pve1,pve2\n"),
    )
    .unwrap();
    let r = t.phoenix(&["plan", "--output", "json"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    let pre = r.json()["preflight"].as_array().unwrap().clone();
    assert_eq!(pre.len(), 1, "{pre:#?}");
    assert_eq!(pre[0]["ctid"], 910);
    assert_eq!(pre[0]["check"], "storage");
    let m = pre[0]["message"].as_str().unwrap();
    assert!(
        m.contains("storage 'ceph' is not available on node 'pve3'") && m.contains("it has:"),
        "{m}"
    );
}

#[test]
fn a_target_proxmox_refuses_fails_the_clone_with_its_words_and_blocks_only_its_subtree() {
    // 902 goes to pve2 in ceph (`target`); while 900's hook runs, an admin takes ceph
    // from pve2: Proxmox refuses the clone's `target` then.
    let f = small();
    f.edit_block(902, |b| {
        b.insert("node".into(), "pve2".into());
        b.insert("storage_pool".into(), "ceph".into());
    });
    let t = Three::new(f);
    let cfg = t.c.root.join("etc/pve/storage.cfg");
    t.f.write_hook(
        900,
        &format!(
            "#!/bin/sh\nsed -i 's/\\tkrbd 1/\\tkrbd 1\\n\\tnodes pve1,pve3/' '{}'\n",
            cfg.display()
        ),
    );
    let r = t.phoenix(&["build", "--output", "json"]);
    assert_eq!(r.code, 1, "{}\n{}", r.stdout, r.stderr);
    assert_eq!(outcome(&r, 900)["outcome"], "built");
    let o = outcome(&r, 902);
    assert_eq!(o["failed_step"], "clone", "{o:#}");
    assert!(
        o["error"]
            .as_str()
            .unwrap()
            .contains("storage 'ceph' is not available on node 'pve2'"),
        "{o:#}"
    );
    assert_eq!(outcome(&r, 910)["outcome"], "blocked");
    assert!(t.c.node_of(902).is_none(), "no half-made clone");
}

#[test]
fn two_blocks_placing_one_ctid_are_refused_before_any_change() {
    let t = Three::new(small());
    let text = t.f.lxc_text().replacen(
        "\"910\": {",
        "\"910\": {\"name\": \"Elsewhere\", \"memory_mb\": 512, \"cores\": 1, \"storage_pool\": \"local-zfs\", \"storage_size_gb\": 32, \"node\": \"pve2\", \"clone_from_template_ctid\": \"902\"},\n        \"910\": {",
        1,
    );
    t.f.write_text(common::LXC, &text);
    let r = t.phoenix(&["plan", "--output", "json"]);
    assert_eq!(r.code, 3, "{}\n{}", r.stdout, r.stderr);
    assert!(
        r.json()["problems"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["code"] == "json::duplicate-key" && p["pointer"] == "/lxc_configs/910"),
        "{}",
        r.stdout
    );
    assert!(t.c.requests().is_empty(), "the cluster was not even asked");
}

#[test]
fn a_move_that_would_lose_snapshots_is_held_until_consent_then_keeps_its_build() {
    let f = small();
    f.edit_hv(|hv| hv["proxmox_defaults"]["default_node"] = Value::from("pve1"));
    for ctid in [900, 902, 910] {
        f.edit_block(ctid, |b| {
            b.insert("storage_pool".into(), "local-lvm".into());
        });
    }
    let t = Three::new(f);
    let cfg = t.c.root.join("etc/pve/storage.cfg");
    let mut text = fs::read_to_string(&cfg).unwrap();
    text.push_str(
        "\nlvmthin: local-lvm\n\tthinpool data\n\tvgname pve\n\tcontent rootdir,images\n",
    );
    fs::write(&cfg, text).unwrap();
    assert_eq!(t.phoenix(&["build"]).code, 0);
    let snaps = t.c.snapshots(910);
    t.f.edit_block(910, |b| {
        b.insert("node".into(), "pve3".into());
    });
    let r = t.phoenix(&["plan", "--output", "json"]);
    assert_eq!(r.code, 4, "{}", r.stderr);
    let e = entry(&r.json(), 910);
    assert_eq!(e["action"], "held", "{e:#}");
    assert_eq!(e["cause"], "snapshots_lost");
    assert_eq!(e["storage"], "local-lvm");
    let human = t.phoenix(&["plan"]).stdout;
    assert!(
        human.contains("moving it to node pve3 deletes its snapshots")
            && human.contains("--drop-snapshots 910"),
        "{human}"
    );
    let r = t.phoenix(&["build"]);
    assert_eq!(r.code, 4, "held: {}", r.stdout);
    assert_eq!(t.c.node_of(910).as_deref(), Some("pve1"));
    // Consent: the snapshots go, it moves, its build snapshot is taken again there.
    let r = t.phoenix(&["build", "--drop-snapshots", "910"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert_eq!(t.c.node_of(910).as_deref(), Some("pve3"));
    assert_eq!(t.c.snapshots(910), vec![snaps.last().unwrap().clone()]);
    let r = t.phoenix(&["build"]);
    assert!(r.stdout.contains("3 fresh"), "{}", r.stdout);
}
