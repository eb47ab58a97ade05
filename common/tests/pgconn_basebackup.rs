//! BASE_BACKUP over the replication client on every major under test, with a tablespace so
//! that PG13-14 send several CopyOutResponses in a row: the events come in order, each
//! archive is a tar stream starting with a valid ustar header, `base.tar` holds the right
//! PG_VERSION, and the manifest parses as JSON listing it.

mod pgconn_support;

use std::collections::BTreeMap;

use pg_test_harness::{Cluster, PgInstall, installs_under_test, test_dir};
use pgconn_support::{connect, params, runtime};
use walship_common::pg::TimelineId;
use walship_common::pgconn::{BackupEvent, BaseBackupOptions};

#[test]
fn base_backup_on_every_major() {
    for install in installs_under_test() {
        eprintln!("PG{}: BASE_BACKUP", install.major);
        base_backup(&install);
    }
}

/// Checks a 512-byte ustar header: magic and checksum.
fn assert_ustar_header(header: &[u8], archive: &str) {
    assert!(
        header.len() >= 512,
        "{archive}: shorter than one tar header"
    );
    assert_eq!(&header[257..262], b"ustar", "{archive}: no ustar magic");
    let stored = octal(&header[148..156]);
    let sum: u64 = header[..512]
        .iter()
        .enumerate()
        .map(|(i, b)| {
            if (148..156).contains(&i) {
                32
            } else {
                u64::from(*b)
            }
        })
        .sum();
    assert_eq!(stored, sum, "{archive}: tar header checksum");
}

fn octal(field: &[u8]) -> u64 {
    let text: String = field
        .iter()
        .take_while(|b| **b != 0)
        .map(|b| *b as char)
        .collect();
    u64::from_str_radix(text.trim(), 8).unwrap_or_else(|e| panic!("octal field {text:?}: {e}"))
}

/// The regular files of a tar archive: name -> contents.
fn tar_files(tar: &[u8]) -> BTreeMap<String, Vec<u8>> {
    let mut files = BTreeMap::new();
    let mut at = 0;
    while at + 512 <= tar.len() && tar[at] != 0 {
        let header = &tar[at..at + 512];
        let name_len = header[..100].iter().position(|b| *b == 0).unwrap_or(100);
        let name = String::from_utf8_lossy(&header[..name_len]).into_owned();
        let size = octal(&header[124..136]) as usize;
        let body = at + 512;
        if header[156] == b'0' || header[156] == 0 {
            files.insert(name, tar[body..body + size].to_vec());
        }
        at = body + size.div_ceil(512) * 512;
    }
    files
}

fn base_backup(install: &PgInstall) {
    let ts_dir = test_dir("pgconn-tablespace");
    let pg = Cluster::builder(install).start();
    pg.execute(&format!(
        "create tablespace ts location '{}'",
        ts_dir.path().display()
    ));
    pg.execute(
        "create table t(x int) tablespace ts; insert into t select generate_series(1, 1000)",
    );
    let ts_oid: u32 = pg
        .query_string("select oid from pg_tablespace where spcname = 'ts'")
        .parse()
        .unwrap();

    let rt = runtime();
    let mut client = rt.block_on(connect(&params(&pg, "")));
    let options = BaseBackupOptions {
        label: "walship's test".into(),
        progress: true,
        fast_checkpoint: true,
        manifest: true,
        manifest_checksums: Some("CRC32C".into()),
        ..BaseBackupOptions::default()
    };
    let events = rt.block_on(async {
        let mut stream = client.base_backup(&options).await.expect("BASE_BACKUP");
        let mut events = Vec::new();
        while let Some(event) = stream.next_event().await.expect("BASE_BACKUP event") {
            events.push(event);
        }
        events
    });

    // Order: Started, Tablespaces, then archives, manifest, End.
    let BackupEvent::Started {
        lsn: start,
        timeline,
    } = &events[0]
    else {
        panic!("first event {:?}", events[0]);
    };
    assert_eq!(*timeline, TimelineId(1));
    let BackupEvent::Tablespaces(spaces) = &events[1] else {
        panic!("second event {:?}", events[1]);
    };
    assert_eq!(spaces.len(), 2, "{spaces:?}");
    assert_eq!(spaces[0].oid, Some(ts_oid));
    assert_eq!(
        spaces[0].location.as_deref(),
        Some(ts_dir.path().to_str().unwrap())
    );
    assert_eq!(
        (spaces[1].oid, spaces[1].location.as_deref()),
        (None, None),
        "main directory last"
    );
    let Some(BackupEvent::End { lsn: end, timeline }) = events.last() else {
        panic!("last event {:?}", events.last());
    };
    assert!(end >= start);
    assert_eq!(*timeline, TimelineId(1));

    let mut archives: Vec<(String, String, Vec<u8>)> = Vec::new();
    let mut manifest = Vec::new();
    let mut progress = Vec::new();
    for event in &events[2..events.len() - 1] {
        match event {
            BackupEvent::ArchiveStart {
                name,
                tablespace_path,
            } => {
                assert!(manifest.is_empty(), "archives come before the manifest");
                archives.push((name.clone(), tablespace_path.clone(), Vec::new()));
            }
            BackupEvent::Data(chunk) => archives
                .last_mut()
                .expect("data before any archive")
                .2
                .extend_from_slice(chunk),
            BackupEvent::Manifest(chunk) => manifest.extend_from_slice(chunk),
            BackupEvent::Progress(done) => progress.push(*done),
            other => panic!("unexpected {other:?} mid-backup"),
        }
    }
    let names: Vec<(&str, &str)> = archives
        .iter()
        .map(|(n, p, _)| (n.as_str(), p.as_str()))
        .collect();
    let ts_name = format!("{ts_oid}.tar");
    assert_eq!(
        names,
        vec![
            (ts_name.as_str(), ts_dir.path().to_str().unwrap()),
            ("base.tar", "")
        ]
    );
    assert!(
        !progress.is_empty(),
        "PROGRESS yields progress events on every major"
    );
    assert!(progress.windows(2).all(|w| w[0] <= w[1]), "{progress:?}");
    let archive_bytes: usize = archives.iter().map(|(_, _, tar)| tar.len()).sum();
    assert!(*progress.last().unwrap() <= archive_bytes as u64);
    for (name, _, tar) in &archives {
        assert_ustar_header(tar, name);
    }
    let base = tar_files(&archives[1].2);
    let pg_version = String::from_utf8(base["PG_VERSION"].clone()).unwrap();
    assert_eq!(pg_version.trim(), install.major.to_string());
    assert!(base.contains_key("backup_label"));
    assert!(String::from_utf8_lossy(&base["backup_label"]).contains("LABEL: walship's test"));
    let ts_files = tar_files(&archives[0].2);
    assert!(
        !ts_files.is_empty(),
        "the tablespace archive holds the table"
    );

    let json: serde_json::Value = serde_json::from_slice(&manifest).expect("manifest is JSON");
    assert!(
        json["PostgreSQL-Backup-Manifest-Version"]
            .as_u64()
            .is_some()
    );
    let files = json["Files"].as_array().expect("Files");
    let entry = files
        .iter()
        .find(|f| f["Path"] == "PG_VERSION")
        .expect("PG_VERSION in manifest");
    assert_eq!(entry["Checksum-Algorithm"], "CRC32C");
    assert_eq!(
        entry["Size"].as_u64(),
        Some(base["PG_VERSION"].len() as u64)
    );

    // The connection is ready for more.
    assert!(rt.block_on(client.identify_system()).is_ok());
}
