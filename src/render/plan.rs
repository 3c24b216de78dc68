//! The one-line reason people read for each plan entry, rendered from its typed action.

use crate::engine::plan::{
    Action, Cause, CloneVia, ConsentBy, Entry, LeftOut, Move, MoveCause, Plan, RebuildMode,
};
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
    let makes: Vec<String> = e
        .store_template
        .iter()
        .chain(&e.remote_store_templates)
        .map(|m| {
            format!(
                "{}{}",
                m.vmid,
                m.node
                    .as_deref()
                    .map(|n| format!(" on node {n} (made here, migrated there)"))
                    .unwrap_or_default()
            )
        })
        .collect();
    let redo = e
        .store_template
        .iter()
        .chain(&e.remote_store_templates)
        .any(|m| m.redo);
    let store = (!makes.is_empty()).then(|| {
        format!(
            "then store template{} {} of {}{}",
            if makes.len() > 1 { "s" } else { "" },
            makes.join(", "),
            e.snapshot,
            if redo {
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
        Cause::SnapshotsLost { to, storage, lost } => format!(
            "moving it to node {to} deletes its snapshots {} (storage '{storage}' moves none to another node: only ZFS and btrfs send snapshots along, and shared storage moves nothing)",
            lost.join(", ")
        ),
    }
}

/// A move, in words.
pub fn move_words(m: &Move) -> String {
    let why = match m.cause {
        MoveCause::Placed => format!("its block places it on node {}, it is on {}", m.to, m.from),
        MoveCause::MovedOutside => format!(
            "it was moved to node {} outside phoenix (an admin or HA), and its block places it on {}",
            m.from, m.to
        ),
    };
    let mut line = format!("{why}: migrated {} → {}", m.from, m.to);
    if m.restart {
        line.push_str(" (running: shut down, moved, started there)");
    }
    if !m.drops_snapshots.is_empty() {
        line.push_str(&format!(
            "; its snapshots {} are deleted first (--drop-snapshots) and its build snapshot is taken again there",
            m.drops_snapshots.join(", ")
        ));
    }
    line
}

/// What placement adds to an entry's reason: a move it makes first, a move outside
/// phoenix left as it is, how a clone reaches its node.
pub fn placement_note(e: &Entry) -> Option<String> {
    if let (Some(m), false) = (&e.moves, matches!(e.action, Action::Migrate { .. })) {
        return Some(format!("first {}", move_words(m)));
    }
    if let (Some(from), Some(at)) = (&e.moved_outside, &e.node) {
        return Some(format!(
            "on node {at}, where it was moved outside phoenix (phoenix left it on {from}); nothing places it, so it stays"
        ));
    }
    let parent = e.parent.map(|p| p.to_string()).unwrap_or_default();
    match (&e.clone_via, &e.node) {
        (Some(CloneVia::Migrate { source_node }), Some(on)) => Some(format!(
            "cloned on node {source_node} beside {parent}, then migrated to {on} (its storage is local)"
        )),
        (Some(CloneVia::Target { source_node }), Some(on)) => Some(format!(
            "cloned from {parent} on node {source_node} straight onto {on} (shared storage)"
        )),
        _ => None,
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
    let notes: Vec<String> = [store_note(e), placement_note(e)]
        .into_iter()
        .flatten()
        .collect();
    match (line.is_empty(), notes.is_empty()) {
        (_, true) => line,
        (true, false) => notes.join("; "),
        (false, false) => format!("{line}; {}", notes.join("; ")),
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
            let making = e.store_template.is_some() || !e.remote_store_templates.is_empty();
            if making && keys.is_empty() && secrets.is_empty() {
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
        Action::Migrate { changes, secrets } => {
            let mut line = match &e.moves {
                Some(m) => format!("{} (a move, not a rebuild: {want} stays its build)", move_words(m)),
                None => "migrated".to_string(),
            };
            if !changes.is_empty() {
                let keys: Vec<&str> = changes.iter().map(|c| c.key.as_str()).collect();
                line.push_str(&format!("; then runtime settings: {}", keys.join(", ")));
            }
            if !secrets.is_empty() {
                let names: Vec<&str> = secrets.iter().map(|s| s.field.as_str()).collect();
                line.push_str(&format!("; then secrets to deliver: {}", names.join(", ")));
            }
            line
        }
        Action::Unreachable { why, .. } => format!("unreachable: {why}"),
        Action::Held {
            cause: cause @ Cause::SnapshotsLost { .. },
            ..
        } => format!(
            "held: {}; run with --drop-snapshots {} to delete them and move it (its build snapshot is taken again there), or keep its block's node as it was",
            what_changed(cause),
            e.ctid
        ),
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
