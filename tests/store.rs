//! Store templates (`store_vmid_range`) on the simulated Proxmox node: built template
//! generations kept as immutable Proxmox templates, children linked to them, what `gc`
//! keeps, what a cut-short creation leaves, and the input that stops them before anything
//! is touched.

mod common;

use std::fs;

use common::{Fixture, Run};
use serde_json::Value;

/// The example fleet with store templates in 9000-9099.
fn fleet() -> Fixture {
    with_range("9000-9099")
}

fn with_range(range: &str) -> Fixture {
    let f = Fixture::example();
    f.edit_hv(|hv| hv["proxmox_defaults"]["store_vmid_range"] = range.into());
    f
}

/// The member of a JSON array whose `key` is `value`.
fn item(list: &Value, key: &str, value: impl Into<Value>) -> Value {
    let value = value.into();
    list.as_array()
        .unwrap()
        .iter()
        .find(|v| v[key] == value)
        .unwrap_or_else(|| panic!("no {key} {value} in {list:#}"))
        .clone()
}

/// The store-template fleet less its GPU branch (900 → 902 → 910) on a simulated
/// cluster of pve1 and pve2 (`PHOENIX_SIM_NODES`, on the first run).
fn small_on_two_nodes() -> Fixture {
    let f = fleet();
    f.edit_lxc(|v| {
        let configs = v["lxc_configs"].as_object_mut().unwrap();
        configs.retain(|k, _| ["900", "902", "910"].contains(&k.as_str()));
    });
    f
}

const TWO_NODES: [(&str, &str); 1] = [("PHOENIX_SIM_NODES", "pve1,pve2")];

fn ok(r: &Run) {
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
}

fn append_to_hook(f: &Fixture, ctid: u32, line: &str) {
    let hook = fs::read_to_string(f.hook_path(ctid)).unwrap();
    f.write_hook(ctid, &format!("{hook}{line}\n"));
}

/// `status --output json`'s store templates, by VMID.
fn stores(f: &Fixture) -> Vec<Value> {
    let r = f.sim(&["status", "--output", "json"]);
    ok(&r);
    r.json()["store_templates"].as_array().unwrap().clone()
}

fn store_of(f: &Fixture, ctid: u64) -> Vec<Value> {
    stores(f)
        .into_iter()
        .filter(|s| s["ctid"] == ctid)
        .collect()
}

/// The volume a CT's root disk is, from its config.
fn rootfs(f: &Fixture, ctid: u32) -> String {
    f.ct(ctid).unwrap()["root_volume"]
        .as_str()
        .unwrap()
        .to_string()
}

/// The bytes each clone of the model copied, by target CTID (the last clone of each).
fn clone_bytes(f: &Fixture) -> std::collections::BTreeMap<u64, u64> {
    f.calls()
        .iter()
        .filter(|c| c["verb"] == "clone" && c["bytes"].is_u64())
        .map(|c| (c["ctid"].as_u64().unwrap(), c["bytes"].as_u64().unwrap()))
        .collect()
}

#[test]
fn each_template_generation_is_kept_once_and_its_children_link_to_it() {
    let f = fleet();
    let plan = common::plan(&f, &[]);
    assert_eq!(plan[&900]["store_template"]["vmid"], 9000);
    assert_eq!(plan[&901]["clone"]["kind"], "linked");
    assert_eq!(plan[&901]["clone"]["store_template"], 9000);
    assert!(
        plan[&901].get("store_template").is_none(),
        "901 has no child: nothing would link to its store template"
    );
    assert_eq!(plan[&950]["clone"]["store_template"], 9003);
    ok(&f.sim(&["build", "-j", "4"]));
    let found = stores(&f);
    assert_eq!(
        found.iter().map(|s| s["vmid"].clone()).collect::<Vec<_>>(),
        [9000, 9001, 9002, 9003]
    );
    for s in &found {
        assert!(s.get("untrusted").is_none(), "{s}");
        let ctid = s["ctid"].as_u64().unwrap() as u32;
        let ct = f.ct(ctid).unwrap();
        let snapshot = &s["snapshot"];
        assert_eq!(
            ct["parent_snapshot"], *snapshot,
            "the node's live generation"
        );
        let conf =
            fs::read_to_string(f.sim_host().conf_path(s["vmid"].as_u64().unwrap() as u32)).unwrap();
        assert!(conf.contains("template: 1\n"), "{conf}");
        assert!(conf.contains("tags: phoenix;phoenix-store\n"), "{conf}");
        assert!(
            conf.starts_with(&format!("#phoenix 0.1.0 store template of CT {ctid} (")),
            "{conf}"
        );
        assert!(conf.contains("#store%3A complete\n"), "{conf}");
        assert!(
            conf.contains(&format!("hostname: {}\n", snapshot.as_str().unwrap())),
            "named by its hash: {conf}"
        );
    }
    assert_eq!(
        rootfs(&f, 950),
        "local-zfs:basevol-9003-disk-0/subvol-950-disk-0"
    );
    // A child is phoenix's CT, not a store template: the tag and description are its own.
    let ct = f.ct(950).unwrap();
    assert_eq!(ct["settings"]["store_template"], false);
    assert!(ct["settings"]["description"]
        .as_str()
        .unwrap()
        .starts_with("Managed by phoenix"));
    // Linked clones copy nothing; each store template is one full copy.
    let bytes = clone_bytes(&f);
    for child in [901, 902, 903, 910, 920, 950] {
        assert_eq!(bytes[&child], 0, "{child}: {bytes:?}");
    }
    for store in [9000, 9001, 9002, 9003] {
        assert!(bytes[&store] > 0, "{store}: {bytes:?}");
    }
    // `generations` says which generation is kept as which store template, and what a
    // child's generation was linked to.
    let g = f.sim(&["generations", "920", "--output", "json"]).json();
    assert_eq!(g["generations"][0]["store_template"], 9003);
    let g = f.sim(&["generations", "950", "--output", "json"]).json();
    assert_eq!(g["generations"][0]["linked"], 9003);
    let human = f.sim(&["generations", "950"]).stdout;
    assert!(
        human.contains("a linked clone of store template 9003"),
        "{human}"
    );
    // `why` tells what each is.
    let why = f.sim(&["why", "920"]).stdout;
    assert!(
        why.contains("its generation is kept as store template 9003 (an immutable Proxmox template); linked clones of it: 950")
            && why.contains("its disk is a linked clone of store template 9002 (phx-"),
        "{why}"
    );
    // A second build is a no-op: one read of the host.
    let before = f.calls().len();
    let r = f.sim(&["build"]);
    ok(&r);
    assert!(r.stdout.contains("7 fresh"), "{}", r.stdout);
    assert_eq!(f.calls().len() - before, 1, "{:?}", &f.calls()[before..]);
}

#[test]
fn without_the_range_every_clone_is_full_as_before() {
    let f = Fixture::example();
    let plan = common::plan(&f, &[]);
    assert!(plan
        .values()
        .all(|e| e.get("clone").is_none() && e.get("store_template").is_none()));
    ok(&f.sim(&["build"]));
    assert!(stores(&f).is_empty());
    assert_eq!(rootfs(&f, 950), "local-zfs:subvol-950-disk-0");
}

#[test]
fn a_replaced_leaf_is_a_linked_clone_and_copies_nothing() {
    let f = fleet();
    f.write_hook(
        920,
        "#!/bin/bash\nset -e\npct exec \"$1\" -- fallocate -l 15G /root/model.safetensors\n",
    );
    ok(&f.sim(&["build"]));
    append_to_hook(&f, 950, "echo more");
    // Its own hook changed: in place by default, replaced when named.
    assert_eq!(common::actions(&f, &[])[&950], "rebuild");
    let plan = common::plan(&f, &["--replace", "950"]);
    assert_eq!(plan[&950]["mode"], "replace");
    assert_eq!(plan[&950]["consent"], "command_line");
    assert_eq!(plan[&950]["clone"]["store_template"], 9003);
    let human = f.sim(&["plan", "--replace", "950"]).stdout;
    assert!(
        human.contains("replace: its own inputs changed (consent given; its data is discarded); a linked clone of store template 9003 (no data copied)"),
        "{human}"
    );
    let before = f.calls().len();
    ok(&f.sim(&["build", "--replace", "950"]));
    let copied: u64 = f.calls()[before..]
        .iter()
        .filter(|c| c["verb"] == "clone")
        .map(|c| c["bytes"].as_u64().unwrap())
        .sum();
    assert_eq!(copied, 0, "{:?}", &f.calls()[before..]);
    // Against a full clone: 15 GiB.
    let g = Fixture::example();
    g.write_hook(
        920,
        "#!/bin/bash\nset -e\npct exec \"$1\" -- fallocate -l 15G /root/model.safetensors\n",
    );
    ok(&g.sim(&["build"]));
    append_to_hook(&g, 950, "echo more");
    let before = g.calls().len();
    ok(&g.sim(&["build", "--replace", "950"]));
    let copied: u64 = g.calls()[before..]
        .iter()
        .filter(|c| c["verb"] == "clone")
        .map(|c| c["bytes"].as_u64().unwrap())
        .sum();
    assert!(copied >= 15 << 30, "{copied}");
}

#[test]
fn gc_keeps_a_store_template_a_held_container_still_links_to() {
    let f = fleet();
    ok(&f.sim(&["build"]));
    append_to_hook(&f, 902, "echo more");
    // 910 is held (its parent changed): it stays a linked clone of 902's old generation.
    let r = f.sim(&["build"]);
    assert_eq!(r.code, 4, "{}\n{}", r.stdout, r.stderr);
    assert_eq!(
        rootfs(&f, 910),
        "local-zfs:basevol-9001-disk-0/subvol-910-disk-0"
    );
    let dry = f.sim(&["gc", "--dry-run", "--output", "json"]).json();
    let verdict = |vmid: u64| item(&dry["store_templates"], "vmid", vmid);
    let old = verdict(9001);
    assert_eq!(old["decision"], "keep");
    assert_eq!(old["reason"], "linked");
    assert_eq!(old["ctids"], serde_json::json!([910]));
    // 903's old generation: 903 was replaced and links to its new one; nothing needs it.
    let gone = verdict(9002);
    assert_eq!(gone["decision"], "delete", "{gone}");
    assert_eq!(gone["reason"], "unneeded");
    assert!(gone["linked"].as_array().unwrap().is_empty());
    let human = f.sim(&["gc", "--dry-run"]).stdout;
    assert!(human.contains("store template 9001 (phx-"), "{human}");
    assert!(
        human.contains("keep: CT 910 linked to it (Proxmox keeps a base volume in use)"),
        "{human}"
    );
    assert!(
        human.contains("would delete: no CT links to it and its generation is no longer wanted"),
        "{human}"
    );
    // Store templates are phoenix's CTs outside the config, yet never orphans.
    let orphans = f
        .sim(&["gc", "--orphans", "--dry-run", "--output", "json"])
        .json();
    assert_eq!(orphans["orphans"], serde_json::json!([]), "{orphans}");
    let before = f.calls().len();
    let r = f.sim(&["gc"]);
    ok(&r);
    let destroyed: Vec<u64> = f.calls()[before..]
        .iter()
        .filter(|c| c["verb"] == "destroy")
        .map(|c| c["ctid"].as_u64().unwrap())
        .collect();
    assert!(destroyed.contains(&9002), "{destroyed:?}");
    assert!(
        !destroyed.contains(&9001),
        "never tried on a store template a CT links to"
    );
    assert!(f.ct(9001).is_some() && f.ct(9002).is_none());
    // Consent: 910 is replaced, linked to 902's new generation; kept as a backup first,
    // whose record still names 9001, which gc therefore keeps.
    ok(&f.sim(&["build", "--replace", "910"]));
    assert!(rootfs(&f, 910).starts_with("local-zfs:basevol-9004-disk-0/"));
    let dry = f.sim(&["gc", "--dry-run", "--output", "json"]).json();
    let old = dry["store_templates"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["vmid"] == 9001)
        .unwrap()
        .clone();
    assert_eq!(old["reason"], "kept_linked", "{old}");
    assert_eq!(old["ctids"], serde_json::json!([910]));
    // Once the kept generation goes (--keep 0), so does its store template.
    let r = f.sim(&["gc", "--keep", "0", "--output", "json"]);
    ok(&r);
    let removed = r.json()["removed_store_templates"].clone();
    assert_eq!(removed, serde_json::json!([9001]), "{}", r.stdout);
}

#[test]
fn a_store_template_cut_short_is_not_trusted_and_is_made_again() {
    let f = fleet();
    // The creation stops after its full clone, before `pct template`.
    let r = f.sim_env(
        &["build", "--output", "json"],
        &[("PHOENIX_SIM_FAULTS", "template:9000=fail")],
    );
    assert_eq!(r.code, 1, "{}", r.stderr);
    let finished = common::finished(&r);
    assert_eq!(finished[&900].1, "failed");
    assert_eq!(finished[&901].1, "blocked", "nothing links to it");
    let failure = common::events(&r)
        .into_iter()
        .find(|e| e["event"] == "node_finished" && e["ctid"] == 900)
        .unwrap();
    assert_eq!(failure["failed_step"], "store");
    assert!(
        failure["error"]
            .as_str()
            .unwrap()
            .contains("the node itself is built"),
        "{failure}"
    );
    // 900 itself is built and was not put back.
    assert!(f.ct(900).unwrap()["parent_snapshot"]
        .as_str()
        .unwrap()
        .starts_with("phx-"));
    let left = stores(&f);
    assert_eq!(left.len(), 1);
    assert_eq!(left[0]["vmid"], 9000);
    assert_eq!(
        left[0]["untrusted"],
        "it is not a Proxmox template: its making was cut short"
    );
    // What is left looks like no store template anyone links to: the plan makes it again.
    let plan = common::plan(&f, &[]);
    assert_eq!(plan[&900]["action"], "update");
    assert_eq!(plan[&900]["store_template"]["vmid"], 9000);
    assert_eq!(plan[&900]["store_template"]["redo"], true);
    assert_eq!(plan[&900]["changes"][0]["key"], "store_template");
    let why = f.sim(&["why", "900"]).stdout;
    assert!(
        why.contains("only its store template is missing, which the build makes (update, no rebuild):\n  its store template is missing (store_vmid_range in "),
        "{why}"
    );
    let human = f.sim(&["plan"]).stdout;
    assert!(
        human.contains("but without its store template; then store template 9000 of phx-")
            && human.contains("(made again: an untrusted one is there)"),
        "{human}"
    );
    let before = f.calls().len();
    ok(&f.sim(&["build"]));
    let on_9000: Vec<String> = f.calls()[before..]
        .iter()
        .filter(|c| c["ctid"] == 9000 && c["mutating"] == true)
        .map(|c| c["verb"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(on_9000, ["destroy", "clone", "template", "set"]);
    assert!(stores(&f).iter().all(|s| s.get("untrusted").is_none()));
    assert_eq!(
        rootfs(&f, 901),
        "local-zfs:basevol-9000-disk-0/subvol-901-disk-0"
    );
}

#[test]
fn a_store_template_whose_record_is_not_complete_is_never_linked_to_and_gc_removes_it() {
    let f = fleet();
    ok(&f.sim(&["build"]));
    // An interrupted creation between `pct template` and the last mark: a template with
    // phoenix's tag and an incomplete record, at a VMID of the range.
    let text = fs::read_to_string(f.sim_host().conf_path(9003)).unwrap();
    let cut = text.replace("#store%3A complete\n", "");
    fs::write(f.sim_host().conf_path(9003), &cut).unwrap();
    assert!(store_of(&f, 920)[0]["untrusted"]
        .as_str()
        .unwrap()
        .contains("lacks `store: complete`"));
    // 950 still links to it: gc keeps it (Proxmox would refuse), and a rebuild of 950
    // does not link to it again: 920's generation gets its store template made again.
    let dry = f.sim(&["gc", "--dry-run", "--output", "json"]).json();
    let v = dry["store_templates"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["vmid"] == 9003)
        .unwrap()
        .clone();
    assert_eq!(v["reason"], "linked");
    append_to_hook(&f, 950, "echo more");
    let plan = common::plan(&f, &["--replace", "950"]);
    assert_eq!(
        plan[&920]["store_template"],
        serde_json::json!({"vmid": 9004}),
        "a new one: the untrusted one cannot go while 950 links to it"
    );
    assert_eq!(plan[&950]["clone"]["store_template"], 9004);
    ok(&f.sim(&["build", "--replace", "950"]));
    assert_eq!(
        rootfs(&f, 950),
        "local-zfs:basevol-9004-disk-0/subvol-950-disk-0"
    );
    // The replaced 950's kept generation was linked to it: kept until that goes.
    let r = f.sim(&["gc", "--keep", "0", "--output", "json"]);
    ok(&r);
    let v = r.json()["store_templates"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["vmid"] == 9003)
        .unwrap()
        .clone();
    assert_eq!(v["reason"], "untrusted", "{v}");
    assert!(f.ct(9003).is_none(), "removed once nothing links to it");
}

#[test]
fn a_child_on_another_storage_is_a_full_clone_and_the_plan_says_why() {
    let f = fleet();
    let root = f.sim_host().root().to_path_buf();
    let cfg = root.join("etc/pve/storage.cfg");
    let text = fs::read_to_string(&cfg).unwrap();
    fs::write(
        &cfg,
        format!("{text}\nzfspool: tank\n\tpool tank/ct\n\tcontent rootdir\n"),
    )
    .unwrap();
    f.edit_block(950, |b| {
        b.insert("storage_pool".into(), "tank".into());
    });
    let plan = common::plan(&f, &[]);
    assert_eq!(plan[&950]["clone"]["kind"], "full");
    assert_eq!(plan[&950]["clone"]["because"], "other_storage");
    assert_eq!(plan[&950]["clone"]["storage"], "tank");
    assert_eq!(plan[&950]["clone"]["template_storage"], "local-zfs");
    assert!(
        plan[&920].get("store_template").is_none(),
        "no child of 920 is on its storage"
    );
    let human = f.sim(&["plan"]).stdout;
    assert!(
        human.contains("a full clone: its storage 'tank' is not its template's 'local-zfs', and a linked clone stays on its template's storage"),
        "{human}"
    );
    ok(&f.sim(&["build"]));
    assert_eq!(rootfs(&f, 950), "tank:subvol-950-disk-0");
    assert!(store_of(&f, 920).is_empty());
}

#[test]
fn a_range_over_the_fleets_ctids_is_a_located_config_error() {
    let f = with_range("900-999");
    let r = f.validate_json();
    r.assert_invalid();
    let p = r.problem("config::store-range");
    assert!(
        p["message"].as_str().unwrap().contains(
            "store_vmid_range 900-999 holds the fleet's CTIDs 900, 901, 902, 903, 910, 920, 950"
        ),
        "{p}"
    );
    assert!(p["help"].as_str().unwrap().contains("\"951-1050\""), "{p}");
    let text = fs::read_to_string(f.hv_path()).unwrap();
    common::assert_at(
        &p,
        common::locate(&text, &["\"store_vmid_range\": ", "\"900-999\""]),
    );
    let r = f.sim(&["build"]);
    assert_eq!(r.code, 3, "{}", r.stderr);
    assert!(!f.state_dir.join("sim").exists(), "nothing touched");
    for bad in ["9099-9000", "99-9000", "9000"] {
        let f = with_range(bad);
        let r = f.validate_json();
        r.assert_invalid();
        assert!(
            r.codes()
                .iter()
                .any(|c| c == "config::store-range" || c == "schema::phoenix"),
            "{bad}: {:?}",
            r.codes()
        );
    }
}

#[test]
fn a_guest_in_the_range_or_a_full_range_stops_the_build_with_nothing_touched() {
    // A CT that is not phoenix's store template sits in the range.
    let f = fleet();
    f.sim(&["plan"]); // lays the node out
    f.create_foreign_ct(9050, "someones");
    let r = f.sim(&["plan", "--output", "json"]);
    assert_eq!(r.code, 1, "{}", r.stdout);
    let problems = r.json()["store_problems"].clone();
    assert!(
        problems[0]
            .as_str()
            .unwrap()
            .starts_with("VMID 9050 of store_vmid_range 9000-9099 is taken by CT 9050 (someones), which is not one of phoenix's store templates: move the range (proxmox_defaults.store_vmid_range in "),
        "{problems}"
    );
    let before = f.host_files();
    let r = f.sim(&["build"]);
    assert_eq!(r.code, 6, "{}", r.stdout);
    assert!(
        r.stderr.contains(
            "the store templates this build needs cannot be made, so no CT was touched: VMID 9050"
        ),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr
            .contains("help: give proxmox_defaults.store_vmid_range VMIDs no other guest uses"),
        "{}",
        r.stderr
    );
    assert_eq!(f.host_files(), before, "nothing touched");

    // Two VMIDs for four store templates.
    let f = with_range("9000-9001");
    let r = f.sim(&["plan"]);
    assert_eq!(r.code, 1, "{}", r.stdout);
    assert!(
        r.stdout.contains("no free VMID left in store_vmid_range 9000-9001 for the store template of CT 903 BaseTemplateDockerGPU (phx-")
            && r.stdout.contains("0 hold store templates (`phoenix gc` removes those no CT links to), 0 other guests; widen the range"),
        "{}",
        r.stdout
    );
    let r = f.sim(&["build"]);
    assert_eq!(r.code, 6, "{}", r.stderr);
    assert!(
        f.calls().iter().all(|c| c["mutating"] == false),
        "nothing touched: {:?}",
        f.calls()
    );
}

#[test]
fn a_backend_without_store_templates_says_the_range_changes_nothing() {
    let f = fleet();
    let lxc_path = f.tmp.path().join("lxc");
    fs::create_dir_all(&lxc_path).unwrap();
    let r = f.phoenix_env(
        &["plan", "--output", "json"],
        &[
            ("PHOENIX_BACKEND", "lxc"),
            ("PHOENIX_LXC_PATH", lxc_path.to_str().unwrap()),
        ],
    );
    assert!(
        r.stderr.contains("store_vmid_range is set, but the lxc backend makes no store templates (on lxc, clones are btrfs snapshots already): every clone is made as without it"),
        "{}",
        r.stderr
    );
    let plan = r.json();
    assert!(plan["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .all(|e| e.get("clone").is_none() && e.get("store_template").is_none()));
}

#[test]
fn a_lock_a_killed_clone_left_on_a_store_template_is_removed_not_taken_for_a_cut_short_one() {
    let f = fleet();
    ok(&f.sim(&["build"]));
    // A run killed while 950 was being cloned from 9003 leaves the source `lock: disk`.
    let path = f.sim_host().conf_path(9003);
    let text = fs::read_to_string(&path).unwrap();
    fs::write(
        &path,
        text.replace("template: 1\n", "lock: disk\ntemplate: 1\n"),
    )
    .unwrap();
    assert!(store_of(&f, 920)[0]["untrusted"]
        .as_str()
        .unwrap()
        .contains("locked (disk)"));
    append_to_hook(&f, 950, "echo more");
    let r = f.sim(&["build", "--replace", "950", "--output", "json"]);
    ok(&r);
    assert!(common::events(&r)
        .iter()
        .any(|e| e["event"] == "stale_lock" && e["ctid"] == 9003 && e["lock"] == "disk"));
    assert!(stores(&f).iter().all(|s| s.get("untrusted").is_none()));
    assert_eq!(stores(&f).len(), 4, "nothing made again");
    assert_eq!(
        rootfs(&f, 950),
        "local-zfs:basevol-9003-disk-0/subvol-950-disk-0"
    );
}

#[test]
fn a_generation_gets_a_store_template_on_each_node_its_children_live_on_and_they_link_locally() {
    // A simulated cluster of two nodes, each with its own `local-zfs`; the templates on
    // pve1, Portainer placed on pve2.
    let f = small_on_two_nodes();
    f.edit_block(910, |b| {
        b.insert("node".into(), "pve2".into());
    });
    // A Portainer agent beside the templates, on pve1.
    f.edit_lxc(|v| {
        let mut agent = v["lxc_configs"]["910"].clone();
        agent["name"] = "PortainerAgent".into();
        agent["mac_address"] = "52:54:00:67:89:9a".into();
        agent["network_config"]["ip"] = "10.0.0.98/24".into();
        agent["portainer_role"] = "agent".into();
        agent.as_object_mut().unwrap().remove("node");
        v["lxc_configs"]["911"] = agent;
    });
    let r = f.sim_env(&["plan", "--output", "json"], &TWO_NODES);
    ok(&r);
    let plan = r.json();
    let entry = |ctid: u32| item(&plan["nodes"], "ctid", ctid);
    // 902's children are on pve1 and pve2: a store template on each.
    let e902 = entry(902);
    assert_eq!(e902["node"], "pve1", "{e902:#}");
    let home = e902["store_template"]["vmid"].as_u64().unwrap();
    let e911 = entry(911);
    assert_eq!(e911["node"], "pve1", "{e911:#}");
    assert_eq!(e911["clone"]["store_template"], home, "{e911:#}");
    let remote = e902["remote_store_templates"].as_array().unwrap();
    assert_eq!(remote.len(), 1, "{e902:#}");
    assert_eq!(remote[0]["node"], "pve2");
    let vmid = remote[0]["vmid"].as_u64().unwrap();
    // 910 links to it on its own node: no clone beside 902, no move.
    let e910 = entry(910);
    assert_eq!(e910["node"], "pve2", "{e910:#}");
    assert!(e910.get("clone_via").is_none(), "{e910:#}");
    assert_eq!(e910["clone"]["kind"], "linked", "{e910:#}");
    assert_eq!(e910["clone"]["store_template"], vmid, "{e910:#}");
    let human = f.sim(&["plan"]).stdout;
    assert!(
        human.contains(&format!(
            "then store templates {home}, {vmid} on node pve2 (made here, migrated there) of phx-"
        )),
        "{human}"
    );

    ok(&f.sim(&["build"]));
    let log = f.sim(&["log", "902"]).stdout;
    assert!(
        log.contains(&format!("pct migrate {vmid} pve2"))
            && log.contains(&format!("pct template {vmid}")),
        "{log}"
    );
    let store = store_of(&f, 902);
    assert_eq!(store.len(), 2, "{store:#?}");
    let store = Value::from(store);
    let on = |node: &str| item(&store, "node", node);
    assert_eq!(on("pve1")["vmid"], home);
    assert_eq!(on("pve1")["linked"], serde_json::json!([911]), "{store:#?}");
    assert_eq!(on("pve2")["vmid"], vmid);
    assert_eq!(on("pve2")["linked"], serde_json::json!([910]), "{store:#?}");
    let conf = fs::read_to_string(f.state_dir.join("sim/etc/pve/nodes/pve2/lxc/910.conf")).unwrap();
    assert!(
        conf.contains(&format!(
            "rootfs: local-zfs:basevol-{vmid}-disk-0/subvol-910-disk-0,"
        )),
        "{conf}"
    );
    // Nothing was copied for 910 itself.
    assert_eq!(clone_bytes(&f).get(&910), Some(&0));
    let after = common::plan(&f, &[]);
    assert_eq!(after[&910]["action"], "fresh", "{:#}", after[&910]);
    assert_eq!(after[&902]["action"], "fresh", "{:#}", after[&902]);
    // gc keeps it: 910 links to it.
    // gc keeps both (CTs link to each; neither is the other's duplicate).
    let gc = f.sim(&["gc", "--dry-run", "--output", "json"]).json();
    for kept in gc["store_templates"].as_array().unwrap() {
        assert_eq!(kept["decision"], "keep", "{gc:#}");
        assert_eq!(kept["reason"], "linked", "{gc:#}");
    }
}

#[test]
fn a_clone_that_crosses_nodes_on_shared_storage_links_to_the_store_template_with_target() {
    let f = small_on_two_nodes();
    ok(&f.sim_env(&["plan"], &TWO_NODES));
    // Ceph, shared by both nodes: 902 and its clone 910 keep their disks there.
    let cfg = f.state_dir.join("sim/etc/pve/storage.cfg");
    let text = fs::read_to_string(&cfg).unwrap();
    fs::write(
        &cfg,
        format!("{text}\nrbd: ceph\n\tpool vm-pool\n\tcontent images,rootdir\n\tkrbd 1\n"),
    )
    .unwrap();
    for ctid in [902, 910] {
        f.edit_block(ctid, |b| {
            b.insert("storage_pool".into(), "ceph".into());
        });
    }
    f.edit_block(910, |b| {
        b.insert("node".into(), "pve2".into());
    });
    let plan = common::plan(&f, &[]);
    assert_eq!(plan[&910]["clone_via"]["via"], "target", "{:#}", plan[&910]);
    assert_eq!(plan[&910]["clone"]["kind"], "linked", "{:#}", plan[&910]);
    ok(&f.sim(&["build"]));
    let log = f.sim(&["log", "910"]).stdout;
    assert!(log.contains("--full 0 --target pve2"), "{log}");
    let after = common::plan(&f, &[]);
    assert_eq!(after[&910]["action"], "fresh", "{:#}", after[&910]);
    assert_eq!(after[&910]["node"], "pve2");
    let store = store_of(&f, 902);
    assert_eq!(store.len(), 1, "{store:#?}");
    assert_eq!(store[0]["linked"], serde_json::json!([910]), "{store:#?}");
}
