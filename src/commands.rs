//! The commands that act on a host: `plan`, `build`, `status`, `log`. Each opens the
//! backend, calls the engine and renders its result for a person or as JSON.

use std::io::IsTerminal;
use std::sync::Mutex;

use serde_json::json;

use crate::build::{self, BuildOptions};
use crate::cli::{print_json, Backend, Cli, Output, JSON_SCHEMA_VERSION};
use crate::config::{Ctid, Fleet};
use crate::events::Event;
use crate::exit;
use crate::host::Host;
use crate::plan::{Action, Consent};
use crate::report::{self, Mode, Reporter};
use crate::sim::SimHost;
use crate::state::{now_secs, HostLock, LockError, StateDir};

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
            println!("{:<10} {:>9}  {:<24} REASON", "ACTION", "CTID", "NAME");
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
                println!("{action:<10} {:>9}  {:<24} {}", e.ctid, e.name, e.reason);
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
    let state = match StateDir::open(&cli.state_dir) {
        Ok(s) => s,
        Err(e) => return fail(&e, exit::HOST),
    };
    let _lock = match HostLock::acquire(&state, "build", wait) {
        Ok(l) => l,
        Err(LockError::Held(holder)) => {
            let who = holder.map_or("another phoenix process".to_string(), |h| {
                format!(
                    "phoenix {} (pid {}, started {} s ago)",
                    h.command,
                    h.pid,
                    now_secs().saturating_sub(h.started)
                )
            });
            return fail(
                &format!(
                    "{who} holds the host lock {}; wait for it, or pass --wait",
                    state.root.join("phoenix.lock").display()
                ),
                exit::LOCKED,
            );
        }
        Err(LockError::Io(e)) => {
            return fail(&format!("cannot take the host lock: {e}"), exit::HOST)
        }
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
    let build::Planned { hashes, inventory, plan } =
        match build::make_plan(fleet, host.as_ref(), &Consent::default(), &[]) {
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
                let age = r["age_s"].as_u64().map_or("-".to_string(), human_age);
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

fn human_age(s: u64) -> String {
    match s {
        0..=119 => format!("{s}s"),
        120..=7199 => format!("{}m", s / 60),
        7200..=172_799 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86400),
    }
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
