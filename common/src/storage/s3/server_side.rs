//! What walship asks of the S3 server beyond storing bytes: server-side encryption of every
//! object it writes (`s3.sse`, `s3.sse_kms_key_id`) and the certificate authorities it trusts
//! for an `https` endpoint (`s3.ca_file`, for a private CA).
//!
//! Server-side encryption is the bucket's business and adds nothing to client-side encryption
//! (`[encryption]`): it protects the disks of the S3 service, and anyone who may read the
//! bucket reads the plain objects. walship sends the headers on `PutObject` and
//! `CreateMultipartUpload` (parts inherit them); reads need nothing.

use std::path::Path;

use aws_smithy_http_client::tls::{self, TlsContext, TrustStore};
use aws_smithy_runtime_api::client::http::SharedHttpClient;
use rustls_pki_types::pem::PemObject;

/// `s3.sse`: the server-side encryption every object is written with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum ServerSideEncryption {
    /// `AES256`: keys the S3 service manages (SSE-S3).
    #[serde(rename = "AES256")]
    Aes256,
    /// `aws:kms`: a KMS key (`s3.sse_kms_key_id`, or the account's `aws/s3` key).
    #[serde(rename = "aws:kms")]
    AwsKms,
}

impl std::str::FromStr for ServerSideEncryption {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "AES256" => Ok(ServerSideEncryption::Aes256),
            "aws:kms" => Ok(ServerSideEncryption::AwsKms),
            _ => Err("expected \"AES256\" or \"aws:kms\"".to_string()),
        }
    }
}

impl ServerSideEncryption {
    /// The SDK's value for the `x-amz-server-side-encryption` header.
    pub(super) fn header(self) -> aws_sdk_s3::types::ServerSideEncryption {
        match self {
            ServerSideEncryption::Aes256 => aws_sdk_s3::types::ServerSideEncryption::Aes256,
            ServerSideEncryption::AwsKms => aws_sdk_s3::types::ServerSideEncryption::AwsKms,
        }
    }
}

/// The SDK's own HTTPS client (hyper, rustls with aws-lc) trusting the system's roots and
/// every certificate in the PEM file `ca_file`. The file is read and parsed here, so that a
/// missing or empty file is refused before any request, naming it.
pub(super) fn https_client_trusting(ca_file: &Path) -> Result<SharedHttpClient, String> {
    let pem =
        std::fs::read(ca_file).map_err(|e| format!("s3.ca_file {}: {e}", ca_file.display()))?;
    // Parsed here (the SDK would only find out at the first connection).
    let certificates: Result<Vec<_>, _> =
        rustls_pki_types::CertificateDer::pem_slice_iter(&pem).collect();
    match certificates {
        Ok(found) if !found.is_empty() => {}
        Ok(_) => {
            return Err(format!(
                "s3.ca_file {} holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
                ca_file.display()
            ));
        }
        Err(e) => return Err(format!("s3.ca_file {}: {e}", ca_file.display())),
    }
    let context = TlsContext::builder()
        .with_trust_store(TrustStore::default().with_pem_certificate(pem))
        .build()
        .map_err(|e| format!("s3.ca_file {}: {e}", ca_file.display()))?;
    Ok(aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(
            tls::rustls_provider::CryptoMode::AwsLc,
        ))
        .tls_context(context)
        .build_https())
}
