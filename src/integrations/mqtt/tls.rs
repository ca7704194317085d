//! TLS to the broker: the rustls client config (ring, the CAs of `mqtt.ca_file` or Mozilla's
//! roots, an optional client certificate), and what a failed handshake means, in one line.
//!
//! The broker's certificate is always verified against the URL's host (a DNS name or an IP
//! address); there is deliberately no way to turn that off.

use std::sync::Arc;

use rustls::pki_types::UnixTime;
use rustls::sign::SingleCertAndKey;
use rustls::{AlertDescription, CertificateError, ClientConfig, Error, RootCertStore};

use crate::pem::{self, TlsFiles};

/// Which TLS files the bridge has, so an explanation can name the key to change.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Setup {
    /// `mqtt.ca_file` is given (otherwise Mozilla's roots are trusted).
    pub own_ca: bool,
    /// `mqtt.client_cert_file` and `client_key_file` are given.
    pub client_cert: bool,
}

impl Setup {
    pub fn of(files: &TlsFiles) -> Setup {
        Setup {
            own_ca: files.ca.is_some(),
            client_cert: files.client.is_some(),
        }
    }
}

pub fn client_config(files: &TlsFiles) -> Result<ClientConfig, Error> {
    // Compiled-in roots: no dependence on /etc/ssl, which the hardened unit or a minimal system
    // may not have.
    let roots = files.ca.clone().unwrap_or_else(|| RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    });
    let provider = pem::crypto_provider();
    let versions = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?;
    let builder = match files.pin {
        Some(pin) => versions
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(super::pin::Pinned::new(pin, &provider))),
        None => versions.with_root_certificates(roots),
    };
    Ok(match &files.client {
        Some(id) => {
            builder.with_client_cert_resolver(Arc::new(SingleCertAndKey::from(id.0.clone())))
        }
        None => builder.with_no_client_auth(),
    })
}

/// The rustls error somewhere in a connection error's chain. tokio-rustls wraps it in an
/// `io::Error`, whose `source()` skips the error it wraps, so those are looked into as well.
pub fn find<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a Error> {
    let mut next = Some(e);
    while let Some(e) = next {
        if let Some(tls) = e.downcast_ref::<Error>() {
            return Some(tls);
        }
        if let Some(tls) = e
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .and_then(|inner| inner.downcast_ref::<Error>())
        {
            return Some(tls);
        }
        next = e.source();
    }
    None
}

/// One line for a person: what failed in the handshake and which key to look at.
pub fn explain(e: &Error, setup: Setup) -> String {
    match e {
        Error::InvalidCertificate(c) => certificate(c, setup),
        Error::AlertReceived(a) => alert(*a, setup),
        Error::InvalidMessage(_) | Error::InappropriateMessage { .. } => {
            "TLS: the broker did not answer in TLS (is the port a plain mqtt:// one?)".into()
        }
        Error::NoCertificatesPresented => "TLS: the broker presented no certificate".into(),
        other => format!("TLS: {other}"),
    }
}

fn certificate(c: &CertificateError, setup: Setup) -> String {
    use CertificateError::*;
    match c {
        UnknownIssuer if setup.own_ca => {
            "TLS: the broker's certificate is not trusted: unknown issuer (no CA in mqtt.ca_file signed it)".into()
        }
        UnknownIssuer => {
            "TLS: the broker's certificate is not trusted: unknown issuer (not a public CA; give the broker's CA in mqtt.ca_file)".into()
        }
        NotValidForNameContext {
            expected,
            presented,
        } => {
            let names: Vec<&str> = presented.iter().map(|p| presented_name(p)).collect();
            let host = expected.to_str();
            if names.is_empty() {
                // Made the way Mosquitto's TLS guide makes it: the name only in the CN.
                return format!(
                    "TLS: the broker's certificate names no host (no subjectAltName; a name only in the CN is not checked): re-issue it with `{}`, or pin it with mqtt.server_cert_sha256",
                    reissue(&host)
                );
            }
            format!(
                "TLS: name mismatch: the broker's certificate is not valid for `{host}` (the host in mqtt.url); it names {}",
                names.join(", ")
            )
        }
        Other(o) => match o.0.downcast_ref::<super::pin::NotPinned>() {
            Some(p) => format!(
                "TLS: the broker's certificate is not the pinned one (mqtt.server_cert_sha256): {p}"
            ),
            None if format!("{o:?}").contains("UnsupportedCertVersion") => format!(
                "TLS: the broker's certificate is X.509 version 1 (as `openssl x509 -req` makes it without an extension file), which cannot name a host: re-issue it with `{}`, or pin it with mqtt.server_cert_sha256",
                reissue("<broker host>")
            ),
            None => format!("TLS: the broker's certificate is refused: {o:?}"),
        },
        NotValidForName => {
            "TLS: name mismatch: the broker's certificate is not valid for the host in mqtt.url"
                .into()
        }
        ExpiredContext { not_after, .. } => format!(
            "TLS: the broker's certificate has expired (on {})",
            date(*not_after)
        ),
        Expired => "TLS: the broker's certificate has expired".into(),
        NotValidYetContext { not_before, .. } => format!(
            "TLS: the broker's certificate is not valid yet (from {}; is this machine's clock right?)",
            date(*not_before)
        ),
        NotValidYet => {
            "TLS: the broker's certificate is not valid yet (is this machine's clock right?)".into()
        }
        Revoked => "TLS: the broker's certificate is revoked".into(),
        InvalidPurpose | InvalidPurposeContext { .. } => {
            "TLS: the broker's certificate is not for a TLS server (extended key usage)".into()
        }
        other => format!("TLS: the broker's certificate is refused: {other}"),
    }
}

/// The guide's signing command with the extension that names the host.
fn reissue(host: &str) -> String {
    let san = if host.parse::<std::net::IpAddr>().is_ok() {
        format!("IP:{host}")
    } else {
        format!("DNS:{host}")
    };
    format!("openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out server.crt -days 3650 -extfile <(printf 'subjectAltName={san}')")
}

fn alert(a: AlertDescription, setup: Setup) -> String {
    use AlertDescription::*;
    match a {
        CertificateRequired => {
            "TLS: the broker requires a client certificate: give mqtt.client_cert_file and mqtt.client_key_file".into()
        }
        // TLS 1.2 has no alert of its own for a missing client certificate.
        HandshakeFailure if !setup.client_cert => {
            "TLS: the broker ended the handshake (handshake failure); it may require a client certificate: give mqtt.client_cert_file and mqtt.client_key_file".into()
        }
        BadCertificate | UnknownCA | CertificateUnknown | UnsupportedCertificate
        | CertificateExpired | CertificateRevoked | AccessDenied | DecryptError
            if setup.client_cert =>
        {
            format!(
                "TLS: the broker refused our client certificate (mqtt.client_cert_file; alert: {})",
                alert_name(a)
            )
        }
        other => format!("TLS: the broker ended the handshake (alert: {})", alert_name(other)),
    }
}

/// `UnknownCA` → `unknown CA`, for a person reading a log.
fn alert_name(a: AlertDescription) -> String {
    let raw = format!("{a:?}");
    let mut out = String::with_capacity(raw.len() + 4);
    let chars: Vec<char> = raw.chars().collect();
    for (i, c) in chars.iter().enumerate() {
        let next_lower = chars.get(i + 1).is_some_and(|n| n.is_lowercase());
        let prev_lower = i > 0 && chars[i - 1].is_lowercase();
        if i > 0 && c.is_uppercase() && (prev_lower || next_lower) {
            out.push(' ');
        }
        if c.is_uppercase() && next_lower {
            out.extend(c.to_lowercase());
        } else {
            out.push(*c);
        }
    }
    out
}

/// webpki shows names as `DnsName("x")` and `IpAddress(1.2.3.4)`; a person wants `x`.
fn presented_name(p: &str) -> &str {
    p.strip_prefix("DnsName(\"")
        .and_then(|r| r.strip_suffix("\")"))
        .or_else(|| {
            p.strip_prefix("IpAddress(")
                .and_then(|r| r.strip_suffix(')'))
        })
        .unwrap_or(p)
}

fn date(t: UnixTime) -> String {
    let at = std::time::UNIX_EPOCH + std::time::Duration::from_secs(t.as_secs());
    humantime::format_rfc3339_seconds(at).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::pki_types::ServerName;

    const NO_FILES: Setup = Setup {
        own_ca: false,
        client_cert: false,
    };
    const OWN_CA: Setup = Setup {
        own_ca: true,
        client_cert: false,
    };
    const WITH_CLIENT_CERT: Setup = Setup {
        own_ca: true,
        client_cert: true,
    };

    fn cert_error(c: CertificateError) -> Error {
        Error::InvalidCertificate(c)
    }

    #[test]
    fn an_unknown_issuer_points_at_ca_file() {
        let with = explain(&cert_error(CertificateError::UnknownIssuer), OWN_CA);
        assert!(
            with.contains("unknown issuer") && with.contains("mqtt.ca_file"),
            "{with}"
        );
        let without = explain(&cert_error(CertificateError::UnknownIssuer), NO_FILES);
        assert!(
            without.contains("give the broker's CA in mqtt.ca_file"),
            "{without}"
        );
    }

    #[test]
    fn a_certificate_naming_its_host_only_in_the_cn_says_how_to_reissue_it_for_that_host() {
        let e = cert_error(CertificateError::NotValidForNameContext {
            expected: ServerName::try_from("127.0.0.1").expect("ip"),
            presented: vec![],
        });
        let line = explain(&e, OWN_CA);
        assert!(line.contains("names no host"), "{line}");
        assert!(line.contains("subjectAltName=IP:127.0.0.1"), "{line}");
        let e = cert_error(CertificateError::NotValidForNameContext {
            expected: ServerName::try_from("broker.example").expect("dns"),
            presented: vec![],
        });
        assert!(
            explain(&e, OWN_CA).contains("subjectAltName=DNS:broker.example"),
            "a DNS name"
        );
    }

    #[test]
    fn a_name_mismatch_says_which_name_was_expected_and_which_were_presented() {
        let e = cert_error(CertificateError::NotValidForNameContext {
            expected: ServerName::try_from("127.0.0.1").expect("ip"),
            presented: vec![r#"DnsName("other.example")"#.into()],
        });
        let line = explain(&e, OWN_CA);
        assert!(
            line.contains("name mismatch")
                && line.contains("`127.0.0.1`")
                && line.ends_with("it names other.example"),
            "{line}"
        );
    }

    #[test]
    fn an_expired_certificate_says_when_it_expired() {
        let e = cert_error(CertificateError::ExpiredContext {
            time: UnixTime::since_unix_epoch(std::time::Duration::from_secs(1_800_000_000)),
            not_after: UnixTime::since_unix_epoch(std::time::Duration::from_secs(978_307_200)),
        });
        assert_eq!(
            explain(&e, OWN_CA),
            "TLS: the broker's certificate has expired (on 2001-01-01T00:00:00Z)"
        );
    }

    #[test]
    fn a_certificate_not_yet_valid_suspects_the_clock() {
        let e = cert_error(CertificateError::NotValidYet);
        assert!(explain(&e, OWN_CA).contains("clock"));
    }

    #[test]
    fn a_required_client_certificate_names_the_keys_to_set() {
        let line = explain(
            &Error::AlertReceived(AlertDescription::CertificateRequired),
            OWN_CA,
        );
        assert!(
            line.contains("requires a client certificate")
                && line.contains("mqtt.client_cert_file"),
            "{line}"
        );
        let tls12 = explain(
            &Error::AlertReceived(AlertDescription::HandshakeFailure),
            OWN_CA,
        );
        assert!(tls12.contains("client certificate"), "{tls12}");
    }

    #[test]
    fn a_refused_client_certificate_says_so_with_the_alert() {
        let line = explain(
            &Error::AlertReceived(AlertDescription::UnknownCA),
            WITH_CLIENT_CERT,
        );
        assert_eq!(
            line,
            "TLS: the broker refused our client certificate (mqtt.client_cert_file; alert: unknown CA)"
        );
    }

    #[test]
    fn alerts_read_as_words() {
        assert_eq!(
            alert_name(AlertDescription::BadCertificate),
            "bad certificate"
        );
        assert_eq!(alert_name(AlertDescription::UnknownCA), "unknown CA");
        assert_eq!(
            alert_name(AlertDescription::CertificateRequired),
            "certificate required"
        );
    }

    #[test]
    fn a_rustls_error_is_found_inside_the_io_error_tokio_rustls_wraps_it_in() {
        let io = std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            cert_error(CertificateError::UnknownIssuer),
        );
        assert_eq!(
            find(&io),
            Some(&cert_error(CertificateError::UnknownIssuer))
        );
        let plain = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert_eq!(find(&plain), None);
    }

    #[test]
    fn the_client_config_builds_with_mozillas_roots_when_no_ca_file_is_given() {
        let config = client_config(&TlsFiles::default()).expect("builds");
        assert!(!config.client_auth_cert_resolver.has_certs());
    }
}
