//! Uploads to S3: one `PutObject` for an object up to one part, multipart above, each
//! request carrying our CRC32C.
//!
//! An Object Lock asked for in [`PutOptions::lock`] goes on the `PutObject`, or on the
//! `CreateMultipartUpload` of a multipart upload (S3 applies it at completion).
//!
//! Multipart: create (declaring a full-object CRC32C), upload parts one at a time (memory
//! is bounded by one part; each part is retried on its own), complete with the CRC32C of
//! the whole object (combined from the parts' CRCs) and, for `if_absent`,
//! `If-None-Match: *`. Any failure aborts the upload, so no parts linger. Until complete
//! succeeds nothing is visible under the key.

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{ChecksumAlgorithm, ChecksumType, CompletedMultipartUpload, CompletedPart};
use bytes::Bytes;
use tokio::io::AsyncRead;

use super::errors::Call;
use super::{S3Storage, decode_crc32c, encode_crc32c};
use crate::storage::key::ObjectKey;
use crate::storage::stream::read_chunk;
use crate::storage::{ObjectMeta, PutOptions, StorageError, StorageOp};

/// S3's limit on the number of parts of one upload.
const MAX_PARTS: i32 = 10_000;

/// Where the parts of a multipart upload come from.
enum Parts<R> {
    /// An in-memory body, cut into parts.
    Memory(Bytes),
    /// A first part already read, then the rest of a stream.
    Stream { first: Option<Bytes>, reader: R },
}

impl<R: AsyncRead + Unpin> Parts<R> {
    /// The next part (at most `part_size` bytes), or `None` at the end.
    async fn next(&mut self, part_size: usize) -> std::io::Result<Option<Bytes>> {
        let part = match self {
            Parts::Memory(rest) => rest.split_to(rest.len().min(part_size)),
            Parts::Stream { first, reader } => match first.take() {
                Some(first) => first,
                None => read_chunk(reader, part_size).await?,
            },
        };
        Ok((!part.is_empty()).then_some(part))
    }
}

impl S3Storage {
    fn put_call<'a>(&'a self, key: &'a ObjectKey, conditional: bool) -> Call<'a> {
        Call {
            op: StorageOp::Put,
            key: key.as_str(),
            endpoint: &self.location,
            conditional,
        }
    }

    /// Checks the caller's expected CRC against the body's.
    fn check_expected(key: &ObjectKey, opts: PutOptions, crc: u32) -> Result<(), StorageError> {
        match opts.crc32c {
            Some(expected) if expected != crc => Err(StorageError::Corrupt {
                key: key.to_string(),
                message: format!("caller expected CRC32C {expected:08x}, body has {crc:08x}"),
            }),
            _ => Ok(()),
        }
    }

    /// Checks the CRC the server echoed (when it echoes one) against ours.
    fn check_echo(
        &self,
        key: &ObjectKey,
        echoed: Option<&str>,
        crc: u32,
    ) -> Result<(), StorageError> {
        match echoed.map(|e| (e, decode_crc32c(e))) {
            Some((text, decoded)) if decoded != Some(crc) => Err(StorageError::Corrupt {
                key: key.to_string(),
                message: format!(
                    "{} answered CRC32C {text:?}, we sent {crc:08x} ({})",
                    self.location,
                    encode_crc32c(crc)
                ),
            }),
            _ => Ok(()),
        }
    }

    /// For `if_absent`: fails with `AlreadyExists` when the key is there. The atomic guard
    /// is `If-None-Match`; this check only saves uploading a large body for nothing, and is
    /// the (racy) guard on servers without conditional writes.
    async fn refuse_existing(&self, key: &ObjectKey) -> Result<(), StorageError> {
        use crate::storage::Storage as _;
        match self.head(key).await {
            Ok(_) => Err(StorageError::AlreadyExists {
                key: key.to_string(),
            }),
            Err(e) if e.is_not_found() => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// One `PutObject` (no retry here: the caller's retry loop repeats the whole call).
    pub(super) async fn put_single(
        &self,
        key: &ObjectKey,
        body: Bytes,
        opts: PutOptions,
    ) -> Result<ObjectMeta, StorageError> {
        let crc = crate::crc::crc32c(&body);
        Self::check_expected(key, opts, crc)?;
        if opts.if_absent && !self.conditional_create {
            self.refuse_existing(key).await?;
        }
        let conditional = opts.if_absent && self.conditional_create;
        let size = body.len() as u64;
        let mut request = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(self.full_key(key.as_str()))
            .content_length(i64::try_from(size).unwrap_or(i64::MAX))
            .checksum_crc32_c(encode_crc32c(crc))
            .body(ByteStream::from(body))
            .set_server_side_encryption(self.sse.map(|s| s.header()))
            .set_ssekms_key_id(self.sse_kms_key_id.clone());
        if conditional {
            request = request.if_none_match("*");
        }
        if let Some(lock) = opts.lock {
            request = request
                .object_lock_mode(super::lock::sdk_mode(lock.mode))
                .object_lock_retain_until_date(super::lock::sdk_time(lock.retain_until));
        }
        let output = request
            .send()
            .await
            .map_err(|e| self.put_call(key, conditional).error(e))?;
        self.check_echo(key, output.checksum_crc32_c(), crc)?;
        Ok(ObjectMeta {
            key: key.clone(),
            size,
            crc32c: Some(crc),
            last_modified: Some(std::time::SystemTime::now()),
        })
    }

    /// Streams `reader` into `key`: one retried `PutObject` if it ends within one part,
    /// a multipart upload otherwise.
    pub(super) async fn put_from_reader<R>(
        &self,
        key: &ObjectKey,
        mut reader: R,
        opts: PutOptions,
    ) -> Result<ObjectMeta, StorageError>
    where
        R: AsyncRead + Send + Unpin,
    {
        let first = read_chunk(&mut reader, self.part_size)
            .await
            .map_err(|e| self.read_error(key, e))?;
        if first.len() < self.part_size {
            return self
                .retry
                .run(StorageOp::Put, key.as_str(), || {
                    self.put_single(key, first.clone(), opts)
                })
                .await;
        }
        let parts = Parts::Stream {
            first: Some(first),
            reader,
        };
        self.multipart(key, parts, opts).await
    }

    /// A multipart upload of an in-memory body larger than one part.
    pub(super) async fn put_multipart_bytes(
        &self,
        key: &ObjectKey,
        body: Bytes,
        opts: PutOptions,
    ) -> Result<ObjectMeta, StorageError> {
        self.multipart(key, Parts::<tokio::io::Empty>::Memory(body), opts)
            .await
    }

    fn read_error(&self, key: &ObjectKey, e: std::io::Error) -> StorageError {
        StorageError::Permanent {
            op: StorageOp::Put,
            key: key.to_string(),
            endpoint: self.location.clone(),
            message: format!("reading the body to upload failed: {e}"),
        }
    }

    async fn multipart<R>(
        &self,
        key: &ObjectKey,
        parts: Parts<R>,
        opts: PutOptions,
    ) -> Result<ObjectMeta, StorageError>
    where
        R: AsyncRead + Send + Unpin,
    {
        if opts.if_absent {
            self.refuse_existing(key).await?;
        }
        let full_key = self.full_key(key.as_str());
        let create_call = self.put_call(key, false);
        let created = self
            .retry
            .run(StorageOp::Put, key.as_str(), || async {
                let mut request = self
                    .client
                    .create_multipart_upload()
                    .bucket(&self.bucket)
                    .key(&full_key)
                    .checksum_algorithm(ChecksumAlgorithm::Crc32C)
                    .checksum_type(ChecksumType::FullObject)
                    .set_server_side_encryption(self.sse.map(|s| s.header()))
                    .set_ssekms_key_id(self.sse_kms_key_id.clone());
                if let Some(lock) = opts.lock {
                    request = request
                        .object_lock_mode(super::lock::sdk_mode(lock.mode))
                        .object_lock_retain_until_date(super::lock::sdk_time(lock.retain_until));
                }
                request.send().await.map_err(|e| create_call.error(e))
            })
            .await?;
        let Some(upload_id) = created.upload_id().map(str::to_owned) else {
            return Err(create_call
                .permanent("CreateMultipartUpload answered without an upload id".to_owned()));
        };
        let result = self
            .upload_parts(key, &full_key, &upload_id, parts, opts)
            .await;
        if result.is_err() {
            self.abort(key, &full_key, &upload_id).await;
        }
        result
    }

    async fn upload_parts<R>(
        &self,
        key: &ObjectKey,
        full_key: &str,
        upload_id: &str,
        mut parts: Parts<R>,
        opts: PutOptions,
    ) -> Result<ObjectMeta, StorageError>
    where
        R: AsyncRead + Send + Unpin,
    {
        let call = self.put_call(key, false);
        let mut completed = Vec::new();
        let (mut size, mut crc) = (0u64, 0u32);
        let mut number: i32 = 0;
        while let Some(part) = parts
            .next(self.part_size)
            .await
            .map_err(|e| self.read_error(key, e))?
        {
            number += 1;
            if number > MAX_PARTS {
                return Err(call.permanent(format!(
                    "object exceeds {MAX_PARTS} parts of {} bytes; raise the part size",
                    self.part_size
                )));
            }
            let part_crc = crate::crc::crc32c(&part);
            crc = crc32c::crc32c_combine(crc, part_crc, part.len());
            size += part.len() as u64;
            let encoded = encode_crc32c(part_crc);
            let uploaded = self
                .retry
                .run(StorageOp::Put, key.as_str(), || async {
                    self.client
                        .upload_part()
                        .bucket(&self.bucket)
                        .key(full_key)
                        .upload_id(upload_id)
                        .part_number(number)
                        .content_length(part.len() as i64)
                        .checksum_crc32_c(&encoded)
                        .body(ByteStream::from(part.clone()))
                        .send()
                        .await
                        .map_err(|e| call.error(e))
                })
                .await?;
            self.check_echo(key, uploaded.checksum_crc32_c(), part_crc)?;
            completed.push(
                CompletedPart::builder()
                    .part_number(number)
                    .set_e_tag(uploaded.e_tag().map(str::to_owned))
                    .checksum_crc32_c(encoded)
                    .build(),
            );
        }
        Self::check_expected(key, opts, crc)?;

        let conditional = opts.if_absent && self.conditional_create;
        let complete_call = self.put_call(key, conditional);
        let manifest = CompletedMultipartUpload::builder()
            .set_parts(Some(completed))
            .build();
        let output = self
            .retry
            .run(StorageOp::Put, key.as_str(), || async {
                let mut request = self
                    .client
                    .complete_multipart_upload()
                    .bucket(&self.bucket)
                    .key(full_key)
                    .upload_id(upload_id)
                    .multipart_upload(manifest.clone())
                    .checksum_type(ChecksumType::FullObject)
                    .checksum_crc32_c(encode_crc32c(crc));
                if conditional {
                    request = request.if_none_match("*");
                }
                request.send().await.map_err(|e| complete_call.error(e))
            })
            .await?;
        self.check_echo(key, output.checksum_crc32_c(), crc)?;
        Ok(ObjectMeta {
            key: key.clone(),
            size,
            crc32c: Some(crc),
            last_modified: Some(std::time::SystemTime::now()),
        })
    }

    /// Best effort: a failed abort leaves parts that a bucket lifecycle rule removes.
    async fn abort(&self, key: &ObjectKey, full_key: &str, upload_id: &str) {
        let result = self
            .client
            .abort_multipart_upload()
            .bucket(&self.bucket)
            .key(full_key)
            .upload_id(upload_id)
            .send()
            .await;
        if let Err(e) = result {
            let err = self.put_call(key, false).error(e);
            tracing::warn!(%key, upload_id, "could not abort a failed multipart upload: {err}");
        }
    }
}
