//! The command line of an audited operation, with every secret removed: the record is kept
//! for years and read by auditors, so no password, key or token may reach it (safety rule 9).

use crate::redact::{REDACTED, redact_userinfo};

/// Flag names whose value is a secret (`--password X`, `--passphrase=X`, ...).
fn is_secret_flag(flag: &str) -> bool {
    let name = flag.trim_start_matches('-').to_ascii_lowercase();
    ["password", "passphrase", "secret", "token", "credential"]
        .iter()
        .any(|word| name.contains(word))
}

/// `args` (without the program name) with secrets replaced by `<redacted>`: the value of a
/// secret-named flag, `password=`/`sslpassword=` in a connection string, and the userinfo
/// of a URL.
pub fn redact_args<I, S>(args: I) -> Vec<String>
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    let mut out = Vec::new();
    let mut secret_next = false;
    for arg in args {
        let arg = arg.as_ref();
        if secret_next {
            out.push(REDACTED.to_string());
            secret_next = false;
            continue;
        }
        if arg.starts_with('-') {
            if let Some((flag, _)) = arg.split_once('=') {
                if is_secret_flag(flag) {
                    out.push(format!("{flag}={REDACTED}"));
                    continue;
                }
            } else if is_secret_flag(arg) {
                secret_next = true;
                out.push(arg.to_string());
                continue;
            }
        }
        out.push(redact_conninfo_password(&redact_userinfo(arg)));
    }
    out
}

/// `password=...` and `sslpassword=...` in a libpq keyword/value string, quoted or not, and
/// `password=` in a URI's query.
fn redact_conninfo_password(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    loop {
        let lower = rest.to_ascii_lowercase();
        let Some(at) = lower.find("password") else {
            out.push_str(rest);
            return out;
        };
        let after_word = &rest[at + "password".len()..];
        let trimmed = after_word.trim_start();
        let Some(value) = trimmed.strip_prefix('=') else {
            out.push_str(&rest[..at + "password".len()]);
            rest = after_word;
            continue;
        };
        out.push_str(&rest[..at + "password".len()]);
        out.push('=');
        out.push_str(REDACTED);
        let value = value.trim_start();
        let end = if let Some(quoted) = value.strip_prefix('\'') {
            // Up to the closing quote (a backslash escapes one character).
            let mut chars = quoted.char_indices();
            let mut end = quoted.len();
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => {
                        chars.next();
                    }
                    '\'' => {
                        end = i + 1;
                        break;
                    }
                    _ => {}
                }
            }
            1 + end
        } else {
            value
                .find(|c: char| c.is_whitespace() || c == '&')
                .unwrap_or(value.len())
        };
        rest = &value[end..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removes_every_kind_of_secret() {
        let out = redact_args([
            "backup",
            "-d",
            "host=db user=x password='s3 cr\\'et' dbname=y",
            "--passphrase",
            "hunter2",
            "--kms-token=abc",
            "--repo",
            "s3://AKIA:topsecret@bucket/p",
            "postgresql://u:pw@h/db?sslpassword=zz&x=1",
        ]);
        let joined = out.join(" ");
        for secret in ["s3 cr", "et'", "hunter2", "abc", "topsecret", "pw@", "zz"] {
            assert!(!joined.contains(secret), "{secret} in {joined}");
        }
        assert!(
            joined.contains("dbname=y") && joined.contains("x=1"),
            "{joined}"
        );
        assert_eq!(out[3], "--passphrase");
        assert_eq!(out[0], "backup");
    }
}
