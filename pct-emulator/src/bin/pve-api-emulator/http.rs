//! HTTP/1.1 over TLS, as much as Proxmox's pveproxy speaks to an API client: keep-alive,
//! `Content-Length` bodies, form-encoded parameters, errors as the status line's reason
//! with `{"data": null, "message"}` (and `errors` for a 400), the connection closed after
//! an error [pve-http-server AnyEvent.pm response, Formatter/Standard.pm].

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::{json, Value};

use crate::routes::Cluster;

/// One request: method, path under `/api2/json`, parameters (query and body), headers.
pub struct Request {
    pub method: String,
    /// As sent (with its query), for the request log.
    pub target: String,
    /// Decoded path segments under `/api2/json`.
    pub path: Vec<String>,
    pub params: BTreeMap<String, String>,
    pub headers: BTreeMap<String, String>,
}

pub struct Response {
    pub status: u16,
    pub reason: String,
    pub body: String,
    pub content_type: &'static str,
}

impl Response {
    pub fn data(data: Value) -> Response {
        Response {
            status: 200,
            reason: "OK".into(),
            body: json!({ "data": data }).to_string(),
            content_type: "application/json;charset=UTF-8",
        }
    }

    /// An error: the first line of `message` is the reason phrase.
    pub fn error(status: u16, message: &str) -> Response {
        let reason = message.lines().next().unwrap_or("").trim().to_string();
        Response {
            status,
            reason,
            body: json!({ "data": null, "message": format!("{}\n", message.trim_end()) })
                .to_string(),
            content_type: "application/json;charset=UTF-8",
        }
    }

    /// A 400 naming each bad parameter.
    pub fn params(errors: &[(&str, &str)]) -> Response {
        let errs: serde_json::Map<String, Value> = errors
            .iter()
            .map(|(k, v)| (k.to_string(), Value::String(format!("{v}\n"))))
            .collect();
        Response {
            status: 400,
            reason: "Parameter verification failed.".into(),
            body:
                json!({"data": null, "errors": errs, "message": "Parameter verification failed.\n"})
                    .to_string(),
            content_type: "application/json;charset=UTF-8",
        }
    }
}

/// The CA and the serving certificate (for `localhost` and `127.0.0.1`, signed by the CA,
/// as a node's `pve-ssl.pem` by `pve-root-ca.pem`); the CA is written under the root.
pub fn certificate(root: &Path) -> Result<(rustls::ServerConfig, String, PathBuf), String> {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
    let err = |e: rcgen::Error| format!("certificate: {e}");
    let ca_key = KeyPair::generate().map_err(err)?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(err)?;
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "Proxmox Virtual Environment (emulator)");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca_params.self_signed(&ca_key).map_err(err)?;
    let issuer = Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate().map_err(err)?;
    let mut params = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
        .map_err(err)?;
    params.distinguished_name.push(DnType::CommonName, "pve");
    let cert = params.signed_by(&key, &issuer).map_err(err)?;
    let ca_path = root.join("etc/pve/pve-root-ca.pem");
    if let Some(d) = ca_path.parent() {
        std::fs::create_dir_all(d).map_err(|e| format!("{}: {e}", d.display()))?;
    }
    std::fs::write(&ca_path, ca_cert.pem()).map_err(|e| format!("{}: {e}", ca_path.display()))?;
    let digest = ring::digest::digest(&ring::digest::SHA256, cert.der().as_ref());
    let fingerprint = digest
        .as_ref()
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let key_der = rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(vec![cert.der().clone(), ca_cert.der().clone()], key_der)
        .map_err(|e| format!("certificate: {e}"))?;
    Ok((config, fingerprint, ca_path))
}

/// `%XX` and `+` decoded (form values, query values, path segments).
pub fn decode(s: &str, plus: bool) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => {
                let hex = std::str::from_utf8(&b[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(v) => {
                        out.push(v);
                        i += 3;
                        continue;
                    }
                    None => out.push(b'%'),
                }
            }
            b'+' if plus => out.push(b' '),
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn form(text: &str, into: &mut BTreeMap<String, String>) {
    for pair in text.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        into.insert(decode(k, true), decode(v, true));
    }
}

/// Serves one connection until it closes, or an error closes it.
pub fn serve(stream: TcpStream, config: Arc<rustls::ServerConfig>, cluster: &Cluster) {
    let _ = stream.set_nodelay(true);
    let Ok(conn) = rustls::ServerConnection::new(config) else {
        return;
    };
    let tls = rustls::StreamOwned::new(conn, stream);
    let mut reader = BufReader::new(tls);
    loop {
        let Some(req) = read_request(&mut reader) else {
            return;
        };
        let resp = cluster.handle(&req);
        cluster.log_request(&req, resp.status);
        let close = resp.status >= 400
            || req
                .headers
                .get("connection")
                .is_some_and(|c| c.eq_ignore_ascii_case("close"));
        let head = format!(
            "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: {}\r\n\r\n",
            resp.status,
            resp.reason,
            resp.content_type,
            resp.body.len(),
            if close { "close" } else { "Keep-Alive" }
        );
        let w = reader.get_mut();
        if w.write_all(head.as_bytes()).is_err()
            || w.write_all(resp.body.as_bytes()).is_err()
            || w.flush().is_err()
        {
            return;
        }
        if close {
            w.conn.send_close_notify();
            let _ = w.flush();
            return;
        }
    }
}

fn read_request<R: BufRead>(reader: &mut R) -> Option<Request> {
    let mut head = Vec::new();
    loop {
        let mut line = Vec::new();
        let n = reader.read_until(b'\n', &mut line).ok()?;
        if n == 0 {
            return None;
        }
        head.extend_from_slice(&line);
        if line == b"\r\n" || line == b"\n" {
            break;
        }
        if head.len() > 64 << 10 {
            return None;
        }
    }
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut parsed = httparse::Request::new(&mut headers);
    match parsed.parse(&head) {
        Ok(httparse::Status::Complete(_)) => {}
        _ => return None,
    }
    let method = parsed.method?.to_string();
    let target = parsed.path?.to_string();
    let mut hmap = BTreeMap::new();
    for h in parsed.headers.iter() {
        hmap.insert(
            h.name.to_ascii_lowercase(),
            String::from_utf8_lossy(h.value).into_owned(),
        );
    }
    let len: usize = hmap
        .get("content-length")
        .and_then(|l| l.trim().parse().ok())
        .unwrap_or(0);
    let mut body = vec![0u8; len.min(16 << 20)];
    reader.read_exact(&mut body).ok()?;
    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
    let mut params = BTreeMap::new();
    form(query, &mut params);
    form(&String::from_utf8_lossy(&body), &mut params);
    let path = path
        .strip_prefix("/api2/json")
        .unwrap_or(path)
        .split('/')
        .filter(|s| !s.is_empty())
        .map(|s| decode(s, false))
        .collect();
    Some(Request {
        method,
        target,
        path,
        params,
        headers: hmap,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms_decode() {
        let mut m = BTreeMap::new();
        form("description=Managed+by%0Aphoenix&snapname=phx-1", &mut m);
        assert_eq!(m["description"], "Managed by\nphoenix");
        assert_eq!(decode("UPID%3Apve%3A", false), "UPID:pve:");
        assert_eq!(decode("50%", false), "50%");
    }
}
