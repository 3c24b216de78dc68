//! Loading the fleet: the two config files of the original layout, the optional user
//! schema beside them, and the hooks directory.
//!
//! Owns: reading files safely (size, encoding, BOM), parsing with locations, schema
//! checks, typed [`Node`]s, and the scan of the hooks directory. Semantic rules live in
//! [`crate::fleet::rules`]; nothing here touches a host.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::sync::Arc;

use serde::Deserialize;

use crate::fleet::config::*;
use crate::fleet::diag::{Problem, Problems, SourceFile};
use crate::fleet::graph::Graph;
use crate::fleet::json;
use crate::fleet::Fleet;
use crate::fleet::{rules, schema};
use crate::os::FileErrorKind;

const BUILTIN_NVIDIA: &[u8] = include_bytes!("../../hooks/phoenix_hypervisor_lxc_nvidia.sh");
const BUILTIN_DOCKER: &[u8] = include_bytes!("../../hooks/phoenix_hypervisor_lxc_docker.sh");

/// Reads a config file, refusing what is not a reasonable UTF-8 JSON text.
pub fn read_text(path: &Path, what: &str) -> Result<Arc<SourceFile>, Problem> {
    let bytes = match crate::os::read_regular(path, MAX_CONFIG_BYTES) {
        Ok(b) => b,
        Err(e) => {
            let (code, message, help) = match e.kind {
                FileErrorKind::Missing => (
                    "config::missing-file",
                    format!("{what} not found"),
                    "create it, or point phoenix at the right directory with --config-dir or PHOENIX_CONFIG_DIR".to_string(),
                ),
                FileErrorKind::TooLarge => (
                    "config::file-too-large",
                    format!("{what} {}", e.message),
                    "is this the right file? A config this large is almost certainly not a fleet definition".to_string(),
                ),
                FileErrorKind::NotAFile | FileErrorKind::Unreadable => (
                    "config::unreadable-file",
                    format!("{what} {}", e.message),
                    e.help,
                ),
            };
            return Err(Problem::file(code, path, message, &help));
        }
    };
    if bytes.starts_with(&[0xEF, 0xBB, 0xBF]) {
        return Err(Problem::file(
            "config::bom",
            path,
            format!("{what} starts with a UTF-8 byte-order mark, which JSON does not allow"),
            "save the file as UTF-8 without BOM (e.g. `sed -i '1s/^\\xEF\\xBB\\xBF//' FILE`)",
        ));
    }
    let text = match String::from_utf8(bytes) {
        Ok(t) => t,
        Err(e) => {
            let valid = e.utf8_error().valid_up_to();
            let bytes = e.into_bytes();
            let prefix = String::from_utf8_lossy(&bytes[..valid]);
            let line = prefix.matches('\n').count() + 1;
            let col = prefix.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
            return Err(Problem::file(
                "config::not-utf8",
                path,
                format!("{what} is not valid UTF-8 (byte {valid}, line {line}, column {col})"),
                "convert the file to UTF-8 (e.g. `iconv -f latin1 -t utf-8`)",
            )
            .at_position(line, col));
        }
    };
    if text.trim().is_empty() {
        return Err(Problem::file(
            "config::empty-file",
            path,
            format!("{what} is empty"),
            "write the configuration into it (see the README's config reference)",
        ));
    }
    Ok(SourceFile::new(path, text))
}

/// Reads and parses one JSON file; `None` when it cannot be used (problems say why).
fn read_json(
    path: &Path,
    what: &str,
    problems: &mut Problems,
) -> Option<(Arc<SourceFile>, json::Value)> {
    let file = match read_text(path, what) {
        Ok(f) => f,
        Err(p) => {
            problems.push(p);
            return None;
        }
    };
    match json::parse(&file.text) {
        Ok(parsed) => {
            for d in &parsed.duplicates {
                let pointer = format!("{}/{}", d.object_pointer, d.key);
                let problem = Problem::error("json::duplicate-key", &file, d.second, &pointer)
                    .message(format!("duplicate key `{}`", d.key))
                    .label("second definition")
                    .related(d.first, "first defined here")
                    .help("a JSON object must not repeat a key (other tools silently keep the last one); merge or delete one");
                problems.push(if pointer.split('/').any(is_secret_field) {
                    problem.without_snippet()
                } else {
                    problem
                });
            }
            Some((file, parsed.value))
        }
        Err(e) => {
            problems.push(
                Problem::error("json::syntax", &file, e.span, "")
                    .message(format!("invalid JSON: {}", e.message))
                    .label("here")
                    .help("fix the JSON syntax; `python3 -m json.tool FILE` shows the same spot"),
            );
            None
        }
    }
}

/// The orchestrator's later config format (`clone_from_ctid`, `features` as a list of
/// names, `application_script`, as in its `33a8524`): recognised, and explained as one
/// problem that says what to change.
fn later_format(file: &Arc<SourceFile>, tree: &json::Value) -> Option<Problem> {
    let configs = tree.get("lxc_configs")?;
    let plain = configs.to_plain();
    let blocks = plain.as_object()?;
    let mut signs: Vec<&str> = Vec::new();
    let mut first: Option<String> = None;
    for (ctid, block) in blocks {
        let Some(b) = block.as_object() else { continue };
        let found = [
            ("`clone_from_ctid`", b.contains_key("clone_from_ctid")),
            (
                "`features` as a list",
                b.get("features").is_some_and(|f| f.is_array()),
            ),
            ("`application_script`", b.contains_key("application_script")),
        ];
        for (sign, here) in found {
            if here {
                if !signs.contains(&sign) {
                    signs.push(sign);
                }
                first.get_or_insert_with(|| ctid.clone());
            }
        }
    }
    let ctid = first?;
    let pointer = format!("/lxc_configs/{ctid}");
    Some(
        Problem::error("config::later-format", file, tree.locate(&pointer, true), &pointer)
            .message(format!(
                "this file is in the orchestrator's later format ({}), which phoenix does not read",
                signs.join(", ")
            ))
            .label("later format")
            .help("convert each block: `clone_from_ctid` → `clone_from_template_ctid` (its source must be a template with `template_snapshot_name`); `features` → a pct feature string such as \"nesting=1,keyctl=1\" (a `nvidia` feature is `gpu_assignment`, `docker` is `nesting=1,keyctl=1`); `application_script` → the node's setup hook phoenix_hypervisor_setup_<CTID>.sh"),
    )
}

/// Loads and validates the whole fleet. Either a valid fleet (with warnings) or every
/// problem found, sorted.
pub fn load(paths: &Paths) -> Result<Fleet, Problems> {
    let mut problems = Problems::default();
    // Hooks run with the hooks directory as their working directory: keep paths absolute.
    let paths = &Paths {
        config_dir: std::path::absolute(&paths.config_dir)
            .unwrap_or_else(|_| paths.config_dir.clone()),
        hooks_dir: std::path::absolute(&paths.hooks_dir)
            .unwrap_or_else(|_| paths.hooks_dir.clone()),
    };
    let lxc_path = paths.config_dir.join(LXC_FILE);
    let hv_path = paths.config_dir.join(HYPERVISOR_FILE);

    let lxc = read_json(&lxc_path, LXC_FILE, &mut problems);
    let hv = read_json(&hv_path, HYPERVISOR_FILE, &mut problems);

    // The fleet without positions: validated by the schemas, then taken apart into nodes.
    let mut lxc_plain = None;
    if let Some((file, tree)) = &lxc {
        if let Some(problem) = later_format(file, tree) {
            // One explanation instead of phoenix's schema error per block, and never a
            // fleet read the wrong way; the user's own schema still gives its verdict.
            problems.push(problem);
            check_user_schema(
                &paths.config_dir.join(LXC_SCHEMA_FILE),
                file,
                tree,
                &tree.to_plain(),
                false,
                &mut problems,
            );
            problems.sort();
            return Err(problems);
        }
    }
    if let Some((file, tree)) = &lxc {
        let plain = tree.to_plain();
        let errs = schema::check(
            schema::lxc_validator(),
            "schema::phoenix",
            "phoenix's schema",
            file,
            tree,
            &plain,
        );
        let schema_ok = errs.is_empty();
        problems.extend(errs);
        check_user_schema(
            &paths.config_dir.join(LXC_SCHEMA_FILE),
            file,
            tree,
            &plain,
            false,
            &mut problems,
        );
        lxc_plain = schema_ok.then_some(plain);
    }
    let mut hypervisor = None;
    if let Some((file, tree)) = &hv {
        let plain = tree.to_plain();
        let errs = schema::check(
            schema::hypervisor_validator(),
            "schema::phoenix",
            "phoenix's schema",
            file,
            tree,
            &plain,
        );
        let ok = errs.is_empty();
        problems.extend(errs);
        // The original never validated this file; its schema never accepted its own
        // config. Its verdict is reported, as warnings.
        check_user_schema(
            &paths.config_dir.join(HYPERVISOR_SCHEMA_FILE),
            file,
            tree,
            &plain,
            true,
            &mut problems,
        );
        if ok {
            hypervisor = Some(read_hypervisor(file, tree));
        }
    }

    // A hooks directory that cannot be read is one problem among the others: the config's
    // own checks still run (as if it held no hooks), so every problem is reported at once.
    let hooks = match scan_hooks(&paths.hooks_dir) {
        Ok(h) => h,
        Err(p) => {
            problems.push(p);
            Hooks {
                dir: paths.hooks_dir.clone(),
                node_hooks: BTreeMap::new(),
                lib: BTreeMap::new(),
                nvidia_step: Script::builtin(NVIDIA_STEP_FILE, BUILTIN_NVIDIA),
                docker_step: Script::builtin(DOCKER_STEP_FILE, BUILTIN_DOCKER),
                original_names: BTreeMap::new(),
                initial_setup: None,
                not_run: Vec::new(),
            }
        }
    };

    let (Some((lxc_file, lxc_tree)), Some(hypervisor), Some(lxc_plain)) =
        (lxc, hypervisor, lxc_plain)
    else {
        problems.sort();
        return Err(problems);
    };

    let nvidia = Nvidia {
        driver_version: lxc_tree
            .get("nvidia_driver_version")
            .and_then(|v| v.as_str())
            .map(str::to_string),
        runfile_url: lxc_tree
            .get("nvidia_runfile_url")
            .and_then(|v| v.as_str())
            .map(str::to_string),
        repo_url: lxc_tree
            .get("nvidia_repo_url")
            .and_then(|v| v.as_str())
            .map(str::to_string),
    };
    let nodes = read_nodes(&lxc_file, &lxc_tree, lxc_plain, &mut problems);
    let graph = Graph::build(&nodes, &lxc_file, &lxc_tree, &mut problems);
    let mut fleet = Fleet {
        paths: paths.clone(),
        lxc_file,
        lxc_tree,
        hypervisor,
        nvidia,
        nodes,
        hooks,
        graph,
        warnings: Problems::default(),
    };
    problems.extend(rules::check(&fleet));
    problems.sort();
    if problems.has_errors() {
        return Err(problems);
    }
    fleet.warnings = problems;
    Ok(fleet)
}

fn check_user_schema(
    schema_path: &Path,
    file: &Arc<SourceFile>,
    tree: &json::Value,
    plain: &serde_json::Value,
    as_warnings: bool,
    problems: &mut Problems,
) {
    if !schema_path.exists() {
        return;
    }
    let mut found = Problems::default();
    if let Some((sfile, stree)) = read_json(schema_path, "schema", &mut found) {
        match schema::user_validator(&sfile, &stree) {
            Ok(v) => found.extend(schema::check(
                &v,
                "schema::user",
                &schema_path
                    .file_name()
                    .map_or_else(String::new, |n| n.to_string_lossy().into_owned()),
                file,
                tree,
                plain,
            )),
            Err(p) => found.push(p),
        }
    }
    let schema_name = schema_path
        .file_name()
        .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
    let patterns: Vec<String> = std::fs::read(schema_path)
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .and_then(|s| {
            s.pointer("/properties/lxc_configs/patternProperties")
                .and_then(|p| p.as_object())
                .map(|p| p.keys().cloned().collect())
        })
        .unwrap_or_default();
    for mut p in found.0 {
        explain_key_pattern(&mut p, &patterns, &schema_name);
        if as_warnings {
            p = p.warning();
        }
        problems.push(p);
    }
}

/// A CTID the user's schema refuses as a key of `lxc_configs` is refused by the schema's
/// CTID key pattern (the original's schemas list every CTID in it): say so, and name the
/// pattern, instead of "property not allowed".
fn explain_key_pattern(p: &mut Problem, patterns: &[String], schema_name: &str) {
    if p.pointer != "/lxc_configs" || patterns.is_empty() {
        return;
    }
    let Some(key) = p
        .message
        .strip_prefix("property `")
        .and_then(|r| r.strip_suffix("` is not allowed here"))
        .map(str::to_string)
    else {
        return;
    };
    if parse_ctid(&key).is_none() {
        return;
    }
    p.message = format!(
        "CTID {key} does not match the CTID key pattern {} of {schema_name}",
        patterns
            .iter()
            .map(|x| format!("`{x}`"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    p.help = Some(format!(
        "add {key} to that pattern in {schema_name} (the original's schemas list every CTID), or remove {schema_name} to check with phoenix's own schema only"
    ));
}

fn read_hypervisor(file: &Arc<SourceFile>, tree: &json::Value) -> Hypervisor {
    let net = tree.get("network");
    let docker = tree.get("docker");
    let text = |v: Option<&json::Value>, k: &str| {
        v.and_then(|v| v.get(k))
            .and_then(|v| v.as_str())
            .map(str::to_string)
    };
    Hypervisor {
        file: file.clone(),
        tree: tree.clone(),
        portainer_server_ip: text(net, "portainer_server_ip"),
        portainer_agent_port: net
            .and_then(|n| n.get("portainer_agent_port"))
            .and_then(|v| v.as_u64())
            .and_then(|p| u16::try_from(p).ok())
            .unwrap_or(9001),
        portainer_server_image: text(docker, "portainer_server_image")
            .unwrap_or_else(|| "portainer/portainer-ce:lts".to_string()),
        portainer_agent_image: text(docker, "portainer_agent_image")
            .unwrap_or_else(|| "portainer/agent:lts".to_string()),
        debug_mode: flag(tree, "debug_mode"),
        rollback_on_failure: flag(tree, "rollback_on_failure"),
        backup_storage: text(tree.get("proxmox_defaults"), "backup_storage")
            .unwrap_or_else(|| "local".to_string()),
        // A range that does not read is reported by the rules (`config::store-range`).
        store_range: text(tree.get("proxmox_defaults"), "store_vmid_range")
            .and_then(|t| VmidRange::parse(&t).ok()),
        default_node: text(tree.get("proxmox_defaults"), "default_node"),
    }
}

/// A `behavior` flag: true only when it is the JSON `true`.
fn flag(tree: &json::Value, key: &str) -> bool {
    tree.get("behavior")
        .and_then(|b| b.get(key))
        .and_then(|v| v.as_bool())
        .unwrap_or(false)
}

/// Reads the blocks of `lxc_configs`: `tree` locates them, `plain` (the same document
/// without positions) is taken apart into the nodes' blocks, so that no block is copied.
fn read_nodes(
    file: &Arc<SourceFile>,
    tree: &json::Value,
    plain: serde_json::Value,
    problems: &mut Problems,
) -> BTreeMap<Ctid, Node> {
    let mut nodes = BTreeMap::new();
    let (Some(configs), serde_json::Value::Object(mut top)) = (tree.get("lxc_configs"), plain)
    else {
        return nodes;
    };
    let Some(serde_json::Value::Object(mut plain_configs)) = top.remove("lxc_configs") else {
        return nodes;
    };
    for m in configs.members() {
        let pointer = format!("/lxc_configs/{}", m.key);
        let ctid = match parse_ctid(&m.key) {
            Some(c) => c,
            None => {
                problems.push(
                    Problem::error("config::bad-ctid", file, m.key_span, &pointer)
                        .message(format!("`{}` is not a valid CTID", m.key))
                        .label("CTID")
                        .help("a CTID is a Proxmox VMID: an integer from 100 to 999999999, without leading zeros (IDs below 100 are reserved by Proxmox)"),
                );
                continue;
            }
        };
        let Some(plain) = plain_configs.remove(&m.key) else {
            continue;
        };
        let spec = match Block::deserialize(&plain) {
            Ok(s) => s,
            Err(e) => {
                problems.push(
                    Problem::error("config::bad-block", file, m.value.span, &pointer)
                        .message(format!("block cannot be read: {e}"))
                        .label("this block")
                        .help("compare the block with the config reference in the README"),
                );
                continue;
            }
        };
        let parent = match &spec.clone_from_template_ctid {
            None => None,
            Some(r) => {
                let text = match r {
                    CtidRef::Text(t) => t.clone(),
                    CtidRef::Number(n) => n.to_string(),
                };
                match parse_ctid(&text) {
                    Some(p) => Some(p),
                    None => {
                        let at = format!("{pointer}/clone_from_template_ctid");
                        problems.push(
                            Problem::error("config::bad-ctid", file, tree.locate(&at, false), &at)
                                .message(format!("`{text}` is not a valid CTID"))
                                .label("parent CTID")
                                .help(
                                    "name the CTID of a template in this file (100 to 999999999)",
                                ),
                        );
                        continue;
                    }
                }
            }
        };
        let serde_json::Value::Object(block) = plain else {
            continue;
        };
        nodes.insert(
            ctid,
            Node {
                ctid,
                pointer,
                key_span: m.key_span,
                block,
                spec,
                parent,
            },
        );
    }
    nodes
}

/// Scans the hooks directory: node hooks, `lib/`, and the step scripts (the binary's own
/// copies when the directory has none).
pub fn scan_hooks(dir: &Path) -> Result<Hooks, Problem> {
    let entries = fs::read_dir(dir).map_err(|e| {
        Problem::file(
            "config::hooks-dir",
            dir,
            format!("cannot read the hooks directory: {e}"),
            "create it, or point phoenix at it with --hooks-dir or PHOENIX_HOOKS_DIR",
        )
    })?;
    let unreadable = |path: &Path, e: crate::os::FileError| {
        Problem::file(
            "config::unreadable-hook",
            path,
            format!("this script {}", e.message),
            &e.help,
        )
    };
    let unlistable = |path: &Path, e: std::io::Error| {
        Problem::file(
            "config::unreadable-hook",
            path,
            format!("cannot list this directory: {e}"),
            "check the directory's permissions",
        )
    };
    let mut node_hooks = BTreeMap::new();
    let mut original_names = BTreeMap::new();
    let mut nvidia_step = None;
    let mut docker_step = None;
    let mut initial_setup = None;
    let mut not_run = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = entry.path();
        if let Some(ctid) = name
            .strip_prefix("phoenix_hypervisor_setup_")
            .and_then(|r| r.strip_suffix(".sh"))
            .and_then(parse_ctid)
        {
            node_hooks.insert(ctid, Script::read(&path).map_err(|e| unreadable(&path, e))?);
        } else if name == NVIDIA_STEP_FILE {
            nvidia_step = Some(Script::read(&path).map_err(|e| unreadable(&path, e))?);
        } else if NOT_RUN_FILES.contains(&name.as_str()) {
            not_run.push(path);
        } else if name == INITIAL_SETUP_FILE {
            // Read like any script (a FIFO or a device is refused), but not hashed.
            Script::read(&path).map_err(|e| unreadable(&path, e))?;
            initial_setup = Some(path);
        } else if name == DOCKER_STEP_FILE {
            docker_step = Some(Script::read(&path).map_err(|e| unreadable(&path, e))?);
        } else if let Some(ctid) = name
            .strip_prefix("phoenix_hypervisor_lxc_")
            .and_then(|r| r.strip_suffix(".sh"))
            .and_then(parse_ctid)
        {
            original_names.insert(ctid, path);
        }
    }
    let mut lib = BTreeMap::new();
    let lib_dir = dir.join("lib");
    if lib_dir.is_dir() {
        let mut stack = vec![lib_dir.clone()];
        while let Some(d) = stack.pop() {
            for entry in fs::read_dir(&d).map_err(|e| unlistable(&d, e))?.flatten() {
                let path = entry.path();
                // A real directory is walked; a link is read as a file (and refused if it
                // leads to a directory), so links cannot make the walk loop.
                if fs::symlink_metadata(&path).is_ok_and(|m| m.is_dir()) {
                    stack.push(path);
                } else {
                    let rel = path
                        .strip_prefix(&lib_dir)
                        .unwrap_or(&path)
                        .to_string_lossy()
                        .into_owned();
                    lib.insert(rel, Script::read(&path).map_err(|e| unreadable(&path, e))?);
                }
            }
        }
    }
    Ok(Hooks {
        dir: dir.to_path_buf(),
        node_hooks,
        lib,
        nvidia_step: nvidia_step
            .unwrap_or_else(|| Script::builtin(NVIDIA_STEP_FILE, BUILTIN_NVIDIA)),
        docker_step: docker_step
            .unwrap_or_else(|| Script::builtin(DOCKER_STEP_FILE, BUILTIN_DOCKER)),
        original_names,
        initial_setup,
        not_run,
    })
}
