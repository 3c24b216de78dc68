//! HTTPS requests to the API and their answers.
//!
//! Every answer is `{"data": ...}`; an error is an HTTP status whose reason phrase (and
//! the body's `message`) is Proxmox's text, with `errors` per parameter for a 400
//! [pve-http-server Formatter/Standard.pm, AnyEvent.pm]. An API token goes in the
//! `Authorization` header (`PVEAPIToken=user@realm!tokenid=secret`); a ticket login
//! (`POST /access/ticket`) gives a cookie (`PVEAuthCookie`) valid for 2 hours and a
//! `CSRFPreventionToken` every non-GET request carries. phoenix renews a ticket once
//! it is an hour old (with the ticket itself as the password, as the web UI does), and
//! logs in again once when Proxmox refuses one.
//!
//! Errors come in two kinds: Proxmox's answer ([`ApiError::Status`], classified into an
//! [`ErrorKind`](crate::host::ErrorKind) as `pct`'s are) and phoenix's failure to use the
//! API at all ([`ApiError::Unusable`]: the connection, TLS, credentials, an answer that is
//! not Proxmox's), each said with what to do.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use serde_json::Value;

use super::tls::{self, Seen, Trust};
use super::{ApiOptions, Credential};
use crate::host::pve::text;
use crate::host::{ErrorKind, HostError};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    Get,
    Post,
    Put,
    Delete,
}

impl Method {
    pub fn name(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Delete => "DELETE",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ApiError {
    /// Proxmox's answer: the status, its text, and per-parameter errors of a 400.
    Status {
        status: u16,
        message: String,
        errors: Vec<(String, String)>,
    },
    /// The API cannot be used: what is wrong and what to do, in one message.
    Unusable(String),
}

impl ApiError {
    pub fn status(&self) -> Option<u16> {
        match self {
            ApiError::Status { status, .. } => Some(*status),
            ApiError::Unusable(_) => None,
        }
    }

    /// As a host error: Proxmox's words (classified as `pct`'s are), or phoenix's.
    pub fn into_host(self) -> HostError {
        match self {
            ApiError::Status {
                status,
                message,
                errors,
            } => {
                let mut words = message;
                for (k, v) in &errors {
                    words.push_str(&format!("\n{k}: {v}"));
                }
                let kind = match status {
                    400 => match text::classify(&words) {
                        ErrorKind::Failed => ErrorKind::Invalid,
                        k => k,
                    },
                    _ => text::classify(&words),
                };
                if status == 403 {
                    words.push_str(&format!(" (HTTP 403: {PRIVILEGE_HELP})"));
                }
                HostError::new(kind, words)
            }
            ApiError::Unusable(m) => HostError::failed(m),
        }
    }

    pub fn message(&self) -> String {
        self.clone().into_host().message
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message())
    }
}

/// A ticket and its CSRF token.
#[derive(Clone)]
struct Session {
    ticket: String,
    csrf: String,
    /// When Proxmox issued it (as far as phoenix can tell).
    issued: SystemTime,
}

/// One client of one API endpoint; shared by every thread of a run.
pub struct Api {
    agent: ureq::Agent,
    base: String,
    /// `host:port`, for messages.
    authority: String,
    credential: Credential,
    trust: Trust,
    session: Mutex<Option<Session>>,
    renew_after: Duration,
    seen: Arc<Mutex<Seen>>,
    /// Where the current ticket is kept for hooks' `pct` (0600), when it is.
    ticket_file: Mutex<Option<PathBuf>>,
    timeout: Duration,
}

/// What to do about a privilege Proxmox refused (a 403, or a task's `Permission check
/// failed`).
pub const PRIVILEGE_HELP: &str = "the API user or token lacks this privilege; grant it with `pveum acl modify`, README \"Running phoenix from a workstation or CI\"";

/// Percent-encodes one path segment (a UPID holds `:`, `@` and `!`).
pub fn segment(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl Api {
    pub fn new(opts: &ApiOptions) -> Result<Api, String> {
        let (config, seen) = tls::client_config(&opts.trust)?;
        if opts.trust == Trust::Insecure {
            tracing::warn!(
                "--pve-insecure: the certificate of {} is not verified; anyone on the path can read phoenix's credentials and change the fleet. Pin it with --pve-fingerprint instead",
                opts.base
            );
        }
        let agent = ureq::AgentBuilder::new()
            .tls_config(Arc::new(config))
            .timeout_connect(opts.http_timeout.min(Duration::from_secs(10)))
            .timeout(opts.http_timeout)
            .max_idle_connections_per_host(32)
            .redirects(0)
            .user_agent(concat!("phoenix/", env!("CARGO_PKG_VERSION")))
            .build();
        let authority = opts
            .base
            .trim_start_matches("https://")
            .split('/')
            .next()
            .unwrap_or("")
            .to_string();
        let session = match &opts.credential {
            Credential::Ticket { file, .. } => Some(read_ticket_file(file)?),
            _ => None,
        };
        let ticket_file = match &opts.credential {
            Credential::Ticket { file, .. } => Some(file.clone()),
            _ => None,
        };
        Ok(Api {
            agent,
            base: opts.base.clone(),
            authority,
            credential: opts.credential.clone(),
            trust: opts.trust.clone(),
            session: Mutex::new(session),
            renew_after: opts.ticket_renew,
            seen,
            ticket_file: Mutex::new(ticket_file),
            timeout: opts.http_timeout,
        })
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    pub fn credential(&self) -> &Credential {
        &self.credential
    }

    /// A ticket in use is renewed in the background, so that the one hooks' `pct` read
    /// from its file stays valid while phoenix itself makes no request (a long hook).
    /// The thread ends with the client.
    pub fn keep_ticket_fresh(api: &Arc<Api>) {
        if !matches!(api.credential, Credential::Password { .. }) {
            return;
        }
        let period =
            (api.renew_after / 4).clamp(Duration::from_millis(50), Duration::from_secs(60));
        let weak = Arc::downgrade(api);
        std::thread::spawn(move || loop {
            std::thread::sleep(period);
            let Some(api) = weak.upgrade() else { return };
            if let Err(e) = api.auth() {
                tracing::warn!("renewing the Proxmox ticket: {e}");
            }
        });
    }

    /// Keeps the current ticket in `file` (0600) from now on, for hooks' `pct`.
    pub fn keep_ticket_in(&self, file: PathBuf) -> Result<(), String> {
        let session = self.session.lock().map(|s| s.clone()).unwrap_or(None);
        if let Some(s) = session {
            write_ticket_file(&file, &s)?;
        }
        if let Ok(mut f) = self.ticket_file.lock() {
            *f = Some(file);
        }
        Ok(())
    }

    pub fn get(&self, path: &str, query: &[(&str, &str)]) -> Result<Value, ApiError> {
        self.request(Method::Get, path, query)
    }

    /// One request, authenticated; a refused ticket is replaced once.
    pub fn request(
        &self,
        method: Method,
        path: &str,
        params: &[(&str, &str)],
    ) -> Result<Value, ApiError> {
        let mut retried = false;
        loop {
            let auth = self.auth()?;
            match self.send(method, path, params, &auth) {
                Err(ApiError::Status { status: 401, .. }) if auth.ticket.is_some() && !retried => {
                    tracing::info!(path, "Proxmox refused the ticket; logging in again");
                    // Another thread may have replaced it already.
                    if let Ok(mut s) = self.session.lock() {
                        if s.as_ref().map(|s| &s.ticket) == auth.ticket.as_ref() {
                            *s = None;
                        }
                    }
                    retried = true;
                }
                Err(ApiError::Status {
                    status: 401,
                    message,
                    ..
                }) => return Err(self.refused(&message, auth.ticket.is_some())),
                other => return other,
            }
        }
    }

    /// Why Proxmox refused phoenix's credentials, and what to do.
    fn refused(&self, message: &str, ticket: bool) -> ApiError {
        let id = self.credential.identity();
        ApiError::Unusable(if ticket {
            format!(
                "Proxmox at {} refuses the ticket of {id} it issued a moment ago ({}): tickets last 2 hours from the node's clock, so the node's clock and this machine's are probably far apart; check `timedatectl` on both",
                self.authority,
                message.trim()
            )
        } else {
            format!(
                "Proxmox at {} refused the API token {id} ({}): it was revoked or has expired, or its secret is wrong. Create one on the node with `pveum user token add {} --privsep 0` and give it as PHOENIX_PVE_TOKEN or --pve-token-file",
                self.authority,
                message.trim(),
                id.replace('!', " ")
            )
        })
    }

    /// The headers that authenticate a request: the token, or a valid ticket (logging in
    /// or renewing first when needed).
    fn auth(&self) -> Result<Auth, ApiError> {
        let (user, password) = match &self.credential {
            Credential::Token { id, secret } => {
                return Ok(Auth {
                    headers: vec![("Authorization".into(), format!("PVEAPIToken={id}={secret}"))],
                    ticket: None,
                })
            }
            Credential::Password { user, password } => (user.clone(), Some(password.clone())),
            Credential::Ticket { user, .. } => (user.clone(), None),
        };
        let mut guard = self
            .session
            .lock()
            .map_err(|_| ApiError::Unusable("the API session lock is poisoned".into()))?;
        let age = |s: &Session| {
            SystemTime::now()
                .duration_since(s.issued)
                .unwrap_or_default()
        };
        let current = guard.clone();
        let session = match current {
            Some(s) if age(&s) < self.renew_after => s,
            Some(s) => {
                // Renew with the ticket itself; if that is refused, log in again.
                match self.login(&user, &s.ticket) {
                    Ok(n) => n,
                    Err(e) => match &password {
                        Some(p) => self.login(&user, p)?,
                        None => return Err(e),
                    },
                }
            }
            None => match &password {
                Some(p) => self.login(&user, p)?,
                None => {
                    // A hook's `pct`: the run's ticket file may have been renewed.
                    let file = self.ticket_file.lock().ok().and_then(|f| f.clone());
                    match file.map(|f| read_ticket_file(&f)) {
                        Some(Ok(s)) => s,
                        _ => {
                            return Err(ApiError::Unusable(format!(
                                "the ticket of {user} phoenix passed to this `pct` is no longer accepted by {}: run it from phoenix's build again",
                                self.authority
                            )))
                        }
                    }
                }
            },
        };
        *guard = Some(session.clone());
        drop(guard);
        if let Some(file) = self.ticket_file.lock().ok().and_then(|f| f.clone()) {
            let _ = write_ticket_file(&file, &session);
        }
        Ok(Auth {
            headers: vec![
                ("Cookie".into(), format!("PVEAuthCookie={}", session.ticket)),
                ("CSRFPreventionToken".into(), session.csrf),
            ],
            ticket: Some(session.ticket),
        })
    }

    /// `POST /access/ticket`: a new ticket for `user` (the password, or a ticket to renew).
    fn login(&self, user: &str, password: &str) -> Result<Session, ApiError> {
        let none = Auth {
            headers: Vec::new(),
            ticket: None,
        };
        let data = match self.send(
            Method::Post,
            "/access/ticket",
            &[("username", user), ("password", password)],
            &none,
        ) {
            Ok(d) => d,
            Err(ApiError::Status {
                status: 401,
                message,
                ..
            }) => {
                return Err(ApiError::Unusable(format!(
                    "Proxmox at {} refused the login of {user} ({}): check PHOENIX_PVE_USER and the password in PHOENIX_PVE_PASSWORD or --pve-password-file (and that the user is enabled)",
                    self.authority,
                    message.trim()
                )))
            }
            Err(e) => return Err(e),
        };
        let field = |k: &str| data.get(k).and_then(Value::as_str).map(str::to_string);
        match (field("ticket"), field("CSRFPreventionToken")) {
            (Some(ticket), Some(csrf)) => Ok(Session {
                ticket,
                csrf,
                issued: SystemTime::now(),
            }),
            _ => Err(self.not_proxmox("POST /access/ticket", "an answer without a ticket")),
        }
    }

    fn not_proxmox(&self, what: &str, got: &str) -> ApiError {
        ApiError::Unusable(format!(
            "{} does not answer as a Proxmox VE API: {what} gave {got}. Point --pve-url at a node's API, https://<node>:8006",
            self.base.trim_end_matches("/api2/json")
        ))
    }

    fn send(
        &self,
        method: Method,
        path: &str,
        params: &[(&str, &str)],
        auth: &Auth,
    ) -> Result<Value, ApiError> {
        let url = format!("{}{path}", self.base);
        let started = Instant::now();
        let mut req = self.agent.request(method.name(), &url);
        for (k, v) in &auth.headers {
            req = req.set(k, v);
        }
        let result = match method {
            Method::Get | Method::Delete => {
                for (k, v) in params {
                    req = req.query(k, v);
                }
                req.call()
            }
            Method::Post | Method::Put => req.send_form(params),
        };
        tracing::debug!(
            method = method.name(),
            path,
            ms = started.elapsed().as_millis() as u64,
            ok = result.is_ok(),
            "api"
        );
        let what = format!("{} {path}", method.name());
        match result {
            Ok(resp) => {
                let body = resp.into_string().map_err(|e| {
                    ApiError::Unusable(format!("reading the answer to {what}: {e}"))
                })?;
                let v: Value = serde_json::from_str(&body).map_err(|_| {
                    self.not_proxmox(
                        &what,
                        &format!(
                            "an answer that is not JSON ({})",
                            crate::os::excerpt(&body, 60)
                        ),
                    )
                })?;
                match v {
                    Value::Object(mut m) if m.contains_key("data") => {
                        Ok(m.remove("data").unwrap_or(Value::Null))
                    }
                    _ => Err(self.not_proxmox(&what, "JSON without `data`")),
                }
            }
            Err(ureq::Error::Status(status, resp)) => {
                let reason = resp.status_text().trim().to_string();
                let body = resp.into_string().unwrap_or_default();
                let parsed: Option<Value> = serde_json::from_str(&body).ok();
                let is_proxmox = parsed
                    .as_ref()
                    .is_some_and(|v| v.get("data").is_some() || v.get("errors").is_some());
                if !is_proxmox && status == 404 {
                    return Err(self.not_proxmox(&what, "404 Not Found"));
                }
                let message = parsed
                    .as_ref()
                    .and_then(|v| v.get("message"))
                    .and_then(Value::as_str)
                    .map(|m| m.trim().to_string())
                    .filter(|m| !m.is_empty())
                    .unwrap_or(reason);
                let errors = parsed
                    .as_ref()
                    .and_then(|v| v.get("errors"))
                    .and_then(Value::as_object)
                    .map(|m| {
                        m.iter()
                            .map(|(k, v)| {
                                (
                                    k.clone(),
                                    v.as_str()
                                        .map_or_else(|| v.to_string(), |s| s.trim().to_string()),
                                )
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                Err(ApiError::Status {
                    status,
                    message,
                    errors,
                })
            }
            Err(ureq::Error::Transport(t)) => Err(self.transport(&what, &t)),
        }
    }

    /// Why the request did not reach Proxmox, and what to do.
    fn transport(&self, what: &str, t: &ureq::Transport) -> ApiError {
        let at = &self.authority;
        let seen = self.seen.lock().map(|s| s.clone()).unwrap_or_default();
        if let Some(refusal) = seen.refusal {
            let fp = seen
                .fingerprint
                .map(|f| tls::format_fingerprint(&f))
                .unwrap_or_default();
            return ApiError::Unusable(match &self.trust {
                Trust::Pinned(_) => format!(
                    "the TLS certificate of {at} is not the one pinned: {refusal}. If the node's certificate was renewed, read it with `pvenode cert info` on the node and give that fingerprint to --pve-fingerprint; otherwise something else answers at {at}"
                ),
                Trust::Ca(ca) => format!(
                    "the TLS certificate of {at} is not trusted by --pve-ca {} ({refusal}); its SHA-256 fingerprint is {fp}. Give the cluster's CA (/etc/pve/pve-root-ca.pem on a node), or pin the certificate with --pve-fingerprint",
                    ca.display()
                ),
                _ => format!(
                    "the TLS certificate of {at} is not trusted by this system ({refusal}); its SHA-256 fingerprint is {fp}. Proxmox's own certificates are signed by the cluster's CA: give it with --pve-ca (a copy of /etc/pve/pve-root-ca.pem), or pin the certificate with --pve-fingerprint (compare with `pvenode cert info` on the node)"
                ),
            });
        }
        let detail = t.to_string();
        let lower = detail.to_lowercase();
        ApiError::Unusable(match t.kind() {
            ureq::ErrorKind::Dns => format!(
                "cannot resolve the host of --pve-url ({at}): check the name, or give the node's address"
            ),
            ureq::ErrorKind::ConnectionFailed if lower.contains("refused") => format!(
                "{at} refused the connection: is it a Proxmox node with pveproxy running (`systemctl status pveproxy`), and is port 8006 the one in --pve-url?"
            ),
            ureq::ErrorKind::ConnectionFailed if lower.contains("timed out") => format!(
                "{at} did not answer within {} s (connecting for {what}): check that the address is reachable from here (firewall, VPN)",
                self.timeout.as_secs()
            ),
            _ if lower.contains("timed out") || lower.contains("timeout") => format!(
                "{at} did not answer {what} within {} s: the node may be overloaded; PHOENIX_PVE_HTTP_TIMEOUT sets the limit",
                self.timeout.as_secs()
            ),
            _ if lower.contains("tls") || lower.contains("handshake") || lower.contains("certificate") => format!(
                "TLS with {at} failed ({detail}): is --pve-url a Proxmox API (https://<node>:8006)?"
            ),
            _ => format!("cannot reach {at} ({what}): {detail}"),
        })
    }
}

struct Auth {
    headers: Vec<(String, String)>,
    /// The ticket it carries (a refusal of it is worth one new login).
    ticket: Option<String>,
}

fn write_ticket_file(file: &std::path::Path, s: &Session) -> Result<(), String> {
    let issued = s
        .issued
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let body = serde_json::json!({"ticket": s.ticket, "csrf": s.csrf, "issued": issued});
    crate::os::write_private(file, body.to_string().as_bytes())
        .map_err(|e| format!("cannot write {}: {e}", file.display()))
}

fn read_ticket_file(file: &std::path::Path) -> Result<Session, String> {
    let bytes = crate::os::read_regular(file, 64 << 10).map_err(|e| {
        format!(
            "cannot read the ticket file {}: {}",
            file.display(),
            e.message
        )
    })?;
    let v: Value = serde_json::from_slice(&bytes)
        .map_err(|_| format!("the ticket file {} is not phoenix's", file.display()))?;
    let s = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
    match (s("ticket"), s("csrf")) {
        (Some(ticket), Some(csrf)) => Ok(Session {
            ticket,
            csrf,
            issued: SystemTime::UNIX_EPOCH
                + Duration::from_secs(v.get("issued").and_then(Value::as_u64).unwrap_or(0)),
        }),
        _ => Err(format!(
            "the ticket file {} is not phoenix's",
            file.display()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upids_are_one_path_segment() {
        assert_eq!(
            segment("UPID:pve:0000A1B2:00C0FFEE:65000000:vzcreate:900:root@pam!phx:"),
            "UPID%3Apve%3A0000A1B2%3A00C0FFEE%3A65000000%3Avzcreate%3A900%3Aroot%40pam%21phx%3A"
        );
    }

    #[test]
    fn a_403_says_what_to_grant_and_a_lock_is_transient() {
        let e = ApiError::Status {
            status: 403,
            message: "Permission check failed (/vms/900, VM.Allocate)".into(),
            errors: vec![],
        }
        .into_host();
        assert!(e.message.contains("VM.Allocate") && e.message.contains("pveum acl modify"));
        let e = ApiError::Status {
            status: 500,
            message: "CT is locked (disk)".into(),
            errors: vec![],
        }
        .into_host();
        assert_eq!(e.kind, ErrorKind::Locked);
        let e = ApiError::Status {
            status: 400,
            message: "Parameter verification failed.".into(),
            errors: vec![("snapname".into(), "invalid format".into())],
        }
        .into_host();
        assert_eq!(e.kind, ErrorKind::Invalid);
        assert!(e.message.contains("snapname: invalid format"));
    }
}
