//! The `postgresql://` (or `postgres://`) URI form of a connection string, split into libpq
//! settings the way libpq's `conninfo_uri_parse` does:
//! `postgresql://[user[:password]@][host][:port][,host[:port]...][/dbname][?key=value&...]`,
//! with percent-decoding, `[v6addr]` hosts and `?host=/socket/dir` for unix sockets.

use std::collections::BTreeMap;

use super::conninfo::ConnInfoError;

/// Splits a URI connection string into settings.
pub(crate) fn parse_uri(uri: &str) -> Result<BTreeMap<String, String>, ConnInfoError> {
    let rest = uri
        .strip_prefix("postgresql://")
        .or_else(|| uri.strip_prefix("postgres://"))
        .ok_or_else(|| syntax(0, "expected postgresql:// or postgres://"))?;
    let prefix_len = uri.len() - rest.len();
    let mut out = BTreeMap::new();

    // Where the authority (userinfo + hosts) ends.
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    let hosts_part = match authority.rfind('@') {
        Some(at) => {
            let userinfo = &authority[..at];
            let (user, password) = match userinfo.split_once(':') {
                Some((u, p)) => (u, Some(p)),
                None => (userinfo, None),
            };
            if !user.is_empty() {
                out.insert("user".into(), decode(user, prefix_len)?);
            }
            if let Some(p) = password.filter(|p| !p.is_empty()) {
                out.insert("password".into(), decode(p, prefix_len)?);
            }
            &authority[at + 1..]
        }
        None => authority,
    };

    let mut hosts = Vec::new();
    let mut ports = Vec::new();
    if !hosts_part.is_empty() {
        for entry in hosts_part.split(',') {
            let (host, port) = split_host_port(entry, prefix_len)?;
            hosts.push(decode(host, prefix_len)?);
            ports.push(port.to_string());
        }
    }
    if hosts.iter().any(|h| !h.is_empty()) {
        out.insert("host".into(), hosts.join(","));
    }
    if ports.iter().any(|p| !p.is_empty()) {
        out.insert("port".into(), ports.join(","));
    }

    let after = &rest[authority_end..];
    let (path, query) = match after.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (after, None),
    };
    if let Some(db) = path.strip_prefix('/').filter(|d| !d.is_empty()) {
        out.insert("dbname".into(), decode(db, prefix_len)?);
    }
    for pair in query.into_iter().flat_map(|q| q.split('&')) {
        if pair.is_empty() {
            continue;
        }
        let (key, value) = pair.split_once('=').ok_or_else(|| {
            syntax(
                prefix_len,
                &format!("missing \"=\" in URI parameter \"{pair}\""),
            )
        })?;
        let key = decode(key, prefix_len)?;
        let value = decode(value, prefix_len)?;
        // libpq accepts the JDBC spelling `ssl=true`.
        if key == "ssl" && value == "true" {
            out.insert("sslmode".into(), "require".into());
        } else {
            out.insert(key, value);
        }
    }
    Ok(out)
}

/// `host[:port]` or `[v6]:port`.
fn split_host_port(entry: &str, at: usize) -> Result<(&str, &str), ConnInfoError> {
    if let Some(v6) = entry.strip_prefix('[') {
        let close = v6
            .find(']')
            .ok_or_else(|| syntax(at, "missing \"]\" after an IPv6 host address"))?;
        let host = &v6[..close];
        let tail = &v6[close + 1..];
        let port = match tail.strip_prefix(':') {
            Some(p) => p,
            None if tail.is_empty() => "",
            None => {
                return Err(syntax(
                    at,
                    "unexpected character after an IPv6 host address",
                ));
            }
        };
        return Ok((host, port));
    }
    Ok(entry.split_once(':').unwrap_or((entry, "")))
}

/// Percent-decoding; `%00` is refused as libpq does.
fn decode(s: &str, at: usize) -> Result<String, ConnInfoError> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                // The value is not quoted: it may be a password.
                .ok_or_else(|| syntax(at, "invalid percent-encoded token"))?;
            if hex == 0 {
                return Err(syntax(at, "forbidden value %00 in percent-encoded value"));
            }
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| syntax(at, "percent-decoded value is not UTF-8"))
}

fn syntax(position: usize, message: &str) -> ConnInfoError {
    ConnInfoError::Syntax {
        position,
        message: message.to_string(),
    }
}
