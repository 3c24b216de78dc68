//! `phoenix why`: root cause first, then the cascade, then what stayed the same.

use std::collections::BTreeMap;

use super::*;
use crate::engine::plan::Action;
use crate::engine::why;

/// Config field behind a runtime setting, for `file:line`.
fn runtime_field(key: &str) -> &str {
    match key {
        "memory" => "memory_mb",
        "hostname" => "name",
        "network" => "network_config",
        "disk" => "storage_size_gb",
        other => other,
    }
}

pub fn why(cli: &Cli, fleet: &Fleet, ctid: Option<Ctid>, verbose: bool) -> Result<i32, Error> {
    check_targets(fleet, &ctid.into_iter().collect::<Vec<_>>())?;
    let (_host, planned, state) = read_for_history(cli, fleet)?;
    let cx = why::Context {
        fleet,
        hashes: &planned.hashes,
        inventory: &planned.inventory,
        plan: &planned.plan,
        history: &state,
        verbose,
    };
    let explanations: BTreeMap<Ctid, why::Explanation> = planned
        .plan
        .entries
        .iter()
        .filter(|e| !matches!(e.action, Action::Fresh { .. }) || Some(e.ctid) == ctid)
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
                // A list like every other command's `nodes`, each as `why <CTID>` gives it.
                "nodes": explanations
                    .iter()
                    .map(|(c, ex)| json!({
                        "ctid": c,
                        "name": fleet.nodes[c].name(),
                        "snapshot": planned.hashes[c].hash.snapshot(),
                        "explanation": ex,
                    }))
                    .collect::<Vec<_>>(),
            })),
            Output::Human => print!("{}", render_why_all(&explanations, &causes)),
        },
    }
    Ok(exit::OK)
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

/// What store templates say about a built node: the one its generation is kept as, and
/// the one its disk is a linked clone of.
fn store_lines(
    fleet: &Fleet,
    planned: &crate::build::Planned,
    ctid: Ctid,
    snapshot: &str,
) -> String {
    let mut out = String::new();
    let stores = crate::engine::store::found(&planned.inventory, fleet.hypervisor.store_range);
    if let Some(s) = stores
        .iter()
        .find(|s| s.trusted() && s.ctid == Some(ctid) && s.snapshot.as_deref() == Some(snapshot))
    {
        let linked = s.linked.iter().map(Ctid::to_string).collect::<Vec<_>>();
        out.push_str(&format!(
            "  its generation is kept as store template {} (an immutable Proxmox template){}\n",
            s.vmid,
            if linked.is_empty() {
                String::new()
            } else {
                format!("; linked clones of it: {}", linked.join(", "))
            }
        ));
    }
    if let Some(store) = planned.inventory.get(&ctid).and_then(|c| c.linked_to()) {
        let of = stores
            .iter()
            .find(|s| s.vmid == store)
            .and_then(|s| s.snapshot.clone())
            .map_or(String::new(), |snap| format!(" ({snap})"));
        out.push_str(&format!(
            "  its disk is a linked clone of store template {store}{of}: no data was copied\n"
        ));
    }
    out
}

fn render_why(
    fleet: &Fleet,
    planned: &crate::build::Planned,
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
                crate::os::utc(*built_at),
                crate::os::age(now.saturating_sub(*built_at))
            ));
            match (parent, parent_snapshot) {
                (Some(p), Some(ps)) => out.push_str(&format!(", cloned from {} at {ps}\n", node_label(fleet, *p))),
                _ => out.push_str(&format!(", created from {}\n", fleet.nodes[&ctid].spec.template.as_deref().unwrap_or("?"))),
            }
            if let Some(note) = planned.plan.entry(ctid).and_then(crate::render::plan::in_place_note) {
                out.push_str(&format!("  {note}\n"));
            }
            out.push_str(&store_lines(fleet, planned, ctid, snapshot));
        }
        E::Migrate { snapshot, moves, changes } => {
            out.push_str(&format!(
                "CT {label} is built from today's inputs ({snapshot}) and would be migrated, not rebuilt (migrate):\n  {}\n",
                crate::render::plan::move_words(moves)
            ));
            let block = &fleet.nodes[&ctid].pointer;
            let at = match (&fleet.nodes[&ctid].spec.node, &fleet.hypervisor.default_node) {
                (Some(_), _) => fleet.line_of(&format!("{block}/node")),
                (None, Some(_)) => format!("{} (proxmox_defaults.default_node)", fleet.hypervisor.file.path.display()),
                (None, None) => "the config".to_string(),
            };
            out.push_str(&format!(
                "  placement is not content: `node` ({at}) is not in its hash, so {snapshot} stays its build and its files go with it\n"
            ));
            for c in changes {
                out.push_str(&format!("  then {}: {} → {}\n", c.key, c.old.as_deref().unwrap_or("(unset)"), c.new));
            }
        }
        E::Unreachable { node, why } => out.push_str(&format!(
            "CT {label} lives on node {node}, which does not answer: it cannot be read or built until it does ({why}).\n"
        )),
        E::Update { changes, secrets } => {
            let runtime = changes.iter().any(|c| c.key != crate::engine::store::STORE_CHANGE);
            let what = match (!runtime, secrets.is_empty()) {
                (true, true) => "only its store template is missing, which the build makes",
                (false, true) => "only runtime settings differ, applied in place",
                (true, false) => "only secrets differ, delivered by running its setup hook again on the live CT",
                _ => "only runtime settings and secrets differ: the settings are applied in place, and its setup hook runs again on the live CT to deliver the secrets",
            };
            out.push_str(&format!("CT {label} is built from today's inputs; {what} (update, no rebuild):\n"));
            let block = &fleet.nodes[&ctid].pointer;
            for c in changes.iter().filter(|c| c.key == crate::engine::store::STORE_CHANGE) {
                out.push_str(&format!(
                    "  its store template is missing (store_vmid_range in {}): made as {}\n",
                    fleet.hypervisor.file.path.display(),
                    c.new
                ));
            }
            for c in changes.iter().filter(|c| c.key != crate::engine::store::STORE_CHANGE) {
                let at = fleet.line_of(&format!("{block}/{}", runtime_field(&c.key)));
                out.push_str(&format!("  {}: {} → {} ({at})\n", c.key, c.old.as_deref().unwrap_or("(unset)"), c.new));
            }
            for s in secrets {
                let at = fleet.line_of(&format!("{block}{}", crate::engine::secrets::pointer(&s.field)));
                out.push_str(&format!("  secret {}: {} ({at}; its value is never shown)\n", s.field, s.change.name()));
            }
            if !secrets.is_empty() && fleet.nodes[&ctid].is_template() {
                out.push_str("  a template's snapshot keeps the secrets it was built with: CTs cloned from it get them until their own hooks deliver theirs\n");
            }
        }
        E::NeverBuilt => out.push_str(&format!(
            "CT {label} has never been built: no CT with this id exists on the host. `phoenix build {ctid}` creates it.\n"
        )),
        E::NotManaged => out.push_str(&format!(
            "CT {label}: a CT with this id exists but phoenix did not create it (no `phoenix` tag). phoenix never touches it and cannot say what is inside.\n"
        )),
        E::Unfinished => out.push_str(&format!(
            "CT {label} exists but phoenix's build of it was cut short before its snapshot (its build record in the state directory says so): it will be replaced.\n"
        )),
        E::NoBuildSnapshot { action, missing } => {
            if action == "held" {
                out.push_str(&format!(
                    "CT {label} is held: phoenix finds no build snapshot of it ({missing}), and nothing proves that its own build was cut short, so it may hold data. `phoenix build --replace {ctid}` destroys and rebuilds it.\n"
                ));
            } else {
                out.push_str(&format!(
                    "CT {label} would be replaced: phoenix finds no build snapshot of it ({missing}).\n"
                ));
            }
        }
        E::Pinned(p) => {
            out.push_str(&format!(
                "CT {label} is pinned at {}: `phoenix rollback` by {} on {} UTC put it back to that generation, and builds leave it there{}.\n",
                p.pinned_snapshot,
                p.pinned_by,
                crate::os::utc(p.pinned_at),
                if p.complete { "" } else { " (the rollback did not finish: run it again)" }
            ));
            let wanted = planned.hashes.get(&ctid).map(|h| h.hash.snapshot().to_string());
            out.push_str(&format!(
                "  `phoenix unpin {ctid}` (or `build --unpin {ctid}`) gives it back to builds{}.\n",
                match wanted {
                    Some(w) if w != p.pinned_snapshot => format!(", which then rebuild it as {w}"),
                    _ => String::new(),
                }
            ));
        }
        E::Unreadable { why } => out.push_str(&format!(
            "CT {label}: a CT with this id exists but its config cannot be parsed ({why}), so phoenix cannot tell whose it is: it is never touched.\n"
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
                out.push_str(&format!("  plan: {}\n", crate::render::plan::reason(e, &planned.plan)));
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
            let forced: Vec<String> = rc
                .forces
                .iter()
                .map(|f| format!("{} {}", f.ctid, f.action))
                .collect();
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
            "runtime updates and secrets (no rebuild)",
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
            "no build snapshot found (held unless --replace)",
            list(&|e| matches!(e, E::NoBuildSnapshot { .. })),
        ),
        (
            "not phoenix's (never touched)",
            list(&|e| matches!(e, E::NotManaged)),
        ),
        (
            "configs that cannot be parsed (never touched)",
            list(&|e| matches!(e, E::Unreadable { .. })),
        ),
    ] {
        if !items.is_empty() {
            out.push_str(&format!("\n{title}: {}\n", items.join(", ")));
        }
    }
    out
}
