//! GPU passthrough for a node: which host devices go into its CT. Device majors are read
//! from the host's `/proc/devices`, never assumed; the backend writes them in its own
//! format.

use crate::fleet::config::Node;
use crate::host::{HostFacts, Passthrough};

/// The host devices a node's GPUs need.
pub fn passthrough(node: &Node, facts: &HostFacts) -> Result<Passthrough, String> {
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
    for g in node.gpus() {
        let dev = format!("/dev/nvidia{g}");
        if !facts.nvidia_devices.contains(&dev) {
            return Err(format!(
                "CT {} is assigned GPU {g}, but the host has no {dev}",
                node.ctid
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
