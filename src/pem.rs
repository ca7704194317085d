//! PEM files for TLS to the broker: the CA bundle, the client certificate and its key.
//!
//! They are read once, while the config is loaded, like the password files: systemd credentials
//! (`$CREDENTIALS_DIRECTORY`) and files only root may read are there at start, and a broken file
//! is a config error naming its key instead of a failure at every reconnect. Errors say what is
//! wrong with a file and never quote it: a key file's text is a secret.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;
use rustls::RootCertStore;

#[derive(Debug, thiserror::Error)]
pub enum PemError {
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{} is not valid PEM: {reason}", path.display())]
    NotPem { path: PathBuf, reason: &'static str },
    #[error("{} holds no certificate (a PEM `BEGIN CERTIFICATE` section)", path.display())]
    NoCertificate { path: PathBuf },
    #[error("certificate {index} in {} is not a valid X.509 certificate ({reason})", path.display())]
    BadCertificate {
        path: PathBuf,
        index: usize,
        reason: String,
    },
    #[error("{} holds no private key (PEM `PRIVATE KEY`, `RSA PRIVATE KEY` or `EC PRIVATE KEY`)", path.display())]
    NoKey { path: PathBuf },
    #[error("the key in {} does not belong to the certificate in {}", key.display(), cert.display())]
    KeyMismatch { cert: PathBuf, key: PathBuf },
    #[error("the key in {} cannot be used ({reason})", path.display())]
    UnusableKey { path: PathBuf, reason: String },
}

/// The one crypto provider of the bridge: ring builds with the cross gcc the cross builds already
/// use; rustls's default, aws-lc-rs, would add cmake to every target's toolchain.
pub fn crypto_provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// What the TLS connection trusts and presents, as read from the config's files.
#[derive(Debug, Clone, Default)]
pub struct TlsFiles {
    /// The CAs of `mqtt.ca_file`; `None`: Mozilla's roots, compiled in.
    pub ca: Option<RootCertStore>,
    /// `mqtt.client_cert_file` and `mqtt.client_key_file`.
    pub client: Option<ClientIdentity>,
    /// `mqtt.server_cert_sha256`: trust exactly the broker certificate with this SHA-256.
    pub pin: Option<[u8; 32]>,
}

/// A client certificate chain with its key, checked to belong together.
#[derive(Clone)]
pub struct ClientIdentity(pub Arc<CertifiedKey>);

impl fmt::Debug for ClientIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "ClientIdentity({} certificates, key ***)",
            self.0.cert.len()
        )
    }
}

fn read(path: &Path) -> Result<Vec<u8>, PemError> {
    std::fs::read(path).map_err(|source| PemError::Read {
        path: path.into(),
        source,
    })
}

/// Our words for a PEM syntax error: the library's quote the offending line.
fn pem_reason(e: &pem::Error) -> &'static str {
    match e {
        pem::Error::MissingSectionEnd { .. } => "a section has no END line",
        pem::Error::IllegalSectionStart { .. } => "a malformed BEGIN line",
        pem::Error::Base64Decode(_) => "a section is not valid base64",
        pem::Error::SectionTooLarge => "a section is too large",
        _ => "unreadable",
    }
}

/// Every certificate in a PEM file, in order; at least one.
pub fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, PemError> {
    let bytes = read(path)?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| PemError::NotPem {
            path: path.into(),
            reason: pem_reason(&e),
        })?;
    if certs.is_empty() {
        return Err(PemError::NoCertificate { path: path.into() });
    }
    Ok(certs)
}

/// A CA bundle as trust anchors; every certificate in it must be one.
pub fn ca_bundle(path: &Path) -> Result<RootCertStore, PemError> {
    let mut store = RootCertStore::empty();
    for (i, cert) in certificates(path)?.into_iter().enumerate() {
        store.add(cert).map_err(|e| PemError::BadCertificate {
            path: path.into(),
            index: i + 1,
            reason: e.to_string(),
        })?;
    }
    Ok(store)
}

/// The first private key in a PEM file.
pub fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>, PemError> {
    let bytes = read(path)?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| match e {
        pem::Error::NoItemsFound => PemError::NoKey { path: path.into() },
        e => PemError::NotPem {
            path: path.into(),
            reason: pem_reason(&e),
        },
    })
}

/// A client certificate chain (from `cert`) and its key (from `key`), checked to belong
/// together.
///
/// Any X.509 version is taken: `openssl x509 -req` without an extension file (as Mosquitto's
/// TLS guide does it) makes version 1 certificates, which rustls's parser refuses, while
/// Mosquitto accepts them; judging the client's certificate is the broker's job. So the key is
/// matched by comparing its public key with the certificate's, read with a small DER walk.
pub fn client_identity(
    chain: Vec<CertificateDer<'static>>,
    der: PrivateKeyDer<'static>,
    cert: &Path,
    key: &Path,
) -> Result<ClientIdentity, PemError> {
    let signing = crypto_provider()
        .key_provider
        .load_private_key(der)
        .map_err(|e| PemError::UnusableKey {
            path: key.into(),
            reason: e.to_string(),
        })?;
    let first = chain
        .first()
        .ok_or_else(|| PemError::NoCertificate { path: cert.into() })?;
    let spki = subject_public_key_info(first).ok_or_else(|| PemError::BadCertificate {
        path: cert.into(),
        index: 1,
        reason: "its public key cannot be found".into(),
    })?;
    let public = signing.public_key().ok_or_else(|| PemError::UnusableKey {
        path: key.into(),
        reason: "its public key cannot be derived".into(),
    })?;
    if !spki.matches(public.as_ref()) {
        return Err(PemError::KeyMismatch {
            cert: cert.into(),
            key: key.into(),
        });
    }
    Ok(ClientIdentity(Arc::new(CertifiedKey::new(chain, signing))))
}

/// A certificate's SubjectPublicKeyInfo: the whole element and its content.
pub struct Spki<'a> {
    whole: &'a [u8],
    content: &'a [u8],
}

impl<'a> Spki<'a> {
    /// Whether `der` (a SubjectPublicKeyInfo, with or without its outer header) is this one.
    fn matches(&self, der: &[u8]) -> bool {
        der == self.whole || der == self.content
    }

    /// The algorithm identifier's content (as webpki names algorithms) and the key's bits.
    pub fn parts(&self) -> Option<(&'a [u8], &'a [u8])> {
        let (alg, rest) = sequence(self.content)?;
        let (bits_tag, bits, _) = element(rest)?;
        // A BIT STRING whose first byte counts unused bits (0 for a key).
        if bits_tag != 0x03 || bits.first() != Some(&0) {
            return None;
        }
        Some((alg, &bits[1..]))
    }
}

/// One DER element at the start of `der`: its tag, its content, and what follows it.
fn element(der: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = der.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
        (len, &rest[n..])
    };
    if rest.len() < len {
        return None;
    }
    Some((tag, &rest[..len], &rest[len..]))
}

/// A DER SEQUENCE at the start of `der`: its content and what follows it.
fn sequence(der: &[u8]) -> Option<(&[u8], &[u8])> {
    let (tag, content, rest) = element(der)?;
    (tag == 0x30).then_some((content, rest))
}

/// The SubjectPublicKeyInfo of an X.509 certificate of any version (RFC 5280, 4.1): the
/// seventh element of tbsCertificate when it has a version, the sixth when not (version 1).
pub fn subject_public_key_info(cert: &[u8]) -> Option<Spki<'_>> {
    let (certificate, _) = sequence(cert)?;
    let (mut tbs, _) = sequence(certificate)?;
    // [0] EXPLICIT version, absent in version 1.
    if tbs.first() == Some(&0xa0) {
        tbs = element(tbs)?.2;
    }
    // serialNumber, signature, issuer, validity, subject.
    for _ in 0..5 {
        tbs = element(tbs)?.2;
    }
    let (content, after) = sequence(tbs)?;
    Some(Spki {
        whole: &tbs[..tbs.len() - after.len()],
        content,
    })
}

/// `mqtt.server_cert_sha256`: 64 hex digits, with or without colons, as openssl prints them
/// (`sha256 Fingerprint=` before them is taken too).
pub fn sha256_pin(text: &str) -> Result<[u8; 32], String> {
    let t = text.trim();
    let t = t
        .split_once('=')
        .filter(|(head, _)| head.to_ascii_lowercase().contains("fingerprint"))
        .map_or(t, |(_, v)| v.trim());
    let hex: String = t.chars().filter(|c| *c != ':').collect();
    if hex.len() != 64 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(
            "give the broker certificate's SHA-256 as `openssl x509 -noout -fingerprint -sha256 -in server.crt` prints it (64 hex digits, colons optional)".into(),
        );
    }
    let mut out = [0u8; 32];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).map_err(|e| e.to_string())?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).expect("write");
        p
    }

    fn self_signed(name: &str) -> (String, String) {
        let key = rcgen::KeyPair::generate().expect("key");
        let cert = rcgen::CertificateParams::new(vec![name.to_string()])
            .expect("params")
            .self_signed(&key)
            .expect("cert");
        (cert.pem(), key.serialize_pem())
    }

    #[test]
    fn a_ca_bundle_of_several_certificates_gives_each_as_a_trust_anchor() {
        let dir = tempfile::tempdir().expect("tempdir");
        let bundle = format!("{}\n{}", self_signed("a").0, self_signed("b").0);
        let store = ca_bundle(&write(dir.path(), "ca.pem", &bundle)).expect("reads");
        assert_eq!(store.len(), 2);
    }

    #[test]
    fn a_file_without_certificates_is_refused_in_words() {
        let dir = tempfile::tempdir().expect("tempdir");
        let e =
            ca_bundle(&write(dir.path(), "ca.pem", "not a certificate\n")).expect_err("no cert");
        assert!(matches!(e, PemError::NoCertificate { .. }), "{e}");
        let torn = "-----BEGIN CERTIFICATE-----\nMIIB\n";
        let e = ca_bundle(&write(dir.path(), "torn.pem", torn)).expect_err("torn");
        assert_eq!(
            e.to_string(),
            format!(
                "{} is not valid PEM: a section has no END line",
                dir.path().join("torn.pem").display()
            )
        );
    }

    #[test]
    fn a_certificate_whose_base64_is_not_x509_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let junk = "-----BEGIN CERTIFICATE-----\naGVsbG8gd29ybGQ=\n-----END CERTIFICATE-----\n";
        let e = ca_bundle(&write(dir.path(), "ca.pem", junk)).expect_err("not x509");
        assert!(
            matches!(e, PemError::BadCertificate { index: 1, .. }),
            "{e}"
        );
    }

    /// A CA and a client certificate made exactly as `man mosquitto-tls` makes them (OpenSSL 3:
    /// `x509 -req` without an extension file, so X.509 version 1). `None` without openssl.
    fn guide_client_certificate(dir: &Path) -> Option<(PathBuf, PathBuf)> {
        let run = |args: &[&str]| {
            std::process::Command::new("openssl")
                .args(args)
                .current_dir(dir)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        };
        let made = run(&["genrsa", "-out", "ca.key", "2048"])
            && run(&[
                "req",
                "-new",
                "-x509",
                "-days",
                "30",
                "-key",
                "ca.key",
                "-out",
                "ca.crt",
                "-subj",
                "/CN=guide-ca",
            ])
            && run(&["genrsa", "-out", "client.key", "2048"])
            && run(&[
                "req",
                "-out",
                "client.csr",
                "-key",
                "client.key",
                "-new",
                "-subj",
                "/CN=bridge",
            ])
            && run(&[
                "x509",
                "-req",
                "-in",
                "client.csr",
                "-CA",
                "ca.crt",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                "client.crt",
                "-days",
                "30",
            ]);
        made.then(|| (dir.join("client.crt"), dir.join("client.key")))
    }

    #[test]
    fn a_version_1_client_certificate_made_by_the_mosquitto_guide_is_taken() {
        let dir = tempfile::tempdir().expect("tempdir");
        let Some((c, k)) = guide_client_certificate(dir.path()) else {
            panic!("openssl is needed for this test (apt-get install openssl)");
        };
        let chain = certificates(&c).expect("cert");
        // The guide's commands do make version 1: no [0] version element.
        let (_, tbs, _) = element(&chain[0])
            .and_then(|(_, c, _)| element(c))
            .expect("tbs");
        assert_ne!(tbs.first(), Some(&0xa0), "a version 1 certificate");
        client_identity(chain, private_key(&k).expect("key"), &c, &k).expect("taken");
    }

    #[test]
    fn a_version_1_client_certificate_with_another_key_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let Some((c, _)) = guide_client_certificate(dir.path()) else {
            panic!("openssl is needed for this test (apt-get install openssl)");
        };
        let (_, other) = self_signed("other");
        let k = write(dir.path(), "other.key", &other);
        let e = client_identity(
            certificates(&c).expect("cert"),
            private_key(&k).expect("key"),
            &c,
            &k,
        )
        .expect_err("mismatch");
        assert!(matches!(e, PemError::KeyMismatch { .. }), "{e}");
    }

    #[test]
    fn a_truncated_certificate_has_no_public_key_and_does_not_panic() {
        let (cert, _) = self_signed("bridge");
        let dir = tempfile::tempdir().expect("tempdir");
        let der = certificates(&write(dir.path(), "c.pem", &cert)).expect("cert");
        let der = der[0].as_ref();
        assert!(subject_public_key_info(der).is_some());
        for n in 0..der.len() {
            let _ = subject_public_key_info(&der[..n]);
        }
        assert!(subject_public_key_info(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]).is_none());
    }

    #[test]
    fn a_pin_reads_as_openssl_prints_it() {
        let colons = "sha256 Fingerprint=AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89";
        let p = sha256_pin(colons).expect("pin");
        assert_eq!(p[0], 0xab);
        assert_eq!(p[31], 0x89);
        assert_eq!(
            sha256_pin(&colons[19..].replace(':', "").to_lowercase()),
            Ok(p)
        );
    }

    #[test]
    fn a_pin_of_the_wrong_length_or_not_hex_is_refused() {
        assert!(sha256_pin("AB:CD").is_err());
        assert!(sha256_pin(&"zz".repeat(32)).is_err());
        assert!(sha256_pin("").is_err());
        assert!(sha256_pin(&"é".repeat(64)).is_err());
    }

    #[test]
    fn a_key_that_belongs_to_another_certificate_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (cert, _) = self_signed("bridge");
        let (_, other_key) = self_signed("other");
        let (c, k) = (
            write(dir.path(), "c.pem", &cert),
            write(dir.path(), "k.pem", &other_key),
        );
        let e = client_identity(
            certificates(&c).expect("cert"),
            private_key(&k).expect("key"),
            &c,
            &k,
        )
        .expect_err("mismatch");
        assert!(matches!(e, PemError::KeyMismatch { .. }), "{e}");
    }

    #[test]
    fn a_matching_certificate_and_key_make_an_identity_that_never_prints_the_key() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (cert, key) = self_signed("bridge");
        let (c, k) = (
            write(dir.path(), "c.pem", &cert),
            write(dir.path(), "k.pem", &key),
        );
        let id = client_identity(
            certificates(&c).expect("cert"),
            private_key(&k).expect("key"),
            &c,
            &k,
        )
        .expect("identity");
        assert_eq!(format!("{id:?}"), "ClientIdentity(1 certificates, key ***)");
    }

    #[test]
    fn a_broken_key_file_is_refused_without_quoting_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (_, key) = self_signed("bridge");
        // A key with its END line cut off: the error must not echo any of its text.
        let torn: String = key.lines().take(2).collect::<Vec<_>>().join("\n");
        let e = private_key(&write(dir.path(), "k.pem", &torn)).expect_err("torn");
        let secret_line = key.lines().nth(1).expect("a base64 line");
        assert!(!e.to_string().contains(secret_line), "{e}");
        let e = private_key(&write(dir.path(), "cert-only.pem", &self_signed("x").0))
            .expect_err("no key");
        assert!(matches!(e, PemError::NoKey { .. }), "{e}");
    }
}
