//! Proxmox *property strings* and disk sizes as values: parsing and printing the
//! comma-separated `key=value` strings stored in CT config keys, and PVE's size notation.
//! This module owns those string formats and nothing else (the file around them is
//! [`conf`](super::conf)).
//!
//! | config key | type | printed as (Proxmox's order) |
//! |---|---|---|
//! | `netN` | [`NetConf`] | `name=eth0,bridge=vmbr0,firewall=1,gw=..,hwaddr=BC:24:11:..,ip=..,type=veth` |
//! | `rootfs`, `mpN` | [`MountPoint`] | `local-zfs:subvol-100-disk-1,mp=/data,backup=1,size=16G` |
//! | `features` | [`Features`] | `fuse=1,keyctl=1,mount=nfs;cifs,nesting=1` |
//! | `devN` | [`DevConf`] | `/dev/nvidia0,gid=44,mode=0666` |
//! | `tags` | [`Tags`] | `gpu;phoenix` |
//! | `delete` (in `[pve:pending]`) | [`PendingDelete`] | `!mp0,nameserver,swap` |
//! | `size=` | [`parse_size`] / [`format_size`] | `8G`, `1536M`, `1T`, `4095` |
//!
//! The print order of every property string is the one of pve-common's
//! `print_property_string`: the schema's *default key* first (value only, no `key=`),
//! then the *required* keys (sorted), then every other key sorted by byte order. Keys
//! this module does not model are kept in an `other` map and printed sorted among the
//! rest (Proxmox itself would refuse them; keeping them lets newer PVE keys survive).
//!
//! Parsing follows `parse_property_string`: parts split on `,`, blank parts skipped, a
//! part without `=` is the default key's value, boolean keys accept `1|on|yes|true` /
//! `0|off|no|false` (any case) and are stored as `1`/`0`.

use std::collections::BTreeMap;
use std::fmt;

use thiserror::Error;

use crate::host::Ctid;

/// A new MAC in Proxmox's default `BC:24:11` range [DCC], different at every call.
pub fn new_mac(ctid: Ctid) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let h = blake3::hash(format!("{ctid}:{n}:{nanos}:{}", std::process::id()).as_bytes());
    let b = h.as_bytes();
    format!("BC:24:11:{:02X}:{:02X}:{:02X}", b[0], b[1], b[2])
}

/// A property string that does not read. The texts are Proxmox's own where it has one
/// (pve-common src/PVE/JSONSchema.pm parse_property_string, check_object).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PropError {
    #[error("duplicate key in comma-separated list property: {0}")]
    DuplicateKey(String),
    #[error("value without key, but schema does not define a default key")]
    NoDefaultKey,
    #[error("missing key in comma-separated list property")]
    MissingKey,
    #[error("{0}: property is missing and it is not optional")]
    Required(&'static str),
    #[error("{key}: type check ('{kind}') failed - got '{value}'")]
    Type {
        key: String,
        kind: &'static str,
        value: String,
    },
    #[error("invalid size: {0}")]
    Size(String),
}

// ---------------------------------------------------------------------------------
// Sizes
// ---------------------------------------------------------------------------------

pub const KIB: u64 = 1 << 10;
pub const MIB: u64 = 1 << 20;
pub const GIB: u64 = 1 << 30;
pub const TIB: u64 = 1 << 40;

/// A size as PVE reads it: `\d+(\.\d+)?` with an optional unit `K M G T` or
/// `KiB MiB GiB TiB` (case-sensitive, binary multiples), no unit = bytes; fractions are
/// truncated to whole bytes. `None` when it does not read or does not fit in a `u64`.
///
/// Perl computes in floating point; this computes exactly, which gives the same result
/// for every realistic value (`1.5G`, `0.25T`, `512M`).
// pve-common src/PVE/JSONSchema.pm parse_size
pub fn parse_size(text: &str) -> Option<u64> {
    let digits_end = text
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(digits_end);
    let mult = match unit {
        "" => 1,
        "K" | "KiB" => KIB,
        "M" | "MiB" => MIB,
        "G" | "GiB" => GIB,
        "T" | "TiB" => TIB,
        _ => return None,
    };
    decimal_times(number, mult)
}

/// `floor(number * mult)` for a decimal `\d+(\.\d+)?`, exactly.
fn decimal_times(number: &str, mult: u64) -> Option<u64> {
    let (int, frac) = match number.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (number, None),
    };
    if int.is_empty() || !int.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut total: u128 = int.parse::<u128>().ok()?.checked_mul(u128::from(mult))?;
    if let Some(frac) = frac {
        if frac.is_empty() || !frac.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        // 30 digits are far beyond what Perl's doubles resolve; more would overflow.
        let frac = &frac[..frac.len().min(30)];
        let scale = 10u128.pow(frac.len() as u32);
        let f: u128 = frac.parse().ok()?;
        total = total.checked_add(f * u128::from(mult) / scale)?;
    }
    u64::try_from(total).ok()
}

/// A size as PVE prints it: the largest of `T G M K` that divides it exactly, else plain
/// bytes. Note `0` prints as `0T`, as in Perl.
// pve-common src/PVE/JSONSchema.pm format_size
pub fn format_size(bytes: u64) -> String {
    if !bytes.is_multiple_of(KIB) {
        return bytes.to_string();
    }
    let kb = bytes / KIB;
    if !kb.is_multiple_of(1024) {
        return format!("{kb}K");
    }
    let mb = kb / 1024;
    if !mb.is_multiple_of(1024) {
        return format!("{mb}M");
    }
    let gb = mb / 1024;
    if !gb.is_multiple_of(1024) {
        return format!("{gb}G");
    }
    format!("{}T", gb / 1024)
}

/// Whole GiB, rounded up (`1536M` → 2).
pub fn size_gib_ceil(bytes: u64) -> u64 {
    bytes.div_ceil(GIB)
}

/// A new-volume request `STORAGE:SIZE_IN_GiB` (as in `pct create --rootfs local-zfs:8`
/// or `pct set --mp0 local-zfs:0.5,mp=/x`): the storage and the size in bytes that
/// Proxmox allocates, which is the GiB value truncated to whole MiB.
// pve-container src/PVE/LXC.pm $NEW_DISK_RE, create_disks (size_kb = int(gb * 1024) * 1024)
pub fn new_disk_request(volume: &str) -> Option<(&str, u64)> {
    let (storage, size) = volume.split_once(':')?;
    if storage.is_empty() || storage.contains(|c: char| c.is_ascii_whitespace()) {
        return None;
    }
    let mib = decimal_times(size, 1024)?;
    Some((storage, mib.checked_mul(MIB)?))
}

// ---------------------------------------------------------------------------------
// The generic property-string reader and printer
// ---------------------------------------------------------------------------------

/// PVE's boolean words.
// pve-common src/PVE/JSONSchema.pm parse_boolean
pub fn parse_boolean(text: &str) -> Option<bool> {
    const TRUE: [&str; 4] = ["1", "on", "yes", "true"];
    const FALSE: [&str; 4] = ["0", "off", "no", "false"];
    if TRUE.iter().any(|t| t.eq_ignore_ascii_case(text)) {
        Some(true)
    } else if FALSE.iter().any(|f| f.eq_ignore_ascii_case(text)) {
        Some(false)
    } else {
        None
    }
}

fn bool_text(b: bool) -> &'static str {
    if b {
        "1"
    } else {
        "0"
    }
}

/// Splits a property string into `key → value`; a part without `=` goes under
/// `default_key`. Keys in `booleans` are normalised to `1`/`0`.
// pve-common src/PVE/JSONSchema.pm parse_property_string
fn split_props(
    data: &str,
    default_key: Option<&'static str>,
    booleans: &[&str],
) -> Result<BTreeMap<String, String>, PropError> {
    let mut res = BTreeMap::new();
    let mut saw_default = false;
    for part in data.split(',') {
        if part.trim().is_empty() {
            continue;
        }
        let (key, value) = match part.split_once('=') {
            // `^([^=]+)=(.+)$`: a key up to the first `=`, a non-empty value.
            Some((k, v)) if !k.is_empty() && !v.is_empty() => (k.to_string(), v.to_string()),
            Some(_) => return Err(PropError::MissingKey),
            None => {
                let key = default_key.ok_or(PropError::NoDefaultKey)?;
                if saw_default || res.contains_key(key) {
                    return Err(PropError::DuplicateKey(key.to_string()));
                }
                saw_default = true;
                (key.to_string(), part.to_string())
            }
        };
        if res.contains_key(&key) {
            return Err(PropError::DuplicateKey(key));
        }
        let value = if booleans.contains(&key.as_str()) {
            match parse_boolean(&value) {
                Some(b) => bool_text(b).to_string(),
                None => return Err(type_error(&key, "boolean", &value)),
            }
        } else {
            value
        };
        res.insert(key, value);
    }
    Ok(res)
}

fn type_error(key: &str, kind: &'static str, value: &str) -> PropError {
    PropError::Type {
        key: key.to_string(),
        kind,
        value: value.to_string(),
    }
}

fn take_int<T: std::str::FromStr>(
    map: &mut BTreeMap<String, String>,
    key: &str,
) -> Result<Option<T>, PropError> {
    match map.remove(key) {
        None => Ok(None),
        Some(v) => v
            .parse()
            .map(Some)
            .map_err(|_| type_error(key, "integer", &v)),
    }
}

fn take_bool(map: &mut BTreeMap<String, String>, key: &str) -> Option<bool> {
    // Already normalised to 1/0 by split_props.
    map.remove(key).map(|v| v == "1")
}

/// Prints `default` (value only), then `required` keys, then `rest` sorted.
// pve-common src/PVE/JSONSchema.pm print_property_string
fn join_props(
    f: &mut fmt::Formatter<'_>,
    default: Option<&str>,
    required: &[(&str, &str)],
    rest: &BTreeMap<String, String>,
) -> fmt::Result {
    let mut sep = "";
    if let Some(d) = default {
        f.write_str(d)?;
        sep = ",";
    }
    for (k, v) in required {
        write!(f, "{sep}{k}={v}")?;
        sep = ",";
    }
    for (k, v) in rest {
        write!(f, "{sep}{k}={v}")?;
        sep = ",";
    }
    Ok(())
}

fn put(map: &mut BTreeMap<String, String>, key: &str, value: Option<impl ToString>) {
    if let Some(v) = value {
        map.insert(key.to_string(), v.to_string());
    }
}

// ---------------------------------------------------------------------------------
// netN
// ---------------------------------------------------------------------------------

/// A `netN` value. `name` is the schema's only required key and there is no default
/// key, so it prints first and everything else sorted:
/// `name=eth0,bridge=vmbr0,firewall=1,gw=192.168.1.1,hwaddr=BC:24:11:5E:1A:2B,ip=192.168.1.50/24,type=veth`.
///
/// Not modelled (kept in `other`): `trunks`, `link_down`, `host-managed`. Values in
/// `other` override nothing: a field always wins over an `other` entry of the same key.
// pve-container src/PVE/LXC/Config.pm $netconf_desc, print_lxc_network
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetConf {
    pub name: String,
    pub bridge: Option<String>,
    pub hwaddr: Option<String>,
    /// `CIDR`, `dhcp` or `manual`.
    pub ip: Option<String>,
    pub gw: Option<String>,
    /// `CIDR`, `auto`, `dhcp` or `manual`.
    pub ip6: Option<String>,
    pub gw6: Option<String>,
    pub firewall: Option<bool>,
    /// VLAN tag, 1–4094.
    pub tag: Option<u16>,
    pub mtu: Option<u16>,
    /// Mbps; a number such as `12.5`, kept as written.
    pub rate: Option<String>,
    /// Always `veth` once Proxmox has stored it (it adds it when missing).
    pub type_: Option<String>,
    pub other: BTreeMap<String, String>,
}

const NET_BOOLEANS: &[&str] = &["firewall", "link_down", "host-managed"];

impl NetConf {
    /// An interface with only its name set.
    pub fn new(name: &str) -> NetConf {
        NetConf {
            name: name.to_string(),
            ..NetConf::default()
        }
    }

    pub fn parse(text: &str) -> Result<NetConf, PropError> {
        let mut m = split_props(text, None, NET_BOOLEANS)?;
        let name = m.remove("name").ok_or(PropError::Required("name"))?;
        Ok(NetConf {
            name,
            bridge: m.remove("bridge"),
            hwaddr: m.remove("hwaddr"),
            ip: m.remove("ip"),
            gw: m.remove("gw"),
            ip6: m.remove("ip6"),
            gw6: m.remove("gw6"),
            firewall: take_bool(&mut m, "firewall"),
            tag: take_int(&mut m, "tag")?,
            mtu: take_int(&mut m, "mtu")?,
            rate: m.remove("rate"),
            type_: m.remove("type"),
            other: m,
        })
    }
}

impl fmt::Display for NetConf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut rest = self.other.clone();
        rest.remove("name");
        put(&mut rest, "bridge", self.bridge.as_ref());
        put(&mut rest, "hwaddr", self.hwaddr.as_ref());
        put(&mut rest, "ip", self.ip.as_ref());
        put(&mut rest, "gw", self.gw.as_ref());
        put(&mut rest, "ip6", self.ip6.as_ref());
        put(&mut rest, "gw6", self.gw6.as_ref());
        put(&mut rest, "firewall", self.firewall.map(bool_text));
        put(&mut rest, "tag", self.tag);
        put(&mut rest, "mtu", self.mtu);
        put(&mut rest, "rate", self.rate.as_ref());
        put(&mut rest, "type", self.type_.as_ref());
        join_props(f, None, &[("name", &self.name)], &rest)
    }
}

// ---------------------------------------------------------------------------------
// rootfs / mpN
// ---------------------------------------------------------------------------------

/// A `rootfs` or `mpN` value. `volume` is the default key (printed bare, first); `mp` is
/// required for `mpN` and absent for `rootfs` (Proxmox skips it when printing rootfs);
/// `size` is a disk size printed with [`format_size`]; the rest sort:
/// `local-zfs:subvol-100-disk-1,mp=/data,acl=1,backup=1,ro=1,size=16G`.
///
/// Other keys (`acl backup idmap keepattrs mountoptions quota replicate ro shared`) are
/// kept in `other`; its boolean ones are normalised to `1`/`0`.
// pve-container src/PVE/LXC/Config.pm $rootfs_desc, $mp_desc, print_ct_mountpoint
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MountPoint {
    /// `storage:volname`, a host path (bind mount) or `/dev/...` (device mount).
    pub volume: String,
    pub mp: Option<String>,
    pub size_bytes: Option<u64>,
    pub other: BTreeMap<String, String>,
}

const MP_BOOLEANS: &[&str] = &[
    "acl",
    "backup",
    "keepattrs",
    "quota",
    "replicate",
    "ro",
    "shared",
];

/// What a mount point's volume is.
// pve-container src/PVE/LXC/Config.pm classify_mountpoint
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MountKind {
    /// A storage volume (`local-zfs:subvol-100-disk-0`).
    Volume,
    /// A host directory (`/tank/data`).
    Bind,
    /// A host block device (`/dev/sdb1`).
    Device,
}

impl MountPoint {
    pub fn new(volume: &str) -> MountPoint {
        MountPoint {
            volume: volume.to_string(),
            ..MountPoint::default()
        }
    }

    pub fn parse(text: &str) -> Result<MountPoint, PropError> {
        let mut m = split_props(text, Some("volume"), MP_BOOLEANS)?;
        let volume = m.remove("volume").ok_or(PropError::Required("volume"))?;
        // parse_ct_mountpoint_full: `size` is read with parse_size and kept in bytes.
        let size_bytes = match m.remove("size") {
            None => None,
            Some(s) => Some(parse_size(&s).ok_or(PropError::Size(s))?),
        };
        Ok(MountPoint {
            volume,
            mp: m.remove("mp"),
            size_bytes,
            other: m,
        })
    }

    pub fn kind(&self) -> MountKind {
        if self.volume.starts_with("/dev/") {
            MountKind::Device
        } else if self.volume.starts_with('/') {
            MountKind::Bind
        } else {
            MountKind::Volume
        }
    }
}

impl fmt::Display for MountPoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut rest = self.other.clone();
        rest.remove("volume");
        rest.remove("mp");
        put(&mut rest, "size", self.size_bytes.map(format_size));
        let required: Vec<(&str, &str)> = self.mp.iter().map(|m| ("mp", m.as_str())).collect();
        join_props(f, Some(&self.volume), &required, &rest)
    }
}

// ---------------------------------------------------------------------------------
// devN
// ---------------------------------------------------------------------------------

/// A `devN` value: `path` is the default key, the rest sort, so
/// `pct set --dev0 /dev/nvidia0,mode=0666,gid=44` reads back printed as
/// `/dev/nvidia0,gid=44,mode=0666` (note `pct set` itself stores the string as given).
// pve-container src/PVE/LXC/Config.pm $dev_desc, print_device, parse_device
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DevConf {
    pub path: String,
    /// Octal `0[0-7]{3}`, as written.
    pub mode: Option<String>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub deny_write: Option<bool>,
    pub other: BTreeMap<String, String>,
}

impl DevConf {
    pub fn new(path: &str) -> DevConf {
        DevConf {
            path: path.to_string(),
            ..DevConf::default()
        }
    }

    pub fn parse(text: &str) -> Result<DevConf, PropError> {
        let mut m = split_props(text, Some("path"), &["deny-write"])?;
        // parse_device dies "Path has to be defined" although the schema marks it optional.
        let path = m.remove("path").ok_or(PropError::Required("path"))?;
        Ok(DevConf {
            path,
            mode: m.remove("mode"),
            uid: take_int(&mut m, "uid")?,
            gid: take_int(&mut m, "gid")?,
            deny_write: take_bool(&mut m, "deny-write"),
            other: m,
        })
    }
}

impl fmt::Display for DevConf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut rest = self.other.clone();
        rest.remove("path");
        put(&mut rest, "mode", self.mode.as_ref());
        put(&mut rest, "uid", self.uid);
        put(&mut rest, "gid", self.gid);
        put(&mut rest, "deny-write", self.deny_write.map(bool_text));
        join_props(f, Some(&self.path), &[], &rest)
    }
}

// ---------------------------------------------------------------------------------
// features
// ---------------------------------------------------------------------------------

/// The `features` value: a set of `key=value`. The schema has no default and no required
/// key, so every key prints sorted: `fuse=1,keyctl=1,mount=nfs;cifs,nesting=1`.
/// (`pct set --features nesting=1,keyctl=1` stores the string as given; Proxmox's GUI and
/// `print_property_string` give the sorted form.)
// pve-container src/PVE/LXC/Config.pm $features_desc, parse_features
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Features(BTreeMap<String, String>);

const FEATURE_BOOLEANS: &[&str] = &["force_rw_sys", "fuse", "keyctl", "mknod", "nesting"];

impl Features {
    pub fn parse(text: &str) -> Result<Features, PropError> {
        split_props(text, None, FEATURE_BOOLEANS).map(Features)
    }

    pub fn from_map(map: &BTreeMap<String, String>) -> Features {
        Features(map.clone())
    }

    pub fn to_map(&self) -> BTreeMap<String, String> {
        self.0.clone()
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    pub fn set(&mut self, key: &str, value: &str) {
        self.0.insert(key.to_string(), value.to_string());
    }

    pub fn remove(&mut self, key: &str) -> Option<String> {
        self.0.remove(key)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether a boolean feature is on (`nesting`, `keyctl`, `fuse`, ...).
    pub fn enabled(&self, key: &str) -> bool {
        self.get(key).and_then(parse_boolean).unwrap_or(false)
    }
}

impl fmt::Display for Features {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        join_props(f, None, &[], &self.0)
    }
}

// ---------------------------------------------------------------------------------
// tags
// ---------------------------------------------------------------------------------

/// The `tags` value, in the order written. PVE splits tag lists on `;`, `,` and
/// whitespace; it stores them joined with `;`.
///
/// `pct set --tags` (and create) store [`Tags::normalized`]: lower-cased, de-duplicated,
/// sorted case-insensitively (the datacenter.cfg `tag-style` defaults).
// pve-common src/PVE/ParseUtils.pm split_list; pve-guest-common src/PVE/GuestHelpers.pm get_unique_tags
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tags(Vec<String>);

impl Tags {
    /// Never fails: like `split_list`, anything splits into words.
    pub fn parse(text: &str) -> Tags {
        // split_list: a NUL-separated list splits on NUL only.
        if text.contains('\0') {
            return Tags(
                text.split('\0')
                    .filter(|t| !t.is_empty())
                    .map(str::to_string)
                    .collect(),
            );
        }
        Tags(
            text.split(|c: char| c == ';' || c == ',' || c.is_ascii_whitespace())
                .filter(|t| !t.is_empty())
                .map(str::to_string)
                .collect(),
        )
    }

    /// Whether `tag` matches PVE's tag syntax `[a-z0-9_][a-z0-9_\-\+\.]*` (any case).
    // pve-common src/PVE/JSONSchema.pm $PVE_TAG_RE
    pub fn is_valid_tag(tag: &str) -> bool {
        let mut bytes = tag.bytes();
        bytes
            .next()
            .is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_')
            && bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'+' | b'.'))
    }

    pub fn contains(&self, tag: &str) -> bool {
        self.0.iter().any(|t| t == tag)
    }

    /// Appends `tag` unless present.
    pub fn insert(&mut self, tag: &str) {
        if !self.contains(tag) {
            self.0.push(tag.to_string());
        }
    }

    pub fn remove(&mut self, tag: &str) {
        self.0.retain(|t| t != tag);
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(String::as_str)
    }

    /// What `pct set --tags` stores: lower-cased, sorted, duplicates dropped.
    // pve-guest-common src/PVE/GuestHelpers.pm get_unique_tags (case-insensitive, ordering != config)
    pub fn normalized(&self) -> Tags {
        let mut tags: Vec<String> = self.0.iter().map(|t| t.to_lowercase()).collect();
        tags.sort();
        tags.dedup();
        Tags(tags)
    }
}

impl fmt::Display for Tags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.join(";"))
    }
}

// ---------------------------------------------------------------------------------
// delete (pending)
// ---------------------------------------------------------------------------------

/// The `delete:` value of a `[pve:pending]` section: keys to remove, each with a
/// *force* flag (written `!key`). Printed sorted and joined with `,`.
// pve-guest-common src/PVE/AbstractConfig.pm parse_pending_delete, print_pending_delete
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PendingDelete(BTreeMap<String, bool>);

impl PendingDelete {
    /// Splits on `,`, `;` and whitespace, like Proxmox.
    pub fn parse(text: &str) -> PendingDelete {
        PendingDelete(
            text.split(|c: char| c == ';' || c == ',' || c.is_ascii_whitespace())
                .filter(|e| !e.is_empty())
                .map(|e| match e.strip_prefix('!') {
                    Some(k) => (k.to_string(), true),
                    None => (e.to_string(), false),
                })
                .collect(),
        )
    }

    pub fn insert(&mut self, key: &str, force: bool) {
        self.0.insert(key.to_string(), force);
    }

    pub fn remove(&mut self, key: &str) -> bool {
        self.0.remove(key).is_some()
    }

    pub fn contains(&self, key: &str) -> bool {
        self.0.contains_key(key)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// `(key, force)`, sorted.
    pub fn iter(&self) -> impl Iterator<Item = (&str, bool)> {
        self.0.iter().map(|(k, f)| (k.as_str(), *f))
    }
}

impl fmt::Display for PendingDelete {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut sep = "";
        for (k, force) in &self.0 {
            let bang = if *force { "!" } else { "" };
            write!(f, "{sep}{bang}{k}")?;
            sep = ",";
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture_values(text: &str, prefix: &str) -> Vec<String> {
        text.lines()
            .filter_map(|l| l.split_once(": "))
            .filter(|(k, _)| k.starts_with(prefix))
            .map(|(_, v)| v.to_string())
            .collect()
    }

    const FOREIGN: &str = include_str!("../../../tests/fixtures/pve/102-foreign.conf");
    const BASIC: &str = include_str!("../../../tests/fixtures/pve/100-basic.conf");

    #[test]
    fn net_prints_name_first_then_sorted() {
        // pve-container src/PVE/LXC/Config.pm $netconf_desc: `name` is the only required
        // key, no default key; pve-common JSONSchema.pm print_property_string sorts the rest.
        let mut n = NetConf::new("eth0");
        n.type_ = Some("veth".into());
        n.ip = Some("dhcp".into());
        n.hwaddr = Some("BC:24:11:5E:1A:2B".into());
        n.bridge = Some("vmbr0".into());
        assert_eq!(
            n.to_string(),
            "name=eth0,bridge=vmbr0,hwaddr=BC:24:11:5E:1A:2B,ip=dhcp,type=veth"
        );
        n.firewall = Some(true);
        n.gw = Some("192.168.1.1".into());
        n.tag = Some(20);
        n.mtu = Some(1450);
        n.other.insert("host-managed".into(), "1".into());
        assert_eq!(
            n.to_string(),
            "name=eth0,bridge=vmbr0,firewall=1,gw=192.168.1.1,host-managed=1,\
             hwaddr=BC:24:11:5E:1A:2B,ip=dhcp,mtu=1450,tag=20,type=veth"
        );
        assert_eq!(NetConf::parse(&n.to_string()), Ok(n));
    }

    #[test]
    fn net_parse_reorders_normalises_and_keeps_unknown_keys() {
        // The order pve-container's own src/test/snapshot-input/*.conf still carry
        // (written before print_lxc_network existed) reads and prints canonically.
        let n = NetConf::parse(
            "bridge=vmbr0,hwaddr=12:34:56:78:90:12,ip=dhcp,ip6=dhcp,name=eth0,type=veth,firewall=yes,trunks=10;20",
        )
        .unwrap();
        assert_eq!(n.firewall, Some(true));
        assert_eq!(n.other.get("trunks").map(String::as_str), Some("10;20"));
        assert_eq!(
            n.to_string(),
            "name=eth0,bridge=vmbr0,firewall=1,hwaddr=12:34:56:78:90:12,ip=dhcp,ip6=dhcp,trunks=10;20,type=veth"
        );
    }

    #[test]
    fn net_errors_are_proxmoxs() {
        // pve-common JSONSchema.pm parse_property_string / check_object texts.
        assert_eq!(
            NetConf::parse("bridge=vmbr0"),
            Err(PropError::Required("name"))
        );
        assert_eq!(NetConf::parse("eth0"), Err(PropError::NoDefaultKey));
        assert_eq!(
            NetConf::parse("name=a,name=b"),
            Err(PropError::DuplicateKey("name".into()))
        );
        assert_eq!(NetConf::parse("name=a,ip="), Err(PropError::MissingKey));
        assert!(matches!(
            NetConf::parse("name=a,tag=x"),
            Err(PropError::Type {
                kind: "integer",
                ..
            })
        ));
        assert!(matches!(
            NetConf::parse("name=a,firewall=maybe"),
            Err(PropError::Type {
                kind: "boolean",
                ..
            })
        ));
    }

    #[test]
    fn every_fixture_property_string_prints_back_identically() {
        // The fixtures are written the way write_pct_config + print_property_string write.
        for v in fixture_values(FOREIGN, "net")
            .iter()
            .chain(&fixture_values(BASIC, "net"))
        {
            assert_eq!(&NetConf::parse(v).unwrap().to_string(), v);
        }
        for key in ["rootfs", "mp"] {
            for v in fixture_values(FOREIGN, key) {
                assert_eq!(MountPoint::parse(&v).unwrap().to_string(), v);
            }
        }
        for v in fixture_values(FOREIGN, "dev") {
            assert_eq!(DevConf::parse(&v).unwrap().to_string(), v);
        }
        for v in fixture_values(FOREIGN, "features") {
            assert_eq!(Features::parse(&v).unwrap().to_string(), v);
        }
    }

    #[test]
    fn mount_points_print_volume_mp_then_sorted_with_size() {
        // pve-container Config.pm $mp_desc: volume is default_key, mp is required;
        // print_ct_mountpoint; size is format 'disk-size' → format_size.
        let mp =
            MountPoint::parse("local-zfs:subvol-100-disk-1,size=16G,mp=/data,backup=yes").unwrap();
        assert_eq!(mp.size_bytes, Some(16 * GIB));
        assert_eq!(mp.kind(), MountKind::Volume);
        assert_eq!(
            mp.to_string(),
            "local-zfs:subvol-100-disk-1,mp=/data,backup=1,size=16G"
        );
        // rootfs: no mp (print_ct_mountpoint skips it for rootfs).
        let root = MountPoint::parse("volume=local-zfs:subvol-100-disk-0,size=8G").unwrap();
        assert_eq!(root.to_string(), "local-zfs:subvol-100-disk-0,size=8G");
        // A non-whole-GiB size prints in the largest unit that divides it.
        let mut r = MountPoint::new("local-zfs:subvol-100-disk-0");
        r.size_bytes = Some(1536 * MIB);
        assert_eq!(r.to_string(), "local-zfs:subvol-100-disk-0,size=1536M");
        assert_eq!(MountPoint::new("/tank/x").kind(), MountKind::Bind);
        assert_eq!(MountPoint::new("/dev/sdb1").kind(), MountKind::Device);
        assert_eq!(
            MountPoint::parse("a:b,c:d"),
            Err(PropError::DuplicateKey("volume".into()))
        );
        assert_eq!(
            MountPoint::parse("size=8G"),
            Err(PropError::Required("volume"))
        );
        assert_eq!(
            MountPoint::parse("a:b,size=8X"),
            Err(PropError::Size("8X".into()))
        );
    }

    #[test]
    fn dev_prints_path_then_sorted() {
        // pve-container Config.pm $dev_desc: path is default_key; the rest sorted.
        let d = DevConf::parse("/dev/nvidia0,mode=0666,gid=44").unwrap();
        assert_eq!(d.gid, Some(44));
        assert_eq!(d.to_string(), "/dev/nvidia0,gid=44,mode=0666");
        let d = DevConf::parse("path=/dev/dri/renderD128,uid=0,deny-write=true").unwrap();
        assert_eq!(d.to_string(), "/dev/dri/renderD128,deny-write=1,uid=0");
        assert_eq!(DevConf::parse("gid=44"), Err(PropError::Required("path")));
    }

    #[test]
    fn features_print_sorted_with_booleans_normalised() {
        // pve-container Config.pm $features_desc: all optional, no default key.
        let f = Features::parse("nesting=1,keyctl=yes,mount=nfs;cifs").unwrap();
        assert!(f.enabled("keyctl") && f.enabled("nesting") && !f.enabled("fuse"));
        assert_eq!(f.to_string(), "keyctl=1,mount=nfs;cifs,nesting=1");
        assert_eq!(Features::parse("nesting"), Err(PropError::NoDefaultKey));
        assert!(Features::parse("").unwrap().is_empty());
        let mut m = BTreeMap::new();
        m.insert("nesting".to_string(), "1".to_string());
        m.insert("fuse".to_string(), "1".to_string());
        assert_eq!(Features::from_map(&m).to_string(), "fuse=1,nesting=1");
    }

    #[test]
    fn tags_split_like_split_list_and_join_with_semicolons() {
        // pve-common ParseUtils.pm split_list: `,` `;` and whitespace separate.
        let t = Tags::parse("phoenix;gpu, Web  db");
        assert_eq!(
            t.iter().collect::<Vec<_>>(),
            ["phoenix", "gpu", "Web", "db"]
        );
        assert_eq!(t.to_string(), "phoenix;gpu;Web;db");
        // GuestHelpers.pm get_unique_tags: lower-case, sort, dedup.
        let mut t = Tags::parse("phoenix;GPU;gpu;Alpha");
        assert_eq!(t.normalized().to_string(), "alpha;gpu;phoenix");
        t.insert("phoenix");
        t.insert("new");
        t.remove("GPU");
        assert_eq!(t.to_string(), "phoenix;gpu;Alpha;new");
        assert!(Tags::parse(" ;, ").is_empty());
        assert!(
            Tags::is_valid_tag("a.b+c-d_1")
                && !Tags::is_valid_tag("-x")
                && !Tags::is_valid_tag("a b")
        );
    }

    #[test]
    fn pending_delete_round_trips_sorted_with_force_marks() {
        // pve-guest-common AbstractConfig.pm parse_pending_delete / print_pending_delete.
        let mut d = PendingDelete::parse("swap;nameserver !mp0");
        assert!(d.contains("mp0"));
        assert_eq!(d.to_string(), "!mp0,nameserver,swap");
        d.remove("swap");
        d.insert("cpulimit", false);
        // Sorted by key; the force mark does not count.
        assert_eq!(d.to_string(), "cpulimit,!mp0,nameserver");
    }

    #[test]
    fn parse_size_reads_pves_notation() {
        // pve-common JSONSchema.pm parse_size: ^(\d+(\.\d+)?)([KMGT](?:iB)?)?$
        assert_eq!(parse_size("8G"), Some(8 * GIB));
        assert_eq!(parse_size("8GiB"), Some(8 * GIB));
        assert_eq!(parse_size("512M"), Some(512 * MIB));
        assert_eq!(parse_size("1T"), Some(TIB));
        assert_eq!(parse_size("1536M"), Some(1536 * MIB));
        assert_eq!(parse_size("1.5G"), Some(1536 * MIB));
        assert_eq!(parse_size("0.1K"), Some(102));
        assert_eq!(parse_size("4096"), Some(4096));
        for bad in ["", "8g", "8GB", "G", ".5G", "5.G", "-1G", "8 G", "1.2.3G"] {
            assert_eq!(parse_size(bad), None, "{bad}");
        }
        assert_eq!(parse_size("99999999999T"), None);
    }

    #[test]
    fn format_size_prints_largest_exact_unit() {
        // pve-common JSONSchema.pm format_size.
        assert_eq!(format_size(8 * GIB), "8G");
        assert_eq!(format_size(1536 * MIB), "1536M");
        assert_eq!(format_size(TIB), "1T");
        assert_eq!(format_size(2 * TIB + GIB), "2049G");
        assert_eq!(format_size(1024), "1K");
        assert_eq!(format_size(1000), "1000");
        assert_eq!(format_size(0), "0T");
        for b in [8 * GIB, 1536 * MIB, 3 * KIB, 12345, TIB] {
            assert_eq!(parse_size(&format_size(b)), Some(b));
        }
    }

    #[test]
    fn gib_helpers() {
        assert_eq!(size_gib_ceil(8 * GIB), 8);
        assert_eq!(size_gib_ceil(1536 * MIB), 2);
        assert_eq!(size_gib_ceil(1), 1);
        assert_eq!(size_gib_ceil(0), 0);
        // pve-container LXC.pm create_disks: int(gb * 1024) * 1024 KiB.
        assert_eq!(
            new_disk_request("local-zfs:8"),
            Some(("local-zfs", 8 * GIB))
        );
        assert_eq!(
            new_disk_request("local-zfs:0.5"),
            Some(("local-zfs", 512 * MIB))
        );
        assert_eq!(new_disk_request("local-zfs:0.0001"), Some(("local-zfs", 0)));
        assert_eq!(new_disk_request("local-zfs:subvol-100-disk-0"), None);
        assert_eq!(new_disk_request("/tank/data"), None);
    }
}
