//! The commands that act on a host: `plan`, `build`, `status`, `log`. Each opens the
//! backend, calls the engine and renders its result for a person or as JSON.

use std::io::IsTerminal;
use std::sync::Mutex;

use serde_json::json;

use crate::build::events::Event;
use crate::build::{self, BuildOptions};
use crate::cli::{print_json, Backend, Cli, Output, JSON_SCHEMA_VERSION};
use crate::engine::plan::{Action, Consent};
use crate::engine::why;
use crate::exit;
use crate::fleet::config::{Ctid, Fleet};
use crate::host::sim::SimHost;
use crate::host::Host;
use crate::render::report::{self, Mode, Reporter};
use crate::state::{now_secs, HostLock, LockError, StateDir};
use std::collections::BTreeMap;

fn open_host(cli: &Cli) -> Result<Box<dyn Host>, String> {
    match cli.backend {
        Backend::Sim => Ok(Box::new(SimHost::open(&cli.state_dir)?)),
        Backend::Pve | Backend::Lxc => Err(format!(
            "the `{}` backend is not part of this build yet; use --backend sim (the embedded simulated host)",
            if cli.backend == Backend::Pve { "pve" } else { "lxc" }
        )),
    }
}

fn fail(msg: &str, code: i32) -> i32 {
    eprintln!("error: {msg}");
    code
}

/// Opens the state directory and takes the host lock (one `build` or `gc` at a time).
fn lock_host(cli: &Cli, command: &str, wait: bool) -> Result<(StateDir, HostLock), i32> {
    let state = StateDir::open(&cli.state_dir).map_err(|e| fail(&e, exit::HOST))?;
    match HostLock::acquire(&state, command, wait) {
        Ok(lock) => Ok((state, lock)),
        Err(LockError::Held(holder)) => {
            let who = holder.map_or("another phoenix process".to_string(), |h| {
                format!(
                    "phoenix {} (pid {}, started {} s ago)",
                    h.command,
                    h.pid,
                    now_secs().saturating_sub(h.started)
                )
            });
            Err(fail(
                &format!(
                    "{who} holds the host lock {}; wait for it, or pass --wait",
                    state.root.join("phoenix.lock").display()
                ),
                exit::LOCKED,
            ))
        }
        Err(LockError::Io(e)) => Err(fail(&format!("cannot take the host lock: {e}"), exit::HOST)),
    }
}

fn unknown_targets(fleet: &Fleet, targets: &[Ctid]) -> Option<i32> {
    let unknown: Vec<String> = targets
        .iter()
        .filter(|c| fleet.node(**c).is_none())
        .map(u32::to_string)
        .collect();
    (!unknown.is_empty()).then(|| {
        fail(
            &format!(
                "CT {} not defined in {}",
                unknown.join(", "),
                fleet.lxc_path().display()
            ),
            exit::NOT_FOUND,
        )
    })
}

pub fn plan(cli: &Cli, fleet: &Fleet, targets: &[Ctid], consent: &Consent) -> i32 {
    if let Some(code) = unknown_targets(fleet, targets) {
        return code;
    }
    let host = match open_host(cli) {
        Ok(h) => h,
        Err(e) => return fail(&e, exit::HOST),
    };
    let plan = match build::make_plan(fleet, host.as_ref(), consent, targets) {
        Ok(p) => p.plan,
        Err(e) => return fail(&format!("cannot read the host: {e}"), exit::HOST),
    };
    match cli.output {
        Output::Json => print_json(&json!({
            "schema_version": JSON_SCHEMA_VERSION,
            "backend": host.name(),
            "nodes": plan.entries,
            "counts": plan.counts(),
        })),
        Output::Human => {
            println!("{:<16} {:>9}  {:<24} REASON", "ACTION", "CTID", "NAME");
            for e in &plan.entries {
                let action = match &e.action {
                    Action::Rebuild { mode, .. } => format!(
                        "rebuild/{}",
                        serde_json::to_value(mode)
                            .ok()
                            .and_then(|v| v.as_str().map(str::to_string))
                            .unwrap_or_default()
                    ),
                    a => a.name().to_string(),
                };
                println!("{action:<16} {:>9}  {:<24} {}", e.ctid, e.name, e.reason);
            }
            let counts = plan.counts();
            let parts: Vec<String> = [
                "create",
                "rebuild",
                "update",
                "held",
                "blocked",
                "unmanaged",
                "fresh",
            ]
            .iter()
            .filter_map(|a| counts.get(a).map(|n| format!("{n} {a}")))
            .collect();
            println!("plan: {}", parts.join(", "));
        }
    }
    if plan
        .entries
        .iter()
        .any(|e| matches!(e.action, Action::Held { .. }))
    {
        exit::HELD
    } else {
        exit::OK
    }
}

pub fn build(cli: &Cli, fleet: &Fleet, opts: &BuildOptions, wait: bool) -> i32 {
    if let Some(code) = unknown_targets(fleet, &opts.targets) {
        return code;
    }
    let (state, _lock) = match lock_host(cli, "build", wait) {
        Ok(x) => x,
        Err(code) => return code,
    };
    let host = match open_host(cli) {
        Ok(h) => h,
        Err(e) => return fail(&e, exit::HOST),
    };
    let mode = match cli.output {
        Output::Json => Mode::Json,
        Output::Human
            if std::io::stderr().is_terminal() && std::env::var_os("PHOENIX_NO_LIVE").is_none() =>
        {
            Mode::Live
        }
        Output::Human => Mode::Plain,
    };
    let reporter = Reporter::new(mode);
    let events: Mutex<Vec<Event>> = Mutex::new(Vec::new());
    let emit = |e: Event| {
        reporter.event(&e);
        if let Ok(mut v) = events.lock() {
            v.push(e);
        }
    };
    let run_id = format!("{}-{}", now_secs(), std::process::id());
    let result = build::run(fleet, host.as_ref(), &state, opts, &run_id, &emit);
    reporter.finish();
    match result {
        Ok(r) => {
            if cli.output == Output::Human {
                print!(
                    "{}",
                    report::summary(&events.lock().map(|v| v.clone()).unwrap_or_default())
                );
            }
            r.exit_code
        }
        Err(e) => fail(&e, exit::HOST),
    }
}

pub fn status(cli: &Cli, fleet: &Fleet) -> i32 {
    let host = match open_host(cli) {
        Ok(h) => h,
        Err(e) => return fail(&e, exit::HOST),
    };
    let build::Planned {
        hashes,
        inventory,
        plan,
    } = match build::make_plan(fleet, host.as_ref(), &Consent::default(), &[]) {
        Ok(p) => p,
        Err(e) => return fail(&format!("cannot read the host: {e}"), exit::HOST),
    };
    let now = now_secs();
    let rows: Vec<serde_json::Value> = fleet
        .graph
        .order
        .iter()
        .map(|ctid| {
            let ct = inventory.get(ctid);
            let built = ct.and_then(|c| c.current_build());
            let state = match ct {
                None => "missing",
                Some(c) if c.running => "running",
                Some(_) => "stopped",
            };
            json!({
                "ctid": ctid,
                "name": fleet.nodes[ctid].name(),
                "state": state,
                "managed": ct.map(|c| c.is_managed()),
                "built_snapshot": built.map(|b| b.name.clone()),
                "built_at": built.map(|b| b.snaptime),
                "age_s": built.map(|b| now.saturating_sub(b.snaptime)),
                "wanted_snapshot": hashes[ctid].hash.snapshot().to_string(),
                "action": plan.entry(*ctid).map(|e| e.action.name()),
            })
        })
        .collect();
    match cli.output {
        Output::Json => print_json(
            &json!({ "schema_version": JSON_SCHEMA_VERSION, "backend": host.name(), "nodes": rows }),
        ),
        Output::Human => {
            println!(
                "{:>9}  {:<24} {:<8} {:<37} {:>8}  PLAN",
                "CTID", "NAME", "STATE", "BUILT", "AGE"
            );
            for r in &rows {
                let age = r["age_s"]
                    .as_u64()
                    .map_or("-".to_string(), crate::state::age);
                println!(
                    "{:>9}  {:<24} {:<8} {:<37} {:>8}  {}",
                    r["ctid"].as_u64().unwrap_or(0),
                    r["name"].as_str().unwrap_or(""),
                    r["state"].as_str().unwrap_or(""),
                    r["built_snapshot"].as_str().unwrap_or("-"),
                    age,
                    r["action"].as_str().unwrap_or("")
                );
            }
        }
    }
    exit::OK
}

pub fn log(cli: &Cli, fleet: &Fleet, ctid: Ctid) -> i32 {
    if let Some(code) = unknown_targets(fleet, &[ctid]) {
        return code;
    }
    let state = StateDir {
        root: cli.state_dir.clone(),
    };
    match state.latest_log(ctid) {
        Some(path) => match std::fs::read_to_string(&path) {
            Ok(text) => {
                if cli.output == Output::Json {
                    print_json(
                        &json!({"schema_version": JSON_SCHEMA_VERSION, "ctid": ctid, "path": path, "log": text}),
                    );
                } else {
                    eprintln!("==> {} <==", path.display());
                    print!("{text}");
                }
                exit::OK
            }
            Err(e) => fail(&format!("cannot read {}: {e}", path.display()), exit::HOST),
        },
        None => fail(
            &format!(
                "CT {ctid} has no build log in {} yet",
                state.log_dir(ctid).display()
            ),
            exit::NOT_FOUND,
        ),
    }
}

/// Reads the host and the state for `why` and `generations`.
fn read_for_history(
    cli: &Cli,
    fleet: &Fleet,
) -> Result<(Box<dyn Host>, build::Planned, StateDir), i32> {
    let host = open_host(cli).map_err(|e| fail(&e, exit::HOST))?;
    let planned = build::make_plan(fleet, host.as_ref(), &Consent::default(), &[])
        .map_err(|e| fail(&format!("cannot read the host: {e}"), exit::HOST))?;
    let state = StateDir {
        root: cli.state_dir.clone(),
    };
    Ok((host, planned, state))
}

/// Config field behind a runtime setting, for `file:line`.
fn runtime_field(key: &str) -> &str {
    match key {
        "memory" => "memory_mb",
        "hostname" => "name",
        "net0" => "network_config",
        "rootfs" => "storage_size_gb",
        other => other,
    }
}

pub fn why(cli: &Cli, fleet: &Fleet, ctid: Option<Ctid>, verbose: bool) -> i32 {
    if let Some(code) = unknown_targets(fleet, &ctid.into_iter().collect::<Vec<_>>()) {
        return code;
    }
    let (_host, planned, state) = match read_for_history(cli, fleet) {
        Ok(x) => x,
        Err(code) => return code,
    };
    let cx = why::Context {
        fleet,
        hashes: &planned.hashes,
        inventory: &planned.inventory,
        plan: &planned.plan,
        state: &state,
        verbose,
    };
    let explanations: BTreeMap<Ctid, why::Explanation> = planned
        .plan
        .entries
        .iter()
        .filter(|e| !matches!(e.action, Action::Fresh) || Some(e.ctid) == ctid)
        .map(|e| (e.ctid, cx.explain(e.ctid)))
        .collect();
    let causes = why::root_causes(&explanations);
    let weight = |c: Ctid| {
        causes
            .iter()
            .find(|rc| rc.ctid == c)
            .map_or(0, |rc| rc.forces.len())
    };
    match ctid {
        Some(ctid) => {
            let mut ex = explanations[&ctid].clone();
            if let why::Explanation::Rebuild { root_causes, .. } = &mut ex {
                root_causes.sort_by(|a, b| {
                    weight(b.ctid)
                        .cmp(&weight(a.ctid))
                        .then(a.ctid.cmp(&b.ctid))
                });
            }
            match cli.output {
                Output::Json => print_json(&json!({
                    "schema_version": JSON_SCHEMA_VERSION,
                    "ctid": ctid,
                    "name": fleet.nodes[&ctid].name(),
                    "snapshot": planned.hashes[&ctid].hash.snapshot(),
                    "explanation": ex,
                })),
                Output::Human => print!("{}", render_why(fleet, &planned, ctid, &ex, &weight)),
            }
        }
        None => match cli.output {
            Output::Json => print_json(&json!({
                "schema_version": JSON_SCHEMA_VERSION,
                "root_causes": causes,
                "nodes": explanations,
            })),
            Output::Human => print!("{}", render_why_all(&explanations, &causes)),
        },
    }
    exit::OK
}

fn node_label(fleet: &Fleet, ctid: Ctid) -> String {
    format!("{ctid} {}", fleet.node(ctid).map_or("", |n| n.name()))
}

fn render_reasons(out: &mut String, reasons: &[why::Reason], indent: &str) {
    for r in reasons {
        out.push_str(&format!("{indent}{}\n", r.sentence()));
        if let why::Reason::Script { diff: Some(d), .. } = r {
            for line in d.lines() {
                out.push_str(&format!("{indent}  {line}\n"));
            }
        }
    }
}

fn render_why(
    fleet: &Fleet,
    planned: &build::Planned,
    ctid: Ctid,
    ex: &why::Explanation,
    weight: &dyn Fn(Ctid) -> usize,
) -> String {
    use why::Explanation as E;
    let mut out = String::new();
    let label = node_label(fleet, ctid);
    let now = now_secs();
    match ex {
        E::UpToDate { snapshot, built_at, parent, parent_snapshot } => {
            out.push_str(&format!(
                "CT {label} is up to date: {snapshot}, built {} UTC ({} ago)",
                crate::state::utc(*built_at),
                crate::state::age(now.saturating_sub(*built_at))
            ));
            match (parent, parent_snapshot) {
                (Some(p), Some(ps)) => out.push_str(&format!(", cloned from {} at {ps}\n", node_label(fleet, *p))),
                _ => out.push_str(&format!(", created from {}\n", fleet.nodes[&ctid].spec.template.as_deref().unwrap_or("?"))),
            }
        }
        E::Update { changes } => {
            out.push_str(&format!("CT {label} is built from today's inputs; only runtime settings differ, applied in place (update, no rebuild):\n"));
            for c in changes {
                let at = fleet.line_of(&format!("{}/{}", fleet.nodes[&ctid].pointer, runtime_field(&c.key)));
                out.push_str(&format!("  {}: {} → {} ({at})\n", c.key, c.old.as_deref().unwrap_or("(unset)"), c.new));
            }
        }
        E::NeverBuilt => out.push_str(&format!(
            "CT {label} has never been built: no CT with this id exists on the host. `phoenix build {ctid}` creates it.\n"
        )),
        E::NotManaged => out.push_str(&format!(
            "CT {label}: a CT with this id exists but phoenix did not create it (no `phoenix` tag). phoenix never touches it and cannot say what is inside.\n"
        )),
        E::Unfinished => out.push_str(&format!(
            "CT {label} exists but its build never reached a snapshot (interrupted or failed): it will be replaced.\n"
        )),
        E::Rebuild { action, root_causes, cascade, unchanged } => {
            let entry = planned.plan.entry(ctid);
            let what = match entry.map(|e| &e.action) {
                Some(Action::Rebuild { mode: crate::engine::plan::RebuildMode::InPlace, .. }) => "would be rebuilt in place".to_string(),
                Some(Action::Rebuild { .. }) => "would be replaced".to_string(),
                Some(Action::Held { .. }) => "is held".to_string(),
                Some(Action::Blocked { by }) => format!("is blocked by {by}"),
                _ => format!("would {action}"),
            };
            out.push_str(&format!("CT {label} {what} ({action}).\n"));
            if let Some(e) = entry {
                out.push_str(&format!("  plan: {}\n", e.reason));
            }
            if root_causes.len() > 1 {
                out.push_str(&format!("\n{} root causes, ranked by how many nodes each forces:\n", root_causes.len()));
            }
            for (i, rc) in root_causes.iter().enumerate() {
                let head = if root_causes.len() > 1 { format!("{}. ", i + 1) } else { "root cause: ".to_string() };
                out.push_str(&format!(
                    "\n{head}{} (forces {} node{})\n",
                    node_label(fleet, rc.ctid),
                    weight(rc.ctid),
                    crate::cli::plural(weight(rc.ctid))
                ));
                render_reasons(&mut out, &rc.reasons, "  ");
            }
            if cascade.len() > 1 {
                out.push_str(&format!(
                    "\ncascade: {}: parent changed\n",
                    cascade.iter().map(u32::to_string).collect::<Vec<_>>().join(" → ")
                ));
            }
            if !unchanged.is_empty() {
                out.push_str(&format!("\nunchanged on {ctid}: {}\n", unchanged.join("; ")));
            }
        }
    }
    out
}

fn render_why_all(
    explanations: &BTreeMap<Ctid, why::Explanation>,
    causes: &[why::RootCause],
) -> String {
    use why::Explanation as E;
    let mut out = String::new();
    if causes.is_empty()
        && explanations
            .values()
            .all(|e| matches!(e, E::UpToDate { .. }))
    {
        return "every node is up to date\n".to_string();
    }
    if !causes.is_empty() {
        out.push_str(&format!(
            "{} root cause{}, ranked by how many nodes each forces:\n",
            causes.len(),
            crate::cli::plural(causes.len())
        ));
        for (i, rc) in causes.iter().enumerate() {
            let forced: Vec<String> = rc.forces.iter().map(|(c, a)| format!("{c} {a}")).collect();
            out.push_str(&format!(
                "\n{}. {} {} — forces {}: {}\n",
                i + 1,
                rc.ctid,
                rc.name,
                rc.forces.len(),
                forced.join(", ")
            ));
            render_reasons(&mut out, &rc.reasons, "     ");
        }
    }
    let list = |pred: &dyn Fn(&E) -> bool| -> Vec<String> {
        explanations
            .iter()
            .filter(|(_, e)| pred(e))
            .map(|(c, _)| c.to_string())
            .collect()
    };
    for (title, items) in [
        (
            "runtime updates (no rebuild)",
            list(&|e| matches!(e, E::Update { .. })),
        ),
        (
            "never built (create)",
            list(&|e| matches!(e, E::NeverBuilt)),
        ),
        (
            "unfinished builds (replace)",
            list(&|e| matches!(e, E::Unfinished)),
        ),
        (
            "not phoenix's (never touched)",
            list(&|e| matches!(e, E::NotManaged)),
        ),
    ] {
        if !items.is_empty() {
            out.push_str(&format!("\n{title}: {}\n", items.join(", ")));
        }
    }
    out
}

pub fn generations(cli: &Cli, fleet: &Fleet, ctid: Ctid) -> i32 {
    if let Some(code) = unknown_targets(fleet, &[ctid]) {
        return code;
    }
    let (_host, planned, state) = match read_for_history(cli, fleet) {
        Ok(x) => x,
        Err(code) => return code,
    };
    let Some(ct) = planned.inventory.get(&ctid) else {
        return fail(
            &format!("CT {ctid} does not exist on the host"),
            exit::NOT_FOUND,
        );
    };
    let wanted = planned.hashes[&ctid].hash.snapshot().to_string();
    let current = ct.current_build().map(|s| s.name.clone());
    let gens = ct.generations();
    let rows: Vec<serde_json::Value> = gens
        .iter()
        .map(|s| {
            let manifest = state
                .manifest(&why::described_hash(&s.description).unwrap_or_else(|| s.name.trim_start_matches("phx-").to_string()))
                .map(|(_, m)| m);
            json!({
                "snapshot": s.name,
                "snaptime": s.snaptime,
                "current": current.as_deref() == Some(s.name.as_str()),
                "wanted": s.name == wanted,
                "manifest": manifest.as_ref().map(|m| json!({
                    "parent": m.parent.as_ref().map(|p| json!({"ctid": p.ctid, "snapshot": p.hash.snapshot()})),
                    "hook": m.hook.as_ref().map(|h| &h.blake3[..12]),
                    "build_fields": m.build.len(),
                    "steps": m.steps.keys().collect::<Vec<_>>(),
                    "nvidia_driver": m.nvidia.as_ref().and_then(|n| n.driver_version.clone()),
                })),
            })
        })
        .collect();
    match cli.output {
        Output::Json => print_json(
            &json!({"schema_version": JSON_SCHEMA_VERSION, "ctid": ctid, "generations": rows}),
        ),
        Output::Human => {
            println!(
                "CT {}: {} generation{} (newest first)",
                node_label(fleet, ctid),
                rows.len(),
                crate::cli::plural(rows.len())
            );
            for r in &rows {
                let mut marks = Vec::new();
                if r["current"] == true {
                    marks.push("current");
                }
                if r["wanted"] == true {
                    marks.push("wanted");
                }
                let summary = match &r["manifest"] {
                    serde_json::Value::Null => "manifest not stored".to_string(),
                    m => format!(
                        "parent {}  hook {}  steps {}{}",
                        m["parent"]["ctid"]
                            .as_u64()
                            .map_or("none".to_string(), |p| format!(
                                "{p}@{}",
                                m["parent"]["snapshot"].as_str().unwrap_or("")
                            )),
                        m["hook"].as_str().unwrap_or("none"),
                        m["steps"]
                            .as_array()
                            .map(|a| a
                                .iter()
                                .filter_map(|s| s.as_str())
                                .collect::<Vec<_>>()
                                .join("+"))
                            .filter(|s| !s.is_empty())
                            .unwrap_or_else(|| "none".into()),
                        m["nvidia_driver"]
                            .as_str()
                            .map_or(String::new(), |d| format!("  driver {d}"))
                    ),
                };
                println!(
                    "{} {}  {} UTC  {:<16} {summary}",
                    if r["current"] == true { "*" } else { " " },
                    r["snapshot"].as_str().unwrap_or(""),
                    crate::state::utc(r["snaptime"].as_u64().unwrap_or(0)),
                    marks.join(", "),
                );
            }
        }
    }
    exit::OK
}

pub struct GcArgs {
    pub dry_run: bool,
    pub keep: usize,
    pub older_than: String,
    pub orphans: bool,
    pub wait: bool,
}

pub fn gc(cli: &Cli, fleet: &Fleet, args: &GcArgs) -> i32 {
    let older_than_s = match crate::engine::gc::parse_duration(&args.older_than) {
        Ok(s) => s,
        Err(e) => return fail(&format!("--older-than: {e}"), exit::USAGE),
    };
    let (_state, _lock) = match lock_host(cli, "gc", args.wait) {
        Ok(x) => x,
        Err(code) => return code,
    };
    let host = match open_host(cli) {
        Ok(h) => h,
        Err(e) => return fail(&e, exit::HOST),
    };
    let hashes = crate::engine::hash::hash_fleet(fleet);
    let inventory = match host.inventory() {
        Ok(i) => i,
        Err(e) => return fail(&format!("cannot read the host: {e}"), exit::HOST),
    };
    let policy = crate::engine::gc::Policy {
        keep: args.keep,
        older_than_s,
        now: now_secs(),
        orphans: args.orphans,
    };
    let decisions = crate::engine::gc::decide(&hashes, &inventory, &policy);
    let mut errors = Vec::new();
    let mut deleted = Vec::new();
    let mut destroyed = Vec::new();
    if !args.dry_run {
        for d in decisions
            .snapshots
            .iter()
            .filter(|d| d.decision == crate::engine::gc::Decision::Delete)
        {
            match host.delete_snapshot(d.ctid, &d.snapshot) {
                Ok(()) => deleted.push((d.ctid, d.snapshot.clone())),
                Err(e) => errors.push(format!("CT {}: cannot delete {}: {e}", d.ctid, d.snapshot)),
            }
        }
        for o in decisions.orphans.iter().filter(|o| o.destroy) {
            let r = (|| {
                if o.running {
                    host.shutdown(o.ctid, 60)?;
                }
                host.destroy(o.ctid)
            })();
            match r {
                Ok(()) => destroyed.push(o.ctid),
                Err(e) => errors.push(format!("CT {}: cannot destroy the orphan: {e}", o.ctid)),
            }
        }
    }
    match cli.output {
        Output::Json => print_json(&json!({
            "schema_version": JSON_SCHEMA_VERSION,
            "dry_run": args.dry_run,
            "snapshots": decisions.snapshots,
            "orphans": decisions.orphans,
            "deleted": deleted.iter().map(|(c, s)| json!({"ctid": c, "snapshot": s})).collect::<Vec<_>>(),
            "destroyed": destroyed,
            "errors": errors,
        })),
        Output::Human => {
            let verb = if args.dry_run {
                "would delete"
            } else {
                "delete"
            };
            let mut last = None;
            for d in &decisions.snapshots {
                if last != Some(d.ctid) {
                    println!("CT {}", node_label(fleet, d.ctid));
                    last = Some(d.ctid);
                }
                let why = match &d.decision {
                    crate::engine::gc::Decision::Delete => verb.to_string(),
                    crate::engine::gc::Decision::Keep { reason } => format!(
                        "keep: {}",
                        match reason {
                            crate::engine::gc::Keep::Wanted =>
                                "today's config builds it".to_string(),
                            crate::engine::gc::Keep::Current =>
                                "the live CT descends from it".to_string(),
                            crate::engine::gc::Keep::Recent { rank } =>
                                format!("generation {rank} of the --keep {}", args.keep),
                            crate::engine::gc::Keep::Young { age_s } => format!(
                                "younger than --older-than ({} old)",
                                crate::state::age(*age_s)
                            ),
                        }
                    ),
                };
                println!(
                    "  {}  {} UTC  {why}",
                    d.snapshot,
                    crate::state::utc(d.snaptime)
                );
            }
            for o in &decisions.orphans {
                if o.destroy {
                    println!(
                        "CT {} {}: phoenix's, no longer in the config: {}",
                        o.ctid,
                        o.name,
                        if args.dry_run {
                            "would destroy"
                        } else {
                            "destroy"
                        }
                    );
                } else {
                    println!("CT {} {}: phoenix's, no longer in the config: kept (pass --orphans to destroy it)", o.ctid, o.name);
                }
            }
            let candidates = decisions
                .snapshots
                .iter()
                .filter(|d| d.decision == crate::engine::gc::Decision::Delete)
                .count();
            let kept = decisions.snapshots.len() - candidates;
            if args.dry_run {
                println!("gc (dry run): {candidates} snapshot(s) would be deleted, {kept} kept; nothing was changed");
            } else {
                println!(
                    "gc: {} snapshot(s) deleted, {kept} kept, {} orphan CT(s) destroyed",
                    deleted.len(),
                    destroyed.len()
                );
            }
            for e in &errors {
                eprintln!("error: {e}");
            }
        }
    }
    if errors.is_empty() {
        exit::OK
    } else {
        exit::BUILD_FAILED
    }
}
