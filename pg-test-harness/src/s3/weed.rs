//! Launching SeaweedFS's `weed mini` bound to loopback with explicit ports for every service.
//!
//! The command line follows DESIGN.md's Testing section: `-ip=127.0.0.1 -ip.bind=127.0.0.1
//! -master.telemetry=false`, an explicit free port for each HTTP and gRPC listener, and the admin
//! UI, WebDAV, Iceberg and Lance endpoints off. Two quirks of weed 4.48 shape it:
//! - its maintenance worker dials the admin gRPC port at admin HTTP port + 10000 whatever
//!   `-admin.port.grpc` says, so the admin gRPC port is chosen as exactly that;
//! - it creates unix sockets `/tmp/seaweedfs-<service>[-grpc]-<port>.sock`; the HTTP ones are
//!   moved into the server's directory with `-s3.localSocket`/`-filer.localSocket`, the gRPC ones
//!   are removed by [`WeedPorts::remove_stray_sockets`] after the process exits.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use crate::ports::{free_port, free_port_pair};

/// The admin server's gRPC port as weed's worker computes it: HTTP port + this offset.
const ADMIN_GRPC_OFFSET: u16 = 10_000;

/// Every TCP port one `weed mini` process listens on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WeedPorts {
    /// S3 API (HTTP).
    pub s3: u16,
    /// S3 API over HTTPS (only opened when certificates are configured; set so no default is used).
    pub s3_https: u16,
    /// S3 gateway gRPC.
    pub s3_grpc: u16,
    /// Master HTTP.
    pub master: u16,
    /// Master gRPC.
    pub master_grpc: u16,
    /// Volume server HTTP.
    pub volume: u16,
    /// Volume server gRPC.
    pub volume_grpc: u16,
    /// Filer HTTP.
    pub filer: u16,
    /// Filer gRPC.
    pub filer_grpc: u16,
    /// Admin server HTTP (UI off, still listens).
    pub admin: u16,
    /// Admin server gRPC (= admin + 10000, see the module doc).
    pub admin_grpc: u16,
}

impl WeedPorts {
    /// A fresh set of free ports.
    pub fn allocate() -> Self {
        let (admin, admin_grpc) = free_port_pair(ADMIN_GRPC_OFFSET);
        WeedPorts {
            s3: free_port(),
            s3_https: free_port(),
            s3_grpc: free_port(),
            master: free_port(),
            master_grpc: free_port(),
            volume: free_port(),
            volume_grpc: free_port(),
            filer: free_port(),
            filer_grpc: free_port(),
            admin,
            admin_grpc,
        }
    }

    /// All ports, for checks such as "nothing listens any more".
    pub fn all(&self) -> [u16; 11] {
        [
            self.s3,
            self.s3_https,
            self.s3_grpc,
            self.master,
            self.master_grpc,
            self.volume,
            self.volume_grpc,
            self.filer,
            self.filer_grpc,
            self.admin,
            self.admin_grpc,
        ]
    }

    /// The `weed mini` arguments for these ports, data in `data_dir`, sockets in `socket_dir`.
    pub fn mini_args(&self, data_dir: &Path, socket_dir: &Path) -> Vec<String> {
        let mut args = vec![
            "mini".to_owned(),
            format!("-dir={}", data_dir.display()),
            "-ip=127.0.0.1".to_owned(),
            "-ip.bind=127.0.0.1".to_owned(),
            "-master.telemetry=false".to_owned(),
        ];
        for (flag, port) in [
            ("s3.port", self.s3),
            ("s3.port.https", self.s3_https),
            ("s3.port.grpc", self.s3_grpc),
            ("master.port", self.master),
            ("master.port.grpc", self.master_grpc),
            ("volume.port", self.volume),
            ("volume.port.grpc", self.volume_grpc),
            ("filer.port", self.filer),
            ("filer.port.grpc", self.filer_grpc),
            ("admin.port", self.admin),
            ("admin.port.grpc", self.admin_grpc),
        ] {
            args.push(format!("-{flag}={port}"));
        }
        args.extend(
            [
                "-admin.ui=false",
                "-webdav=false",
                "-s3.port.iceberg=0",
                "-s3.port.lance=0",
            ]
            .map(str::to_owned),
        );
        args.push(format!(
            "-s3.localSocket={}",
            socket_dir.join("s3.sock").display()
        ));
        args.push(format!(
            "-filer.localSocket={}",
            socket_dir.join("filer.sock").display()
        ));
        args
    }

    /// Removes the gRPC unix sockets weed leaves in /tmp for these ports (it cannot be told to
    /// put them elsewhere, and a killed weed does not remove them).
    pub fn remove_stray_sockets(&self) {
        for service in ["master", "volume", "filer", "s3", "admin"] {
            for port in self.all() {
                for kind in ["", "-grpc"] {
                    let path = format!("/tmp/seaweedfs-{service}{kind}-{port}.sock");
                    let _ = std::fs::remove_file(path);
                }
            }
        }
    }
}

/// Where the `weed` binary is: `$WEED_BIN`, else `<test deps>/seaweedfs/bin/weed`, else `weed`
/// on PATH. None when none exists.
pub fn weed_binary() -> Option<PathBuf> {
    if let Some(bin) = std::env::var_os("WEED_BIN").filter(|v| !v.is_empty()) {
        return Some(PathBuf::from(bin)).filter(|p| p.is_file());
    }
    let cached = crate::install::test_deps_dir().join("seaweedfs/bin/weed");
    if cached.is_file() {
        return Some(cached);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join("weed"))
        .find(|p| p.is_file())
}

/// Starts `weed` with `args`, stdout and stderr appended to `log`.
pub fn spawn(weed: &Path, args: &[String], log: &Path) -> std::io::Result<Child> {
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)?;
    let err = out.try_clone()?;
    Command::new(weed)
        .args(args)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_listener_gets_an_explicit_loopback_port() {
        let ports = WeedPorts::allocate();
        let args = ports.mini_args(Path::new("/d"), Path::new("/s"));
        for required in [
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            "-master.telemetry=false",
            "-admin.ui=false",
            "-webdav=false",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
        ] {
            assert!(args.iter().any(|a| a == required), "missing {required}");
        }
        for port in ports.all() {
            assert!(args.iter().any(|a| a.ends_with(&format!("={port}"))));
        }
        assert_eq!(ports.admin_grpc, ports.admin + ADMIN_GRPC_OFFSET);
        let mut unique = ports.all().to_vec();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), 11);
    }
}
