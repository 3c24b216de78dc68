//! Where a CT's network leads, checked before any CT is made: the bridge a node's
//! `network_config` names must exist, be up, and lead somewhere, or the CT's first
//! download waits until the hook timeout instead of failing.
//!
//! | the bridge has | a CT on it | preflight |
//! |---|---|---|
//! | an address of the host's, the CT's `gw` among them | is routed by the host | forwarding must be on (`net.ipv4.ip_forward`); NAT is the admin's (README) |
//! | an address of the host's, `gw` another address in its network | reaches that router | ok |
//! | addresses, `gw` in none of their networks | cannot reach its gateway | refused |
//! | no address, a port that is not a CT's veth (an uplink) | is on that network, as a VM on a Proxmox bridge | ok |
//! | no address, no uplink | reaches nothing beyond the bridge | refused |
//!
//! Read with iproute2's `ip -j` (argument vectors, JSON out).

use std::net::Ipv4Addr;
use std::path::Path;

use crate::host::Network;

/// What phoenix needs to know of a host bridge.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Bridge {
    pub up: bool,
    /// The host's IPv4 addresses on it, with their prefix length.
    pub addrs: Vec<(Ipv4Addr, u8)>,
    /// Its ports that are not veths (physical NICs, bonds, VLANs).
    pub uplinks: Vec<String>,
}

/// The bridge `name`, or `None` when the host has no bridge of that name.
pub fn read(name: &str) -> Result<Option<Bridge>, String> {
    if !Path::new("/sys/class/net")
        .join(name)
        .join("bridge")
        .is_dir()
    {
        return Ok(None);
    }
    let link = ip(&["link", "show", "dev", name])?;
    let addrs = ip(&["-4", "addr", "show", "dev", name])?;
    let ports = ip(&["-d", "link", "show", "master", name])?;
    Ok(Some(parse(&link, &addrs, &ports)))
}

/// `ip -j <args>`'s JSON.
fn ip(args: &[&str]) -> Result<serde_json::Value, String> {
    let out = crate::os::host_command("ip")
        .arg("-j")
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| {
            format!("cannot run `ip` to read the host's bridges ({e}): install Debian's `iproute2` package")
        })?;
    if !out.status.success() {
        return Err(format!(
            "`ip -j {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    // `ip` prints nothing at all for an empty list on some versions.
    if out.stdout.iter().all(u8::is_ascii_whitespace) {
        return Ok(serde_json::Value::Array(Vec::new()));
    }
    serde_json::from_slice(&out.stdout)
        .map_err(|e| format!("cannot read `ip -j {}`: {e}", args.join(" ")))
}

/// A bridge from `ip -j link show dev`, `ip -j -4 addr show dev` and `ip -j -d link show
/// master` of it.
pub fn parse(
    link: &serde_json::Value,
    addrs: &serde_json::Value,
    ports: &serde_json::Value,
) -> Bridge {
    let list = |v: &serde_json::Value| v.as_array().cloned().unwrap_or_default();
    let up = list(link).iter().any(|l| {
        l["flags"]
            .as_array()
            .is_some_and(|f| f.iter().any(|f| f == "UP"))
    });
    let addrs = list(addrs)
        .iter()
        .flat_map(|l| list(&l["addr_info"]))
        .filter(|a| a["family"] == "inet")
        .filter_map(|a| {
            let ip = a["local"].as_str()?.parse().ok()?;
            let len = u8::try_from(a["prefixlen"].as_u64()?).ok()?;
            Some((ip, len))
        })
        .collect();
    let uplinks = list(ports)
        .iter()
        .filter(|p| p["linkinfo"]["info_kind"] != "veth")
        .filter_map(|p| p["ifname"].as_str().map(str::to_string))
        .collect();
    Bridge { up, addrs, uplinks }
}

/// Why a CT with `net` on `bridge` would reach nothing, if it would; `forwarding` is the
/// host's `net.ipv4.ip_forward`.
pub fn problems(bridge: &Bridge, net: &Network, forwarding: bool) -> Vec<String> {
    let name = &net.bridge;
    let mut out = Vec::new();
    if !bridge.up {
        out.push(format!(
            "bridge `{name}` is down: a CT on it reaches nothing. Bring it up (`ip link set {name} up`)"
        ));
    }
    let gw: Option<Ipv4Addr> = net.gw.as_deref().and_then(|g| g.parse().ok());
    let prefix: Option<u8> = net.ip.split_once('/').and_then(|(_, len)| len.parse().ok());
    let shown: Vec<String> = bridge
        .addrs
        .iter()
        .map(|(a, len)| format!("{a}/{len}"))
        .collect();
    if bridge.addrs.is_empty() {
        if bridge.uplinks.is_empty() {
            let give = match (gw, prefix) {
                (Some(g), Some(len)) => format!("`ip addr add {g}/{len} dev {name}`"),
                _ => format!("an address on `{name}`"),
            };
            out.push(format!(
                "bridge `{name}` has no IPv4 address and no uplink (no port but CTs' veths): a CT on it reaches nothing beyond it, and its first download would wait until the hook timeout. Make the host the CTs' gateway: {give} with forwarding and NAT (`scripts/lxc-host-setup` does all three; README, \"Running phoenix with plain LXC\"), or use lxc-net's `lxcbr0`"
            ));
        }
        return out;
    }
    if let Some(g) = gw {
        let on_link = bridge.addrs.iter().any(|&(a, len)| same_net(a, g, len));
        let host_is_gw = bridge.addrs.iter().any(|&(a, _)| a == g);
        if !on_link {
            out.push(format!(
                "the CT's gateway {g} is in none of bridge `{name}`'s networks ({}): it could not reach it. Set network_config.gw to an address there, or add {g}/{} to `{name}`",
                shown.join(", "),
                prefix.unwrap_or(24)
            ));
        } else if host_is_gw && !forwarding {
            out.push(format!(
                "the host is the CT's gateway ({g} on `{name}`) but does not forward (net.ipv4.ip_forward is 0): CTs would reach only the host. Turn it on (`sysctl -w net.ipv4.ip_forward=1`) and NAT the bridge's network out (`scripts/lxc-host-setup` does both)"
            ));
        }
    }
    out
}

fn same_net(a: Ipv4Addr, b: Ipv4Addr, len: u8) -> bool {
    let mask = u32::MAX
        .checked_shl(32 - u32::from(len.min(32)))
        .unwrap_or(0);
    u32::from(a) & mask == u32::from(b) & mask
}

/// `net.ipv4.ip_forward` of the host.
pub fn forwarding() -> bool {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").is_ok_and(|v| v.trim() == "1")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn net(ip: &str, gw: Option<&str>) -> Network {
        Network {
            name: "eth0".into(),
            bridge: "vmbr0".into(),
            ip: ip.into(),
            gw: gw.map(str::to_string),
            mac: None,
        }
    }

    #[test]
    fn ip_json_becomes_a_bridge() {
        let link =
            json!([{"ifname": "vmbr0", "flags": ["BROADCAST", "MULTICAST", "UP", "LOWER_UP"]}]);
        let addrs = json!([{"ifname": "vmbr0", "addr_info": [
            {"family": "inet", "local": "10.0.0.1", "prefixlen": 24},
            {"family": "inet6", "local": "fe80::1", "prefixlen": 64}
        ]}]);
        let ports = json!([
            {"ifname": "vethAbC123", "linkinfo": {"info_kind": "veth"}},
            {"ifname": "eno1"}
        ]);
        assert_eq!(
            parse(&link, &addrs, &ports),
            Bridge {
                up: true,
                addrs: vec![("10.0.0.1".parse().unwrap(), 24)],
                uplinks: vec!["eno1".into()],
            }
        );
        // A new bridge: down, no address (`ip` lists it not at all under -4), no port.
        let bare = parse(
            &json!([{"ifname": "vmbr0", "flags": ["BROADCAST", "MULTICAST"]}]),
            &json!([]),
            &json!([]),
        );
        assert_eq!(bare, Bridge::default());
    }

    #[test]
    fn a_bridge_that_leads_nowhere_is_a_problem_and_says_what_to_do() {
        let n = net("10.0.0.200/24", Some("10.0.0.1"));
        let p = problems(&Bridge::default(), &n, true);
        assert_eq!(p.len(), 2, "{p:?}");
        assert!(p[0].contains("`ip link set vmbr0 up`"), "{}", p[0]);
        assert!(
            p[1].contains("bridge `vmbr0` has no IPv4 address and no uplink")
                && p[1].contains("`ip addr add 10.0.0.1/24 dev vmbr0`")
                && p[1].contains("scripts/lxc-host-setup"),
            "{}",
            p[1]
        );
        // An uplink without an address: the CT is on that network.
        let uplink = Bridge {
            up: true,
            uplinks: vec!["eno1".into()],
            ..Bridge::default()
        };
        assert!(problems(&uplink, &n, false).is_empty());
    }

    #[test]
    fn the_gateway_must_be_on_the_bridge_and_a_host_gateway_must_forward() {
        let host_gw = Bridge {
            up: true,
            addrs: vec![("10.0.0.1".parse().unwrap(), 24)],
            uplinks: vec![],
        };
        let n = net("10.0.0.200/24", Some("10.0.0.1"));
        assert!(problems(&host_gw, &n, true).is_empty());
        let p = problems(&host_gw, &n, false);
        assert!(
            p.len() == 1 && p[0].contains("net.ipv4.ip_forward is 0"),
            "{p:?}"
        );
        // Another router on the bridge's network: not the host's to forward.
        assert!(problems(&host_gw, &net("10.0.0.200/24", Some("10.0.0.254")), false).is_empty());
        let p = problems(&host_gw, &net("192.168.1.5/24", Some("192.168.1.1")), true);
        assert!(
            p.len() == 1
                && p[0].contains(
                    "gateway 192.168.1.1 is in none of bridge `vmbr0`'s networks (10.0.0.1/24)"
                ),
            "{p:?}"
        );
        // DHCP, or no gateway: the bridge's address is enough.
        assert!(problems(&host_gw, &net("dhcp", None), false).is_empty());
        assert!(same_net(
            "10.1.2.3".parse().unwrap(),
            "10.200.0.1".parse().unwrap(),
            8
        ));
        assert!(!same_net(
            "10.1.2.3".parse().unwrap(),
            "10.200.0.1".parse().unwrap(),
            16
        ));
        assert!(same_net(
            "1.2.3.4".parse().unwrap(),
            "5.6.7.8".parse().unwrap(),
            0
        ));
    }
}
