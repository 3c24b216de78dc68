//! The `pve` backend over Proxmox VE's REST API (`--pve-url`): phoenix on a workstation
//! or in CI drives a node or cluster it does not run on.
//!
//! | module | what |
//! |---|---|
//! | [`tls`] | how the API's certificate is trusted: the system's roots, a CA file, a pinned SHA-256 fingerprint, or (asked for) nothing |
//! | [`client`] | HTTPS requests and their answers: API token or ticket (renewed before it expires, CSRF header on writes), errors in Proxmox's words and what to do |
//! | [`task`] | UPIDs: a slow action's task waited on, its log, its exit status |
//! | [`ssh`] | `ssh` to a node, one multiplexed connection per node, every remote command an argument vector quoted once |
//! | [`config`] | the API's JSON config and snapshot list as Proxmox's config file, and settings as request parameters |
//! | [`host`] | [`ApiHost`](host::ApiHost): the [`Host`](crate::host::Host) over all of them |
//!
//! The API has no exec, push or pull for containers, so those go through SSH to the CT's
//! node, as do host facts and `pct unlock` (which the API has no call for); everything
//! else is an API request (`pve-api.md`). Secrets (the token, the password, tickets)
//! never appear in an argument vector, a log line, an error or JSON: they come from the
//! environment or a file, are taken out of phoenix's environment at start
//! ([`withhold_secrets`]), and reach a hook's `pct` as a private file.

pub mod client;
pub mod config;
pub mod host;
pub mod ssh;
pub mod task;
pub mod tls;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

/// The environment variables a secret may come in; phoenix takes them out of its own
/// environment at start, so that no hook or tool it starts inherits them.
pub const SECRET_VARS: [&str; 2] = ["PHOENIX_PVE_TOKEN", "PHOENIX_PVE_PASSWORD"];

static WITHHELD: OnceLock<BTreeMap<&'static str, String>> = OnceLock::new();

/// Takes the secret variables ([`SECRET_VARS`]) out of the process environment and keeps
/// them for [`secret_var`]. Called first thing in `main`, before any thread starts.
pub fn withhold_secrets() {
    let mut kept = BTreeMap::new();
    for var in SECRET_VARS {
        if let Some(v) = std::env::var_os(var) {
            if let Ok(v) = v.into_string() {
                kept.insert(var, v);
            }
            // SAFETY (edition 2021: not `unsafe`, but the same rule): called from `main`
            // before any other thread exists.
            std::env::remove_var(var);
        }
    }
    let _ = WITHHELD.set(kept);
}

/// A secret variable's value: the withheld one, else (a library caller that did not
/// withhold) the environment's.
pub fn secret_var(var: &str) -> Option<String> {
    match WITHHELD.get() {
        Some(kept) => kept.get(var).cloned(),
        None => std::env::var(var).ok(),
    }
    .filter(|v| !v.is_empty())
}

/// The API backend's command-line options; each is also an environment variable, which
/// is how a hook's `pct` receives them ([`ApiArgs::from_env`]). Secrets are never
/// options: `PHOENIX_PVE_TOKEN`, `PHOENIX_PVE_PASSWORD`, or files named here.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct ApiArgs {
    /// `--backend pve` over the REST API at this URL (`https://pve1.example:8006`) instead of
    /// the local `pct`. Credentials: PHOENIX_PVE_TOKEN (`user@realm!tokenid=secret`) or
    /// --pve-token-file, or PHOENIX_PVE_USER with PHOENIX_PVE_PASSWORD or --pve-password-file.
    #[arg(
        long,
        global = true,
        env = "PHOENIX_PVE_URL",
        value_name = "URL",
        help_heading = "Proxmox API"
    )]
    pub pve_url: Option<String>,
    /// A file holding the API token, `user@realm!tokenid=secret`.
    #[arg(
        long,
        global = true,
        env = "PHOENIX_PVE_TOKEN_FILE",
        value_name = "FILE",
        help_heading = "Proxmox API"
    )]
    pub pve_token_file: Option<PathBuf>,
    /// The user to log in as with a password (`root@pam`: only root@pam may set GPU passthrough).
    #[arg(
        long,
        global = true,
        env = "PHOENIX_PVE_USER",
        value_name = "USER@REALM",
        help_heading = "Proxmox API"
    )]
    pub pve_user: Option<String>,
    /// A file holding the password of --pve-user.
    #[arg(
        long,
        global = true,
        env = "PHOENIX_PVE_PASSWORD_FILE",
        value_name = "FILE",
        help_heading = "Proxmox API"
    )]
    pub pve_password_file: Option<PathBuf>,
    /// Trust the API's certificate when this CA (PEM) signed it (`/etc/pve/pve-root-ca.pem`).
    #[arg(
        long,
        global = true,
        env = "PHOENIX_PVE_CA",
        value_name = "FILE",
        help_heading = "Proxmox API"
    )]
    pub pve_ca: Option<PathBuf>,
    /// Trust exactly the certificate with this SHA-256 fingerprint, as `pvenode cert info`
    /// prints it (`AA:BB:...`, 32 bytes).
    #[arg(
        long,
        global = true,
        env = "PHOENIX_PVE_FINGERPRINT",
        value_name = "SHA256",
        help_heading = "Proxmox API"
    )]
    pub pve_fingerprint: Option<String>,
    /// Do not verify the API's certificate at all (a warning says so on every run).
    #[arg(long, global = true, env = "PHOENIX_PVE_INSECURE", value_parser = clap::builder::BoolishValueParser::new(), help_heading = "Proxmox API")]
    pub pve_insecure: bool,
    /// The node new CTs are created on [default: the node the URL reaches].
    #[arg(
        long,
        global = true,
        env = "PHOENIX_PVE_NODE",
        value_name = "NODE",
        help_heading = "Proxmox API"
    )]
    pub pve_node: Option<String>,
    /// SSH to NODE at ADDR (`pve1=10.0.0.5`, `pve1=10.0.0.5:2222`) instead of the address in
    /// /cluster/status; repeatable, or comma-separated in the environment.
    #[arg(
        long = "pve-ssh-host",
        global = true,
        env = "PHOENIX_PVE_SSH_HOSTS",
        value_name = "NODE=ADDR",
        value_delimiter = ',',
        help_heading = "Proxmox API"
    )]
    pub pve_ssh_hosts: Vec<String>,
    /// The user phoenix logs in as over SSH.
    #[arg(
        long,
        global = true,
        env = "PHOENIX_PVE_SSH_USER",
        value_name = "USER",
        default_value = "root",
        help_heading = "Proxmox API"
    )]
    pub pve_ssh_user: String,
}

impl ApiArgs {
    fn without_empty(mut self) -> ApiArgs {
        fn some<T: AsRef<std::ffi::OsStr>>(v: Option<T>) -> Option<T> {
            v.filter(|v| !v.as_ref().is_empty())
        }
        self.pve_url = some(self.pve_url);
        self.pve_token_file = some(self.pve_token_file);
        self.pve_user = some(self.pve_user);
        self.pve_password_file = some(self.pve_password_file);
        self.pve_ca = some(self.pve_ca);
        self.pve_fingerprint = some(self.pve_fingerprint);
        self.pve_node = some(self.pve_node);
        self
    }

    /// The same options from the environment alone (a hook's `pct`).
    pub fn from_env() -> ApiArgs {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        ApiArgs {
            pve_url: var("PHOENIX_PVE_URL"),
            pve_token_file: var("PHOENIX_PVE_TOKEN_FILE").map(PathBuf::from),
            pve_user: var("PHOENIX_PVE_USER"),
            pve_password_file: var("PHOENIX_PVE_PASSWORD_FILE").map(PathBuf::from),
            pve_ca: var("PHOENIX_PVE_CA").map(PathBuf::from),
            pve_fingerprint: var("PHOENIX_PVE_FINGERPRINT"),
            pve_insecure: var("PHOENIX_PVE_INSECURE")
                .is_some_and(|v| matches!(v.as_str(), "1" | "true" | "yes" | "on")),
            pve_node: var("PHOENIX_PVE_NODE"),
            pve_ssh_hosts: var("PHOENIX_PVE_SSH_HOSTS")
                .map(|v| v.split(',').map(str::to_string).collect())
                .unwrap_or_default(),
            pve_ssh_user: var("PHOENIX_PVE_SSH_USER").unwrap_or_else(|| "root".into()),
        }
    }
}

/// How phoenix proves who it is to Proxmox.
#[derive(Clone)]
pub enum Credential {
    /// An API token: `user@realm!tokenid` and its secret.
    Token { id: String, secret: String },
    /// A user and password, for a ticket (needed for what only `root@pam` may do).
    Password { user: String, password: String },
    /// A ticket already obtained (a hook's `pct`, from phoenix's private file), renewed
    /// with itself as the password.
    Ticket { user: String, file: PathBuf },
}

impl Credential {
    /// The authenticated identity as Proxmox sees it (`root@pam`, `root@pam!phoenix`).
    pub fn identity(&self) -> &str {
        match self {
            Credential::Token { id, .. } => id,
            Credential::Password { user, .. } | Credential::Ticket { user, .. } => user,
        }
    }
    pub fn is_root_pam(&self) -> bool {
        self.identity() == "root@pam"
    }
}

// Never print a secret, even in a debug dump.
impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credential::Token { id, .. } => write!(f, "Token({id})"),
            Credential::Password { user, .. } => write!(f, "Password({user})"),
            Credential::Ticket { user, file } => write!(f, "Ticket({user}, {})", file.display()),
        }
    }
}

/// Parses `user@realm!tokenid=secret` (Proxmox VE's separator is `=`; Proxmox Backup
/// Server's is `:`).
pub fn parse_token(text: &str, source: &str) -> Result<Credential, String> {
    let text = text.trim();
    let bad = || {
        format!(
            "the API token in {source} is not `user@realm!tokenid=secret` (as `pveum user token add root@pam phoenix` prints the parts): fix {source}"
        )
    };
    let (id, secret) = text.split_once('=').ok_or_else(bad)?;
    let (user, tokenid) = id.split_once('!').ok_or_else(bad)?;
    if !user.contains('@') || tokenid.is_empty() || secret.is_empty() {
        return Err(bad());
    }
    Ok(Credential::Token {
        id: id.to_string(),
        secret: secret.to_string(),
    })
}

/// Everything [`host::ApiHost`] needs, checked.
#[derive(Clone, Debug)]
pub struct ApiOptions {
    /// `https://host:port/api2/json`, without a trailing slash.
    pub base: String,
    pub credential: Credential,
    pub trust: tls::Trust,
    pub node: Option<String>,
    pub ssh: ssh::SshOptions,
    /// One HTTP request's limit.
    pub http_timeout: Duration,
    /// One task's limit (clone, create: minutes on a loaded cluster).
    pub task_timeout: Duration,
    /// A ticket is renewed once it is this old (Proxmox's last 2 hours).
    pub ticket_renew: Duration,
}

fn read_secret_file(path: &Path, what: &str) -> Result<String, String> {
    let bytes = crate::os::read_regular(path, 64 << 10).map_err(|e| {
        format!(
            "cannot read the {what} file {}: {}",
            path.display(),
            e.message
        )
    })?;
    let text = String::from_utf8(bytes)
        .map_err(|_| format!("the {what} file {} is not text", path.display()))?;
    let line = text.lines().next().unwrap_or("").trim().to_string();
    if line.is_empty() {
        return Err(format!("the {what} file {} is empty", path.display()));
    }
    Ok(line)
}

fn duration_var(name: &str, default: Duration) -> Result<Duration, String> {
    match std::env::var(name) {
        Ok(v) if !v.is_empty() => v
            .parse::<f64>()
            .ok()
            .filter(|s| *s > 0.0)
            .map(Duration::from_secs_f64)
            .ok_or_else(|| format!("{name}={v} is not a number of seconds")),
        _ => Ok(default),
    }
}

impl ApiOptions {
    /// Checks the options: the URL, exactly one credential, at most one way to trust the
    /// certificate, the SSH addresses.
    pub fn new(a: &ApiArgs) -> Result<ApiOptions, String> {
        // An empty variable is an unset one (a hook's environment clears them so).
        let a = &a.clone().without_empty();
        let url = a
            .pve_url
            .as_deref()
            .ok_or("--pve-url (PHOENIX_PVE_URL) is not set")?;
        let base = base_url(url)?;
        let token_env = secret_var("PHOENIX_PVE_TOKEN");
        let password_env = secret_var("PHOENIX_PVE_PASSWORD");
        let ticket_file = std::env::var_os("PHOENIX_PVE_TICKET_FILE").map(PathBuf::from);
        let credential = match (&token_env, &a.pve_token_file, &a.pve_user) {
            (Some(_), Some(_), _) => {
                return Err(
                    "both PHOENIX_PVE_TOKEN and --pve-token-file are set: give the token once"
                        .into(),
                )
            }
            (Some(t), None, _) => parse_token(t, "PHOENIX_PVE_TOKEN")?,
            (None, Some(f), _) => parse_token(
                &read_secret_file(f, "token")?,
                &format!("--pve-token-file {}", f.display()),
            )?,
            (None, None, Some(user)) => {
                if !user.contains('@') {
                    return Err(format!(
                        "PHOENIX_PVE_USER={user} names no realm: write it as user@realm (root@pam)"
                    ));
                }
                match (&password_env, &a.pve_password_file, &ticket_file) {
                    (Some(_), Some(_), _) => return Err(
                        "both PHOENIX_PVE_PASSWORD and --pve-password-file are set: give the password once"
                            .into(),
                    ),
                    (Some(p), None, _) => Credential::Password {
                        user: user.clone(),
                        password: p.clone(),
                    },
                    (None, Some(f), _) => Credential::Password {
                        user: user.clone(),
                        password: read_secret_file(f, "password")?,
                    },
                    (None, None, Some(file)) => Credential::Ticket {
                        user: user.clone(),
                        file: file.clone(),
                    },
                    (None, None, None) => {
                        return Err(format!(
                            "PHOENIX_PVE_USER={user} has no password: set PHOENIX_PVE_PASSWORD or --pve-password-file"
                        ))
                    }
                }
            }
            (None, None, None) => return Err(
                "no Proxmox credentials: set PHOENIX_PVE_TOKEN (user@realm!tokenid=secret) or --pve-token-file, or PHOENIX_PVE_USER with PHOENIX_PVE_PASSWORD or --pve-password-file"
                    .into(),
            ),
        };
        let trust = match (&a.pve_ca, &a.pve_fingerprint, a.pve_insecure) {
            (None, None, false) => tls::Trust::System,
            (Some(ca), None, false) => tls::Trust::Ca(ca.clone()),
            (None, Some(fp), false) => tls::Trust::Pinned(tls::parse_fingerprint(fp)?),
            (None, None, true) => tls::Trust::Insecure,
            _ => {
                return Err(
                    "--pve-ca, --pve-fingerprint and --pve-insecure are alternatives: give one"
                        .into(),
                )
            }
        };
        let mut hosts = BTreeMap::new();
        for entry in a.pve_ssh_hosts.iter().filter(|e| !e.trim().is_empty()) {
            let (node, addr) = entry.split_once('=').ok_or_else(|| {
                format!("--pve-ssh-host {entry}: write it as NODE=ADDR (pve1=10.0.0.5 or pve1=10.0.0.5:2222)")
            })?;
            hosts.insert(node.trim().to_string(), ssh::Address::parse(addr.trim())?);
        }
        let program = std::env::var_os("PHOENIX_SSH")
            .filter(|p| !p.is_empty())
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("ssh"));
        Ok(ApiOptions {
            base,
            credential,
            trust,
            node: a.pve_node.clone(),
            ssh: ssh::SshOptions {
                program,
                user: a.pve_ssh_user.clone(),
                hosts,
                control_dir: std::env::var_os("PHOENIX_SSH_CONTROL_DIR").map(PathBuf::from),
            },
            http_timeout: duration_var("PHOENIX_PVE_HTTP_TIMEOUT", Duration::from_secs(30))?,
            task_timeout: duration_var("PHOENIX_PVE_TASK_TIMEOUT", Duration::from_secs(1800))?,
            ticket_renew: duration_var("PHOENIX_PVE_TICKET_RENEW", Duration::from_secs(3600))?,
        })
    }
}

/// `https://host:8006` (or with `/api2/json`) as the API's base; only `https`.
pub fn base_url(url: &str) -> Result<String, String> {
    let url = url.trim().trim_end_matches('/');
    let rest = url.strip_prefix("https://").ok_or_else(|| {
        if url.starts_with("http://") {
            format!("--pve-url {url}: the Proxmox API is served over https (https://<node>:8006)")
        } else {
            format!("--pve-url {url} is not an https URL: write it as https://<node>:8006")
        }
    })?;
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    if authority.is_empty() || authority.contains('@') {
        return Err(format!(
            "--pve-url {url}: write it as https://<node>:8006 (credentials never go in the URL)"
        ));
    }
    let path = path.trim_end_matches('/');
    match path {
        "" | "api2/json" => Ok(format!("https://{authority}/api2/json")),
        other => Err(format!(
            "--pve-url {url}: the path /{other} is not Proxmox's API; write https://<node>:8006"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_split_at_the_bang_and_the_equals_sign() {
        let c = parse_token("root@pam!phoenix=aaaa-bbbb\n", "X").unwrap();
        assert_eq!(c.identity(), "root@pam!phoenix");
        assert!(!c.is_root_pam(), "a token is not root@pam itself");
        let e = parse_token("root@pam!phoenix:aaaa", "X").unwrap_err();
        assert!(e.contains("user@realm!tokenid=secret"), "{e}");
        assert!(!e.contains("aaaa"), "the secret is never repeated: {e}");
        assert!(
            format!("{c:?}").contains("root@pam!phoenix") && !format!("{c:?}").contains("aaaa")
        );
    }

    #[test]
    fn the_url_is_https_and_gets_the_api_path() {
        assert_eq!(
            base_url("https://pve1:8006").unwrap(),
            "https://pve1:8006/api2/json"
        );
        assert_eq!(
            base_url("https://pve1:8006/api2/json/").unwrap(),
            "https://pve1:8006/api2/json"
        );
        assert!(base_url("http://pve1:8006").unwrap_err().contains("https"));
        assert!(base_url("https://u:p@pve1:8006").is_err());
        assert!(base_url("https://pve1:8006/ui")
            .unwrap_err()
            .contains("/ui"));
    }
}
