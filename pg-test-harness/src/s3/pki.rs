//! A private certificate authority and a server certificate for 127.0.0.1 and localhost signed
//! by it, made with the `openssl` CLI: what a TLS listener of a test server presents (SeaweedFS's
//! HTTPS, a Postgres cluster's `ssl`), and what a client is told to trust (`[s3] ca_file`,
//! pgBackRest's `repo-storage-ca-file`, `sslrootcert`) so that nothing in a test or bench turns
//! certificate checks off.

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
    /// IP 127.0.0.1 and the name localhost, signed by that CA) in a new temporary directory.
    pub fn create() -> anyhow::Result<TestPki> {
        let dir = tempfile::Builder::new()
            .prefix("walship-pki-")
            .tempdir()
            .context("creating the PKI directory")?;
        let run = |args: &[&str]| openssl(dir.path(), args);
        make_ca(dir.path(), "ca", "walship test CA")?;
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
            "subjectAltName=IP:127.0.0.1,DNS:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n\
             keyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n",
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

    /// Makes `other-ca.pem`, a second CA that signed nothing here (what a client trusting
    /// the wrong authority holds), and returns its path.
    pub fn other_ca(&self) -> anyhow::Result<PathBuf> {
        make_ca(self.dir(), "other-ca", "unrelated test CA")?;
        Ok(self.path("other-ca.pem"))
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

    /// A file of the PKI by name (`ca.pem`, `ca.key`, `server.pem`, `server.key`,
    /// `other-ca.pem`).
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The directory holding the files.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

/// Makes a self-signed CA valid for two days, `<name>.pem` and `<name>.key` in `dir`.
fn make_ca(dir: &Path, name: &str, common_name: &str) -> anyhow::Result<()> {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.pem"),
            "-days",
            "2",
            "-subj",
            &format!("/CN={common_name}"),
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ],
    )
}

/// Runs `openssl <args>` in `dir`; its error output names any failure.
fn openssl(dir: &Path, args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .context("run openssl (Debian package openssl)")?;
    if !out.status.success() {
        bail!("openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}
