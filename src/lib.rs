//! phoenix builds fleets of Proxmox VE LXC containers and templates the way Nix builds
//! packages: every template and container is a build node whose hash covers its inputs,
//! and the snapshot taken when it is built is named by that hash.
//!
//! The layout follows the data: [`config`] with [`schema`] and [`rules`] (files → typed
//! nodes, located [`diag`] problems) → [`graph`] (edges, order) → [`hash`] (manifests and
//! hashes) → [`plan`] (what happens to each node) → [`walker`] (a generic scheduler) and
//! [`steps`] (one node's work), tied together by [`build`]; [`why`] and [`gc`] read the
//! same manifests. All of these are pure or go through the one [`host::Host`] trait, whose
//! backend today is [`sim`]. Output is rendered from data: [`events`] → [`report`]; the
//! command line lives in [`cli`] and [`commands`].

pub mod build;
pub mod canon;
pub mod cli;
pub mod commands;
pub mod config;
pub mod diag;
pub mod events;
pub mod exit;
pub mod gc;
pub mod graph;
pub mod hash;
pub mod host;
pub mod json;
pub mod pct_shim;
pub mod plan;
pub mod report;
pub mod rules;
pub mod schema;
pub mod sim;
pub mod snapshot;
pub mod state;
pub mod steps;
pub mod walker;
pub mod why;
