//! Secrets and configuration in the environment (issue 18, items 16 and 17), through the
//! binary: a URL's userinfo is never printed; `restore` writes into `postgresql.auto.conf`
//! only walship's own settings and the AWS chain's non-secret addressing, and refuses a value
//! that would break the file or carry credentials; a misspelt `WALSHIP_*` variable is a
//! warning naming the nearest known one, and archive, fetch and restore still work.
//! Real Postgres 15 (or the newest the harness finds), local repository.

mod restore_support;
mod support;

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use restore_support::{start_restored, walship_backup, walship_wrapper};
use support::{TestRepo, archive_everything, describe, walship_bin};

const SECRET: &str = "s3cr3tV4lue";
const KEY_ID: &str = "AKIAEXAMPLEKEY";

/// `walship --config <repo> <args>` with the test's environment plus `env`.
fn walship_with(repo: &TestRepo, env: &[(&str, &str)], args: &[&str]) -> Output {
    Command::new(walship_bin())
        .arg("--config")
        .arg(&repo.config)
        .args(args)
        .envs(repo.env())
        .envs(env.iter().copied())
        .output()
        .expect("run walship")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn assert_no_secret(out: &Output) {
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !all.contains(SECRET) && !all.contains(KEY_ID),
        "the URL's credentials were printed: {}",
        describe(out)
    );
}

#[test]
fn url_credentials_are_refused_and_never_printed() {
    let repo = TestRepo::local();
    let endpoint = format!("http://{KEY_ID}:{SECRET}@127.0.0.1:9");
    // walship's own variable: a configuration error that must not echo the value.
    let out = walship_with(&repo, &[("WALSHIP_S3_ENDPOINT", &endpoint)], &["list"]);
    assert!(!out.status.success(), "{}", describe(&out));
    assert!(
        stderr(&out).contains("WALSHIP_S3_ENDPOINT"),
        "{}",
        describe(&out)
    );
    assert_no_secret(&out);
    // A malformed one too (not even a URL the parser accepts).
    let out = walship_with(
        &repo,
        &[(
            "WALSHIP_S3_ENDPOINT",
            &format!("http://{KEY_ID}:{SECRET}@ bad host"),
        )],
        &["list"],
    );
    assert!(!out.status.success(), "{}", describe(&out));
    assert_no_secret(&out);
    // The AWS chain's variable, for an S3 repository: refused before any request, unechoed.
    for command in [
        &["list"][..],
        &["fetch", "000000010000000000000001", "/nonexistent/x"],
    ] {
        let mut args = vec!["--repo", "s3://walship-test/p"];
        args.extend_from_slice(command);
        let out = walship_with(&repo, &[("AWS_ENDPOINT_URL", &endpoint)], &args);
        assert!(!out.status.success(), "{}", describe(&out));
        assert!(stderr(&out).contains("credentials"), "{}", describe(&out));
        assert_no_secret(&out);
    }
}

/// The restored directory holds nothing: the refusal came before any data moved.
fn assert_untouched(to: &Path) {
    let entries = std::fs::read_dir(to).map(|d| d.count()).unwrap_or(0);
    assert_eq!(entries, 0, "{} was written into", to.display());
}

#[test]
fn restore_carries_only_known_settings_and_misspelt_variables_warn() {
    let installs = pg_test_harness::installs_under_test();
    let Some(install) = installs
        .iter()
        .find(|i| i.major == 15)
        .or_else(|| installs.last())
    else {
        return;
    };
    let repo = TestRepo::local();
    // A misspelt variable in archive_command's environment: archiving still works, the
    // server log shows the warning.
    let cluster = pg_test_harness::Cluster::builder(install)
        .initdb_arg("--wal-segsize=1")
        .setting("archive_mode", "on")
        .setting(
            "archive_command",
            &format!("'WALSHIP_ARCHIVE_ASYNK=true {}'", repo.archive_command("")),
        )
        .setting("checkpoint_timeout", "'1h'")
        .start();
    cluster.execute("create table kept (id int primary key)");
    cluster.execute("insert into kept select generate_series(1, 100)");
    walship_backup(&cluster, &repo);
    cluster.execute("insert into kept select generate_series(101, 120)");
    archive_everything(&cluster, Duration::from_secs(120));
    let log = cluster.log();
    assert!(
        log.contains("WALSHIP_ARCHIVE_ASYNK")
            && log.contains("did you mean WALSHIP_ARCHIVE_ASYNC?"),
        "no warning about the misspelt variable in the server log:\n{}",
        cluster.log_excerpt()
    );

    // fetch with a misspelt variable: delivered, exit 0, a warning on stderr only.
    let last = cluster.query_string("select last_archived_wal from pg_stat_archiver");
    let dir = pg_test_harness::test_dir("env-safety");
    let dest = dir.path().join("segment");
    let out = walship_with(
        &repo,
        &[("WALSHIP_FETCH_PREFECH", "2")],
        &["fetch", &last, dest.to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert!(std::fs::metadata(&dest).unwrap().len() > 0);
    let err = stderr(&out);
    assert!(
        err.contains("WALSHIP_FETCH_PREFECH") && err.contains("WALSHIP_FETCH_PREFETCH"),
        "{}",
        describe(&out)
    );
    assert!(out.stdout.is_empty(), "{}", describe(&out));

    // Refusals before anything moves: a value that would end its line in
    // postgresql.auto.conf, an endpoint with credentials.
    let wrapper = walship_wrapper(&repo);
    let restore = |to: &Path, env: &[(&str, &str)]| {
        let mut args = vec![
            "restore",
            "--target",
            "latest",
            "--to",
            to.to_str().unwrap(),
        ];
        args.extend(["--walship-path", wrapper.to_str().unwrap()]);
        walship_with(&repo, env, &args)
    };
    let refused_to = dir.path().join("refused");
    let out = restore(
        &refused_to,
        &[(
            "WALSHIP_FETCH_SPOOL_DIR",
            "/tmp/spool\nrestore_command = 'touch /tmp/pwned'",
        )],
    );
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    assert!(
        stderr(&out).contains("WALSHIP_FETCH_SPOOL_DIR"),
        "{}",
        describe(&out)
    );
    assert_untouched(&refused_to);
    let endpoint = format!("http://{KEY_ID}:{SECRET}@127.0.0.1:9");
    let out = restore(&refused_to, &[("AWS_ENDPOINT_URL", &endpoint)]);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    assert!(
        stderr(&out).contains("AWS_ENDPOINT_URL"),
        "{}",
        describe(&out)
    );
    assert_no_secret(&out);
    assert_untouched(&refused_to);

    // A restore with unknown and secret-looking variables set: only known settings are
    // carried, and the restored server recovers with that restore_command.
    let to = dir.path().join("data");
    let out = restore(
        &to,
        &[
            ("WALSHIP_PASS", SECRET),
            ("WALSHIP_AUTH", KEY_ID),
            ("WALSHIP_S3_SECRET_KEY", SECRET),
            ("WALSHIP_FETCH_PREFETCH", "3"),
            ("AWS_REGION", "eu-central-1"),
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert_no_secret(&out);
    let err = stderr(&out);
    assert!(
        err.contains("warning: environment variable WALSHIP_PASS"),
        "{}",
        describe(&out)
    );
    let auto = std::fs::read_to_string(to.join("postgresql.auto.conf")).unwrap();
    let line = auto
        .lines()
        .find(|l| l.starts_with("restore_command"))
        .unwrap_or_else(|| panic!("no restore_command: {auto}"));
    for carried in ["WALSHIP_FETCH_PREFETCH=3", "AWS_REGION=eu-central-1"] {
        assert!(line.contains(carried), "{carried} not carried: {line}");
    }
    for never in [
        SECRET,
        KEY_ID,
        "WALSHIP_PASS",
        "WALSHIP_AUTH",
        "WALSHIP_S3_SECRET_KEY",
    ] {
        assert!(!auto.contains(never), "{never} written into {auto}");
    }
    let restored = start_restored(install, &to);
    assert_eq!(
        restored.query_string("select count(*)::text from kept"),
        "120",
        "{}",
        restored.log_excerpt()
    );
}
