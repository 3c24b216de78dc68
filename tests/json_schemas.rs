//! Every command's `--output json` against its JSON Schema in `schemas/output/`: real output
//! of the real binary on the simulated host, in the states that exercise each document's
//! variants (a fresh host, a built fleet, runtime edits, a hook edit, failures, a foreign
//! CT, a host whose driver differs). Under `--output json` stdout is exactly one JSON
//! document, for a failing command too (the error document); `build` prints one event per
//! line, each checked against `build-event.schema.json`.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;

use common::Fixture;
use serde_json::{json, Value};

/// The schema of each command's document.
const COMMANDS: [(&str, &str); 12] = [
    ("validate", "validate"),
    ("graph", "graph"),
    ("show", "show"),
    ("plan", "plan"),
    ("status", "status"),
    ("log", "log"),
    ("why", "why"),
    ("gc", "gc"),
    ("generations", "generations"),
    ("build", "build-event"),
    ("rollback", "rollback"),
    ("unpin", "unpin"),
];

/// The schemas of `schemas/output/`, each checked against its metaschema and compiled with
/// `format` asserted.
struct Schemas(BTreeMap<String, jsonschema::Validator>);

impl Schemas {
    fn load() -> Schemas {
        let dir = common::repo().join("schemas/output");
        let mut out = BTreeMap::new();
        for entry in fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let file = path.file_name().unwrap().to_str().unwrap().to_string();
            let name = file
                .strip_suffix(".schema.json")
                .unwrap_or_else(|| panic!("{file}: not a *.schema.json"))
                .to_string();
            let schema: Value = serde_json::from_str(&fs::read_to_string(&path).unwrap())
                .unwrap_or_else(|e| panic!("{file}: {e}"));
            if let Err(e) = jsonschema::meta::validate(&schema) {
                panic!("{file} is not a valid JSON Schema: {e}");
            }
            for key in ["title", "description"] {
                assert!(schema[key].is_string(), "{file} has no {key}");
            }
            let validator = jsonschema::options()
                .should_validate_formats(true)
                .build(&schema)
                .unwrap_or_else(|e| panic!("{file} does not compile: {e}"));
            out.insert(name, validator);
        }
        Schemas(out)
    }

    /// Asserts `doc` matches `schema`, naming every mismatch by its place in the document.
    fn check(&self, schema: &str, doc: &Value, what: &str) {
        let validator = self
            .0
            .get(schema)
            .unwrap_or_else(|| panic!("no schemas/output/{schema}.schema.json"));
        let errors: Vec<String> = validator
            .iter_errors(doc)
            .map(|e| format!("  at `{}`: {e}", e.instance_path().as_str()))
            .collect();
        assert!(
            errors.is_empty(),
            "`phoenix {what}` does not match {schema}.schema.json:\n{}\ndocument:\n{doc:#}",
            errors.join("\n")
        );
    }

    /// Runs `phoenix <args> --output json` on the sim backend and checks that stdout is one
    /// JSON document, matching the command's schema, or, when the command failed, the
    /// error document with the process's exit code. Returns the document.
    fn doc(&self, f: &Fixture, args: &[&str], env: &[(&str, &str)], code: i32) -> Value {
        let what = args.join(" ");
        let mut all = args.to_vec();
        all.extend(["--output", "json"]);
        let r = f.sim_env(&all, env);
        assert_eq!(r.code, code, "phoenix {what}:\n{}\n{}", r.stdout, r.stderr);
        assert!(!r.stderr.contains("panicked"), "{}", r.stderr);
        let doc: Value = serde_json::from_str(&r.stdout).unwrap_or_else(|e| {
            panic!(
                "`phoenix {what} --output json`: stdout is not one JSON document ({e}):\n{}\nstderr:\n{}",
                r.stdout, r.stderr
            )
        });
        if doc["error"].is_object() {
            self.check("error", &doc, &what);
            assert_eq!(doc["error"]["exit_code"], code, "{what}: {doc}");
        } else {
            self.check(schema_of(args[0]), &doc, &what);
        }
        doc
    }

    /// Runs `phoenix build <args> --output json` and checks each line: an event, or (last
    /// only) the error document. Returns the lines.
    fn build(&self, f: &Fixture, args: &[&str], env: &[(&str, &str)], code: i32) -> Vec<Value> {
        let what = format!("build {}", args.join(" "));
        let mut all = vec!["build"];
        all.extend(args);
        all.extend(["--output", "json"]);
        let r = f.sim_env(&all, env);
        assert_eq!(r.code, code, "phoenix {what}:\n{}\n{}", r.stdout, r.stderr);
        assert!(
            r.stdout.ends_with('\n'),
            "{what}: stdout does not end a line:\n{}",
            r.stdout
        );
        let lines: Vec<Value> = r
            .stdout
            .lines()
            .map(|l| {
                serde_json::from_str(l).unwrap_or_else(|e| {
                    panic!(
                        "{what}: `{l}` is not one JSON document ({e})\nstdout:\n{}",
                        r.stdout
                    )
                })
            })
            .collect();
        for (i, line) in lines.iter().enumerate() {
            if line["error"].is_object() {
                assert_eq!(i, lines.len() - 1, "{what}: an error before the last line");
                self.check("error", line, &what);
                assert_eq!(line["error"]["exit_code"], code, "{what}: {line}");
            } else {
                self.check("build-event", line, &what);
            }
        }
        lines
    }
}

fn schema_of(command: &str) -> &'static str {
    COMMANDS
        .iter()
        .find(|(c, _)| *c == command)
        .map(|(_, s)| *s)
        .unwrap_or_else(|| panic!("no schema for `{command}`"))
}

/// The values of `key` in a list of objects.
fn values<'a>(list: &'a Value, key: &str) -> BTreeSet<&'a str> {
    list.as_array()
        .unwrap()
        .iter()
        .filter_map(|x| x[key].as_str())
        .collect()
}

/// What each `node_finished` line says of its node.
fn outcomes(lines: &[Value]) -> BTreeSet<String> {
    lines
        .iter()
        .filter(|l| l["event"] == "node_finished")
        .map(|l| l["outcome"].as_str().unwrap().to_string())
        .collect()
}

fn events(lines: &[Value]) -> BTreeSet<String> {
    lines
        .iter()
        .filter_map(|l| l["event"].as_str().map(str::to_string))
        .collect()
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

fn append_to_hook(f: &Fixture, ctid: u32, line: &str) {
    let hook = fs::read_to_string(f.hook_path(ctid)).unwrap();
    f.write_hook(ctid, &format!("{hook}{line}\n"));
}

#[test]
fn a_rollback_its_pin_and_the_unpin() {
    let s = Schemas::load();
    let f = Fixture::example();
    s.build(&f, &[], &[], 0);
    append_to_hook(&f, 910, "echo v2");
    s.build(&f, &[], &[], 0);
    let dry = s.doc(&f, &["rollback", "910", "--dry-run"], &[], 4);
    assert_eq!(dry["pinned"], Value::Null);
    assert_eq!(dry["deletes"].as_array().unwrap().len(), 1);
    s.doc(&f, &["rollback", "910"], &[], 4);
    let done = s.doc(&f, &["rollback", "910", "--force"], &[], 0);
    assert!(done["pinned"].is_object());
    let plan = s.doc(&f, &["plan"], &[], 0);
    assert!(values(&plan["nodes"], "action").contains("pinned"));
    let why = s.doc(&f, &["why", "910"], &[], 0);
    assert_eq!(why["explanation"]["verdict"], "pinned");
    s.doc(&f, &["status"], &[], 0);
    let gc = s.doc(&f, &["gc", "--dry-run"], &[], 0);
    assert!(values(&gc["snapshots"], "reason").contains("pinned"));
    let lines = s.build(&f, &[], &[], 0);
    assert!(outcomes(&lines).contains("pinned"));
    assert_eq!(s.doc(&f, &["unpin", "910"], &[], 0)["was_pinned"], true);
    s.doc(&f, &["rollback", "910", "--to", "phx-0123"], &[], 2);
}

#[test]
fn every_schema_belongs_to_a_document() {
    let schemas = Schemas::load();
    let mut documents: BTreeSet<&str> = COMMANDS.iter().map(|(_, s)| *s).collect();
    documents.insert("error");
    assert_eq!(
        schemas
            .0
            .keys()
            .map(String::as_str)
            .collect::<BTreeSet<_>>(),
        documents
    );
}

#[test]
fn a_fresh_host_then_a_build() {
    let s = Schemas::load();
    let f = Fixture::example();
    let v = s.doc(&f, &["validate"], &[], 0);
    assert_eq!(
        (v["valid"].clone(), v["node_count"].clone()),
        (json!(true), json!(7))
    );
    s.doc(&f, &["graph"], &[], 0);
    s.doc(&f, &["graph", "--format", "json"], &[], 0);
    s.doc(&f, &["show", "900"], &[], 0);
    s.doc(&f, &["show", "950"], &[], 0);
    let plan = s.doc(&f, &["plan"], &[], 0);
    assert_eq!(values(&plan["nodes"], "action"), BTreeSet::from(["create"]));
    let status = s.doc(&f, &["status"], &[], 0);
    assert_eq!(
        values(&status["nodes"], "state"),
        BTreeSet::from(["missing"])
    );
    s.doc(&f, &["why"], &[], 0);
    s.doc(&f, &["why", "950"], &[], 0);
    assert_eq!(s.doc(&f, &["log", "950"], &[], 0)["log"], Value::Null);
    assert_eq!(
        s.doc(&f, &["generations", "950"], &[], 0)["generations"],
        json!([])
    );
    s.doc(&f, &["gc", "--dry-run"], &[], 0);

    let lines = s.build(&f, &[], &[], 0);
    assert_eq!(
        events(&lines),
        set(&[
            "run_started",
            "node_started",
            "step_started",
            "node_finished",
            "run_finished"
        ])
    );
    assert_eq!(outcomes(&lines), set(&["built"]));
    let lines = s.build(&f, &[], &[], 0);
    assert_eq!(
        outcomes(&lines),
        set(&["fresh"]),
        "a second build has nothing to do"
    );

    let status = s.doc(&f, &["status"], &[], 0);
    assert_eq!(
        values(&status["nodes"], "state"),
        BTreeSet::from(["running", "stopped"])
    );
    let ex = s.doc(&f, &["why", "950"], &[], 0);
    assert_eq!(ex["explanation"]["verdict"], "up_to_date");
    assert_eq!(s.doc(&f, &["why"], &[], 0)["nodes"], json!([]));
    assert!(s.doc(&f, &["log", "950"], &[], 0)["log"].is_string());
    s.doc(&f, &["generations", "950"], &[], 0);
    s.doc(&f, &["plan"], &[], 0);
}

#[test]
fn runtime_edits_a_hook_edit_and_what_gc_then_removes() {
    let s = Schemas::load();
    let f = Fixture::example();
    s.build(&f, &[], &[], 0);

    // Runtime settings: 950's memory is updated in place, and its new secret delivered;
    // 910's smaller disk is kept.
    f.edit_block(950, |b| {
        b.insert("memory_mb".into(), json!(32768));
        b.insert("hf_token".into(), json!("hf_abcdefgh"));
    });
    f.edit_block(910, |b| {
        b.insert("storage_size_gb".into(), json!(40));
    });
    let plan = s.doc(&f, &["plan"], &[], 0);
    assert_eq!(
        values(&plan["nodes"], "action"),
        BTreeSet::from(["fresh", "update"])
    );
    assert!(plan["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["disk_kept_gb"] == 64));
    let why = s.doc(&f, &["why", "950"], &[], 0);
    assert_eq!(why["explanation"]["verdict"], "update");
    assert_eq!(
        why["explanation"]["secrets"],
        json!([{"field": "hf_token", "change": "added"}])
    );
    s.doc(&f, &["why"], &[], 0);
    let lines = s.build(&f, &[], &[], 0);
    assert!(lines.iter().any(|l| l["action"] == "update"));

    // A template's hook and a config field change: rebuilds, an in-place rebuild (950 says
    // so in its block), a held container (910), root causes with file:line and a diff.
    append_to_hook(&f, 902, "echo x");
    f.edit_block(901, |b| {
        b.insert("vllm_model".into(), json!("org/model"));
    });
    let plan = s.doc(&f, &["plan"], &[], 4);
    assert_eq!(
        values(&plan["nodes"], "action"),
        BTreeSet::from(["fresh", "held", "rebuild"])
    );
    let all = s.doc(&f, &["why"], &[], 0);
    assert_eq!(all["root_causes"].as_array().unwrap().len(), 2, "{all:#}");
    for ctid in ["901", "902", "910", "950"] {
        let ex = s.doc(&f, &["why", ctid], &[], 0);
        assert_eq!(ex["explanation"]["verdict"], "rebuild", "{ex:#}");
    }
    let verbose = s.doc(&f, &["why", "902", "-v"], &[], 0);
    assert!(verbose["explanation"]["root_causes"][0]["reasons"][0]["diff"].is_string());
    let status = s.doc(&f, &["status"], &[], 0);
    assert_eq!(
        values(&status["nodes"], "action"),
        BTreeSet::from(["fresh", "held", "rebuild"])
    );
    let lines = s.build(&f, &[], &[], 4);
    assert_eq!(outcomes(&lines), set(&["built", "fresh", "held"]));

    // 950 was rebuilt in place: its older generation is what gc removes.
    let generations = s.doc(&f, &["generations", "950"], &[], 0);
    assert_eq!(generations["generations"].as_array().unwrap().len(), 2);
    let dry = s.doc(&f, &["gc", "--dry-run", "--keep", "0"], &[], 0);
    assert_eq!(
        values(&dry["snapshots"], "decision"),
        BTreeSet::from(["delete", "keep"])
    );
    let young = s.doc(
        &f,
        &["gc", "--dry-run", "--keep", "0", "--older-than", "1h"],
        &[],
        0,
    );
    assert!(values(&young["snapshots"], "reason").contains("young"));
    let recent = s.doc(&f, &["gc", "--dry-run"], &[], 0);
    assert!(values(&recent["snapshots"], "reason").contains("recent"));
    let failed = s.doc(
        &f,
        &["gc", "--keep", "0"],
        &[("PHOENIX_SIM_FAULTS", "delsnapshot:950=fail")],
        1,
    );
    assert_eq!(failed["errors"].as_array().unwrap().len(), 1, "{failed:#}");
    let done = s.doc(&f, &["gc", "--keep", "0"], &[], 0);
    assert_eq!(done["deleted"].as_array().unwrap().len(), 1, "{done:#}");

    // A CT that left the config is an orphan, destroyed only with --orphans.
    f.edit_lxc(|v| {
        v["lxc_configs"].as_object_mut().unwrap().remove("910");
    });
    let kept = s.doc(&f, &["gc", "--dry-run"], &[], 0);
    assert_eq!(kept["orphans"][0]["destroy"], false);
    s.doc(&f, &["gc", "--orphans", "--dry-run"], &[], 0);
    let destroyed = s.doc(&f, &["gc", "--orphans"], &[], 0);
    assert_eq!(destroyed["destroyed"], json!([910]));

    // Without the stored manifests, `why` says it cannot tell and `generations` shows no
    // recipe.
    append_to_hook(&f, 950, "echo y");
    fs::remove_dir_all(f.state_dir.join("manifests")).unwrap();
    let unknown = s.doc(&f, &["why", "950"], &[], 0);
    assert_eq!(
        unknown["explanation"]["root_causes"][0]["reasons"][0]["kind"],
        "unknown"
    );
    let generations = s.doc(&f, &["generations", "950"], &[], 0);
    assert_eq!(generations["generations"][0]["manifest"], Value::Null);
}

#[test]
fn a_failing_build_its_unfinished_node_and_a_stale_lock() {
    let s = Schemas::load();
    let f = Fixture::example();
    let faults = [("PHOENIX_SIM_FAULTS", "start:903=fail,clone:910=locked*1")];
    let lines = s.build(&f, &[], &faults, 1);
    assert_eq!(outcomes(&lines), set(&["blocked", "built", "failed"]));
    assert!(events(&lines).contains("retry"));
    let plan = s.doc(&f, &["plan"], &[], 0);
    let unfinished = plan["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["ctid"] == 903)
        .unwrap();
    assert_eq!(
        (&unfinished["cause"], &unfinished["built_snapshot"]),
        (&json!("unfinished"), &Value::Null)
    );
    assert_eq!(
        s.doc(&f, &["why", "903"], &[], 0)["explanation"]["verdict"],
        "unfinished"
    );
    s.doc(&f, &["why"], &[], 0);
    s.doc(&f, &["log", "903"], &[], 0);
    s.doc(&f, &["status"], &[], 0);

    // A lock an interrupted run left on one of phoenix's CTs.
    let conf = f.sim_host().conf_path(900);
    let text = fs::read_to_string(&conf).unwrap();
    fs::write(&conf, format!("lock: disk\n{text}")).unwrap();
    let lines = s.build(&f, &[], &[], 0);
    assert!(events(&lines).contains("stale_lock"));
}

#[test]
fn fail_fast_cancels_what_has_not_started() {
    let s = Schemas::load();
    let f = Fixture::example();
    let lines = s.build(
        &f,
        &["--fail-fast", "-j", "1"],
        &[("PHOENIX_SIM_FAULTS", "clone:902=fail")],
        1,
    );
    assert!(outcomes(&lines).contains("cancelled"), "{lines:#?}");
}

#[test]
fn a_foreign_ct_is_unmanaged_and_blocks_its_subtree() {
    let s = Schemas::load();
    let f = Fixture::example();
    f.create_foreign_ct(903, "someone-elses");
    let plan = s.doc(&f, &["plan"], &[], 0);
    assert!(values(&plan["nodes"], "action").is_superset(&BTreeSet::from(["unmanaged", "blocked"])));
    s.doc(&f, &["status"], &[], 0);
    assert_eq!(
        s.doc(&f, &["why", "903"], &[], 0)["explanation"]["verdict"],
        "not_managed"
    );
    s.doc(&f, &["why"], &[], 0);
    s.doc(&f, &["generations", "903"], &[], 0);
    let lines = s.build(&f, &[], &[], 1);
    assert_eq!(outcomes(&lines), set(&["blocked", "built", "unmanaged"]));
}

#[test]
fn a_host_whose_driver_differs_fails_the_preflight() {
    let s = Schemas::load();
    let f = Fixture::example();
    let env = [("PHOENIX_SIM_NVIDIA_VERSION", "570.172.08")];
    let plan = s.doc(&f, &["plan"], &env, 1);
    assert!(!plan["preflight"].as_array().unwrap().is_empty());
    let lines = s.build(&f, &[], &env, 1);
    assert!(lines.iter().any(|l| l["failed_step"] == "preflight"));
}

#[test]
fn validate_answers_with_warnings_and_with_problems() {
    let s = Schemas::load();
    let f = Fixture::example();
    f.write_hook(999, "#!/bin/bash\n");
    let v = s.doc(&f, &["validate"], &[], 0);
    assert_eq!(v["problems"][0]["severity"], "warning", "{v:#}");
    f.edit_block(950, |b| {
        b.insert("clone_from_template_ctid".into(), json!("999"));
    });
    let v = s.doc(&f, &["validate"], &[], 3);
    assert_eq!(v["valid"], false);
    f.write_text(common::LXC, "{");
    s.doc(&f, &["validate"], &[], 3);
}

#[test]
fn every_failure_is_one_error_document() {
    let s = Schemas::load();
    let f = Fixture::example();
    let kind = |args: &[&str], env: &[(&str, &str)], code: i32| {
        let doc = s.doc(&f, args, env, code);
        doc["error"]["kind"].as_str().unwrap_or("").to_string()
    };
    for args in [
        &["show", "123"][..],
        &["plan", "123"],
        &["plan", "--replace", "123"],
        &["why", "123"],
        &["log", "123"],
        &["generations", "123"],
    ] {
        assert_eq!(kind(args, &[], 7), "not_in_config", "{args:?}");
    }
    assert_eq!(kind(&["graph", "--format", "dot"], &[], 2), "usage");
    assert_eq!(kind(&["gc", "--older-than", "soon"], &[], 2), "usage");
    // Command lines clap rejects.
    assert_eq!(kind(&["status", "--bogus"], &[], 2), "usage");
    assert_eq!(kind(&["why", "abc"], &[], 2), "usage");
    assert_eq!(
        kind(&["plan"], &[("PHOENIX_SIM_LATENCY", "clone")], 6),
        "backend"
    );
    let file = f.tmp.path().join("not-a-dir");
    fs::write(&file, "x").unwrap();
    assert_eq!(
        kind(&["gc"], &[("PHOENIX_STATE_DIR", file.to_str().unwrap())], 6),
        "state_dir"
    );

    // build: the error document is its one line.
    for (args, env, code, want) in [
        (&["123"][..], &[][..], 7, "not_in_config"),
        (&["-j", "0"], &[], 2, "usage"),
        (&[], &[("PHOENIX_SIM_FAULTS", "exec=3")], 6, "backend"),
    ] {
        let lines = s.build(&f, args, env, code);
        assert_eq!(lines.len(), 1, "{args:?}");
        assert_eq!(lines[0]["error"]["kind"], want, "{args:?}");
    }

    // An invalid configuration: every command but validate gives the error document,
    // with the problems.
    f.edit_block(950, |b| {
        b.insert("clone_from_template_ctid".into(), json!("999"));
    });
    for args in [
        &["graph"][..],
        &["show", "900"],
        &["plan"],
        &["status"],
        &["log", "900"],
        &["why"],
        &["gc", "--dry-run"],
        &["generations", "900"],
    ] {
        let doc = s.doc(&f, args, &[], 3);
        assert_eq!(doc["error"]["kind"], "invalid_config", "{args:?}");
    }
    let lines = s.build(&f, &[], &[], 3);
    assert_eq!(lines[0]["error"]["kind"], "invalid_config");
}

#[test]
fn a_command_the_host_lock_stops_says_so_in_json() {
    let s = Schemas::load();
    let f = Fixture::example();
    let mut first = f.spawn_sim(&["build"], &[("PHOENIX_SIM_LATENCY", "*=200")]);
    f.wait_for_lock_holder(first.id());
    let gc = s.doc(&f, &["gc", "--dry-run"], &[], 5);
    let lines = s.build(&f, &[], &[], 5);
    first.kill().unwrap();
    first.wait().unwrap();
    assert_eq!(gc["error"]["kind"], "locked");
    assert_eq!(lines[0]["error"]["kind"], "locked");
}

#[test]
fn the_schemas_reject_what_scripts_must_not_be_given() {
    let s = Schemas::load();
    let f = Fixture::example();
    s.build(&f, &[], &[], 0);
    append_to_hook(&f, 902, "echo x");
    let docs = BTreeMap::from([
        ("plan", s.doc(&f, &["plan"], &[], 4)),
        ("status", s.doc(&f, &["status"], &[], 0)),
        ("gc", s.doc(&f, &["gc", "--dry-run"], &[], 0)),
    ]);
    type Edit = fn(&mut Value);
    let cases: [(&str, &str, Edit); 8] = [
        ("plan", "a CTID as a string", |v| {
            v["nodes"][0]["ctid"] = json!("902")
        }),
        ("plan", "an unknown action", |v| {
            v["nodes"][0]["action"] = json!("rebuilt")
        }),
        ("plan", "a field of another action", |v| {
            v["nodes"][0]["blocked_by"] = json!(900)
        }),
        ("plan", "an empty built snapshot", |v| {
            v["nodes"][0]["built_snapshot"] = json!("")
        }),
        ("plan", "a short hash", |v| {
            v["nodes"][0]["hash"] = json!("899dd96e")
        }),
        ("status", "epoch seconds", |v| {
            v["nodes"][0]["built_at"] = json!(1_795_437_855)
        }),
        ("status", "an unknown field", |v| {
            v["nodes"][0]["extra"] = json!(1)
        }),
        ("gc", "a snapshot that is not phoenix's", |v| {
            v["snapshots"][0]["snapshot"] = json!("before-upgrade")
        }),
    ];
    for (schema, case, edit) in cases {
        let mut bad = docs[schema].clone();
        edit(&mut bad);
        assert!(
            !s.0[schema].is_valid(&bad),
            "{schema}.schema.json accepts {case}"
        );
    }
}

#[test]
fn store_templates_in_every_document_that_shows_them() {
    let s = Schemas::load();
    let f = Fixture::example();
    f.edit_hv(|hv| hv["proxmox_defaults"]["store_vmid_range"] = "9000-9099".into());
    // The plan says how each node is cloned and which store templates it makes.
    let plan = s.doc(&f, &["plan"], &[], 0);
    let nodes = plan["nodes"].as_array().unwrap();
    assert!(nodes.iter().any(|e| e["clone"]["kind"] == "linked"));
    assert!(nodes.iter().any(|e| e["store_template"]["vmid"] == 9000));
    // The store step is an event step; one store template is cut short.
    let lines = s.build(&f, &[], &[("PHOENIX_SIM_FAULTS", "template:9002=fail")], 1);
    assert!(lines
        .iter()
        .any(|l| l["event"] == "step_started" && l["step"] == "store"));
    let why = s.doc(&f, &["why", "903"], &[], 0);
    assert_eq!(
        why["explanation"]["changes"][0]["key"], "store_template",
        "{why}"
    );
    let status = s.doc(&f, &["status"], &[], 0);
    let stores = status["store_templates"].as_array().unwrap();
    assert!(stores.iter().any(|st| st["untrusted"].is_string()));
    assert!(stores
        .iter()
        .any(|st| !st["linked"].as_array().unwrap().is_empty()));
    // A fresh template whose store template is missing is an update; another storage
    // gives a full clone, and why.
    let cfg = f.sim_host().root().join("etc/pve/storage.cfg");
    let text = fs::read_to_string(&cfg).unwrap();
    fs::write(
        &cfg,
        format!("{text}\nzfspool: tank\n\tpool tank/ct\n\tcontent rootdir\n"),
    )
    .unwrap();
    f.edit_block(910, |b| {
        b.insert("storage_pool".into(), json!("tank"));
    });
    append_to_hook(&f, 910, "echo x");
    let plan = s.doc(&f, &["plan", "--replace", "910"], &[], 0);
    let nodes = plan["nodes"].as_array().unwrap();
    assert!(
        nodes
            .iter()
            .any(|e| e["changes"][0]["key"] == "store_template"
                && e["store_template"]["redo"] == true)
    );
    assert!(nodes.iter().any(|e| e["clone"]["kind"] == "full"));
    s.build(&f, &["--replace", "910"], &[], 0);
    s.doc(&f, &["generations", "920"], &[], 0);
    let g = s.doc(&f, &["generations", "903"], &[], 0);
    assert!(g["generations"][0]["store_template"].is_u64(), "{g}");
    let gc = s.doc(&f, &["gc", "--dry-run"], &[], 0);
    assert!(!gc["store_templates"].as_array().unwrap().is_empty());
    // A guest in the range stops the plan.
    f.create_foreign_ct(9099, "someones");
    let plan = s.doc(&f, &["plan"], &[], 1);
    assert!(!plan["store_problems"].as_array().unwrap().is_empty());
    let gc = s.doc(&f, &["gc"], &[], 0);
    assert!(gc["removed_store_templates"].is_array());
}
