//! Configuration merging: precedence of flags over environment over file over defaults, file
//! selection, and errors that name the key, the value and the source. The environment is an
//! injected map, never the process's own.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use walship_common::codec::Codec;
use walship_common::config::{ByteSize, Config, ConfigError, Options, Origin, Sources};

struct Setup {
    dir: tempfile::TempDir,
    sources: Sources,
}

impl Setup {
    /// No flags, no environment, and a default config file path that does not exist yet.
    fn new() -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let default_config_file = dir.path().join("etc-walship.toml");
        Setup {
            sources: Sources {
                options: Options::default(),
                env: BTreeMap::new(),
                default_config_file,
            },
            dir,
        }
    }

    fn default_file(&self, text: &str) -> PathBuf {
        std::fs::write(&self.sources.default_config_file, text).unwrap();
        self.sources.default_config_file.clone()
    }

    fn file(&self, name: &str, text: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    fn env(&mut self, name: &str, value: &str) -> &mut Self {
        self.sources.env.insert(name.to_string(), value.to_string());
        self
    }

    fn load(&self) -> Result<Config, ConfigError> {
        Config::load(&self.sources)
    }
}

#[test]
fn flags_override_environment_override_file_override_defaults() {
    let mut s = Setup::new();
    let file = s.default_file(
        r#"
repo = "s3://file-bucket/p"
compression = "zstd"

[s3]
connect_timeout = "5s"
part_size = "16MiB"

[archive]
parallel = 2
async = true

[stream]
slot = "from_file"
"#,
    );
    s.env("WALSHIP_REPO", "s3://env-bucket/p")
        .env("WALSHIP_COMPRESSION", "none")
        .env("WALSHIP_ARCHIVE_PARALLEL", "3")
        .env("WALSHIP_S3_PART_SIZE", "32MiB");
    s.sources.options.archive_parallel = Some("5".to_string());
    s.sources.options.archive_async = Some(false);

    let config = s.load().unwrap();
    assert_eq!(config.config_file.as_deref(), Some(file.as_path()));
    // Flag over environment over file.
    assert_eq!(config.archive.parallel, 5);
    assert!(!config.archive.r#async);
    // Environment over file.
    assert_eq!(config.repo, "s3://env-bucket/p");
    assert_eq!(config.compression, Codec::None);
    assert_eq!(config.s3.part_size, ByteSize::mib(32));
    // File over default.
    assert_eq!(config.s3.connect_timeout, Duration::from_secs(5));
    assert_eq!(config.stream.slot, "from_file");
    // Defaults.
    assert_eq!(config.s3.operation_timeout, Duration::from_secs(120));
    assert_eq!(config.fetch.prefetch, 8);
    assert_eq!(config.stream.application_name, "walship");

    // Drop the flags: the environment shows through; drop that too: the file does.
    s.sources.options = Options::default();
    let config = s.load().unwrap();
    assert_eq!(config.archive.parallel, 3);
    assert!(config.archive.r#async);
    s.sources.env.clear();
    let config = s.load().unwrap();
    assert_eq!(config.compression, Codec::Zstd { level: 3 });
    assert_eq!(config.repo, "s3://file-bucket/p");
    assert_eq!(config.archive.parallel, 2);
}

#[test]
fn defaults_apply_without_any_file() {
    let mut s = Setup::new();
    s.sources.options.repo = Some("file:///var/lib/walship".to_string());
    let config = s.load().unwrap();
    assert_eq!(config.config_file, None);
    assert_eq!(config.compression, Codec::Lz4);
    assert_eq!(config.s3.connect_timeout, Duration::from_secs(10));
    assert!(!config.s3.path_style);
    assert_eq!(config.stream.partial_interval, Duration::from_secs(1));
}

#[test]
fn path_style_follows_the_endpoint_unless_set() {
    let mut s = Setup::new();
    s.env("WALSHIP_REPO", "s3://b")
        .env("WALSHIP_S3_ENDPOINT", "http://127.0.0.1:8333");
    assert!(s.load().unwrap().s3.path_style);
    s.env("WALSHIP_S3_PATH_STYLE", "false");
    assert!(!s.load().unwrap().s3.path_style);
}

#[test]
fn config_file_is_chosen_by_flag_then_env_then_default() {
    let mut s = Setup::new();
    s.default_file("repo = \"s3://default-file\"");
    let env_file = s.file("env.toml", "repo = \"s3://env-file\"");
    let flag_file = s.file("flag.toml", "repo = \"s3://flag-file\"");
    assert_eq!(s.load().unwrap().repo, "s3://default-file");
    s.env("WALSHIP_CONFIG", env_file.to_str().unwrap());
    assert_eq!(s.load().unwrap().repo, "s3://env-file");
    s.sources.options.config = Some(flag_file.clone());
    let config = s.load().unwrap();
    assert_eq!(config.repo, "s3://flag-file");
    assert_eq!(config.config_file, Some(flag_file));
}

#[test]
fn a_named_config_file_that_is_missing_is_an_error_naming_it() {
    let mut s = Setup::new();
    s.env("WALSHIP_REPO", "s3://b");
    let missing = s.dir.path().join("nope.toml");
    s.sources.options.config = Some(missing.clone());
    let err = s.load().unwrap_err();
    assert!(
        matches!(&err, ConfigError::FileMissing { path, origin: Origin::Flag("--config") } if *path == missing),
        "{err}"
    );
    assert!(err.to_string().contains(missing.to_str().unwrap()), "{err}");

    s.sources.options.config = None;
    s.env("WALSHIP_CONFIG", missing.to_str().unwrap());
    let err = s.load().unwrap_err();
    assert!(
        matches!(
            &err,
            ConfigError::FileMissing {
                origin: Origin::Env("WALSHIP_CONFIG"),
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("WALSHIP_CONFIG"), "{err}");
}

fn assert_unknown_key(text: &str, expected_key: &str) -> String {
    let s = Setup::new();
    let path = s.default_file(text);
    let err = s.load().unwrap_err();
    match &err {
        ConfigError::UnknownKey { key, file, .. } => {
            assert_eq!(key, expected_key);
            assert_eq!(file, &path);
        }
        other => panic!("expected an unknown key error, got {other}"),
    }
    let message = err.to_string();
    assert!(
        message.contains(expected_key) && message.contains(path.to_str().unwrap()),
        "{message}"
    );
    message
}

#[test]
fn unknown_keys_in_the_file_are_errors_naming_key_and_file() {
    assert_unknown_key("repo = \"s3://b\"\nrepos = \"s3://c\"", "repos");
    assert_unknown_key(
        "repo = \"s3://b\"\n[s3]\nendpint = \"http://x\"",
        "s3.endpint",
    );
    assert_unknown_key(
        "[archive]\nparallel = 2\n[archives]\nparallel = 2",
        "archives",
    );
    assert_unknown_key("s3 = \"http://x\"", "s3");
    // A secret in the file is refused with a pointer to where secrets belong, and not echoed.
    let message = assert_unknown_key(
        "[s3]\nsecret_access_key = \"hunter2\"",
        "s3.secret_access_key",
    );
    assert!(
        message.contains("AWS credential chain") && !message.contains("hunter2"),
        "{message}"
    );
}

fn assert_invalid(s: &Setup, key: &str, value: &str, origin: &Origin) {
    let err = s.load().unwrap_err();
    match &err {
        ConfigError::InvalidValue {
            key: k,
            value: v,
            origin: o,
            ..
        } => {
            assert_eq!((*k, v.as_str(), o), (key, value, origin), "{err}");
        }
        other => panic!("expected an invalid value error for {key}, got {other}"),
    }
    let message = err.to_string();
    assert!(
        message.contains(key) && message.contains(value),
        "{message}"
    );
}

#[test]
fn bad_durations_and_sizes_are_errors_naming_key_and_value() {
    let mut s = Setup::new();
    let path = s.default_file("repo = \"s3://b\"\n[s3]\nconnect_timeout = \"ten seconds\"\n");
    assert_invalid(
        &s,
        "s3.connect_timeout",
        "ten seconds",
        &Origin::File(path.clone()),
    );

    s.default_file("repo = \"s3://b\"\n[backup]\nbundle_size = \"64 parsecs\"\n");
    assert_invalid(
        &s,
        "backup.bundle_size",
        "64 parsecs",
        &Origin::File(path.clone()),
    );

    // A bare number is not a duration: the unit is required.
    s.default_file("repo = \"s3://b\"\n[stream]\npartial_interval = 10\n");
    assert_invalid(
        &s,
        "stream.partial_interval",
        "10",
        &Origin::File(path.clone()),
    );

    s.default_file("repo = \"s3://b\"\n");
    for (var, key, value) in [
        (
            "WALSHIP_S3_OPERATION_TIMEOUT",
            "s3.operation_timeout",
            "5 fortnights",
        ),
        ("WALSHIP_S3_PART_SIZE", "s3.part_size", "1MiB"),
        ("WALSHIP_ARCHIVE_ASYNC", "archive.async", "maybe"),
    ] {
        s.env(var, value);
        let origin = Origin::Env(walship_common::config::env_var(key).unwrap());
        assert_eq!(origin, Origin::Env(var));
        assert_invalid(&s, key, value, &origin);
        s.sources.env.clear();
    }

    s.sources.options.stream_slot = Some("Bad-Slot".to_string());
    assert_invalid(&s, "stream.slot", "Bad-Slot", &Origin::Flag("--slot"));
    s.sources.options = Options {
        fetch_parallel: Some("0".to_string()),
        ..Options::default()
    };
    assert_invalid(&s, "fetch.parallel", "0", &Origin::Flag("--parallel"));
}

#[test]
fn missing_repository_names_every_way_to_set_one() {
    let s = Setup::new();
    let err = s.load().unwrap_err();
    assert!(matches!(err, ConfigError::MissingRepo { .. }), "{err}");
    let message = err.to_string();
    for way in [
        "--repo s3://bucket/prefix",
        "WALSHIP_REPO=",
        "repo = ",
        "config file",
    ] {
        assert!(message.contains(way), "{way:?} missing from: {message}");
    }
    // With a file that lacks it, the message says which file was read.
    let path = s.default_file("compression = \"zstd\"");
    let message = s.load().unwrap_err().to_string();
    assert!(message.contains(path.to_str().unwrap()), "{message}");
}

#[test]
fn repository_urls_are_checked_and_credentials_never_echoed() {
    let mut s = Setup::new();
    for good in [
        "s3://bucket",
        "s3://bucket/some/prefix",
        "file:///var/lib/walship",
    ] {
        s.env("WALSHIP_REPO", good);
        assert_eq!(s.load().unwrap().repo, good);
    }
    for bad in [
        "bucket/prefix",
        "s3:///prefix",
        "http://bucket",
        "file://host/path",
        "s3://b?x=1",
    ] {
        s.env("WALSHIP_REPO", bad);
        assert_invalid(&s, "repo", bad, &Origin::Env("WALSHIP_REPO"));
    }
    s.env("WALSHIP_REPO", "s3://AKIAEXAMPLE:hunter2@bucket/p");
    let err = s.load().unwrap_err();
    assert!(
        matches!(err, ConfigError::CredentialsInRepo { .. }),
        "{err}"
    );
    assert!(
        !err.to_string().contains("hunter2") && !err.to_string().contains("AKIA"),
        "{err}"
    );
}

#[test]
fn empty_environment_variables_count_as_unset() {
    let mut s = Setup::new();
    s.default_file("repo = \"s3://from-file\"");
    s.env("WALSHIP_REPO", "")
        .env("WALSHIP_CONFIG", "")
        .env("WALSHIP_COMPRESSION", "");
    let config = s.load().unwrap();
    assert_eq!(config.repo, "s3://from-file");
    assert_eq!(config.compression, Codec::Lz4);
}

#[test]
fn unknown_walship_environment_variables_are_reported() {
    let mut s = Setup::new();
    s.env("WALSHIP_REPOO", "s3://b")
        .env("WALSHIP_CONFIG", "/x")
        .env("WALSHIP_FETCH_PREFETCH", "2");
    s.env("HOME", "/root");
    let unknown = s.sources.unknown_env_vars();
    let names: Vec<&str> = unknown.iter().map(|u| u.name.as_str()).collect();
    assert_eq!(names, ["WALSHIP_REPOO"]);
    assert_eq!(unknown[0].nearest, "WALSHIP_REPO");
    assert!(
        unknown[0]
            .to_string()
            .contains("did you mean WALSHIP_REPO?")
    );
}

#[test]
fn serializes_for_check_json_in_config_syntax() {
    let mut s = Setup::new();
    s.env("WALSHIP_REPO", "s3://b/p")
        .env("WALSHIP_STREAM_PARTIAL_INTERVAL", "1500ms");
    let json = serde_json::to_value(s.load().unwrap()).unwrap();
    assert_eq!(json["repo"], "s3://b/p");
    assert_eq!(json["compression"], "lz4");
    assert_eq!(json["s3"]["connect_timeout"], "10s");
    assert_eq!(json["s3"]["part_size"], "64MiB");
    assert_eq!(json["archive"]["async"], false);
    assert_eq!(json["stream"]["partial_interval"], "1s 500ms");
    assert_eq!(json["config_file"], serde_json::Value::Null);
}

#[test]
fn syntax_errors_name_the_file() {
    let s = Setup::new();
    let path = s.default_file("repo = \"s3://b\"\n[s3\n");
    let err = s.load().unwrap_err();
    assert!(
        matches!(&err, ConfigError::FileSyntax { path: p, .. } if p == &path),
        "{err}"
    );
}

/// Issue 19, item 9: `walship restore --parallel` is backed by the configuration like every
/// other command's `--parallel`: file, then environment, then the flag.
#[test]
fn restore_parallel_is_a_config_key() {
    let mut s = Setup::new();
    s.default_file("repo = \"file:///r\"\n[restore]\nparallel = 6\n");
    assert_eq!(s.load().unwrap().restore.parallel, 6);
    s.env("WALSHIP_RESTORE_PARALLEL", "8");
    assert_eq!(s.load().unwrap().restore.parallel, 8);
    s.sources.options.restore_parallel = Some("2".to_string());
    assert_eq!(s.load().unwrap().restore.parallel, 2);
    s.sources.options.restore_parallel = Some("0".to_string());
    assert_invalid(&s, "restore.parallel", "0", &Origin::Flag("--parallel"));
    s.sources.options.restore_parallel = None;
    s.sources.env.clear();
    std::fs::remove_file(&s.sources.default_config_file).unwrap();
    s.env("WALSHIP_REPO", "file:///r");
    assert_eq!(s.load().unwrap().restore.parallel, 4);
}

/// Issue 19, item 8: `log_level` was parsed and never used; it is gone, and a file that still
/// sets it is told where the log level is set instead.
#[test]
fn log_level_is_not_a_key_and_the_error_says_what_to_use() {
    let s = Setup::new();
    s.default_file("repo = \"file:///r\"\nlog_level = \"debug\"\n");
    let message = s.load().unwrap_err().to_string();
    assert!(message.contains("log_level"), "{message}");
    assert!(message.contains("-v"), "{message}");
}

#[test]
fn object_lock_defaults_off_is_set_by_file_or_env_and_refused_where_it_cannot_work() {
    let mut s = Setup::new();
    s.env("WALSHIP_REPO", "s3://bucket/p");
    let config = s.load().unwrap();
    assert_eq!(config.s3.object_lock.as_str(), "off");
    assert_eq!(config.s3.object_lock_margin, Duration::from_secs(86_400));
    assert_eq!(config.lock_policy().unwrap(), None);

    // On without a PITR window: refused, naming the missing key.
    s.env("WALSHIP_S3_OBJECT_LOCK", "compliance");
    let err = s.load().unwrap_err().to_string();
    assert!(
        err.contains("s3.object_lock") && err.contains("retention.pitr_window"),
        "{err}"
    );

    // With one: the durations follow the policy and the margin.
    s.env("WALSHIP_RETENTION_PITR_WINDOW", "7d")
        .env("WALSHIP_RETENTION_DAILY", "14")
        .env("WALSHIP_S3_OBJECT_LOCK_MARGIN", "2d");
    let lock = s.load().unwrap().lock_policy().unwrap().unwrap();
    assert_eq!(lock.wal, Duration::from_secs(9 * 86_400));
    assert_eq!(lock.backup, Duration::from_secs(16 * 86_400));

    // A local repository: refused, saying why.
    s.env("WALSHIP_REPO", "file:///var/lib/walship");
    let err = s.load().unwrap_err().to_string();
    assert!(err.contains("not on S3"), "{err}");

    // A value that is not a mode names the key and the choices.
    s.env("WALSHIP_REPO", "s3://bucket/p")
        .env("WALSHIP_S3_OBJECT_LOCK", "worm");
    let err = s.load().unwrap_err().to_string();
    assert!(
        err.contains("s3.object_lock") && err.contains("off, governance or compliance"),
        "{err}"
    );
}

#[test]
fn copy_targets_and_fallback_repositories_from_file_environment_and_flags() {
    let mut s = Setup::new();
    s.default_file(
        r#"
repo = "s3://primary/p"
fallback_repos = ["s3://dr-bucket/p", "file:///mnt/offsite/p"]

[[copy]]
repo = "s3://dr-bucket/p"
region = "us-west-2"
endpoint = "https://s3.us-west-2.amazonaws.com"

[[copy]]
repo = "file:///mnt/offsite/p"
"#,
    );
    let config = s.load().unwrap();
    assert_eq!(
        config.fallback_repos,
        ["s3://dr-bucket/p", "file:///mnt/offsite/p"]
    );
    assert_eq!(config.copy.len(), 2);
    assert_eq!(config.copy[0].repo, "s3://dr-bucket/p");
    assert_eq!(config.copy[0].region.as_deref(), Some("us-west-2"));
    assert_eq!(
        config.copy[0].endpoint.as_deref(),
        Some("https://s3.us-west-2.amazonaws.com")
    );
    assert_eq!(config.copy[1].repo, "file:///mnt/offsite/p");
    assert_eq!(config.copy[1].endpoint, None);

    // The environment replaces the file's lists; the flag replaces both.
    s.env("WALSHIP_FALLBACK_REPOS", "s3://env-a/p, s3://env-b/p")
        .env("WALSHIP_COPY", "file:///env/copy");
    let config = s.load().unwrap();
    assert_eq!(config.fallback_repos, ["s3://env-a/p", "s3://env-b/p"]);
    assert_eq!(config.copy.len(), 1);
    assert_eq!(config.copy[0].repo, "file:///env/copy");
    s.sources.options.fallback_repos = Some("s3://flag-a/p".to_string());
    assert_eq!(s.load().unwrap().fallback_repos, ["s3://flag-a/p"]);

    // Each URL is checked as `repo` is, credentials never echoed.
    s.sources.options.fallback_repos = Some("s3://AKIA:secret@bucket/p".to_string());
    let err = s.load().unwrap_err().to_string();
    assert!(
        err.contains("fallback_repos") && !err.contains("AKIA"),
        "{err}"
    );
    s.sources.options.fallback_repos = None;
    s.file(
        "bad.toml",
        "repo = \"s3://primary/p\"\n[[copy]]\nrepo = \"s3://b/p\"\nbucket = \"x\"\n",
    );
    s.sources.options.config = Some(s.dir.path().join("bad.toml"));
    let err = s.load().unwrap_err().to_string();
    assert!(err.contains("bucket"), "{err}");
}

#[test]
fn server_side_encryption_and_ca_file_reach_the_s3_options() {
    let mut s = Setup::new();
    s.default_file(
        "repo = \"s3://b/p\"\n[s3]\nsse = \"aws:kms\"\nsse_kms_key_id = \"alias/walship\"\nca_file = \"/etc/walship/ca.pem\"\n",
    );
    let config = s.load().unwrap();
    let opts = config.s3.to_options();
    assert_eq!(
        opts.sse,
        Some(walship_common::storage::ServerSideEncryption::AwsKms)
    );
    assert_eq!(opts.sse_kms_key_id.as_deref(), Some("alias/walship"));
    assert_eq!(
        opts.ca_file.as_deref(),
        Some(std::path::Path::new("/etc/walship/ca.pem"))
    );
    s.env("WALSHIP_S3_SSE", "AES256");
    assert_eq!(
        s.load().unwrap().s3.sse,
        Some(walship_common::storage::ServerSideEncryption::Aes256)
    );
    for (var, bad) in [
        ("WALSHIP_S3_SSE", "aes256"),
        ("WALSHIP_S3_CA_FILE", "relative/ca.pem"),
    ] {
        s.env(var, bad);
        let err = s.load().unwrap_err().to_string();
        assert!(err.contains(var), "{err}");
        s.sources.env.remove(var);
    }
    // No setting: no header, the system's roots only.
    s.default_file("repo = \"s3://b/p\"\n");
    let opts = s.load().unwrap().s3.to_options();
    assert_eq!(
        (opts.sse, opts.sse_kms_key_id, opts.ca_file),
        (None, None, None)
    );
}

#[test]
fn kms_key_id_is_refused_never_ignored() {
    let mut s = Setup::new();
    s.default_file(
        "repo = \"s3://b/p\"\n[encryption]\nkms_key_id = \"arn:aws:kms:eu-west-1:1:key/x\"\n",
    );
    let err = s.load().unwrap_err().to_string();
    assert!(
        err.contains("encryption.kms_key_id") && err.contains("not supported"),
        "{err}"
    );
    s.default_file("repo = \"s3://b/p\"\n");
    s.env("WALSHIP_ENCRYPTION_KMS_KEY_ID", "alias/x");
    let err = s.load().unwrap_err().to_string();
    assert!(err.contains("WALSHIP_ENCRYPTION_KMS_KEY_ID"), "{err}");
}
