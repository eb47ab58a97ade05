//! A private certificate authority and a server certificate for 127.0.0.1 signed by it, made
//! with the `openssl` CLI: what an HTTPS listener of a test server presents, and what a client
//! is told to trust (`[s3] ca_file`, pgBackRest's `repo-storage-ca-file`) so that nothing in a
//! test or bench turns certificate checks off.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

/// The files of a test PKI, in a directory of their own (removed on drop).
#[derive(Debug)]
pub struct TestPki {
    dir: tempfile::TempDir,
}

impl TestPki {
    /// Makes `ca.pem` (a CA valid for two days), `server.pem` and `server.key` (for
    /// IP 127.0.0.1, signed by that CA) in a new temporary directory.
    pub fn create() -> anyhow::Result<TestPki> {
        let dir = tempfile::Builder::new()
            .prefix("walship-pki-")
            .tempdir()
            .context("creating the PKI directory")?;
        let run = |args: &[&str]| -> anyhow::Result<()> {
            let out = Command::new("openssl")
                .args(args)
                .current_dir(dir.path())
                .output()
                .context("run openssl (Debian package openssl)")?;
            if !out.status.success() {
                bail!("openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
            }
            Ok(())
        };
        run(&[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=walship test CA",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign",
        ])?;
        run(&[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=127.0.0.1",
        ])?;
        std::fs::write(
            dir.path().join("ext.cnf"),
            // pgBackRest matches the host only against DNS names (and the common name),
            // rustls only against IP addresses for an address: the certificate has both.
            "subjectAltName=IP:127.0.0.1,DNS:127.0.0.1\nbasicConstraints=CA:FALSE\n\
             extendedKeyUsage=serverAuth\n",
        )?;
        run(&[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.pem",
            "-days",
            "2",
            "-extfile",
            "ext.cnf",
        ])?;
        Ok(TestPki { dir })
    }

    /// The CA certificate clients trust.
    pub fn ca(&self) -> PathBuf {
        self.path("ca.pem")
    }

    /// The server's certificate.
    pub fn cert(&self) -> PathBuf {
        self.path("server.pem")
    }

    /// The server's private key.
    pub fn key(&self) -> PathBuf {
        self.path("server.key")
    }

    /// A file of the PKI by name (`ca.pem`, `ca.key`, `server.pem`, `server.key`).
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The directory holding the files.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}
