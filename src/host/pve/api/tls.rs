//! Trusting the API's certificate. A Proxmox node serves a certificate signed by its
//! cluster's own CA (`/etc/pve/pve-root-ca.pem`) unless an admin installed another, so
//! the system's roots rarely know it: phoenix takes the CA file, or the certificate's
//! SHA-256 fingerprint as `pvenode cert info` prints it (`AA:BB:...`), or, only when
//! asked, no verification. Whatever the mode, the fingerprint of the certificate the
//! server showed is kept, so that a refusal can name it.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

/// How the API's certificate is trusted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Trust {
    /// The system's roots (`/etc/ssl/certs`).
    System,
    /// Certificates signed by this CA (PEM).
    Ca(PathBuf),
    /// Exactly the certificate with this SHA-256.
    Pinned([u8; 32]),
    /// No verification.
    Insecure,
}

/// `AA:BB:...` (as `pvenode cert info` prints it; case and colons optional).
pub fn parse_fingerprint(text: &str) -> Result<[u8; 32], String> {
    let hex: String = text
        .trim()
        .chars()
        .filter(|c| *c != ':' && !c.is_whitespace())
        .collect();
    let bad = || {
        format!(
            "--pve-fingerprint {text} is not a SHA-256 fingerprint: give the 32 colon-separated bytes `pvenode cert info` prints as `Fingerprint (sha256)`"
        )
    };
    if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(bad());
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).map_err(|_| bad())?;
    }
    Ok(out)
}

/// As `pvenode cert info` prints it: upper-case hex bytes joined by colons.
pub fn format_fingerprint(fp: &[u8]) -> String {
    fp.iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// The SHA-256 of a DER certificate.
pub fn fingerprint(der: &[u8]) -> [u8; 32] {
    let d = ring::digest::digest(&ring::digest::SHA256, der);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// What the last handshake showed and why it was refused, for the error message.
#[derive(Clone, Debug, Default)]
pub struct Seen {
    pub fingerprint: Option<[u8; 32]>,
    pub refusal: Option<String>,
}

#[derive(Debug)]
struct Verifier {
    trust: Trust,
    /// The system's or the CA's verifier; `None` when pinned or insecure.
    webpki: Option<Arc<dyn ServerCertVerifier>>,
    provider: Arc<CryptoProvider>,
    seen: Arc<Mutex<Seen>>,
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let fp = fingerprint(end_entity.as_ref());
        let result = match (&self.trust, &self.webpki) {
            (Trust::Insecure, _) => Ok(ServerCertVerified::assertion()),
            // A pinned certificate is the server's identity: its names and issuer do not
            // matter (a node's certificate names the node, not the address used).
            (Trust::Pinned(want), _) if *want == fp => Ok(ServerCertVerified::assertion()),
            (Trust::Pinned(want), _) => Err(rustls::Error::General(format!(
                "its certificate's SHA-256 fingerprint is {}, not the pinned {}",
                format_fingerprint(&fp),
                format_fingerprint(want)
            ))),
            (_, Some(inner)) => inner
                .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
                .map_err(|e| rustls::Error::General(format!("{e}"))),
            (_, None) => Err(rustls::Error::General("no verifier".into())),
        };
        if let Ok(mut seen) = self.seen.lock() {
            seen.fingerprint = Some(fp);
            seen.refusal = result.as_ref().err().map(|e| match e {
                rustls::Error::General(m) => m.clone(),
                other => other.to_string(),
            });
        }
        result
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// A client configuration for `trust`, and where the last handshake's certificate is
/// recorded.
pub fn client_config(trust: &Trust) -> Result<(rustls::ClientConfig, Arc<Mutex<Seen>>), String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let roots = |certs: Vec<CertificateDer<'static>>, what: &str| {
        let mut store = rustls::RootCertStore::empty();
        let (added, _) = store.add_parsable_certificates(certs);
        if added == 0 {
            return Err(format!("{what} holds no usable certificate"));
        }
        rustls::client::WebPkiServerVerifier::builder_with_provider(
            Arc::new(store),
            provider.clone(),
        )
        .build()
        .map(|v| v as Arc<dyn ServerCertVerifier>)
        .map_err(|e| format!("{what}: {e}"))
    };
    let webpki = match trust {
        Trust::System => {
            let found = rustls_native_certs::load_native_certs();
            Some(roots(
                found.certs,
                "the system's certificate store (/etc/ssl/certs)",
            )?)
        }
        Trust::Ca(path) => {
            use rustls::pki_types::pem::PemObject;
            let what = format!("--pve-ca {}", path.display());
            let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
                .map_err(|e| format!("cannot read {what}: {e}"))?
                .collect::<Result<_, _>>()
                .map_err(|e| format!("{what} is not a PEM certificate file: {e}"))?;
            Some(roots(certs, &what)?)
        }
        Trust::Pinned(_) | Trust::Insecure => None,
    };
    let seen = Arc::new(Mutex::new(Seen::default()));
    let verifier = Verifier {
        trust: trust.clone(),
        webpki,
        provider: provider.clone(),
        seen: seen.clone(),
    };
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    Ok((config, seen))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_read_as_pvenode_prints_them() {
        let fp = [0xabu8; 32];
        let text = format_fingerprint(&fp);
        assert_eq!(&text[..8], "AB:AB:AB");
        assert_eq!(parse_fingerprint(&text).unwrap(), fp);
        assert_eq!(
            parse_fingerprint(&text.to_lowercase().replace(':', "")).unwrap(),
            fp
        );
        let e = parse_fingerprint("AB:CD").unwrap_err();
        assert!(e.contains("pvenode cert info"), "{e}");
    }
}
