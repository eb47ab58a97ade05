//! Issue 18, item 12, `restore --dry-run`: its WAL scan reads every segment up to the target;
//! a segment object that is a decompression bomb (it took the scan to 6.3 GB) is refused at
//! the segment size, naming its key, in bounded memory. Real Postgres 15, a `file://`
//! repository; the bomb replaces a segment the cluster archived after the backup.

mod restore_support;
mod support;

use std::time::Duration;

use restore_support::{archiving_cluster, walship_backup};
use support::bounded::{measured, zstd_bomb};
use support::{TestRepo, archive_everything};

#[test]
fn restore_dry_run_refuses_a_wal_bomb_in_bounded_memory() {
    let Some(install) = support::pg15_or_first() else {
        return;
    };
    let repo = TestRepo::local();
    let cluster = archiving_cluster(&install, &repo);
    cluster.execute("create table t (id int, v text)");
    walship_backup(&cluster, &repo);
    cluster.execute("insert into t select g, md5(g::text) from generate_series(1, 20000) g");
    archive_everything(&cluster, Duration::from_secs(120));

    // The newest archived segment: the scan to `latest` must read it.
    let mut segments: Vec<_> = walkdir(&repo.local_root().join("wal"))
        .into_iter()
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy();
            support::is_segment_name(&name)
        })
        .collect();
    segments.sort_by_key(|p| p.file_name().unwrap().to_owned());
    let newest = segments.last().expect("archived segments").clone();
    let name = newest.file_name().unwrap().to_string_lossy().into_owned();
    std::fs::write(&newest, zstd_bomb(4)).unwrap();

    let dir = pg_test_harness::test_dir("bomb-restore");
    let to = dir.path().join("data");
    let args = [
        "restore",
        "--to",
        to.to_str().unwrap(),
        "--target",
        "latest",
        "--dry-run",
    ];
    let (run, err) = measured(&repo, 1024, &args);
    eprintln!(
        "restore --dry-run over the bomb in {name}: {:?}, peak RSS {:.0} MiB: {err}",
        run.status,
        run.peak_rss_mib()
    );
    assert!(!run.status.success(), "{:?}: {err}", run.status);
    assert!(
        matches!(run.status.code(), Some(3 | 4)),
        "{:?}: {err}",
        run.status
    );
    assert!(err.contains(&name) && err.contains("larger than"), "{err}");
    assert!(
        run.peak_rss_mib() < 256.0,
        "peak RSS {} MiB",
        run.peak_rss_mib()
    );
    assert!(!to.exists(), "a dry run writes nothing");
}

/// Every file under `dir`.
fn walkdir(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(walkdir(&path));
        } else {
            out.push(path);
        }
    }
    out
}
