//! The configuration file: which one is read (`--config`, else `WALSHIP_CONFIG`, else the
//! default path when present), and its TOML turned into `(key, text)` pairs for the key table.
//! Unknown keys are refused, by name, so that a typo never silently falls back to a default.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

use super::error::{ConfigError, Origin};
use super::keys::{Key, key};

/// Sections of the file; every other key is at the top level.
const SECTIONS: &[&str] = &[
    "s3",
    "archive",
    "fetch",
    "backup",
    "restore",
    "stream",
    "retention",
    "encryption",
];

/// Words that mark a key as a secret someone tried to put into the file.
const SECRET_WORDS: &[&str] = &["secret", "password", "access_key", "token", "credential"];

/// The file to read, if any: the flag, else the environment variable (either must exist), else
/// `default` when it exists.
pub(crate) fn locate(
    flag: Option<&Path>,
    env: &BTreeMap<String, String>,
    default: &Path,
) -> Result<Option<(PathBuf, String)>, ConfigError> {
    let named = match (flag, env.get("WALSHIP_CONFIG").filter(|v| !v.is_empty())) {
        (Some(path), _) => Some((path.to_path_buf(), Origin::Flag("--config"))),
        (None, Some(path)) => Some((PathBuf::from(path), Origin::Env("WALSHIP_CONFIG"))),
        (None, None) => None,
    };
    match named {
        Some((path, origin)) => match std::fs::read_to_string(&path) {
            Ok(text) => Ok(Some((path, text))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                Err(ConfigError::FileMissing { path, origin })
            }
            Err(source) => Err(ConfigError::FileRead { path, source }),
        },
        None => match std::fs::read_to_string(default) {
            Ok(text) => Ok(Some((default.to_path_buf(), text))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(ConfigError::FileRead {
                path: default.to_path_buf(),
                source,
            }),
        },
    }
}

/// The file's settings as `(key, text)`, in file order within each table.
pub(crate) fn values(path: &Path, text: &str) -> Result<Vec<(&'static Key, String)>, ConfigError> {
    let table: toml::Table =
        text.parse()
            .map_err(|e: toml::de::Error| ConfigError::FileSyntax {
                path: path.to_path_buf(),
                message: e.to_string(),
            })?;
    let mut out = Vec::new();
    for (name, value) in &table {
        match value {
            toml::Value::Array(entries) if name == "copy" => {
                out.push(copy_entries(path, entries)?);
            }
            toml::Value::Array(urls) if name == "fallback_repos" => {
                let text: Vec<String> = urls
                    .iter()
                    .map(|u| match u {
                        toml::Value::String(s) => Ok(s.clone()),
                        other => Err(invalid(
                            path,
                            "fallback_repos",
                            other,
                            "expected a list of URLs",
                        )),
                    })
                    .collect::<Result<_, _>>()?;
                out.push(scalar(path, name, &toml::Value::String(text.join("\n")))?);
            }
            toml::Value::Table(section) if SECTIONS.contains(&name.as_str()) => {
                for (leaf, value) in section {
                    out.push(scalar(path, &format!("{name}.{leaf}"), value)?);
                }
            }
            _ if SECTIONS.contains(&name.as_str()) => {
                let hint = format!(" ({name} is a section: put its keys under [{name}])");
                return Err(ConfigError::UnknownKey {
                    key: name.clone(),
                    file: path.to_path_buf(),
                    hint,
                });
            }
            value => out.push(scalar(path, name, value)?),
        }
    }
    Ok(out)
}

fn invalid(path: &Path, key: &'static str, value: &toml::Value, reason: &str) -> ConfigError {
    ConfigError::InvalidValue {
        key,
        origin: Origin::File(path.to_path_buf()),
        value: value.to_string(),
        reason: reason.to_string(),
    }
}

/// `[[copy]]` tables (`repo`, optional `endpoint` and `region`) as the `copy` key's text:
/// one `URL;endpoint=...;region=...` line per table.
fn copy_entries(
    path: &Path,
    entries: &[toml::Value],
) -> Result<(&'static Key, String), ConfigError> {
    let mut lines = Vec::new();
    for entry in entries {
        let bad = |reason: &str| invalid(path, "copy", entry, reason);
        let toml::Value::Table(table) = entry else {
            return Err(bad("expected [[copy]] tables with repo = \"URL\""));
        };
        let mut line = String::new();
        for field in ["repo", "endpoint", "region"] {
            match table.get(field) {
                Some(toml::Value::String(v)) if field == "repo" => line.push_str(v),
                Some(toml::Value::String(v)) => line.push_str(&format!(";{field}={v}")),
                Some(_) => return Err(bad("expected strings")),
                None if field == "repo" => return Err(bad("a [[copy]] entry needs repo")),
                None => {}
            }
        }
        if let Some(other) = table
            .keys()
            .find(|k| !["repo", "endpoint", "region"].contains(&k.as_str()))
        {
            return Err(bad(&format!(
                "unknown [[copy]] key {other:?} (repo, endpoint, region)"
            )));
        }
        lines.push(line);
    }
    let Some(key) = key("copy") else {
        return Err(bad_table(path));
    };
    Ok((key, lines.join("\n")))
}

fn bad_table(path: &Path) -> ConfigError {
    ConfigError::UnknownKey {
        key: "copy".to_string(),
        file: path.to_path_buf(),
        hint: String::new(),
    }
}

/// The known key `name` and its value as text.
fn scalar(
    path: &Path,
    name: &str,
    value: &toml::Value,
) -> Result<(&'static Key, String), ConfigError> {
    let Some(key) = key(name) else {
        let lower = name.to_ascii_lowercase();
        let hint = if SECRET_WORDS.iter().any(|w| lower.contains(w)) {
            " (walship never reads secrets from its configuration: S3 credentials come from the AWS \
             credential chain, Postgres passwords from PGPASSWORD or ~/.pgpass)"
                .to_string()
        } else if lower == "log_level" {
            " (the log level is set with -v/-q or RUST_LOG)".to_string()
        } else {
            String::new()
        };
        return Err(ConfigError::UnknownKey {
            key: name.to_string(),
            file: path.to_path_buf(),
            hint,
        });
    };
    let text = match value {
        toml::Value::String(s) => s.clone(),
        toml::Value::Integer(i) => i.to_string(),
        toml::Value::Boolean(b) => b.to_string(),
        other => {
            return Err(ConfigError::InvalidValue {
                key: key.name,
                origin: Origin::File(path.to_path_buf()),
                value: other.to_string(),
                reason: "expected a string, a whole number or true/false".to_string(),
            });
        }
    };
    Ok((key, text))
}
