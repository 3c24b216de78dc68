//! Secret rotation. Secret fields (any field named like a password or a token, at any
//! depth of a block: [`is_secret_field`]) stay out of the node's hash, so that rotating a
//! token rebuilds nothing. They stay in sight all the same: when a node's setup hook has
//! run with them, each field's value is kept as a keyed digest (blake3 keyed by a random
//! key that never leaves the state directory, over the CTID, the field and its value), and
//! a later plan compares the config's fields with those digests. A field that differs is
//! shown by name, never by value, and delivered by running the node's setup hook again on
//! the live CT.
//!
//! Pure: the key and the digests kept are passed in.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::fleet::config::{is_secret_field, Ctid};
use crate::fleet::Fleet;

/// The key the digests are made with: 32 random bytes.
#[derive(Clone)]
pub struct Key(pub [u8; 32]);

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Key(…)")
    }
}

/// Field path (`hf_token`, `vllm.hf_token`, `accounts[1].password`) → hex keyed digest.
pub type Digests = BTreeMap<String, String>;

/// The secret fields of a block, by path, at any depth: a secret-named member is taken
/// whole (whatever its type), and not looked into.
pub fn fields(
    block: &serde_json::Map<String, serde_json::Value>,
) -> BTreeMap<String, &serde_json::Value> {
    fn walk<'a>(
        path: &str,
        v: &'a serde_json::Value,
        out: &mut BTreeMap<String, &'a serde_json::Value>,
    ) {
        match v {
            serde_json::Value::Object(m) => {
                for (k, v) in m {
                    let p = if path.is_empty() {
                        k.clone()
                    } else {
                        format!("{path}.{k}")
                    };
                    if is_secret_field(k) {
                        out.insert(p, v);
                    } else {
                        walk(&p, v, out);
                    }
                }
            }
            serde_json::Value::Array(items) => {
                for (i, v) in items.iter().enumerate() {
                    walk(&format!("{path}[{i}]"), v, out);
                }
            }
            _ => {}
        }
    }
    let mut out = BTreeMap::new();
    for (k, v) in block {
        if is_secret_field(k) {
            out.insert(k.clone(), v);
        } else {
            walk(k, v, &mut out);
        }
    }
    out
}

/// The JSON pointer, within its block, of a field path from [`fields`].
pub fn pointer(field: &str) -> String {
    let mut out = String::new();
    for part in field.split('.') {
        let (name, indices) = part.split_once('[').unwrap_or((part, ""));
        out.push('/');
        out.push_str(&name.replace('~', "~0").replace('/', "~1"));
        for i in indices.split('[') {
            if let Some(i) = i.strip_suffix(']') {
                out.push('/');
                out.push_str(i);
            }
        }
    }
    out
}

/// The keyed digests of a block's secret fields. The CTID is part of each digest, so
/// two nodes with the same token cannot be told apart by their digests.
pub fn digests(
    key: &Key,
    ctid: Ctid,
    block: &serde_json::Map<String, serde_json::Value>,
) -> Digests {
    fields(block)
        .into_iter()
        .map(|(path, value)| {
            let mut h = blake3::Hasher::new_keyed(&key.0);
            h.update(&ctid.to_le_bytes());
            h.update(path.as_bytes());
            h.update(&[0]);
            h.update(crate::engine::canon::to_string(value).as_bytes());
            (path, h.finalize().to_hex().to_string())
        })
        .collect()
}

/// How a secret field differs from what its node's hook last ran with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Rotation {
    /// Its value changed.
    Changed,
    /// The field is new.
    Added,
    /// The field is gone from the block.
    Removed,
    /// phoenix has no record of what the hook ran with (built by an older phoenix, or the
    /// state directory was lost): delivered to be sure.
    Unrecorded,
}

impl Rotation {
    pub fn name(self) -> &'static str {
        match self {
            Rotation::Changed => "changed",
            Rotation::Added => "added",
            Rotation::Removed => "removed",
            Rotation::Unrecorded => "not on record",
        }
    }
}

/// A secret field to deliver again, by name.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rotated {
    pub field: String,
    pub change: Rotation,
}

/// Every node whose setup hook must run again to deliver its secrets, with the fields.
/// `kept`: the digests a node's hook last ran with, if recorded. Without a key nothing
/// was ever recorded. Nodes without a setup hook have nothing that delivers a secret.
pub fn rotations(
    fleet: &Fleet,
    key: Option<&Key>,
    kept: impl Fn(Ctid) -> Option<Digests>,
) -> BTreeMap<Ctid, Vec<Rotated>> {
    let mut out = BTreeMap::new();
    for (&ctid, node) in &fleet.nodes {
        if !fleet.hooks.node_hooks.contains_key(&ctid) {
            continue;
        }
        let r = match key {
            Some(key) => rotated(&digests(key, ctid, &node.block), kept(ctid).as_ref()),
            None => fields(&node.block)
                .into_keys()
                .map(|field| Rotated {
                    field,
                    change: Rotation::Unrecorded,
                })
                .collect(),
        };
        if !r.is_empty() {
            out.insert(ctid, r);
        }
    }
    out
}

/// The fields of `now` that differ from `kept`, the digests the node's hook last ran
/// with (`None`: no record).
pub fn rotated(now: &Digests, kept: Option<&Digests>) -> Vec<Rotated> {
    let Some(kept) = kept else {
        return now
            .keys()
            .map(|field| Rotated {
                field: field.clone(),
                change: Rotation::Unrecorded,
            })
            .collect();
    };
    let mut out: Vec<Rotated> = Vec::new();
    for (field, digest) in now {
        let change = match kept.get(field) {
            None => Rotation::Added,
            Some(d) if d != digest => Rotation::Changed,
            Some(_) => continue,
        };
        out.push(Rotated {
            field: field.clone(),
            change,
        });
    }
    for field in kept.keys().filter(|f| !now.contains_key(*f)) {
        out.push(Rotated {
            field: field.clone(),
            change: Rotation::Removed,
        });
    }
    out.sort_by(|a, b| a.field.cmp(&b.field));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn block(v: serde_json::Value) -> serde_json::Map<String, serde_json::Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn fields_are_found_at_any_depth_and_taken_whole() {
        let b = block(json!({
            "name": "x",
            "hf_token": "hf_abc",
            "vllm": {"api_key": "k", "model": "m"},
            "accounts": [{"user": "a", "password": "p"}],
            "secrets": {"a": 1}
        }));
        let names: Vec<String> = fields(&b).into_keys().collect();
        assert_eq!(
            names,
            [
                "accounts[0].password",
                "hf_token",
                "secrets",
                "vllm.api_key"
            ]
        );
    }

    #[test]
    fn field_paths_become_pointers() {
        assert_eq!(pointer("hf_token"), "/hf_token");
        assert_eq!(pointer("vllm.api_key"), "/vllm/api_key");
        assert_eq!(pointer("accounts[0].password"), "/accounts/0/password");
        assert_eq!(pointer("a[1][2]"), "/a/1/2");
    }

    #[test]
    fn digests_depend_on_key_ctid_field_and_value_and_never_show_it() {
        let k = Key([7; 32]);
        let b = block(json!({"hf_token": "hf_abcdef"}));
        let d = digests(&k, 950, &b);
        assert!(!d["hf_token"].contains("hf_abcdef"));
        assert_eq!(d, digests(&k, 950, &b));
        assert_ne!(d, digests(&Key([8; 32]), 950, &b));
        assert_ne!(d, digests(&k, 951, &b));
        assert_ne!(
            d,
            digests(&k, 950, &block(json!({"hf_token": "hf_abcdeg"})))
        );
    }

    #[test]
    fn rotation_is_told_per_field() {
        let kept: Digests = [("a".into(), "1".into()), ("b".into(), "2".into())].into();
        let now: Digests = [("a".into(), "1".into()), ("c".into(), "3".into())].into();
        let r = rotated(&now, Some(&kept));
        assert_eq!(
            r,
            [
                Rotated {
                    field: "b".into(),
                    change: Rotation::Removed
                },
                Rotated {
                    field: "c".into(),
                    change: Rotation::Added
                }
            ]
        );
        assert!(rotated(&kept, Some(&kept)).is_empty());
        assert_eq!(rotated(&now, None).len(), 2);
        assert!(rotated(&Digests::new(), None).is_empty());
    }
}
