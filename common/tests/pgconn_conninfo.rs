//! Connection settings: libpq connection strings and URIs, environment precedence, password
//! redaction, and `.pgpass` parsing, matching and permission rules (no server needed).

use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::time::Duration;

use walship_common::pgconn::conninfo::parse_settings;
use walship_common::pgconn::pgpass::{PgpassEntry, lookup_file, lookup_in};
use walship_common::pgconn::{
    ChannelBindingMode, ConnInfoError, ConnParams, Host, SslMode, Target,
};

fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let map: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    move |k| map.get(k).cloned()
}

fn no_env(_: &str) -> Option<String> {
    None
}

#[test]
fn key_value_strings_with_quotes_and_escapes() {
    let p = ConnParams::parse_with_env(
        "host=db.example port = 6543 user=alice password='it''s \\'q\\' x' dbname='my db' \
         sslmode=verify-full sslrootcert=/etc/ca.pem application_name=walship connect_timeout=7",
        &no_env,
    );
    // A quote inside a quoted value must be escaped with a backslash: '' is not an escape.
    assert!(p.is_err(), "{p:?}");

    let p = ConnParams::parse_with_env(
        "host=db.example port = 6543 user=alice password='it\\'s a \\\\secret' dbname='my db' \
         sslmode=verify-full sslrootcert=/etc/ca.pem application_name=walship connect_timeout=7",
        &no_env,
    )
    .unwrap();
    assert_eq!(
        p.targets,
        vec![Target {
            host: Host::Tcp("db.example".into()),
            port: 6543
        }]
    );
    assert_eq!(p.user, "alice");
    assert_eq!(p.password.as_ref().unwrap().expose(), "it's a \\secret");
    assert_eq!(p.dbname.as_deref(), Some("my db"));
    assert_eq!(p.sslmode, SslMode::VerifyFull);
    assert_eq!(p.sslrootcert, Some(PathBuf::from("/etc/ca.pem")));
    assert_eq!(p.application_name.as_deref(), Some("walship"));
    assert_eq!(p.connect_timeout, Duration::from_secs(7));
}

#[test]
fn password_never_printed() {
    let p = ConnParams::parse_with_env("host=h user=u password=hunter2secret", &no_env).unwrap();
    let debug = format!("{p:?}");
    assert!(!debug.contains("hunter2secret"), "{debug}");
    assert!(debug.contains("redacted"), "{debug}");
    let entry = PgpassEntry::parse_line("h:*:*:u:hunter2secret").unwrap();
    assert!(!format!("{entry:?}").contains("hunter2secret"));
    let err = parse_settings("postgresql://u:hunter2%zzsecret@h/db").unwrap_err();
    assert!(!err.to_string().contains("hunter2"), "{err}");
}

#[test]
fn uris() {
    let p = ConnParams::parse_with_env(
        "postgresql://bob:p%40ss@db1:5433,[::1]:5434/mydb?sslmode=require&application_name=x%20y",
        &no_env,
    )
    .unwrap();
    assert_eq!(
        p.targets,
        vec![
            Target {
                host: Host::Tcp("db1".into()),
                port: 5433
            },
            Target {
                host: Host::Tcp("::1".into()),
                port: 5434
            },
        ]
    );
    assert_eq!(p.targets[1].endpoint(), "[::1]:5434");
    assert_eq!(p.user, "bob");
    assert_eq!(p.password.unwrap().expose(), "p@ss");
    assert_eq!(p.dbname.as_deref(), Some("mydb"));
    assert_eq!(p.sslmode, SslMode::Require);
    assert_eq!(p.application_name.as_deref(), Some("x y"));

    // Unix socket directory as a percent-encoded host, or as a query parameter.
    let s = parse_settings("postgres://%2Fvar%2Frun%2Fpostgresql:5432/db").unwrap();
    assert_eq!(
        s.get("host").map(String::as_str),
        Some("/var/run/postgresql")
    );
    let p = ConnParams::parse_with_env("postgresql:///db?host=/tmp/sock&port=7777&user=u", &no_env)
        .unwrap();
    assert_eq!(
        p.targets,
        vec![Target {
            host: Host::Unix("/tmp/sock".into()),
            port: 7777
        }]
    );
    assert_eq!(p.targets[0].endpoint(), "/tmp/sock/.s.PGSQL.7777");
    assert_eq!(
        ConnParams::parse_with_env("postgresql://h/?ssl=true&user=u", &no_env)
            .unwrap()
            .sslmode,
        SslMode::Require
    );
}

#[test]
fn environment_fills_what_the_string_leaves_out() {
    let env = env_of(&[
        ("PGHOST", "/run/pg"),
        ("PGPORT", "5499"),
        ("PGUSER", "envuser"),
        ("PGPASSWORD", "envpw"),
        ("PGDATABASE", "envdb"),
        ("PGSSLMODE", "disable"),
        ("PGSSLROOTCERT", "/ca.pem"),
        ("PGAPPNAME", "envapp"),
        ("PGPASSFILE", "/pgpass"),
    ]);
    let p = ConnParams::parse_with_env("", &env).unwrap();
    assert_eq!(
        p.targets,
        vec![Target {
            host: Host::Unix("/run/pg".into()),
            port: 5499
        }]
    );
    assert_eq!(
        (
            p.user.as_str(),
            p.password.as_ref().unwrap().expose(),
            p.dbname.as_deref()
        ),
        ("envuser", "envpw", Some("envdb"))
    );
    assert_eq!(p.sslmode, SslMode::Disable);
    assert_eq!(p.sslrootcert, Some(PathBuf::from("/ca.pem")));
    assert_eq!(p.application_name.as_deref(), Some("envapp"));
    assert_eq!(p.passfile, Some(PathBuf::from("/pgpass")));

    // The connection string wins.
    let p = ConnParams::parse_with_env(
        "host=h port=1 user=s sslmode=verify-ca application_name=a",
        &env,
    )
    .unwrap();
    assert_eq!(
        p.targets[0],
        Target {
            host: Host::Tcp("h".into()),
            port: 1
        }
    );
    assert_eq!((p.user.as_str(), p.sslmode), ("s", SslMode::VerifyCa));
    assert_eq!(p.application_name.as_deref(), Some("a"));
    // Fallback only applies when nothing set the name.
    let p = ConnParams::parse_with_env("user=u", &no_env)
        .unwrap()
        .with_fallback_application_name("walship");
    assert_eq!(p.application_name.as_deref(), Some("walship"));
    assert_eq!(p.sslmode, SslMode::Prefer, "libpq's default sslmode");
    assert_eq!(
        p.channel_binding,
        ChannelBindingMode::Prefer,
        "libpq's default channel_binding"
    );
    let p =
        ConnParams::parse_with_env("user=u", &env_of(&[("PGCHANNELBINDING", "require")])).unwrap();
    assert_eq!(p.channel_binding, ChannelBindingMode::Require);
    assert_eq!(p.targets[0].port, 5432);
}

#[test]
fn host_and_port_lists() {
    let p = ConnParams::parse_with_env("host=a,b,/sock port=1,2,3 user=u", &no_env).unwrap();
    let ports: Vec<u16> = p.targets.iter().map(|t| t.port).collect();
    assert_eq!(ports, vec![1, 2, 3]);
    assert_eq!(p.targets[2].host, Host::Unix("/sock".into()));
    let p = ConnParams::parse_with_env("host=a,b port=9 user=u", &no_env).unwrap();
    assert!(p.targets.iter().all(|t| t.port == 9));
    assert!(matches!(
        ConnParams::parse_with_env("host=a,b,c port=1,2 user=u", &no_env),
        Err(ConnInfoError::BadValue { .. })
    ));
}

#[test]
fn bad_strings_are_refused_with_the_reason() {
    assert_eq!(
        ConnParams::parse_with_env("hots=x user=u", &no_env),
        Err(ConnInfoError::UnknownKey { key: "hots".into() })
    );
    assert!(matches!(
        ConnParams::parse_with_env("host", &no_env),
        Err(ConnInfoError::Syntax { .. })
    ));
    assert!(matches!(
        ConnParams::parse_with_env("host='x user=u", &no_env),
        Err(ConnInfoError::Syntax { .. })
    ));
    assert!(matches!(
        ConnParams::parse_with_env("port=99999 user=u", &no_env),
        Err(ConnInfoError::BadValue { .. })
    ));
    assert!(matches!(
        ConnParams::parse_with_env("sslmode=allow user=u", &no_env),
        Err(ConnInfoError::BadValue { .. })
    ));
    assert_eq!(
        ConnParams::parse_with_env("sslcert=/c.pem user=u", &no_env),
        Err(ConnInfoError::UnsupportedKey {
            key: "sslcert".into()
        })
    );
    assert!(matches!(
        ConnParams::parse_with_env("channel_binding=always user=u", &no_env),
        Err(ConnInfoError::BadValue { .. })
    ));
    assert!(matches!(
        ConnParams::parse_with_env("postgresql://h/db?nosuch=1&user=u", &no_env),
        Err(ConnInfoError::UnknownKey { .. })
    ));
}

#[test]
fn pgpass_lines_and_matching() {
    let e = PgpassEntry::parse_line("db\\:1:5432:*:al\\\\ice:pa:ss\\:word").unwrap();
    assert_eq!(
        (
            e.host.as_str(),
            e.port.as_str(),
            e.database.as_str(),
            e.user.as_str()
        ),
        ("db:1", "5432", "*", "al\\ice")
    );
    assert_eq!(e.password.expose(), "pa:ss:word");
    assert!(PgpassEntry::parse_line("# comment").is_none());
    assert!(PgpassEntry::parse_line("").is_none());
    assert!(PgpassEntry::parse_line("too:few:fields").is_none());

    let file = "\
# comment
otherhost:*:*:*:wrong
db:5432:replication:alice:first
db:*:*:alice:second
*:*:*:*:fallback
";
    assert_eq!(
        lookup_in(file, "db", 5432, "replication", "alice")
            .unwrap()
            .expose(),
        "first"
    );
    assert_eq!(
        lookup_in(file, "db", 5433, "replication", "alice")
            .unwrap()
            .expose(),
        "second"
    );
    assert_eq!(
        lookup_in(file, "db", 5432, "postgres", "bob")
            .unwrap()
            .expose(),
        "fallback"
    );
    assert!(lookup_in("db:5432:*:alice:x\n", "db", 5432, "replication", "bob").is_none());
}

#[test]
fn pgpass_file_permissions_and_socket_hosts() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pgpass");
    std::fs::write(
        &path,
        "localhost:5432:*:u:sockpw\n/custom/dir:5432:*:u:custompw\n127.0.0.1:5432:*:u:tcppw\n",
    )
    .unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    let unix_default = Host::Unix("/var/run/postgresql".into());
    assert_eq!(
        lookup_file(&path, &unix_default, 5432, "replication", "u")
            .unwrap()
            .expose(),
        "sockpw"
    );
    let unix_custom = Host::Unix("/custom/dir".into());
    assert_eq!(
        lookup_file(&path, &unix_custom, 5432, "replication", "u")
            .unwrap()
            .expose(),
        "custompw"
    );
    let tcp = Host::Tcp("127.0.0.1".into());
    assert_eq!(
        lookup_file(&path, &tcp, 5432, "replication", "u")
            .unwrap()
            .expose(),
        "tcppw"
    );

    // Group or world access: ignored, like libpq.
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
    assert!(lookup_file(&path, &tcp, 5432, "replication", "u").is_none());
    // Not a regular file, or missing: ignored.
    assert!(lookup_file(dir.path(), &tcp, 5432, "replication", "u").is_none());
    assert!(lookup_file(&dir.path().join("none"), &tcp, 5432, "replication", "u").is_none());
}
