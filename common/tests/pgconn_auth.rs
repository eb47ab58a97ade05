//! Authentication and TLS against real clusters of every major under test: trust, password,
//! md5 and SCRAM-SHA-256 (right password accepted, wrong one rejected with the server's
//! message), the password file, and TLS with the harness's test CA ([`TestPki`]): verify-full
//! (with SCRAM channel binding), a wrong CA, require, prefer, and disable against a
//! `hostssl`-only pg_hba.

mod pgconn_support;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use pg_test_harness::s3::TestPki;
use pg_test_harness::{Cluster, PgInstall, installs_under_test};
use pgconn_support::{connect, params, runtime};
use walship_common::pgconn::{ConnParams, PgConnError, ReplicationClient};

const HBA_PREFIX: &str = "\
local all all trust
host all postgres 127.0.0.1/32 trust
";

#[test]
fn authentication_methods_on_every_major() {
    for install in installs_under_test() {
        eprintln!("PG{}: authentication methods", install.major);
        auth_matrix(&install);
    }
}

#[test]
fn tls_modes_on_every_major() {
    if Command::new("openssl").arg("version").output().is_err() {
        pg_test_harness::ci::skip_or_fail("the openssl CLI is not installed; TLS tests need it");
        return;
    }
    let (pki, other_ca) = make_certificates();
    for install in installs_under_test() {
        eprintln!("PG{}: TLS modes", install.major);
        tls_matrix(&install, &pki, &other_ca);
    }
}

/// Sets pg_hba.conf and reloads.
fn use_hba(pg: &Cluster, lines: &str) {
    pg.set_hba(&format!("{HBA_PREFIX}{lines}"));
    // Returns once the postmaster has re-read pg_hba.conf (it does so on SIGHUP, asynchronously).
    pg.reload();
}

fn try_connect(params: &ConnParams) -> Result<ReplicationClient, PgConnError> {
    runtime().block_on(ReplicationClient::connect(params))
}

/// Connects, runs IDENTIFY_SYSTEM, closes.
fn assert_connects(params: &ConnParams) -> ReplicationClient {
    let rt = runtime();
    let mut client = rt.block_on(connect(params));
    rt.block_on(client.identify_system())
        .expect("IDENTIFY_SYSTEM after authentication");
    client
}

fn assert_wrong_password(params: &ConnParams, user: &str) {
    let err = try_connect(params).map(|_| ()).unwrap_err();
    let server = err
        .server_error()
        .unwrap_or_else(|| panic!("expected the server's error, got {err}"));
    assert_eq!(server.severity, "FATAL", "{err}");
    assert_eq!(server.code, "28P01", "{err}");
    assert!(
        server.message.contains(&format!(
            "password authentication failed for user \"{user}\""
        )),
        "{err}"
    );
    assert!(
        !format!("{err:?}").contains("wrongpw"),
        "no password in errors: {err:?}"
    );
}

fn auth_matrix(install: &PgInstall) {
    let pg = Cluster::builder(install).start();
    pg.execute(
        "set password_encryption = 'md5';
         create role md5_user login replication password 'md5pw';
         set password_encryption = 'scram-sha-256';
         create role scram_user login replication password 'scram pw é';
         create role pw_user login replication password 'plainpw';
         create role trust_user login replication;",
    );
    assert!(
        pg.query_string("select rolpassword from pg_authid where rolname = 'md5_user'")
            .starts_with("md5")
    );
    use_hba(
        &pg,
        "host replication trust_user 127.0.0.1/32 trust
host replication pw_user 127.0.0.1/32 password
host replication md5_user 127.0.0.1/32 md5
host replication scram_user 127.0.0.1/32 scram-sha-256
",
    );

    assert_connects(&params(&pg, "user=trust_user"));
    for (user, password) in [
        ("pw_user", "plainpw"),
        ("md5_user", "md5pw"),
        ("scram_user", "'scram pw é'"),
    ] {
        let client = assert_connects(&params(&pg, &format!("user={user} password={password}")));
        assert!(
            !client.uses_channel_binding(),
            "no channel binding without TLS"
        );
        assert_wrong_password(&params(&pg, &format!("user={user} password=wrongpw")), user);
        // No password at all: our error, before anything is sent.
        let err = try_connect(&params(&pg, &format!("user={user}")))
            .map(|_| ())
            .unwrap_err();
        assert!(matches!(err, PgConnError::Auth { .. }), "{err}");
    }

    // channel_binding=require cannot be met without TLS: refused before any password is sent,
    // and trust (no authentication at all) is refused too.
    for user in ["scram_user", "md5_user", "pw_user", "trust_user"] {
        let p = params(
            &pg,
            &format!("user={user} password=x channel_binding=require"),
        );
        let err = try_connect(&p).map(|_| ()).unwrap_err();
        assert!(matches!(err, PgConnError::Auth { .. }), "{user}: {err}");
        assert!(err.to_string().contains("channel_binding=require"), "{err}");
    }

    // The password file, with libpq's permission rule.
    let dir = tempfile::tempdir().unwrap();
    let pgpass = dir.path().join("pgpass");
    std::fs::write(
        &pgpass,
        format!(
            "127.0.0.1:{}:replication:scram_user:scram pw é\n",
            pg.port()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&pgpass, std::fs::Permissions::from_mode(0o600)).unwrap();
    let mut from_file = params(&pg, "user=scram_user");
    from_file.passfile = Some(pgpass.clone());
    assert_connects(&from_file);
    std::fs::set_permissions(&pgpass, std::fs::Permissions::from_mode(0o644)).unwrap();
    let err = try_connect(&from_file).map(|_| ()).unwrap_err();
    assert!(
        matches!(err, PgConnError::Auth { .. }),
        "a world-readable password file is ignored: {err}"
    );

    // A role the hba does not let in: the server's FATAL 28000.
    let err = try_connect(&params(&pg, "user=postgres"))
        .map(|_| ())
        .unwrap_err();
    assert_eq!(err.sqlstate(), Some("28000"), "{err}");
}

/// The test PKI ([`TestPki`]: a CA and a server certificate for 127.0.0.1 and localhost) and
/// an unrelated second CA; the files are given to the cluster user, the key mode 0600 (Postgres
/// refuses a key others may read).
fn make_certificates() -> (TestPki, PathBuf) {
    let pki = TestPki::create().expect("making the test PKI");
    let other_ca = pki.other_ca().expect("making a second CA");
    pg_test_harness::chown_to_owner_recursive(pki.dir()).unwrap();
    std::fs::set_permissions(pki.key(), std::fs::Permissions::from_mode(0o600)).unwrap();
    (pki, other_ca)
}

fn tls_matrix(install: &PgInstall, pki: &TestPki, other_ca: &Path) {
    let pg = Cluster::builder(install)
        .setting("ssl", "on")
        .setting("ssl_cert_file", &format!("'{}'", pki.cert().display()))
        .setting("ssl_key_file", &format!("'{}'", pki.key().display()))
        .start();
    pg.execute(
        "set password_encryption = 'scram-sha-256';
         create role tls_user login replication password 'tlspw';",
    );
    use_hba(
        &pg,
        "hostssl replication tls_user 127.0.0.1/32 scram-sha-256
hostssl replication tls_user ::1/128 scram-sha-256
",
    );
    let ssl_of = |client: &ReplicationClient| {
        let pid = client.backend_pid().expect("BackendKeyData");
        pg.query_string(&format!("select ssl from pg_stat_ssl where pid = {pid}"))
    };

    // verify-full against the right CA, by IP and by name: TLS, channel binding.
    for host in ["127.0.0.1", "localhost"] {
        let p = params(
            &pg,
            &format!(
                "host={host} user=tls_user password=tlspw sslmode=verify-full sslrootcert={}",
                pki.ca().display()
            ),
        );
        let client = assert_connects(&p);
        assert!(client.is_tls());
        assert!(client.uses_channel_binding(), "SCRAM-SHA-256-PLUS over TLS");
        assert_eq!(ssl_of(&client), "t");
    }
    // channel_binding=require is met on TLS; disable turns binding off.
    let required = assert_connects(&params(
        &pg,
        &format!(
            "user=tls_user password=tlspw sslmode=verify-full sslrootcert={} channel_binding=require",
            pki.ca().display()
        ),
    ));
    assert!(required.uses_channel_binding());
    let disabled = assert_connects(&params(
        &pg,
        "user=tls_user password=tlspw sslmode=require channel_binding=disable",
    ));
    assert!(disabled.is_tls() && !disabled.uses_channel_binding());
    // verify-ca accepts the chain too.
    assert_connects(&params(
        &pg,
        &format!(
            "user=tls_user password=tlspw sslmode=verify-ca sslrootcert={}",
            pki.ca().display()
        ),
    ));

    // verify-full against the wrong CA: refused, naming the verification problem.
    let wrong = params(
        &pg,
        &format!(
            "user=tls_user password=tlspw sslmode=verify-full sslrootcert={}",
            other_ca.display()
        ),
    );
    match try_connect(&wrong) {
        Err(PgConnError::Tls { message, endpoint }) => {
            assert!(message.contains("certificate"), "{message}");
            assert!(message.contains("UnknownIssuer"), "{message}");
            assert!(endpoint.starts_with("127.0.0.1:"), "{endpoint}");
        }
        other => panic!(
            "verify-full with the wrong CA: expected a TLS error, got {:?}",
            other.map(|_| ())
        ),
    }
    // verify-full with a missing CA file: refused before connecting.
    let missing = params(
        &pg,
        "user=tls_user password=tlspw sslmode=verify-full sslrootcert=/nonexistent/ca.crt",
    );
    assert!(matches!(
        try_connect(&missing),
        Err(PgConnError::Tls { .. })
    ));

    // require: encrypted without verification; prefer: encrypted when offered.
    for mode in ["require", "prefer"] {
        let client = assert_connects(&params(
            &pg,
            &format!("user=tls_user password=tlspw sslmode={mode}"),
        ));
        assert!(client.is_tls(), "sslmode={mode}");
        assert_eq!(ssl_of(&client), "t");
    }
    // Wrong password over TLS: the server's error.
    assert_wrong_password(
        &params(&pg, "user=tls_user password=wrongpw sslmode=require"),
        "tls_user",
    );

    // disable against hostssl-only: the server refuses (no pg_hba.conf entry ... no encryption / SSL off).
    let err = try_connect(&params(&pg, "user=tls_user password=tlspw sslmode=disable"))
        .map(|_| ())
        .unwrap_err();
    assert_eq!(err.sqlstate(), Some("28000"), "{err}");
    // PG13 says "SSL off", later majors "no encryption".
    let text = err.to_string();
    assert!(
        text.contains("no encryption") || text.contains("SSL off"),
        "{err}"
    );
}
