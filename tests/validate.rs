//! `phoenix validate` against broken configurations: every rule of DESIGN §2 rejects the
//! config with exit code 3, names the problem's code, and locates it at `file:line:col`
//! with its JSON pointer. Every problem of a run is reported, sorted; nothing panics.

mod common;

use std::fs;
use std::os::unix::fs::symlink;

use common::{assert_at, locate, Fixture, Run};
use serde_json::{json, Value};

/// Runs `validate --output json`, asserts exit 3, returns the one problem with `code`.
fn rejected(f: &Fixture, code: &str) -> (Run, Value) {
    let run = f.validate_json();
    run.assert_invalid();
    let p = run.problem(code);
    assert_eq!(p["severity"], "error", "{p:#}");
    (run, p)
}

/// Human output names `file:line:col` (miette's source header) and the help line.
fn assert_human(f: &Fixture, file: &std::path::Path, (line, col): (usize, usize), help: &str) {
    let run = f.phoenix(&["validate"]);
    run.assert_invalid();
    let at = format!("{}:{line}:{col}", file.display());
    assert!(
        run.stderr.contains(&at),
        "stderr does not name {at}:\n{}",
        run.stderr
    );
    assert!(
        run.stderr.contains(&format!("help: {help}")),
        "stderr lacks `help: {help}`:\n{}",
        run.stderr
    );
    assert!(run.stderr.contains("nothing was touched"), "{}", run.stderr);
}

fn lxc_file(f: &Fixture) -> String {
    f.lxc_path().display().to_string()
}

// ---------------------------------------------------------------- graph rules

#[test]
fn unknown_parent_is_located_at_the_reference() {
    let f = Fixture::example();
    f.edit_block(910, |b| {
        b.insert("clone_from_template_ctid".into(), json!("777"));
    });
    let (run, p) = rejected(&f, "graph::unknown-parent");
    assert_eq!(run.codes(), ["graph::unknown-parent"]);
    assert_eq!(p["file"], lxc_file(&f));
    assert_eq!(p["pointer"], "/lxc_configs/910/clone_from_template_ctid");
    assert!(p["message"].as_str().unwrap().contains("777"), "{p:#}");
    let at = locate(&f.lxc_text(), &["\"777\""]);
    assert_at(&p, at);
    assert_human(&f, &f.lxc_path(), at, "define 777 under lxc_configs");
}

#[test]
fn a_two_node_cycle_is_reported_with_its_whole_path() {
    let f = Fixture::example();
    f.edit_block(901, |b| {
        b.insert("clone_from_template_ctid".into(), json!("902"));
    });
    f.edit_block(902, |b| {
        b.insert("clone_from_template_ctid".into(), json!("901"));
    });
    let (run, p) = rejected(&f, "graph::cycle");
    assert_eq!(
        run.codes(),
        ["graph::cycle"],
        "descendants of a cycle add no noise"
    );
    assert_eq!(p["message"], "clone cycle: 901 → 902 → 901");
    assert_eq!(p["pointer"], "/lxc_configs/901/clone_from_template_ctid");
    let at = locate(
        &f.lxc_text(),
        &["\"901\": {", "\"clone_from_template_ctid\": ", "\"902\""],
    );
    assert_at(&p, at);
    assert_human(
        &f,
        &f.lxc_path(),
        at,
        "a template cannot descend from itself",
    );
}

#[test]
fn a_longer_cycle_is_spelled_parent_to_child() {
    let f = Fixture::example();
    // 901 → 902 → 903 → 901 (parent → child)
    f.edit_block(901, |b| {
        b.insert("clone_from_template_ctid".into(), json!("903"));
    });
    f.edit_block(902, |b| {
        b.insert("clone_from_template_ctid".into(), json!("901"));
    });
    let (_, p) = rejected(&f, "graph::cycle");
    assert_eq!(p["message"], "clone cycle: 901 → 902 → 903 → 901");
}

#[test]
fn a_node_cloned_from_itself_is_a_cycle() {
    let f = Fixture::example();
    f.edit_block(920, |b| {
        b.insert("clone_from_template_ctid".into(), json!(920));
    });
    let (_, p) = rejected(&f, "graph::cycle");
    assert_eq!(p["message"], "clone cycle: 920 → 920");
    assert_eq!(p["pointer"], "/lxc_configs/920/clone_from_template_ctid");
}

#[test]
fn parent_that_is_not_a_template_is_located_at_the_child_reference() {
    let f = Fixture::example();
    f.edit_block(920, |b| {
        b.insert("is_template".into(), json!(false));
    });
    let (run, p) = rejected(&f, "graph::parent-not-template");
    assert_eq!(run.codes(), ["graph::parent-not-template"]);
    assert_eq!(p["pointer"], "/lxc_configs/950/clone_from_template_ctid");
    assert!(p["message"].as_str().unwrap().contains("920"), "{p:#}");
    let at = locate(
        &f.lxc_text(),
        &["\"950\": {", "\"clone_from_template_ctid\": ", "\"920\""],
    );
    assert_at(&p, at);
    assert_human(&f, &f.lxc_path(), at, "set \"is_template\": true on 920");
}

// ---------------------------------------------------------------- duplicate keys

#[test]
fn duplicate_key_in_the_fleet_config_is_an_error_at_the_second_key() {
    let f = Fixture::example();
    let text = f.lxc_text();
    assert_eq!(text.matches("\"cores\": 8,").count(), 1);
    f.write_text(
        common::LXC,
        &text.replace("\"cores\": 8,", "\"cores\": 8,\n            \"cores\": 16,"),
    );
    let (run, p) = rejected(&f, "json::duplicate-key");
    assert_eq!(run.codes(), ["json::duplicate-key"]);
    assert_eq!(p["pointer"], "/lxc_configs/950/cores");
    assert_eq!(p["message"], "duplicate key `cores`");
    let at = locate(&f.lxc_text(), &["\"cores\": 8,", "\"cores\""]);
    assert_at(&p, at);
    let human = f.phoenix(&["validate"]);
    assert!(
        human.stderr.contains("first defined here"),
        "{}",
        human.stderr
    );
    assert_human(&f, &f.lxc_path(), at, "a JSON object must not repeat a key");
}

#[test]
fn duplicate_key_in_the_hypervisor_config_is_an_error_too() {
    let f = Fixture::example();
    let text = fs::read_to_string(f.hv_path()).unwrap();
    let text = text.replace(
        "\"portainer_agent_port\": 9001",
        "\"portainer_agent_port\": 9001,\n        \"portainer_agent_port\": 9002",
    );
    f.write_text(common::HV, &text);
    let (_, p) = rejected(&f, "json::duplicate-key");
    assert_eq!(p["file"], f.hv_path().display().to_string());
    assert_eq!(p["pointer"], "/network/portainer_agent_port");
    let at = locate(&text, &["9001,", "\"portainer_agent_port\""]);
    assert_at(&p, at);
}

// ---------------------------------------------------------------- CTIDs

#[test]
fn ctid_outside_the_vmid_range_is_located_at_its_key() {
    for bad in ["99", "1000000000", "0100", "12a"] {
        let f = Fixture::example();
        f.edit_lxc(|v| {
            let configs = v["lxc_configs"].as_object_mut().unwrap();
            let block = configs.remove("910").unwrap();
            configs.insert(bad.to_string(), block);
        });
        let (_, p) = rejected(&f, "config::bad-ctid");
        assert_eq!(p["pointer"], format!("/lxc_configs/{bad}"));
        assert!(
            p["message"].as_str().unwrap().contains(&format!("`{bad}`")),
            "{p:#}"
        );
        assert!(
            p["help"].as_str().unwrap().contains("100 to 999999999"),
            "{p:#}"
        );
        assert_at(&p, locate(&f.lxc_text(), &[&format!("\"{bad}\": {{")]));
    }
}

#[test]
fn parent_reference_outside_the_vmid_range_is_located_at_the_value() {
    let f = Fixture::example();
    f.edit_block(950, |b| {
        b.insert("clone_from_template_ctid".into(), json!("0920"));
    });
    let (_, p) = rejected(&f, "config::bad-ctid");
    assert_eq!(p["pointer"], "/lxc_configs/950/clone_from_template_ctid");
    assert_at(&p, locate(&f.lxc_text(), &["\"0920\""]));
}

#[test]
fn a_parent_whose_block_is_broken_is_not_also_unknown() {
    // 902's parent reference is bad; its children must not be told 902 does not exist.
    let f = Fixture::example();
    f.edit_block(902, |b| {
        b.insert("clone_from_template_ctid".into(), json!("0900"));
    });
    let run = f.validate_json();
    run.assert_invalid();
    assert_eq!(run.codes(), ["config::bad-ctid"]);
}

#[test]
fn numeric_parent_reference_is_accepted() {
    let f = Fixture::example();
    f.edit_block(950, |b| {
        b.insert("clone_from_template_ctid".into(), json!(920));
    });
    let run = f.phoenix(&["validate"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
}

// ---------------------------------------------------------------- block rules

#[test]
fn clone_whose_privilege_differs_from_its_parent() {
    let f = Fixture::example();
    f.edit_block(950, |b| {
        b.insert("unprivileged".into(), json!(false));
    });
    let (run, p) = rejected(&f, "config::privilege-mismatch");
    assert_eq!(run.codes(), ["config::privilege-mismatch"]);
    assert_eq!(p["pointer"], "/lxc_configs/950/unprivileged");
    assert!(p["message"].as_str().unwrap().contains("920"), "{p:#}");
    let at = locate(&f.lxc_text(), &["\"unprivileged\": ", "false"]);
    assert_at(&p, at);
    assert_human(
        &f,
        &f.lxc_path(),
        at,
        "Proxmox cannot change privilege on clone",
    );
    // The parent's block is far away: named by line, not printed in the snippet (which
    // would show every line between, secrets included).
    let human = f.phoenix(&["validate", "--color", "never"]).stderr;
    let parent_line = f
        .lxc_text()
        .lines()
        .position(|l| l.contains("\"920\": {"))
        .unwrap()
        + 1;
    assert!(
        human.contains(&format!("see also parent defined here: line {parent_line}")),
        "{human}"
    );
    assert!(!human.contains("vllm-base-snapshot"), "{human}");
}

#[test]
fn template_with_clones_needs_a_snapshot_name() {
    let f = Fixture::example();
    f.edit_block(920, |b| {
        b.remove("template_snapshot_name");
    });
    let (run, p) = rejected(&f, "config::missing-snapshot-name");
    assert_eq!(run.codes(), ["config::missing-snapshot-name"]);
    assert_eq!(p["pointer"], "/lxc_configs/920/template_snapshot_name");
    // the field is absent: located at the block's key
    assert_at(&p, locate(&f.lxc_text(), &["\"920\": {"]));
}

#[test]
fn template_without_clones_needs_no_snapshot_name() {
    let f = Fixture::example();
    f.edit_block(950, |b| {
        b.remove("rebuild");
        b.insert("is_template".into(), json!(true));
    });
    let run = f.phoenix(&["validate"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
}

#[test]
fn invalid_snapshot_name() {
    for (bad, words) in [
        ("base snapshot", "not a valid Proxmox snapshot name"),
        ("9lives", "not a valid"),
        ("phx-mine", "reserves"),
    ] {
        let f = Fixture::example();
        f.edit_block(920, |b| {
            b.insert("template_snapshot_name".into(), json!(bad));
        });
        let (_, p) = rejected(&f, "config::bad-snapshot-name");
        assert_eq!(p["pointer"], "/lxc_configs/920/template_snapshot_name");
        assert!(
            p["message"].as_str().unwrap().contains(words),
            "{bad}: {p:#}"
        );
        assert_at(&p, locate(&f.lxc_text(), &[&format!("\"{bad}\"")]));
    }
}

#[test]
fn duplicate_mac_address_ignores_case() {
    let f = Fixture::example();
    f.edit_block(950, |b| {
        b.insert("mac_address".into(), json!("52:54:00:67:89:99"));
    });
    f.edit_block(910, |b| {
        b.insert(
            "mac_address".into(),
            json!("52:54:00:67:89:99".to_uppercase()),
        );
    });
    let (_, p) = rejected(&f, "config::duplicate-mac");
    assert_eq!(p["pointer"], "/lxc_configs/950/mac_address");
    assert!(p["message"].as_str().unwrap().contains("CT 910"), "{p:#}");
    assert_at(
        &p,
        locate(&f.lxc_text(), &["\"950\": {", "\"mac_address\": ", "\"52"]),
    );
}

#[test]
fn duplicate_ip_address_ignores_the_prefix_length() {
    let f = Fixture::example();
    f.edit_block(950, |b| {
        b["network_config"]["ip"] = json!("10.0.0.99/16");
    });
    let (_, p) = rejected(&f, "config::duplicate-ip");
    assert_eq!(p["pointer"], "/lxc_configs/950/network_config/ip");
    assert!(
        p["message"]
            .as_str()
            .unwrap()
            .contains("10.0.0.99, already used by CT 910"),
        "{p:#}"
    );
    let at = locate(&f.lxc_text(), &["\"10.0.0.99/16\""]);
    assert_at(&p, at);
    assert_human(
        &f,
        &f.lxc_path(),
        at,
        "every container needs its own address",
    );
}

#[test]
fn dhcp_is_not_a_duplicate_address() {
    let f = Fixture::example();
    for ctid in [910, 950] {
        f.edit_block(ctid, |b| {
            b["network_config"]["ip"] = json!("dhcp");
        });
    }
    assert_eq!(f.phoenix(&["validate"]).code, 0);
}

#[test]
fn runfile_url_naming_another_driver_version() {
    let f = Fixture::example();
    f.edit_lxc(|v| {
        v["nvidia_runfile_url"] =
            json!("https://us.download.nvidia.com/XFree86/Linux-x86_64/580.82.07/NVIDIA-Linux-x86_64-580.82.07.run");
    });
    let (run, p) = rejected(&f, "config::runfile-version");
    assert_eq!(run.codes(), ["config::runfile-version"]);
    assert_eq!(p["pointer"], "/nvidia_runfile_url");
    let m = p["message"].as_str().unwrap();
    assert!(m.contains("580.82.07") && m.contains("580.76.05"), "{m}");
    assert_at(
        &p,
        locate(&f.lxc_text(), &["\"nvidia_runfile_url\": ", "\"https"]),
    );
}

#[test]
fn clone_disk_smaller_than_its_parent() {
    let f = Fixture::example();
    f.edit_block(950, |b| {
        b.insert("storage_size_gb".into(), json!(10));
    });
    let (run, p) = rejected(&f, "config::disk-shrink");
    assert_eq!(run.codes(), ["config::disk-shrink"]);
    assert_eq!(p["pointer"], "/lxc_configs/950/storage_size_gb");
    assert!(p["help"].as_str().unwrap().contains("at least 64"), "{p:#}");
    assert_at(
        &p,
        locate(
            &f.lxc_text(),
            &["\"950\": {", "\"storage_size_gb\": ", "10"],
        ),
    );
}

#[test]
fn hook_that_is_not_executable() {
    let f = Fixture::example();
    f.set_mode(&f.hook_path(950), 0o644);
    let (run, p) = rejected(&f, "hooks::not-executable");
    assert_eq!(run.codes(), ["hooks::not-executable"]);
    assert_eq!(p["pointer"], "/lxc_configs/950");
    let hook = f.hook_path(950).display().to_string();
    assert!(p["message"].as_str().unwrap().contains(&hook), "{p:#}");
    let at = locate(&f.lxc_text(), &["\"950\": {"]);
    assert_at(&p, at);
    assert_human(&f, &f.lxc_path(), at, &format!("chmod 755 {hook}"));
}

#[test]
fn hook_writable_by_others() {
    let f = Fixture::example();
    f.set_mode(&f.hook_path(903), 0o757);
    let (run, p) = rejected(&f, "hooks::world-writable");
    assert_eq!(run.codes(), ["hooks::world-writable"]);
    assert_eq!(p["pointer"], "/lxc_configs/903");
    assert!(
        p["help"].as_str().unwrap().starts_with("chmod o-w "),
        "{p:#}"
    );
    assert_at(&p, locate(&f.lxc_text(), &["\"903\": {"]));
}

#[test]
fn hook_that_cannot_be_read() {
    let f = Fixture::example();
    let hook = f.hook_path(950);
    fs::remove_file(&hook).unwrap();
    symlink(&hook, &hook).unwrap();
    let (_, p) = rejected(&f, "config::unreadable-hook");
    assert_eq!(p["file"], hook.display().to_string());
}

#[test]
fn portainer_agent_without_a_server_address() {
    let f = Fixture::example();
    f.edit_hv(|v| {
        v["network"]
            .as_object_mut()
            .unwrap()
            .remove("portainer_server_ip");
    });
    let (run, p) = rejected(&f, "config::agent-without-server");
    assert_eq!(run.codes(), ["config::agent-without-server"]);
    assert_eq!(p["pointer"], "/lxc_configs/950/portainer_role");
    assert!(
        p["help"]
            .as_str()
            .unwrap()
            .contains("network.portainer_server_ip"),
        "{p:#}"
    );
    assert_at(&p, locate(&f.lxc_text(), &["\"agent\""]));
}

#[test]
fn base_node_without_an_os_template() {
    let f = Fixture::example();
    f.edit_block(900, |b| {
        b.remove("template");
    });
    let (run, p) = rejected(&f, "config::missing-os-template");
    assert_eq!(run.codes(), ["config::missing-os-template"]);
    assert_eq!(p["pointer"], "/lxc_configs/900/template");
    assert_at(&p, locate(&f.lxc_text(), &["\"900\": {"]));
}

#[test]
fn clones_need_no_os_template() {
    let f = Fixture::example();
    for ctid in [901, 902, 903, 910, 920, 950] {
        f.edit_block(ctid, |b| {
            b.remove("template");
        });
    }
    let run = f.phoenix(&["validate"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
}

#[test]
fn rebuild_policy_on_a_template() {
    let f = Fixture::example();
    f.edit_block(920, |b| {
        b.insert("rebuild".into(), json!("replace"));
    });
    let (run, p) = rejected(&f, "config::rebuild-on-template");
    assert_eq!(run.codes(), ["config::rebuild-on-template"]);
    assert_eq!(p["pointer"], "/lxc_configs/920/rebuild");
    assert_at(&p, locate(&f.lxc_text(), &["\"replace\""]));
}

// ---------------------------------------------------------------- syntax and schema

#[test]
fn json_syntax_error_is_located() {
    let f = Fixture::example();
    let text = f.lxc_text().replace("\"cores\": 8,", "\"cores\": 8");
    f.write_text(common::LXC, &text);
    let (run, p) = rejected(&f, "json::syntax");
    assert_eq!(run.codes(), ["json::syntax"]);
    assert!(
        p["message"]
            .as_str()
            .unwrap()
            .contains("expected `,` or `}`"),
        "{p:#}"
    );
    // the first character after `8` that is not whitespace
    let at = locate(&text, &["\"cores\": 8", "\""]);
    assert_at(&p, at);
    assert_human(&f, &f.lxc_path(), at, "fix the JSON syntax");
}

#[test]
fn comments_and_single_quotes_are_syntax_errors() {
    for (bad, words) in [
        ("// fleet\n{}", "JSON has no comments"),
        ("{'a': 1}", "double quotes"),
        ("{\"a\": 1,}", "trailing comma"),
    ] {
        let f = Fixture::example();
        f.write_text(common::LXC, bad);
        let (_, p) = rejected(&f, "json::syntax");
        assert!(
            p["message"].as_str().unwrap().contains(words),
            "{bad:?}: {p:#}"
        );
    }
}

#[test]
fn every_problem_is_reported_sorted_by_file_and_position() {
    let f = Fixture::example();
    f.edit_block(910, |b| {
        b.insert("clone_from_template_ctid".into(), json!("777"));
    });
    f.edit_block(950, |b| {
        b.insert("unprivileged".into(), json!(false));
        b.insert("storage_size_gb".into(), json!(8));
        b["network_config"]["ip"] = json!("10.0.0.220/24");
    });
    f.edit_block(920, |b| {
        b.insert("template_snapshot_name".into(), json!("no good"));
    });
    let hv = fs::read_to_string(f.hv_path()).unwrap().replace(
        "\"debug_mode\": false",
        "\"debug_mode\": false,\n        \"debug_mode\": true",
    );
    f.write_text(common::HV, &hv);

    let run = f.validate_json();
    run.assert_invalid();
    let problems = run.problems();
    let mut codes = run.codes();
    codes.sort();
    assert_eq!(
        codes,
        [
            "config::bad-snapshot-name",
            "config::disk-shrink",
            "config::duplicate-ip",
            "config::privilege-mismatch",
            "graph::unknown-parent",
            "json::duplicate-key",
        ]
    );
    let keys: Vec<(String, u64, u64)> = problems
        .iter()
        .map(|p| {
            (
                p["file"].as_str().unwrap().to_string(),
                p["line"].as_u64().unwrap(),
                p["column"].as_u64().unwrap(),
            )
        })
        .collect();
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(keys, sorted, "problems are not sorted by file and position");
    assert_eq!(keys[0].0, f.hv_path().display().to_string());

    let human = f.phoenix(&["validate"]);
    assert!(
        human
            .stderr
            .contains("the configuration has 6 errors; nothing was touched"),
        "{}",
        human.stderr
    );
}

#[test]
fn schema_type_error_is_located_at_the_value() {
    let f = Fixture::example();
    f.edit_block(950, |b| {
        b.insert("memory_mb".into(), json!("lots"));
    });
    let (_, p) = rejected(&f, "schema::phoenix");
    assert_eq!(p["pointer"], "/lxc_configs/950/memory_mb");
    assert!(p["message"].as_str().unwrap().contains("\"lots\""), "{p:#}");
    let at = locate(&f.lxc_text(), &["\"lots\""]);
    assert_at(&p, at);
    assert_human(&f, &f.lxc_path(), at, "change the value's type");
}

#[test]
fn schema_missing_field_is_located_at_its_object() {
    let f = Fixture::example();
    f.edit_block(910, |b| {
        b.remove("cores");
    });
    f.edit_block(950, |b| {
        b.insert("portainer_role".into(), json!("observer"));
    });
    let run = f.validate_json();
    run.assert_invalid();
    let problems = run.problems();
    assert_eq!(problems.len(), 2, "{problems:#?}");
    let missing = &problems[0];
    assert_eq!(missing["code"], "schema::phoenix");
    assert_eq!(missing["pointer"], "/lxc_configs/910");
    assert!(
        missing["message"].as_str().unwrap().contains("\"cores\""),
        "{missing:#}"
    );
    assert_at(missing, locate(&f.lxc_text(), &["\"910\": ", "{"]));
    let role = &problems[1];
    assert_eq!(role["pointer"], "/lxc_configs/950/portainer_role");
    assert!(
        role["help"].as_str().unwrap().contains("\"agent\""),
        "{role:#}"
    );
    assert_at(role, locate(&f.lxc_text(), &["\"observer\""]));
}

#[test]
fn user_schema_unexpected_property_is_located_at_its_key() {
    let f = Fixture::example();
    f.write_text(
        "phoenix_lxc_configs.schema.json",
        &json!({
            "$schema": "http://json-schema.org/draft-07/schema#",
            "type": "object",
            "properties": {
                "$schema": {}, "nvidia_driver_version": {}, "nvidia_repo_url": {},
                "nvidia_runfile_url": {}, "lxc_configs": {}
            },
            "additionalProperties": false
        })
        .to_string(),
    );
    f.edit_lxc(|v| v["colour"] = json!("blue"));
    let (_, p) = rejected(&f, "schema::user");
    assert_eq!(p["pointer"], "");
    assert!(p["message"].as_str().unwrap().contains("`colour`"), "{p:#}");
    assert_at(&p, locate(&f.lxc_text(), &["\"colour\""]));
}

#[test]
fn user_schema_that_does_not_compile() {
    let f = Fixture::example();
    f.write_text(
        "phoenix_lxc_configs.schema.json",
        r#"{"type": "no-such-type"}"#,
    );
    let (_, p) = rejected(&f, "schema::invalid-schema");
    assert!(
        p["file"]
            .as_str()
            .unwrap()
            .ends_with("phoenix_lxc_configs.schema.json"),
        "{p:#}"
    );
}

#[test]
fn integers_may_be_spelled_as_floats() {
    // JSON Schema's `integer` accepts 2048.0; so does phoenix.
    let f = Fixture::example();
    let text = f
        .lxc_text()
        .replace("\"memory_mb\": 2048,", "\"memory_mb\": 2048.0,")
        .replace("\"cores\": 8,", "\"cores\": 8e0,");
    f.write_text(common::LXC, &text);
    let run = f.phoenix(&["validate"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
}

// ---------------------------------------------------------------- files

/// A file-level problem: exit 3, no panic, the file named, a clear message and help.
fn file_problem(f: &Fixture, code: &str, file: &std::path::Path, words: &str) -> Value {
    let (_, p) = rejected(f, code);
    assert_eq!(p["file"], file.display().to_string());
    assert!(
        p["message"].as_str().unwrap().contains(words),
        "expected `{words}` in {p:#}"
    );
    assert!(p["help"].as_str().is_some_and(|h| !h.is_empty()), "{p:#}");
    let human = f.phoenix(&["validate"]);
    human.assert_invalid();
    assert!(
        human.stderr.contains(&file.display().to_string()),
        "{}",
        human.stderr
    );
    assert!(human.stderr.contains(words), "{}", human.stderr);
    assert!(human.stderr.contains("help: "), "{}", human.stderr);
    p
}

#[test]
fn missing_config_file() {
    let f = Fixture::example();
    fs::remove_file(f.lxc_path()).unwrap();
    file_problem(&f, "config::missing-file", &f.lxc_path(), "not found");
}

#[test]
fn missing_hypervisor_file() {
    let f = Fixture::example();
    fs::remove_file(f.hv_path()).unwrap();
    file_problem(&f, "config::missing-file", &f.hv_path(), "not found");
}

#[test]
fn missing_config_dir_reports_both_files() {
    let f = Fixture::example();
    fs::remove_dir_all(&f.config_dir).unwrap();
    let run = f.validate_json();
    run.assert_invalid();
    assert_eq!(
        run.codes(),
        ["config::missing-file", "config::missing-file"]
    );
}

#[test]
fn directory_instead_of_a_file() {
    let f = Fixture::example();
    fs::remove_file(f.lxc_path()).unwrap();
    fs::create_dir(f.lxc_path()).unwrap();
    file_problem(
        &f,
        "config::unreadable-file",
        &f.lxc_path(),
        "is a directory",
    );
}

#[test]
fn symlink_loop() {
    let f = Fixture::example();
    fs::remove_file(f.lxc_path()).unwrap();
    symlink(common::LXC, f.lxc_path()).unwrap();
    file_problem(
        &f,
        "config::unreadable-file",
        &f.lxc_path(),
        "is a link that loops back on itself",
    );
}

#[test]
fn empty_file() {
    let f = Fixture::example();
    f.write_text(common::LXC, "");
    file_problem(&f, "config::empty-file", &f.lxc_path(), "is empty");
}

#[test]
fn whitespace_only_file() {
    let f = Fixture::example();
    f.write_text(common::HV, " \n\t\r\n  ");
    file_problem(&f, "config::empty-file", &f.hv_path(), "is empty");
}

#[test]
fn invalid_utf8_names_line_and_column() {
    let f = Fixture::example();
    fs::write(f.lxc_path(), b"{\n  \"a\": \"caf\xe9\"\n}\n").unwrap();
    let p = file_problem(&f, "config::not-utf8", &f.lxc_path(), "line 2, column 12");
    assert_at(&p, (2, 12));
    let human = f.phoenix(&["validate"]);
    assert!(
        human
            .stderr
            .contains(&format!("{}:2:12", f.lxc_path().display())),
        "{}",
        human.stderr
    );
}

#[test]
fn utf8_byte_order_mark() {
    let f = Fixture::example();
    let mut bytes = vec![0xEF, 0xBB, 0xBF];
    bytes.extend(f.lxc_text().into_bytes());
    fs::write(f.lxc_path(), bytes).unwrap();
    file_problem(&f, "config::bom", &f.lxc_path(), "byte-order mark");
}

#[test]
fn a_50_mib_file_is_too_large() {
    let f = Fixture::example();
    let mut text = f.lxc_text();
    text.push_str(&" ".repeat(50 * 1024 * 1024 - text.len()));
    f.write_text(common::LXC, &text);
    let p = file_problem(&f, "config::file-too-large", &f.lxc_path(), "50.0 MiB");
    assert!(
        p["message"].as_str().unwrap().contains("up to 32 MiB"),
        "{p:#}"
    );
}

#[test]
fn missing_hooks_dir() {
    let f = Fixture::example();
    fs::remove_dir_all(&f.hooks_dir).unwrap();
    file_problem(
        &f,
        "config::hooks-dir",
        &f.hooks_dir,
        "cannot read the hooks directory",
    );
}

#[test]
fn deeply_nested_json_is_an_error_not_a_crash() {
    let f = Fixture::example();
    f.write_text(common::LXC, &"[".repeat(1_000_000));
    let (_, p) = rejected(&f, "json::syntax");
    assert!(
        p["message"].as_str().unwrap().contains("nesting deeper"),
        "{p:#}"
    );
}

// ---------------------------------------------------------------- secrets stay hidden

#[test]
fn schema_problems_about_secrets_do_not_print_them() {
    let f = Fixture::example();
    f.write_text(
        "phoenix_lxc_configs.schema.json",
        &json!({
            "$schema": "http://json-schema.org/draft-07/schema#",
            "properties": {"lxc_configs": {"additionalProperties": {
                "properties": {
                    "hf_token": {"type": "string", "pattern": "^hf_"},
                    "vllm_engine": {"type": "string"}
                }
            }}}
        })
        .to_string(),
    );
    f.edit_block(950, |b| {
        b.insert("hf_token".into(), json!("SECRET-token-value"));
        b.insert(
            "vllm_engine".into(),
            json!({"port": 8000, "api_key": "SECRET-api-key"}),
        );
    });
    let run = f.validate_json();
    run.assert_invalid();
    let problems = run.problems();
    assert_eq!(problems.len(), 2, "{problems:#?}");
    assert_eq!(problems[0]["pointer"], "/lxc_configs/950/hf_token");
    assert_at(
        &problems[0],
        locate(&f.lxc_text(), &["\"SECRET-token-value\""]),
    );
    assert_eq!(problems[1]["pointer"], "/lxc_configs/950/vllm_engine");
    let human = f.phoenix(&["validate"]);
    human.assert_invalid();
    for out in [&run.stdout, &human.stderr] {
        assert!(!out.contains("SECRET"), "a secret was printed:\n{out}");
    }
    assert!(
        human
            .stderr
            .contains(&format!("{}:", f.lxc_path().display())),
        "{}",
        human.stderr
    );
}

#[test]
fn a_duplicated_secret_key_is_reported_without_its_values() {
    let f = Fixture::example();
    let text = f.lxc_text().replace(
        "\"cores\": 8,",
        "\"cores\": 8,\n            \"admin_password\": \"SECRET-1\",\n            \"admin_password\": \"SECRET-2\",",
    );
    f.write_text(common::LXC, &text);
    let (_, p) = rejected(&f, "json::duplicate-key");
    assert_eq!(p["pointer"], "/lxc_configs/950/admin_password");
    assert_at(&p, locate(&text, &["SECRET-1", "\"admin_password\""]));
    let human = f.phoenix(&["validate"]);
    assert!(!human.stderr.contains("SECRET"), "{}", human.stderr);
}

#[test]
fn hooks_that_never_run_are_warned_about() {
    let f = Fixture::example();
    let stray = f.write_hook(999, "#!/bin/sh\nexit 0\n");
    let original = f.hooks_dir.join("phoenix_hypervisor_lxc_950.sh");
    std::fs::write(&original, "#!/bin/sh\n").unwrap();
    let r = f.phoenix(&["validate", "--output", "json"]);
    assert_eq!(r.code, 0, "warnings do not fail validation: {}", r.stderr);
    let v = r.json();
    let problems = v["problems"].as_array().unwrap();
    let by_code = |c: &str| {
        problems
            .iter()
            .find(|p| p["code"] == c)
            .unwrap_or_else(|| panic!("no {c}: {v}"))
            .clone()
    };
    let p = by_code("hooks::no-such-node");
    assert_eq!(p["severity"], "warning");
    assert_eq!(p["file"], stray.display().to_string());
    assert!(p["message"].as_str().unwrap().contains("CT 999"), "{p}");
    let p = by_code("hooks::original-name");
    assert_eq!(p["file"], original.display().to_string());
    assert!(
        p["help"]
            .as_str()
            .unwrap()
            .contains("phoenix_hypervisor_setup_950.sh exists too"),
        "{p}"
    );
    let human = f.phoenix(&["validate"]);
    assert!(human.stderr.contains("never runs"), "{}", human.stderr);
    assert!(human.stdout.contains("valid"), "{}", human.stdout);
}

// ---------------------------------------------------------------- many, long, secret

#[test]
fn very_many_problems_show_the_first_fifty_and_count_the_rest() {
    let f = Fixture::example();
    let mut v = f.lxc();
    let configs = v["lxc_configs"].as_object_mut().unwrap();
    for ctid in 2000..2600 {
        // Each block misses its required fields: several problems apiece.
        configs.insert(ctid.to_string(), serde_json::json!({"name": 5}));
    }
    f.write_lxc(&v);
    let json = f.validate_json();
    let all = json.problems().len();
    assert!(all > 1000, "{all}");
    let human = f.phoenix(&["validate"]);
    assert_eq!(human.code, 3);
    let shown = human.stderr.matches(" × ").count() + human.stderr.matches(" ⚠ ").count();
    assert_eq!(shown, 50, "{}", &human.stderr[..2000]);
    assert!(
        human.stderr.contains(&format!(
            "... and {} more problem(s), not shown: `--output json` lists every one",
            all - 50
        )),
        "{}",
        &human.stderr[human.stderr.len() - 500..]
    );
}

#[test]
fn a_problem_deep_in_a_minified_config_is_shown_on_a_cut_line() {
    let f = Fixture::example();
    let mut v = f.lxc();
    // 80,000 characters of a harmless string before the bad value, all on one line.
    v["lxc_configs"]["900"]["description_padding"] = serde_json::json!("x".repeat(80_000));
    v["lxc_configs"]["950"]["memory_mb"] = serde_json::json!("lots");
    f.write_text(common::LXC, &serde_json::to_string(&v).unwrap());
    let run = f.phoenix(&["validate"]);
    assert_eq!(run.code, 3, "{}", run.stderr);
    assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
    let longest = run.stderr.lines().map(|l| l.chars().count()).max().unwrap();
    assert!(longest < 400, "a line of {longest} characters");
    let json = f.validate_json();
    let p = json
        .problems()
        .into_iter()
        .find(|p| p["pointer"] == "/lxc_configs/950/memory_mb")
        .unwrap();
    assert!(p["column"].as_u64().unwrap() > 65_535, "{p}");
    assert!(
        run.stderr
            .contains(&format!(":1:{}]", p["column"].as_u64().unwrap())),
        "the report names the real column: {}",
        run.stderr
    );
}

#[test]
fn a_secret_beside_a_bad_value_is_not_shown() {
    let f = Fixture::example();
    let text = f.lxc_text().replacen(
        "\"memory_mb\": 40960,",
        "\"root_password\": \"hunter2-horse-battery\",\n            \"memory_mb\": \"lots\",",
        1,
    );
    assert!(
        text.contains("hunter2"),
        "the fixture changed: 950's memory_mb"
    );
    f.write_text(common::LXC, &text);
    let run = f.phoenix(&["validate"]);
    assert_eq!(run.code, 3);
    assert!(run.stderr.contains("memory_mb"), "{}", run.stderr);
    assert!(!run.stderr.contains("hunter2"), "{}", run.stderr);
    assert!(
        run.stderr.contains("\"root_password\": \"***\","),
        "masked whatever its length: {}",
        run.stderr
    );
}

#[test]
fn a_bad_value_after_a_secret_on_its_line_is_pointed_at_where_the_file_has_it() {
    let f = Fixture::example();
    let text = f.lxc_text().replacen(
        "\"memory_mb\": 40960,",
        "\"root_password\": \"a-rather-long-secret-value\", \"memory_mb\": \"lots\",",
        1,
    );
    f.write_text(common::LXC, &text);
    let (line, col) = common::locate(&text, &["a-rather-long", "\"lots\""]);
    let run = f.phoenix(&["validate"]);
    assert_eq!(run.code, 3);
    assert!(!run.stderr.contains("a-rather-long"), "{}", run.stderr);
    assert!(
        run.stderr.contains(&format!(":{line}:{col}]")),
        "the file's own column, not the masked line's: {}",
        run.stderr
    );
    // The caret sits under the value, in the masked line.
    let shown = run
        .stderr
        .lines()
        .find(|l| l.contains("\"root_password\": \"***\""))
        .unwrap();
    let caret = run.stderr.lines().find(|l| l.contains("───")).unwrap();
    let value_at = shown.find("\"lots\"").unwrap();
    let caret_at = caret.find('─').unwrap();
    assert_eq!(
        shown[..value_at].chars().count(),
        caret[..caret_at].chars().count(),
        "{}",
        run.stderr
    );
}

#[test]
fn a_secret_on_a_long_line_or_in_a_file_that_does_not_parse_is_not_shown() {
    // One minified line: the report cuts it around the bad value, the secret beside it.
    let f = Fixture::example();
    f.edit_block(950, |b| {
        b.insert(
            "hf_token".into(),
            serde_json::json!("hf_minified_secret_value"),
        );
        b.insert("gpu_assignment".into(), serde_json::json!([]));
    });
    f.write_text(common::LXC, &serde_json::to_string(&f.lxc()).unwrap());
    let run = f.phoenix(&["validate"]);
    assert_eq!(run.code, 3);
    assert!(run.stderr.contains("gpu_assignment"), "{}", run.stderr);
    assert!(!run.stderr.contains("hf_minified"), "{}", run.stderr);
    // A secret key pasted into the middle of another key: the JSON does not parse.
    let g = Fixture::example();
    let text = g.lxc_text().replacen(
        "\"memory_mb\"",
        "\"mem\"api_token\": \"pasted-secret-value\", ory_mb\"",
        1,
    );
    g.write_text(common::LXC, &text);
    let run = g.phoenix(&["validate"]);
    assert_eq!(run.code, 3);
    assert!(!run.stderr.contains("pasted-secret"), "{}", run.stderr);
}

// ---------------------------------------------------------------- migration

#[test]
fn a_gpu_fleet_without_the_runfile_url_is_an_error_naming_what_to_add() {
    let f = Fixture::example();
    f.edit_lxc(|v| {
        v.as_object_mut().unwrap().remove("nvidia_runfile_url");
    });
    let (_, p) = rejected(&f, "config::gpu-needs-nvidia");
    assert!(
        p["message"]
            .as_str()
            .unwrap()
            .contains("CT 901 is assigned GPUs, but the file has no nvidia_runfile_url"),
        "{p}"
    );
    assert!(p["help"]
        .as_str()
        .unwrap()
        .contains("NVIDIA-Linux-x86_64-<version>.run"));
}

#[test]
fn validate_lists_the_nodes_without_a_setup_hook() {
    let f = Fixture::example();
    fs::remove_file(f.hook_path(901)).unwrap();
    fs::remove_file(f.hook_path(950)).unwrap();
    let v = f.validate_json().json();
    assert_eq!(v["without_hook"], json!([901, 950]));
    let human = f.phoenix(&["validate"]);
    assert_eq!(human.code, 0);
    assert!(
        human.stdout.contains(
            "no setup hook (phoenix_hypervisor_setup_<CTID>.sh) for 2 nodes: 901 BaseTemplateGPU, 950 vllmQwen3Coder"
        ),
        "{}",
        human.stdout
    );
}

#[test]
fn ten_thousand_nodes_without_hooks_are_one_short_line() {
    let blocks: serde_json::Map<String, serde_json::Value> = (1000..11000)
        .map(|c| {
            (
                c.to_string(),
                json!({"name": format!("n{c}"), "memory_mb": 512, "cores": 1,
                    "template": "local:vztmpl/debian-12-standard_12.7-1_amd64.tar.zst",
                    "storage_pool": "local-zfs", "storage_size_gb": 8}),
            )
        })
        .collect();
    let f = Fixture::with(&json!({ "lxc_configs": blocks }), &json!({}));
    let human = f.phoenix(&["validate"]);
    assert_eq!(human.code, 0, "{}", human.stderr);
    let line = human.stdout.lines().nth(1).unwrap();
    assert_eq!(
        line,
        "no setup hook (phoenix_hypervisor_setup_<CTID>.sh) for 10000 nodes: 1000 n1000, 1001 n1001, 1002 n1002, 1003 n1003, 1004 n1004, and 9995 more (`--output json` lists them) — phoenix's own steps build them alone"
    );
    assert_eq!(
        f.validate_json().json()["without_hook"]
            .as_array()
            .unwrap()
            .len(),
        10000
    );
}

#[test]
fn more_cores_than_the_host_has_is_a_warning() {
    let f = Fixture::example();
    f.edit_block(910, |b| {
        b.insert("cores".into(), json!(64));
    });
    let r = f.phoenix_env(
        &["validate", "--output", "json"],
        &[("PHOENIX_HOST_CPUS", "16")],
    );
    assert_eq!(r.code, 0, "a warning: {}", r.stdout);
    let p = r.problem("config::cores-above-host");
    assert_eq!(p["severity"], "warning");
    assert_eq!(
        p["message"],
        "CT 910 asks for 64 cores, but the host has 16 CPUs: it never gets more than 16"
    );
    common::assert_at(
        &p,
        common::locate(&f.lxc_text(), &["\"910\": {", "\"cores\": ", "64"]),
    );
    let plan = f.phoenix_env(
        &["plan"],
        &[("PHOENIX_BACKEND", "sim"), ("PHOENIX_HOST_CPUS", "16")],
    );
    assert!(
        plan.stderr.contains("the configuration has 1 warning(s)"),
        "{}",
        plan.stderr
    );
}

#[test]
fn hypervisor_schema_warnings_are_shown_by_validate_and_pointed_to_elsewhere() {
    // The original's files: its hypervisor config never passed its own schema.
    let f = Fixture::empty();
    let fleet = common::repo().join("tests/fixtures/fleets/upstream-fe8c1c1");
    for e in fs::read_dir(&fleet).unwrap().flatten() {
        if e.path().extension().is_some_and(|x| x == "json") {
            fs::copy(e.path(), f.config_dir.join(e.file_name())).unwrap();
        }
    }
    let v = f.phoenix(&["validate"]);
    assert_eq!(v.code, 0, "{}", v.stderr);
    assert!(
        v.stderr.contains("property `docker` is not allowed here"),
        "{}",
        v.stderr
    );
    let p = f.phoenix(&["graph"]);
    assert_eq!(p.code, 0, "{}", p.stderr);
    let lines: Vec<&str> = p.stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "{}", p.stderr);
    assert!(
        lines[0].starts_with("warning: the configuration has ")
            && lines[0].ends_with("warning(s): `phoenix validate` shows them"),
        "{}",
        lines[0]
    );
}

#[test]
fn a_missing_hooks_directory_is_reported_with_every_other_problem() {
    let f = Fixture::example();
    fs::remove_dir_all(&f.hooks_dir).unwrap();
    f.edit_block(950, |b| {
        b.insert("clone_from_template_ctid".into(), json!("999"));
    });
    let run = f.validate_json();
    run.assert_invalid();
    let codes = run.codes();
    assert!(
        codes.contains(&"config::hooks-dir".to_string()),
        "{codes:?}"
    );
    assert!(
        codes.iter().any(|c| c != "config::hooks-dir"),
        "the config's own problem is there too: {codes:?}"
    );
}

#[test]
fn the_orchestrators_later_format_is_explained_in_one_diagnostic() {
    let f = Fixture::example();
    f.edit_lxc(|v| {
        for (_, b) in v["lxc_configs"].as_object_mut().unwrap() {
            let b = b.as_object_mut().unwrap();
            if let Some(p) = b.remove("clone_from_template_ctid") {
                b.insert("clone_from_ctid".into(), p);
            }
            b.insert("features".into(), json!(["docker"]));
            b.insert("application_script".into(), json!("app.sh"));
        }
    });
    let run = f.validate_json();
    run.assert_invalid();
    assert_eq!(
        run.codes(),
        ["config::later-format"],
        "one diagnostic, nothing else"
    );
    let p = run.problem("config::later-format");
    let message = p["message"].as_str().unwrap();
    for sign in [
        "`clone_from_ctid`",
        "`features` as a list",
        "`application_script`",
    ] {
        assert!(message.contains(sign), "{message}");
    }
    assert!(p["help"]
        .as_str()
        .unwrap()
        .contains("clone_from_template_ctid"));
}

#[test]
fn a_user_schema_whose_ctid_pattern_refuses_a_ctid_says_it_is_the_pattern() {
    let f = Fixture::example();
    f.write_text(
        "phoenix_lxc_configs.schema.json",
        r#"{
  "$schema": "http://json-schema.org/draft-07/schema#",
  "type": "object",
  "properties": {
    "lxc_configs": {
      "type": "object",
      "patternProperties": {"^(90[0-3]|910|920)$": {"type": "object"}},
      "additionalProperties": false
    }
  }
}"#,
    );
    let run = f.validate_json();
    run.assert_invalid();
    let p = run.problem("schema::user");
    assert_eq!(
        p["message"],
        "CTID 950 does not match the CTID key pattern `^(90[0-3]|910|920)$` of phoenix_lxc_configs.schema.json"
    );
    assert!(
        p["help"]
            .as_str()
            .unwrap()
            .contains("add 950 to that pattern"),
        "{p}"
    );
}

#[test]
fn the_originals_create_and_clone_scripts_are_named_as_never_run() {
    let f = Fixture::example();
    for name in [
        "phoenix_hypervisor_create_lxc.sh",
        "phoenix_hypervisor_clone_lxc.sh",
    ] {
        let p = f.hooks_dir.join(name);
        fs::write(&p, "#!/bin/sh\npct create \"$1\"\n").unwrap();
        f.set_mode(&p, 0o755);
    }
    let run = f.validate_json();
    assert_eq!(run.code, 0, "{}", run.stderr);
    let warned: Vec<Value> = run
        .problems()
        .into_iter()
        .filter(|p| p["code"] == "hooks::not-run")
        .collect();
    assert_eq!(warned.len(), 2, "{warned:?}");
    assert!(warned[0]["help"]
        .as_str()
        .unwrap()
        .contains("phoenix_hypervisor_setup_<CTID>.sh"));
}
