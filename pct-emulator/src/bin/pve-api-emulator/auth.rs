//! Who a request comes from: an API token (`Authorization: PVEAPIToken=<id>=<secret>`),
//! or a ticket (`Cookie: PVEAuthCookie=...`, with `CSRFPreventionToken` on every
//! non-GET request) from `POST /access/ticket`, which also renews a valid ticket given
//! as the password [pve-access-control AccessControl.pm, pve-manager HTTPServer.pm].

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;

use crate::http::{Request, Response};

/// The authenticated identity and what it may do.
#[derive(Clone)]
pub struct Who {
    /// `root@pam`, or a token's `root@pam!phoenix`.
    pub id: String,
    /// `None`: every privilege.
    pub privileges: Option<Vec<String>>,
}

impl Who {
    /// Passes the checks Proxmox reserves to `root@pam` itself (never a token).
    pub fn is_root(&self) -> bool {
        self.id == "root@pam"
    }

    /// Whether it holds the privilege (the model grants a privilege on every path).
    pub fn has(&self, privilege: &str) -> bool {
        self.privileges
            .as_ref()
            .is_none_or(|p| p.iter().any(|x| x == privilege))
    }

    /// `Permission check failed (<path>, <privilege>)` unless it holds the privilege.
    pub fn check(&self, path: &str, privilege: &str) -> Result<(), Response> {
        if self.has(privilege) {
            Ok(())
        } else {
            Err(Response::error(403, &denied(path, &[privilege])))
        }
    }

    /// The same for any one of several privileges (`Permission check failed (<path>,
    /// <a>|<b>)`) [pve-access-control RPCEnvironment.pm
    /// check_any].
    pub fn check_any(&self, path: &str, privileges: &[&str]) -> Result<(), Response> {
        if privileges.iter().any(|p| self.has(p)) {
            Ok(())
        } else {
            Err(Response::error(403, &denied(path, privileges)))
        }
    }

    /// Refused unless `root@pam` itself [LXC check_ct_modify_config_perm].
    pub fn root_only(&self, what: &str) -> Result<(), Response> {
        if self.is_root() {
            Ok(())
        } else {
            Err(Response::error(
                403,
                &format!("Permission check failed ({what} is only allowed for root@pam)"),
            ))
        }
    }
}

/// Proxmox's words for a privilege not held [EXC raise_perm_exc].
pub fn denied(path: &str, privileges: &[&str]) -> String {
    format!("Permission check failed ({path}, {})", privileges.join("|"))
}

struct Ticket {
    user: String,
    csrf: String,
    issued: Instant,
}

pub struct Auth {
    tickets: Mutex<HashMap<String, Ticket>>,
    ttl: Duration,
}

fn random_hex(n: usize) -> String {
    use ring::rand::SecureRandom;
    let mut b = vec![0u8; n];
    let _ = ring::rand::SystemRandom::new().fill(&mut b);
    b.iter().map(|x| format!("{x:02X}")).collect()
}

fn users_file(root: &Path) -> Value {
    std::fs::read(root.join("api-auth.json"))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or(Value::Null)
}

fn privileges(entry: &Value) -> Option<Vec<String>> {
    entry.get("privileges").and_then(Value::as_array).map(|a| {
        a.iter()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect()
    })
}

impl Auth {
    pub fn new(ttl: Duration) -> Auth {
        Auth {
            tickets: Mutex::new(HashMap::new()),
            ttl,
        }
    }

    /// `POST /access/ticket`: a new ticket for a user's password, or for a valid ticket
    /// of the same user (renewal).
    pub fn login(&self, root: &Path, username: &str, password: &str) -> Result<Value, Response> {
        let refused = || Response::error(401, "authentication failure");
        let users = users_file(root);
        let user = users.get("users").and_then(|u| u.get(username));
        let Some(user) = user else {
            return Err(refused());
        };
        let by_password = user.get("password").and_then(Value::as_str) == Some(password);
        let by_ticket = self
            .tickets
            .lock()
            .map(|t| {
                t.get(password)
                    .is_some_and(|t| t.user == username && t.issued.elapsed() < self.ttl)
            })
            .unwrap_or(false);
        if !by_password && !by_ticket {
            return Err(refused());
        }
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let ticket = format!("PVE:{username}:{now:08X}::{}", random_hex(32));
        let csrf = format!("{now:08X}:{}", random_hex(16));
        if let Ok(mut t) = self.tickets.lock() {
            t.insert(
                ticket.clone(),
                Ticket {
                    user: username.to_string(),
                    csrf: csrf.clone(),
                    issued: Instant::now(),
                },
            );
        }
        Ok(serde_json::json!({
            "username": username,
            "ticket": ticket,
            "CSRFPreventionToken": csrf,
            "cap": {},
        }))
    }

    /// The identity of a request, or the 401 Proxmox answers.
    pub fn authenticate(&self, root: &Path, req: &Request) -> Result<Who, Response> {
        let users = users_file(root);
        if let Some(token) = req
            .headers
            .get("authorization")
            .and_then(|a| a.trim().strip_prefix("PVEAPIToken="))
        {
            let failed = || Response::error(401, "authentication failure");
            let (id, secret) = token.split_once('=').ok_or_else(failed)?;
            let entry = users
                .get("tokens")
                .and_then(|t| t.get(id))
                .ok_or_else(failed)?;
            if entry.get("secret").and_then(Value::as_str) != Some(secret) {
                return Err(failed());
            }
            return Ok(Who {
                id: id.to_string(),
                privileges: privileges(entry),
            });
        }
        let cookie = req.headers.get("cookie").and_then(|c| {
            c.split(';')
                .find_map(|p| p.trim().strip_prefix("PVEAuthCookie="))
                .map(str::to_string)
        });
        let Some(ticket) = cookie else {
            return Err(Response::error(401, "No ticket"));
        };
        let tickets = self
            .tickets
            .lock()
            .map_err(|_| Response::error(500, "ticket store poisoned"))?;
        let Some(t) = tickets.get(&ticket) else {
            return Err(Response::error(401, "authentication failure"));
        };
        if t.issued.elapsed() >= self.ttl {
            return Err(Response::error(401, "authentication failure"));
        }
        if req.method != "GET"
            && req.headers.get("csrfpreventiontoken").map(String::as_str) != Some(t.csrf.as_str())
        {
            return Err(Response::error(
                401,
                "Permission denied - invalid csrf token",
            ));
        }
        let entry = users.get("users").and_then(|u| u.get(&t.user));
        let Some(entry) = entry else {
            return Err(Response::error(401, "authentication failure"));
        };
        Ok(Who {
            id: t.user.clone(),
            privileges: if t.user == "root@pam" {
                None
            } else {
                privileges(entry)
            },
        })
    }
}
