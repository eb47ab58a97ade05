//! The recovery configuration: `recovery.signal` (or `standby.signal`) and a clearly
//! marked walship block in `postgresql.auto.conf` with `restore_command` and the recovery
//! target settings.
//!
//! Earlier recovery settings in `postgresql.auto.conf` (from the backed-up server, or an
//! earlier restore) are removed, not duplicated: Postgres takes the last value of a setting,
//! and two targets are a startup error.

use std::path::{Path, PathBuf};

use walship_common::Lsn;
use walship_common::fsutil;

use crate::error::RestoreError;
use crate::owner::{self, Owner};
use crate::target::{RecoveryTarget, TargetAction, postgres_time};

/// First line of walship's block.
pub const BEGIN: &str =
    "# BEGIN walship restore: written by `walship restore`; edits inside this block are replaced";
/// Last line of walship's block.
pub const END: &str = "# END walship restore";

/// Settings walship owns during recovery; any earlier line setting one of them goes.
const RECOVERY_SETTINGS: &[&str] = &[
    "restore_command",
    "recovery_target",
    "recovery_target_time",
    "recovery_target_lsn",
    "recovery_target_xid",
    "recovery_target_name",
    "recovery_target_inclusive",
    "recovery_target_timeline",
    "recovery_target_action",
];

/// What to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecoveryConfig {
    /// The `walship` binary the server runs (absolute).
    pub walship: PathBuf,
    /// Arguments before `fetch` (`--config FILE`, `--repo URL`).
    pub global_args: Vec<String>,
    /// Arguments of `fetch` itself (`--as-of TIME`), before `%f %p`.
    pub fetch_args: Vec<String>,
    /// Settings that came from the environment, set for the command (see [`carried_env`]).
    pub env: Vec<(String, String)>,
    /// Pass `--allow-partial` to fetch (recovery to the very end of the archive).
    pub allow_partial: bool,
    /// The target.
    pub target: RecoveryTarget,
    /// Stop at this LSN (exclusive) instead of the time (`--resolve-lsn`).
    pub resolved_lsn: Option<Lsn>,
    /// `recovery_target_inclusive = off`.
    pub exclusive: bool,
    /// `recovery_target_timeline`: a number, or `None` for `latest`.
    pub timeline: Option<u32>,
    /// `recovery_target_action`.
    pub action: TargetAction,
    /// Write `standby.signal` instead of `recovery.signal`.
    pub standby: bool,
}

/// The AWS chain's non-secret addressing that `restore_command` carries beside walship's own
/// settings: the restored server runs `walship fetch` in *its* environment, not the
/// operator's.
const CARRIED_AWS: &[&str] = &[
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3",
];

/// Why an environment variable cannot be carried into `postgresql.auto.conf`. The value is
/// never repeated: it may be a secret.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CarriedEnvError {
    /// A value holds a newline or another control character.
    #[error(
        "environment variable {name} holds a newline or another control character; \
         walship will not write it into postgresql.auto.conf: fix or unset it"
    )]
    ControlCharacter {
        /// The variable.
        name: String,
    },
    /// An endpoint URL carries credentials.
    #[error(
        "environment variable {name} is a URL with credentials in it; walship will not write \
         it into postgresql.auto.conf: give credentials through the AWS chain and unset it or \
         remove the user:password@ part"
    )]
    Credentials {
        /// The variable.
        name: String,
    },
}

/// The variables of `vars` that `restore_command` carries as `NAME=value` assignments: the
/// environment variables of walship's settings (the key table of
/// [`walship_common::config`]) but `WALSHIP_REPO` (passed as `--repo`; `WALSHIP_CONFIG`, not
/// a setting, goes as `--config`), and the AWS chain's
/// non-secret addressing (`AWS_REGION`, `AWS_DEFAULT_REGION`, `AWS_ENDPOINT_URL`,
/// `AWS_ENDPOINT_URL_S3`). Nothing else: not an unknown `WALSHIP_*` variable (a typo, or a
/// secret someone put there), not a credential.
///
/// **Never a secret:** walship's settings hold none (credentials come only from the AWS
/// chain), and an endpoint URL with userinfo is refused, so `postgresql.auto.conf` never
/// holds a credential. The server's environment must provide the credentials
/// (`AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`, `AWS_PROFILE`, web identity, instance
/// metadata). A value with a control character (a newline would end the setting's line) is
/// refused too.
pub fn carried_env(
    vars: impl IntoIterator<Item = (String, String)>,
) -> Result<Vec<(String, String)>, CarriedEnvError> {
    let mut out = Vec::new();
    for (name, value) in vars {
        let setting = name != "WALSHIP_REPO"
            && walship_common::config::setting_env_vars().any(|known| known == name);
        if value.is_empty() || !(setting || CARRIED_AWS.contains(&name.as_str())) {
            continue;
        }
        if value.chars().any(char::is_control) {
            return Err(CarriedEnvError::ControlCharacter { name });
        }
        if walship_common::redact::has_userinfo(&value) {
            return Err(CarriedEnvError::Credentials { name });
        }
        out.push((name, value));
    }
    out.sort();
    Ok(out)
}

/// Quotes `text` for `sh -c` (which Postgres runs `restore_command` with).
pub fn shell_quote(text: &str) -> String {
    if !text.is_empty()
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/._-=:,+@".contains(&b))
    {
        return text.to_string();
    }
    format!("'{}'", text.replace('\'', r"'\''"))
}

/// Quotes `text` as a configuration-file string value. A control character is written as
/// the escape Postgres's configuration parser reads back (`\n`, or octal `\ooo`), so that
/// no value can end its line early.
pub fn guc_quote(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('\'');
    for c in text.chars() {
        match c {
            '\\' => out.push_str(r"\\"),
            '\'' => out.push_str("''"),
            '\n' => out.push_str(r"\n"),
            '\r' => out.push_str(r"\r"),
            '\t' => out.push_str(r"\t"),
            c if c.is_ascii_control() => out.push_str(&format!("\\{:03o}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

impl RecoveryConfig {
    /// The `restore_command` value.
    pub fn restore_command(&self) -> String {
        let mut words: Vec<String> = self
            .env
            .iter()
            .map(|(name, value)| format!("{name}={}", shell_quote(value)))
            .collect();
        words.push(shell_quote(&self.walship.to_string_lossy()));
        words.extend(self.global_args.iter().map(|a| shell_quote(a)));
        words.push("fetch".to_string());
        words.extend(self.fetch_args.iter().map(|a| shell_quote(a)));
        if self.allow_partial {
            words.push("--allow-partial".to_string());
        }
        words.push("%f".to_string());
        words.push("%p".to_string());
        words.join(" ")
    }

    /// The settings of the block, in order.
    pub fn settings(&self) -> Vec<(&'static str, String)> {
        let mut out = vec![("restore_command", guc_quote(&self.restore_command()))];
        let inclusive = if self.exclusive { "off" } else { "on" };
        match (&self.target, self.resolved_lsn) {
            (RecoveryTarget::Time(_), Some(lsn)) => {
                out.push(("recovery_target_lsn", guc_quote(&lsn.to_string())));
                out.push(("recovery_target_inclusive", "off".to_string()));
            }
            (RecoveryTarget::Time(t), None) => {
                out.push(("recovery_target_time", guc_quote(&postgres_time(t.time))));
                out.push(("recovery_target_inclusive", inclusive.to_string()));
            }
            (RecoveryTarget::Lsn(lsn), _) => {
                out.push(("recovery_target_lsn", guc_quote(&lsn.to_string())));
                out.push(("recovery_target_inclusive", inclusive.to_string()));
            }
            (RecoveryTarget::Xid(xid), _) => {
                out.push(("recovery_target_xid", guc_quote(&xid.to_string())));
                out.push(("recovery_target_inclusive", inclusive.to_string()));
            }
            (RecoveryTarget::Name(name), _) => {
                out.push(("recovery_target_name", guc_quote(name)));
            }
            (RecoveryTarget::Immediate, _) => {
                out.push(("recovery_target", guc_quote("immediate")));
            }
            (RecoveryTarget::Latest, _) => {}
        }
        let timeline = self
            .timeline
            .map_or_else(|| "latest".to_string(), |t| t.to_string());
        out.push(("recovery_target_timeline", guc_quote(&timeline)));
        if !matches!(self.target, RecoveryTarget::Latest) {
            out.push((
                "recovery_target_action",
                guc_quote(&self.action.to_string()),
            ));
        }
        out
    }

    /// The walship block, with its markers.
    pub fn block(&self) -> String {
        let mut out = format!("{BEGIN}\n");
        for (name, value) in self.settings() {
            out.push_str(&format!("{name} = {value}\n"));
        }
        out.push_str(END);
        out.push('\n');
        out
    }
}

/// `content` without any earlier walship block and without lines setting a recovery
/// setting; other lines are kept as they are.
pub fn strip_recovery_settings(content: &str) -> String {
    let mut out = String::new();
    let mut in_block = false;
    for line in content.lines() {
        if line.starts_with("# BEGIN walship restore") {
            in_block = true;
            continue;
        }
        if in_block {
            in_block = line != END;
            continue;
        }
        let name = line
            .trim_start()
            .split(|c: char| c == '=' || c.is_whitespace())
            .next()
            .unwrap_or("")
            .to_ascii_lowercase();
        if RECOVERY_SETTINGS.contains(&name.as_str()) {
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// Writes the walship block and the signal file into `data_dir` (durably), owned by
/// `owner` when given. A restore calls it before it writes `global/pg_control`.
pub fn write_recovery_config(
    data_dir: &Path,
    config: &RecoveryConfig,
    owner: Option<Owner>,
) -> Result<(), RestoreError> {
    let auto = data_dir.join("postgresql.auto.conf");
    let existing = match std::fs::read_to_string(&auto) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(source) => {
            return Err(RestoreError::Fs(fsutil::FsError {
                action: "read",
                path: auto,
                source,
            }));
        }
    };
    let mut content = strip_recovery_settings(&existing);
    content.push_str(&config.block());
    owner::durable_write(&auto, content.as_bytes(), owner)?;
    let (signal, other) = if config.standby {
        ("standby.signal", "recovery.signal")
    } else {
        ("recovery.signal", "standby.signal")
    };
    let _ = std::fs::remove_file(data_dir.join(other));
    owner::durable_write(&data_dir.join(signal), b"", owner)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::target::parse_target_time;

    fn config(target: RecoveryTarget) -> RecoveryConfig {
        RecoveryConfig {
            walship: PathBuf::from("/usr/bin/walship"),
            global_args: vec!["--config".into(), "/etc/walship/it's.toml".into()],
            fetch_args: Vec::new(),
            env: Vec::new(),
            allow_partial: false,
            target,
            resolved_lsn: None,
            exclusive: false,
            timeline: None,
            action: TargetAction::Promote,
            standby: false,
        }
    }

    #[test]
    fn block_quotes_for_shell_and_config() {
        let c = config(RecoveryTarget::Time(
            parse_target_time("2026-11-20 14:03:00").unwrap(),
        ));
        let block = c.block();
        assert!(block.contains(
            r#"restore_command = '/usr/bin/walship --config ''/etc/walship/it''\\''''s.toml'' fetch %f %p'"#
        ), "{block}");
        assert!(block.contains("recovery_target_time = '2026-11-20 14:03:00.000000+00'"));
        assert!(block.contains("recovery_target_action = 'promote'"));
        assert!(block.contains("recovery_target_timeline = 'latest'"));
    }

    #[test]
    fn earlier_settings_and_blocks_are_replaced() {
        let c = config(RecoveryTarget::Name("before-drop".into()));
        let old = format!(
            "# Do not edit this file manually!\nwork_mem = '8MB'\nrestore_command = 'cp x %p'\nRecovery_Target_Time = '2020-01-01'\n{}",
            config(RecoveryTarget::Latest).block()
        );
        let new = strip_recovery_settings(&old) + &c.block();
        assert_eq!(new.matches("restore_command").count(), 1, "{new}");
        assert!(
            !new.to_lowercase().contains("recovery_target_time ="),
            "{new}"
        );
        assert!(new.contains("work_mem = '8MB'"));
        assert_eq!(new.matches(BEGIN).count(), 1);
    }

    #[test]
    fn standby_signal_and_actions_are_written() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("recovery.signal"), "").unwrap();
        let mut c = config(RecoveryTarget::Xid(742));
        c.standby = true;
        c.action = TargetAction::Pause;
        c.exclusive = true;
        c.timeline = Some(2);
        write_recovery_config(dir.path(), &c, None).unwrap();
        assert!(dir.path().join("standby.signal").exists());
        assert!(!dir.path().join("recovery.signal").exists());
        let auto = std::fs::read_to_string(dir.path().join("postgresql.auto.conf")).unwrap();
        for line in [
            "recovery_target_xid = '742'",
            "recovery_target_inclusive = off",
            "recovery_target_timeline = '2'",
            "recovery_target_action = 'pause'",
        ] {
            assert!(auto.contains(line), "{line}: {auto}");
        }
        let mut latest = config(RecoveryTarget::Latest);
        latest.allow_partial = true;
        write_recovery_config(dir.path(), &latest, None).unwrap();
        let auto = std::fs::read_to_string(dir.path().join("postgresql.auto.conf")).unwrap();
        assert!(auto.contains("fetch --allow-partial %f %p"), "{auto}");
        assert!(!auto.contains("recovery_target_xid") && !auto.contains("recovery_target_action"));
        assert!(dir.path().join("recovery.signal").exists());
    }

    #[test]
    fn environment_settings_are_carried_but_never_secrets() {
        let vars = [
            ("WALSHIP_S3_ENDPOINT", "http://127.0.0.1:9000"),
            ("WALSHIP_REPO", "s3://b/p"),
            ("WALSHIP_CONFIG", "/etc/walship/walship.toml"),
            ("WALSHIP_S3_REGION", ""),
            ("AWS_REGION", "eu-west-1"),
            ("AWS_ACCESS_KEY_ID", "AKIA"),
            ("AWS_SECRET_ACCESS_KEY", "hush"),
            ("AWS_SESSION_TOKEN", "hush"),
            ("WALSHIP_FUTURE_SECRET", "hush"),
            ("WALSHIP_PASS", "hush"),
            ("WALSHIP_AUTH", "hush"),
            ("WALSHIP_ARCHIVE_MODE", "off"),
            ("PATH", "/bin"),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string()));
        let env = carried_env(vars).unwrap();
        assert_eq!(
            env,
            [
                ("AWS_REGION".to_string(), "eu-west-1".to_string()),
                (
                    "WALSHIP_S3_ENDPOINT".to_string(),
                    "http://127.0.0.1:9000".to_string()
                ),
            ]
        );
        let mut c = config(RecoveryTarget::Latest);
        c.env = env;
        c.global_args = vec!["--repo".into(), "s3://b/p".into()];
        assert_eq!(
            c.restore_command(),
            "AWS_REGION=eu-west-1 WALSHIP_S3_ENDPOINT=http://127.0.0.1:9000 /usr/bin/walship --repo s3://b/p fetch %f %p"
        );
        // `restore --as-of`: the restored server reads the same view of the repository.
        c.fetch_args = vec!["--as-of".into(), "2026-12-05T14:48:09Z".into()];
        c.env.clear();
        assert_eq!(
            c.restore_command(),
            "/usr/bin/walship --repo s3://b/p fetch --as-of 2026-12-05T14:48:09Z %f %p"
        );
    }

    #[test]
    fn credentials_and_control_characters_are_refused_without_echo() {
        let one = |name: &str, value: &str| carried_env([(name.to_string(), value.to_string())]);
        let err = one("AWS_ENDPOINT_URL", "http://KEY:SECRET@127.0.0.1:9000").unwrap_err();
        assert!(!err.to_string().contains("SECRET"), "{err}");
        assert!(err.to_string().contains("AWS_ENDPOINT_URL"), "{err}");
        let err = one("WALSHIP_FETCH_SPOOL_DIR", "/tmp/a\nrestore_command = 'x'").unwrap_err();
        assert_eq!(
            err,
            CarriedEnvError::ControlCharacter {
                name: "WALSHIP_FETCH_SPOOL_DIR".into()
            }
        );
        // Unknown variables are not carried, so their values do not matter.
        assert_eq!(one("WALSHIP_PASS", "a\nb"), Ok(Vec::new()));
    }

    #[test]
    fn quoted_values_never_end_their_line() {
        assert_eq!(guc_quote("a'b\\c"), r"'a''b\\c'");
        assert_eq!(guc_quote("x\ny\tz\u{1}"), r"'x\ny\tz\001'");
    }
}
