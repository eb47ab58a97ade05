//! Issue 18, item 12, `restore`: a bundle is read to its end (its trailer is the check that it
//! is whole), so a tampered bundle whose honest files are followed by gigabytes of zeros, with
//! a trailer that matches, used to be decoded to the end and the restore reported success.
//! The manifest says how long each bundle is: past that the bundle is refused, naming it.
//! Real Postgres 15, a `file://` repository, the bomb built from the backup's own bundle.

mod restore_support;
mod support;

use restore_support::{archiving_cluster, walship_backup};
use support::TestRepo;
use support::bounded::{measured, zstd_bomb_after};
use walship_common::catalog::BackupManifest;
use walship_common::codec::decode_to_vec;
use walship_common::repo::limits::MANIFEST_MAX;

#[test]
fn restore_refuses_a_bundle_longer_than_its_manifest_says() {
    let Some(install) = support::pg15_or_first() else {
        return;
    };
    let repo = TestRepo::local();
    let cluster = archiving_cluster(&install, &repo);
    cluster.execute("create table t (id int, v text)");
    cluster.execute("insert into t select g, md5(g::text) from generate_series(1, 2000) g");
    walship_backup(&cluster, &repo);

    let backups = repo.local_root().join("backups");
    let id = std::fs::read_dir(&backups)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .next()
        .expect("one backup");
    let stored = std::fs::read(backups.join(&id).join("manifest.json")).unwrap();
    let manifest: BackupManifest =
        serde_json::from_slice(&decode_to_vec(&stored, MANIFEST_MAX).unwrap()).unwrap();
    let bundle = manifest
        .bundles
        .iter()
        .max_by_key(|b| b.raw_len)
        .expect("bundles")
        .clone();
    let path = backups.join(&id).join("bundles").join(&bundle.name);
    let honest = decode_to_vec(&std::fs::read(&path).unwrap(), bundle.raw_len).unwrap();
    assert_eq!(honest.len() as u64, bundle.raw_len);
    std::fs::write(&path, zstd_bomb_after(&honest, 2)).unwrap();

    let dir = pg_test_harness::test_dir("bomb-bundle");
    let to = dir.path().join("data");
    let args = [
        "restore",
        "--to",
        to.to_str().unwrap(),
        "--target",
        "immediate",
    ];
    let (run, err) = measured(&repo, 1024, &args);
    eprintln!(
        "restore over the bundle bomb {}: {:?}, peak RSS {:.0} MiB: {err}",
        bundle.name,
        run.status,
        run.peak_rss_mib()
    );
    assert!(
        matches!(run.status.code(), Some(3 | 4)),
        "a bundle longer than its manifest says must be refused: {:?}: {err}",
        run.status
    );
    assert!(
        err.contains(&bundle.name) && err.contains("larger than"),
        "{err}"
    );
    assert!(
        !to.join("global/pg_control").exists(),
        "a refused restore never writes pg_control"
    );
}
