//! Why a node would rebuild: typed reasons, root causes apart from cascades.
//!
//! A node's built snapshot names the manifest it was built from (its description holds
//! the full hash; the manifest is stored in the state directory). Comparing that manifest
//! with today's gives the node's own changed inputs ([`Reason`]s) and whether its parent's
//! hash changed. Following the *old* parent hash to the parent's old manifest, and so on up
//! the chain, finds the root cause: the topmost node whose own inputs changed. Nothing is
//! guessed: a manifest that is not stored makes the answer [`Reason::Unknown`].
//!
//! Data only: rendering lives in the command module; every type here is serde, and the
//! JSON shape is pinned by a test.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::engine::hash::{Hashed, Manifest, NodeHash};
use crate::engine::plan::{Action, Change, Plan};
use crate::engine::secrets::Rotated;
use crate::engine::snapshot::{current_build, BuildRecord, PREFIX};
use crate::fleet::config::Ctid;
use crate::fleet::Fleet;
use crate::host::CtInfo;

/// Which kind of script changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScriptKind {
    Hook,
    Lib,
    Step,
}

/// One changed input of one node.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Reason {
    /// A build field of the config block (`null` = absent).
    Field {
        field: String,
        old: Value,
        new: Value,
        /// `file:line` of the new value.
        #[serde(skip_serializing_if = "Option::is_none")]
        at: Option<String>,
    },
    /// A script's content (hook, lib file, built-in step).
    Script {
        script: ScriptKind,
        name: String,
        old: Option<String>,
        new: Option<String>,
        /// Lines added and removed, when both versions are known.
        #[serde(skip_serializing_if = "Option::is_none")]
        added: Option<usize>,
        #[serde(skip_serializing_if = "Option::is_none")]
        removed: Option<usize>,
        /// The unified diff (with `-v`).
        #[serde(skip_serializing_if = "Option::is_none")]
        diff: Option<String>,
    },
    /// An NVIDIA setting (`driver_version`, `runfile_url`, `repo_url`).
    Nvidia {
        field: String,
        old: Option<String>,
        new: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        at: Option<String>,
    },
    /// A host-wide Portainer setting the node's role uses (`phoenix_hypervisor_config.json`).
    Portainer {
        setting: String,
        old: Option<String>,
        new: Option<String>,
    },
    /// The node entered or left a GPU subtree (NVIDIA settings now count, or no longer).
    GpuScope { now_in_gpu_subtree: bool },
    /// phoenix's recipe version changed: built-in steps mean something new.
    Recipe { old: u32, new: u32 },
    /// The node now clones another template.
    ParentSwitched {
        old: Option<Ctid>,
        new: Option<Ctid>,
    },
    /// The parent's hash changed (a cascade, explained at the parent).
    ParentHash {
        parent: Ctid,
        old: String,
        new: String,
    },
    /// The manifest the node was built from is not stored: phoenix cannot tell what changed.
    Unknown { snapshot: String, detail: String },
}

impl Reason {
    /// A change of the node's own inputs (not the cascade from its parent).
    pub fn is_own(&self) -> bool {
        !matches!(self, Reason::ParentHash { .. })
    }

    /// One sentence for people.
    pub fn sentence(&self) -> String {
        let v = |x: &Value| {
            if x.is_null() {
                "(absent)".to_string()
            } else {
                x.to_string()
            }
        };
        let o = |x: &Option<String>| x.clone().unwrap_or_else(|| "(absent)".into());
        let short = |x: &Option<String>| {
            x.as_deref()
                .map_or("(none)".to_string(), |d| d[..d.len().min(12)].to_string())
        };
        match self {
            Reason::Field {
                field,
                old,
                new,
                at,
            } => format!(
                "config field `{field}`: {} → {}{}",
                v(old),
                v(new),
                at.as_ref().map_or(String::new(), |a| format!(" ({a})"))
            ),
            Reason::Script {
                script,
                name,
                old,
                new,
                added,
                removed,
                ..
            } => {
                let what = match script {
                    ScriptKind::Hook => "hook",
                    ScriptKind::Lib => "hooks lib file",
                    ScriptKind::Step => "built-in step script",
                };
                let change = match (old, new) {
                    (None, Some(_)) => "added".to_string(),
                    (Some(_), None) => "removed".to_string(),
                    _ => match (added, removed) {
                        (Some(a), Some(r)) => format!("+{a} −{r} lines"),
                        _ => format!(
                            "content {} → {} (old version not stored)",
                            short(old),
                            short(new)
                        ),
                    },
                };
                format!("{what} {name}: {change}")
            }
            Reason::Nvidia {
                field,
                old,
                new,
                at,
            } => format!(
                "NVIDIA {field}: {} → {}{}",
                o(old),
                o(new),
                at.as_ref().map_or(String::new(), |a| format!(" ({a})"))
            ),
            Reason::Portainer { setting, old, new } => format!(
                "Portainer {setting} (phoenix_hypervisor_config.json): {} → {}",
                o(old),
                o(new)
            ),
            Reason::GpuScope { now_in_gpu_subtree } => {
                if *now_in_gpu_subtree {
                    "now in a GPU subtree: the NVIDIA settings count".into()
                } else {
                    "no longer in a GPU subtree".into()
                }
            }
            Reason::Recipe { old, new } => {
                format!("phoenix recipe {old} → {new}: built-in steps changed meaning")
            }
            Reason::ParentSwitched { old, new } => format!(
                "clones another template: {} → {}",
                old.map_or("none".into(), |c| c.to_string()),
                new.map_or("none".into(), |c| c.to_string())
            ),
            Reason::ParentHash { parent, old, new } => {
                format!(
                    "parent {parent} changed: {} → {}",
                    &old[..12.min(old.len())],
                    &new[..12.min(new.len())]
                )
            }
            Reason::Unknown { snapshot, detail } => format!(
                "unknown: {snapshot} was built from a manifest phoenix does not have ({detail})"
            ),
        }
    }
}

/// The keys of either map whose values differ, sorted, with both sides.
fn changed<'a, V: PartialEq>(
    a: &'a BTreeMap<String, V>,
    b: &'a BTreeMap<String, V>,
) -> Vec<(&'a String, Option<&'a V>, Option<&'a V>)> {
    let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter_map(|k| {
            let (x, y) = (a.get(k), b.get(k));
            (x != y).then_some((k, x, y))
        })
        .collect()
}

/// Compares the manifest a node was built from with today's.
pub fn diff(old: &Manifest, new: &Manifest) -> Vec<Reason> {
    let mut out = Vec::new();
    if old.recipe != new.recipe {
        out.push(Reason::Recipe {
            old: old.recipe,
            new: new.recipe,
        });
    }
    for (f, a, b) in changed(&old.build, &new.build) {
        out.push(Reason::Field {
            field: f.clone(),
            old: a.cloned().unwrap_or(Value::Null),
            new: b.cloned().unwrap_or(Value::Null),
            at: None,
        });
    }
    let script = |kind, name: &str, a: Option<&String>, b: Option<&String>| Reason::Script {
        script: kind,
        name: name.to_string(),
        old: a.cloned(),
        new: b.cloned(),
        added: None,
        removed: None,
        diff: None,
    };
    let (oh, nh) = (old.hook.as_ref(), new.hook.as_ref());
    if oh.map(|h| &h.blake3) != nh.map(|h| &h.blake3) {
        let name = nh.or(oh).map_or(String::new(), |h| h.name.clone());
        out.push(script(
            ScriptKind::Hook,
            &name,
            oh.map(|h| &h.blake3),
            nh.map(|h| &h.blake3),
        ));
    }
    for (l, a, b) in changed(&old.lib, &new.lib) {
        out.push(script(ScriptKind::Lib, &format!("lib/{l}"), a, b));
    }
    for (step, a, b) in changed(&old.steps, &new.steps) {
        let name = b.or(a).map_or(step.clone(), |x| x.name.clone());
        out.push(script(
            ScriptKind::Step,
            &name,
            a.map(|x| &x.blake3),
            b.map(|x| &x.blake3),
        ));
    }
    match (&old.nvidia, &new.nvidia) {
        (Some(a), Some(b)) => {
            for (field, x, y) in [
                ("driver_version", &a.driver_version, &b.driver_version),
                ("runfile_url", &a.runfile_url, &b.runfile_url),
                ("repo_url", &a.repo_url, &b.repo_url),
            ] {
                if x != y {
                    out.push(Reason::Nvidia {
                        field: field.into(),
                        old: x.clone(),
                        new: y.clone(),
                        at: None,
                    });
                }
            }
        }
        (None, Some(_)) => out.push(Reason::GpuScope {
            now_in_gpu_subtree: true,
        }),
        (Some(_), None) => out.push(Reason::GpuScope {
            now_in_gpu_subtree: false,
        }),
        (None, None) => {}
    }
    for (setting, a, b) in changed(&old.portainer, &new.portainer) {
        out.push(Reason::Portainer {
            setting: setting.clone(),
            old: a.cloned(),
            new: b.cloned(),
        });
    }
    let (op, np) = (old.parent.as_ref(), new.parent.as_ref());
    if op.map(|p| p.ctid) != np.map(|p| p.ctid) {
        out.push(Reason::ParentSwitched {
            old: op.map(|p| p.ctid),
            new: np.map(|p| p.ctid),
        });
    } else if let (Some(a), Some(b)) = (op, np) {
        if a.hash != b.hash {
            out.push(Reason::ParentHash {
                parent: b.ctid,
                old: a.hash.to_string(),
                new: b.hash.to_string(),
            });
        }
    }
    out
}

/// The changed inputs of one node of the chain.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NodeChanges {
    pub ctid: Ctid,
    pub name: String,
    /// The hash it was built with (when known) and today's.
    pub old_hash: Option<String>,
    pub new_hash: String,
    pub reasons: Vec<Reason>,
}

/// The answer for one node.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "verdict", rename_all = "snake_case")]
pub enum Explanation {
    /// The CT exists and is built from today's inputs.
    UpToDate {
        snapshot: String,
        /// When the snapshot was taken: seconds since the epoch, RFC 3339 in JSON.
        #[serde(with = "crate::os::rfc3339_secs")]
        built_at: u64,
        parent: Option<Ctid>,
        parent_snapshot: Option<String>,
    },
    /// Only runtime settings or secrets differ: applied in place, no rebuild.
    Update {
        changes: Vec<Change>,
        /// Secret fields, by name, that the node's setup hook delivers by running again.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        secrets: Vec<Rotated>,
    },
    /// Built from today's inputs, on another node than its block places it: moved there,
    /// never rebuilt (placement is not content, so its build snapshot stays its build).
    Migrate {
        snapshot: String,
        #[serde(rename = "move")]
        moves: crate::engine::plan::Move,
        changes: Vec<Change>,
    },
    /// Its CT lives on a cluster node that does not answer.
    Unreachable { node: String, why: String },
    /// No CT with this id exists: it will be created.
    NeverBuilt,
    /// A CT with this id exists, but phoenix did not create it.
    NotManaged,
    /// phoenix's build of it was cut short before its snapshot (its build record says so).
    Unfinished,
    /// No build snapshot can be found, and nothing proves that phoenix's own build was cut
    /// short: `missing` says what was found instead.
    NoBuildSnapshot { action: String, missing: String },
    /// Its config cannot be parsed: phoenix cannot tell whose it is.
    Unreadable { why: String },
    /// Rolled back and held at a generation (`phoenix rollback`): left alone until unpinned.
    Pinned(crate::engine::plan::Pinned),
    /// It would rebuild (or is held, or blocked): the chain of changes, root cause first.
    Rebuild {
        action: String,
        /// Root cause first: the nodes whose own inputs changed, from the top of the chain.
        root_causes: Vec<NodeChanges>,
        /// The chain from the topmost root cause down to this node.
        cascade: Vec<Ctid>,
        /// What stayed the same on this node.
        unchanged: Vec<String>,
    },
}

/// Everything `why` needs, read once.
pub struct Context<'a> {
    pub fleet: &'a Fleet,
    pub hashes: &'a BTreeMap<Ctid, Hashed>,
    pub inventory: &'a BTreeMap<Ctid, CtInfo>,
    pub plan: &'a Plan,
    pub history: &'a dyn History,
    pub verbose: bool,
}

/// Where `why` finds what earlier builds were made of (phoenix's state directory).
pub trait History {
    /// A stored manifest by full hash, or by the 32-digit prefix a snapshot name carries.
    fn manifest(&self, hash_or_prefix: &str) -> Option<(NodeHash, Manifest)>;
    /// A stored script by content digest.
    fn blob(&self, digest: &str) -> Option<Vec<u8>>;
    /// Where manifests are kept, for messages.
    fn manifests_at(&self) -> String;
}

/// The manifest key of a build snapshot: the full hash its description records, else the
/// prefix in its name.
pub fn manifest_key(snapshot: &str, description: &str) -> String {
    BuildRecord::parse(description)
        .hash
        .unwrap_or_else(|| snapshot.trim_start_matches(PREFIX).to_string())
}

impl Context<'_> {
    /// The manifest a built snapshot came from.
    fn built_manifest(
        &self,
        snapshot: &str,
        description: &str,
    ) -> Result<(NodeHash, Manifest), String> {
        self.history
            .manifest(&manifest_key(snapshot, description))
            .ok_or_else(|| format!("not in {}", self.history.manifests_at()))
    }

    pub fn explain(&self, ctid: Ctid) -> Explanation {
        let entry = self.plan.entry(ctid);
        let ct = self.inventory.get(&ctid);
        let Some(ct) = ct else {
            return Explanation::NeverBuilt;
        };
        if let Some(Action::Unreachable { node, why }) = entry.map(|e| &e.action) {
            return Explanation::Unreachable {
                node: node.clone(),
                why: why.clone(),
            };
        }
        if let Some(why) = &ct.unreadable {
            return Explanation::Unreadable { why: why.clone() };
        }
        if let Some(Action::Pinned(p)) = entry.map(|e| &e.action) {
            return Explanation::Pinned(p.clone());
        }
        if !ct.is_managed() {
            return Explanation::NotManaged;
        }
        let Some(built) = current_build(ct) else {
            return match entry.map(|e| &e.action) {
                Some(
                    Action::Rebuild {
                        cause: crate::engine::plan::Cause::NoBuildSnapshot { missing },
                        ..
                    }
                    | Action::Held {
                        cause: crate::engine::plan::Cause::NoBuildSnapshot { missing },
                        ..
                    },
                ) => Explanation::NoBuildSnapshot {
                    action: entry.map_or("held", |e| e.action.name()).to_string(),
                    missing: missing.clone(),
                },
                _ => Explanation::Unfinished,
            };
        };
        match entry.map(|e| &e.action) {
            Some(Action::Fresh { .. }) => {
                let parent = self.fleet.graph.parent_of(ctid);
                return Explanation::UpToDate {
                    snapshot: built.name.clone(),
                    built_at: built.snaptime,
                    parent,
                    parent_snapshot: parent.map(|p| self.hashes[&p].hash.snapshot().to_string()),
                };
            }
            Some(Action::Update { changes, secrets }) => {
                return Explanation::Update {
                    changes: changes.clone(),
                    secrets: secrets.clone(),
                }
            }
            Some(Action::Migrate { changes, .. }) => {
                if let Some(m) = entry.and_then(|e| e.moves.clone()) {
                    return Explanation::Migrate {
                        snapshot: built.name.clone(),
                        moves: m,
                        changes: changes.clone(),
                    };
                }
            }
            _ => {}
        }
        let action = entry.map_or("rebuild", |e| e.action.name()).to_string();
        // Walk up the chain through the manifests the built snapshots came from.
        let mut chain: Vec<NodeChanges> = Vec::new();
        let mut cur = ctid;
        let mut old: Result<(NodeHash, Manifest), String> =
            self.built_manifest(&built.name, &built.description);
        let mut snapshot_name = built.name.clone();
        loop {
            let new = &self.hashes[&cur];
            let name = self.fleet.nodes[&cur].name().to_string();
            match &old {
                Err(detail) => {
                    let mut reasons = vec![Reason::Unknown {
                        snapshot: snapshot_name.clone(),
                        detail: detail.clone(),
                    }];
                    // Without the manifest, the snapshot's build record on the host still
                    // proves whether the parent changed: the chain goes on from there.
                    let record = self.record(cur, &snapshot_name);
                    let next = match (record.as_ref(), new.manifest.parent.as_ref()) {
                        (Some(r), Some(p)) => r
                            .parent
                            .clone()
                            .flatten()
                            .filter(|old| old != p.hash.as_str())
                            .map(|old| (p.ctid, old, p.hash.to_string())),
                        _ => None,
                    };
                    if let Some((parent, old_parent, new_parent)) = &next {
                        reasons.push(Reason::ParentHash {
                            parent: *parent,
                            old: old_parent.clone(),
                            new: new_parent.clone(),
                        });
                    }
                    chain.push(NodeChanges {
                        ctid: cur,
                        name,
                        old_hash: record.and_then(|r| r.hash),
                        new_hash: new.hash.to_string(),
                        reasons,
                    });
                    let Some((parent, parent_old, _)) = next else {
                        break;
                    };
                    (snapshot_name, old) = self.built_as(&parent_old);
                    cur = parent;
                }
                Ok((old_hash, old_manifest)) => {
                    let reasons = self.enrich(cur, diff(old_manifest, &new.manifest));
                    let next = reasons.iter().find_map(|r| match r {
                        Reason::ParentHash { parent, old, .. } => Some((*parent, old.clone())),
                        _ => None,
                    });
                    chain.push(NodeChanges {
                        ctid: cur,
                        name,
                        old_hash: Some(old_hash.to_string()),
                        new_hash: new.hash.to_string(),
                        reasons,
                    });
                    let Some((parent, parent_old)) = next else {
                        break;
                    };
                    (snapshot_name, old) = self.built_as(&parent_old);
                    cur = parent;
                }
            }
        }
        // chain: this node first, then up. Root causes: nodes with own reasons, top first.
        chain.reverse();
        let top = chain
            .iter()
            .position(|c| c.reasons.iter().any(Reason::is_own))
            .unwrap_or(0);
        let cascade: Vec<Ctid> = chain[top..].iter().map(|c| c.ctid).collect();
        let unchanged = self.unchanged(
            ctid,
            chain.last().map(|c| c.reasons.as_slice()).unwrap_or(&[]),
        );
        let root_causes = chain
            .into_iter()
            .filter(|c| c.reasons.iter().any(Reason::is_own))
            .map(|mut c| {
                c.reasons.retain(Reason::is_own);
                c
            })
            .collect();
        Explanation::Rebuild {
            action,
            root_causes,
            cascade,
            unchanged,
        }
    }

    /// Adds `file:line` to config reasons and line counts (and diffs) to script reasons.
    fn enrich(&self, ctid: Ctid, reasons: Vec<Reason>) -> Vec<Reason> {
        let node = &self.fleet.nodes[&ctid];
        reasons
            .into_iter()
            .map(|r| match r {
                Reason::Field {
                    field, old, new, ..
                } => {
                    let at = (!new.is_null())
                        .then(|| self.fleet.line_of(&format!("{}/{field}", node.pointer)));
                    Reason::Field {
                        field,
                        old,
                        new,
                        at,
                    }
                }
                Reason::Nvidia {
                    field, old, new, ..
                } => {
                    let at = new
                        .is_some()
                        .then(|| self.fleet.line_of(&format!("/nvidia_{field}")));
                    Reason::Nvidia {
                        field,
                        old,
                        new,
                        at,
                    }
                }
                Reason::Script {
                    script,
                    name,
                    old,
                    new,
                    ..
                } => {
                    let text = |d: &Option<String>| {
                        d.as_ref()
                            .and_then(|d| self.history.blob(d).or_else(|| self.current_script(d)))
                            .map(|b| String::from_utf8_lossy(&b).into_owned())
                    };
                    let (a, b) = (text(&old), text(&new));
                    let (mut added, mut removed, mut diff) = (None, None, None);
                    if let (Some(a), Some(b)) = (&a, &b) {
                        let d = similar::TextDiff::from_lines(a, b);
                        let (mut plus, mut minus) = (0, 0);
                        for c in d.iter_all_changes() {
                            match c.tag() {
                                similar::ChangeTag::Insert => plus += 1,
                                similar::ChangeTag::Delete => minus += 1,
                                similar::ChangeTag::Equal => {}
                            }
                        }
                        added = Some(plus);
                        removed = Some(minus);
                        if self.verbose {
                            diff = Some(
                                d.unified_diff()
                                    .context_radius(3)
                                    .header(&format!("{name} (built)"), &format!("{name} (now)"))
                                    .to_string(),
                            );
                        }
                    }
                    Reason::Script {
                        script,
                        name,
                        old,
                        new,
                        added,
                        removed,
                        diff,
                    }
                }
                other => other,
            })
            .collect()
    }

    /// Today's script with this digest, if any (for a new version not yet stored).
    fn current_script(&self, digest: &str) -> Option<Vec<u8>> {
        let h = &self.fleet.hooks;
        std::iter::once(&h.nvidia_step)
            .chain(std::iter::once(&h.docker_step))
            .chain(h.node_hooks.values())
            .chain(h.lib.values())
            .find(|s| s.digest == digest)
            .map(|s| s.bytes.as_ref().clone())
    }

    /// The snapshot a parent was built as, by its old full hash, and the manifest it was
    /// built from (or why it is not known).
    fn built_as(&self, hash: &str) -> (String, Result<(NodeHash, Manifest), String>) {
        let snapshot = format!("phx-{}", &hash[..32.min(hash.len())]);
        let manifest = self.history.manifest(hash).ok_or_else(|| {
            format!(
                "the parent's manifest {} is not in {}",
                &hash[..12.min(hash.len())],
                self.history.manifests_at()
            )
        });
        (snapshot, manifest)
    }

    /// The build record of CT `ctid`'s snapshot `name`, as the host keeps it.
    fn record(&self, ctid: Ctid, name: &str) -> Option<BuildRecord> {
        let snap = self.inventory.get(&ctid)?.snapshot(name)?;
        Some(BuildRecord::parse(&snap.description))
    }

    fn unchanged(&self, ctid: Ctid, reasons: &[Reason]) -> Vec<String> {
        // Without the manifest it was built from, nothing can be said to be the same.
        if reasons.iter().any(|r| matches!(r, Reason::Unknown { .. })) {
            return Vec::new();
        }
        let m = &self.hashes[&ctid].manifest;
        let changed_field = |f: &str| {
            reasons
                .iter()
                .any(|r| matches!(r, Reason::Field { field, .. } if field == f))
        };
        let changed_script = |n: &str| {
            reasons
                .iter()
                .any(|r| matches!(r, Reason::Script { name, .. } if name == n))
        };
        let mut out = Vec::new();
        let same_fields: Vec<&str> = m
            .build
            .keys()
            .map(String::as_str)
            .filter(|f| !changed_field(f))
            .collect();
        if !same_fields.is_empty() {
            out.push(format!("config fields {}", same_fields.join(", ")));
        }
        if let Some(h) = &m.hook {
            if !changed_script(&h.name) {
                out.push(format!("hook {}", h.name));
            }
        }
        let libs = m
            .lib
            .keys()
            .filter(|l| !changed_script(&format!("lib/{l}")))
            .count();
        if libs > 0 {
            out.push(format!("{libs} hooks lib file(s)"));
        }
        for s in m.steps.values() {
            if !changed_script(&s.name) {
                out.push(format!("step script {}", s.name));
            }
        }
        if m.nvidia.is_some()
            && !reasons
                .iter()
                .any(|r| matches!(r, Reason::Nvidia { .. } | Reason::GpuScope { .. }))
        {
            out.push("NVIDIA settings".into());
        }
        if m.parent.is_some()
            && !reasons
                .iter()
                .any(|r| matches!(r, Reason::ParentHash { .. } | Reason::ParentSwitched { .. }))
        {
            out.push("parent".into());
        }
        out
    }
}

/// One root cause of the whole plan and the nodes it forces to rebuild.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RootCause {
    pub ctid: Ctid,
    pub name: String,
    pub reasons: Vec<Reason>,
    /// Every node that rebuilds (or is held or blocked) because of it, with its action.
    pub forces: Vec<Forced>,
}

/// A node a root cause forces, and what the plan does to it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Forced {
    pub ctid: Ctid,
    pub action: String,
}

/// The plan's root causes, ranked by how many nodes each forces.
pub fn root_causes(explanations: &BTreeMap<Ctid, Explanation>) -> Vec<RootCause> {
    let mut causes: BTreeMap<Ctid, RootCause> = BTreeMap::new();
    for (&ctid, ex) in explanations {
        if let Explanation::Rebuild {
            action,
            root_causes,
            ..
        } = ex
        {
            for rc in root_causes {
                let entry = causes.entry(rc.ctid).or_insert_with(|| RootCause {
                    ctid: rc.ctid,
                    name: rc.name.clone(),
                    reasons: rc.reasons.clone(),
                    forces: Vec::new(),
                });
                entry.forces.push(Forced {
                    ctid,
                    action: action.clone(),
                });
            }
        }
    }
    let mut out: Vec<RootCause> = causes.into_values().collect();
    out.sort_by(|a, b| {
        b.forces
            .len()
            .cmp(&a.forces.len())
            .then(a.ctid.cmp(&b.ctid))
    });
    out
}
