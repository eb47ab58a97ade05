//! TEMPORARY stand-in for `pg_test_harness::{S3Server, s3_under_test}` (same API) until the
//! harness lands on main; replaced by a re-export then.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct S3Server {
    pub endpoint: String,
    pub bucket: String,
    pub region: String,
    pub access_key: String,
    pub secret_key: String,
    child: Option<Child>,
    dir: tempfile::TempDir,
}

fn free_port() -> u16 {
    loop {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let p = l.local_addr().unwrap().port();
        if p < 55000 && TcpListener::bind(("127.0.0.1", p + 10000)).is_ok() {
            return p;
        }
    }
}

fn weed() -> Option<std::path::PathBuf> {
    ["/tmp/weedvenv/bin/weed"]
        .iter()
        .map(std::path::PathBuf::from)
        .find(|p| p.exists())
}

pub fn s3_under_test() -> Option<S3Server> {
    let Some(bin) = weed() else {
        eprintln!("SKIP: weed not installed");
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "weed missing under CI"
        );
        return None;
    };
    let dir = tempfile::tempdir().unwrap();
    let s3 = free_port();
    let args = [
        format!("-dir={}", dir.path().display()),
        "-ip=127.0.0.1".into(),
        "-ip.bind=127.0.0.1".into(),
        "-master.telemetry=false".into(),
        format!("-s3.port={s3}"),
        format!("-s3.port.https={}", free_port()),
        format!("-master.port={}", free_port()),
        format!("-volume.port={}", free_port()),
        format!("-filer.port={}", free_port()),
        format!("-admin.port={}", free_port()),
        "-admin.ui=false".into(),
        "-webdav=false".into(),
        "-s3.port.iceberg=0".into(),
        "-s3.port.lance=0".into(),
    ];
    let child = Command::new(bin)
        .arg("mini")
        .args(&args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let server = S3Server {
        endpoint: format!("http://127.0.0.1:{s3}"),
        bucket: "walship-test".into(),
        region: "us-east-1".into(),
        access_key: "any".into(),
        secret_key: "any-secret".into(),
        child: Some(child),
        dir,
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if http(s3, "PUT /walship-test HTTP/1.1") == Some(200) {
            return Some(server);
        }
        assert!(Instant::now() < deadline, "weed did not start");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn http(port: u16, line: &str) -> Option<u16> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    write!(
        s,
        "{line}\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    out.split_whitespace().nth(1)?.parse().ok()
}

impl S3Server {
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.stop();
        let _ = &self.dir;
    }
}
