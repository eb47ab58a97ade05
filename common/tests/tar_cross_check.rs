//! Our tar parser (`backup/tar_stream.rs`) against the `tar` crate on a real
//! `pg_basebackup -Ft` archive (issue 19, item 6), so that the reader `walship backup` relies
//! on is checked by one that is not ours, on what Postgres really writes: every entry's name,
//! kind, mode, size, link target and bytes agree, in order.

use bytes::Bytes;
use pg_test_harness::{Cluster, installs_under_test, test_dir};
use std::io::Read;
use walship_common::backup::tar_stream::{EntryKind, TarItem, TarStream};

/// (name, kind, mode, size, link target, crc32c of the data) per entry.
type Listing = Vec<(String, String, u32, u64, String, u32)>;

fn ours(archive: &[u8]) -> Listing {
    let mut parser = TarStream::new();
    let mut out: Listing = Vec::new();
    let mut data = Vec::new();
    // Pieces of an odd size, so that headers and data straddle the input's boundaries.
    for piece in archive.chunks(64 * 1024 + 7) {
        let mut input = Bytes::copy_from_slice(piece);
        while let Some(item) = parser.next_item(&mut input).unwrap() {
            match item {
                TarItem::Entry(h) => {
                    let kind = match h.kind {
                        EntryKind::File => "file",
                        EntryKind::Dir => "dir",
                        EntryKind::Symlink => "symlink",
                        EntryKind::Other(_) => "other",
                    };
                    let name = String::from_utf8(h.name).unwrap();
                    let link = String::from_utf8(h.link_name).unwrap();
                    out.push((name, kind.into(), h.mode, h.size, link, 0));
                    data.clear();
                }
                TarItem::Data(d) => data.extend_from_slice(&d),
                TarItem::EntryEnd => out.last_mut().unwrap().5 = crc32c::crc32c(&data),
            }
        }
    }
    parser.finish().unwrap();
    out
}

fn theirs(archive: &[u8]) -> Listing {
    let mut reader = tar::Archive::new(archive);
    let mut out: Listing = Vec::new();
    for entry in reader.entries().unwrap() {
        let mut entry = entry.unwrap();
        let header = entry.header().clone();
        let kind = match header.entry_type() {
            tar::EntryType::Regular => "file",
            tar::EntryType::Directory => "dir",
            tar::EntryType::Symlink => "symlink",
            _ => "other",
        };
        let name = String::from_utf8(entry.path_bytes().into_owned()).unwrap();
        let link = entry
            .link_name_bytes()
            .map(|l| String::from_utf8(l.into_owned()).unwrap())
            .unwrap_or_default();
        let mut data = Vec::new();
        entry.read_to_end(&mut data).unwrap();
        out.push((
            name,
            kind.into(),
            header.mode().unwrap(),
            header.size().unwrap(),
            link,
            crc32c::crc32c(&data),
        ));
    }
    out
}

#[test]
fn our_tar_parser_reads_pg_basebackup_archives_as_the_tar_crate_does() {
    let installs = installs_under_test();
    let install = installs
        .iter()
        .find(|i| i.major == 15)
        .unwrap_or(&installs[0]);
    let pg = Cluster::builder(install).start();
    pg.execute(
        "create table t as select i, md5(i::text) from generate_series(1, 20000) i; \
         create index on t (md5)",
    );
    let out_dir = test_dir("tar-cross-check");
    let dest = out_dir.path().join("backup");
    let mut cmd = pg.pg_command("pg_basebackup");
    cmd.args(["-h", "127.0.0.1", "-p", &pg.port().to_string()])
        .args(["-U", "postgres", "-Ft", "--checkpoint=fast", "-D"])
        .arg(&dest);
    let status = cmd.status().unwrap();
    assert!(status.success(), "pg_basebackup failed:\n{}", pg.log());
    let archive = std::fs::read(dest.join("base.tar")).unwrap();
    let ours = ours(&archive);
    let theirs = theirs(&archive);
    assert!(ours.len() > 500, "only {} entries", ours.len());
    assert!(
        ours.iter()
            .any(|e| e.0 == "global/pg_control" && e.1 == "file")
    );
    assert!(ours.iter().any(|e| e.1 == "dir"));
    assert_eq!(ours.len(), theirs.len());
    for (a, b) in ours.iter().zip(&theirs) {
        assert_eq!(a, b);
    }
}
