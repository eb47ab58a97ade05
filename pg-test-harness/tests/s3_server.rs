//! S3Server: SeaweedFS starts on loopback only, stores and serves objects over raw HTTP,
//! refuses connections while stopped, keeps its data across restart, and leaves no process.

use pg_test_harness::s3::port_refuses;
use pg_test_harness::s3_under_test;

#[test]
fn put_get_stop_restart_and_drop() {
    let Some(mut s3) = s3_under_test() else {
        return;
    };
    assert!(s3.endpoint.starts_with("http://127.0.0.1:"));
    assert!((3..=63).contains(&s3.bucket.len()));
    let key = format!("/{}/wal/000000010000000000000001", s3.bucket);
    let body: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();

    let put = s3.http("PUT", &key, &body).unwrap();
    assert_eq!(put.status, 200, "{}", put.body_text());
    let get = s3.http("GET", &key, b"").unwrap();
    assert_eq!(get.status, 200);
    assert_eq!(get.body, body);
    let missing = s3
        .http("GET", &format!("/{}/nope", s3.bucket), b"")
        .unwrap();
    assert_eq!(missing.status, 404);

    let pid = s3.pid().expect("running");
    let s3_port = s3.ports().s3;
    s3.stop();
    assert!(s3.pid().is_none());
    for port in s3.ports().all() {
        assert!(
            port_refuses(port),
            "port {port} still accepts connections after stop"
        );
    }
    assert!(!process_exists(pid), "weed {pid} still exists after stop");

    s3.restart();
    assert_eq!(s3.ports().s3, s3_port, "restart keeps the ports");
    let again = s3.http("GET", &key, b"").unwrap();
    assert_eq!(again.status, 200, "{}", again.body_text());
    assert_eq!(again.body, body);

    let pid = s3.pid().expect("running after restart");
    drop(s3);
    assert!(!process_exists(pid), "weed {pid} still exists after drop");
}

#[test]
fn listens_only_on_loopback() {
    let Some(s3) = s3_under_test() else { return };
    let pid = s3.pid().expect("running");
    let out = std::process::Command::new("ss")
        .args(["-Htlnp"])
        .output()
        .expect("ss (iproute2) is installed");
    let listing = String::from_utf8_lossy(&out.stdout);
    let mine: Vec<&str> = listing
        .lines()
        .filter(|l| l.contains(&format!("pid={pid},")))
        .collect();
    assert!(mine.len() >= 5, "expected weed's listeners in:\n{listing}");
    for line in &mine {
        let local = line.split_whitespace().nth(3).unwrap_or_default();
        assert!(
            local.starts_with("127.0.0.1:"),
            "weed listens on {local}: {line}"
        );
        let port: u16 = local.rsplit(':').next().unwrap().parse().unwrap();
        assert!(
            s3.ports().all().contains(&port),
            "weed opened a port it was not given: {line}"
        );
    }
    let udp = std::process::Command::new("ss")
        .args(["-Hulnp"])
        .output()
        .unwrap();
    let udp = String::from_utf8_lossy(&udp.stdout);
    for line in udp.lines().filter(|l| l.contains(&format!("pid={pid},"))) {
        let local = line.split_whitespace().nth(3).unwrap_or_default();
        assert!(
            local.starts_with("127.0.0.1:"),
            "weed has a UDP socket on {local}: {line}"
        );
    }
}

#[test]
fn env_names_the_endpoint_and_credentials() {
    let Some(s3) = s3_under_test() else { return };
    let env = s3.env();
    let get = |k: &str| {
        env.iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.clone())
            .unwrap()
    };
    assert_eq!(get("AWS_ENDPOINT_URL"), s3.endpoint);
    assert_eq!(get("AWS_ACCESS_KEY_ID"), s3.access_key);
    assert_eq!(get("AWS_SECRET_ACCESS_KEY"), s3.secret_key);
    assert_eq!(get("AWS_REGION"), s3.region);
    // Two servers get different buckets and ports.
    let Some(other) = s3_under_test() else { return };
    assert_ne!(other.bucket, s3.bucket);
    assert_ne!(other.endpoint, s3.endpoint);
}

fn process_exists(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}
