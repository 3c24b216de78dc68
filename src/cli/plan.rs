//! `phoenix plan`.

use super::*;
use crate::engine::plan::{Action, Consent};

pub fn plan(cli: &Cli, fleet: &Fleet, targets: &[Ctid], consent: &Consent) -> Result<i32, Error> {
    let mut named = targets.to_vec();
    named.extend(consent.replace.iter().copied());
    named.extend(consent.drop_snapshots.iter().copied());
    check_targets(fleet, &named)?;
    let host = open_placed_host(cli, fleet)?;
    let state = StateDir {
        root: cli.state_dir.clone(),
    };
    let planned =
        crate::build::make_plan(fleet, host.as_ref(), &state, consent, targets, cli.skip_gpu)
            .map_err(Error::ReadHost)?;
    // A cluster of several nodes shows where each CT is.
    let nodes = planned.cluster.as_ref().is_some_and(|c| c.nodes.len() > 1);
    let (plan, preflight, state_problems) =
        (planned.plan, planned.preflight, planned.state_problems);
    // The host set-up runs when the build has work.
    let setup = fleet
        .hooks
        .initial_setup
        .as_deref()
        .filter(|_| plan.entries.iter().any(|e| e.action.builds()));
    match cli.output {
        Output::Json => print_json(&json!({
            "schema_version": JSON_SCHEMA_VERSION,
            "backend": host.name(),
            "nodes": plan.entries,
            "counts": plan.counts(),
            "preflight": preflight.values().flatten().collect::<Vec<_>>(),
            "initial_setup": setup.map(|p| p.display().to_string()),
            "state_problems": state_problems,
            "store_problems": plan.store_problems,
        })),
        Output::Human => {
            if let Some(p) = setup {
                println!("before the build: {} runs on the host", p.display());
            }
            let color = stdout_color(cli);
            if nodes {
                println!(
                    "{:<16} {:>9}  {:<24} {:<12} REASON",
                    "ACTION", "CTID", "NAME", "NODE"
                );
            } else {
                println!("{:<16} {:>9}  {:<24} REASON", "ACTION", "CTID", "NAME");
            }
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
                let node = if nodes {
                    format!("{:<12} ", e.node.as_deref().unwrap_or("-"))
                } else {
                    String::new()
                };
                println!(
                    "{} {:>9}  {:<24} {node}{}",
                    action_cell(&action, 16, color),
                    e.ctid,
                    e.name,
                    crate::render::plan::reason(e, &plan)
                );
            }
            let counts = plan.counts();
            let parts: Vec<String> = [
                "create",
                "rebuild",
                "update",
                "migrate",
                "unreachable",
                "held",
                "blocked",
                "unmanaged",
                "fresh",
                "skipped",
            ]
            .iter()
            .filter_map(|a| counts.get(a).map(|n| format!("{n} {a}")))
            .collect();
            println!("plan: {}", parts.join(", "));
            if !preflight.is_empty() {
                println!(
                    "\npreflight: {} node(s) cannot be built on this host (nor what descends from them):",
                    preflight.len()
                );
                for p in preflight.values().flatten() {
                    let name = plan.entry(p.ctid).map(|e| e.name.as_str()).unwrap_or("");
                    println!("  {} {name}: {}", p.ctid, p.message);
                }
            }
            if !plan.store_problems.is_empty() {
                println!("\nstore templates: a build would fail before touching the host:");
                for p in &plan.store_problems {
                    println!("  {p}");
                }
            }
            if !state_problems.is_empty() {
                println!(
                    "\nstate directory: a build would fail before touching the host ({}):",
                    state.root.display()
                );
                for p in &state_problems {
                    println!("  {p}");
                }
            }
        }
    }
    if !preflight.is_empty() || !state_problems.is_empty() || !plan.store_problems.is_empty() {
        Ok(exit::BUILD_FAILED)
    } else if plan
        .entries
        .iter()
        .any(|e| matches!(e.action, Action::Held { .. }))
    {
        Ok(exit::HELD)
    } else {
        Ok(exit::OK)
    }
}
