//! Hiding secrets in text walship prints: the userinfo of a URL (`http://KEY:SECRET@host`).
//!
//! walship refuses credentials in its configuration, but the refusal itself, a storage
//! location in an error, or a log line must not repeat them: an `archive_command`'s or
//! `restore_command`'s stderr ends up in the Postgres log. Every place that prints a URL it
//! was given goes through [`redact_userinfo`].

/// What replaces a URL's userinfo.
pub const REDACTED: &str = "<redacted>";

/// `text` with the userinfo of every URL in it (`scheme://user:password@host`) replaced by
/// [`REDACTED`]. Text without `://` but shaped like `user:password@host` is treated the same.
pub fn redact_userinfo(text: &str) -> String {
    if !text.contains("://") {
        return redact_authority(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("://") {
        let (head, tail) = rest.split_at(at + 3);
        out.push_str(head);
        let end = tail
            .find(|c: char| matches!(c, '/' | '?' | '#') || c.is_whitespace())
            .unwrap_or(tail.len());
        let (authority, after) = tail.split_at(end);
        match authority.rfind('@') {
            Some(at) => {
                out.push_str(REDACTED);
                out.push_str(&authority[at..]);
            }
            None => out.push_str(authority),
        }
        rest = after;
    }
    out.push_str(rest);
    out
}

/// `user:password@host...` without a scheme: the part before the last `@` goes.
fn redact_authority(text: &str) -> String {
    match text.rfind('@') {
        Some(at) if text[..at].contains(':') => format!("{REDACTED}{}", &text[at..]),
        _ => text.to_string(),
    }
}

/// Whether `url` carries userinfo (a user name or a password).
pub fn has_userinfo(url: &str) -> bool {
    redact_userinfo(url) != url
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn userinfo_never_survives() {
        for (text, want) in [
            ("http://KEY:SECRET@host:9000", "http://<redacted>@host:9000"),
            (
                "https://KEY@host/path?x=a@b",
                "https://<redacted>@host/path?x=a@b",
            ),
            ("http://host:9000", "http://host:9000"),
            (
                "s3://b at http://K:S@h and file:///x",
                "s3://b at http://<redacted>@h and file:///x",
            ),
            ("KEY:SECRET@host", "<redacted>@host"),
            ("http://a:b@c@host", "http://<redacted>@host"),
            ("plain", "plain"),
        ] {
            assert_eq!(redact_userinfo(text), want, "{text}");
        }
        assert!(has_userinfo("http://KEY:SECRET@host"));
        assert!(!has_userinfo("http://host"));
    }
}
