//! Exit codes of the `phoenix` binary, in one place. Scripts may rely on them.
//!
//! | code | name | meaning |
//! |---|---|---|
//! | 0 | [`OK`] | success; for `build`, every requested node is fresh or was built |
//! | 1 | [`BUILD_FAILED`] | at least one node failed (its descendants are blocked); for `plan`, a node fails the preflight |
//! | 2 | [`USAGE`] | bad command line (unknown flag, missing argument) |
//! | 3 | [`INVALID_CONFIG`] | the configuration has errors; nothing was touched |
//! | 4 | [`HELD`] | nothing failed, but some nodes are held: replacing them needs consent (`--replace`, `--replace-all`, `"rebuild"`) |
//! | 5 | [`LOCKED`] | another phoenix run holds the host lock |
//! | 6 | [`HOST`] | the host could not be used (backend unreachable, state unreadable, preflight failed) |
//! | 7 | [`NOT_FOUND`] | a CTID named on the command line (target or `--replace`) is not in the config |
//! | 130, 143 | — | `build` interrupted by SIGINT or SIGTERM (128 + the signal): unfinished nodes are `cancelled` |
//! | 141 | — | stdout or stderr was closed (SIGPIPE), as for any Unix tool |
//! | 101 | — | internal error (a bug: please report it) |

pub const OK: i32 = 0;
pub const BUILD_FAILED: i32 = 1;
pub const USAGE: i32 = 2;
pub const INVALID_CONFIG: i32 = 3;
pub const HELD: i32 = 4;
pub const LOCKED: i32 = 5;
pub const HOST: i32 = 6;
pub const NOT_FOUND: i32 = 7;
