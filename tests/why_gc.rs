//! `phoenix why`, `phoenix gc` and `phoenix generations` on the simulated host.

mod common;

use std::collections::BTreeSet;
use std::fs;

use common::Fixture;
use serde_json::{json, Value};

fn built() -> Fixture {
    let f = Fixture::example();
    let r = f.sim(&["build"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    f
}

fn why_json(f: &Fixture, ctid: u32) -> Value {
    let r = f.sim(&["why", &ctid.to_string(), "--output", "json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    r.json()["explanation"].clone()
}

fn append_to_hook(f: &Fixture, ctid: u32, line: &str) {
    let hook = fs::read_to_string(f.hook_path(ctid)).unwrap();
    f.write_hook(ctid, &format!("{hook}{line}\n"));
}

#[test]
fn an_up_to_date_node_says_so_with_its_snapshot_and_parent() {
    let f = built();
    let ex = why_json(&f, 950);
    assert_eq!(ex["verdict"], "up_to_date");
    assert_eq!(ex["parent"], 920);
    let graph = f.phoenix(&["graph", "--format", "json"]).json();
    let snap = |c: u64| {
        graph["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["ctid"] == c)
            .unwrap()["snapshot"]
            .clone()
    };
    assert_eq!(ex["snapshot"], snap(950));
    assert_eq!(ex["parent_snapshot"], snap(920));
    let human = f.sim(&["why", "950"]);
    assert!(
        human
            .stdout
            .starts_with("CT 950 vllmQwen3Coder is up to date: phx-"),
        "{}",
        human.stdout
    );
    assert!(
        human.stdout.contains("cloned from 920 BaseTemplateVLLM"),
        "{}",
        human.stdout
    );
}

#[test]
fn a_template_hook_edit_is_explained_from_a_leaf_three_levels_down() {
    let f = built();
    append_to_hook(&f, 902, "echo checked twice");
    let ex = why_json(&f, 950);
    assert_eq!(ex["verdict"], "rebuild");
    assert_eq!(ex["cascade"], json!([902, 903, 920, 950]));
    let rc = &ex["root_causes"];
    assert_eq!(rc.as_array().unwrap().len(), 1);
    assert_eq!(rc[0]["ctid"], 902);
    assert_eq!(
        rc[0]["reasons"],
        json!([{
            "kind": "script", "script": "hook", "name": "phoenix_hypervisor_setup_902.sh",
            "old": rc[0]["reasons"][0]["old"], "new": rc[0]["reasons"][0]["new"],
            "added": 1, "removed": 0
        }])
    );
    let human = f.sim(&["why", "950"]).stdout;
    assert!(
        human.contains("root cause: 902 BaseTemplateDocker (forces 5 nodes)"),
        "{human}"
    );
    assert!(
        human.contains("hook phoenix_hypervisor_setup_902.sh: +1 −0 lines"),
        "{human}"
    );
    assert!(
        human.contains("cascade: 902 → 903 → 920 → 950: parent changed"),
        "{human}"
    );
    assert!(human.contains("unchanged on 950:"), "{human}");
    // -v shows the diff itself.
    let verbose = f.sim(&["why", "-v", "950"]).stdout;
    assert!(verbose.contains("+echo checked twice"), "{verbose}");
}

#[test]
fn a_driver_bump_names_the_old_and_new_versions() {
    let f = built();
    f.edit_lxc(|v| {
        v["nvidia_driver_version"] = json!("580.82.07");
        v["nvidia_runfile_url"] =
            json!("https://us.download.nvidia.com/XFree86/Linux-x86_64/580.82.07/NVIDIA-Linux-x86_64-580.82.07.run");
    });
    let ex = why_json(&f, 901);
    let reasons = ex["root_causes"][0]["reasons"].as_array().unwrap().clone();
    let driver = reasons
        .iter()
        .find(|r| r["field"] == "driver_version")
        .unwrap();
    assert_eq!(driver["kind"], "nvidia");
    assert_eq!(driver["old"], "580.76.05");
    assert_eq!(driver["new"], "580.82.07");
    let text = fs::read_to_string(f.lxc_path()).unwrap();
    let line = text
        .lines()
        .position(|l| l.contains("\"nvidia_driver_version\""))
        .unwrap()
        + 1;
    assert!(
        driver["at"]
            .as_str()
            .unwrap()
            .ends_with(&format!("phoenix_lxc_configs.json:{line}")),
        "{driver}"
    );
    assert!(reasons.iter().any(|r| r["field"] == "runfile_url"));
    // A non-GPU node is untouched by the bump.
    assert_eq!(why_json(&f, 910)["verdict"], "up_to_date");
    let human = f.sim(&["why", "903"]).stdout;
    assert!(
        human.contains("NVIDIA driver_version: 580.76.05 → 580.82.07"),
        "{human}"
    );
    // 903's own NVIDIA change is the root cause, not a cascade from 902.
    assert!(
        human.contains("root cause: 903 BaseTemplateDockerGPU"),
        "{human}"
    );
}

#[test]
fn a_memory_change_is_explained_as_an_update() {
    let f = built();
    f.edit_block(910, |b| {
        b.insert("memory_mb".into(), json!(6144));
    });
    let ex = why_json(&f, 910);
    assert_eq!(ex["verdict"], "update");
    assert_eq!(
        ex["changes"],
        json!([{"key": "memory", "old": "4096", "new": "6144"}])
    );
    let human = f.sim(&["why", "910"]).stdout;
    assert!(
        human.contains("only runtime settings differ, applied in place (update, no rebuild)"),
        "{human}"
    );
    assert!(human.contains("memory: 4096 → 6144 ("), "{human}");
    assert!(human.contains("phoenix_lxc_configs.json:"), "{human}");
}

#[test]
fn a_config_field_change_names_file_and_line() {
    let f = built();
    f.edit_block(902, |b| {
        b.insert("features".into(), json!("nesting=1,keyctl=1,fuse=1"));
    });
    let ex = why_json(&f, 902);
    let r = &ex["root_causes"][0]["reasons"][0];
    assert_eq!(r["kind"], "field");
    assert_eq!(r["field"], "features");
    // `features` is a set: shown (and hashed) sorted.
    assert_eq!(r["old"], "keyctl=1,nesting=1");
    assert_eq!(r["new"], "fuse=1,keyctl=1,nesting=1");
    let text = fs::read_to_string(f.lxc_path()).unwrap();
    let line = text.lines().position(|l| l.contains("fuse=1")).unwrap() + 1;
    assert!(
        r["at"]
            .as_str()
            .unwrap()
            .ends_with(&format!("phoenix_lxc_configs.json:{line}")),
        "{r}"
    );
}

#[test]
fn independent_root_causes_are_ranked_by_what_they_force() {
    let f = built();
    append_to_hook(&f, 902, "# 902 changed"); // forces 902, 903, 910, 920, 950
    append_to_hook(&f, 920, "# 920 changed"); // forces 920, 950
    f.edit_block(901, |b| {
        b.insert("vllm_model".into(), json!("x/y")); // forces 901 alone
    });
    let r = f.sim(&["why", "--output", "json"]);
    let all = r.json();
    let causes: Vec<(u64, usize)> = all["root_causes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["ctid"].as_u64().unwrap(),
                c["forces"].as_array().unwrap().len(),
            )
        })
        .collect();
    assert_eq!(causes, vec![(902, 5), (920, 2), (901, 1)]);

    // 950 has two root causes in its chain: the bigger one first.
    let ex = why_json(&f, 950);
    let ranked: Vec<u64> = ex["root_causes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["ctid"].as_u64().unwrap())
        .collect();
    assert_eq!(ranked, vec![902, 920]);
    let human = f.sim(&["why", "950"]).stdout;
    assert!(
        human.contains("2 root causes, ranked by how many nodes each forces"),
        "{human}"
    );
    assert!(
        human.find("1. 902").unwrap() < human.find("2. 920").unwrap(),
        "{human}"
    );
    let overall = f.sim(&["why"]).stdout;
    assert!(overall.starts_with("3 root causes"), "{overall}");
    assert!(overall.contains("1. 902 BaseTemplateDocker — forces 5: 902 rebuild, 903 rebuild, 910 held, 920 rebuild, 950 rebuild"), "{overall}");
}

#[test]
fn a_deleted_manifest_is_an_honest_unknown() {
    let f = built();
    append_to_hook(&f, 950, "# changed");
    for e in fs::read_dir(f.state_dir.join("manifests")).unwrap() {
        fs::remove_file(e.unwrap().path()).unwrap();
    }
    let ex = why_json(&f, 950);
    assert_eq!(ex["verdict"], "rebuild");
    let r = &ex["root_causes"][0]["reasons"][0];
    assert_eq!(r["kind"], "unknown");
    assert!(r["detail"].as_str().unwrap().contains("manifests"), "{r}");
    let human = f.sim(&["why", "950"]).stdout;
    assert!(human.contains("unknown: phx-"), "{human}");
    assert!(human.contains("does not have"), "{human}");
    // And the plan does not guess either: without the manifest the parent is still known
    // from the snapshot's description, so this in-place rebuild is still allowed.
    let plan = f.sim(&["plan", "--output", "json"]).json();
    let e950 = plan["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["ctid"] == 950)
        .unwrap()
        .clone();
    assert_eq!(e950["action"], "rebuild");
}

#[test]
fn never_built_and_not_managed_say_exactly_that() {
    let f = Fixture::example();
    assert_eq!(why_json(&f, 950)["verdict"], "never_built");
    assert!(f
        .sim(&["why", "950"])
        .stdout
        .contains("has never been built"));
    f.create_foreign_ct(910, "CT910");
    assert_eq!(why_json(&f, 910)["verdict"], "not_managed");
    assert!(f
        .sim(&["why", "910"])
        .stdout
        .contains("phoenix did not create it"));
}

#[test]
fn why_json_schema_is_stable() {
    let f = built();
    f.edit_block(901, |b| {
        b.insert("vllm_model".into(), json!("org/model"));
    });
    let r = f.sim(&["why", "901", "--output", "json"]);
    let mut v = r.json();
    let rc = &mut v["explanation"]["root_causes"][0];
    assert!(
        rc["old_hash"].as_str().unwrap().len() == 64
            && rc["new_hash"].as_str().unwrap().len() == 64
    );
    rc["old_hash"] = json!("OLD");
    rc["new_hash"] = json!("NEW");
    v["snapshot"] = json!("SNAP");
    let at = v["explanation"]["root_causes"][0]["reasons"][0]["at"]
        .as_str()
        .unwrap()
        .to_string();
    let text = fs::read_to_string(f.lxc_path()).unwrap();
    let line = text.lines().position(|l| l.contains("org/model")).unwrap() + 1;
    assert!(at.ends_with(&format!(".json:{line}")), "{at}");
    v["explanation"]["root_causes"][0]["reasons"][0]["at"] = json!("AT");
    assert_eq!(
        v,
        json!({
            "schema_version": 1,
            "ctid": 901,
            "name": "BaseTemplateGPU",
            "snapshot": "SNAP",
            "explanation": {
                "verdict": "rebuild",
                "action": "rebuild",
                "cascade": [901],
                "root_causes": [{
                    "ctid": 901,
                    "name": "BaseTemplateGPU",
                    "old_hash": "OLD",
                    "new_hash": "NEW",
                    "reasons": [{"kind": "field", "field": "vllm_model", "old": null, "new": "org/model", "at": "AT"}]
                }],
                "unchanged": [
                    "config fields gpu_assignment, is_template, storage_pool",
                    "hook phoenix_hypervisor_setup_901.sh",
                    "1 hooks lib file(s)",
                    "step script phoenix_hypervisor_lxc_nvidia.sh",
                    "NVIDIA settings",
                    "parent"
                ]
            }
        })
    );
}

#[test]
fn gc_after_in_place_rebuilds_removes_exactly_the_generations_beyond_keep() {
    let f = built();
    let mut gens = vec![f.snapshot_names(910)[0].clone()];
    for i in 0..3 {
        append_to_hook(&f, 910, &format!("# generation {i}"));
        assert_eq!(f.sim(&["build"]).code, 0);
        let now: BTreeSet<String> = f.snapshot_names(910).into_iter().collect();
        let newest = now.iter().find(|s| !gens.contains(s)).unwrap().clone();
        gens.push(newest);
    }
    // gens: oldest … newest (current).
    assert_eq!(f.snapshot_names(910).len(), 4);

    // --dry-run changes nothing and says what it would do, and why each is kept.
    let before = f.host_files();
    let r = f.sim(&["gc", "--dry-run", "--output", "json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(f.host_files(), before);
    let plan = r.json();
    let d910: Vec<(String, String)> = plan["snapshots"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["ctid"] == 910)
        .map(|d| {
            (
                d["snapshot"].as_str().unwrap().to_string(),
                format!(
                    "{}:{}",
                    d["decision"].as_str().unwrap(),
                    d["reason"].as_str().unwrap_or("")
                ),
            )
        })
        .collect();
    assert_eq!(
        d910,
        vec![
            (gens[3].clone(), "keep:wanted".to_string()),
            (gens[2].clone(), "keep:recent".to_string()),
            (gens[1].clone(), "delete:".to_string()),
            (gens[0].clone(), "delete:".to_string()),
        ]
    );
    let human = f.sim(&["gc", "--dry-run"]).stdout;
    assert!(human.contains("would delete"), "{human}");
    assert!(human.contains("keep: today's config builds it"), "{human}");
    assert!(
        human.contains("gc (dry run): 2 snapshot(s) would be deleted"),
        "{human}"
    );
    assert_eq!(f.host_files(), before);

    let r = f.sim(&["gc"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let left: BTreeSet<String> = f.snapshot_names(910).into_iter().collect();
    assert_eq!(
        left,
        [gens[3].clone(), gens[2].clone()].into_iter().collect()
    );
    // Nothing else moved, and the fleet is still fresh.
    let plan = f.sim(&["plan", "--output", "json"]).json();
    assert!(plan["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .all(|n| n["action"] == "fresh"));

    // --keep 0 leaves only the current generation.
    assert_eq!(f.sim(&["gc", "--keep", "0"]).code, 0);
    assert_eq!(f.snapshot_names(910), vec![gens[3].clone()]);
}

#[test]
fn gc_keeps_young_snapshots_and_never_touches_foreign_ones() {
    let f = built();
    append_to_hook(&f, 910, "# v2");
    assert_eq!(f.sim(&["build"]).code, 0);
    append_to_hook(&f, 910, "# v3");
    assert_eq!(f.sim(&["build"]).code, 0);
    // A snapshot of the user's own on a phoenix CT, and a CT that is not phoenix's.
    use phoenix::host::Host;
    f.sim_host()
        .snapshot(910, "before-upgrade", "mine")
        .unwrap();
    let r = f.sim(&[
        "gc",
        "--keep",
        "0",
        "--older-than",
        "1h",
        "--output",
        "json",
    ]);
    assert_eq!(r.code, 0);
    let v = r.json();
    let young = v["snapshots"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["reason"] == "young")
        .count();
    assert_eq!(young, 2, "{v}");
    assert_eq!(f.snapshot_names(910).len(), 4);
    assert!(f.sim(&["gc", "--keep", "0"]).code == 0);
    let left = f.snapshot_names(910);
    assert!(left.contains(&"before-upgrade".to_string()), "{left:?}");
    assert_eq!(left.len(), 2);
    let bad = f.sim(&["gc", "--older-than", "7 days"]);
    assert_eq!(bad.code, 2);
    assert!(bad.stderr.contains("--older-than"), "{}", bad.stderr);
}

#[test]
fn gc_orphans_only_with_the_flag() {
    let f = built();
    f.edit_lxc(|v| {
        v["lxc_configs"].as_object_mut().unwrap().remove("910");
    });
    let r = f.sim(&["gc", "--output", "json"]);
    assert_eq!(
        r.json()["orphans"],
        json!([{"ctid": 910, "name": "Portainer", "running": true, "destroy": false}])
    );
    assert!(f.ct(910).is_some());
    assert!(f
        .sim(&["gc"])
        .stdout
        .contains("pass --orphans to destroy it"));
    let dry = f.sim(&["gc", "--orphans", "--dry-run"]);
    assert!(dry.stdout.contains("would destroy"), "{}", dry.stdout);
    assert!(f.ct(910).is_some());
    let r = f.sim(&["gc", "--orphans"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(f.ct(910).is_none());
}

#[test]
fn gc_takes_the_build_lock() {
    let f = built();
    append_to_hook(&f, 900, "# force work: the whole fleet rebuilds, slowly");
    let mut first = f.spawn_sim(
        &["build", "--replace-all"],
        &[("PHOENIX_SIM_LATENCY", "*=200")],
    );
    f.wait_for_lock_holder(first.id());
    let lock = f.state_dir.join("phoenix.lock");
    let r = f.sim(&["gc", "--dry-run"]);
    first.kill().unwrap();
    first.wait().unwrap();
    assert_eq!(r.code, 5, "{}", r.stderr);
    assert!(
        r.stderr
            .contains(&format!("phoenix build (pid {}, started", first.id()))
            && r.stderr.contains("is building on the state directory"),
        "{}",
        r.stderr
    );
    assert!(lock.exists());
}

#[test]
fn generations_lists_newest_first_and_marks_the_current_one() {
    let f = built();
    append_to_hook(&f, 910, "# v2");
    assert_eq!(f.sim(&["build"]).code, 0);
    let r = f.sim(&["generations", "910", "--output", "json"]);
    let v = r.json();
    let g = v["generations"].as_array().unwrap();
    assert_eq!(g.len(), 2);
    assert_eq!(g[0]["current"], true);
    assert_eq!(g[0]["wanted"], true);
    assert_eq!(g[1]["current"], false);
    assert_eq!(g[0]["manifest"]["parent"]["ctid"], 902);
    assert_ne!(g[0]["manifest"]["hook"], g[1]["manifest"]["hook"]);
    let human = f.sim(&["generations", "910"]).stdout;
    assert!(
        human.starts_with("CT 910 Portainer: 2 generations (newest first)"),
        "{human}"
    );
    assert!(
        human.lines().nth(1).unwrap().starts_with("* phx-"),
        "{human}"
    );
    let _ = f.sim_env(&["generations", "950"], &[]);
}

#[test]
fn gc_never_touches_a_ct_phoenix_did_not_create_even_with_phx_named_snapshots() {
    let f = built();
    f.create_foreign_ct(960, "CT960");
    let host = f.sim_host();
    use phoenix::host::Host;
    let lookalike = format!("phx-{}", "ab".repeat(16));
    host.snapshot(960, &lookalike, "made by hand").unwrap();
    let conf = f.sim_host().conf_path(960);
    let before = fs::read(&conf).unwrap();
    let r = f.sim(&["gc", "--keep", "0", "--orphans", "--output", "json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let v = r.json();
    assert!(!v.to_string().contains("960"), "gc considered CT 960: {v}");
    assert_eq!(fs::read(&conf).unwrap(), before);
}

#[test]
fn corrupt_state_files_are_named_and_not_believed() {
    let f = Fixture::example();
    assert_eq!(f.sim(&["build"]).code, 0);
    let state = f.state_dir.clone();
    for dir in ["manifests", "blobs"] {
        for e in std::fs::read_dir(state.join(dir)).unwrap().flatten() {
            let text = std::fs::read(e.path()).unwrap();
            let mut tampered = text.clone();
            tampered.extend_from_slice(b"\n# tampered\n");
            if dir == "manifests" {
                let s = String::from_utf8(text).unwrap();
                tampered = s
                    .replacen("\"name\"", "\"name\": \"tampered\", \"x\"", 1)
                    .into_bytes();
            }
            std::fs::write(e.path(), tampered).unwrap();
        }
    }
    let hook = f.hook_path(902);
    let mut text = std::fs::read_to_string(&hook).unwrap();
    text.push_str("echo more\n");
    std::fs::write(&hook, text).unwrap();
    let r = f.sim(&["why", "950", "-v"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stderr
            .contains("is corrupt (its content does not match the hash it is named by)")
            && r.stderr.contains("manifests/"),
        "{}",
        r.stderr
    );
    assert!(!r.stdout.contains("tampered"), "{}", r.stdout);
}
