//! Everything that knows Proxmox VE's formats, in one place: used by the model
//! ([`sim`](crate::host::sim)), the `pct` front-end, and the `pve` backend.
//!
//! | module | format |
//! |---|---|
//! | [`conf`] | the CT config file (`/etc/pve/nodes/<node>/lxc/<vmid>.conf`), lossless |
//! | [`props`] | property strings (`net0`, `rootfs`/`mpN`, `features`, `devN`, `tags`) and sizes |
//! | [`map`] | phoenix's values (settings, passthrough, [`CtInfo`](crate::host::CtInfo)) ↔ config keys |
//! | [`storage`] | `/etc/pve/storage.cfg` |
//! | [`lock`] | the config file lock (`/run/lock/lxc/pve-config-<vmid>.lock`) |
//! | [`args`] | `pct`'s command line |
//! | [`output`] | what `pct` prints |
//! | [`text`] | error texts and their kinds |
//! | [`vzdump`] | what a backup says: its archive, its failure |
//!
//! [`backend`] is the `pve` backend itself: those formats read from a node's files and
//! written through its `pct`; [`api`] is the same backend reached over the REST API and
//! SSH (`--pve-url`).
//!
//! Citations in brackets name the Proxmox source a rule was read in (`pct-spec.md`'s
//! table of tags).

pub mod api;
pub mod args;
pub mod backend;
pub mod conf;
pub mod lock;
pub mod map;
pub mod output;
pub mod props;
pub mod storage;
pub mod text;
pub mod vzdump;
