//! Nothing hangs and every failure names the server: a peer that accepts but never answers
//! runs into the connect timeout, a closed port is a connect error naming `host:port`, and a
//! host list falls through to the first server that works.

mod pgconn_support;

use std::net::TcpListener;
use std::time::{Duration, Instant};

use pg_test_harness::{Cluster, installs_under_test, ports::free_port};
use pgconn_support::runtime;
use walship_common::pgconn::{ConnParams, PgConnError, ReplicationClient};

fn parse(conninfo: &str) -> ConnParams {
    ConnParams::parse_with_env(conninfo, &|_| None).unwrap()
}

#[test]
fn silent_server_runs_into_the_connect_timeout() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    // Accept and hold every connection without a byte of answer.
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for conn in listener.incoming() {
            held.push(conn);
        }
    });
    let rt = runtime();
    for mode in ["disable", "prefer"] {
        let p = parse(&format!(
            "host=127.0.0.1 port={port} user=u sslmode={mode} connect_timeout=2"
        ));
        let begin = Instant::now();
        let err = rt
            .block_on(ReplicationClient::connect(&p))
            .map(|_| ())
            .unwrap_err();
        let took = begin.elapsed();
        assert!(
            took >= Duration::from_secs(2) && took < Duration::from_secs(10),
            "{took:?}"
        );
        match err {
            PgConnError::Timeout {
                endpoint,
                during,
                timeout,
            } => {
                assert_eq!(endpoint, format!("127.0.0.1:{port}"));
                assert_eq!(during, "connecting");
                assert_eq!(timeout, Duration::from_secs(2));
            }
            other => panic!("sslmode={mode}: expected a timeout, got {other}"),
        }
    }
}

#[test]
fn closed_port_is_an_error_naming_the_server() {
    let port = free_port();
    let p = parse(&format!(
        "host=127.0.0.1 port={port} user=u sslmode=disable"
    ));
    let err = runtime()
        .block_on(ReplicationClient::connect(&p))
        .map(|_| ())
        .unwrap_err();
    assert!(matches!(err, PgConnError::Connect { .. }), "{err}");
    assert!(
        err.to_string().contains(&format!("127.0.0.1:{port}")),
        "{err}"
    );
}

#[test]
fn host_list_falls_through_to_a_working_server() {
    let Some(install) = installs_under_test().into_iter().last() else {
        return;
    };
    let pg = Cluster::builder(&install).start();
    let dead = free_port();
    let p = parse(&format!(
        "host=127.0.0.1,127.0.0.1 port={dead},{} user=postgres sslmode=disable",
        pg.port()
    ));
    let rt = runtime();
    let mut client = rt.block_on(ReplicationClient::connect(&p)).unwrap();
    assert_eq!(client.endpoint(), format!("127.0.0.1:{}", pg.port()));
    assert!(rt.block_on(client.identify_system()).is_ok());
}
