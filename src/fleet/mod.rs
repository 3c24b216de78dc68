//! What the user asked for: the two config files read as located JSON ([`json`]), typed
//! into nodes ([`config`]), checked against schemas ([`schema`]) and rules ([`rules`]),
//! ordered into a [`graph`]; every problem a located [`diag`] diagnostic. Knows no host.

pub mod config;
pub mod diag;
pub mod graph;
pub mod json;
pub mod rules;
pub mod schema;
