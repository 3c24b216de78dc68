//! Data safety when the host and phoenix's state disagree: phoenix never destroys a CT it
//! cannot prove it made unfinished, never starts a build that cannot record itself, and
//! leaves a built CT in the running state it was built to have. On the embedded simulated
//! host, through the real binary.

mod common;

use std::fs;

use common::{actions, build_json, built, finished, plan, set, Fixture};
use serde_json::{json, Value};

/// The example fleet, built; 910 (the Portainer container) holds a file of the user's.
fn built_with_data() -> Fixture {
    let f = Fixture::example();
    let r = build_json(&f, &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let data = f.tmp.path().join("data.txt");
    fs::write(&data, "the user's data\n").unwrap();
    let pushed = f.pct(&["push", "910", data.to_str().unwrap(), "/root/data.txt"]);
    assert_eq!(pushed.code, 0, "{}", pushed.stderr);
    f
}

/// The user's file in CT 910, if it is still there.
fn users_file(f: &Fixture) -> Option<String> {
    let out = f.tmp.path().join("pulled.txt");
    let _ = fs::remove_file(&out);
    let r = f.pct(&["pull", "910", "/root/data.txt", out.to_str().unwrap()]);
    (r.code == 0)
        .then(|| fs::read_to_string(&out).ok())
        .flatten()
}

fn mutating_calls(f: &Fixture) -> Vec<String> {
    f.calls()
        .iter()
        .filter(|c| c["mutating"] == true)
        .map(|c| format!("{} {}", c["verb"].as_str().unwrap_or("?"), c["ctid"]))
        .collect()
}

#[test]
fn a_container_whose_build_snapshot_an_admin_deleted_is_held_not_destroyed() {
    let f = built_with_data();
    let snap = f.snapshot_names(910).pop().unwrap();
    let r = f.pct(&["delsnapshot", "910", &snap]);
    assert_eq!(r.code, 0, "{}", r.stderr);

    let p = plan(&f, &[]);
    assert_eq!(p[&910]["action"], "held", "{:#}", p[&910]);
    assert_eq!(p[&910]["cause"], "no_build_snapshot");
    assert_eq!(p[&910]["built_snapshot"], Value::Null);
    // Proxmox moves `parent:` to the deleted snapshot's own parent: none here.
    assert_eq!(p[&910]["missing"], "it has no snapshots at all");
    let human = f.sim(&["plan"]);
    assert_eq!(human.code, 4, "held: {}", human.stdout);
    assert!(
        human
            .stdout
            .contains("nothing proves that phoenix's own build of it was cut short")
            && human.stdout.contains("--replace 910"),
        "{}",
        human.stdout
    );
    let why = f.sim(&["why", "910"]).stdout;
    assert!(
        why.contains("is held: phoenix finds no build snapshot of it")
            && why.contains("build --replace 910"),
        "{why}"
    );

    let before = f.calls().len();
    let r = build_json(&f, &[]);
    assert_eq!(r.code, 4, "held is exit 4: {}", r.stderr);
    assert_eq!(finished(&r)[&910].1, "held");
    assert!(
        f.calls()[before..]
            .iter()
            .all(|c| c["ctid"] != 910 || c["mutating"] == false),
        "nothing done to 910: {:?}",
        mutating_calls(&f)
    );
    assert_eq!(users_file(&f).as_deref(), Some("the user's data\n"));

    // Consent replaces it, as any destructive rebuild.
    let r = build_json(&f, &["--replace", "910"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(built(&r), set(&[910]));
    assert_eq!(users_file(&f), None, "replaced: the old files are gone");
    assert_eq!(actions(&f, &[])[&910], "fresh");
}

#[test]
fn a_config_whose_parent_names_no_snapshot_is_held_and_says_what_it_found() {
    let f = built_with_data();
    let conf = f.sim_host().conf_path(910);
    let text = fs::read_to_string(&conf).unwrap();
    let snap = f.snapshot_names(910).pop().unwrap();
    fs::write(
        &conf,
        text.replacen(&format!("parent: {snap}"), "parent: gone-by-hand", 1),
    )
    .unwrap();
    let p = plan(&f, &[]);
    assert_eq!(p[&910]["action"], "held");
    assert_eq!(
        p[&910]["missing"],
        format!(
            "its config's `parent: gone-by-hand` names a snapshot that does not exist (build snapshots found: {snap})"
        )
    );
    assert_eq!(build_json(&f, &[]).code, 4);
    assert_eq!(users_file(&f).as_deref(), Some("the user's data\n"));
}

#[test]
fn a_build_cut_short_is_replaced_only_while_its_record_proves_it() {
    let f = Fixture::example();
    // 910's hook fails: its CT is created and left without a snapshot
    // (rollback_on_failure is off in the example).
    let hook = f.hook_path(910);
    let good = fs::read_to_string(&hook).unwrap();
    f.write_hook(910, "#!/bin/sh\necho broken >&2\nexit 3\n");
    let r = build_json(&f, &[]);
    assert_eq!(r.code, 1);
    assert_eq!(finished(&r)[&910].1, "failed");
    assert!(f.state_dir.join("building/910.json").is_file());
    f.write_hook(910, &good);

    let p = plan(&f, &[]);
    assert_eq!(p[&910]["action"], "rebuild");
    assert_eq!(p[&910]["cause"], "unfinished");
    assert_eq!(p[&910]["consent"], "not_needed");

    // The state directory lost: nothing proves the CT is phoenix's unfinished build.
    fs::remove_dir_all(f.state_dir.join("building")).unwrap();
    let p = plan(&f, &[]);
    assert_eq!(p[&910]["action"], "held");
    assert_eq!(
        p[&910]["missing"], "it has no snapshots at all",
        "{:#}",
        p[&910]
    );
    let r = build_json(&f, &["--replace", "910"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(built(&r), set(&[910]));
    assert!(
        !f.state_dir.join("building/910.json").exists(),
        "the snapshot ends the record"
    );
}

#[test]
fn a_template_without_its_snapshot_is_replaced_and_says_why() {
    let f = built_with_data();
    let snap = f.snapshot_names(902).pop().unwrap();
    // Its clones' lineage goes with it, but a template holds nothing of its own.
    assert_eq!(f.pct(&["delsnapshot", "902", &snap]).code, 0);
    let p = plan(&f, &[]);
    assert_eq!(p[&902]["action"], "rebuild");
    assert_eq!(p[&902]["cause"], "no_build_snapshot");
    assert_eq!(p[&902]["consent"], "not_needed");
}

#[test]
fn a_state_directory_that_cannot_be_written_is_found_by_plan_and_build_touches_nothing() {
    let f = built_with_data();
    fs::write(
        f.hook_path(902),
        fs::read_to_string(f.hook_path(902)).unwrap() + "echo more\n",
    )
    .unwrap();
    let manifests = f.state_dir.join("manifests");
    fs::remove_dir_all(&manifests).unwrap();
    fs::write(&manifests, "not a directory").unwrap();

    let r = f.sim(&["plan", "--output", "json"]);
    assert_eq!(r.code, 1, "{}", r.stdout);
    let problems = r.json()["state_problems"].clone();
    assert_eq!(
        problems,
        json!([format!(
            "cannot create {}: {} is a file, not a directory: move it aside (phoenix makes the directory)",
            manifests.display(),
            manifests.display()
        )])
    );
    let human = f.sim(&["plan"]);
    assert!(
        human
            .stdout
            .contains("state directory: a build would fail before touching the host"),
        "{}",
        human.stdout
    );

    let snaps = f.snapshot_names(902);
    let before = f.calls().len();
    let r = f.sim(&["build"]);
    assert_eq!(r.code, 6, "{}", r.stderr);
    assert!(
        r.stderr.contains("no CT was touched") && r.stderr.contains("is a file, not a directory"),
        "{}",
        r.stderr
    );
    assert!(
        f.calls()[before..].iter().all(|c| c["mutating"] == false),
        "no host change"
    );
    assert_eq!(f.snapshot_names(902), snaps, "902 untouched");

    fs::remove_file(&manifests).unwrap();
    let r = build_json(&f, &["--replace-all"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
}

#[test]
fn a_log_directory_in_the_way_is_named() {
    let f = Fixture::example();
    fs::create_dir_all(f.state_dir.join("logs")).unwrap();
    fs::write(f.state_dir.join("logs/910"), "").unwrap();
    let r = f.sim(&["plan", "--output", "json"]);
    assert_eq!(r.code, 1);
    let problems = r.json()["state_problems"].to_string();
    assert!(
        problems.contains("logs/910 is a file, not a directory"),
        "{problems}"
    );
}

#[test]
fn a_built_container_that_should_run_and_does_not_is_started_and_a_template_is_left() {
    let f = Fixture::example();
    assert_eq!(build_json(&f, &[]).code, 0);
    // As after a run interrupted between 910's snapshot and its restart.
    assert_eq!(f.pct(&["shutdown", "910"]).code, 0);
    let p = plan(&f, &[]);
    assert_eq!(p[&910]["action"], "update");
    assert_eq!(
        p[&910]["changes"],
        json!([{"key": "running", "old": "stopped", "new": "running"}])
    );
    assert_eq!(p[&900]["action"], "fresh", "templates are built stopped");
    let human = f.sim(&["plan"]).stdout;
    assert!(
        human.contains("runtime settings changed: running"),
        "{human}"
    );

    let before = f.calls().len();
    let r = build_json(&f, &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(built(&r), set(&[910]));
    let verbs: Vec<String> = f.calls()[before..]
        .iter()
        .filter(|c| c["mutating"] == true)
        .map(|c| format!("{} {}", c["verb"].as_str().unwrap(), c["ctid"]))
        .collect();
    assert_eq!(verbs, ["start 910"]);
    assert_eq!(f.pct(&["status", "910"]).stdout.trim(), "status: running");
    assert_eq!(actions(&f, &[])[&910], "fresh");
}

#[test]
fn skip_gpu_leaves_the_gpu_subtree_out_and_builds_the_rest_with_exit_0() {
    let f = Fixture::example();
    // A host whose driver is not the fleet's: the GPU subtree cannot build here.
    f.edit_lxc(|v| {
        v["nvidia_driver_version"] = json!("999.1.1");
        v["nvidia_runfile_url"] = json!(
            "https://us.download.nvidia.com/XFree86/Linux-x86_64/999.1.1/NVIDIA-Linux-x86_64-999.1.1.run"
        );
    });
    assert_eq!(f.sim(&["plan"]).code, 1, "the GPU subtree fails preflight");

    let p = plan(&f, &["--skip-gpu"]);
    for ctid in [901, 903, 920, 950] {
        assert_eq!(p[&ctid]["action"], "skipped", "{ctid}: {:#}", p[&ctid]);
        assert_eq!(p[&ctid]["left_out"], "gpu");
    }
    assert_eq!(p[&901]["left_out_by"], 901);
    assert_eq!(p[&903]["left_out_by"], 903);
    assert_eq!(p[&950]["left_out_by"], 903);
    for ctid in [900, 902, 910] {
        assert_eq!(p[&ctid]["action"], "create");
    }
    let human = f.sim(&["plan", "--skip-gpu"]);
    assert_eq!(human.code, 0, "{}", human.stdout);
    assert!(
        human
            .stdout
            .contains("left out (--skip-gpu): it descends from GPU node 903")
            && human.stdout.contains("plan: 3 create, 4 skipped"),
        "{}",
        human.stdout
    );

    let r = f.sim_env(&["build", "--output", "json"], &[("PHOENIX_SKIP_GPU", "1")]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(built(&r), set(&[900, 902, 910]));
    for ctid in [901, 903, 920, 950] {
        assert_eq!(finished(&r)[&ctid].1, "skipped");
        assert!(f.ct(ctid as u32).is_none(), "{ctid} not made");
    }
    let status = f.sim(&["status", "--skip-gpu", "--output", "json"]).json();
    let row = |c: u64| {
        status["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["ctid"] == c)
            .unwrap()
            .clone()
    };
    assert_eq!(row(920)["action"], "skipped");
    assert_eq!(row(910)["action"], "fresh");
    let summary = f.sim(&["build", "--skip-gpu"]);
    assert!(
        summary.stdout.contains("summary: 3 fresh, 4 skipped"),
        "{}",
        summary.stdout
    );
}

#[test]
fn an_in_place_convergence_says_the_parents_changes_are_not_in_the_ct() {
    let f = Fixture::example();
    assert_eq!(build_json(&f, &[]).code, 0);
    let old_920 = f.snapshot_names(920).pop().unwrap();
    fs::write(
        f.hook_path(902),
        fs::read_to_string(f.hook_path(902)).unwrap() + "echo more\n",
    )
    .unwrap();
    // 950 says "rebuild": "in-place": it re-runs its own steps on the live CT.
    let r = build_json(&f, &["--replace", "910"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let p = plan(&f, &[]);
    assert_eq!(p[&950]["action"], "fresh");
    assert_eq!(
        p[&950]["in_place_over"],
        json!({"parent": 920, "snapshot": old_920})
    );
    assert!(p[&910].get("in_place_over").is_none(), "910 was replaced");
    let human = f.sim(&["plan"]).stdout;
    assert!(
        human.contains(&format!(
            "converged in place over 920@{old_920}: the parent's changes since are not in this CT; `phoenix build --replace 950` brings them"
        )),
        "{human}"
    );
    let why = f.sim(&["why", "950"]).stdout;
    assert!(
        why.contains(&format!("converged in place over 920@{old_920}")),
        "{why}"
    );
    let gens = f.sim(&["generations", "950", "--output", "json"]).json();
    assert_eq!(
        gens["generations"][0]["in_place_over"],
        json!({"ctid": 920, "snapshot": old_920})
    );
    assert!(gens["generations"][1].get("in_place_over").is_none());
    let human = f.sim(&["generations", "950"]).stdout;
    assert!(
        human.contains(&format!("in place over 920@{old_920}")),
        "{human}"
    );

    // A second in-place rebuild of its own keeps saying so; a replace ends it.
    f.write_hook(
        950,
        &(fs::read_to_string(f.hook_path(950)).unwrap() + "echo again\n"),
    );
    assert_eq!(build_json(&f, &[]).code, 0);
    assert_eq!(
        plan(&f, &[])[&950]["in_place_over"],
        json!({"parent": 920, "snapshot": old_920})
    );
    assert_eq!(build_json(&f, &["--replace", "950"]).code, 0);
    assert!(plan(&f, &[])[&950].get("in_place_over").is_none());
}

// Messages say what is true.

#[test]
fn an_unparseable_ct_config_is_called_unparseable_and_its_bytes_are_escaped() {
    let f = Fixture::example();
    f.write_foreign_conf(910, "arch: amd64\n\u{0}\u{0}garbage \u{1b}[31m line\n");
    let p = plan(&f, &[]);
    assert_eq!(p[&910]["action"], "unmanaged");
    let why = p[&910]["unreadable"].as_str().unwrap();
    assert!(
        why.ends_with("910.conf:2: unable to parse config: \\0\\0garbage \\x1b[31m line"),
        "{why}"
    );
    let human = f.sim(&["plan"]);
    assert!(
        human.stdout.contains("CT 910's config cannot be parsed")
            && !human.stdout.contains("not created by phoenix")
            && !human.stdout.contains('\u{0}')
            && !human.stdout.contains('\u{1b}'),
        "{}",
        human.stdout
    );
    // The warning about it is said once, however many times the host is read.
    let r = f.sim(&["build"]);
    assert_eq!(
        r.stderr.matches("CT 910 is left alone").count(),
        1,
        "{}",
        r.stderr
    );
    let why = f.sim(&["why", "910"]).stdout;
    assert!(why.contains("its config cannot be parsed"), "{why}");
}

#[test]
fn a_failed_hooks_last_lines_are_in_the_summary_and_the_json() {
    let f = Fixture::example();
    f.write_hook(
        910,
        "#!/bin/sh\necho 'pulling portainer'\necho 'docker: cannot pull portainer/portainer-ce: is the registry reachable from the CT?' >&2\nexit 125\n",
    );
    let r = build_json(&f, &[]);
    assert_eq!(r.code, 1);
    let failed = common::events(&r)
        .into_iter()
        .find(|e| e["event"] == "node_finished" && e["ctid"] == 910)
        .unwrap();
    assert_eq!(
        failed["output"],
        json!([
            "pulling portainer",
            "docker: cannot pull portainer/portainer-ce: is the registry reachable from the CT?"
        ])
    );
    let human = f.sim(&["build"]).stdout;
    assert!(
        human.contains(
            "      its last output:\n        pulling portainer\n        docker: cannot pull portainer/portainer-ce: is the registry reachable from the CT?\n"
        ),
        "{human}"
    );
    // A hook its interpreter cannot run says why there too.
    f.write_hook(910, "#!/bin/sh\n\u{0}\u{0}\u{0}\n(((\n");
    let r = build_json(&f, &[]);
    let failed = common::events(&r)
        .into_iter()
        .find(|e| e["event"] == "node_finished" && e["ctid"] == 910)
        .unwrap();
    let said = failed["output"].to_string();
    assert!(said.contains("Syntax error"), "{said}");
    // And the hint names the backend's own way in.
    assert!(
        failed["error"]
            .as_str()
            .unwrap()
            .contains("look inside with `pct enter 910`"),
        "{failed}"
    );
}

#[test]
fn a_flooding_hooks_log_is_bounded_and_keeps_its_tail() {
    let f = Fixture::example();
    f.write_hook(
        910,
        "#!/bin/sh\ni=0\nwhile [ $i -lt 40000 ]; do echo \"line $i of the flood\"; i=$((i+1)); done\nprintf 'no newline at the end'\n",
    );
    let r = f.sim_env(
        &["build", "--output", "json", "910"],
        &[("PHOENIX_LOG_LIMIT_BYTES", "200000")],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let log = f.sim(&["log", "910"]).stdout;
    assert!(log.len() < 200_000 + 70_000 + 10_000, "{}", log.len());
    assert!(log.contains("line 0 of the flood\n"));
    assert!(
        log.contains(
            "bytes of output dropped: this log keeps the first 200000 bytes and the last 65536]"
        ),
        "{}",
        &log[..2000]
    );
    assert!(log.contains("line 39999 of the flood\nno newline at the end\n== shutdown"));
    // Every marker starts its own line.
    assert!(log
        .lines()
        .filter(|l| l.contains("== "))
        .all(|l| l.starts_with("== ")));
}

#[test]
fn why_with_a_lost_manifest_names_the_cause_the_host_proves() {
    let f = Fixture::example();
    assert_eq!(build_json(&f, &[]).code, 0);
    fs::write(
        f.hook_path(902),
        fs::read_to_string(f.hook_path(902)).unwrap() + "echo more\n",
    )
    .unwrap();
    // 910's own manifest is lost; the build records on the host still say its parent
    // changed.
    let snap = f.snapshot_names(910).pop().unwrap();
    let prefix = snap.trim_start_matches("phx-");
    for e in fs::read_dir(f.state_dir.join("manifests")).unwrap() {
        let e = e.unwrap();
        if e.file_name().to_string_lossy().starts_with(prefix) {
            fs::remove_file(e.path()).unwrap();
        }
    }
    let why = f.sim(&["why", "910"]).stdout;
    assert!(
        why.contains("902 BaseTemplateDocker")
            && why.contains("hook phoenix_hypervisor_setup_902.sh: +1 −0 lines"),
        "{why}"
    );
    assert!(why.contains("cascade: 902 → 910"), "{why}");
    assert!(
        !why.contains("unchanged on 910"),
        "nothing is known unchanged: {why}"
    );
    let json = f.sim(&["why", "910", "--output", "json"]).json();
    assert_eq!(json["explanation"]["cascade"], json!([902, 910]));
}

#[test]
fn a_hook_that_is_a_link_to_a_directory_is_called_a_link() {
    let f = Fixture::example();
    let dir = f.tmp.path().join("somewhere");
    fs::create_dir_all(&dir).unwrap();
    fs::remove_file(f.hook_path(910)).unwrap();
    std::os::unix::fs::symlink(&dir, f.hook_path(910)).unwrap();
    let r = f.validate_json();
    let all = r.stdout.clone();
    assert!(
        all.contains(&format!(
            "is a link to {}, which is a directory, not a regular file",
            dir.display()
        )),
        "{all}"
    );
}

// A push is proven, not assumed.

#[test]
fn a_push_that_pct_reports_as_done_but_failed_stops_the_step_before_it_runs() {
    let f = Fixture::example();
    // Proxmox's `pct push` prints a worker's failure and exits 0; the model does the same.
    let r = f.sim_env(
        &["build", "--output", "json"],
        &[("PHOENIX_SIM_FAULTS", "push:902=fail*1")],
    );
    assert_eq!(r.code, 1, "{}", r.stderr);
    let failed = common::events(&r)
        .into_iter()
        .find(|e| e["event"] == "node_finished" && e["ctid"] == 902)
        .unwrap();
    assert_eq!(failed["failed_step"], "docker");
    assert!(
        failed["output"].to_string().contains(
            "the push to CT 902:/tmp/phoenix-step-docker.sh did not arrive intact (pct push reports some failures only in its output): not running it"
        ),
        "{failed}"
    );
    let ran = f
        .sim_host()
        .history(902)
        .unwrap()
        .iter()
        .any(|c| c.contains("phoenix-step-docker.sh"));
    assert!(!ran, "the script was never run");
    assert_eq!(build_json(&f, &[]).code, 0);
}

#[test]
fn a_hooks_ct_push_proves_its_file_arrived() {
    let f = Fixture::example();
    f.write_hook(
        910,
        "#!/usr/bin/env bash\n. \"$(dirname \"$0\")/lib/phoenix_hook_lib.sh\"\nf=$(mktemp)\necho \"made for this run: $$\" > \"$f\"\nct_push \"$f\" /root/run.txt\nlog pushed\n",
    );
    // The Docker step's push comes first, and finds the very file 910 inherited from
    // 902 at its path: the same bytes, so it runs. The hook's own push is the one lost.
    let r = f.sim_env(
        &["build", "--output", "json"],
        &[("PHOENIX_SIM_FAULTS", "push:910=fail*2")],
    );
    assert_eq!(r.code, 1);
    let failed = common::events(&r)
        .into_iter()
        .find(|e| e["event"] == "node_finished" && e["ctid"] == 910)
        .unwrap();
    assert_eq!(failed["failed_step"], "hook");
    assert!(
        failed["output"]
            .to_string()
            .contains("to /root/run.txt did not arrive intact"),
        "{failed}"
    );
    let r = build_json(&f, &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
}

/// As Proxmox allocates the first free disk name [pve-storage find_free_diskname], a
/// CT made where a deleted CT's volume was left behind gets a new volume, never the old
/// one's files or snapshots.
#[test]
fn a_ct_made_where_an_old_volume_was_left_gets_a_volume_of_its_own() {
    let f = built_with_data();
    let conf = f.sim_host().conf_path(910);
    fs::remove_file(&conf).unwrap();
    let old = f.state_dir.join("sim/rpool/data/subvol-910-disk-0");
    assert!(old.join("root/data.txt").is_file(), "the volume stays");
    assert_eq!(actions(&f, &[])[&910], "create");
    let r = build_json(&f, &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let text = fs::read_to_string(&conf).unwrap();
    assert!(
        text.contains("rootfs: local-zfs:subvol-910-disk-1,"),
        "{text}"
    );
    assert_eq!(users_file(&f), None, "none of the old volume's files");
    assert_eq!(
        f.snapshot_names(910).len(),
        1,
        "{:?}",
        f.snapshot_names(910)
    );
    assert!(
        old.join("root/data.txt").is_file(),
        "the old volume is left as it was"
    );
}

#[test]
fn a_container_that_stops_on_its_own_before_phoenix_stops_it_is_replaced_all_the_same() {
    let f = Fixture::example();
    // 910's build fails after its start: the CT is left running, unfinished.
    let hook = f.hook_path(910);
    let good = fs::read_to_string(&hook).unwrap();
    f.write_hook(910, "#!/bin/sh\necho broken >&2\nexit 3\n");
    assert_eq!(build_json(&f, &[]).code, 1);
    f.write_hook(910, &good);
    assert_eq!(plan(&f, &[])[&910]["action"], "rebuild");

    // Seen running, it stops by itself before the stop arrives (a shutdown a killed run
    // had started, an admin's `pct shutdown`): what the destroy wanted, not a failure.
    let r = f.sim_env(
        &["build", "--output", "json"],
        &[("PHOENIX_SIM_FAULTS", "stop:910=stopped*1")],
    );
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert_eq!(built(&r), set(&[910]));
    assert_eq!(actions(&f, &[])[&910], "fresh");
}
