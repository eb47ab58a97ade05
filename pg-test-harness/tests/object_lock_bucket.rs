//! The harness can create a bucket with S3 Object Lock enabled, and SeaweedFS then reports its
//! lock configuration and versioning as on.

use pg_test_harness::s3::s3_under_test;

#[test]
fn object_lock_bucket_has_lock_and_versioning() {
    let Some(s3) = s3_under_test() else { return };
    let bucket = s3
        .create_object_lock_bucket()
        .expect("create object-lock bucket");
    let lock = s3
        .http("GET", &format!("/{bucket}?object-lock"), b"")
        .expect("GET ?object-lock");
    assert_eq!(lock.status, 200, "{}", lock.body_text());
    assert!(lock.body_text().contains("Enabled"), "{}", lock.body_text());
    let versioning = s3
        .http("GET", &format!("/{bucket}?versioning"), b"")
        .expect("GET ?versioning");
    assert!(
        versioning.body_text().contains("Enabled"),
        "{}",
        versioning.body_text()
    );
    let plain = s3
        .http("GET", &format!("/{}?object-lock", s3.bucket), b"")
        .expect("GET ?object-lock of the plain bucket");
    assert!(
        !plain.body_text().contains("<ObjectLockEnabled>Enabled"),
        "{}",
        plain.body_text()
    );
}
