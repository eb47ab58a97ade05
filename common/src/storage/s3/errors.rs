//! Turning AWS SDK errors into [`StorageError`]s: which S3 answers are final (404, 412,
//! 403), which are worth retrying (throttling, 5xx, timeouts, reset connections).
//!
//! The classification of an HTTP answer is a pure function ([`classify`]) so that it is
//! unit-tested without a server.

use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};

use crate::storage::error::{StorageError, StorageOp, error_chain};

/// What an S3 error answer means for us.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Class {
    /// The key (not the bucket) does not exist.
    NotFound,
    /// A conditional create found the key taken.
    AlreadyExists,
    /// The server computed a different checksum than the one we sent.
    Corrupt,
    /// Worth another try.
    Transient,
    /// Retrying cannot help.
    Permanent,
}

/// Classifies an S3 error answer by HTTP status and S3 error code (`code` is absent on
/// answers without a body, such as HEAD). `conditional` says the request carried
/// `If-None-Match: *`, the only case where 412 means "already exists".
pub(crate) fn classify(status: u16, code: Option<&str>, conditional: bool) -> Class {
    match code {
        // A missing bucket is a configuration error, never a missing object.
        Some("NoSuchBucket" | "NoSuchUpload") => return Class::Permanent,
        Some("NoSuchKey" | "NotFound") => return Class::NotFound,
        Some("BadDigest" | "XAmzContentChecksumMismatch" | "InvalidChecksum") => {
            return Class::Corrupt;
        }
        Some(
            "SlowDown"
            | "Throttling"
            | "ThrottlingException"
            | "RequestTimeout"
            | "RequestTimeTooSkewed"
            | "InternalError"
            | "ServiceUnavailable"
            | "OperationAborted"
            | "ConditionalRequestConflict",
        ) => return Class::Transient,
        _ => {}
    }
    match status {
        404 => Class::NotFound,
        412 if conditional => Class::AlreadyExists,
        // 409 on a conditional write: another writer's request is in flight; the retry
        // will see its result (412 or success).
        408 | 409 | 429 => Class::Transient,
        500..=599 => Class::Transient,
        _ => Class::Permanent,
    }
}

/// Context of a failed call, for the error it becomes.
pub(crate) struct Call<'a> {
    pub op: StorageOp,
    pub key: &'a str,
    pub endpoint: &'a str,
    pub conditional: bool,
}

impl Call<'_> {
    /// Maps an SDK error to a storage error naming the key and the endpoint.
    pub(crate) fn error<E, R>(&self, err: SdkError<E, R>) -> StorageError
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
        R: std::fmt::Debug + HttpStatus + 'static,
    {
        let message = error_chain(&err);
        match &err {
            SdkError::TimeoutError(_) => self.timeout(),
            SdkError::DispatchFailure(failure) if failure.is_timeout() => self.timeout(),
            SdkError::DispatchFailure(failure) if failure.is_user() => self.permanent(message),
            SdkError::ConstructionFailure(_) => self.permanent(message),
            SdkError::ServiceError(service) => {
                let status = service.raw().status_code();
                let code = service.err().code();
                let message = match (code, service.err().message()) {
                    (Some(code), Some(text)) => format!("HTTP {status} {code}: {text}"),
                    (Some(code), None) => format!("HTTP {status} {code}"),
                    _ => format!("HTTP {status}: {message}"),
                };
                self.classified(classify(status, code, self.conditional), message)
            }
            // Dispatch failures (refused or reset connections, DNS), unreadable answers.
            _ => self.transient(message),
        }
    }

    /// The error for an answer of class `class`.
    pub(crate) fn classified(&self, class: Class, message: String) -> StorageError {
        match class {
            Class::NotFound => StorageError::NotFound {
                key: self.key.to_owned(),
            },
            Class::AlreadyExists => StorageError::AlreadyExists {
                key: self.key.to_owned(),
            },
            Class::Corrupt => StorageError::Corrupt {
                key: self.key.to_owned(),
                message: format!("{} at {}: {message}", self.op, self.endpoint),
            },
            Class::Transient => self.transient(message),
            Class::Permanent => self.permanent(message),
        }
    }

    fn timeout(&self) -> StorageError {
        StorageError::Timeout {
            op: self.op,
            key: self.key.to_owned(),
            endpoint: self.endpoint.to_owned(),
        }
    }

    pub(crate) fn transient(&self, message: String) -> StorageError {
        StorageError::Transient {
            op: self.op,
            key: self.key.to_owned(),
            endpoint: self.endpoint.to_owned(),
            message,
        }
    }

    pub(crate) fn permanent(&self, message: String) -> StorageError {
        StorageError::Permanent {
            op: self.op,
            key: self.key.to_owned(),
            endpoint: self.endpoint.to_owned(),
            message,
        }
    }
}

/// The HTTP status of a raw response (a trait so that the mapping is independent of the
/// SDK's response type).
pub(crate) trait HttpStatus {
    fn status_code(&self) -> u16;
}

impl HttpStatus for aws_smithy_runtime_api::http::Response {
    fn status_code(&self) -> u16 {
        self.status().as_u16()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn final_answers_are_not_retried() {
        assert_eq!(classify(404, None, false), Class::NotFound);
        assert_eq!(classify(404, Some("NoSuchKey"), false), Class::NotFound);
        assert_eq!(classify(404, Some("NoSuchBucket"), false), Class::Permanent);
        assert_eq!(
            classify(412, Some("PreconditionFailed"), true),
            Class::AlreadyExists
        );
        assert_eq!(classify(412, None, false), Class::Permanent);
        assert_eq!(classify(403, Some("AccessDenied"), false), Class::Permanent);
        assert_eq!(
            classify(403, Some("SignatureDoesNotMatch"), false),
            Class::Permanent
        );
        assert_eq!(
            classify(400, Some("InvalidArgument"), false),
            Class::Permanent
        );
        assert_eq!(classify(400, Some("BadDigest"), false), Class::Corrupt);
        assert_eq!(
            classify(301, Some("PermanentRedirect"), false),
            Class::Permanent
        );
    }

    #[test]
    fn throttling_and_server_errors_are_retried() {
        assert_eq!(classify(503, Some("SlowDown"), false), Class::Transient);
        assert_eq!(classify(503, None, false), Class::Transient);
        assert_eq!(
            classify(500, Some("InternalError"), false),
            Class::Transient
        );
        assert_eq!(classify(502, None, false), Class::Transient);
        assert_eq!(
            classify(400, Some("RequestTimeout"), false),
            Class::Transient
        );
        assert_eq!(classify(429, None, false), Class::Transient);
        assert_eq!(
            classify(409, Some("ConditionalRequestConflict"), true),
            Class::Transient
        );
    }

    #[test]
    fn classified_errors_name_key_and_endpoint() {
        let call = Call {
            op: StorageOp::Put,
            key: "wal/x",
            endpoint: "s3://b at http://127.0.0.1:9",
            conditional: true,
        };
        let err = call.classified(Class::Transient, "HTTP 503 SlowDown".into());
        assert!(err.is_retryable());
        let text = err.to_string();
        assert!(
            text.contains("wal/x") && text.contains("http://127.0.0.1:9"),
            "{text}"
        );
        assert!(
            call.classified(Class::AlreadyExists, String::new())
                .is_already_exists()
        );
        assert!(
            call.classified(Class::NotFound, String::new())
                .is_not_found()
        );
        assert!(
            call.classified(Class::Permanent, String::new())
                .is_permanent()
        );
    }
}
