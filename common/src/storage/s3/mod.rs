//! `S3Storage`: a repository in an S3 bucket (AWS or any S3-compatible server) through
//! aws-sdk-s3.
//!
//! Settings that matter for correctness, all made in [`S3Storage::connect`]:
//! - a custom endpoint implies path-style addressing (`http://host:port/bucket/key`);
//! - the SDK computes no request checksums on its own (`WhenRequired`: S3-compatible
//!   servers reject some of the SDK's defaults); instead every upload, and every part of a
//!   multipart upload, carries our CRC32C (`x-amz-checksum-crc32c`), which the server
//!   verifies (`BadDigest` otherwise) and echoes;
//! - `if_absent` sends `If-None-Match: *`, so the server refuses (412) a second creator;
//! - connect, per-attempt, operation and first-byte timeouts, plus the SDK's stalled-stream
//!   protection on bodies, so that no call hangs;
//! - the SDK makes one attempt only: retries happen in [`crate::storage::retry`].
//!
//! Objects larger than one part go up as multipart uploads whose parts are retried one
//! by one; an in-memory `put` of such an object may also be repeated whole by
//! [`crate::storage::AnyStorage`]'s retry loop when its parts' retries are spent.
//!
//! Permissions: without `s3:ListBucket`, AWS answers 403 instead of 404 for a missing
//! key, and walship must then report "failed", not "missing" (`fetch` would stop
//! recovery instead of ending it). Grant `s3:ListBucket` on the repository prefix.
//!
//! Credentials, region and endpoint come from the AWS SDK's standard chain
//! (`AWS_ACCESS_KEY_ID`, `AWS_PROFILE`, `AWS_REGION`, `AWS_ENDPOINT_URL`, web identity,
//! instance metadata) unless [`S3Options`] sets them.

mod errors;
pub(crate) mod lock;
mod server_side;
mod upload;
pub mod versions;

pub use server_side::ServerSideEncryption;

use std::fmt;
use std::ops::Range;
use std::time::{Duration, SystemTime};

use aws_sdk_s3::Client;
use aws_sdk_s3::config::{
    BehaviorVersion, Credentials, Region, RequestChecksumCalculation, ResponseChecksumValidation,
    StalledStreamProtectionConfig,
};
use aws_sdk_s3::types::ChecksumMode;
use aws_smithy_types::retry::RetryConfig;
use aws_smithy_types::timeout::TimeoutConfig;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use tokio::io::AsyncRead;

use self::errors::Call;
use super::key::{ObjectKey, check_prefix};
use super::retry::RetryPolicy;
use super::stream::ObjectReader;
use super::{Capabilities, ObjectMeta, PutOptions, Storage, StorageError, StorageOp};

/// The smallest part S3 accepts in a multipart upload (except the last part).
pub const MIN_PART_SIZE: usize = 5 << 20;
/// The largest part S3 accepts.
pub const MAX_PART_SIZE: usize = 5 << 30;

/// Static credentials, for callers that do not use the AWS environment (tests, config
/// files). The secret never appears in `Debug` output.
#[derive(Clone)]
pub struct S3Credentials {
    /// Access key id.
    pub access_key_id: String,
    /// Secret access key.
    pub secret_access_key: String,
    /// Session token, for temporary credentials.
    pub session_token: Option<String>,
}

impl fmt::Debug for S3Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Credentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .field(
                "session_token",
                &self.session_token.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

/// How to reach and use an S3 service. `Default` gives the AWS SDK's chain for endpoint,
/// region and credentials, and the timeouts and part size below.
#[derive(Debug, Clone)]
pub struct S3Options {
    /// Endpoint URL of an S3-compatible server (`http://127.0.0.1:8333`); `None` uses
    /// `AWS_ENDPOINT_URL` or AWS itself.
    pub endpoint: Option<String>,
    /// Region; `None` uses the SDK chain, then `us-east-1`.
    pub region: Option<String>,
    /// Credentials; `None` uses the SDK chain.
    pub credentials: Option<S3Credentials>,
    /// Path-style addressing; `None` means "when a custom endpoint is set".
    pub force_path_style: Option<bool>,
    /// Limit for establishing a TCP/TLS connection (default 5 s).
    pub connect_timeout: Duration,
    /// Limit for one whole request, until its answer is parsed (default 60 s). A streamed
    /// download continues past it, guarded by `read_timeout`.
    pub operation_timeout: Duration,
    /// Limit for the first byte of an answer, and for a stalled body stream (default 30 s).
    pub read_timeout: Duration,
    /// Part size of multipart uploads, which are used for objects larger than one part
    /// (default 16 MiB; S3 allows 5 MiB to 5 GiB). A streaming upload holds about one part
    /// in memory. At most 10,000 parts make an object, so the default caps a streamed
    /// object at 160 GiB.
    pub part_size: usize,
    /// Keys per `ListObjectsV2` request (1 to 1000, default 1000).
    pub list_page_size: i32,
    /// The server honours `If-None-Match: *` (AWS since 2024, SeaweedFS). When false,
    /// `if_absent` is a check-then-put that two racing writers can both pass.
    pub conditional_create: bool,
    /// Retry policy for every call.
    pub retry: RetryPolicy,
    /// Server-side encryption of every object written (`s3.sse`); `None` sends no header.
    pub sse: Option<ServerSideEncryption>,
    /// The KMS key of [`ServerSideEncryption::AwsKms`] (`s3.sse_kms_key_id`).
    pub sse_kms_key_id: Option<String>,
    /// A PEM file of certificate authorities trusted for an `https` endpoint, besides the
    /// system's (`s3.ca_file`).
    pub ca_file: Option<std::path::PathBuf>,
}

impl Default for S3Options {
    fn default() -> Self {
        S3Options {
            endpoint: None,
            region: None,
            credentials: None,
            force_path_style: None,
            connect_timeout: Duration::from_secs(5),
            operation_timeout: Duration::from_secs(60),
            read_timeout: Duration::from_secs(30),
            part_size: 16 << 20,
            list_page_size: 1000,
            conditional_create: true,
            retry: RetryPolicy::default(),
            sse: None,
            sse_kms_key_id: None,
            ca_file: None,
        }
    }
}

/// Checks an S3 bucket name (3 to 63 lower-case letters, digits, `-` and `.`, starting
/// and ending with a letter or digit).
pub fn check_bucket_name(bucket: &str) -> Result<(), String> {
    let valid_chars = bucket
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.');
    let valid_ends = bucket.starts_with(|c: char| c.is_ascii_alphanumeric())
        && bucket.ends_with(|c: char| c.is_ascii_alphanumeric());
    if !(3..=63).contains(&bucket.len()) {
        Err(format!(
            "bucket name {bucket:?} must be 3 to 63 characters long"
        ))
    } else if !valid_chars || !valid_ends {
        Err(format!(
            "bucket name {bucket:?} may hold only lower-case letters, digits, '-' and '.', and must start and end with a letter or digit"
        ))
    } else {
        Ok(())
    }
}

/// The region to use without asking the SDK's chain: the configured one or, for a custom
/// endpoint, `AWS_REGION` / `AWS_DEFAULT_REGION` / `us-east-1`. `None` (AWS itself, no
/// region set) lets the SDK's chain look further, instance metadata included; an
/// S3-compatible server never needs that, and on a machine without metadata service the
/// lookup would only cost time.
fn region_without_metadata_service(opts: &S3Options) -> Option<String> {
    if let Some(region) = &opts.region {
        return Some(region.clone());
    }
    let env = |var: &str| std::env::var(var).ok().filter(|v| !v.is_empty());
    let custom_endpoint = opts.endpoint.is_some()
        || env("AWS_ENDPOINT_URL_S3").is_some()
        || env("AWS_ENDPOINT_URL").is_some();
    if !custom_endpoint {
        return None;
    }
    env("AWS_REGION")
        .or_else(|| env("AWS_DEFAULT_REGION"))
        .or_else(|| Some("us-east-1".to_owned()))
}

/// A repository in one bucket, under an optional key prefix.
#[derive(Debug, Clone)]
pub struct S3Storage {
    client: Client,
    bucket: String,
    /// `""` or `"some/prefix/"`: prepended to every key.
    prefix: String,
    /// `s3://bucket/prefix at <endpoint>`, for messages.
    location: String,
    part_size: usize,
    list_page_size: i32,
    conditional_create: bool,
    /// Retries the pieces of streaming uploads, which the caller cannot retry.
    retry: RetryPolicy,
    /// Server-side encryption headers of every object written.
    sse: Option<ServerSideEncryption>,
    sse_kms_key_id: Option<String>,
}

impl S3Storage {
    /// Builds a client for `bucket` (keys under `prefix`, which may be empty). Contacts
    /// nothing: the first call finds out whether the bucket is reachable.
    pub async fn connect(
        bucket: &str,
        prefix: &str,
        opts: &S3Options,
    ) -> Result<S3Storage, StorageError> {
        let invalid = |reason: String| StorageError::InvalidUrl {
            url: format!("s3://{bucket}/{prefix}"),
            reason,
        };
        check_bucket_name(bucket).map_err(invalid)?;
        let prefix = prefix.trim_matches('/');
        if !prefix.is_empty() {
            ObjectKey::new(prefix).map_err(|e| invalid(format!("bad prefix: {}", e.reason)))?;
        }
        if !(MIN_PART_SIZE..=MAX_PART_SIZE).contains(&opts.part_size) {
            return Err(invalid(format!(
                "part size {} is outside S3's limits of 5 MiB to 5 GiB",
                opts.part_size
            )));
        }
        if !(1..=1000).contains(&opts.list_page_size) {
            return Err(invalid(format!(
                "list page size {} is not 1 to 1000",
                opts.list_page_size
            )));
        }
        if opts.sse_kms_key_id.is_some() && opts.sse != Some(ServerSideEncryption::AwsKms) {
            return Err(invalid(
                "s3.sse_kms_key_id is set but s3.sse is not \"aws:kms\"".to_string(),
            ));
        }

        let mut loader = aws_config::defaults(BehaviorVersion::latest());
        if let Some(region) = region_without_metadata_service(opts) {
            loader = loader.region(Region::new(region));
        }
        if let Some(c) = &opts.credentials {
            loader = loader.credentials_provider(Credentials::new(
                c.access_key_id.clone(),
                c.secret_access_key.clone(),
                c.session_token.clone(),
                None,
                "walship-config",
            ));
        }
        let sdk = loader.load().await;
        let endpoint = opts
            .endpoint
            .clone()
            .or_else(|| sdk.endpoint_url().map(str::to_owned));
        // An endpoint with credentials in it (`AWS_ENDPOINT_URL=http://KEY:SECRET@host`) is
        // refused, and never repeated: errors and logs name the location.
        if let Some(endpoint) = &endpoint
            && crate::redact::has_userinfo(endpoint)
        {
            return Err(invalid(format!(
                "the S3 endpoint {} contains credentials; give them through the AWS credential \
                 chain (AWS_ACCESS_KEY_ID, AWS_PROFILE, ...), not in the URL",
                crate::redact::redact_userinfo(endpoint)
            )));
        }

        let timeouts = TimeoutConfig::builder()
            .connect_timeout(opts.connect_timeout)
            .operation_attempt_timeout(opts.operation_timeout)
            .operation_timeout(opts.operation_timeout)
            .read_timeout(opts.read_timeout)
            .build();
        let stall = StalledStreamProtectionConfig::enabled()
            .grace_period(opts.read_timeout)
            .build();
        let mut config = aws_sdk_s3::config::Builder::from(&sdk)
            .retry_config(RetryConfig::standard().with_max_attempts(1))
            .timeout_config(timeouts)
            .stalled_stream_protection(stall)
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired)
            .force_path_style(opts.force_path_style.unwrap_or(endpoint.is_some()));
        if let Some(endpoint) = &endpoint {
            config = config.endpoint_url(endpoint);
        }
        if let Some(ca_file) = &opts.ca_file {
            config =
                config.http_client(server_side::https_client_trusting(ca_file).map_err(invalid)?);
        }
        if sdk.region().is_none() {
            config = config.region(Region::new("us-east-1"));
        }

        let shown_endpoint = endpoint.unwrap_or_else(|| {
            let region = sdk.region().map_or("us-east-1", |r| r.as_ref());
            format!("AWS S3 ({region})")
        });
        let location = if prefix.is_empty() {
            format!("s3://{bucket} at {shown_endpoint}")
        } else {
            format!("s3://{bucket}/{prefix} at {shown_endpoint}")
        };
        Ok(S3Storage {
            client: Client::from_conf(config.build()),
            bucket: bucket.to_owned(),
            prefix: if prefix.is_empty() {
                String::new()
            } else {
                format!("{prefix}/")
            },
            location,
            part_size: opts.part_size,
            list_page_size: opts.list_page_size,
            conditional_create: opts.conditional_create,
            retry: opts.retry.clone(),
            sse: opts.sse,
            sse_kms_key_id: opts.sse_kms_key_id.clone(),
        })
    }

    /// The S3 key of `key`: the repository prefix plus the key.
    fn full_key(&self, key: &str) -> String {
        format!("{}{}", self.prefix, key)
    }

    /// One quiet DeleteObjects request for `objects` (each key with the version to remove,
    /// or `None` for the current one): only the objects that failed come back.
    pub(crate) async fn delete_objects<'k>(
        &self,
        call: &Call<'_>,
        objects: impl Iterator<Item = (&'k ObjectKey, Option<&'k str>)>,
    ) -> Result<aws_sdk_s3::operation::delete_objects::DeleteObjectsOutput, StorageError> {
        use aws_sdk_s3::types::{Delete, ObjectIdentifier};
        let objects = objects
            .map(|(key, version)| {
                ObjectIdentifier::builder()
                    .key(self.full_key(key.as_str()))
                    .set_version_id(version.map(str::to_owned))
                    .build()
                    .map_err(|e| call.permanent(e.to_string()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let delete = Delete::builder()
            .set_objects(Some(objects))
            .quiet(true)
            .build()
            .map_err(|e| call.permanent(e.to_string()))?;
        self.client
            .delete_objects()
            .bucket(&self.bucket)
            .delete(delete)
            .send()
            .await
            .map_err(|e| call.error(e))
    }

    fn call<'a>(&'a self, op: StorageOp, key: &'a str) -> Call<'a> {
        Call {
            op,
            key,
            endpoint: &self.location,
            conditional: false,
        }
    }

    /// Reads `key` (one `version`, or the current one), whole or a `range` of it.
    async fn get_object(
        &self,
        key: &ObjectKey,
        range: Option<Range<u64>>,
        version: Option<&str>,
    ) -> Result<ObjectReader, StorageError> {
        let call = self.call(StorageOp::Get, key.as_str());
        let mut request = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(self.full_key(key.as_str()))
            .set_version_id(version.map(str::to_owned));
        if let Some(range) = &range {
            if range.end <= range.start {
                // HTTP cannot ask for nothing; answer from head instead.
                self.head_object(key, version).await?;
                return Ok(ObjectReader::new(tokio::io::empty(), Some(0)));
            }
            request = request.range(format!("bytes={}-{}", range.start, range.end - 1));
        }
        match request.send().await {
            Ok(output) => {
                let size = output.content_length().and_then(|n| u64::try_from(n).ok());
                Ok(ObjectReader::new(output.body.into_async_read(), size))
            }
            Err(err) if range.is_some() && is_unsatisfiable_range(&err) => {
                Ok(ObjectReader::new(tokio::io::empty(), Some(0)))
            }
            Err(err) => Err(call.error(err)),
        }
    }

    /// Size, CRC32C and time of `key` (one `version`, or the current one).
    async fn head_object(
        &self,
        key: &ObjectKey,
        version: Option<&str>,
    ) -> Result<ObjectMeta, StorageError> {
        let output = self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(self.full_key(key.as_str()))
            .set_version_id(version.map(str::to_owned))
            .checksum_mode(ChecksumMode::Enabled)
            .send()
            .await
            .map_err(|e| self.call(StorageOp::Head, key.as_str()).error(e))?;
        Ok(ObjectMeta {
            key: key.clone(),
            size: output
                .content_length()
                .and_then(|n| u64::try_from(n).ok())
                .unwrap_or(0),
            crc32c: output.checksum_crc32_c().and_then(decode_crc32c),
            last_modified: to_system_time(output.last_modified()),
        })
    }
}

/// True for `416 InvalidRange`: the object exists but the range starts past its end.
fn is_unsatisfiable_range<E>(
    err: &aws_sdk_s3::error::SdkError<E, aws_smithy_runtime_api::http::Response>,
) -> bool {
    err.raw_response()
        .is_some_and(|r| r.status().as_u16() == 416)
}

/// Decodes an `x-amz-checksum-crc32c` value (base64 of the big-endian CRC). A composite
/// multipart checksum (`...-N`) is not a CRC of the whole object and gives `None`.
pub(crate) fn decode_crc32c(value: &str) -> Option<u32> {
    let bytes = BASE64.decode(value).ok()?;
    Some(u32::from_be_bytes(bytes.try_into().ok()?))
}

/// Encodes a CRC32C for the `x-amz-checksum-crc32c` header.
pub(crate) fn encode_crc32c(crc: u32) -> String {
    BASE64.encode(crc.to_be_bytes())
}

fn to_system_time(t: Option<&aws_smithy_types::DateTime>) -> Option<SystemTime> {
    t.and_then(|t| SystemTime::try_from(*t).ok())
}

impl Storage for S3Storage {
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            conditional_create: self.conditional_create,
            crc32c_in_head: true,
            multipart: true,
            local_files: false,
        }
    }

    fn location(&self) -> &str {
        &self.location
    }

    async fn put(
        &self,
        key: &ObjectKey,
        body: Bytes,
        opts: PutOptions,
    ) -> Result<ObjectMeta, StorageError> {
        if body.len() <= self.part_size {
            self.put_single(key, body, opts).await
        } else {
            self.put_multipart_bytes(key, body, opts).await
        }
    }

    async fn put_stream<R>(
        &self,
        key: &ObjectKey,
        body: R,
        opts: PutOptions,
    ) -> Result<ObjectMeta, StorageError>
    where
        R: AsyncRead + Send + Unpin,
    {
        self.put_from_reader(key, body, opts).await
    }

    async fn get(&self, key: &ObjectKey) -> Result<ObjectReader, StorageError> {
        self.get_object(key, None, None).await
    }

    async fn get_range(
        &self,
        key: &ObjectKey,
        range: Range<u64>,
    ) -> Result<ObjectReader, StorageError> {
        self.get_object(key, Some(range), None).await
    }

    async fn head(&self, key: &ObjectKey) -> Result<ObjectMeta, StorageError> {
        self.head_object(key, None).await
    }

    async fn list_after(
        &self,
        prefix: &str,
        start_after: Option<&ObjectKey>,
        limit: usize,
    ) -> Result<Vec<ObjectMeta>, StorageError> {
        check_prefix(prefix)?;
        let call = self.call(StorageOp::List, prefix);
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        while out.len() < limit {
            let want = i32::try_from(limit - out.len())
                .unwrap_or(i32::MAX)
                .min(self.list_page_size);
            let mut request = self
                .client
                .list_objects_v2()
                .bucket(&self.bucket)
                .prefix(self.full_key(prefix))
                .max_keys(want);
            request = match (&token, start_after) {
                (Some(token), _) => request.continuation_token(token),
                (None, Some(after)) => request.start_after(self.full_key(after.as_str())),
                (None, None) => request,
            };
            let page = request.send().await.map_err(|e| call.error(e))?;
            for object in page.contents() {
                let Some(full) = object.key() else { continue };
                let Some(relative) = full.strip_prefix(&self.prefix) else {
                    continue;
                };
                match ObjectKey::new(relative) {
                    Ok(key) => out.push(ObjectMeta {
                        key,
                        size: object
                            .size()
                            .and_then(|n| u64::try_from(n).ok())
                            .unwrap_or(0),
                        crc32c: None,
                        last_modified: to_system_time(object.last_modified()),
                    }),
                    Err(e) => {
                        tracing::warn!(location = %self.location, "skipping an object that is not a valid key: {e}")
                    }
                }
            }
            match page.next_continuation_token() {
                Some(next) if page.is_truncated() == Some(true) => token = Some(next.to_owned()),
                _ => break,
            }
        }
        out.truncate(limit);
        Ok(out)
    }

    async fn delete(&self, key: &ObjectKey) -> Result<(), StorageError> {
        match self
            .client
            .delete_object()
            .bucket(&self.bucket)
            .key(self.full_key(key.as_str()))
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) => match self.call(StorageOp::Delete, key.as_str()).error(e) {
                StorageError::NotFound { .. } => Ok(()),
                other => Err(other),
            },
        }
    }

    /// One DeleteObjects call (quiet mode: only the keys that failed come back).
    async fn delete_many(
        &self,
        keys: &[ObjectKey],
    ) -> Result<Vec<super::DeleteRefusal>, StorageError> {
        let Some(first) = keys.first() else {
            return Ok(Vec::new());
        };
        let call = self.call(StorageOp::Delete, first.as_str());
        let out = self
            .delete_objects(&call, keys.iter().map(|k| (k, None)))
            .await?;
        let mut refused = Vec::new();
        for err in out.errors() {
            let full = err.key().unwrap_or_default();
            let relative = full.strip_prefix(self.prefix.as_str()).unwrap_or(full);
            if err.code() == Some("NoSuchKey") {
                continue;
            }
            let key = keys
                .iter()
                .find(|k| k.as_str() == relative)
                .cloned()
                .ok_or_else(|| {
                    call.permanent(format!("DeleteObjects answered for unknown key {full:?}"))
                })?;
            refused.push(super::DeleteRefusal {
                key,
                reason: format!(
                    "{}: {}",
                    err.code().unwrap_or("error"),
                    err.message().unwrap_or("refused")
                ),
            });
        }
        Ok(refused)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32c_header_is_base64_of_big_endian() {
        // CRC32C("123456789") = 0xE3069283, the standard check value.
        let crc = crate::crc::crc32c(b"123456789");
        assert_eq!(crc, 0xE306_9283);
        assert_eq!(encode_crc32c(crc), "4waSgw==");
        assert_eq!(decode_crc32c("4waSgw=="), Some(crc));
        assert_eq!(decode_crc32c("4waSgw==-3"), None);
        assert_eq!(decode_crc32c("AAAA"), None);
    }

    #[test]
    fn bucket_names() {
        for good in ["abc", "my-bucket", "walship.test", "a1b"] {
            check_bucket_name(good).unwrap();
        }
        for bad in ["ab", "-abc", "abc-", "ABC", "a_b", &"a".repeat(64), "a/b"] {
            assert!(check_bucket_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn secrets_are_not_debug_printed() {
        let creds = S3Credentials {
            access_key_id: "AKIA".into(),
            secret_access_key: "very-secret".into(),
            session_token: Some("token-secret".into()),
        };
        let opts = S3Options {
            credentials: Some(creds),
            ..S3Options::default()
        };
        let text = format!("{opts:?}");
        assert!(
            !text.contains("very-secret") && !text.contains("token-secret"),
            "{text}"
        );
        assert!(text.contains("AKIA"));
    }
}
