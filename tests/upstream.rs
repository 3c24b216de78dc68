//! The original project's configs against the original project's schemas, as phoenix sees
//! them: the verdicts and error sets must equal those of
//! `ajv validate --spec=draft7 -c ajv-formats --all-errors` (mode B of
//! `../shared/fixtures/upstream/README.md` §9), which is how the original meant its schemas
//! to be applied. The fixtures are read in place and never copied into this repository;
//! without them these tests say so and pass.

mod common;

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;

use common::Fixture;
use serde_json::Value;

#[derive(Clone, Copy, Debug)]
enum File {
    /// `phoenix_lxc_configs.json` + `phoenix_lxc_configs.schema.json`: fatal.
    Lxc,
    /// `phoenix_hypervisor_config.json` + its schema: warnings only.
    Hypervisor,
}

/// One row of the README's table: a config, the schema it is checked against, ajv's verdict
/// and error set as (instance pointer, what): `pattern`, `format:<name>`,
/// `required:<property>`, `additional:<property>`.
struct Pair {
    file: File,
    config: &'static str,
    schema: &'static str,
    errors: &'static [(&'static str, &'static str)],
}

const FEATURES_PATTERN: &[(&str, &str)] = &[
    ("/lxc_configs/900/features", "pattern"),
    ("/lxc_configs/901/features", "pattern"),
];

const NEW_FORMAT_VS_969E7D4: &[(&str, &str)] = &[
    ("/lxc_configs/901", "required:template"),
    ("/lxc_configs/902", "required:template"),
    ("/lxc_configs/910", "required:template"),
    ("/lxc_configs/920", "required:template"),
    ("/lxc_configs/950", "required:template"),
    ("/lxc_configs/901", "additional:clone_from_ctid"),
    ("/lxc_configs/902", "additional:clone_from_ctid"),
    ("/lxc_configs/910", "additional:clone_from_ctid"),
    ("/lxc_configs/920", "additional:clone_from_ctid"),
    ("/lxc_configs/950", "additional:clone_from_ctid"),
    ("/lxc_configs/950", "additional:vllm_gpu_memory_utilization"),
    ("/lxc_configs/950", "additional:vllm_max_model_len"),
];

const TABLE: &[Pair] = &[
    Pair {
        file: File::Lxc,
        config: "phoenix_lxc_configs.json",
        schema: "phoenix_lxc_configs.schema.json",
        errors: FEATURES_PATTERN,
    },
    Pair {
        file: File::Lxc,
        config: "phoenix_lxc_configs.ff11a70.json",
        schema: "phoenix_lxc_configs.schema.ff11a70.json",
        errors: &[],
    },
    Pair {
        file: File::Lxc,
        config: "phoenix_lxc_configs.fe648bb.json",
        schema: "phoenix_lxc_configs.schema.ff11a70.json",
        errors: &[
            ("/lxc_configs", "additional:903"),
            ("/lxc_configs", "additional:904"),
        ],
    },
    Pair {
        file: File::Lxc,
        config: "phoenix_lxc_configs.336c22b.json",
        schema: "phoenix_lxc_configs.schema.336c22b.json",
        errors: &[],
    },
    Pair {
        file: File::Lxc,
        config: "phoenix_lxc_configs.214aa23.json",
        schema: "phoenix_lxc_configs.schema.214aa23.json",
        errors: &[],
    },
    Pair {
        file: File::Lxc,
        config: "phoenix_lxc_configs.214aa23.json",
        schema: "phoenix_lxc_configs.schema.json",
        errors: &[],
    },
    Pair {
        file: File::Lxc,
        config: "phoenix_lxc_configs.json",
        schema: "phoenix_lxc_configs.schema.214aa23.json",
        errors: FEATURES_PATTERN,
    },
    Pair {
        file: File::Lxc,
        config: "phoenix_lxc_configs.1f0d675.json",
        schema: "phoenix_lxc_configs.schema.214aa23.json",
        errors: &[
            ("/lxc_configs/920", "required:portainer_role"),
            ("/lxc_configs/950", "required:portainer_role"),
        ],
    },
    Pair {
        file: File::Lxc,
        config: "phoenix_lxc_configs.fe8c1c1.json",
        schema: "phoenix_lxc_configs.schema.214aa23.json",
        errors: &[],
    },
    Pair {
        file: File::Lxc,
        config: "phoenix_lxc_configs.33a8524.json",
        schema: "phoenix_lxc_configs.schema.969e7d4.json",
        errors: NEW_FORMAT_VS_969E7D4,
    },
    Pair {
        file: File::Lxc,
        config: "phoenix_lxc_configs.6707799.json",
        schema: "phoenix_lxc_configs.schema.969e7d4.json",
        // NEW_FORMAT_VS_969E7D4 plus the keys 951–957; see `expected`.
        errors: &[
            ("/lxc_configs", "additional:951"),
            ("/lxc_configs", "additional:952"),
            ("/lxc_configs", "additional:953"),
            ("/lxc_configs", "additional:954"),
            ("/lxc_configs", "additional:955"),
            ("/lxc_configs", "additional:956"),
            ("/lxc_configs", "additional:957"),
        ],
    },
    Pair {
        file: File::Hypervisor,
        config: "phoenix_hypervisor_config.json",
        schema: "phoenix_hypervisor_config.schema.json",
        errors: &[
            ("", "additional:docker"),
            ("/network/external_registry_url", "format:uri"),
        ],
    },
    Pair {
        file: File::Hypervisor,
        config: "phoenix_hypervisor_config.fe648bb.json",
        schema: "phoenix_hypervisor_config.schema.json",
        errors: &[("/network/external_registry_url", "format:uri")],
    },
    Pair {
        file: File::Hypervisor,
        config: "phoenix_hypervisor_config.18ce242.json",
        schema: "phoenix_hypervisor_config.schema.18ce242.json",
        errors: &[
            ("", "additional:docker"),
            ("/network/external_registry_url", "format:uri"),
        ],
    },
];

impl Pair {
    fn expected(&self) -> BTreeSet<(String, String)> {
        let mut set: BTreeSet<(String, String)> = self
            .errors
            .iter()
            .map(|(p, w)| (p.to_string(), w.to_string()))
            .collect();
        if self.config == "phoenix_lxc_configs.6707799.json" {
            set.extend(
                NEW_FORMAT_VS_969E7D4
                    .iter()
                    .map(|(p, w)| (p.to_string(), w.to_string())),
            );
        }
        set
    }
}

/// A fixture holding the pair in the place phoenix reads it from; the other file is the
/// example fleet's (valid), the hooks dir is empty.
fn fixture(upstream: &Path, pair: &Pair) -> Fixture {
    let f = Fixture::empty();
    let example = common::repo().join("etc");
    let (config, schema, other) = match pair.file {
        File::Lxc => (common::LXC, "phoenix_lxc_configs.schema.json", common::HV),
        File::Hypervisor => (
            common::HV,
            "phoenix_hypervisor_config.schema.json",
            common::LXC,
        ),
    };
    fs::copy(upstream.join(pair.config), f.config_dir.join(config)).unwrap();
    fs::copy(upstream.join(pair.schema), f.config_dir.join(schema)).unwrap();
    fs::copy(example.join(other), f.config_dir.join(other)).unwrap();
    f
}

/// phoenix's `schema::user` problems as (pointer, what), the vocabulary of the table.
fn user_schema_errors(problems: &[Value]) -> BTreeSet<(String, String)> {
    let mut set = BTreeSet::new();
    for p in problems.iter().filter(|p| p["code"] == "schema::user") {
        let pointer = p["pointer"].as_str().unwrap().to_string();
        let message = p["message"].as_str().unwrap();
        if message.ends_with("not allowed here") {
            for name in message.split('`').skip(1).step_by(2) {
                set.insert((pointer.clone(), format!("additional:{name}")));
            }
        } else if let Some(rest) = message.strip_prefix("required property ") {
            let name = rest.trim_end_matches(" is missing").trim_matches('"');
            set.insert((pointer, format!("required:{name}")));
        } else if message.contains(" does not match ") {
            set.insert((pointer, "pattern".to_string()));
        } else if let Some((_, format)) = message.split_once(" is not a ") {
            set.insert((pointer, format!("format:{}", format.trim_matches('"'))));
        } else {
            set.insert((pointer, format!("other:{message}")));
        }
    }
    set
}

#[test]
fn verdicts_and_errors_equal_ajv_mode_b() {
    let Some(upstream) = common::upstream() else {
        return;
    };
    let mut mismatches = Vec::new();
    for pair in TABLE {
        let f = fixture(&upstream, pair);
        let run = f.validate_json();
        assert!(
            !run.stderr.contains("panicked"),
            "{}: {}",
            pair.config,
            run.stderr
        );
        let problems = run.problems();
        let user: Vec<&Value> = problems
            .iter()
            .filter(|p| p["code"] == "schema::user")
            .collect();
        let severity = match pair.file {
            File::Lxc => "error",
            File::Hypervisor => "warning",
        };
        for p in &user {
            assert_eq!(p["severity"], severity, "{}: {p:#}", pair.config);
            assert!(
                p["line"].as_u64().unwrap() > 1,
                "{}: not located: {p:#}",
                pair.config
            );
        }
        let got = user_schema_errors(&problems);
        let want = pair.expected();
        if got != want {
            mismatches.push(format!(
                "{} vs {}:\n  ajv:     {want:?}\n  phoenix: {got:?}",
                pair.config, pair.schema
            ));
        }
        // A hypervisor schema's verdict is advice: the run itself succeeds.
        if let File::Hypervisor = pair.file {
            assert_eq!(run.code, 0, "{}: {}", pair.config, run.stdout);
            assert_eq!(run.json()["valid"], true);
        } else if !want.is_empty() {
            assert_eq!(
                run.code, 3,
                "{}: an invalid config must stop phoenix",
                pair.config
            );
        }
    }
    assert!(
        mismatches.is_empty(),
        "phoenix disagrees with ajv:\n{}",
        mismatches.join("\n")
    );
}

#[test]
fn configs_valid_under_their_schema_are_checked_by_phoenix_rules_too() {
    // The original's bug #4 (README §7): 901 and 903 are declared privileged but clone
    // unprivileged templates. ajv cannot see it; phoenix's rules do.
    let Some(upstream) = common::upstream() else {
        return;
    };
    for config in [
        "phoenix_lxc_configs.json",
        "phoenix_lxc_configs.214aa23.json",
    ] {
        let pair = Pair {
            file: File::Lxc,
            config,
            schema: "phoenix_lxc_configs.schema.214aa23.json",
            errors: &[],
        };
        let run = fixture(&upstream, &pair).validate_json();
        run.assert_invalid();
        let mismatched: Vec<String> = run
            .problems()
            .iter()
            .filter(|p| p["code"] == "config::privilege-mismatch")
            .map(|p| p["pointer"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(
            mismatched,
            [
                "/lxc_configs/901/unprivileged",
                "/lxc_configs/903/unprivileged"
            ],
            "{config}"
        );
    }
}

#[test]
fn the_last_clone_era_config_is_a_valid_fleet() {
    // fe8c1c1: everything unprivileged, portainer_role back; valid under its schema and
    // under every phoenix rule.
    let Some(upstream) = common::upstream() else {
        return;
    };
    let pair = Pair {
        file: File::Lxc,
        config: "phoenix_lxc_configs.fe8c1c1.json",
        schema: "phoenix_lxc_configs.schema.214aa23.json",
        errors: &[],
    };
    let f = fixture(&upstream, &pair);
    let run = f.phoenix(&["validate"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let graph = f.phoenix(&["graph", "--format", "json"]);
    assert_eq!(graph.code, 0, "{}", graph.stderr);
    assert!(!graph.json()["nodes"].as_array().unwrap().is_empty());
}

#[test]
fn the_original_hypervisor_schema_only_warns() {
    let Some(upstream) = common::upstream() else {
        return;
    };
    let f = fixture(&upstream, &TABLE[11]);
    let run = f.phoenix(&["validate"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stderr.contains("schema::user"), "{}", run.stderr);
    assert!(
        run.stderr.contains("property `docker` is not allowed here"),
        "{}",
        run.stderr
    );
}
