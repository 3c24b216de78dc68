//! `phoenix plan` and `phoenix build` on the embedded simulated host, driven through the
//! real binary: what each change to a fleet rebuilds, and what it leaves alone.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use common::{actions, build_json, built, events, finished, outcome_of, plan, set, Fixture, Run};
use serde_json::{json, Value};

const ALL: &[u64] = &[900, 901, 902, 903, 910, 920, 950];

#[test]
fn first_build_creates_every_node_and_the_second_is_all_fresh_without_mutating_calls() {
    let f = Fixture::example();
    let r = build_json(&f, &[]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert_eq!(built(&r), set(ALL));
    assert!(finished(&r).values().all(|(a, _)| a == "create"));

    let before = f.calls().len();
    let r2 = build_json(&f, &[]);
    assert_eq!(r2.code, 0, "{}", r2.stderr);
    assert_eq!(outcome_of(&r2, "fresh"), set(ALL));
    let new_calls = &f.calls()[before..];
    assert!(
        new_calls.iter().all(|c| c["mutating"] == false),
        "{new_calls:?}"
    );
    // One bulk read, whatever the fleet's size.
    assert_eq!(new_calls.len(), 1, "{new_calls:?}");
    let finished_event = events(&r2)
        .into_iter()
        .find(|e| e["event"] == "run_finished")
        .unwrap();
    assert_eq!(finished_event["host_calls"], json!({"inventory": 1}));

    // Human output says so too.
    let r3 = f.sim(&["build"]);
    assert_eq!(r3.code, 0);
    assert!(r3.stdout.contains("summary: 7 fresh"), "{}", r3.stdout);
}

#[test]
fn templates_are_left_stopped_and_containers_started() {
    let f = Fixture::example();
    assert_eq!(f.sim(&["build"]).code, 0);
    for c in [900, 901, 902, 903, 920] {
        assert_eq!(f.ct(c).unwrap()["running"], false, "template {c}");
    }
    for c in [910, 950] {
        assert_eq!(f.ct(c).unwrap()["running"], true, "container {c}");
    }
    // Every CT is marked as phoenix's and carries exactly its phx- snapshot.
    let graph = f.phoenix(&["graph", "--format", "json"]).json();
    for n in graph["nodes"].as_array().unwrap() {
        let c = n["ctid"].as_u64().unwrap() as u32;
        assert_eq!(f.ct(c).unwrap()["settings"]["managed"], true);
        assert_eq!(
            f.snapshot_names(c),
            vec![n["snapshot"].as_str().unwrap().to_string()]
        );
    }
}

#[test]
fn plan_and_build_agree() {
    let f = Fixture::example();
    // A host with history: built, then changed in several ways.
    assert_eq!(f.sim(&["build"]).code, 0);
    f.edit_block(910, |b| {
        b.insert("memory_mb".into(), json!(8192));
    });
    f.edit_block(950, |b| {
        b.remove("rebuild");
    });
    let hook = fs::read_to_string(f.hook_path(903)).unwrap();
    f.write_hook(903, &format!("{hook}\n# changed\n"));

    let planned = actions(&f, &[]);
    let r = build_json(&f, &[]);
    let ran: BTreeMap<u64, String> = finished(&r).into_iter().map(|(c, (a, _))| (c, a)).collect();
    assert_eq!(planned, ran);
    assert_eq!(planned[&910], "update");
    assert_eq!(planned[&903], "rebuild");
    assert_eq!(planned[&920], "rebuild");
    assert_eq!(planned[&950], "held");
    assert_eq!(planned[&900], "fresh");
    assert_eq!(r.code, 4, "held exits 4: {}", r.stderr);
}

#[test]
fn a_template_hook_edit_rebuilds_its_template_subtree_and_holds_its_containers() {
    let f = Fixture::example();
    f.edit_block(950, |b| {
        b.remove("rebuild");
    });
    assert_eq!(f.sim(&["build"]).code, 0);
    let hook = fs::read_to_string(f.hook_path(902)).unwrap();
    f.write_hook(902, &format!("{hook}\necho one more line\n"));

    let p = plan(&f, &[]);
    assert_eq!(p[&902]["action"], "rebuild");
    assert_eq!(p[&902]["mode"], "replace");
    assert_eq!(p[&910]["action"], "held");
    assert_eq!(p[&950]["action"], "held");
    // The plan holds the typed cause; the sentence is rendered for people.
    assert_eq!(p[&910]["cause"], "parent_changed");
    assert_eq!(p[&910]["changed_parent"], 902);
    assert!(p[&910].get("reason").is_none(), "{}", p[&910]);
    let human = f.sim(&["plan"]).stdout;
    assert!(human.contains("--replace 910"), "{human}");

    let r = build_json(&f, &[]);
    assert_eq!(r.code, 4, "{}", r.stderr);
    assert_eq!(built(&r), set(&[902, 903, 920]));
    assert_eq!(outcome_of(&r, "held"), set(&[910, 950]));
    assert_eq!(outcome_of(&r, "fresh"), set(&[900, 901]));

    // Held containers are untouched: same snapshot as before.
    let r = f.sim(&["build", "--replace-all"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let r = build_json(&f, &[]);
    assert_eq!(outcome_of(&r, "fresh"), set(ALL));
}

#[test]
fn replace_names_one_container() {
    let f = Fixture::example();
    f.edit_block(950, |b| {
        b.remove("rebuild");
    });
    assert_eq!(f.sim(&["build"]).code, 0);
    f.edit_block(902, |b| {
        b.insert("features".into(), json!("nesting=1,keyctl=1,fuse=1"));
    });
    let r = build_json(&f, &["--replace", "910"]);
    assert_eq!(r.code, 4, "{}", r.stderr);
    assert!(built(&r).contains(&910));
    assert_eq!(outcome_of(&r, "held"), set(&[950]));
}

#[test]
fn a_driver_bump_touches_exactly_the_gpu_subtree() {
    let f = Fixture::example();
    assert_eq!(f.sim(&["build"]).code, 0);
    f.edit_lxc(|v| {
        v["nvidia_driver_version"] = json!("580.82.07");
        v["nvidia_runfile_url"] =
            json!("https://us.download.nvidia.com/XFree86/Linux-x86_64/580.82.07/NVIDIA-Linux-x86_64-580.82.07.run");
    });
    let env = [("PHOENIX_SIM_NVIDIA_VERSION", "580.82.07")];
    let r = f.sim_env(&["build", "--output", "json"], &env);
    assert_eq!(r.code, 0, "{}", r.stderr);
    // 950 says "rebuild": "in-place" in the example: converged in place.
    assert_eq!(built(&r), set(&[901, 903, 920, 950]));
    assert_eq!(outcome_of(&r, "fresh"), set(&[900, 902, 910]));
}

#[test]
fn a_driver_that_differs_from_the_host_stops_the_gpu_subtree_only() {
    let f = Fixture::example();
    let env = [("PHOENIX_SIM_NVIDIA_VERSION", "570.172.08")];
    let r = f.sim_env(&["build", "--output", "json"], &env);
    assert_eq!(r.code, 1);
    assert_eq!(built(&r), set(&[900, 902, 910]));
    assert_eq!(outcome_of(&r, "failed"), set(&[901, 903]));
    assert_eq!(outcome_of(&r, "blocked"), set(&[920, 950]));
    let err = events(&r)
        .into_iter()
        .find(|e| e["ctid"] == 901 && e["event"] == "node_finished")
        .unwrap();
    assert_eq!(err["failed_step"], "preflight");
    assert!(
        err["error"].as_str().unwrap().contains("570.172.08"),
        "{err}"
    );
    // No GPU node was even created.
    assert!(f.ct(901).is_none());
}

/// The preflight of a plan: each node the host cannot build, with every (check,
/// message) it fails, in order.
fn preflight(r: &Run) -> BTreeMap<u64, Vec<(String, String)>> {
    let mut out: BTreeMap<u64, Vec<(String, String)>> = BTreeMap::new();
    for p in r.json()["preflight"].as_array().unwrap() {
        out.entry(p["ctid"].as_u64().unwrap()).or_default().push((
            p["check"].as_str().unwrap().to_string(),
            p["message"].as_str().unwrap().to_string(),
        ));
    }
    out
}

#[test]
fn plan_shows_the_preflight_that_build_enforces() {
    let f = Fixture::example();
    let env = [("PHOENIX_SIM_NVIDIA_VERSION", "570.172.08")];
    let r = f.sim_env(&["plan", "--output", "json"], &env);
    assert_eq!(
        r.code, 1,
        "a plan that cannot be built exits 1: {}",
        r.stderr
    );
    let p = preflight(&r);
    // Every GPU node that would build (920 and 950 also have GPUs).
    assert_eq!(p.keys().copied().collect::<Vec<_>>(), [901, 903, 920, 950]);
    assert_eq!(p[&901].len(), 1, "{:?}", p[&901]);
    let (check, message) = &p[&901][0];
    assert_eq!(check, "nvidia_driver");
    assert!(
        message.contains("570.172.08") && message.contains("580.76.05"),
        "{message}"
    );
    let r = f.sim_env(&["plan"], &env);
    assert_eq!(r.code, 1);
    assert!(
        r.stdout
            .contains("preflight: 4 node(s) cannot be built on this host")
            && r.stdout
                .contains("  901 BaseTemplateGPU: the host's NVIDIA kernel driver is 570.172.08"),
        "{}",
        r.stdout
    );
    // Nothing was touched: a plan is a read.
    assert!(f.ct(900).is_none());
}

#[test]
fn a_storage_or_os_template_the_host_lacks_fails_its_subtree_before_any_change() {
    let cases: [(&str, serde_json::Value, &str); 3] = [
        (
            "storage_pool",
            json!("tank"),
            "storage 'tank' does not exist in /etc/pve/storage.cfg (it has: local, local-zfs)",
        ),
        (
            "storage_pool",
            json!("local"),
            "storage 'local' does not hold container disks (content: iso,vztmpl,backup)",
        ),
        (
            "template",
            json!("local:vztmpl/debian-11-standard_11.7-1_amd64.tar.zst"),
            "pveam download local debian-11-standard_11.7-1_amd64.tar.zst",
        ),
    ];
    for (field, value, said) in cases {
        let f = Fixture::example();
        f.edit_block(900, |b| {
            b.insert(field.into(), value.clone());
        });
        let r = f.sim(&["plan", "--output", "json"]);
        assert_eq!(r.code, 1, "{field}: {}", r.stderr);
        let p = preflight(&r);
        assert_eq!(p.keys().copied().collect::<Vec<_>>(), [900], "{field}");
        assert_eq!(p[&900].len(), 1, "{field}: {:?}", p[&900]);
        assert_eq!(p[&900][0].0, "storage");
        assert!(p[&900][0].1.contains(said), "{field}: {}", p[&900][0].1);

        let r = build_json(&f, &[]);
        assert_eq!(r.code, 1, "{field}");
        assert_eq!(outcome_of(&r, "failed"), set(&[900]), "{field}");
        assert!(
            built(&r).is_empty(),
            "{field}: everything descends from 900"
        );
        assert!(f.ct(900).is_none(), "{field}: no CT was created");
        assert!(
            f.calls().iter().all(|c| c["mutating"] == false),
            "{field}: nothing on the host changed"
        );
    }
}

#[test]
fn the_preflight_names_every_problem_of_a_node_at_once() {
    let f = Fixture::example();
    f.edit_block(900, |b| {
        b.insert("storage_pool".into(), json!("tank"));
        b.insert(
            "template".into(),
            json!("local:vztmpl/debian-11-standard_11.7-1_amd64.tar.zst"),
        );
    });
    f.edit_block(901, |b| {
        b.insert("gpu_assignment".into(), json!("0,3"));
    });
    let env = [("PHOENIX_SIM_NVIDIA_VERSION", "570.172.08")];
    let r = f.sim_env(&["plan", "--output", "json"], &env);
    assert_eq!(r.code, 1, "{}", r.stderr);
    let p = preflight(&r);
    let checks = |ctid| p[&ctid].iter().map(|(c, _)| c.as_str()).collect::<Vec<_>>();
    assert_eq!(checks(900), ["storage", "storage"], "{:?}", p[&900]);
    assert!(
        p[&900][0].1.contains("storage 'tank' does not exist")
            && p[&900][1]
                .1
                .contains("pveam download local debian-11-standard_11.7-1_amd64.tar.zst"),
        "{:?}",
        p[&900]
    );
    assert_eq!(
        checks(901),
        ["nvidia_driver", "gpu_device"],
        "{:?}",
        p[&901]
    );
    assert!(p[&901][1].1.contains("no /dev/nvidia3"), "{:?}", p[&901]);

    // People read them all too, one line each.
    let r = f.sim_env(&["plan"], &env);
    assert_eq!(r.code, 1);
    for line in [
        "  900 BaseTemplate: storage 'tank' does not exist",
        "  900 BaseTemplate: OS template",
        "  901 BaseTemplateGPU: the host's NVIDIA kernel driver is 570.172.08",
        "  901 BaseTemplateGPU: CT 901 is assigned GPU 3",
    ] {
        assert!(
            r.stdout.lines().any(|l| l.starts_with(line)),
            "no line {line:?} in\n{}",
            r.stdout
        );
    }

    // The build fails the node with all of them, and its log lists each.
    let r = f.sim_env(&["build", "--output", "json"], &env);
    assert_eq!(r.code, 1);
    let err = events(&r)
        .into_iter()
        .find(|e| e["ctid"] == 900 && e["event"] == "node_finished")
        .unwrap();
    assert_eq!(err["failed_step"], "preflight");
    let message = err["error"].as_str().unwrap();
    assert!(
        message.starts_with("2 problems: (1) storage 'tank' does not exist")
            && message.contains("; (2) "),
        "{message}"
    );
    let log = f.sim(&["log", "900"]).stdout;
    for (_, m) in &p[&900] {
        assert!(log.contains(m.as_str()), "{m} not in\n{log}");
    }
}

#[test]
fn a_gpu_the_host_does_not_have_fails_its_node_in_preflight() {
    let f = Fixture::example();
    f.edit_block(901, |b| {
        b.insert("gpu_assignment".into(), json!("0,3"));
    });
    let r = f.sim(&["plan", "--output", "json"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    let p = preflight(&r);
    assert_eq!(p.keys().copied().collect::<Vec<_>>(), [901]);
    assert_eq!(p[&901].len(), 1, "{:?}", p[&901]);
    assert_eq!(p[&901][0].0, "gpu_device");
    assert!(
        p[&901][0]
            .1
            .contains("CT 901 is assigned GPU 3, but the host has no /dev/nvidia3"),
        "{:?}",
        p[&901]
    );
    let r = build_json(&f, &[]);
    assert_eq!(r.code, 1);
    assert_eq!(outcome_of(&r, "failed"), set(&[901]));
    assert!(f.ct(901).is_none());
}

#[test]
fn steps_and_hooks_start_once_systemd_has_booted_and_the_probe_is_bounded_by_the_ready_timeout() {
    let f = Fixture::example();
    let r = f.sim(&["build", "900", "--ready-timeout", "90"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    // The first command in the started CT waits for the end of its boot, no longer than
    // the ready timeout; the hook's own commands come after it.
    let history = f.sim_host().history(900).unwrap();
    assert_eq!(
        history[..2],
        [
            "extract local:vztmpl/ubuntu-24.04-standard_24.04-2_amd64.tar.zst",
            "timeout 90 systemctl is-system-running --wait",
        ],
        "{history:?}"
    );
    assert!(history[2].starts_with("dpkg-query"), "{history:?}");
    let log = f.sim(&["log", "900"]).stdout;
    assert!(log.contains("  ready: systemd is running"), "{log}");

    // No systemctl in the CT (exit 127): another init, ready once it runs commands.
    let f = Fixture::example();
    let env = [("PHOENIX_SIM_FAULTS", "exec:900=exit127*1")];
    let r = f.sim_env(&["build", "900"], &env);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let log = f.sim(&["log", "900"]).stdout;
    assert!(
        log.contains("ready: it runs commands; `systemctl` or `timeout` is not in the CT"),
        "{log}"
    );

    // systemd still starting when the timeout ends it (exit 124): the node fails at
    // wait_ready with systemd's state and what to do, its hook never runs.
    let f = Fixture::example();
    let env = [("PHOENIX_SIM_FAULTS", "exec:900=exit124*1")];
    let r = f.sim_env(&["build", "--output", "json"], &env);
    assert_eq!(r.code, 1, "{}", r.stderr);
    let failed = events(&r)
        .into_iter()
        .find(|e| e["ctid"] == 900 && e["event"] == "node_finished")
        .unwrap();
    assert_eq!(failed["failed_step"], "wait_ready", "{failed}");
    let message = failed["error"].as_str().unwrap();
    assert!(
        message.starts_with("CT 900 not ready after 300 s: systemd has not finished starting")
            && message.contains("systemctl list-jobs")
            && message.contains("--ready-timeout"),
        "{message}"
    );
    assert_eq!(outcome_of(&r, "blocked").len(), 6);
    let history = f.sim_host().history(900).unwrap();
    assert!(
        !history.iter().any(|c| c.starts_with("dpkg-query")),
        "the hook ran: {history:?}"
    );
}

#[test]
fn a_memory_change_is_an_update_not_a_rebuild() {
    let f = Fixture::example();
    assert_eq!(f.sim(&["build"]).code, 0);
    let snaps_before = f.snapshot_names(910);
    f.edit_block(910, |b| {
        b.insert("memory_mb".into(), json!(6144));
    });
    let p = plan(&f, &[]);
    assert_eq!(p[&910]["action"], "update");
    assert_eq!(
        p[&910]["changes"],
        json!([{"key": "memory", "old": "4096", "new": "6144"}])
    );
    let r = build_json(&f, &[]);
    assert_eq!(r.code, 0);
    assert_eq!(built(&r), set(&[910]));
    assert_eq!(f.ct(910).unwrap()["settings"]["memory_mb"], 6144);
    assert_eq!(f.snapshot_names(910), snaps_before);
    assert_eq!(f.ct(910).unwrap()["running"], true);
}

#[test]
fn a_failing_hook_blocks_exactly_its_subtree() {
    let f = Fixture::example();
    f.write_hook(
        903,
        "#!/bin/sh\necho 'driver check failed: no GPU visible' >&2\nexit 7\n",
    );
    let r = build_json(&f, &[]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert_eq!(outcome_of(&r, "failed"), set(&[903]));
    assert_eq!(outcome_of(&r, "blocked"), set(&[920, 950]));
    assert_eq!(built(&r), set(&[900, 901, 902, 910]));
    let blocked = events(&r)
        .into_iter()
        .find(|e| e["ctid"] == 950 && e["event"] == "node_finished")
        .unwrap();
    assert_eq!(blocked["blocked_by"], 903);

    // The human summary names the root cause first and the command to read its log.
    let r = f.sim(&["build"]);
    assert_eq!(r.code, 1);
    assert!(
        r.stdout
            .contains("✗ 903 BaseTemplateDockerGPU: failed at hook"),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("blocked by it: 920, 950"), "{}", r.stdout);
    assert!(r.stdout.contains("log: phoenix log 903"), "{}", r.stdout);
    let log = f.sim(&["log", "903"]);
    assert_eq!(log.code, 0);
    assert!(
        log.stdout.contains("driver check failed: no GPU visible"),
        "{}",
        log.stdout
    );
    assert!(
        log.stdout.contains("hook exited with code 7"),
        "{}",
        log.stdout
    );
    // The log ends with why the node failed.
    let last = log.stdout.trim_end().lines().last().unwrap_or("");
    assert!(
        last.starts_with("# failed at hook: hook ") && last.ends_with("exited with code 7"),
        "{last}"
    );
    // A failure outside any host call (the preflight) ends the log the same way.
    let env = [("PHOENIX_SIM_NVIDIA_VERSION", "570.172.08")];
    f.write_hook(903, "#!/bin/sh\nexit 0\n");
    assert_eq!(f.sim_env(&["build"], &env).code, 1);
    let log = f.sim(&["log", "903"]).stdout;
    assert!(
        log.trim_end()
            .lines()
            .last()
            .unwrap_or("")
            .starts_with("# failed at preflight: the host's NVIDIA kernel driver is 570.172.08"),
        "{log}"
    );
    // No snapshot for the failed node: the next run redoes it.
    assert!(f.snapshot_names(903).is_empty());
}

#[test]
fn fail_fast_starts_nothing_after_the_first_failure() {
    let f = Fixture::example();
    f.write_hook(900, "#!/bin/sh\nexit 1\n");
    let r = build_json(&f, &["--fail-fast", "-j", "1"]);
    assert_eq!(r.code, 1);
    assert_eq!(outcome_of(&r, "failed"), set(&[900]));
    assert!(built(&r).is_empty());
    // Everything under 900 is blocked by it; nothing is left unreported.
    assert_eq!(
        outcome_of(&r, "blocked"),
        set(&[901, 902, 903, 910, 920, 950])
    );

    // A failure elsewhere: 903's hook fails while 910 (another branch) has not started.
    let f = Fixture::example();
    f.write_hook(903, "#!/bin/sh\nexit 1\n");
    let r = build_json(&f, &["--fail-fast", "-j", "1"]);
    assert_eq!(r.code, 1);
    assert_eq!(outcome_of(&r, "failed"), set(&[903]));
    let cancelled = outcome_of(&r, "cancelled");
    assert!(!cancelled.is_empty(), "{}", r.stdout);
    let reported: BTreeSet<u64> = finished(&r).into_keys().collect();
    assert_eq!(reported, set(ALL), "every node has a node_finished event");
    let human = f.sim(&["build", "--fail-fast", "-j", "1"]);
    assert!(human.stdout.contains("cancelled"), "{}", human.stdout);
}

#[test]
fn a_target_builds_itself_and_the_ancestors_it_needs_nothing_else() {
    let f = Fixture::example();
    let r = build_json(&f, &["950"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(built(&r), set(&[900, 902, 903, 920, 950]));
    assert!(f.ct(901).is_none() && f.ct(910).is_none());
    let r = build_json(&f, &["910"]);
    assert_eq!(built(&r), set(&[910]));
    assert_eq!(outcome_of(&r, "fresh"), set(&[900, 902]));
    // An unknown target is an error naming it.
    let r = f.sim(&["build", "123"]);
    assert_eq!(r.code, 7);
    assert!(r.stderr.contains("CT 123 not defined"), "{}", r.stderr);
}

#[test]
fn transient_host_errors_are_retried() {
    let f = Fixture::example();
    let env = [(
        "PHOENIX_SIM_FAULTS",
        "clone:910=locked*2,snapshot:900=locked*1",
    )];
    let r = f.sim_env(&["build", "--output", "json"], &env);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let retries: Vec<Value> = events(&r)
        .into_iter()
        .filter(|e| e["event"] == "retry")
        .collect();
    assert_eq!(retries.len(), 3, "{retries:?}");
    assert!(retries.iter().all(|e| e["error"] == "CT is locked (disk)"));
    assert_eq!(built(&r), set(ALL));
}

#[test]
fn a_permanent_host_error_fails_the_node() {
    let f = Fixture::example();
    let r = f.sim_env(
        &["build", "--output", "json"],
        &[("PHOENIX_SIM_FAULTS", "start:902=fail")],
    );
    assert_eq!(r.code, 1);
    assert_eq!(outcome_of(&r, "failed"), set(&[902]));
    assert_eq!(outcome_of(&r, "blocked"), set(&[903, 910, 920, 950]));
}

#[test]
fn a_ct_phoenix_did_not_create_is_never_touched() {
    let f = Fixture::example();
    // Somebody's own CT 910, created by hand on the host.
    f.create_foreign_ct(910, "precious");
    let before = f.ct(910).unwrap();
    let calls_before = f.calls().len();

    let p = plan(&f, &[]);
    assert_eq!(p[&910]["action"], "unmanaged");
    let r = build_json(&f, &[]);
    assert_eq!(r.code, 1);
    assert_eq!(outcome_of(&r, "unmanaged"), set(&[910]));
    assert_eq!(built(&r), set(&[900, 901, 902, 903, 920, 950]));
    assert_eq!(f.ct(910).unwrap(), before, "CT 910 was modified");
    assert!(!f.calls()[calls_before..]
        .iter()
        .any(|c| c["ctid"] == 910 && c["mutating"] == true));
}

/// A config in the shape Proxmox writes, with keys phoenix does not model, raw `lxc.*`
/// lines, a pending change and a snapshot section.
const FOREIGN_CONF: &str = "#Somebody's database%3A do not touch
#second line
arch: amd64
cores: 4
cpulimit: 2
dev0: /dev/dri/renderD128,gid=44,mode=0666
features: nesting=1
hostname: precious
memory: 8192
mp0: local-zfs:subvol-{id}-disk-1,mp=/srv/data,size=64G
net0: name=eth0,bridge=vmbr0,hwaddr=BC:24:11:5E:1A:2B,ip=dhcp,type=veth
onboot: 1
ostype: debian
parent: before-upgrade
rootfs: local-zfs:subvol-{id}-disk-0,size=16G
swap: 512
tags: db;prod
unprivileged: 1
unused0: local-zfs:subvol-{id}-disk-2
lxc.apparmor.profile: unconfined
lxc.mount.entry: /srv/shared srv/shared none bind,create=dir 0 0

[pve:pending]
memory: 16384

[before-upgrade]
#Before the upgrade
arch: amd64
cores: 4
hostname: precious
memory: 8192
net0: name=eth0,bridge=vmbr0,hwaddr=BC:24:11:5E:1A:2B,ip=dhcp,type=veth
ostype: debian
rootfs: local-zfs:subvol-{id}-disk-0,size=16G
snaptime: 1700000000
swap: 512
unprivileged: 1
";

#[test]
fn a_foreign_conf_is_unmanaged_and_left_byte_identical_by_build_and_gc() {
    let f = Fixture::example();
    // One at a configured CTID, one outside the config.
    let at_910 = f.write_foreign_conf(910, &FOREIGN_CONF.replace("{id}", "910"));
    let at_960 = f.write_foreign_conf(960, &FOREIGN_CONF.replace("{id}", "960"));
    let bytes = |p: &Path| fs::read(p).unwrap();
    let (b910, b960) = (bytes(&at_910), bytes(&at_960));

    let p = plan(&f, &[]);
    assert_eq!(p[&910]["action"], "unmanaged");
    assert_eq!(p[&950]["action"], "create", "950 clones 920, not 910");
    let status = f.sim(&["status", "--output", "json"]).json();
    let row = status["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["ctid"] == 910)
        .unwrap()
        .clone();
    assert_eq!(row["managed"], false);
    assert_eq!(row["state"], "stopped");

    let r = build_json(&f, &[]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert_eq!(outcome_of(&r, "unmanaged"), set(&[910]));
    assert_eq!(bytes(&at_910), b910, "build wrote 910's config");
    assert_eq!(bytes(&at_960), b960, "build wrote 960's config");

    let gc = f.sim(&["gc", "--orphans", "--keep", "0", "--output", "json"]);
    assert_eq!(gc.code, 0, "{}", gc.stderr);
    let v = gc.json();
    assert!(!v.to_string().contains("960"), "gc considered CT 960: {v}");
    assert_eq!(bytes(&at_910), b910, "gc wrote 910's config");
    assert_eq!(bytes(&at_960), b960, "gc wrote 960's config");
    // The hooks' pct reads it as Proxmox would print it.
    let text = f.pct(&["config", "960"]).stdout;
    assert!(
        text.starts_with("arch: amd64\ncores: 4\ncpulimit: 2\ndescription: Somebody's database%3A do not touch%0Asecond line\n"),
        "{text}"
    );
    assert!(text.contains("memory: 16384\n"), "pending merged: {text}");
    assert!(text.ends_with("lxc.apparmor.profile: unconfined\nlxc.mount.entry: /srv/shared srv/shared none bind,create=dir 0 0\n"), "{text}");
}

#[test]
fn reverting_a_config_after_an_in_place_rebuild_is_a_rebuild() {
    let f = Fixture::example();
    assert_eq!(f.sim(&["build"]).code, 0);
    let original = fs::read_to_string(f.hook_path(910)).unwrap();
    let a = f.snapshot_names(910);
    f.write_hook(910, &format!("{original}\n# v2\n"));
    let r = build_json(&f, &[]);
    assert_eq!(built(&r), set(&[910]));
    let p_mode: Vec<Value> = events(&r)
        .into_iter()
        .filter(|e| e["event"] == "node_started")
        .collect();
    assert_eq!(p_mode[0]["action"], "rebuild");
    let ab = f.snapshot_names(910);
    assert_eq!(ab.len(), 2, "in place keeps the older generation: {ab:?}");

    f.write_hook(910, &original);
    let p = plan(&f, &[]);
    assert_eq!(
        p[&910]["action"], "rebuild",
        "an older generation does not make it fresh"
    );
    assert_eq!(p[&910]["mode"], "in-place");
    let r = build_json(&f, &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(built(&r), set(&[910]));
    let after = f.snapshot_names(910);
    assert_eq!(after.len(), 2);
    assert_eq!(
        f.ct(910).unwrap()["parent_snapshot"],
        a[0].as_str(),
        "the live CT now descends from a fresh {}",
        a[0]
    );
    assert_eq!(actions(&f, &[])[&910], "fresh");
}

#[test]
fn the_hook_contract() {
    let f = Fixture::example();
    // The hook's content is in the hash it checks, so the expected values live in files.
    let out = f.tmp.path().join("contract.txt");
    let expected_dir = f.tmp.path().join("expected");
    fs::create_dir_all(&expected_dir).unwrap();
    let script = format!(
        r#"#!/usr/bin/env bash
set -eu
fail() {{ echo "contract: $*" >&2; exit 9; }}
e() {{ cat "{dir}/$1"; }}
[ "$#" = 1 ] && [ "$1" = 950 ] || fail "argument: $*"
[ "$PHOENIX_CTID" = 950 ] || fail CTID
[ "$PHOENIX_NAME" = vllmQwen3Coder ] || fail NAME
[ "$PHOENIX_IS_TEMPLATE" = 0 ] || fail IS_TEMPLATE
[ "$PHOENIX_PARENT_CTID" = 920 ] || fail PARENT_CTID
[ "$PHOENIX_PARENT_SNAPSHOT" = "$(e parent_snapshot)" ] || fail PARENT_SNAPSHOT
[ "$PHOENIX_SNAPSHOT" = "$(e snapshot)" ] || fail "SNAPSHOT $PHOENIX_SNAPSHOT"
[ "$PHOENIX_HASH" = "$(e hash)" ] || fail HASH
[ "$PHOENIX_CONFIG_FILE" = "{config}" ] || fail CONFIG_FILE
echo "$PHOENIX_CONFIG_BLOCK" | grep -q '"vllm_tensor_parallel_size":1' || fail CONFIG_BLOCK
[ "$PHOENIX_NVIDIA_DRIVER_VERSION" = 580.76.05 ] || fail NVIDIA_DRIVER_VERSION
case "$PHOENIX_NVIDIA_RUNFILE_URL" in *580.76.05.run) ;; *) fail RUNFILE ;; esac
case "$PHOENIX_NVIDIA_REPO_URL" in https://*) ;; *) fail REPO ;; esac
[ "$PHOENIX_BACKEND" = sim ] || fail BACKEND
[ "$(pwd)" = "$PHOENIX_HOOKS_DIR" ] || fail "cwd $(pwd)"
[ "$(pct status 950)" = "status: running" ] || fail "pct status"
pct config 950 | grep -q '^hostname: vllmQwen3Coder$' || fail "pct config"
pct listsnapshot 920 | grep -q "$(e parent_snapshot)" || fail "pct listsnapshot"
echo hello > "{out}.in"
pct push 950 "{out}.in" /root/hello.txt
pct pull 950 /root/hello.txt "{out}"
pct exec 950 -- ls -la /root
pct snapshot 950 hook-made
pct delsnapshot 950 hook-made
if pct status 99999 2>/dev/null; then fail "status of a missing CT"; fi
echo contract-ok
"#,
        dir = expected_dir.display(),
        config = f.lxc_path().display(),
        out = out.display(),
    );
    f.write_hook(950, &script);
    let graph = f.phoenix(&["graph", "--format", "json"]).json();
    let node = |c: u64| {
        graph["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["ctid"] == c)
            .unwrap()
            .clone()
    };
    fs::write(
        expected_dir.join("snapshot"),
        node(950)["snapshot"].as_str().unwrap(),
    )
    .unwrap();
    fs::write(
        expected_dir.join("hash"),
        node(950)["hash"].as_str().unwrap(),
    )
    .unwrap();
    fs::write(
        expected_dir.join("parent_snapshot"),
        node(920)["snapshot"].as_str().unwrap(),
    )
    .unwrap();

    let r = f.sim(&["build", "950"]);
    let log = f.sim(&["log", "950"]).stdout;
    assert_eq!(r.code, 0, "{}\n{}\n{log}", r.stdout, r.stderr);
    assert!(log.contains("contract-ok"), "{log}");
    assert_eq!(fs::read_to_string(&out).unwrap(), "hello\n");
}

#[test]
fn a_second_build_while_one_runs_exits_with_the_holders_pid() {
    let f = Fixture::example();
    let mut first = f.spawn_sim(&["build"], &[("PHOENIX_SIM_LATENCY", "*=100")]);
    f.wait_for_lock_holder(first.id());
    let r = f.sim(&["build"]);
    first.kill().unwrap();
    first.wait().unwrap();
    assert_eq!(r.code, 5, "{}", r.stderr);
    assert!(
        r.stderr.contains(&format!("pid {}", first.id())),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("--wait"), "{}", r.stderr);
}

#[test]
fn deleting_the_lock_file_does_not_let_a_second_build_in() {
    let f = Fixture::example();
    let mut first = f.spawn_sim(&["build"], &[("PHOENIX_SIM_LATENCY", "*=100")]);
    f.wait_for_lock_holder(first.id());
    fs::remove_file(f.state_dir.join("phoenix.lock")).unwrap();
    let r = f.sim(&["build"]);
    let gc = f.sim(&["gc"]);
    first.kill().unwrap();
    first.wait().unwrap();
    assert_eq!(r.code, 5, "{}", r.stderr);
    assert_eq!(gc.code, 5, "{}", gc.stderr);
    // The kernel still knows who holds it.
    for run in [&r, &gc] {
        assert!(
            run.stderr
                .contains(&format!("phoenix build (pid {})", first.id())),
            "{}",
            run.stderr
        );
    }
}

#[test]
fn sigkill_in_the_middle_of_a_step_then_a_rerun_reaches_the_same_host_state() {
    // The reference: an uninterrupted build.
    let reference = Fixture::example();
    assert_eq!(reference.sim(&["build"]).code, 0);
    let want = reference.host_state();

    for kill_after_ms in [150u64, 450, 900] {
        let f = Fixture::example();
        let mut child = f.spawn_sim(
            &["build", "-j", "2"],
            &[("PHOENIX_SIM_LATENCY", "*=10,clone=120,exec=40")],
        );
        std::thread::sleep(Duration::from_millis(kill_after_ms));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let pending = actions(&f, &[])
            .into_values()
            .filter(|a| a != "fresh")
            .count();
        assert!(
            pending > 0,
            "the build had finished before the kill at {kill_after_ms} ms"
        );
        let r = f.sim(&["build"]);
        assert_eq!(
            r.code, 0,
            "rerun after kill at {kill_after_ms} ms:\n{}\n{}",
            r.stdout, r.stderr
        );
        let got = f.host_state();
        assert_eq!(
            got.keys().collect::<Vec<_>>(),
            want.keys().collect::<Vec<_>>()
        );
        for (k, v) in &want {
            let mut g = got[k].clone();
            let mut w = v.clone();
            // Snapshot descriptions carry build times; everything else must match.
            for x in [&mut g, &mut w] {
                x["settings"].as_object_mut().unwrap().remove("description");
            }
            assert_eq!(g, w, "{k} after kill at {kill_after_ms} ms");
        }
        let r = build_json(&f, &[]);
        assert_eq!(outcome_of(&r, "fresh"), set(ALL));
    }
}

#[test]
fn json_events_are_one_object_per_line_with_a_schema_version() {
    let f = Fixture::example();
    let r = build_json(&f, &[]);
    let evs = events(&r);
    assert_eq!(evs.first().unwrap()["event"], "run_started");
    assert_eq!(evs.last().unwrap()["event"], "run_finished");
    assert!(evs.iter().all(|e| e["schema_version"] == 1));
    let kinds: BTreeSet<&str> = evs.iter().map(|e| e["event"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        [
            "node_finished",
            "node_started",
            "run_finished",
            "run_started",
            "step_started"
        ]
        .into_iter()
        .collect()
    );
    let steps: Vec<&str> = evs
        .iter()
        .filter(|e| e["event"] == "step_started" && e["ctid"] == 950)
        .map(|e| e["step"].as_str().unwrap())
        .collect();
    assert_eq!(
        steps,
        [
            "clone",
            "settings",
            "devices",
            "start",
            "wait_ready",
            "nvidia",
            "docker",
            "hook",
            "shutdown",
            "snapshot",
            "restart"
        ]
    );
}

#[test]
fn status_shows_each_nodes_build_state_and_age() {
    let f = Fixture::example();
    assert_eq!(f.sim(&["build", "910"]).code, 0);
    let s = f.sim(&["status", "--output", "json"]).json();
    let rows: BTreeMap<u64, Value> = s["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| (n["ctid"].as_u64().unwrap(), n.clone()))
        .collect();
    assert_eq!(rows[&910]["state"], "running");
    assert_eq!(rows[&902]["state"], "stopped");
    assert_eq!(rows[&950]["state"], "missing");
    assert_eq!(rows[&910]["built_snapshot"], rows[&910]["snapshot"]);
    assert!(rows[&910]["age_s"].as_u64().unwrap() < 60);
    assert_eq!(rows[&950]["action"], "create");
    let human = f.sim(&["status"]);
    assert!(human.stdout.contains("Portainer"), "{}", human.stdout);
}

#[test]
fn plan_on_an_empty_host_and_the_pve_backend_message() {
    let f = Fixture::example();
    let r = f.sim(&["plan"]);
    assert_eq!(r.code, 0);
    assert!(r.stdout.contains("plan: 7 create"), "{}", r.stdout);
    let r = f.phoenix_env(&["plan"], &[("PHOENIX_BACKEND", "pve")]);
    assert_eq!(r.code, 6);
    assert!(r.stderr.contains("--backend sim"), "{}", r.stderr);
}

#[test]
fn sigkill_during_a_clone_leaves_locks_that_the_next_run_removes() {
    let reference = Fixture::example();
    assert_eq!(reference.sim(&["build"]).code, 0);
    let want = reference.host_state();

    let f = Fixture::example();
    let mut child = f.spawn_sim(
        &["build", "-j", "1"],
        &[("PHOENIX_SIM_LATENCY", "*=1,clone=5000")],
    );
    // Wait until the first clone holds its source's lock, then kill.
    let deadline = Instant::now() + Duration::from_secs(20);
    // (the source is locked first, then the target created with `lock: create`)
    let target_created = || {
        [901, 902]
            .iter()
            .any(|&c| f.ct(c).is_some_and(|c| c["lock"] == "create"))
    };
    while f.ct(900).is_none_or(|c| c["lock"] != "disk") || !target_created() {
        assert!(Instant::now() < deadline, "no clone started");
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(f.ct(900).unwrap()["lock"], "disk");

    let r = f.sim(&["build"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(
        r.stdout.contains("900 removed stale lock 'disk'"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout.contains("removed stale lock 'create'"),
        "{}",
        r.stdout
    );
    let got = f.host_state();
    for (k, v) in &want {
        let (mut g, mut w) = (got[k].clone(), v.clone());
        for x in [&mut g, &mut w] {
            x["settings"].as_object_mut().unwrap().remove("description");
        }
        assert_eq!(g, w, "{k}");
    }
}

#[test]
fn a_smaller_disk_is_never_shrunk_and_the_plan_says_so() {
    let f = Fixture::example();
    assert_eq!(f.sim(&["build"]).code, 0);
    f.edit_block(910, |b| {
        b.insert("storage_size_gb".into(), json!(40));
    });
    let p = plan(&f, &[]);
    assert_eq!(p[&910]["action"], "fresh");
    assert_eq!(p[&910]["disk_kept_gb"], 64);
    let human = f.sim(&["plan"]).stdout;
    assert!(
        human.contains("disks never shrink: kept at 64 GB"),
        "{human}"
    );
    let r = build_json(&f, &[]);
    assert_eq!(r.code, 0);
    assert_eq!(f.ct(910).unwrap()["disk_gb"], 64);
    // Growing it is an update.
    f.edit_block(910, |b| {
        b.insert("storage_size_gb".into(), json!(80));
    });
    assert_eq!(actions(&f, &[])[&910], "update");
    assert_eq!(build_json(&f, &[]).code, 0);
    assert_eq!(f.ct(910).unwrap()["disk_gb"], 80);
}

#[test]
fn an_in_place_rebuild_applies_changed_features_and_keeps_the_ct() {
    let f = Fixture::example();
    assert_eq!(f.sim(&["build"]).code, 0);
    let before = f.snapshot_names(910);
    f.edit_block(910, |b| {
        b.insert("features".into(), json!("nesting=1,keyctl=1,fuse=1"));
    });
    let p = plan(&f, &[]);
    assert_eq!(p[&910]["action"], "rebuild");
    assert_eq!(p[&910]["mode"], "in-place");
    let r = build_json(&f, &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let c = f.ct(910).unwrap();
    assert_eq!(
        c["settings"]["features"],
        json!({"nesting": "1", "keyctl": "1", "fuse": "1"})
    );
    assert_eq!(c["running"], true);
    // The same CT: its earlier generation is still there, under the new one.
    let after = f.snapshot_names(910);
    assert_eq!(after.len(), 2);
    assert!(after.contains(&before[0]));
}

/// The live display needs a terminal: `script` (util-linux) gives the build a real pty.
#[test]
fn on_a_terminal_build_shows_a_live_display_of_running_nodes() {
    if std::process::Command::new("script")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("skipped: `script` (util-linux) is not installed");
        return;
    }
    let f = Fixture::example();
    let bin = env!("CARGO_BIN_EXE_phoenix");
    let out = std::process::Command::new("script")
        .args(["-qfec", &format!("{bin} build -j 2"), "/dev/null"])
        .env("PHOENIX_CONFIG_DIR", &f.config_dir)
        .env("PHOENIX_HOOKS_DIR", &f.hooks_dir)
        .env("PHOENIX_STATE_DIR", &f.state_dir)
        .env("PHOENIX_BACKEND", "sim")
        .env("PHOENIX_SIM_LATENCY", "*=20,clone=400,create=400")
        .env_remove("NO_COLOR")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    // Redrawn in place: cursor up + erase line.
    assert!(text.contains("\x1b[1A\x1b[2K"), "{text}");
    // One line per running node with its step and elapsed time, and the overall count.
    let running = line_has_in_order(&text, "900 BaseTemplate", &["create", ".", "s\r"]);
    assert!(
        running,
        "no live line for 900 with its step and elapsed time:\n{text}"
    );
    assert!(text.contains("[0/7] building, 1 running"), "{text}");
    assert!(text.contains("[7/7] building"), "{text}");
    // Finished nodes stay as plain lines above, and the summary closes the run.
    assert!(
        text.contains("900 BaseTemplate             create done in"),
        "{text}"
    );
    assert!(text.contains("summary: 7 created"), "{text}");
}

/// True when some line contains `head` followed by every one of `parts`, in order.
fn line_has_in_order(text: &str, head: &str, parts: &[&str]) -> bool {
    text.split('\n').any(|line| {
        let Some(mut rest) = line.find(head).map(|i| &line[i + head.len()..]) else {
            return false;
        };
        for p in parts {
            match rest.find(p) {
                Some(i) => rest = &rest[i + p.len()..],
                None => return false,
            }
        }
        true
    })
}

#[test]
fn a_template_lost_and_recreated_from_the_same_inputs_changes_nothing_below_it() {
    let f = Fixture::example();
    f.edit_block(950, |b| {
        b.remove("rebuild");
    });
    assert_eq!(f.sim(&["build"]).code, 0);
    // Someone destroys template 902 by hand; 910 also got its own change.
    fs::remove_file(f.sim_host().conf_path(902)).unwrap();
    let hook = fs::read_to_string(f.hook_path(910)).unwrap();
    f.write_hook(910, &format!("{hook}\n# 910's own change\n"));
    let p = plan(&f, &[]);
    assert_eq!(p[&902]["action"], "create");
    // 902 comes back with the same hash: its clones are not "parent changed".
    assert_eq!(p[&903]["action"], "fresh");
    assert_eq!(p[&910]["action"], "rebuild");
    assert_eq!(p[&910]["mode"], "in-place");
    let r = build_json(&f, &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(built(&r), set(&[902, 910]));
}

#[test]
fn a_hook_that_hangs_is_killed_after_the_hook_timeout() {
    let f = Fixture::example();
    let marker = f.tmp.path().join("child-still-running");
    // The hook starts a child of its own, then hangs.
    f.write_hook(
        910,
        &format!(
            "#!/bin/sh\n(sleep 3; touch '{}') &\nsleep 60\n",
            marker.display()
        ),
    );
    let t0 = Instant::now();
    let r = build_json(&f, &["--hook-timeout", "1"]);
    assert!(
        t0.elapsed() < Duration::from_secs(20),
        "the build waited for the hook"
    );
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert_eq!(outcome_of(&r, "failed"), set(&[910]));
    assert_eq!(built(&r), set(&[900, 901, 902, 903, 920, 950]));
    let e = events(&r)
        .into_iter()
        .find(|e| e["ctid"] == 910 && e["event"] == "node_finished")
        .unwrap();
    assert!(
        e["error"].as_str().unwrap().contains("--hook-timeout 1 s"),
        "{e}"
    );
    // What the hook started was stopped with it.
    std::thread::sleep(Duration::from_secs(4));
    assert!(!marker.exists(), "the hook's child outlived it");
}

#[test]
fn relative_directories_work_from_where_phoenix_was_started() {
    // Hooks run in the hooks directory; their `pct` must still find the host.
    let f = Fixture::example();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_phoenix"))
        .args(["build", "--config-dir", "etc", "--hooks-dir", "hooks"])
        .args(["--state-dir", "state", "--backend", "sim"])
        .current_dir(f.tmp.path())
        .env("NO_COLOR", "1")
        .env_remove("PHOENIX_SIM_LATENCY")
        .env_remove("PHOENIX_SIM_FAULTS")
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(f.ct(950).is_some());
}

/// The `error` of a node's `node_finished` event.
fn node_error(r: &Run, ctid: u64) -> String {
    events(r)
        .into_iter()
        .find(|e| e["ctid"] == ctid && e["event"] == "node_finished")
        .and_then(|e| e["error"].as_str().map(str::to_string))
        .unwrap_or_default()
}

#[test]
fn a_hook_that_cannot_run_or_dies_by_a_signal_is_told_precisely() {
    let f = Fixture::example();
    f.write_hook(910, "#!/bin/sh\r\necho hi\r\n");
    let r = build_json(&f, &[]);
    assert_eq!(r.code, 1);
    let e = node_error(&r, 910);
    assert!(
        e.contains("ends with a carriage return (Windows line endings)"),
        "{e}"
    );

    f.write_hook(910, "#!/usr/bin/no-such-shell\necho hi\n");
    let e = node_error(&build_json(&f, &[]), 910);
    assert!(
        e.contains("its interpreter `/usr/bin/no-such-shell` does not exist"),
        "{e}"
    );

    for body in ["echo no interpreter named\n", ""] {
        f.write_hook(910, body);
        let e = node_error(&build_json(&f, &[]), 910);
        assert!(
            e.contains("it has no `#!` line naming its interpreter"),
            "{e}"
        );
    }

    f.write_hook(910, "#!/bin/sh\nkill -TERM $$\n");
    let e = node_error(&build_json(&f, &[]), 910);
    assert!(e.contains("was killed by signal 15 (SIGTERM)"), "{e}");
}

#[test]
fn what_a_hook_leaves_running_in_the_background_ends_with_it() {
    let f = Fixture::example();
    let pid_file = f.tmp.path().join("bg.pid");
    f.write_hook(
        910,
        &format!(
            "#!/bin/sh\nsleep 300 &\necho $! > {}\nexit 0\n",
            pid_file.display()
        ),
    );
    let r = build_json(&f, &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let pid = fs::read_to_string(&pid_file).unwrap().trim().to_string();
    wait_gone(&pid, "the hook's `sleep 300`");
}

#[test]
fn an_unreadable_config_beside_the_fleet_is_left_alone_and_stops_nothing() {
    let f = Fixture::example();
    let bad = f.write_foreign_conf(123, "this is not\u{0} a config\n[[[\n");
    let r = build_json(&f, &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stderr.contains("CT 123 is left alone") && r.stderr.contains("123.conf"),
        "{}",
        r.stderr
    );
    assert_eq!(built(&r).len(), 7);
    assert_eq!(fs::read(&bad).unwrap(), b"this is not\0 a config\n[[[\n");
    // At a CTID of the fleet, it is not phoenix's: unmanaged, untouched.
    let f = Fixture::example();
    f.write_foreign_conf(910, "garbage line\n");
    let p = plan(&f, &[]);
    assert_eq!(p[&910]["action"], "unmanaged");
}

#[test]
fn a_probe_that_cannot_run_fails_at_once_instead_of_waiting_out_the_ready_timeout() {
    // 126: the readiness probe cannot be executed in the CT.
    let f = Fixture::example();
    let env = [("PHOENIX_SIM_FAULTS", "exec:910=exit126")];
    let started = Instant::now();
    let r = f.sim_env(
        &["build", "--ready-timeout", "120", "--output", "json", "910"],
        &env,
    );
    assert_eq!(r.code, 1, "{}", r.stderr);
    let e = node_error(&r, 910);
    assert!(
        e.starts_with("CT 910 did not boot: the probe cannot run in it (exit code 126"),
        "{e}"
    );
    assert!(started.elapsed() < Duration::from_secs(60), "it waited");

    // 127: no `systemctl` (or `timeout`) in the CT: another init, ready at once; what
    // then cannot run fails as itself, without waiting either.
    let f = Fixture::example();
    let env = [("PHOENIX_SIM_FAULTS", "exec:910=exit127")];
    let started = Instant::now();
    let r = f.sim_env(
        &["build", "--ready-timeout", "120", "--output", "json", "910"],
        &env,
    );
    assert_eq!(r.code, 1, "{}", r.stderr);
    let finished = events(&r)
        .into_iter()
        .find(|e| e["ctid"] == 910 && e["event"] == "node_finished")
        .unwrap();
    assert_eq!(finished["failed_step"], "docker", "{finished}");
    assert!(started.elapsed() < Duration::from_secs(60), "it waited");
}

#[test]
fn sigint_cancels_the_run_cleanly_and_says_so() {
    let f = Fixture::example();
    let (pid_file, marker) = sleeping_hook(&f, 902);
    let child = spawn_json_build(&f, &[]);
    wait_for_file(&marker);
    let started = Instant::now();
    assert!(std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap()
        .success());
    let out = child.wait_with_output().unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "it did not stop"
    );
    assert_eq!(out.status.code(), Some(130));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("interrupted by SIGINT"), "{stderr}");
    let r = Run {
        code: 130,
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: stderr.into_owned(),
    };
    let evs = events(&r);
    assert_eq!(evs.last().unwrap()["event"], "run_finished");
    assert_eq!(evs.last().unwrap()["exit_code"], 130);
    // 902 was cut short; what descends from it never started.
    let cancelled = outcome_of(&r, "cancelled");
    assert!(
        cancelled.is_superset(&set(&[902, 903, 910, 920, 950])),
        "{cancelled:?}\n{}",
        r.stdout
    );
    assert!(outcome_of(&r, "failed").is_empty());
    // The hook is gone, and no CT carries a lock.
    let pid = fs::read_to_string(&pid_file).unwrap().trim().to_string();
    wait_gone(&pid, "the interrupted run's hook");
    for (ctid, ct) in f.host_state() {
        assert!(ct["lock"].is_null(), "CT {ctid} is locked: {ct}");
    }
    // The next run finishes the work.
    f.write_hook(902, "#!/bin/sh\nexit 0\n");
    assert_eq!(f.sim(&["build"]).code, 0);
}

#[test]
fn a_hook_that_a_sigkilled_run_left_running_is_ended_by_the_next_run() {
    let f = Fixture::example();
    let (pid_file, marker) = sleeping_hook(&f, 902);
    let child = f.spawn_sim(&["build"], &[]);
    wait_for_file(&marker);
    sigkill_then_the_next_run_ends(&f, child, &pid_file, "the killed run's hook");
}

/// SIGKILLs a build whose 902 hook left the process named in `pid_file` running, checks
/// that it survives, and that the next build (902's hook made trivial) ends it.
fn sigkill_then_the_next_run_ends(
    f: &Fixture,
    mut child: std::process::Child,
    pid_file: &Path,
    what: &str,
) {
    child.kill().unwrap(); // SIGKILL: phoenix cannot clean up
    child.wait().unwrap();
    let pid = fs::read_to_string(pid_file).unwrap().trim().to_string();
    assert!(
        Path::new("/proc").join(&pid).exists(),
        "{what} survives its run's SIGKILL"
    );
    f.write_hook(902, "#!/bin/sh\nexit 0\n");
    let r = f.sim(&["build"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    wait_gone(&pid, what);
}

#[test]
fn secret_values_in_hook_output_are_masked_in_the_log() {
    let f = Fixture::example();
    f.edit_block(910, |b| {
        b.insert(
            "portainer_admin_password".into(),
            json!("s3cr3t-horse-battery"),
        );
    });
    f.write_hook(
        910,
        "#!/bin/sh\necho \"block: $PHOENIX_CONFIG_BLOCK\"\necho 'pw=s3cr3t-horse-battery' >&2\n",
    );
    let r = f.sim(&["build", "910"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let log = f.sim(&["log", "910"]).stdout;
    assert!(log.contains("block: {"), "{log}");
    assert!(log.contains("pw=***"), "{log}");
    assert!(!log.contains("s3cr3t"), "{log}");
}

#[test]
fn every_run_appends_its_events_to_the_main_log() {
    let f = Fixture::example();
    assert_eq!(f.sim(&["build", "910"]).code, 0);
    let log = f.state_dir.join("phoenix.log");
    let first = fs::read_to_string(&log).unwrap();
    assert!(first.contains(" 910 Portainer"), "{first}");
    let line = first.lines().next().unwrap();
    // `2026-11-23T12:38:18Z <run> phoenix build ...`
    assert!(
        line.as_bytes()[10] == b'T' && line.contains("Z 20"),
        "{line}"
    );
    let elsewhere = f.tmp.path().join("logs/main.log");
    let r = f.sim(&["build", "--log-file", elsewhere.to_str().unwrap()]);
    assert_eq!(r.code, 0);
    assert!(fs::read_to_string(&elsewhere).unwrap().contains("950"));
    assert_eq!(
        fs::read_to_string(&log).unwrap(),
        first,
        "one log per run, as asked"
    );
    assert_eq!(f.sim(&["build"]).code, 0);
    let again = fs::read_to_string(&log).unwrap();
    assert!(
        again.starts_with(&first) && again.len() > first.len(),
        "appended"
    );
}

#[test]
fn debug_mode_is_verbose_for_phoenix_and_tells_hooks() {
    let f = Fixture::example();
    f.edit_hv(|v| v["behavior"]["debug_mode"] = json!(true));
    let out = f.tmp.path().join("debug.txt");
    f.write_hook(
        910,
        &format!(
            "#!/bin/sh\necho \"debug=$PHOENIX_DEBUG\" > {}\n",
            out.display()
        ),
    );
    let r = f.sim(&["build", "910"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.contains("INFO"), "as with -v: {}", r.stderr);
    assert_eq!(fs::read_to_string(&out).unwrap(), "debug=1\n");
}

#[test]
fn the_initial_setup_runs_on_the_host_before_any_node_and_a_failure_touches_nothing() {
    let f = Fixture::example();
    let out = f.tmp.path().join("setup.txt");
    let setup = f.hooks_dir.join("phoenix_hypervisor_initial_setup.sh");
    fs::write(
        &setup,
        format!(
            "#!/bin/sh\necho \"args=$# backend=$PHOENIX_BACKEND pct=$(command -v pct)\" >> {}\npct list >> {}\n",
            out.display(),
            out.display()
        ),
    )
    .unwrap();
    f.set_mode(&setup, 0o755);
    // plan says it will run; it is not a node input (no hash changes).
    let before = plan(&f, &[]);
    let r = f.sim(&["plan"]);
    assert!(
        r.stdout
            .contains("phoenix_hypervisor_initial_setup.sh runs on the host"),
        "{}",
        r.stdout
    );
    let r = f.sim(&["build"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let seen = fs::read_to_string(&out).unwrap();
    assert!(seen.starts_with("args=0 backend=sim pct=/"), "{seen}");
    // It ran before any node: the host had no CT yet (pct list printed nothing).
    assert_eq!(seen.lines().count(), 1, "{seen}");
    // A no-op build has no work: the set-up does not run.
    assert_eq!(f.sim(&["build"]).code, 0);
    assert_eq!(fs::read_to_string(&out).unwrap(), seen);

    // A failing set-up stops the run before any CT is touched.
    let g = Fixture::example();
    let setup = g.hooks_dir.join("phoenix_hypervisor_initial_setup.sh");
    fs::write(&setup, "#!/bin/sh\necho 'zfs pool missing' >&2\nexit 3\n").unwrap();
    g.set_mode(&setup, 0o755);
    assert_eq!(
        plan(&g, &[])[&950]["hash"],
        before[&950]["hash"],
        "the set-up is not a node input"
    );
    let r = g.sim(&["build"]);
    assert_eq!(r.code, 6, "{}", r.stderr);
    assert!(
        r.stderr
            .contains("the host set-up failed, so no CT was touched")
            && r.stderr.contains("exited with code 3"),
        "{}",
        r.stderr
    );
    assert!(g.ct(900).is_none());
    let logs = g.state_dir.join("logs/setup");
    let log = fs::read_dir(&logs).unwrap().next().unwrap().unwrap().path();
    assert!(fs::read_to_string(log)
        .unwrap()
        .contains("zfs pool missing"));
}

#[test]
fn without_rollback_on_failure_a_failed_ct_is_left_for_inspection() {
    let f = Fixture::example();
    f.write_hook(910, "#!/bin/sh\nexit 2\n");
    let r = build_json(&f, &[]);
    assert_eq!(r.code, 1);
    let e = node_error(&r, 910);
    assert!(
        e.contains("CT 910 is left as the failure left it (rollback_on_failure is off): look inside with `pct enter 910`"),
        "{e}"
    );
    assert!(f.ct(910).is_some());
}

#[test]
fn rollback_on_failure_destroys_a_half_built_ct_and_rolls_back_an_in_place_rebuild() {
    let f = Fixture::example();
    f.edit_hv(|v| v["behavior"]["rollback_on_failure"] = json!(true));
    assert_eq!(f.sim(&["build"]).code, 0);
    let before = f.ct(950).unwrap();
    assert_eq!(before["running"], true);

    // 950 says "rebuild": "in-place": a failed rebuild goes back to its last build.
    f.write_hook(950, "#!/bin/sh\nexit 2\n");
    let r = build_json(&f, &[]);
    assert_eq!(r.code, 1);
    let e = node_error(&r, 950);
    let old = before["parent_snapshot"].as_str().unwrap();
    assert!(
        e.contains(&format!(
            "CT 950 was rolled back to {old} (rollback_on_failure)"
        )),
        "{e}"
    );
    let after = f.ct(950).unwrap();
    assert_eq!(after["parent_snapshot"], before["parent_snapshot"]);
    assert_eq!(after["running"], true, "it ran before, so it runs again");

    // A CT the run created is destroyed, and the next plan creates it again.
    let g = Fixture::example();
    g.edit_hv(|v| v["behavior"]["rollback_on_failure"] = json!(true));
    g.write_hook(910, "#!/bin/sh\nexit 2\n");
    let r = build_json(&g, &[]);
    assert!(node_error(&r, 910).contains("the half-built CT 910 was destroyed"));
    assert!(g.ct(910).is_none());
    assert_eq!(plan(&g, &[])[&910]["action"], "create");
}

/// Makes CT `ctid`'s hook write its pid, say it started, and sleep for five minutes:
/// returns its pid file and its start marker.
fn sleeping_hook(f: &Fixture, ctid: u32) -> (std::path::PathBuf, std::path::PathBuf) {
    let marker = f.tmp.path().join("hook-started");
    let pid_file = f.tmp.path().join("hook.pid");
    f.write_hook(
        ctid,
        &format!(
            "#!/bin/sh\necho $$ > {}\ntouch {}\nsleep 300\n",
            pid_file.display(),
            marker.display()
        ),
    );
    (pid_file, marker)
}

fn wait_for_file(path: &Path) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !path.exists() {
        assert!(
            Instant::now() < deadline,
            "{} never appeared",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_users_own_step_scripts_run_on_the_host_with_the_originals_arguments() {
    let f = Fixture::example();
    let out = f.tmp.path().join("steps.txt");
    for name in [
        "phoenix_hypervisor_lxc_nvidia.sh",
        "phoenix_hypervisor_lxc_docker.sh",
    ] {
        let p = f.hooks_dir.join(name);
        fs::write(
            &p,
            format!(
                "#!/bin/sh\necho \"$(basename \"$0\") $*\" >> {}\npct status \"$1\" >> {}\n",
                out.display(),
                out.display()
            ),
        )
        .unwrap();
        f.set_mode(&p, 0o755);
    }
    let r = f.sim(&["build", "-j", "1", "901", "910"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let seen = fs::read_to_string(&out).unwrap();
    let lxc = f.lxc();
    let want_nvidia = format!(
        "phoenix_hypervisor_lxc_nvidia.sh 901 {} {} {}",
        lxc["nvidia_driver_version"].as_str().unwrap(),
        lxc["nvidia_repo_url"].as_str().unwrap(),
        lxc["nvidia_runfile_url"].as_str().unwrap()
    );
    assert!(seen.contains(&want_nvidia), "{seen}");
    assert!(
        seen.contains("phoenix_hypervisor_lxc_docker.sh 910 server 10.0.0.99 9001"),
        "{seen}"
    );
    // They ran on the host with the node's pct: the CT was running.
    assert!(seen.contains("status: running"), "{seen}");
}

/// A hook for 950 that delivers its `hf_token` into the CT (`/root/hf_token`) and
/// appends what it ran with to `runs` on the host.
fn token_hook(f: &Fixture) -> std::path::PathBuf {
    let runs = f.tmp.path().join("runs");
    f.write_hook(
        950,
        &format!(
            r#"#!/bin/sh
set -e
token=$(echo "$PHOENIX_CONFIG_BLOCK" | sed -n 's/.*"hf_token":"\([^"]*\)".*/\1/p')
printf '%s' "$token" > "{runs}.token"
pct push 950 "{runs}.token" /root/hf_token
echo "rotated=$PHOENIX_SECRETS_ROTATED $(pct status 950)" >> "{runs}"
"#,
            runs = runs.display()
        ),
    );
    runs
}

#[test]
fn a_changed_secret_is_an_update_by_name_delivered_by_the_hook_without_a_rebuild() {
    let f = Fixture::example();
    f.edit_block(950, |b| {
        b.insert("hf_token".into(), json!("hf_first_aaaaaaaaaaaa"));
    });
    let runs = token_hook(&f);
    assert_eq!(build_json(&f, &[]).code, 0);
    let pulled = f.tmp.path().join("pulled");
    let token_in_ct = || {
        let r = f.pct(&["pull", "950", "/root/hf_token", pulled.to_str().unwrap()]);
        assert_eq!(r.code, 0, "{}", r.stderr);
        fs::read_to_string(&pulled).unwrap()
    };
    assert_eq!(token_in_ct(), "hf_first_aaaaaaaaaaaa");
    // The second run knows the hook ran with this token.
    assert!(actions(&f, &[]).values().all(|a| a == "fresh"));
    let before = plan(&f, &[]);
    let snapshots = f.snapshot_names(950);

    f.edit_block(950, |b| {
        b.insert("hf_token".into(), json!("hf_second_bbbbbbbbbbb"));
    });
    let p = plan(&f, &[]);
    assert_eq!(p[&950]["action"], "update");
    assert_eq!(p[&950]["changes"], json!([]));
    assert_eq!(
        p[&950]["secrets"],
        json!([{"field": "hf_token", "change": "changed"}])
    );
    assert_eq!(
        p[&950]["hash"], before[&950]["hash"],
        "secrets are not hashed"
    );
    assert!(p.iter().all(|(c, e)| *c == 950 || e["action"] == "fresh"));
    let human = f.sim(&["plan"]);
    assert!(
        human
            .stdout
            .contains("secrets to deliver: hf_token (changed)"),
        "{}",
        human.stdout
    );
    let why = f.sim(&["why", "950"]);
    assert!(
        why.stdout.contains("secret hf_token: changed"),
        "{}",
        why.stdout
    );
    for out in [&human.stdout, &human.stderr, &why.stdout, &why.stderr] {
        assert!(
            !out.contains("hf_second") && !out.contains("hf_first"),
            "{out}"
        );
    }

    let calls = f.calls().len();
    let r = build_json(&f, &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(built(&r), set(&[950]));
    assert_eq!(finished(&r)[&950].0, "update");
    assert_eq!(token_in_ct(), "hf_second_bbbbbbbbbbb");
    let ran = fs::read_to_string(&runs).unwrap();
    assert_eq!(
        ran.lines().collect::<Vec<_>>(),
        [
            "rotated= status: running",
            "rotated=hf_token status: running"
        ]
    );
    assert_eq!(f.snapshot_names(950), snapshots, "no rebuild, no snapshot");
    let verbs: Vec<String> = f.calls()[calls..]
        .iter()
        .filter(|c| c["mutating"] == true)
        .map(|c| c["verb"].as_str().unwrap_or("?").to_string())
        .collect();
    assert!(
        !verbs
            .iter()
            .any(|v| ["destroy", "clone", "create", "snapshot"].contains(&v.as_str())),
        "{verbs:?}"
    );
    assert!(actions(&f, &[]).values().all(|a| a == "fresh"));

    // Never the value: not in the state directory, not in events, not in the log.
    let mut stored = Vec::new();
    for e in walk(&f.state_dir) {
        if !e.starts_with(f.state_dir.join("sim")) {
            stored.push((e.clone(), fs::read(&e).unwrap_or_default()));
        }
    }
    for (path, bytes) in &stored {
        let text = String::from_utf8_lossy(bytes);
        assert!(
            !text.contains("hf_second"),
            "{} holds the secret",
            path.display()
        );
    }
    assert!(!r.stdout.contains("hf_second"));
    let key = f.state_dir.join("secrets/key");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );
}

/// Every file under `dir`.
fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[test]
fn secrets_without_a_record_are_delivered_and_a_stopped_container_is_started_for_good() {
    let f = Fixture::example();
    f.edit_block(950, |b| {
        b.insert("hf_token".into(), json!("hf_first_aaaaaaaaaaaa"));
        b.insert(
            "vllm".into(),
            json!({"api_key": "sk-inner-cccccccc", "port": 8000}),
        );
    });
    let runs = token_hook(&f);
    assert_eq!(build_json(&f, &[]).code, 0);
    // The state directory was lost (or the CT built by an older phoenix).
    fs::remove_dir_all(f.state_dir.join("secrets")).unwrap();
    let p = plan(&f, &[]);
    assert_eq!(
        p[&950]["secrets"],
        json!([
            {"field": "hf_token", "change": "unrecorded"},
            {"field": "vllm.api_key", "change": "unrecorded"}
        ])
    );
    let why = f.sim(&["why", "950"]).stdout;
    assert!(why.contains("secret vllm.api_key: not on record"), "{why}");
    // A standard container is built to run: one stopped by hand is started, and stays
    // started once its secrets are delivered.
    assert_eq!(f.pct(&["stop", "950"]).code, 0);
    assert_eq!(
        plan(&f, &[])[&950]["changes"],
        json!([{"key": "running", "old": "stopped", "new": "running"}])
    );
    let r = build_json(&f, &["950"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(built(&r), set(&[950]));
    let last = fs::read_to_string(&runs).unwrap();
    assert_eq!(
        last.lines().last(),
        Some("rotated=hf_token,vllm.api_key status: running"),
        "started for the hook"
    );
    assert_eq!(f.pct(&["status", "950"]).stdout.trim(), "status: running");
    assert_eq!(actions(&f, &[])[&950], "fresh");

    // A field removed is a change too; a field added to a CT with a record is "added".
    f.edit_block(950, |b| {
        b.insert("vllm".into(), json!({"port": 8000}));
        b.insert("db_password".into(), json!("pw-dddddddd"));
    });
    assert_eq!(
        plan(&f, &[])[&950]["secrets"],
        json!([
            {"field": "db_password", "change": "added"},
            {"field": "vllm.api_key", "change": "removed"}
        ])
    );
}

#[test]
fn a_failed_delivery_keeps_the_secret_to_deliver() {
    let f = Fixture::example();
    f.edit_block(950, |b| {
        b.insert("hf_token".into(), json!("hf_first_aaaaaaaaaaaa"));
    });
    token_hook(&f);
    assert_eq!(build_json(&f, &[]).code, 0);
    f.edit_block(950, |b| {
        b.insert("hf_token".into(), json!("hf_second_bbbbbbbbbbb"));
    });
    let hook = fs::read_to_string(f.hook_path(950)).unwrap();
    f.write_hook(950, "#!/bin/sh\necho 'cannot reach the hub' >&2\nexit 3\n");
    let r = build_json(&f, &[]);
    assert_ne!(r.code, 0);
    assert_eq!(outcome_of(&r, "failed"), set(&[950]));
    let log = f.sim(&["log", "950"]).stdout;
    assert!(log.contains("cannot reach the hub"), "{log}");
    // The hook's content changed too: that is a rebuild now; put it back.
    f.write_hook(950, &hook);
    let p = plan(&f, &[]);
    assert_eq!(p[&950]["action"], "update");
    assert_eq!(
        p[&950]["secrets"],
        json!([{"field": "hf_token", "change": "changed"}])
    );
    assert_eq!(build_json(&f, &[]).code, 0);
    assert_eq!(actions(&f, &[])[&950], "fresh");
}

#[test]
fn a_template_secret_is_delivered_to_its_stopped_ct_and_the_plan_says_the_snapshot_keeps_the_old() {
    let f = Fixture::example();
    f.edit_block(920, |b| {
        b.insert("registry_token".into(), json!("reg-first-aaaaaaaa"));
    });
    assert_eq!(build_json(&f, &[]).code, 0);
    let snapshots = f.snapshot_names(920);
    f.edit_block(920, |b| {
        b.insert("registry_token".into(), json!("reg-second-bbbbbbb"));
    });
    let human = f.sim(&["plan"]).stdout;
    assert!(
        human.contains("registry_token (changed)") && human.contains("its snapshot keeps"),
        "{human}"
    );
    let acts = actions(&f, &[]);
    assert_eq!(acts[&920], "update");
    assert_eq!(acts[&950], "fresh", "a clone's own block is what it gets");
    let r = build_json(&f, &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(built(&r), set(&[920]));
    assert_eq!(f.pct(&["status", "920"]).stdout.trim(), "status: stopped");
    assert_eq!(f.snapshot_names(920), snapshots);
    let log = f.sim(&["log", "920"]).stdout;
    assert!(log.contains("# secrets delivered"), "{log}");
}

/// Whether this host gives phoenix a cgroup per hook (a writable cgroup v2 hierarchy, as
/// on Proxmox VE and on CI as root); without one, what leaves a hook's process group
/// cannot be followed, and the tests of that say so and stop.
fn hook_cgroups() -> bool {
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let Some(mount) = mountinfo.lines().find_map(|l| {
        let (left, right) = l.split_once(" - ")?;
        right
            .starts_with("cgroup2 ")
            .then(|| left.split_whitespace().nth(4).map(str::to_string))
            .flatten()
    }) else {
        eprintln!("no cgroup v2 hierarchy here: the cgroup-per-hook test does not apply");
        return false;
    };
    let own = fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    let rel = own
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .unwrap_or("/");
    let probe = Path::new(&mount)
        .join(rel.trim_start_matches('/'))
        .join(format!("phoenix-test-probe.{}", std::process::id()));
    let ok = fs::create_dir(&probe).is_ok();
    let _ = fs::remove_dir(&probe);
    if !ok {
        eprintln!("the cgroup v2 hierarchy is not writable here (run as root): the cgroup-per-hook test does not apply");
    }
    ok
}

/// Gone, or a zombie waiting for its new parent to reap it.
fn wait_gone(pid: &str, what: &str) {
    let proc_dir = Path::new("/proc").join(pid);
    let deadline = Instant::now() + Duration::from_secs(5);
    while proc_dir.exists()
        && !fs::read_to_string(proc_dir.join("stat")).is_ok_and(|s| s.contains(") Z "))
    {
        assert!(
            Instant::now() < deadline,
            "{what} (pid {pid}) is still running"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A hook line that starts `sleep 300` in a session of its own (out of the hook's process
/// group), writing its pid to `pid_file`.
fn escaping_child(pid_file: &Path) -> String {
    format!(
        "setsid sh -c 'echo $$ > {}; exec sleep 300' </dev/null >/dev/null 2>&1 &\n",
        pid_file.display()
    )
}

#[test]
fn what_a_hook_starts_with_setsid_ends_with_it() {
    if !hook_cgroups() {
        return;
    }
    let f = Fixture::example();
    let pid_file = f.tmp.path().join("escaped.pid");
    f.write_hook(
        910,
        &format!(
            "#!/bin/sh\n{}while [ ! -s {} ]; do sleep 0.01; done\nexit 0\n",
            escaping_child(&pid_file),
            pid_file.display()
        ),
    );
    let r = build_json(&f, &["910"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let pid = fs::read_to_string(&pid_file).unwrap().trim().to_string();
    wait_gone(&pid, "the hook's `setsid sleep 300`");
}

#[test]
fn what_a_sigkilled_runs_hook_started_with_setsid_is_ended_by_the_next_run() {
    if !hook_cgroups() {
        return;
    }
    let f = Fixture::example();
    let pid_file = f.tmp.path().join("escaped.pid");
    f.write_hook(
        902,
        &format!("#!/bin/sh\n{}sleep 300\n", escaping_child(&pid_file)),
    );
    let child = f.spawn_sim(&["build"], &[]);
    wait_for_file(&pid_file);
    while fs::read_to_string(&pid_file)
        .unwrap_or_default()
        .trim()
        .is_empty()
    {
        std::thread::sleep(Duration::from_millis(10));
    }
    sigkill_then_the_next_run_ends(&f, child, &pid_file, "the hook's `setsid sleep 300`");
}

/// `phoenix build --output json` on the sim, in the background, output captured.
fn spawn_json_build(f: &Fixture, env: &[(&str, &str)]) -> std::process::Child {
    let mut all = vec![("PHOENIX_BACKEND", "sim")];
    all.extend_from_slice(env);
    f.command(&["build", "--output", "json", "-j", "2"], &all)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

fn signal(pid: u32, sig: &str) {
    assert!(std::process::Command::new("kill")
        .args([&format!("-{sig}"), &pid.to_string()])
        .status()
        .unwrap()
        .success());
}

#[test]
fn a_second_signal_exits_at_once_while_the_first_waits_for_a_host_operation() {
    let f = Fixture::example();
    assert_eq!(f.sim(&["build"]).code, 0);
    // 901 is replaced (its destroy takes 30 s); 910's hook sleeps meanwhile.
    f.edit_block(901, |b| {
        b.insert("note".into(), json!("rebuilt"));
    });
    let (pid_file, marker) = sleeping_hook(&f, 910);
    let mut child = spawn_json_build(&f, &[("PHOENIX_SIM_LATENCY", "destroy=30000")]);
    wait_for_file(&marker);
    let deadline = Instant::now() + Duration::from_secs(20);
    while !f.calls().iter().any(|c| c["verb"] == "destroy") {
        assert!(Instant::now() < deadline, "901's destroy never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    signal(child.id(), "INT");
    // The hook is ended at once; the destroy in flight is let finish.
    let hook = fs::read_to_string(&pid_file).unwrap().trim().to_string();
    wait_gone(&hook, "910's hook after the first SIGINT");
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        child.try_wait().unwrap().is_none(),
        "the first signal waits for the host operation in flight"
    );
    let second = Instant::now();
    signal(child.id(), "TERM");
    let out = child.wait_with_output().unwrap();
    assert!(
        second.elapsed() < Duration::from_secs(5),
        "the second signal did not end phoenix at once"
    );
    assert_eq!(out.status.code(), Some(128 + 15));
    // The next run puts everything right.
    f.write_hook(910, "#!/bin/sh\nexit 0\n");
    let r = f.sim(&["build"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(actions(&f, &[]).values().all(|a| a == "fresh"));
}

#[test]
fn two_quick_signals_end_the_hooks_and_what_they_started_before_phoenix_exits() {
    let cgroups = hook_cgroups();
    let f = Fixture::example();
    let pid_file = f.tmp.path().join("escaped.pid");
    let hook_pid = f.tmp.path().join("hook.pid");
    f.write_hook(
        902,
        &format!(
            "#!/bin/sh\necho $$ > {}\n{}sleep 300\n",
            hook_pid.display(),
            escaping_child(&pid_file)
        ),
    );
    let child = spawn_json_build(&f, &[]);
    wait_for_file(&pid_file);
    while fs::read_to_string(&pid_file)
        .unwrap_or_default()
        .trim()
        .is_empty()
    {
        std::thread::sleep(Duration::from_millis(10));
    }
    // Two signals at once, before the first one's cleanup has run (two different ones:
    // the kernel merges a pending signal with its repeat).
    let pid = libc::pid_t::try_from(child.id()).unwrap();
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: kill(2) on the child's pid.
        unsafe { libc::kill(pid, sig) };
    }
    let out = child.wait_with_output().unwrap();
    // The status is the second one's: which is second is the kernel's choice.
    let code = out.status.code();
    assert!(code == Some(130) || code == Some(143), "{code:?}");
    let hook = fs::read_to_string(&hook_pid).unwrap().trim().to_string();
    wait_gone(&hook, "902's hook");
    let escaped = fs::read_to_string(&pid_file).unwrap().trim().to_string();
    if cgroups {
        wait_gone(&escaped, "what 902's hook started with setsid");
    }
    // The next run clears what the exit left (locks, the hook's record) and builds.
    f.write_hook(902, "#!/bin/sh\nexit 0\n");
    let r = f.sim(&["build"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    wait_gone(
        &escaped,
        "what 902's hook started with setsid, after the next run",
    );
}
