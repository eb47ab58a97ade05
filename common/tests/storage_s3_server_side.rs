//! What walship asks of the S3 server besides storing bytes, against a real SeaweedFS:
//! server-side encryption (`s3.sse`) and a private certificate authority for an `https`
//! endpoint (`s3.ca_file`).
//!
//! SeaweedFS 4.48 implements SSE-S3 (`AES256`): it answers a HEAD with the
//! `x-amz-server-side-encryption` header the object was written with, and its data directory
//! no longer holds the plaintext. It has no KMS: an `aws:kms` write answers 500
//! `InternalError`, so `aws:kms` with `s3.sse_kms_key_id` is tested only as far as "the
//! request carries it and the failure is reported, never taken for success".

mod support;

use std::path::Path;

use bytes::Bytes;
use pg_test_harness::S3Server;
use walship_common::storage::{
    AnyStorage, PutOptions, S3Options, ServerSideEncryption, Storage, StorageError,
};

use support::{key, s3_options};

const PLAINTEXT: &[u8] = b"walship-sse-plaintext-marker-51f0";

fn head_sse(server: &S3Server, key: &str) -> Option<String> {
    let response = server
        .http("HEAD", &format!("/{}/{key}", server.bucket), b"")
        .unwrap();
    assert_eq!(response.status, 200, "HEAD {key}");
    response
        .header("x-amz-server-side-encryption")
        .map(str::to_string)
}

/// True when any file under `dir` holds `needle`.
fn found_under(dir: &Path, needle: &[u8]) -> bool {
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if let Ok(bytes) = std::fs::read(&path)
                && bytes.windows(needle.len()).any(|w| w == needle)
            {
                return true;
            }
        }
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_s3_is_requested_for_single_and_multipart_uploads() {
    let Some(server) = pg_test_harness::s3_under_test() else {
        return;
    };
    let plain_storage = AnyStorage::open(
        &format!("s3://{}/plain", server.bucket),
        &s3_options(&server),
    )
    .await
    .unwrap();
    let opts = S3Options {
        sse: Some(ServerSideEncryption::Aes256),
        part_size: 5 << 20,
        ..s3_options(&server)
    };
    let storage = AnyStorage::open(&format!("s3://{}/sse", server.bucket), &opts)
        .await
        .unwrap();
    let small: Bytes = PLAINTEXT.repeat(100).into();
    storage
        .put(&key("wal/small"), small.clone(), PutOptions::if_absent())
        .await
        .unwrap();
    // Larger than one part: CreateMultipartUpload carries the header.
    let big: Vec<u8> = PLAINTEXT.repeat((11 << 20) / PLAINTEXT.len());
    storage
        .put_stream(&key("wal/big"), &big[..], PutOptions::if_absent())
        .await
        .unwrap();
    plain_storage
        .put(&key("wal/small"), small.clone(), PutOptions::if_absent())
        .await
        .unwrap();

    assert_eq!(
        head_sse(&server, "sse/wal/small").as_deref(),
        Some("AES256")
    );
    assert_eq!(head_sse(&server, "sse/wal/big").as_deref(), Some("AES256"));
    assert_eq!(head_sse(&server, "plain/wal/small"), None);
    // Read back whole through the same client: SSE-S3 is transparent to readers.
    let got = storage.get_bytes(&key("wal/big"), 1 << 30).await.unwrap();
    assert_eq!(got.len(), big.len());
    assert!(got[..] == big[..]);

    // aws:kms with a key id: SeaweedFS has no KMS and fails the write; walship reports the
    // failure (never a success) and names the key it was writing.
    let kms = S3Options {
        sse: Some(ServerSideEncryption::AwsKms),
        sse_kms_key_id: Some("arn:aws:kms:us-east-1:111122223333:key/walship-test".into()),
        ..s3_options(&server)
    };
    let storage = AnyStorage::open(&format!("s3://{}/kms", server.bucket), &kms)
        .await
        .unwrap();
    let err = storage
        .put(&key("wal/kms"), small, PutOptions::if_absent())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("wal/kms"), "{err}");
    let listed = storage.list("").await.unwrap();
    assert!(listed.is_empty(), "{listed:?}");

    // A key id without aws:kms is refused before any request.
    let bad = S3Options {
        sse: Some(ServerSideEncryption::Aes256),
        sse_kms_key_id: Some("some-key".into()),
        ..s3_options(&server)
    };
    let err = AnyStorage::open(&format!("s3://{}/bad", server.bucket), &bad)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("s3.sse_kms_key_id"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_private_ca_is_trusted_only_through_ca_file() {
    if pg_test_harness::s3_under_test().is_none() {
        return;
    }
    let pki = pg_test_harness::s3::TestPki::create().expect("openssl makes a test PKI");
    let server = S3Server::start_with_tls(&pki.path("server.pem"), &pki.path("server.key"))
        .expect("SeaweedFS with TLS");
    let url = format!("s3://{}/tls", server.bucket);
    let https = |ca_file: Option<std::path::PathBuf>| S3Options {
        endpoint: Some(server.https_endpoint()),
        ca_file,
        ..s3_options(&server)
    };
    // The HTTPS listener comes up with the rest; wait until it accepts connections.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while pg_test_harness::s3::port_refuses(server.ports().s3_https) {
        assert!(std::time::Instant::now() < deadline, "no HTTPS listener");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }

    // Without ca_file: the system's roots do not know the private CA, so nothing is stored,
    // and the failure is not "absent".
    let untrusted = AnyStorage::open(&url, &https(None)).await.unwrap();
    let err = untrusted
        .put(
            &key("wal/x"),
            Bytes::from_static(PLAINTEXT),
            PutOptions::if_absent(),
        )
        .await
        .unwrap_err();
    eprintln!("without ca_file: {err}");
    assert!(!err.is_not_found());
    let err = untrusted
        .get_bytes(&key("wal/x"), 1 << 20)
        .await
        .unwrap_err();
    assert!(
        !err.is_not_found(),
        "a TLS failure must never read as absent: {err}"
    );

    // With ca_file: stored and read back over TLS.
    let trusted = AnyStorage::open(&url, &https(Some(pki.path("ca.pem"))))
        .await
        .unwrap();
    trusted
        .put(
            &key("wal/x"),
            Bytes::from_static(PLAINTEXT),
            PutOptions::if_absent(),
        )
        .await
        .unwrap();
    let got = trusted.get_bytes(&key("wal/x"), 1 << 20).await.unwrap();
    assert_eq!(&got[..], PLAINTEXT);

    // A CA file that is not PEM is refused when the storage is opened, naming the file.
    std::fs::write(pki.path("not-pem"), b"hello").unwrap();
    let err = AnyStorage::open(&url, &https(Some(pki.path("not-pem"))))
        .await
        .unwrap_err();
    assert!(matches!(err, StorageError::InvalidUrl { .. }), "{err}");
    assert!(err.to_string().contains("not-pem"), "{err}");
    let err = AnyStorage::open(&url, &https(Some(pki.path("missing.pem"))))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("missing.pem"), "{err}");
    drop(server);
}

#[test]
fn server_side_data_is_not_plaintext_on_disk() {
    // SSE-S3 on SeaweedFS encrypts what its volume files hold: written without it, the
    // plaintext is found in the data directory; written with it, it is not.
    let Some(server) = pg_test_harness::s3_under_test() else {
        return;
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    let body: Bytes = PLAINTEXT.repeat(4).into();
    for (prefix, sse) in [
        ("with", Some(ServerSideEncryption::Aes256)),
        ("without", None),
    ] {
        let opts = S3Options {
            sse,
            ..s3_options(&server)
        };
        let storage = rt
            .block_on(AnyStorage::open(
                &format!("s3://{}/{prefix}", server.bucket),
                &opts,
            ))
            .unwrap();
        rt.block_on(storage.put(&key("obj"), body.clone(), PutOptions::if_absent()))
            .unwrap();
        let marker = [PLAINTEXT, prefix.as_bytes()].concat();
        rt.block_on(storage.put(
            &key("marker"),
            Bytes::from(marker.clone()),
            PutOptions::if_absent(),
        ))
        .unwrap();
        let visible = found_under(&server.data_dir(), &marker);
        assert_eq!(
            visible,
            sse.is_none(),
            "{prefix} SSE: plaintext on disk {visible}"
        );
    }
}
