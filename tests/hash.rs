//! The hash table of `src/hash.rs`, row by row, on the example fleet:
//!
//! ```text
//! 900 BaseTemplate ─┬─ 901 BaseTemplateGPU (gpu)
//!                   └─ 902 BaseTemplateDocker ─┬─ 903 BaseTemplateDockerGPU (gpu) ── 920 BaseTemplateVLLM (gpu) ── 950 vllmQwen3Coder (gpu)
//!                                              └─ 910 Portainer
//! ```
//!
//! A build input changes the hash of its node and of every descendant, and of nothing
//! else (compared over the whole fleet with `graph --format json`); a runtime field or a
//! secret changes no hash; spelling the same config differently changes no hash.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;

use common::Fixture;
use serde_json::{json, Value};

const ALL: &[u32] = &[900, 901, 902, 903, 910, 920, 950];
/// Nodes with a GPU, or below one: 901, and 903 → 920 → 950.
const GPU_SUBTREE: &[u32] = &[901, 903, 920, 950];
/// Nodes with `nesting=1`: the Docker step applies.
const NESTING: &[u32] = &[902, 903, 910, 920, 950];

/// CTID → hash, from `graph --format json`.
fn hashes(f: &Fixture) -> BTreeMap<u32, String> {
    let run = f.phoenix(&["graph", "--format", "json"]);
    assert_eq!(run.code, 0, "graph failed:\n{}", run.stderr);
    run.json()["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            (
                n["ctid"].as_u64().unwrap() as u32,
                n["hash"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// Applies `edit` and asserts exactly `expected` changed hash (the rest are untouched).
#[track_caller]
fn assert_changes(f: &Fixture, what: &str, edit: impl FnOnce(&Fixture), expected: &[u32]) {
    let before = hashes(f);
    edit(f);
    let after = hashes(f);
    assert_eq!(
        before.keys().collect::<Vec<_>>(),
        after.keys().collect::<Vec<_>>(),
        "{what}: the set of nodes changed"
    );
    let changed: Vec<u32> = before
        .keys()
        .copied()
        .filter(|c| before[c] != after[c])
        .collect();
    assert_eq!(changed, expected, "{what}: changed hashes");
}

fn example_changes(what: &str, edit: impl FnOnce(&Fixture), expected: &[u32]) {
    assert_changes(&Fixture::example(), what, edit, expected);
}

type Edit = Box<dyn FnOnce(&Fixture)>;

fn set(ctid: u32, field: &'static str, value: Value) -> impl FnOnce(&Fixture) {
    move |f: &Fixture| {
        f.edit_block(ctid, |b| {
            b.insert(field.to_string(), value);
        })
    }
}

// ---------------------------------------------------------------- build fields: yes

#[test]
fn os_template_of_a_base_node_rebuilds_the_whole_fleet() {
    example_changes(
        "template on 900",
        set(
            900,
            "template",
            json!("local:vztmpl/debian-12-standard_12.7-1_amd64.tar.zst"),
        ),
        ALL,
    );
}

#[test]
fn os_template_on_a_clone_changes_nothing() {
    example_changes(
        "template on 903",
        set(
            903,
            "template",
            json!("local:vztmpl/debian-12-standard_12.7-1_amd64.tar.zst"),
        ),
        &[],
    );
    example_changes(
        "template removed from clones",
        |f| {
            for c in [901, 902, 903, 910, 920, 950] {
                f.edit_block(c, |b| {
                    b.remove("template");
                });
            }
        },
        &[],
    );
}

#[test]
fn storage_pool() {
    example_changes(
        "storage_pool on 902",
        set(902, "storage_pool", json!("fast-zfs")),
        &[902, 903, 910, 920, 950],
    );
}

#[test]
fn unprivileged() {
    example_changes(
        "every node privileged",
        |f| {
            for &c in ALL {
                f.edit_block(c, |b| {
                    b.insert("unprivileged".into(), json!(false));
                });
            }
        },
        ALL,
    );
}

#[test]
fn features() {
    example_changes(
        "features on 910",
        set(910, "features", json!("nesting=1")),
        &[910],
    );
    // nesting=1 also brings in the Docker step
    example_changes(
        "nesting on 901",
        set(901, "features", json!("nesting=1")),
        &[901],
    );
}

#[test]
fn gpu_assignment() {
    example_changes(
        "gpu on 950",
        set(950, "gpu_assignment", json!("0,1")),
        &[950],
    );
    // 902 joins the GPU subtree: so does 910 below it (903 already was)
    example_changes(
        "gpu on 902",
        set(902, "gpu_assignment", json!("0")),
        &[902, 903, 910, 920, 950],
    );
}

#[test]
fn portainer_role() {
    example_changes(
        "portainer_role on 910",
        set(910, "portainer_role", json!("none")),
        &[910],
    );
}

#[test]
fn vllm_fields() {
    example_changes(
        "vllm_model on 920",
        set(920, "vllm_model", json!("Qwen/Qwen3-0.6B")),
        &[920, 950],
    );
    example_changes(
        "vllm_tensor_parallel_size on 950",
        set(950, "vllm_tensor_parallel_size", json!(2)),
        &[950],
    );
}

#[test]
fn is_template() {
    example_changes(
        "910 becomes a template",
        set(910, "is_template", json!(true)),
        &[910],
    );
}

#[test]
fn unknown_fields() {
    example_changes(
        "unknown field on 903",
        set(
            903,
            "apparmor_profile",
            json!({"name": "unconfined", "levels": [1, 2]}),
        ),
        &[903, 920, 950],
    );
    example_changes(
        "unknown field on 900",
        set(900, "x_custom", json!(true)),
        ALL,
    );
}

// ---------------------------------------------------------------- runtime fields: no

#[test]
fn runtime_fields_change_no_hash() {
    let f = Fixture::example();
    let original = hashes(&f);
    let edits: Vec<(&str, Edit)> = vec![
        ("memory_mb", Box::new(set(950, "memory_mb", json!(65536)))),
        ("cores", Box::new(set(920, "cores", json!(16)))),
        ("name", Box::new(set(900, "name", json!("base-noble")))),
        (
            "network_config",
            Box::new(set(
                950,
                "network_config",
                json!({"name": "eth1", "bridge": "vmbr1", "ip": "10.1.0.150/16", "gw": "10.1.0.1"}),
            )),
        ),
        (
            "mac_address",
            Box::new(set(910, "mac_address", json!("52:54:00:00:00:01"))),
        ),
        (
            "storage_size_gb on a leaf",
            Box::new(set(950, "storage_size_gb", json!(500))),
        ),
        (
            "storage_size_gb on a template",
            Box::new(set(920, "storage_size_gb", json!(80))),
        ),
        ("onboot", Box::new(set(950, "onboot", json!(true)))),
        (
            "static_ip",
            Box::new(set(910, "static_ip", json!("10.0.0.99/24"))),
        ),
        (
            "template_snapshot_name",
            Box::new(set(902, "template_snapshot_name", json!("docker-v2"))),
        ),
        ("rebuild", Box::new(set(950, "rebuild", json!("replace")))),
        (
            "parent CTID as a number",
            Box::new(set(950, "clone_from_template_ctid", json!(920))),
        ),
    ];
    for (what, edit) in edits {
        edit(&f);
        let v = f.phoenix(&["validate"]);
        assert_eq!(v.code, 0, "{what}: {}", v.stderr);
        assert_eq!(hashes(&f), original, "{what} changed a hash");
    }
}

#[test]
fn hook_mode_changes_no_hash() {
    let f = Fixture::example();
    let hook = f.hook_path(950);
    assert_changes(&f, "chmod 700", |f| f.set_mode(&hook, 0o700), &[]);
}

#[test]
fn where_the_config_lives_changes_no_hash() {
    let a = Fixture::example();
    let b = Fixture::example();
    assert_ne!(a.config_dir, b.config_dir);
    assert_eq!(hashes(&a), hashes(&b));
}

#[test]
fn adding_or_removing_an_unrelated_node_changes_no_other_hash() {
    let f = Fixture::example();
    let before = hashes(&f);
    f.edit_lxc(|v| {
        let mut block = v["lxc_configs"]["910"].clone();
        block["name"] = json!("Portainer2");
        block["mac_address"] = json!("52:54:00:67:89:9A");
        block["network_config"]["ip"] = json!("10.0.0.98/24");
        block["portainer_role"] = json!("none");
        v["lxc_configs"]["911"] = block;
        v["lxc_configs"].as_object_mut().unwrap().remove("950");
    });
    let after = hashes(&f);
    for c in [900, 901, 902, 903, 910, 920] {
        assert_eq!(before[&c], after[&c], "{c}");
    }
    assert!(!after.contains_key(&950));
}

// ---------------------------------------------------------------- CTID, recipe, parent

#[test]
fn the_ctid_is_an_input() {
    // the same block, hook and parent under another CTID is another node
    let f = Fixture::example();
    let before = hashes(&f);
    f.edit_lxc(|v| {
        let configs = v["lxc_configs"].as_object_mut().unwrap();
        let block = configs.remove("910").unwrap();
        configs.insert("915".into(), block);
    });
    fs::rename(f.hook_path(910), f.hook_path(915)).unwrap();
    let after = hashes(&f);
    assert_ne!(before[&910], after[&915]);
    for c in [900, 901, 902, 903, 920, 950] {
        assert_eq!(before[&c], after[&c], "{c}");
    }
}

#[test]
fn manifests_chain_to_the_parent_hash_and_carry_the_recipe() {
    let f = Fixture::example();
    let run = f.phoenix(&["graph", "--format", "json"]);
    let doc = run.json();
    let nodes = doc["nodes"].as_array().unwrap();
    let by_ctid: BTreeMap<u64, &Value> = nodes
        .iter()
        .map(|n| (n["ctid"].as_u64().unwrap(), n))
        .collect();
    for n in nodes {
        let m = &n["manifest"];
        assert_eq!(m["recipe"], phoenix::engine::hash::RECIPE, "{n:#}");
        assert_eq!(m["ctid"], n["ctid"]);
        match n["parent"].as_u64() {
            None => assert!(m["parent"].is_null(), "{n:#}"),
            Some(p) => {
                assert_eq!(m["parent"]["ctid"], p);
                assert_eq!(m["parent"]["hash"], by_ctid[&p]["hash"]);
            }
        }
        // runtime fields are not in the manifest
        for runtime in phoenix::engine::hash::RUNTIME_FIELDS {
            assert!(
                m["build"].get(*runtime).is_none(),
                "{runtime} hashed in {m:#}"
            );
        }
    }
}

// ---------------------------------------------------------------- scripts

#[test]
fn a_nodes_hook() {
    example_changes(
        "hook of 903",
        |f| {
            f.write_hook(903, "#!/bin/sh\necho changed\n");
        },
        &[903, 920, 950],
    );
    example_changes(
        "hook of 910 removed",
        |f| fs::remove_file(f.hook_path(910)).unwrap(),
        &[910],
    );
    example_changes(
        "hook added to 901",
        |f| {
            f.write_hook(901, "#!/bin/sh\ntrue\n");
        },
        &[901],
    );
}

#[test]
fn hooks_of_unknown_ctids_change_nothing() {
    example_changes(
        "hook for an undefined CT",
        |f| {
            f.write_hook(999, "#!/bin/sh\ntrue\n");
        },
        &[],
    );
}

#[test]
fn lib_files() {
    example_changes(
        "lib edited",
        |f| {
            let p = f.hooks_dir.join("lib/phoenix_hook_lib.sh");
            let mut text = fs::read_to_string(&p).unwrap();
            text.push_str("\n# one more line\n");
            fs::write(p, text).unwrap();
        },
        ALL,
    );
    example_changes(
        "lib file added in a subdirectory",
        |f| {
            fs::create_dir_all(f.hooks_dir.join("lib/extra")).unwrap();
            fs::write(f.hooks_dir.join("lib/extra/helpers.sh"), "x() { :; }\n").unwrap();
        },
        ALL,
    );
}

fn append(path: &Path, line: &str) {
    let mut text = fs::read_to_string(path).unwrap();
    text.push_str(line);
    fs::write(path, text).unwrap();
}

#[test]
fn the_nvidia_step_script() {
    example_changes(
        "nvidia step edited",
        |f| {
            append(
                &f.hooks_dir.join("phoenix_hypervisor_lxc_nvidia.sh"),
                "# edit\n",
            )
        },
        GPU_SUBTREE,
    );
    // the repo's copy is the built-in one: taking it away changes nothing
    example_changes(
        "nvidia step removed",
        |f| fs::remove_file(f.hooks_dir.join("phoenix_hypervisor_lxc_nvidia.sh")).unwrap(),
        &[],
    );
}

#[test]
fn the_docker_step_script() {
    example_changes(
        "docker step edited",
        |f| {
            append(
                &f.hooks_dir.join("phoenix_hypervisor_lxc_docker.sh"),
                "# edit\n",
            )
        },
        NESTING,
    );
    example_changes(
        "docker step removed",
        |f| fs::remove_file(f.hooks_dir.join("phoenix_hypervisor_lxc_docker.sh")).unwrap(),
        &[],
    );
}

// ---------------------------------------------------------------- NVIDIA settings

fn top(field: &'static str, value: &'static str) -> impl Fn(&mut Value) {
    move |v: &mut Value| v[field] = json!(value)
}

#[test]
fn nvidia_settings_rebuild_exactly_the_gpu_subtree() {
    let bump = |v: &mut Value| {
        v["nvidia_driver_version"] = json!("580.82.07");
        v["nvidia_runfile_url"] =
            json!("https://us.download.nvidia.com/XFree86/Linux-x86_64/580.82.07/NVIDIA-Linux-x86_64-580.82.07.run");
    };
    example_changes("driver bump", |f| f.edit_lxc(bump), GPU_SUBTREE);
    let repo = top(
        "nvidia_repo_url",
        "https://developer.download.nvidia.com/compute/cuda/repos/debian12/x86_64/",
    );
    example_changes("repo URL", |f| f.edit_lxc(repo), GPU_SUBTREE);
    let mirror = top(
        "nvidia_runfile_url",
        "https://download.nvidia.com/XFree86/Linux-x86_64/580.76.05/NVIDIA-Linux-x86_64-580.76.05.run",
    );
    example_changes("runfile URL", |f| f.edit_lxc(mirror), GPU_SUBTREE);
}

#[test]
fn a_non_gpu_template_between_gpu_nodes_is_outside_the_gpu_subtree() {
    // 903 without a GPU: 920 and 950 have their own, and run the NVIDIA step themselves
    let f = Fixture::example();
    f.edit_block(903, |b| {
        b.insert("gpu_assignment".into(), json!("none"));
    });
    let repo = top(
        "nvidia_repo_url",
        "https://developer.download.nvidia.com/compute/cuda/repos/debian12/x86_64/",
    );
    assert_changes(&f, "repo URL", |f| f.edit_lxc(repo), &[901, 920, 950]);
}

#[test]
fn a_non_gpu_clone_of_a_gpu_template_is_inside_the_gpu_subtree() {
    let f = Fixture::example();
    f.edit_block(902, |b| {
        b.insert("gpu_assignment".into(), json!("0"));
    });
    let repo = top(
        "nvidia_repo_url",
        "https://developer.download.nvidia.com/compute/cuda/repos/debian12/x86_64/",
    );
    assert_changes(
        &f,
        "repo URL",
        |f| f.edit_lxc(repo),
        &[901, 902, 903, 910, 920, 950],
    );
}

// ---------------------------------------------------------------- secrets

const SECRETS: &[&str] = &[
    "hf_SECRET_one",
    "SECRET_two",
    "SECRET_three",
    "SECRET_four",
    "SECRET_five",
];

fn add_secrets(f: &Fixture, tag: &str) {
    f.edit_block(950, |b| {
        b.insert("hf_token".into(), json!(format!("hf_SECRET_one{tag}")));
        b.insert("admin_password".into(), json!(format!("SECRET_two{tag}")));
        b.insert("Portainer_API_Key".into(), json!(format!("SECRET_five{tag}")));
        b.insert(
            "vllm_engine".into(),
            json!({"port": 8000, "api_key": format!("SECRET_three{tag}"), "users": [{"name": "ops", "db_password": format!("SECRET_four{tag}")}]}),
        );
    });
}

#[test]
fn secrets_change_no_hash() {
    let f = Fixture::example();
    f.edit_block(950, |b| {
        b.insert(
            "vllm_engine".into(),
            json!({"port": 8000, "users": [{"name": "ops"}]}),
        );
    });
    let plain = hashes(&f);
    add_secrets(&f, "");
    assert_eq!(hashes(&f), plain, "adding secrets changed a hash");
    add_secrets(&f, "-rotated");
    assert_eq!(hashes(&f), plain, "rotating secrets changed a hash");
    // the non-secret part of the same object is a build input
    assert_changes(
        &f,
        "port",
        |f| f.edit_block(950, |b| b["vllm_engine"]["port"] = json!(8001)),
        &[950],
    );
}

#[test]
fn secrets_never_appear_in_output() {
    let f = Fixture::example();
    add_secrets(&f, "");
    for args in [
        &["graph", "--format", "json"][..],
        &["graph", "--format", "dot"],
        &["graph", "--format", "mermaid"],
        &["show", "950"],
        &["show", "950", "--output", "json"],
        &["validate"],
        &["validate", "--output", "json"],
    ] {
        let run = f.phoenix(args);
        assert_eq!(run.code, 0, "{args:?}: {}", run.stderr);
        for s in SECRETS {
            assert!(
                !run.stdout.contains(s) && !run.stderr.contains(s),
                "{args:?} printed {s}:\n{}{}",
                run.stdout,
                run.stderr
            );
        }
    }
    let show = f.phoenix(&["show", "950", "--output", "json"]).json();
    let build = &show["node"]["manifest"]["build"];
    assert_eq!(
        build["vllm_engine"],
        json!({"port": 8000, "users": [{"name": "ops"}]})
    );
    assert!(build.get("hf_token").is_none() && build.get("admin_password").is_none());
}

// ---------------------------------------------------------------- snapshot names

#[test]
fn snapshot_names_are_phx_and_32_hex_digits_and_valid_for_proxmox() {
    let f = Fixture::example();
    let doc = f.phoenix(&["graph", "--format", "json"]).json();
    let mut seen = BTreeSet::new();
    for n in doc["nodes"].as_array().unwrap() {
        let hash = n["hash"].as_str().unwrap();
        let snap = n["snapshot"].as_str().unwrap();
        assert_eq!(hash.len(), 64);
        assert!(
            hash.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
            "{hash}"
        );
        assert_eq!(snap, format!("phx-{}", &hash[..32]));
        assert_eq!(snap.len(), 36);
        assert!(
            phoenix::engine::snapshot::is_valid_snapshot_name(snap),
            "{snap}"
        );
        assert_eq!(
            phoenix::engine::snapshot::SnapshotName::parse(snap)
                .unwrap()
                .as_str(),
            snap
        );
        assert!(seen.insert(snap.to_string()), "two nodes share {snap}");
    }
}

// ---------------------------------------------------------------- spelling: a property test

mod spelling {
    //! Re-indenting, re-ordering keys, re-spelling numbers (`1`, `1.0`, `1e0`, `10e-1`) and
    //! strings (`\u0041`, `\/`) never changes a hash. Library level, to keep it fast.

    use super::*;
    use phoenix::fleet::config::Paths;
    use proptest::prelude::*;

    /// A tiny deterministic generator (xorshift), seeded by proptest.
    struct Dice(u64);
    impl Dice {
        fn roll(&mut self, n: usize) -> usize {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            (self.0 % n as u64) as usize
        }
    }

    struct Style {
        indent: &'static str,
        newline: bool,
        colon: &'static str,
    }

    fn write_string(s: &str, dice: &mut Dice, out: &mut String) {
        out.push('"');
        for c in s.chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '/' if dice.roll(2) == 0 => out.push_str("\\/"),
                c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
                c if dice.roll(4) == 0 && (c as u32) < 0x10000 => {
                    out.push_str(&format!("\\u{:04X}", c as u32))
                }
                c => out.push(c),
            }
        }
        out.push('"');
    }

    fn write_number(n: &serde_json::Number, dice: &mut Dice, out: &mut String) {
        match n.as_u64() {
            Some(i) => match dice.roll(5) {
                0 => out.push_str(&i.to_string()),
                1 => out.push_str(&format!("{i}.0")),
                2 => out.push_str(&format!("{i}e0")),
                3 => out.push_str(&format!("{}e-1", i * 10)),
                _ => out.push_str(&format!("{i}.000E+0")),
            },
            None => out.push_str(&n.to_string()),
        }
    }

    fn write(v: &Value, style: &Style, depth: usize, dice: &mut Dice, out: &mut String) {
        let pad = |out: &mut String, depth: usize| {
            if style.newline {
                out.push('\n');
                out.push_str(&style.indent.repeat(depth));
            }
        };
        match v {
            Value::Object(m) => {
                let mut keys: Vec<&String> = m.keys().collect();
                for i in (1..keys.len()).rev() {
                    keys.swap(i, dice.roll(i + 1));
                }
                out.push('{');
                for (i, k) in keys.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    pad(out, depth + 1);
                    write_string(k, dice, out);
                    out.push_str(style.colon);
                    write(&m[*k], style, depth + 1, dice, out);
                }
                if !keys.is_empty() {
                    pad(out, depth);
                }
                out.push('}');
            }
            Value::Array(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    pad(out, depth + 1);
                    write(item, style, depth + 1, dice, out);
                }
                out.push(']');
            }
            Value::String(s) => write_string(s, dice, out),
            Value::Number(n) => write_number(n, dice, out),
            other => out.push_str(&other.to_string()),
        }
    }

    fn library_hashes(config_dir: &Path) -> BTreeMap<u32, String> {
        let paths = Paths {
            config_dir: config_dir.to_path_buf(),
            hooks_dir: common::repo().join("hooks"),
        };
        let fleet = phoenix::fleet::load(&paths).unwrap_or_else(|p| {
            panic!(
                "{}",
                p.0.iter()
                    .map(|p| p.to_string())
                    .collect::<Vec<_>>()
                    .join("\n")
            )
        });
        phoenix::engine::hash::hash_fleet(&fleet)
            .into_iter()
            .map(|(c, h)| (c, h.hash.as_str().to_string()))
            .collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn respelling_the_config_changes_no_hash(
            seed in 1u64..,
            indent in prop::sample::select(vec!["", " ", "  ", "\t", "    "]),
            newline in any::<bool>(),
            colon in prop::sample::select(vec![":", ": ", " : ", ":\t"]),
        ) {
            let example = common::repo().join("etc");
            let original: Value = serde_json::from_str(&fs::read_to_string(example.join(common::LXC)).unwrap()).unwrap();
            let dir = tempfile::tempdir().unwrap();
            fs::copy(example.join(common::HV), dir.path().join(common::HV)).unwrap();
            fs::copy(example.join(common::LXC), dir.path().join(common::LXC)).unwrap();
            let want = library_hashes(dir.path());

            let mut text = String::new();
            write(&original, &Style { indent, newline, colon }, 0, &mut Dice(seed), &mut text);
            fs::write(dir.path().join(common::LXC), &text).unwrap();
            let got = library_hashes(dir.path());
            prop_assert_eq!(got, want, "respelled config:\n{}", text);
        }
    }
}

// ---------------------------------------------------------------- pinned values

/// A small fleet written entirely by this test (its own hooks, lib and step scripts), so
/// that its hashes depend on phoenix alone.
fn pinned_fixture() -> Fixture {
    let f = Fixture::with(
        &json!({
            "nvidia_driver_version": "580.76.05",
            "nvidia_repo_url": "https://developer.download.nvidia.com/compute/cuda/repos/ubuntu2404/x86_64/",
            "nvidia_runfile_url": "https://us.download.nvidia.com/XFree86/Linux-x86_64/580.76.05/NVIDIA-Linux-x86_64-580.76.05.run",
            "lxc_configs": {
                "100": {
                    "name": "base", "memory_mb": 1024, "cores": 1, "storage_pool": "local-zfs",
                    "storage_size_gb": 8, "template": "local:vztmpl/debian-12-standard_12.7-1_amd64.tar.zst",
                    "unprivileged": true, "is_template": true, "template_snapshot_name": "base",
                    "features": "nesting=1", "x_extra": {"b": [1, 2.5, "é\n"], "a": null}
                },
                "200": {
                    "name": "gpu", "memory_mb": 4096, "cores": 4, "storage_pool": "local-zfs",
                    "storage_size_gb": 16, "clone_from_template_ctid": "100", "unprivileged": true,
                    "gpu_assignment": "0", "portainer_role": "agent", "hf_token": "not hashed"
                }
            }
        }),
        &json!({"network": {"portainer_server_ip": "10.0.0.2"}}),
    );
    f.write_hook(100, "#!/bin/sh\necho base\n");
    fs::create_dir_all(f.hooks_dir.join("lib")).unwrap();
    fs::write(f.hooks_dir.join("lib/lib.sh"), "x() { :; }\n").unwrap();
    fs::write(
        f.hooks_dir.join("phoenix_hypervisor_lxc_nvidia.sh"),
        "#!/bin/sh\necho nvidia\n",
    )
    .unwrap();
    fs::write(
        f.hooks_dir.join("phoenix_hypervisor_lxc_docker.sh"),
        "#!/bin/sh\necho docker\n",
    )
    .unwrap();
    f
}

#[test]
fn hashes_are_pinned() {
    // A change here rebuilds every user's fleet. If it is intended (the manifest or the
    // canonical form changed meaning), bump phoenix::engine::hash::RECIPE and update these values.
    let hashes = hashes(&pinned_fixture());
    assert_eq!(
        hashes,
        BTreeMap::from([
            (
                100,
                "143d1ce4ab39a4e0f66111a4a6eb9f405d0820c36dcecfcc5c3c7ecaec266e38".to_string()
            ),
            (
                200,
                "5cd438eed24b664e5936e8fee3918bdd1741a1974056cac7090b96aef58c3f5a".to_string()
            ),
        ])
    );
}

// ---------------------------------------------------------------- defaults and host settings

#[test]
fn a_field_written_with_its_default_value_counts_as_absent() {
    let f = Fixture::example();
    let before = hashes(&f);
    f.edit_block(900, |b| {
        // 900 says "features": "", "gpu_assignment": "none", "portainer_role": "none",
        // "unprivileged": true in the example: leaving them out is the same node.
        for k in [
            "features",
            "gpu_assignment",
            "portainer_role",
            "unprivileged",
        ] {
            b.remove(k);
        }
        b.insert("vllm_model".into(), json!(null));
    });
    f.edit_block(910, |b| {
        b.insert("is_template".into(), json!(false));
        // features are a set
        b.insert("features".into(), json!("keyctl=1,nesting=1"));
    });
    assert_eq!(hashes(&f), before);
}

#[test]
fn portainer_settings_change_exactly_the_nodes_whose_role_uses_them() {
    let f = Fixture::example();
    let before = hashes(&f);
    let edit_hv = |key: &str, value: Value| {
        let path = f.config_dir.join(common::HV);
        let mut hv: Value = serde_json::from_str(&fs::read_to_string(&path).unwrap()).unwrap();
        let (section, field) = key.split_once('.').unwrap();
        hv[section][field] = value;
        fs::write(&path, serde_json::to_string_pretty(&hv).unwrap()).unwrap();
    };
    edit_hv(
        "docker.portainer_server_image",
        json!("portainer/portainer-ce:2.34.0-lts"),
    );
    let after = hashes(&f);
    let changed: Vec<u32> = before
        .keys()
        .filter(|c| before[c] != after[c])
        .copied()
        .collect();
    assert_eq!(
        changed,
        vec![910],
        "the server image is used by the server only"
    );

    edit_hv(
        "docker.portainer_agent_image",
        json!("portainer/agent:2.34.0-lts"),
    );
    let after2 = hashes(&f);
    let changed: Vec<u32> = after
        .keys()
        .filter(|c| after[c] != after2[c])
        .copied()
        .collect();
    assert_eq!(
        changed,
        vec![950],
        "the agent image is used by the agent only"
    );

    edit_hv("network.portainer_server_port", json!(9444));
    assert_eq!(
        hashes(&f),
        after2,
        "the server's web port is not passed to any container"
    );
}
