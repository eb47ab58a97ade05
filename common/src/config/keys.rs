//! The one table of configuration keys: each key's name in the file, its environment variable,
//! its command-line flag, and how a text value is parsed, checked and applied. Every layer
//! (file, environment, flags) goes through this table, so a key is parsed and validated the same
//! way wherever it is set.

use std::path::PathBuf;

use super::error::Origin;
use super::values::{ByteSize, parse_bool, parse_count, parse_duration, parse_size};
use super::{Config, Options};

/// A configuration being assembled, layer by layer.
pub(crate) struct Draft {
    /// The repository URL and where it came from; required, checked at the end.
    pub(crate) repo: Option<(String, Origin)>,
    /// `s3.path_style` when set explicitly; otherwise it follows `s3.endpoint`.
    pub(crate) path_style: Option<bool>,
    /// Every other setting, starting from the defaults.
    pub(crate) config: Config,
}

type Apply = fn(&mut Draft, &str, &Origin) -> Result<(), String>;

/// One configuration key.
pub(crate) struct Key {
    /// Name in the file: `s3.connect_timeout` is `connect_timeout` in section `[s3]`.
    pub(crate) name: &'static str,
    /// Environment variable.
    pub(crate) env: &'static str,
    /// The command-line flag the binary offers for it, if any (most S3 settings and the
    /// codec are set only in the file or the environment).
    pub(crate) flag: Option<&'static str>,
    /// Parses, checks and stores a value.
    pub(crate) apply: Apply,
}

/// The refusal when both key sources are set.
const ONE_KEY_SOURCE: &str =
    "set only one of encryption.key_file and encryption.passphrase_command";

/// Upper bound on worker and look-ahead counts: enough for any link, small enough to catch a typo.
const MAX_PARALLEL: usize = 256;

/// Upper bound on retention counts (days, weeks, ... and `min_backups`): a century of days.
const MAX_BUCKETS: u32 = 36_500;

/// Every key walship reads.
pub(crate) const KEYS: &[Key] = &[
    Key {
        name: "repo",
        env: "WALSHIP_REPO",
        flag: Some("--repo"),
        apply: |d, v, o| {
            d.repo = Some((v.trim().to_string(), o.clone()));
            Ok(())
        },
    },
    Key {
        name: "compression",
        env: "WALSHIP_COMPRESSION",
        flag: None,
        apply: |d, v, _| {
            d.config.compression = v
                .parse()
                .map_err(|e: crate::codec::CodecParseError| e.to_string())?;
            Ok(())
        },
    },
    Key {
        name: "s3.endpoint",
        env: "WALSHIP_S3_ENDPOINT",
        flag: None,
        apply: |d, v, _| {
            d.config.s3.endpoint = Some(parse_endpoint(v)?);
            Ok(())
        },
    },
    Key {
        name: "s3.region",
        env: "WALSHIP_S3_REGION",
        flag: None,
        apply: |d, v, _| {
            d.config.s3.region = Some(parse_word(v, 64)?);
            Ok(())
        },
    },
    Key {
        name: "s3.path_style",
        env: "WALSHIP_S3_PATH_STYLE",
        flag: None,
        apply: |d, v, _| {
            d.path_style = Some(parse_bool(v)?);
            Ok(())
        },
    },
    Key {
        name: "s3.connect_timeout",
        env: "WALSHIP_S3_CONNECT_TIMEOUT",
        flag: None,
        apply: |d, v, _| {
            d.config.s3.connect_timeout = parse_duration(v)?;
            Ok(())
        },
    },
    Key {
        name: "s3.operation_timeout",
        env: "WALSHIP_S3_OPERATION_TIMEOUT",
        flag: None,
        apply: |d, v, _| {
            d.config.s3.operation_timeout = parse_duration(v)?;
            Ok(())
        },
    },
    Key {
        name: "s3.max_attempts",
        env: "WALSHIP_S3_MAX_ATTEMPTS",
        flag: None,
        apply: |d, v, _| {
            d.config.s3.max_attempts = parse_count(v, 1, 100)?;
            Ok(())
        },
    },
    Key {
        name: "s3.part_size",
        env: "WALSHIP_S3_PART_SIZE",
        flag: None,
        apply: |d, v, _| {
            // S3's multipart limits: parts of 5 MiB to 5 GiB.
            d.config.s3.part_size = parse_size(v, ByteSize::mib(5), ByteSize::gib(5))?;
            Ok(())
        },
    },
    Key {
        name: "s3.timeout",
        env: "WALSHIP_S3_TIMEOUT",
        flag: None,
        apply: |d, v, _| {
            d.config.s3.timeout = parse_timeout(v)?;
            Ok(())
        },
    },
    Key {
        name: "s3.object_lock",
        env: "WALSHIP_S3_OBJECT_LOCK",
        flag: None,
        apply: |d, v, _| {
            d.config.s3.object_lock = v.parse()?;
            Ok(())
        },
    },
    Key {
        name: "s3.object_lock_margin",
        env: "WALSHIP_S3_OBJECT_LOCK_MARGIN",
        flag: None,
        apply: |d, v, _| {
            d.config.s3.object_lock_margin = parse_days(v)?;
            Ok(())
        },
    },
    Key {
        name: "s3.sse",
        env: "WALSHIP_S3_SSE",
        flag: None,
        apply: |d, v, _| {
            d.config.s3.sse = Some(v.trim().parse()?);
            Ok(())
        },
    },
    Key {
        name: "s3.sse_kms_key_id",
        env: "WALSHIP_S3_SSE_KMS_KEY_ID",
        flag: None,
        apply: |d, v, _| {
            let id = v.trim();
            if id.is_empty() || id.len() > 2048 || id.chars().any(char::is_control) {
                return Err("expected a KMS key id, alias or ARN".into());
            }
            d.config.s3.sse_kms_key_id = Some(id.to_string());
            Ok(())
        },
    },
    Key {
        name: "s3.ca_file",
        env: "WALSHIP_S3_CA_FILE",
        flag: None,
        apply: |d, v, _| {
            d.config.s3.ca_file = Some(parse_absolute_path(v)?);
            Ok(())
        },
    },
    Key {
        name: "archive.async",
        env: "WALSHIP_ARCHIVE_ASYNC",
        flag: Some("--async"),
        apply: |d, v, _| {
            d.config.archive.r#async = parse_bool(v)?;
            Ok(())
        },
    },
    Key {
        name: "archive.parallel",
        env: "WALSHIP_ARCHIVE_PARALLEL",
        flag: Some("--parallel"),
        apply: |d, v, _| {
            d.config.archive.parallel = parse_count(v, 1, MAX_PARALLEL)?;
            Ok(())
        },
    },
    Key {
        name: "archive.read_ahead",
        env: "WALSHIP_ARCHIVE_READ_AHEAD",
        flag: Some("--read-ahead"),
        apply: |d, v, _| {
            d.config.archive.read_ahead = parse_count(v, 0, MAX_PARALLEL)?;
            Ok(())
        },
    },
    Key {
        name: "fetch.prefetch",
        env: "WALSHIP_FETCH_PREFETCH",
        flag: Some("--prefetch"),
        apply: |d, v, _| {
            d.config.fetch.prefetch = parse_count(v, 0, MAX_PARALLEL)?;
            Ok(())
        },
    },
    Key {
        name: "fetch.parallel",
        env: "WALSHIP_FETCH_PARALLEL",
        flag: Some("--parallel"),
        apply: |d, v, _| {
            d.config.fetch.parallel = parse_count(v, 1, MAX_PARALLEL)?;
            Ok(())
        },
    },
    Key {
        name: "fetch.spool_dir",
        env: "WALSHIP_FETCH_SPOOL_DIR",
        flag: None,
        apply: |d, v, _| {
            d.config.fetch.spool_dir = Some(parse_absolute_path(v)?);
            Ok(())
        },
    },
    Key {
        name: "fetch.allow_partial",
        env: "WALSHIP_FETCH_ALLOW_PARTIAL",
        flag: Some("--allow-partial"),
        apply: |d, v, _| {
            d.config.fetch.allow_partial = parse_bool(v)?;
            Ok(())
        },
    },
    Key {
        name: "fetch.timeout",
        env: "WALSHIP_FETCH_TIMEOUT",
        flag: None,
        apply: |d, v, _| {
            d.config.fetch.timeout = parse_timeout(v)?;
            Ok(())
        },
    },
    Key {
        name: "encryption.key_file",
        env: "WALSHIP_ENCRYPTION_KEY_FILE",
        flag: None,
        apply: |d, v, _| {
            let path = PathBuf::from(v.trim());
            if !path.is_absolute() {
                return Err("expected an absolute path to a key file (walship key init)".into());
            }
            if d.config.encryption.passphrase_command.is_some() {
                return Err(ONE_KEY_SOURCE.into());
            }
            d.config.encryption.key_file = Some(path);
            Ok(())
        },
    },
    Key {
        name: "encryption.passphrase_command",
        env: "WALSHIP_ENCRYPTION_PASSPHRASE_COMMAND",
        flag: None,
        apply: |d, v, _| {
            if v.trim().is_empty() {
                return Err("expected a command that prints the passphrase".into());
            }
            if d.config.encryption.key_file.is_some() {
                return Err(ONE_KEY_SOURCE.into());
            }
            d.config.encryption.passphrase_command = Some(v.to_string());
            Ok(())
        },
    },
    Key {
        name: "encryption.kms_key_id",
        env: "WALSHIP_ENCRYPTION_KMS_KEY_ID",
        flag: None,
        apply: |_, _, _| {
            Err("AWS KMS is not supported by this walship (kms_key_id is refused, never ignored); use key_file (walship key init) or passphrase_command".into())
        },
    },
    Key {
        name: "backup.bundle_size",
        env: "WALSHIP_BACKUP_BUNDLE_SIZE",
        flag: Some("--bundle-size"),
        apply: |d, v, _| {
            d.config.backup.bundle_size = parse_size(v, ByteSize(64 << 10), ByteSize::gib(4))?;
            Ok(())
        },
    },
    Key {
        name: "backup.parallel",
        env: "WALSHIP_BACKUP_PARALLEL",
        flag: Some("--parallel"),
        apply: |d, v, _| {
            d.config.backup.parallel = parse_count(v, 1, MAX_PARALLEL)?;
            Ok(())
        },
    },
    Key {
        name: "restore.parallel",
        env: "WALSHIP_RESTORE_PARALLEL",
        flag: Some("--parallel"),
        apply: |d, v, _| {
            d.config.restore.parallel = parse_count(v, 1, MAX_PARALLEL)?;
            Ok(())
        },
    },
    Key {
        name: "backup.expire",
        env: "WALSHIP_BACKUP_EXPIRE",
        flag: Some("--expire"),
        apply: |d, v, _| {
            d.config.backup.expire = parse_bool(v)?;
            Ok(())
        },
    },
    Key {
        name: "backup.max_chain",
        env: "WALSHIP_BACKUP_MAX_CHAIN",
        flag: Some("--max-chain"),
        apply: |d, v, _| {
            d.config.backup.max_chain = parse_count(v, 1, 1000)?;
            Ok(())
        },
    },
    Key {
        name: "stream.slot",
        env: "WALSHIP_STREAM_SLOT",
        flag: Some("--slot"),
        apply: |d, v, _| {
            d.config.stream.slot = parse_slot_name(v)?;
            Ok(())
        },
    },
    Key {
        name: "stream.partial_interval",
        env: "WALSHIP_STREAM_PARTIAL_INTERVAL",
        flag: Some("--partial-interval"),
        apply: |d, v, _| {
            d.config.stream.partial_interval = parse_duration(v)?;
            Ok(())
        },
    },
    Key {
        name: "stream.application_name",
        env: "WALSHIP_STREAM_APPLICATION_NAME",
        flag: Some("--application-name"),
        apply: |d, v, _| {
            d.config.stream.application_name = parse_application_name(v)?;
            Ok(())
        },
    },
    Key {
        name: "stream.stop_timeout",
        env: "WALSHIP_STREAM_STOP_TIMEOUT",
        flag: Some("--stop-timeout"),
        apply: |d, v, _| {
            d.config.stream.stop_timeout = parse_timeout(v)?;
            Ok(())
        },
    },
    Key {
        name: "retention.pitr_window",
        env: "WALSHIP_RETENTION_PITR_WINDOW",
        flag: Some("--pitr-window"),
        apply: |d, v, _| {
            d.config.retention.pitr_window = Some(parse_days(v)?);
            Ok(())
        },
    },
    Key {
        name: "retention.daily",
        env: "WALSHIP_RETENTION_DAILY",
        flag: Some("--daily"),
        apply: |d, v, _| {
            d.config.retention.daily = parse_count(v, 0, MAX_BUCKETS)?;
            Ok(())
        },
    },
    Key {
        name: "retention.weekly",
        env: "WALSHIP_RETENTION_WEEKLY",
        flag: Some("--weekly"),
        apply: |d, v, _| {
            d.config.retention.weekly = parse_count(v, 0, MAX_BUCKETS)?;
            Ok(())
        },
    },
    Key {
        name: "retention.monthly",
        env: "WALSHIP_RETENTION_MONTHLY",
        flag: Some("--monthly"),
        apply: |d, v, _| {
            d.config.retention.monthly = parse_count(v, 0, MAX_BUCKETS)?;
            Ok(())
        },
    },
    Key {
        name: "retention.yearly",
        env: "WALSHIP_RETENTION_YEARLY",
        flag: Some("--yearly"),
        apply: |d, v, _| {
            d.config.retention.yearly = parse_count(v, 0, MAX_BUCKETS)?;
            Ok(())
        },
    },
    Key {
        name: "retention.min_backups",
        env: "WALSHIP_RETENTION_MIN_BACKUPS",
        flag: Some("--min-backups"),
        apply: |d, v, _| {
            d.config.retention.min_backups = Some(parse_count(v, 0, MAX_BUCKETS)?);
            Ok(())
        },
    },
    Key {
        name: "retention.timezone",
        env: "WALSHIP_RETENTION_TIMEZONE",
        flag: Some("--timezone"),
        apply: |d, v, _| {
            d.config.retention.timezone = crate::retention::Timezone::parse(v)?;
            Ok(())
        },
    },
    Key {
        name: "fallback_repos",
        env: "WALSHIP_FALLBACK_REPOS",
        flag: Some("--fallback-repo"),
        apply: |d, v, o| {
            d.config.fallback_repos = parse_repo_list(v, o)?;
            Ok(())
        },
    },
    Key {
        name: "copy",
        env: "WALSHIP_COPY",
        flag: None,
        apply: |d, v, o| {
            d.config.copy = parse_copy_targets(v, o)?;
            Ok(())
        },
    },
];

/// A list of repository URLs separated by commas or new lines (URLs hold neither), each
/// checked as `repo` is.
fn parse_repo_list(text: &str, origin: &Origin) -> Result<Vec<String>, String> {
    text.split([',', '\n'])
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .map(|u| {
            super::check_repo(u, origin.clone())
                .map(|()| u.to_string())
                .map_err(|e| e.to_string())
        })
        .collect()
}

/// `[[copy]]` entries: `URL[;endpoint=URL][;region=NAME]`, separated by commas or new lines
/// (the file's tables arrive in this form; `WALSHIP_COPY` is usually just URLs).
fn parse_copy_targets(text: &str, origin: &Origin) -> Result<Vec<super::CopyTarget>, String> {
    let mut out = Vec::new();
    for entry in text
        .split([',', '\n'])
        .map(str::trim)
        .filter(|e| !e.is_empty())
    {
        let mut parts = entry.split(';').map(str::trim);
        let repo = parse_repo_list(parts.next().unwrap_or_default(), origin)?
            .pop()
            .ok_or("a [[copy]] entry needs repo = \"URL\"")?;
        let mut target = super::CopyTarget {
            repo,
            endpoint: None,
            region: None,
        };
        for part in parts {
            match part.split_once('=') {
                Some(("endpoint", v)) => target.endpoint = Some(parse_endpoint(v)?),
                Some(("region", v)) => target.region = Some(parse_word(v, 64)?),
                _ => {
                    return Err(format!(
                        "unknown [[copy]] setting {part:?} (repo, endpoint, region)"
                    ));
                }
            }
        }
        out.push(target);
    }
    Ok(out)
}

/// The key named `name` (`s3.endpoint`).
pub(crate) fn key(name: &str) -> Option<&'static Key> {
    KEYS.iter().find(|k| k.name == name)
}

/// The flag values set in `options`, as `(key name, text)`.
pub(crate) fn flag_values(o: &Options) -> Vec<(&'static str, String)> {
    let text = |v: &Option<String>| v.clone();
    let flag = |v: &Option<bool>| v.map(|b| b.to_string());
    let all = [
        ("repo", text(&o.repo)),
        ("archive.async", flag(&o.archive_async)),
        ("archive.parallel", text(&o.archive_parallel)),
        ("archive.read_ahead", text(&o.archive_read_ahead)),
        ("fetch.prefetch", text(&o.fetch_prefetch)),
        ("fetch.parallel", text(&o.fetch_parallel)),
        ("fetch.allow_partial", flag(&o.fetch_allow_partial)),
        ("backup.bundle_size", text(&o.backup_bundle_size)),
        ("backup.parallel", text(&o.backup_parallel)),
        ("restore.parallel", text(&o.restore_parallel)),
        ("backup.expire", flag(&o.backup_expire)),
        ("backup.max_chain", text(&o.backup_max_chain)),
        ("stream.slot", text(&o.stream_slot)),
        ("stream.partial_interval", text(&o.stream_partial_interval)),
        ("stream.application_name", text(&o.stream_application_name)),
        ("stream.stop_timeout", text(&o.stream_stop_timeout)),
        ("retention.pitr_window", text(&o.retention_pitr_window)),
        ("retention.daily", text(&o.retention_daily)),
        ("retention.weekly", text(&o.retention_weekly)),
        ("retention.monthly", text(&o.retention_monthly)),
        ("retention.yearly", text(&o.retention_yearly)),
        ("retention.min_backups", text(&o.retention_min_backups)),
        ("retention.timezone", text(&o.retention_timezone)),
        ("fallback_repos", text(&o.fallback_repos)),
    ];
    all.into_iter()
        .filter_map(|(name, value)| value.map(|v| (name, v)))
        .collect()
}

/// A retention window: a duration (`30d`, `720h`, humantime's units; a bare number is days).
fn parse_days(text: &str) -> Result<std::time::Duration, String> {
    let text = text.trim();
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        let days: u64 = text.parse().map_err(|_| "too many days".to_string())?;
        return Ok(std::time::Duration::from_secs(days.saturating_mul(86_400)));
    }
    parse_duration(text)
}

/// An S3 endpoint URL: `http(s)://host[:port]`.
fn parse_endpoint(text: &str) -> Result<String, String> {
    let url = url::Url::parse(text.trim())
        .map_err(|e| format!("expected a URL like http://127.0.0.1:8333 ({e})"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none_or(str::is_empty) {
        return Err("expected an http:// or https:// URL with a host".to_string());
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("must not contain credentials; use the AWS credential chain".to_string());
    }
    Ok(text.trim().to_string())
}

/// A storage time limit: at least a second (less would fail every request), at most a day.
fn parse_timeout(text: &str) -> Result<std::time::Duration, String> {
    let limit = parse_duration(text)?;
    if !(std::time::Duration::from_secs(1)..=std::time::Duration::from_secs(86_400))
        .contains(&limit)
    {
        return Err("expected 1s to 24h".to_string());
    }
    Ok(limit)
}

/// A short word of printable ASCII without spaces (a region name).
fn parse_word(text: &str, max: usize) -> Result<String, String> {
    let word = text.trim();
    if word.is_empty() || word.len() > max || !word.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(format!(
            "expected 1 to {max} printable characters without spaces"
        ));
    }
    Ok(word.to_string())
}

fn parse_absolute_path(text: &str) -> Result<PathBuf, String> {
    let path = PathBuf::from(text.trim());
    if !path.is_absolute() {
        return Err("expected an absolute path".to_string());
    }
    Ok(path)
}

/// A replication slot name as Postgres accepts it (`ReplicationSlotValidateName`): 1 to 63 of
/// lower-case letters, digits and underscores.
fn parse_slot_name(text: &str) -> Result<String, String> {
    let ok = !text.is_empty()
        && text.len() <= 63
        && text
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if !ok {
        return Err(
            "a slot name is 1 to 63 lower-case letters, digits and underscores".to_string(),
        );
    }
    Ok(text.to_string())
}

/// An application name Postgres keeps intact: printable ASCII, at most 63 bytes (NAMEDATALEN-1;
/// Postgres truncates longer ones and replaces other bytes with '?', which would then never match
/// `synchronous_standby_names`).
fn parse_application_name(text: &str) -> Result<String, String> {
    let ok =
        !text.is_empty() && text.len() <= 63 && text.bytes().all(|b| (0x20..0x7f).contains(&b));
    if !ok {
        return Err("expected 1 to 63 printable ASCII characters".to_string());
    }
    Ok(text.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_env_vars_agree() {
        for key in KEYS {
            let env = format!(
                "WALSHIP_{}",
                key.name.replace('.', "_").to_ascii_uppercase()
            );
            assert_eq!(key.env, env);
        }
        let flagged: Vec<&str> = flag_values(&Options::all_set())
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        let names: Vec<&str> = KEYS
            .iter()
            .filter(|k| k.flag.is_some())
            .map(|k| k.name)
            .collect();
        assert_eq!(flagged, names);
    }

    #[test]
    fn names_are_checked() {
        assert!(parse_slot_name("walship_1").is_ok());
        assert!(parse_slot_name("Walship").is_err());
        assert!(parse_slot_name(&"a".repeat(64)).is_err());
        assert!(parse_application_name("walship standby").is_ok());
        assert!(parse_application_name("wälship").is_err());
        assert!(parse_endpoint("http://127.0.0.1:8333").is_ok());
        assert!(parse_endpoint("ftp://x").is_err());
        assert!(parse_endpoint("https://AKIA:secret@s3.example").is_err());
        assert!(parse_absolute_path("relative/dir").is_err());
    }
}
