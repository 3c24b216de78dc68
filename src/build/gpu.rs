//! GPU passthrough for a node: which host devices go into its CT. Device majors are read
//! from the host's `/proc/devices`, never assumed; the backend writes them in its own
//! format.

use crate::fleet::config::{Ctid, Node};
use crate::host::{HostFacts, Passthrough};

/// The host devices a node's GPUs need.
pub fn passthrough(node: &Node, facts: &HostFacts) -> Result<Passthrough, String> {
    devices(node.ctid, &node.gpus(), facts)
}

/// The host devices that GPUs `gpus` of CT `ctid` need, from the host's facts.
fn devices(ctid: Ctid, gpus: &[u32], facts: &HostFacts) -> Result<Passthrough, String> {
    let major = |names: &[&str]| {
        names
            .iter()
            .find_map(|n| facts.char_majors.get(*n).copied())
    };
    let nvidia = major(&["nvidia-frontend", "nvidia"]).ok_or(
        "the host's /proc/devices lists no `nvidia` character device: is the NVIDIA driver loaded?",
    )?;
    let uvm = major(&["nvidia-uvm"]).ok_or(
        "the host's /proc/devices lists no `nvidia-uvm` device: load it with `modprobe nvidia-uvm`",
    )?;
    let mut p = Passthrough {
        char_majors: vec![nvidia, uvm],
        nodes: Vec::new(),
    };
    p.char_majors.extend(major(&["nvidia-caps"]));
    for &g in gpus {
        let dev = format!("/dev/nvidia{g}");
        if !facts.nvidia_devices.contains(&dev) {
            return Err(format!(
                "CT {ctid} is assigned GPU {g}, but the host has no {dev}"
            ));
        }
        p.nodes.push(dev);
    }
    for d in [
        "/dev/nvidiactl",
        "/dev/nvidia-uvm",
        "/dev/nvidia-uvm-tools",
        "/dev/nvidia-modeset",
    ] {
        if facts.nvidia_devices.iter().any(|x| x == d) {
            p.nodes.push(d.to_string());
        }
    }
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    /// The facts of a real H200 host (driver 580.159.04, `tests/fixtures/host/h200/`): its
    /// `/proc/devices` names the frontend `nvidia`, not `nvidia-frontend`, and its
    /// `/dev` holds `nvidia-caps/` but no `nvidia-modeset`.
    #[test]
    fn an_h200_hosts_devices() {
        let t = tempfile::tempdir().unwrap();
        let fixture = |name: &str| {
            fs::read_to_string(
                std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                    .join("tests/fixtures/host/h200")
                    .join(name),
            )
            .unwrap()
        };
        fs::create_dir_all(t.path().join("proc/driver/nvidia")).unwrap();
        fs::create_dir_all(t.path().join("dev")).unwrap();
        fs::write(
            t.path().join("proc/driver/nvidia/version"),
            fixture("proc-driver-nvidia-version.txt"),
        )
        .unwrap();
        fs::write(t.path().join("proc/devices"), fixture("proc-devices.txt")).unwrap();
        // The device nodes `ls -l /dev/nvidia*` listed there, as names.
        for line in fixture("ls-l-dev-nvidia.txt").lines() {
            if let Some(dev) = line
                .split_whitespace()
                .last()
                .filter(|w| w.starts_with("/dev/"))
            {
                fs::write(t.path().join(dev.trim_start_matches('/')), "").unwrap();
            }
        }
        fs::create_dir_all(t.path().join("dev/nvidia-caps")).unwrap();
        let facts = HostFacts::read(t.path()).unwrap();
        assert_eq!(facts.nvidia_driver.as_deref(), Some("580.159.04"));
        let p = devices(950, &[0], &facts).unwrap();
        assert_eq!(p.char_majors, vec![195, 238, 241]);
        assert_eq!(
            p.nodes,
            [
                "/dev/nvidia0",
                "/dev/nvidiactl",
                "/dev/nvidia-uvm",
                "/dev/nvidia-uvm-tools"
            ]
        );
        let e = devices(950, &[0, 1], &facts).unwrap_err();
        assert_eq!(
            e,
            "CT 950 is assigned GPU 1, but the host has no /dev/nvidia1"
        );
    }
}
