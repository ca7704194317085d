//! Certificate pinning (`mqtt.server_cert_sha256`), for brokers whose certificate cannot be
//! re-issued: exactly the certificate with that SHA-256 is trusted, whatever its X.509 version
//! or names, and nothing else. The handshake's signature is still checked with its key, so
//! only the holder of that certificate's private key can be the broker.
//!
//! rustls's own checks parse the certificate with webpki, which refuses version 1 (what
//! `openssl x509 -req` makes without an extension file); here the public key is read with
//! [`crate::pem::subject_public_key_info`] and checked with the provider's algorithms.

use std::sync::Arc;

use ring::digest::{digest, SHA256};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, Error, OtherError, SignatureScheme};

/// A certificate whose SHA-256 is not the pinned one.
#[derive(Debug, thiserror::Error)]
#[error("the certificate's SHA-256 is {found}")]
pub struct NotPinned {
    /// The certificate's SHA-256, as `openssl x509 -fingerprint -sha256` prints it.
    pub found: String,
}

#[derive(Debug)]
pub struct Pinned {
    pin: [u8; 32],
    algorithms: WebPkiSupportedAlgorithms,
}

impl Pinned {
    pub fn new(pin: [u8; 32], provider: &CryptoProvider) -> Pinned {
        Pinned {
            pin,
            algorithms: provider.signature_verification_algorithms,
        }
    }

    fn verify(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        let bad = || Error::InvalidCertificate(CertificateError::BadSignature);
        let (alg_id, key) = crate::pem::subject_public_key_info(cert)
            .and_then(|spki| spki.parts())
            .ok_or(Error::InvalidCertificate(CertificateError::BadEncoding))?;
        let (_, candidates) = self
            .algorithms
            .mapping
            .iter()
            .find(|(scheme, _)| *scheme == dss.scheme)
            .ok_or(Error::PeerIncompatible(
                rustls::PeerIncompatible::NoSignatureSchemesInCommon,
            ))?;
        let alg = candidates
            .iter()
            .find(|a| a.public_key_alg_id().as_ref() == alg_id)
            .ok_or_else(bad)?;
        alg.verify_signature(key, message, dss.signature())
            .map(|()| HandshakeSignatureValid::assertion())
            .map_err(|_| bad())
    }
}

/// Hex pairs with colons, as `openssl x509 -fingerprint -sha256` prints a fingerprint.
pub fn fingerprint(der: &[u8]) -> String {
    digest(&SHA256, der)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

impl ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        if digest(&SHA256, end_entity).as_ref() == self.pin {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(Error::InvalidCertificate(CertificateError::Other(
                OtherError(Arc::new(NotPinned {
                    found: fingerprint(end_entity),
                })),
            )))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.verify(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.verify(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fingerprint_prints_as_openssl_does() {
        let f = fingerprint(b"abc");
        assert!(f.starts_with("BA:78:16:BF:"), "{f}");
        assert_eq!(f.len(), 32 * 3 - 1);
    }
}
