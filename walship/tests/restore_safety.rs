//! Issue 18, "restore must never harm what it does not own", through the `walship` binary:
//! a running server's directories are refused, a directory that is not a data directory is
//! never cleared, tablespace locations outside `--to` must be named or confirmed, and a
//! tampered manifest (crafted here from a real backup: edited `manifest.json`, added
//! bundles) cannot write outside the target, is refused by `--dry-run` as by the restore,
//! and never aborts the process; a corrupt or foreign manifest is skipped, not fatal;
//! `pg_control` is written after the recovery settings; run as root, restored files belong
//! to the owner of their target directory (or `--owner`) and the cluster starts as it is.
//! One major (15 when found), real Postgres, a local `file://` repository.

mod restore_support;
mod support;

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use bytes::Bytes;
use pg_test_harness::{Cluster, PgInstall};
use restore_support::{
    archiving_cluster, open_repo, put_manifest, restore, runtime, start_restored, walship_backup,
};
use support::{TestRepo, archive_everything, describe};
use walship_common::backup::find_backup;
use walship_common::catalog::{BackupId, BackupManifest, BundleInfo, FileEntry, FileKind};
use walship_common::repo::{Repository, layout};
use walship_common::storage::{PutOptions, Storage};

/// A cluster with a tablespace, archiving into a local repository, and one `walship backup`
/// of it.
struct Fixture {
    install: PgInstall,
    repo: TestRepo,
    cluster: Cluster,
    /// The live tablespace's directory.
    ts: tempfile::TempDir,
    oid: String,
    backup: BackupManifest,
    want: Vec<String>,
    rt: tokio::runtime::Runtime,
    repository: Repository,
}

fn rows(cluster: &Cluster) -> Vec<String> {
    cluster
        .query_rows("select id::text || ':' || v from spaced order by id")
        .into_iter()
        .map(|r| r[0].clone().unwrap_or_default())
        .collect()
}

fn fixture() -> Option<Fixture> {
    let installs = pg_test_harness::installs_under_test();
    let install = installs
        .iter()
        .find(|i| i.major == 15)
        .or(installs.first())?
        .clone();
    let repo = TestRepo::local();
    let cluster = archiving_cluster(&install, &repo);
    let ts = pg_test_harness::test_dir("live-tablespace");
    cluster.execute(&format!(
        "create tablespace spc location '{}'",
        ts.path().display()
    ));
    let oid = cluster.query_string("select oid::text from pg_tablespace where spcname = 'spc'");
    cluster.execute("create table spaced (id int primary key, v text) tablespace spc");
    cluster.execute("insert into spaced select g, md5(g::text) from generate_series(1, 500) g");
    walship_backup(&cluster, &repo);
    archive_everything(&cluster, Duration::from_secs(120));
    let want = rows(&cluster);
    let rt = runtime();
    let repository = open_repo(&rt, &repo);
    let backup = rt.block_on(find_backup(&repository, "latest")).unwrap();
    Some(Fixture {
        install,
        repo,
        cluster,
        ts,
        oid,
        backup,
        want,
        rt,
        repository,
    })
}

impl Fixture {
    fn id(&self) -> String {
        self.backup.id.to_string()
    }

    /// `--tablespace OID=DIR`.
    fn relocate(&self, dir: &Path) -> String {
        format!("{}={}", self.oid, dir.display())
    }

    /// Restores with `--target immediate --backup <the backup>` plus `args`.
    fn restore(&self, to: &Path, args: &[&str]) -> Output {
        let id = self.id();
        let mut all = vec!["--target", "immediate", "--backup", &id];
        all.extend_from_slice(args);
        restore(&self.repo, to, &all)
    }

    /// Runs `check` with the manifest changed by `tamper`, then puts the real one back.
    fn tampered(&self, tamper: impl FnOnce(&mut BackupManifest), check: impl FnOnce()) {
        let mut manifest = self.backup.clone();
        tamper(&mut manifest);
        put_manifest(&self.rt, &self.repository, &manifest);
        check();
        put_manifest(&self.rt, &self.repository, &self.backup);
    }

    /// Stores `content` as a new bundle of the backup; returns its index.
    fn add_bundle(&self, manifest: &mut BackupManifest, name: &str, content: &[u8]) -> u32 {
        let key = layout::bundle_key(self.backup.id, name).unwrap();
        let stored = self
            .rt
            .block_on(
                self.repository
                    .put_content(&key, Bytes::copy_from_slice(content), false),
            )
            .unwrap();
        manifest.bundles.push(BundleInfo {
            name: name.to_string(),
            raw_len: content.len() as u64,
            stored_len: stored.stored_len,
        });
        (manifest.bundles.len() - 1) as u32
    }
}

fn code(out: &Output) -> Option<i32> {
    out.status.code()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Asserts a refusal (exit 4) whose stderr holds every needle.
fn assert_refused(out: &Output, needles: &[&str]) {
    assert_eq!(code(out), Some(4), "{}", describe(out));
    for needle in needles {
        assert!(
            stderr(out).contains(needle),
            "{needle:?}: {}",
            describe(out)
        );
    }
}

/// Every regular file under `dir`, recursively.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for entry in entries {
        let path = entry.unwrap().path();
        let meta = std::fs::symlink_metadata(&path).unwrap();
        if meta.is_dir() {
            out.extend(files_under(&path));
        } else {
            out.push(path);
        }
    }
    out
}

fn file(path: &str, bundle: u32, size: u64, crc: u32) -> FileEntry {
    FileEntry {
        path: path.to_string(),
        kind: FileKind::File,
        size,
        mode: 0o600,
        mtime: 0,
        crc32c: Some(crc),
        bundle: Some(bundle),
        offset: Some(0),
        link_target: None,
    }
}

/// Item 1: a running server's data directory, or one named as a tablespace target, is
/// refused before anything is touched, with `--force` and with `--delta`.
#[test]
fn a_running_servers_directories_are_refused() {
    let Some(fx) = fixture() else { return };
    let live = fx.cluster.data_dir().to_path_buf();
    let elsewhere = pg_test_harness::test_dir("elsewhere");
    let reloc = fx.relocate(&elsewhere.path().join("spc"));

    for mode in ["--force", "--delta"] {
        let out = fx.restore(&live, &[mode, "--tablespace", &reloc]);
        assert_refused(&out, &["is in use", "postmaster.pid"]);
    }
    // A tablespace target that is a running server's directory.
    let dir = pg_test_harness::test_dir("ts-live");
    let to = dir.path().join("data");
    let out = fx.restore(&to, &["--force", "--tablespace", &fx.relocate(&live)]);
    assert_refused(&out, &["is in use"]);
    assert!(!to.exists(), "refused, yet {} was created", to.display());
    assert!(live.join("global/pg_filenode.map").exists());
    assert_eq!(rows(&fx.cluster), fx.want, "the live server lost rows");
}

/// Item 2: `--force` never clears a directory that is not a data directory, nor a
/// tablespace location that is not the replaced data directory's; the refusal names
/// `--tablespace OID=DIR`; `--dry-run` shows where every tablespace goes.
#[test]
fn directories_walship_does_not_own_are_never_cleared() {
    let Some(fx) = fixture() else { return };
    let elsewhere = pg_test_harness::test_dir("elsewhere");
    let moved = elsewhere.path().join("spc");
    let reloc = fx.relocate(&moved);
    let ts_files = files_under(fx.ts.path());
    assert!(!ts_files.is_empty());
    let dir = pg_test_harness::test_dir("target");
    let to = dir.path().join("data");

    // --force into a directory that is not a data directory: left as it was.
    let junk = pg_test_harness::test_dir("junk");
    std::fs::write(junk.path().join("keep-me"), b"precious").unwrap();
    let out = fx.restore(junk.path(), &["--force", "--tablespace", &reloc]);
    assert_refused(&out, &["not a PostgreSQL data directory"]);
    assert_eq!(
        std::fs::read(junk.path().join("keep-me")).unwrap(),
        b"precious"
    );

    // The backup's tablespace location is the live tablespace: without --tablespace the
    // refusal names the two ways out; confirmed in place, it is still not cleared (it is
    // not the tablespace of the directory being replaced), and --dry-run says so too.
    let way_out = format!("--tablespace {}=DIR", fx.oid);
    let out = fx.restore(&to, &["--force"]);
    assert_refused(&out, &[&way_out, "--tablespace-in-place"]);
    let out = fx.restore(&to, &["--force", "--tablespace-in-place"]);
    assert_refused(
        &out,
        &[
            "not the tablespace of the data directory being replaced",
            &way_out,
        ],
    );
    let out = fx.restore(&to, &["--force", "--tablespace-in-place", "--dry-run"]);
    assert_eq!(code(&out), Some(4), "{}", describe(&out));
    assert!(
        stdout(&out).contains("PROBLEM") && stdout(&out).contains(&way_out),
        "{}",
        describe(&out)
    );
    assert_eq!(
        files_under(fx.ts.path()),
        ts_files,
        "the live tablespace changed"
    );
    assert_eq!(rows(&fx.cluster), fx.want, "the live server lost rows");

    // --dry-run shows where every tablespace goes, in text and JSON.
    let out = fx.restore(&to, &["--tablespace", &reloc, "--dry-run"]);
    assert!(out.status.success(), "{}", describe(&out));
    let line = format!(
        "tablespace {}: {} (relocated from {}",
        fx.oid,
        moved.display(),
        fx.ts.path().display()
    );
    assert!(stdout(&out).contains(&line), "{line:?}: {}", describe(&out));
    let out = fx.restore(&to, &["--tablespace", &reloc, "--dry-run", "--json"]);
    assert!(out.status.success(), "{}", describe(&out));
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let placed = &plan["placement"]["tablespaces"][0];
    assert_eq!(placed["directory"], moved.display().to_string(), "{plan}");
    assert_eq!(
        placed["backup_location"],
        fx.ts.path().display().to_string(),
        "{plan}"
    );
    assert!(!to.exists() && !moved.exists());
}

/// Item 7: run as root into directories the cluster user owns, every restored file is the
/// cluster user's, and the cluster starts without a chown (the harness chowns the data
/// directory, never through the pg_tblspc link into the tablespace); `--owner` does the
/// same into directories root owns.
#[test]
fn restored_files_belong_to_the_owner_of_their_directory() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("SKIP: ownership is what a root restore sets");
        return;
    }
    let Some(fx) = fixture() else { return };
    let dir = pg_test_harness::test_dir("owned");
    let to = dir.path().join("data");
    let moved = dir.path().join("spc");
    let reloc = fx.relocate(&moved);
    let Some(owner) = pg_test_harness::cluster_owner() else {
        eprintln!("SKIP ownership: not running as root");
        return;
    };
    let out = fx.restore(&to, &["--tablespace", &reloc]);
    assert!(out.status.success(), "{}", describe(&out));
    let owned_by = |path: &Path| {
        let meta = std::fs::symlink_metadata(path).unwrap();
        (meta.uid(), meta.gid())
    };
    let cluster_user = (owner.uid, owner.gid);
    for path in [
        to.clone(),
        to.join("PG_VERSION"),
        to.join("global/pg_control"),
        to.join("postgresql.auto.conf"),
        to.join("recovery.signal"),
        to.join("backup_label"),
        to.join("tablespace_map"),
        to.join("pg_tblspc").join(&fx.oid),
        moved.clone(),
    ]
    .into_iter()
    .chain(files_under(&moved))
    .chain(files_under(&to.join("base")).into_iter().take(20))
    {
        assert_eq!(owned_by(&path), cluster_user, "{}", path.display());
    }
    let restored = start_restored(&fx.install, &to);
    assert_eq!(rows(&restored), fx.want, "rows of the restored cluster");
    drop(restored);

    // A tablespace directory the restore creates under a parent root owns is the data
    // directory owner's (the server must open it).
    let dir = pg_test_harness::test_dir("owned-data");
    let rooted = tempfile::tempdir().unwrap();
    let to = dir.path().join("data");
    let moved = rooted.path().join("spc");
    let out = fx.restore(&to, &["--tablespace", &fx.relocate(&moved)]);
    assert!(out.status.success(), "{}", describe(&out));
    for path in [moved.clone()].into_iter().chain(files_under(&moved)) {
        assert_eq!(owned_by(&path), cluster_user, "{}", path.display());
    }

    // --owner into directories root owns.
    let rooted = tempfile::tempdir().unwrap();
    let to = rooted.path().join("data");
    let moved = rooted.path().join("spc");
    let out = fx.restore(
        &to,
        &["--tablespace", &fx.relocate(&moved), "--owner", "postgres"],
    );
    assert!(out.status.success(), "{}", describe(&out));
    for path in [to.join("global/pg_control"), to.join("recovery.signal")]
        .into_iter()
        .chain(files_under(&moved))
    {
        assert_eq!(owned_by(&path), cluster_user, "{}", path.display());
    }
}

/// Item 3: a tampered manifest cannot write outside the target: only listed tablespaces
/// get links, a location from the manifest needs a flag, and the tablespace_map is
/// rebuilt from what was accepted.
#[test]
fn tampered_tablespaces_cannot_write_outside_the_target() {
    let Some(fx) = fixture() else { return };
    let dir = pg_test_harness::test_dir("hostile");
    let to = dir.path().join("data");
    let moved = dir.path().join("spc");
    let reloc = fx.relocate(&moved);
    let evil = pg_test_harness::test_dir("attacker");
    let ssh = evil.path().join(".ssh");

    // 3. A link for a tablespace the backup does not list, fed from an added bundle, with
    // the real tablespace relocated.
    let key = b"ssh-ed25519 AAAA attacker\n";
    let mut m = fx.backup.clone();
    let bundle = fx.add_bundle(&mut m, "extra", key);
    m.files.push(FileEntry {
        kind: FileKind::Symlink,
        size: 0,
        crc32c: None,
        bundle: None,
        offset: None,
        link_target: Some(ssh.display().to_string()),
        ..file("pg_tblspc/99999", 0, 0, 0)
    });
    m.files.push(file(
        "pg_tblspc/99999/authorized_keys",
        bundle,
        key.len() as u64,
        crc32c::crc32c(key),
    ));
    let planted = m.clone();
    fx.tampered(
        |m| *m = planted,
        || {
            let out = fx.restore(&to, &["--tablespace", &reloc, "--dry-run"]);
            assert_eq!(code(&out), Some(4), "{}", describe(&out));
            assert!(stdout(&out).contains("bad manifest"), "{}", describe(&out));
            let out = fx.restore(&to, &["--tablespace", &reloc]);
            assert_refused(
                &out,
                &["pg_tblspc/99999", "not in a tablespace the backup lists"],
            );
        },
    );
    assert!(
        !ssh.join("authorized_keys").exists() && !ssh.exists(),
        "a tampered manifest wrote outside the target"
    );
    assert!(!to.exists());

    // A tablespace location moved by the manifest is not honoured without a flag.
    let location = evil.path().join("location").display().to_string();
    fx.tampered(
        |m| {
            m.tablespaces[0].location = location.clone();
            for f in m.files.iter_mut().filter(|f| f.kind == FileKind::Symlink) {
                f.link_target = Some(location.clone());
            }
        },
        || {
            let out = fx.restore(&to, &[]);
            assert_refused(&out, &["--tablespace-in-place", &location]);
        },
    );
    assert!(!Path::new(&location).exists());

    // The tablespace_map is rebuilt from the accepted tablespaces, never copied.
    fx.tampered(
        |m| {
            m.tablespace_map = Some(format!(
                "{} {}\n99998 {}\n",
                fx.oid,
                fx.ts.path().display(),
                evil.path().display()
            ));
        },
        || {
            let out = fx.restore(&to, &["--tablespace", &reloc]);
            assert!(out.status.success(), "{}", describe(&out));
        },
    );
    let map = std::fs::read_to_string(to.join("tablespace_map")).unwrap();
    assert_eq!(map, format!("{} {}\n", fx.oid, moved.display()));
    let links: Vec<_> = std::fs::read_dir(to.join("pg_tblspc")).unwrap().collect();
    assert_eq!(links.len(), 1, "{links:?}");
}

/// Item 4: every structural check refuses in `--dry-run` as in the restore, and no size
/// aborts the process.
#[test]
fn structural_checks_refuse_in_the_plan_and_never_abort() {
    let Some(fx) = fixture() else { return };
    let spc = pg_test_harness::test_dir("spc");
    let reloc = fx.relocate(&spc.path().join("spc"));
    let control = fx
        .backup
        .files
        .iter()
        .position(|f| f.path == "global/pg_control")
        .unwrap();
    let auto_conf = fx
        .backup
        .files
        .iter()
        .position(|f| f.path == "postgresql.auto.conf")
        .unwrap();
    let (first, second) = {
        let in_bundle0: Vec<usize> = (0..fx.backup.files.len())
            .filter(|&i| fx.backup.files[i].bundle == Some(0) && fx.backup.files[i].size > 0)
            .collect();
        (in_bundle0[0], in_bundle0[1])
    };
    let link = fx
        .backup
        .files
        .iter()
        .position(|f| f.kind == FileKind::Symlink)
        .unwrap();
    type Tamper = Box<dyn Fn(&mut BackupManifest)>;
    let cases: Vec<(&str, Tamper)> = vec![
        (
            "pg_control of 2^40 bytes",
            Box::new(move |m| m.files[control].size = 1 << 40),
        ),
        (
            "pg_control of u64::MAX bytes",
            Box::new(move |m| m.files[control].size = u64::MAX),
        ),
        (
            "no pg_control",
            Box::new(move |m| {
                m.files.remove(control);
            }),
        ),
        (
            "a missing bundle",
            Box::new(move |m| m.files[first].bundle = Some(9999)),
        ),
        (
            "an escaping bundle name",
            Box::new(|m| m.bundles[0].name = "../../x".into()),
        ),
        (
            "overlapping files",
            Box::new(move |m| {
                m.files[second].offset = m.files[first].offset;
            }),
        ),
        (
            "a file beyond its bundle",
            Box::new(move |m| {
                m.files[first].size = m.bundles[0].raw_len + 1;
            }),
        ),
        (
            "a moved link target",
            Box::new(move |m| {
                m.files[link].link_target = Some("/etc".into());
            }),
        ),
        (
            "postgresql.auto.conf as a directory",
            Box::new(move |m| {
                let f = &mut m.files[auto_conf];
                (f.kind, f.size, f.bundle, f.offset, f.crc32c) =
                    (FileKind::Dir, 0, None, None, None);
            }),
        ),
    ];
    let dir = pg_test_harness::test_dir("structural");
    let to = dir.path().join("data");
    // A stop LSN at the end of the address space: refused, in bounded time and memory.
    fx.tampered(
        |m| m.stop_lsn = "FFFFFFFF/FFFFFF00".parse().unwrap(),
        || {
            let out = fx.restore(&to, &["--tablespace", &reloc, "--dry-run"]);
            assert_eq!(code(&out), Some(4), "{}", describe(&out));
            assert!(
                stdout(&out).contains("reachable:      no"),
                "{}",
                describe(&out)
            );
        },
    );
    for (what, tamper) in &cases {
        fx.tampered(
            |m| tamper(m),
            || {
                let out = fx.restore(&to, &["--tablespace", &reloc, "--dry-run"]);
                assert_eq!(code(&out), Some(4), "{what}: {}", describe(&out));
                assert!(
                    stdout(&out).contains("bad manifest")
                        && stdout(&out).contains("reachable:      no"),
                    "{what}: {}",
                    describe(&out)
                );
                let out = fx.restore(&to, &["--tablespace", &reloc]);
                assert_refused(&out, &["bad manifest"]);
                assert!(!to.exists(), "{what}: refused, yet {} exists", to.display());
            },
        );
    }
}

/// Item 6: a corrupt, a garbled and a foreign manifest, all newer than the good backup, are
/// reported and skipped by `list`, `list --incomplete` and `restore`.
#[test]
fn bad_manifests_are_reported_and_skipped() {
    let Some(fx) = fixture() else { return };
    let spc = pg_test_harness::test_dir("spc");
    let reloc = fx.relocate(&spc.path().join("spc"));
    let later =
        |hours| BackupId::from_start_time(fx.backup.start_time + chrono::Duration::hours(hours));
    let (garbled, corrupt, foreign) = (later(1), later(2), later(3));
    let put = |id: BackupId, bytes: Vec<u8>, encoded: bool| {
        let key = layout::manifest_key(id);
        if encoded {
            fx.rt
                .block_on(fx.repository.put_content(&key, Bytes::from(bytes), false))
                .unwrap();
        } else {
            fx.rt
                .block_on(fx.repository.storage().put(
                    &key,
                    Bytes::from(bytes),
                    PutOptions::default(),
                ))
                .unwrap();
        }
    };
    put(garbled, b"{ this is not a manifest".to_vec(), true);
    put(corrupt, b"WSHP garbage that no codec reads".to_vec(), false);
    put(foreign, serde_json::to_vec(&fx.backup).unwrap(), true); // names another backup
    let good = fx.id();
    let out = fx.repo.walship(&["list"]);
    assert!(out.status.success(), "{}", describe(&out));
    assert!(stdout(&out).contains(&good), "{}", describe(&out));
    for bad in [garbled, corrupt, foreign] {
        assert!(
            stderr(&out).contains(&bad.to_string()),
            "{bad}: {}",
            describe(&out)
        );
    }
    let out = fx.repo.walship(&["list", "--json"]);
    assert!(out.status.success(), "{}", describe(&out));
    let listed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 1, "{listed}");
    let out = fx.repo.walship(&["list", "--incomplete"]);
    assert!(out.status.success(), "{}", describe(&out));
    let dir = pg_test_harness::test_dir("skipped");
    let to = dir.path().join("data");
    let out = restore(
        &fx.repo,
        &to,
        &["--target", "immediate", "--tablespace", &reloc, "--dry-run"],
    );
    assert!(out.status.success(), "{}", describe(&out));
    assert!(stdout(&out).contains(&good), "{}", describe(&out));
    assert!(
        stdout(&out).contains(&format!("skipped:        backup {garbled}")),
        "{}",
        describe(&out)
    );
    let out = fx.restore(&to, &["--tablespace", &reloc]);
    assert!(out.status.success(), "{}", describe(&out));
    let out = restore(
        &fx.repo,
        &to.with_file_name("other"),
        &["--target", "immediate", "--backup", &corrupt.to_string()],
    );
    assert_refused(&out, &[&corrupt.to_string(), "cannot be used"]);
}

/// Item 5: `global/pg_control` is written after the recovery settings are durable. A
/// tmpfs with exactly one inode too few for the whole restore makes the very last file
/// fail: that must be `pg_control`, never the recovery configuration.
#[test]
fn pg_control_comes_after_the_recovery_settings() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("SKIP: mounting a tmpfs needs root");
        return;
    }
    let Some(fx) = fixture() else { return };
    let base = pg_test_harness::test_dir("tmpfs");
    let mnt = base.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let to = mnt.join("data");

    let mount = Tmpfs::mount(&mnt, 1_000_000);
    let out = fx.restore(
        &to,
        &["--tablespace", &fx.relocate(&base.path().join("spc1"))],
    );
    assert!(out.status.success(), "{}", describe(&out));
    let stat = nix::sys::statvfs::statvfs(&mnt).unwrap();
    let used = stat.files() - stat.files_free();
    drop(mount);

    let _mount = Tmpfs::mount(&mnt, used - 1);
    let out = fx.restore(
        &to,
        &["--tablespace", &fx.relocate(&base.path().join("spc2"))],
    );
    assert_eq!(code(&out), Some(3), "{}", describe(&out));
    assert!(
        !to.join("global/pg_control").exists(),
        "pg_control was written before the restore finished: {}",
        describe(&out)
    );
    assert!(to.join("recovery.signal").exists(), "{}", describe(&out));
    let auto = std::fs::read_to_string(to.join("postgresql.auto.conf")).unwrap();
    assert!(auto.contains("restore_command"), "{auto}");
}

/// A tmpfs mounted for one test, unmounted on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path, inodes: u64) -> Tmpfs {
        let out = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o"])
            .arg(format!("size=1g,nr_inodes={inodes},mode=0755"))
            .arg("tmpfs")
            .arg(at)
            .output()
            .unwrap();
        assert!(out.status.success(), "mount: {}", describe(&out));
        Tmpfs(at.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}
