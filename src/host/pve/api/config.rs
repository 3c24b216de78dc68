//! The API's answers as Proxmox's config file, so that the one mapping
//! ([`map`](crate::host::pve::map)) reads a CT the same whether its config came from
//! `/etc/pve` or over HTTPS.
//!
//! `GET …/lxc/<vmid>/config` answers the main section as an object: every key with its
//! value (integers as numbers), `description` decoded, raw `lxc.*` entries as `lxc: [[key,
//! value], ...]`, and `digest`, the SHA-1 of the file [A-CFG vm_config]. `GET
//! …/snapshot` lists each snapshot's `name`, `description`, `snaptime` and `parent`, and
//! last `current`, with the live state's `parent`, `running` and `digest` [A-SNAP list].

use serde_json::{Map, Value};

use crate::host::pve::conf::{ConfFile, Section};

/// A CT's config as read through the API.
#[derive(Clone, Debug)]
pub struct ApiConfig {
    pub conf: ConfFile,
    /// The SHA-1 of the config file when read: a write with it is refused if the file
    /// changed since.
    pub digest: Option<String>,
    /// From the snapshot list's `current` entry.
    pub running: Option<bool>,
}

/// A JSON scalar as the config file writes it.
fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(if *b { "1" } else { "0" }.into()),
        _ => None,
    }
}

/// The config (`GET …/config`) and snapshot list (`GET …/snapshot`, when read) as a
/// config file. Keys that could not be written to a file (a value with a line break)
/// are an error: Proxmox never writes one.
pub fn from_api(config: &Value, snapshots: Option<&Value>) -> Result<ApiConfig, String> {
    let obj = config
        .as_object()
        .ok_or_else(|| format!("the config is {}, not an object", kind(config)))?;
    let mut conf = ConfFile::new();
    write_section(conf.main_mut(), obj)?;
    let digest = obj
        .get("digest")
        .and_then(Value::as_str)
        .map(str::to_string);
    let mut running = None;
    if let Some(list) = snapshots {
        let items = list
            .as_array()
            .ok_or_else(|| format!("the snapshot list is {}, not an array", kind(list)))?;
        let mut snaps: Vec<(String, Section, u64, Option<String>)> = Vec::new();
        for item in items {
            let Some(name) = item.get("name").and_then(Value::as_str) else {
                continue;
            };
            let parent = item.get("parent").and_then(scalar);
            if name == "current" {
                running = item.get("running").and_then(scalar).map(|r| r == "1");
                if let Some(p) = &parent {
                    conf.main_mut()
                        .try_set("parent", p)
                        .map_err(|e| e.to_string())?;
                }
                continue;
            }
            let mut s = Section::new();
            let snaptime = item.get("snaptime").and_then(Value::as_u64).unwrap_or(0);
            s.try_set("snaptime", &snaptime.to_string())
                .map_err(|e| e.to_string())?;
            if let Some(p) = &parent {
                s.try_set("parent", p).map_err(|e| e.to_string())?;
            }
            let d = item
                .get("description")
                .and_then(Value::as_str)
                .unwrap_or("");
            s.set_description(d.trim_end_matches('\n'));
            snaps.push((name.to_string(), s, snaptime, parent));
        }
        for (name, section, _, _) in in_lineage_order(snaps) {
            conf.try_add_snapshot(&name, section)
                .map_err(|e| format!("snapshot '{name}': {e}"))?;
        }
    }
    Ok(ApiConfig {
        conf,
        digest,
        running,
    })
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn write_section(section: &mut Section, obj: &Map<String, Value>) -> Result<(), String> {
    for (k, v) in obj {
        match k.as_str() {
            "digest" => {}
            "description" => {
                section.set_description(v.as_str().unwrap_or_default().trim_end_matches('\n'))
            }
            "lxc" => {
                for pair in v.as_array().into_iter().flatten() {
                    if let (Some(lk), Some(lv)) = (
                        pair.get(0).and_then(Value::as_str),
                        pair.get(1).and_then(scalar),
                    ) {
                        section
                            .try_push_lxc(lk, &lv)
                            .map_err(|e| format!("{lk}: {e}"))?;
                    }
                }
            }
            _ => {
                if let Some(value) = scalar(v) {
                    section
                        .try_set(k, &value)
                        .map_err(|e| format!("{k}: {e}"))?;
                }
            }
        }
    }
    Ok(())
}

/// Snapshots with each parent before its children (the API lists them unordered),
/// siblings by time then name.
fn in_lineage_order(
    mut snaps: Vec<(String, Section, u64, Option<String>)>,
) -> Vec<(String, Section, u64, Option<String>)> {
    snaps.sort_by(|a, b| (a.2, &a.0).cmp(&(b.2, &b.0)));
    let mut out: Vec<(String, Section, u64, Option<String>)> = Vec::new();
    while !snaps.is_empty() {
        let placed: Vec<String> = out.iter().map(|s| s.0.clone()).collect();
        let known: Vec<String> = snaps.iter().map(|s| s.0.clone()).collect();
        let ready = snaps.iter().position(|s| match &s.3 {
            None => true,
            Some(p) => placed.contains(p) || !known.contains(p),
        });
        // A cycle (never written by Proxmox) is broken by time.
        out.push(snaps.remove(ready.unwrap_or(0)));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::pve::map;
    use serde_json::json;

    #[test]
    fn an_api_config_reads_as_its_file_would() {
        let config = json!({
            "arch": "amd64", "cores": 2, "memory": 2048, "hostname": "web",
            "net0": "name=eth0,bridge=vmbr0,hwaddr=BC:24:11:00:00:01,ip=dhcp,type=veth",
            "rootfs": "local-zfs:subvol-900-disk-0,size=8G", "tags": "phoenix",
            "unprivileged": 1, "description": "Managed by phoenix\n",
            "lxc": [["lxc.apparmor.profile", "unconfined"]],
            "digest": "0123456789abcdef0123456789abcdef01234567"
        });
        let snaps = json!([
            {"name": "s2", "snaptime": 1700000100, "description": "second", "parent": "s1"},
            {"name": "current", "description": "You are here!", "parent": "s2", "running": 1,
             "digest": "0123456789abcdef0123456789abcdef01234567"},
            {"name": "s1", "snaptime": 1700000100, "description": "first\n"}
        ]);
        let c = from_api(&config, Some(&snaps)).unwrap();
        assert_eq!(
            c.digest.as_deref(),
            Some("0123456789abcdef0123456789abcdef01234567")
        );
        assert_eq!(c.running, Some(true));
        let ct = map::ct_info(900, &c.conf, true);
        assert!(ct.is_managed());
        assert_eq!(ct.settings.memory_mb, Some(2048));
        assert_eq!(ct.disk_gb, Some(8));
        assert!(ct.unprivileged);
        assert_eq!(ct.parent_snapshot.as_deref(), Some("s2"));
        let names: Vec<&str> = ct.snapshots.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(
            names,
            ["s1", "s2"],
            "a parent before its child, whatever the time"
        );
        assert_eq!(ct.snapshots[0].description, "first");
        assert_eq!(c.conf.main().lxc().count(), 1);
    }
}
