//! Generations a user can go back to: `phoenix rollback`, pins, `unpin`, and what gc
//! keeps for them. On the embedded simulated host (Proxmox on ZFS), through the real
//! binary.

mod common;

use std::fs;
use std::time::{Duration, Instant};

use common::{actions, build_json, finished, plan, Fixture};
use serde_json::{json, Value};

/// 910's hook writes which version of it ran into the CT.
fn versioned_hook(f: &Fixture, version: &str) {
    f.write_hook(
        910,
        &format!(
            "#!/bin/sh\nf=$(mktemp)\necho {version} > \"$f\"\npct push \"$1\" \"$f\" /root/version.txt\n"
        ),
    );
}

fn file_in(f: &Fixture, ctid: u32, path: &str) -> Option<String> {
    let out = f.tmp.path().join("pulled");
    let _ = fs::remove_file(&out);
    let r = f.pct(&["pull", &ctid.to_string(), path, out.to_str().unwrap()]);
    (r.code == 0)
        .then(|| fs::read_to_string(&out).ok())
        .flatten()
}

fn memory(f: &Fixture, ctid: u32) -> Value {
    f.ct(ctid).unwrap()["settings"]["memory_mb"].clone()
}

/// The example fleet built twice: 910 at version 1 with its 4096 MB, then rebuilt in
/// place at version 2 with 8192 MB. Returns the two generations, oldest first.
fn two_generations() -> (Fixture, String, String) {
    let f = Fixture::example();
    versioned_hook(&f, "v1");
    assert_eq!(build_json(&f, &[]).code, 0);
    let first = f.snapshot_names(910).pop().unwrap();
    versioned_hook(&f, "v2");
    assert_eq!(memory(&f, 910), 4096);
    f.edit_block(910, |b| {
        b.insert("memory_mb".into(), json!(8192));
    });
    let r = build_json(&f, &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let second = f.snapshot_names(910).pop().unwrap();
    assert_ne!(first, second);
    assert_eq!(
        file_in(&f, 910, "/root/version.txt").as_deref(),
        Some("v2\n")
    );
    assert_eq!(memory(&f, 910), 8192);
    (f, first, second)
}

#[test]
fn a_rollback_brings_back_the_files_and_settings_and_pins_the_ct() {
    let (f, first, second) = two_generations();

    // ZFS rolls back only to the most recent snapshot: going back deletes the newer one.
    let r = f.sim(&["rollback", "910"]);
    assert_eq!(r.code, 4, "{}", r.stderr);
    assert!(
        r.stderr.contains(&format!(
            "rolling CT 910 back to {first} deletes the newer snapshot {second} first"
        )) && r.stderr.contains("--force"),
        "{}",
        r.stderr
    );
    let dry = f.sim(&["rollback", "910", "--dry-run", "--force"]);
    assert_eq!(dry.code, 0, "{}", dry.stderr);
    assert_eq!(
        dry.stdout,
        format!(
            "would stop CT 910\nwould delete the newer snapshot {second}\nwould roll CT 910 back to {first} (its files and its settings as built)\nwould start CT 910 again\nwould pin CT 910 at {first}: builds leave it alone until `phoenix unpin 910`\n"
        )
    );
    assert_eq!(
        f.snapshot_names(910),
        [first.clone(), second.clone()],
        "nothing changed"
    );

    let r = f.sim(&["rollback", "910", "--force", "--output", "json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let done = r.json();
    assert_eq!(done["from"], second);
    assert_eq!(done["to"], first);
    assert_eq!(done["deletes"], json!([second]));
    assert_eq!(
        file_in(&f, 910, "/root/version.txt").as_deref(),
        Some("v1\n")
    );
    assert_eq!(memory(&f, 910), 4096, "the settings it was built with");
    assert_eq!(f.pct(&["status", "910"]).stdout.trim(), "status: running");

    // Pinned: plan shows it, build leaves it, why explains it, gc keeps it.
    let p = plan(&f, &[]);
    assert_eq!(p[&910]["action"], "pinned");
    assert_eq!(p[&910]["pinned_snapshot"], first);
    assert_eq!(p[&910]["complete"], true);
    let human = f.sim(&["plan"]).stdout;
    assert!(
        human.contains(&format!("pinned at {first} by ")) && human.contains("phoenix unpin 910"),
        "{human}"
    );
    let before = f.calls().len();
    let r = build_json(&f, &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(finished(&r)[&910].1, "pinned");
    assert!(f.calls()[before..]
        .iter()
        .all(|c| c["ctid"] != 910 || c["mutating"] == false));
    let summary = f.sim(&["build"]).stdout;
    assert!(summary.contains("1 pinned"), "{summary}");
    let why = f.sim(&["why", "910"]).stdout;
    assert!(
        why.contains(&format!("CT 910 Portainer is pinned at {first}")),
        "{why}"
    );
    let gc = f
        .sim(&["gc", "--dry-run", "--keep", "0", "--output", "json"])
        .json();
    let kept = gc["snapshots"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["ctid"] == 910 && d["snapshot"] == first.as_str())
        .unwrap()
        .clone();
    assert_eq!(kept["reason"], "pinned");

    // Unpinned, the next build makes it current again.
    let r = f.sim(&["unpin", "910"]);
    assert_eq!(r.code, 0);
    assert_eq!(actions(&f, &[])[&910], "rebuild");
    assert_eq!(build_json(&f, &[]).code, 0);
    assert_eq!(
        file_in(&f, 910, "/root/version.txt").as_deref(),
        Some("v2\n")
    );
    assert_eq!(actions(&f, &[])[&910], "fresh");
    assert_eq!(f.sim(&["unpin", "910"]).stdout, "CT 910 was not pinned\n");
}

#[test]
fn build_unpin_gives_the_ct_back_in_the_same_run() {
    let (f, first, _) = two_generations();
    assert_eq!(
        f.sim(&["rollback", "910", "--to", &first, "--force"]).code,
        0
    );
    let r = build_json(&f, &["--unpin", "910"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(finished(&r)[&910].1, "built");
    assert_eq!(actions(&f, &[])[&910], "fresh");
}

#[test]
fn a_pinned_template_is_what_its_clones_are_planned_against() {
    let f = Fixture::example();
    assert_eq!(build_json(&f, &[]).code, 0);
    let at = f.snapshot_names(902).pop().unwrap();
    let r = f.sim(&["rollback", "902", "--to", &at]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stdout
            .starts_with(&format!("CT 902 is at {at} already\n")),
        "{}",
        r.stdout
    );
    // 902's hook changes; pinned, it stays, and what is cloned from it stays fresh.
    fs::write(
        f.hook_path(902),
        fs::read_to_string(f.hook_path(902)).unwrap() + "echo more\n",
    )
    .unwrap();
    let a = actions(&f, &[]);
    assert_eq!(a[&902], "pinned");
    for c in [903, 910, 920, 950] {
        assert_eq!(a[&c], "fresh", "{c} is planned against the pinned 902");
    }
    assert_eq!(f.sim(&["unpin", "902"]).code, 0);
    let a = actions(&f, &[]);
    assert_eq!(a[&902], "rebuild");
    assert_eq!(a[&910], "held");
}

#[test]
fn what_a_rollback_cannot_do_is_refused_with_nothing_touched() {
    let (f, first, second) = two_generations();
    let state = f.host_state();

    let r = f.sim(&["rollback", "999"]);
    assert_eq!(r.code, 7, "not in the config: {}", r.stderr);

    let r = f.sim(&[
        "rollback",
        "910",
        "--to",
        "phx-00000000000000000000000000000000",
    ]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr
            .contains("phx-00000000000000000000000000000000 is not a generation of CT 910")
            && r.stderr
                .contains(&format!("its generations, newest first: {second}, {first}")),
        "{}",
        r.stderr
    );
    let r = f.sim(&["rollback", "910", "--steps", "5"]);
    assert_eq!(r.code, 2);
    assert!(
        r.stderr
            .contains("CT 910 has 1 generation before its current one, not 5"),
        "{}",
        r.stderr
    );
    let r = f.sim(&["rollback", "910", "--to", &first, "--steps", "1"]);
    assert_eq!(r.code, 2, "--to and --steps conflict");

    // A generation gc removed says when.
    assert_eq!(f.sim(&["gc", "--keep", "0"]).code, 0);
    assert!(f.snapshot_names(910).len() == 1);
    let r = f.sim(&["rollback", "910", "--to", &first]);
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.contains(&format!(
            "{first} of CT 910 was removed by `phoenix gc` on "
        )),
        "{}",
        r.stderr
    );

    // During a build: the lock says who holds it.
    let mut build = f.spawn_sim(
        &["build", "--replace-all"],
        &[("PHOENIX_SIM_LATENCY", "*=200")],
    );
    f.wait_for_lock_holder(build.id());
    let r = f.sim(&["rollback", "910", "--force"]);
    build.kill().unwrap();
    build.wait().unwrap();
    assert_eq!(r.code, 5, "{}", r.stderr);
    let _ = state;
}

#[test]
fn a_rollback_killed_midway_is_pinned_unfinished_until_it_is_run_again() {
    let (f, first, _) = two_generations();
    let mut rollback = f
        .command(
            &["rollback", "910", "--force"],
            &[
                ("PHOENIX_BACKEND", "sim"),
                ("PHOENIX_SIM_LATENCY", "rollback=3000"),
            ],
        )
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !f.calls().iter().any(|c| c["verb"] == "rollback") {
        assert!(Instant::now() < deadline, "the rollback never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    rollback.kill().unwrap();
    rollback.wait().unwrap();
    let p = plan(&f, &[]);
    assert_eq!(p[&910]["action"], "pinned");
    assert_eq!(p[&910]["complete"], false);
    let human = f.sim(&["plan"]).stdout;
    assert!(human.contains("did not finish"), "{human}");
    let r = build_json(&f, &[]);
    assert_eq!(finished(&r)[&910].1, "pinned", "a build leaves it alone");
    let r = f.sim(&["rollback", "910", "--to", &first, "--force"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(plan(&f, &[])[&910]["complete"], true);
    assert_eq!(
        file_in(&f, 910, "/root/version.txt").as_deref(),
        Some("v1\n")
    );
}

/// The story: a template's hook changes, everything is rebuilt with
/// `--replace-all`, and the container is rolled back to the generation before — which the
/// replace kept as a backup.
#[test]
fn a_replaced_containers_generation_is_kept_and_a_rollback_restores_it() {
    let f = Fixture::example();
    versioned_hook(&f, "v1");
    assert_eq!(build_json(&f, &[]).code, 0);
    let old = f.snapshot_names(910).pop().unwrap();
    fs::write(
        f.hook_path(902),
        fs::read_to_string(f.hook_path(902)).unwrap() + "echo more\n",
    )
    .unwrap();
    versioned_hook(&f, "v2");
    f.edit_block(910, |b| {
        b.insert("memory_mb".into(), json!(8192));
    });
    let r = build_json(&f, &["--replace-all"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let new = f.snapshot_names(910).pop().unwrap();
    assert_eq!(
        f.snapshot_names(910),
        std::slice::from_ref(&new),
        "a new CT: one snapshot"
    );
    let log = f.sim(&["log", "910"]).stdout;
    assert!(log.contains("kept") && log.contains("vzdump 910"), "{log}");

    // generations lists the kept one, with where it is and its size.
    let gens = f.sim(&["generations", "910", "--output", "json"]).json();
    let listed: Vec<&str> = gens["generations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["snapshot"].as_str().unwrap())
        .collect();
    assert_eq!(listed, [new.as_str(), old.as_str()]);
    let kept = &gens["generations"][1]["kept"];
    assert!(
        kept["location"]
            .as_str()
            .unwrap()
            .starts_with("local:backup/vzdump-lxc-910-"),
        "{kept}"
    );
    assert!(kept["size_bytes"].as_u64().unwrap() > 0);
    let human = f.sim(&["generations", "910"]).stdout;
    assert!(
        human.contains("kept apart as local:backup/vzdump-lxc-910-"),
        "{human}"
    );

    let dry = f.sim(&["rollback", "910", "--dry-run"]);
    assert_eq!(dry.code, 0, "{}", dry.stderr);
    assert!(
        dry.stdout.contains(&format!(
            "would keep CT 910's current generation {new} apart"
        )) && dry
            .stdout
            .contains("would restore CT 910 from local:backup/vzdump-lxc-910-"),
        "{}",
        dry.stdout
    );
    let r = f.sim(&["rollback", "910", "--output", "json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.json()["to"], old);
    assert_eq!(
        file_in(&f, 910, "/root/version.txt").as_deref(),
        Some("v1\n")
    );
    assert_eq!(memory(&f, 910), 4096, "the settings it was built with");
    assert_eq!(
        f.snapshot_names(910),
        std::slice::from_ref(&old),
        "back as its generation"
    );
    assert_eq!(f.pct(&["status", "910"]).stdout.trim(), "status: running");
    let p = plan(&f, &[]);
    assert_eq!(p[&910]["action"], "pinned");
    let r = build_json(&f, &[]);
    assert_eq!(finished(&r)[&910].1, "pinned");

    // The generation it held is kept in turn; gc keeps what the pin needs.
    let gc = f
        .sim(&["gc", "--keep", "0", "--dry-run", "--output", "json"])
        .json();
    let of = |snap: &str| {
        gc["snapshots"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["ctid"] == 910 && d["snapshot"] == snap && d["kept_copy"].is_string())
            .cloned()
    };
    assert_eq!(of(&old).unwrap()["reason"], "pinned");
    assert_eq!(of(&new).unwrap()["decision"], "delete");
    assert_eq!(f.sim(&["gc", "--keep", "0"]).code, 0);
    let gens = f.sim(&["generations", "910", "--output", "json"]).json();
    assert_eq!(gens["generations"].as_array().unwrap().len(), 1, "{gens}");
    assert_eq!(gens["generations"][0]["snapshot"], old);
    let r = f.sim(&["rollback", "910", "--to", &new]);
    assert!(
        r.stderr.contains("was removed by `phoenix gc`"),
        "{}",
        r.stderr
    );

    // Unpinned and replaced again, it is current.
    let r = build_json(&f, &["--unpin", "910", "--replace", "910"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(
        file_in(&f, 910, "/root/version.txt").as_deref(),
        Some("v2\n")
    );
    assert_eq!(actions(&f, &[])[&910], "fresh");
}

#[test]
fn a_block_that_keeps_no_generations_is_replaced_without_a_copy() {
    let f = Fixture::example();
    f.edit_block(910, |b| {
        b.insert("keep_generations".into(), json!(false));
    });
    assert_eq!(build_json(&f, &[]).code, 0);
    append(&f, 902);
    assert_eq!(build_json(&f, &["--replace-all"]).code, 0);
    assert!(!f
        .calls()
        .iter()
        .any(|c| c["verb"] == "backup" && c["ctid"] == 910));
    assert!(
        f.calls()
            .iter()
            .any(|c| c["verb"] == "backup" && c["ctid"] == 950),
        "950 keeps its generations"
    );
    assert_eq!(
        f.sim(&["generations", "910", "--output", "json"]).json()["generations"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

fn append(f: &Fixture, ctid: u32) {
    fs::write(
        f.hook_path(ctid),
        fs::read_to_string(f.hook_path(ctid)).unwrap() + "echo more\n",
    )
    .unwrap();
}
