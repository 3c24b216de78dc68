//! The one-line reason people read for each plan entry, rendered from its typed action.

use crate::engine::plan::{Action, Cause, ConsentBy, Entry, Plan, RebuildMode};

fn what_changed(cause: &Cause) -> String {
    match cause {
        Cause::ParentChanged { parent } => format!("parent {parent} changed"),
        Cause::OwnInputs => "its own inputs changed".to_string(),
        Cause::Unfinished => "an earlier build never reached its snapshot".to_string(),
        Cause::Unknown => "the previous build's parent is unknown".to_string(),
    }
}

/// One line for people: what happens to the node and why.
pub fn reason(e: &Entry, plan: &Plan) -> String {
    let want = &e.snapshot;
    match &e.action {
        Action::Fresh { disk_kept_gb: None } => format!("up to date ({want})"),
        Action::Fresh {
            disk_kept_gb: Some(gb),
        } => format!(
            "up to date ({want}); storage_size_gb is below the disk's {gb} GB, and disks never shrink: kept at {gb} GB"
        ),
        Action::Update { changes, secrets } => {
            let mut parts = Vec::new();
            if !changes.is_empty() {
                let keys: Vec<&str> = changes.iter().map(|c| c.key.as_str()).collect();
                parts.push(format!("runtime settings changed: {}", keys.join(", ")));
            }
            if !secrets.is_empty() {
                let names: Vec<String> = secrets
                    .iter()
                    .map(|s| format!("{} ({})", s.field, s.change.name()))
                    .collect();
                parts.push(format!(
                    "secrets to deliver: {}; its setup hook runs again on the live CT{}",
                    names.join(", "),
                    if e.is_template {
                        " (its snapshot keeps what it was built with)"
                    } else {
                        ""
                    }
                ));
            }
            parts.join("; ")
        }
        Action::Create => "new node: no CT with this id".to_string(),
        Action::Rebuild {
            cause: Cause::Unfinished,
            ..
        } => "an earlier build never reached its snapshot: replaced".to_string(),
        Action::Rebuild {
            mode,
            cause,
            consent,
            built,
        } => {
            let what = what_changed(cause);
            // Only an unfinished build has none, and it is handled above.
            let built = built.as_deref().unwrap_or("?");
            match (e.is_template, mode, consent) {
                (true, ..) => format!("template replaced: {what} ({built} → {want})"),
                (false, RebuildMode::InPlace, ConsentBy::NotNeeded) => {
                    format!("in place: {what} ({built} → {want})")
                }
                (false, RebuildMode::InPlace, _) => format!(
                    "in place: {what} (\"rebuild\": \"in-place\" converges the live CT)"
                ),
                (false, RebuildMode::Replace, by) => format!(
                    "replace: {what} ({}; its data is discarded)",
                    if *by == ConsentBy::Config {
                        "\"rebuild\": \"replace\""
                    } else {
                        "consent given"
                    }
                ),
            }
        }
        Action::Held { cause, .. } => format!(
            "held: {}; replacing it destroys its data — run with --replace {} (or --replace-all), or set \"rebuild\" in its block",
            what_changed(cause),
            e.ctid
        ),
        Action::Blocked { by } => format!(
            "ancestor {by} is {}",
            plan.entry(*by).map_or("not built", |b| b.action.name())
        ),
        Action::Unmanaged => format!(
            "CT {} exists but was not created by phoenix (no `phoenix` tag): it is never touched",
            e.ctid
        ),
    }
}
