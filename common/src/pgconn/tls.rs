//! TLS for Postgres connections with rustls, following libpq's `sslmode` semantics, and the
//! `tls-server-end-point` channel-binding data SCRAM-SHA-256-PLUS needs.
//!
//! - `prefer`/`require` encrypt without verifying the certificate (libpq does the same), except
//!   that `require` behaves as `verify-ca` when a root CA file exists (libpq again).
//! - `verify-ca` checks the chain against `sslrootcert` but not the host name.
//! - `verify-full` checks the chain and that the certificate names the host (DNS or IP SAN).
//!
//! The SSLRequest exchange itself lives in [`super::connection`]; this module only builds the
//! rustls configuration and runs the handshake.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use sha2::Digest;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use super::conninfo::{SslMode, home_dir};

/// What TLS verification a connection gets, after libpq's defaults are applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verification {
    /// Encrypt only.
    None,
    /// Chain must lead to a root in this file.
    Ca(PathBuf),
    /// Chain and host name.
    Full(PathBuf),
}

/// Decides the verification for `mode`, resolving the root CA file (`sslrootcert`, else
/// `~/.postgresql/root.crt`). Errors are messages for [`super::PgConnError::Tls`].
pub(crate) fn verification(mode: SslMode, rootcert: Option<&Path>) -> Result<Verification, String> {
    let default_root = home_dir().map(|h| h.join(".postgresql/root.crt"));
    let root = rootcert.map(Path::to_path_buf).or(default_root);
    match mode {
        SslMode::Disable | SslMode::Prefer => Ok(Verification::None),
        SslMode::Require => match root {
            Some(path) if path.is_file() => Ok(Verification::Ca(path)),
            _ => Ok(Verification::None),
        },
        SslMode::VerifyCa | SslMode::VerifyFull => {
            let path = root.ok_or_else(|| {
                "could not get home directory to locate root certificate file".to_string()
            })?;
            if path.as_os_str() == "system" {
                return Err("sslrootcert=system is not supported; name a CA file".to_string());
            }
            if !path.is_file() {
                return Err(format!(
                    "root certificate file \"{}\" does not exist; either provide the file, \
                     use the system's trusted roots with a CA file, or change sslmode to disable \
                     server certificate verification",
                    path.display()
                ));
            }
            Ok(if mode == SslMode::VerifyCa {
                Verification::Ca(path)
            } else {
                Verification::Full(path)
            })
        }
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// Builds the rustls client configuration for a verification policy.
pub(crate) fn client_config(verification: &Verification) -> Result<ClientConfig, String> {
    let provider = provider();
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS protocol versions: {e}"))?;
    let verifier: Arc<dyn ServerCertVerifier> = match verification {
        Verification::None => Arc::new(PgVerifier {
            chain: None,
            algorithms: provider.signature_verification_algorithms,
        }),
        Verification::Ca(path) => Arc::new(PgVerifier {
            chain: Some(webpki_verifier(path, &provider)?),
            algorithms: provider.signature_verification_algorithms,
        }),
        Verification::Full(path) => webpki_verifier(path, &provider)?,
    };
    Ok(builder
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth())
}

fn webpki_verifier(
    path: &Path,
    provider: &Arc<CryptoProvider>,
) -> Result<Arc<WebPkiServerVerifier>, String> {
    let mut roots = RootCertStore::empty();
    let certs = CertificateDer::pem_file_iter(path).map_err(|e| {
        format!(
            "could not read root certificate file \"{}\": {e}",
            path.display()
        )
    })?;
    for cert in certs {
        let cert = cert.map_err(|e| {
            format!(
                "could not read root certificate file \"{}\": {e}",
                path.display()
            )
        })?;
        roots
            .add(cert)
            .map_err(|e| format!("bad certificate in \"{}\": {e}", path.display()))?;
    }
    if roots.is_empty() {
        return Err(format!(
            "no certificates in root certificate file \"{}\"",
            path.display()
        ));
    }
    WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|e| format!("root certificates from \"{}\": {e}", path.display()))
}

/// Runs the TLS handshake on a socket whose SSLRequest the server accepted.
pub(crate) async fn handshake(
    tcp: TcpStream,
    host: &str,
    config: ClientConfig,
) -> Result<TlsStream<TcpStream>, String> {
    let name = ServerName::try_from(host.to_string())
        .map_err(|e| format!("invalid server name \"{host}\" for TLS: {e}"))?;
    tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .map_err(|e| e.to_string())
}

/// `tls-server-end-point` channel-binding data (RFC 5929): the hash of the server's
/// certificate, with SHA-256 unless the certificate is signed with SHA-384/512.
pub(crate) fn server_end_point(cert: &[u8]) -> Vec<u8> {
    match signature_hash(cert) {
        SigHash::Sha384 => sha2::Sha384::digest(cert).to_vec(),
        SigHash::Sha512 => sha2::Sha512::digest(cert).to_vec(),
        SigHash::Sha256 => sha2::Sha256::digest(cert).to_vec(),
    }
}

#[derive(Debug, PartialEq, Eq)]
enum SigHash {
    Sha256,
    Sha384,
    Sha512,
}

/// Reads `Certificate.signatureAlgorithm` (the second element of the outer SEQUENCE) and maps
/// it to the channel-binding hash; anything unrecognised (MD5, SHA-1, SHA-256) is SHA-256.
fn signature_hash(cert: &[u8]) -> SigHash {
    const SHA384_RSA: &[u8] = &[0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x01, 0x0C];
    const SHA512_RSA: &[u8] = &[0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x01, 0x0D];
    const SHA384_ECDSA: &[u8] = &[0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x04, 0x03, 0x03];
    const SHA512_ECDSA: &[u8] = &[0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x04, 0x03, 0x04];
    let oid = (|| {
        let (_, outer, _) = der_element(cert)?;
        let (_, _tbs, after_tbs) = der_element(outer)?;
        let (_, alg, _) = der_element(after_tbs)?;
        let (tag, oid, _) = der_element(alg)?;
        (tag == 0x06).then_some(oid)
    })();
    match oid {
        Some(o) if o == SHA384_RSA || o == SHA384_ECDSA => SigHash::Sha384,
        Some(o) if o == SHA512_RSA || o == SHA512_ECDSA => SigHash::Sha512,
        _ => SigHash::Sha256,
    }
}

/// One DER element: (tag, contents, the bytes after it).
fn der_element(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let tag = *input.first()?;
    let first = *input.get(1)? as usize;
    let (len, header) = if first < 0x80 {
        (first, 2)
    } else {
        let n = first & 0x7F;
        if n == 0 || n > 4 {
            return None;
        }
        let len = input
            .get(2..2 + n)?
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | *b as usize);
        (len, 2 + n)
    };
    let end = header.checked_add(len)?;
    Some((tag, input.get(header..end)?, input.get(end..)?))
}

/// `sslmode=prefer/require` (no chain) and `verify-ca` (chain, any name): the handshake
/// signatures are always checked.
#[derive(Debug)]
struct PgVerifier {
    /// Verifies the chain; `None` accepts any certificate.
    chain: Option<Arc<WebPkiServerVerifier>>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for PgVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some(chain) = &self.chain else {
            return Ok(ServerCertVerified::assertion());
        };
        match chain.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn der_element_reads_short_and_long_lengths() {
        assert_eq!(
            der_element(&[0x06, 0x01, 0x2A, 0xFF]),
            Some((0x06, &[0x2A][..], &[0xFF][..]))
        );
        let mut long = vec![0x04, 0x81, 0x80];
        long.extend(std::iter::repeat_n(7u8, 0x80));
        let (tag, body, rest) = der_element(&long).unwrap();
        assert_eq!((tag, body.len(), rest.len()), (0x04, 0x80, 0));
        assert_eq!(der_element(&[0x30, 0x05, 0x00]), None);
    }

    #[test]
    fn garbage_certificate_hashes_with_sha256() {
        assert_eq!(signature_hash(b"not a certificate"), SigHash::Sha256);
        assert_eq!(server_end_point(b"x").len(), 32);
    }
}
