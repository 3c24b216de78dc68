//! The one-line reason people read for each plan entry, rendered from its typed action.

use crate::engine::plan::{Action, Cause, ConsentBy, Entry, LeftOut, Plan, RebuildMode};
use crate::engine::store::{CloneFrom, FullClone, STORE_CHANGE};

/// Why a clone is a full copy although store templates are on, in words.
pub fn full_clone(reason: &FullClone) -> String {
    match reason {
        FullClone::NoLinkedClones { storage } => format!(
            "storage '{storage}' makes no linked clones (Proxmox links them on ZFS, LVM-thin, Ceph RBD and btrfs)"
        ),
        FullClone::OtherStorage {
            storage,
            template_storage,
        } => format!(
            "its storage '{storage}' is not its template's '{template_storage}', and a linked clone stays on its template's storage"
        ),
        FullClone::NoStoreTemplate => {
            "its parent has no store template of that generation, and this run makes none"
                .to_string()
        }
    }
}

/// How a cloned node is cloned, and what store template a node gets, when store
/// templates are on: the end of its plan line.
pub fn store_note(e: &Entry) -> Option<String> {
    let clone = e.clone.as_ref().map(|c| match c {
        CloneFrom::Linked { store_template } => {
            format!("a linked clone of store template {store_template} (no data copied)")
        }
        CloneFrom::Full { reason } => format!("a full clone: {}", full_clone(reason)),
    });
    let store = e.store_template.as_ref().map(|m| {
        format!(
            "then store template {} of {}{}",
            m.vmid,
            e.snapshot,
            if m.redo {
                " (made again: an untrusted one is there)"
            } else {
                ""
            }
        )
    });
    let parts: Vec<String> = clone.into_iter().chain(store).collect();
    (!parts.is_empty()).then(|| parts.join("; "))
}

pub fn what_changed(cause: &Cause) -> String {
    match cause {
        Cause::ParentChanged { parent } => format!("parent {parent} changed"),
        Cause::OwnInputs => "its own inputs changed".to_string(),
        Cause::Unfinished => {
            "phoenix's build of it was cut short before its snapshot (its build record says so)"
                .to_string()
        }
        Cause::NoBuildSnapshot { missing } => {
            format!("no build snapshot phoenix can find: {missing}")
        }
        Cause::Unknown => "the previous build's parent is unknown".to_string(),
    }
}

/// What an in-place converged CT lacks, in words, when it does.
pub fn in_place_note(e: &Entry) -> Option<String> {
    let Action::Fresh {
        in_place_over: Some(over),
        ..
    } = &e.action
    else {
        return None;
    };
    Some(format!(
        "converged in place over {}@{}: the parent's changes since are not in this CT; `phoenix build --replace {}` brings them (and discards its data)",
        over.parent, over.snapshot, e.ctid
    ))
}

/// One line for people: what happens to the node and why.
pub fn reason(e: &Entry, plan: &Plan) -> String {
    let line = action_reason(e, plan);
    match store_note(e) {
        Some(note) if line.is_empty() => note,
        Some(note) => format!("{line}; {note}"),
        None => line,
    }
}

fn action_reason(e: &Entry, plan: &Plan) -> String {
    let want = &e.snapshot;
    match &e.action {
        Action::Fresh { disk_kept_gb, .. } => {
            let mut line = format!("up to date ({want})");
            if let Some(gb) = disk_kept_gb {
                line.push_str(&format!(
                    "; storage_size_gb is below the disk's {gb} GB, and disks never shrink: kept at {gb} GB"
                ));
            }
            if let Some(note) = in_place_note(e) {
                line.push_str(&format!("; {note}"));
            }
            line
        }
        Action::Update { changes, secrets } => {
            let mut parts = Vec::new();
            let keys: Vec<&str> = changes
                .iter()
                .map(|c| c.key.as_str())
                .filter(|k| *k != STORE_CHANGE)
                .collect();
            if !keys.is_empty() {
                parts.push(format!("runtime settings changed: {}", keys.join(", ")));
            }
            if e.store_template.is_some() && keys.is_empty() && secrets.is_empty() {
                parts.push(format!("up to date ({want}), but without its store template"));
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
        } => "phoenix's build of it was cut short before its snapshot (its build record says so): replaced".to_string(),
        Action::Rebuild {
            cause: cause @ Cause::NoBuildSnapshot { .. },
            consent,
            ..
        } => format!(
            "{}: replaced ({})",
            what_changed(cause),
            match (e.is_template, consent) {
                (true, _) => "a template holds nothing of its own",
                (_, ConsentBy::Config) => "\"rebuild\": \"replace\"; its data is discarded",
                _ => "consent given; its data is discarded",
            }
        ),
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
        Action::Held {
            cause: cause @ Cause::NoBuildSnapshot { .. },
            ..
        } => format!(
            "held: {}, and nothing proves that phoenix's own build of it was cut short; it may hold data — run with --replace {} to destroy and rebuild it",
            what_changed(cause),
            e.ctid
        ),
        Action::Held { cause, .. } => format!(
            "held: {}; replacing it destroys its data — run with --replace {} (or --replace-all), or set \"rebuild\" in its block",
            what_changed(cause),
            e.ctid
        ),
        Action::Blocked { by } => format!(
            "ancestor {by} is {}",
            plan.entry(*by).map_or("not built", |b| b.action.name())
        ),
        Action::Unmanaged {
            unreadable: Some(why),
        } => format!(
            "CT {}'s config cannot be parsed, so phoenix cannot tell whose it is: it is never touched ({why})",
            e.ctid
        ),
        Action::Unmanaged { unreadable: None } => format!(
            "CT {} exists but was not created by phoenix (no `phoenix` tag): it is never touched",
            e.ctid
        ),
        Action::Pinned(p) if !p.complete => format!(
            "pinned: a rollback to {} by {} did not finish; `phoenix rollback {} --to {}` finishes it, `phoenix unpin {}` gives it back to builds",
            p.pinned_snapshot, p.pinned_by, e.ctid, p.pinned_snapshot, e.ctid
        ),
        Action::Pinned(p) => format!(
            "pinned at {} by {} on {} UTC (phoenix rollback); left alone until `phoenix unpin {}` or `build --unpin {}`",
            p.pinned_snapshot,
            p.pinned_by,
            crate::os::utc(p.pinned_at),
            e.ctid,
            e.ctid
        ),
        Action::Skipped {
            why: LeftOut::Gpu,
            by,
        } if *by == e.ctid => "left out (--skip-gpu): it has a GPU".to_string(),
        Action::Skipped {
            why: LeftOut::Gpu,
            by,
        } => format!("left out (--skip-gpu): it descends from GPU node {by}"),
    }
}
