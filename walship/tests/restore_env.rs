//! The `restore_command` that `walship restore` writes works when the repository's settings
//! came only from the environment (no config file): the non-secret `WALSHIP_*` settings are
//! carried into the command as `NAME=value` assignments, the credentials are not (the
//! restored server's own environment must hold them). Real Postgres (newest major), real
//! SeaweedFS.

mod restore_support;
mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use restore_support::{archiving_cluster, start_restored, take_backup};
use support::{TestRepo, archive_everything, describe, walship_bin};

/// What the server's environment holds, as an operator would provide it: credentials only.
/// Without the carried endpoint, `walship fetch` would look for the bucket on AWS.
fn credentials_only_wrapper(dir: &Path, access_key: &str, secret_key: &str) -> PathBuf {
    let path = dir.join("walship-credentials-only");
    std::fs::write(
        &path,
        format!(
            "#!/bin/sh\nexec env AWS_EC2_METADATA_DISABLED=true AWS_CONFIG_FILE=/dev/null \
             AWS_SHARED_CREDENTIALS_FILE=/dev/null AWS_ACCESS_KEY_ID='{access_key}' \
             AWS_SECRET_ACCESS_KEY='{secret_key}' '{}' \"$@\"\n",
            walship_bin().display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

#[test]
fn restore_command_carries_settings_from_the_environment() {
    let Some(repo) = TestRepo::s3() else {
        return;
    };
    let installs = pg_test_harness::installs_under_test();
    let Some(install) = installs.last() else {
        return;
    };
    let s3 = repo.s3.as_ref().unwrap();
    let cluster = archiving_cluster(install, &repo);
    cluster.execute("create table envt (id int primary key)");
    cluster.execute("insert into envt select generate_series(1, 100)");
    take_backup(&cluster, &repo);
    cluster.execute("insert into envt select generate_series(101, 150)");
    archive_everything(&cluster, Duration::from_secs(120));

    let dir = pg_test_harness::test_dir("env-restored");
    let to = dir.path().join("data");
    let wrapper = credentials_only_wrapper(dir.path(), &s3.access_key, &s3.secret_key);
    // No config file: the repository flag and WALSHIP_* settings only.
    let out = Command::new(walship_bin())
        .args(["--repo", &repo.url, "restore", "--target", "latest", "--to"])
        .arg(&to)
        .arg("--walship-path")
        .arg(&wrapper)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("WALSHIP_S3_ENDPOINT", &s3.endpoint)
        .env("WALSHIP_S3_REGION", &s3.region)
        .env("WALSHIP_S3_CONNECT_TIMEOUT", "2s")
        .env("AWS_ACCESS_KEY_ID", &s3.access_key)
        .env("AWS_SECRET_ACCESS_KEY", &s3.secret_key)
        .env("AWS_SESSION_TOKEN", "never-written")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .output()
        .unwrap();
    assert!(out.status.success(), "restore: {}", describe(&out));
    let auto = std::fs::read_to_string(to.join("postgresql.auto.conf")).unwrap();
    let line = auto
        .lines()
        .find(|l| l.starts_with("restore_command"))
        .unwrap_or_else(|| panic!("no restore_command: {auto}"));
    for needle in [
        format!("WALSHIP_S3_ENDPOINT={}", s3.endpoint),
        format!("WALSHIP_S3_REGION={}", s3.region),
        "WALSHIP_S3_CONNECT_TIMEOUT=2s".to_string(),
        format!("--repo {}", repo.url),
    ] {
        assert!(line.contains(&needle), "{needle:?} not in {line}");
    }
    for secret in [&s3.secret_key, "never-written", "AWS_ACCESS_KEY_ID"] {
        assert!(!auto.contains(secret), "{secret:?} written into {auto}");
    }
    let restored = start_restored(install, &to);
    assert_eq!(
        restored.query_string("select count(*)::text from envt"),
        "150",
        "{}",
        restored.log_excerpt()
    );
}
