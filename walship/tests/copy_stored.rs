//! `walship copy` copies objects as stored, without Postgres (crafted segments, local
//! repositories): an encrypted repository is copied by a walship that has no key, and the
//! target delivers the segments with the key; an object the target holds with other bytes
//! stops the copy naming the key, overwriting nothing; a target of another cluster is refused.

mod support;

use support::crafted::{segment, segment_name};
use support::{TestRepo, describe};

fn archive(repo: &TestRepo, segno: u64) {
    let path = repo.dir.path().join(segment_name(segno));
    std::fs::write(&path, segment(segno)).unwrap();
    let out = repo.walship(&["archive", path.to_str().unwrap()]);
    assert!(out.status.success(), "archive: {}", describe(&out));
}

fn wal_path(repo: &TestRepo, segno: u64) -> std::path::PathBuf {
    let name = segment_name(segno);
    repo.local_root().join("wal").join(&name[..16]).join(name)
}

#[test]
fn copies_an_encrypted_repository_without_its_key_and_refuses_conflicts() {
    let source = TestRepo::local();
    let key = source.dir.path().join("walship.keys");
    let out = source.walship(&["key", "init", "--key-file", key.to_str().unwrap()]);
    assert!(out.status.success(), "key init: {}", describe(&out));
    let plain_config = std::fs::read_to_string(&source.config).unwrap();
    std::fs::write(
        &source.config,
        format!(
            "{plain_config}[encryption]\nkey_file = \"{}\"\n",
            key.display()
        ),
    )
    .unwrap();
    for segno in 1..=3 {
        archive(&source, segno);
    }
    assert!(source.local_root().join("keys").exists());

    // The copy runs without the key: objects are never opened.
    let copier = source.dir.path().join("copier.toml");
    std::fs::write(&copier, &plain_config).unwrap();
    let target = TestRepo::local();
    let run_copy = || {
        let mut cmd = std::process::Command::new(support::walship_bin());
        cmd.arg("--config")
            .arg(&copier)
            .args(["copy", "--to", &target.url, "--json"])
            .envs(source.env());
        cmd.output().unwrap()
    };
    let out = run_copy();
    assert!(out.status.success(), "copy: {}", describe(&out));
    for segno in 1..=3 {
        assert_eq!(
            std::fs::read(wal_path(&target, segno)).unwrap(),
            std::fs::read(wal_path(&source, segno)).unwrap(),
            "segment {segno} copied as stored"
        );
    }

    // The target, with the key, delivers the original bytes.
    let with_key = std::fs::read_to_string(&target.config).unwrap();
    std::fs::write(
        &target.config,
        format!("{with_key}[encryption]\nkey_file = \"{}\"\n", key.display()),
    )
    .unwrap();
    let dest = target.dir.path().join("fetched");
    let out = target.walship(&["fetch", &segment_name(2), dest.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "fetch from the copy: {}",
        describe(&out)
    );
    assert_eq!(std::fs::read(&dest).unwrap(), segment(2));

    // An object the target holds with other bytes: refused by key, not overwritten.
    archive(&source, 4);
    let taken = wal_path(&target, 4);
    std::fs::create_dir_all(taken.parent().unwrap()).unwrap();
    let foreign = b"another repository's object".to_vec();
    std::fs::write(&taken, &foreign).unwrap();
    let out = run_copy();
    assert_eq!(out.status.code(), Some(3), "{}", describe(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(&segment_name(4)), "{stderr}");
    assert_eq!(
        std::fs::read(&taken).unwrap(),
        foreign,
        "nothing overwritten"
    );

    // A target of another cluster is refused before anything is copied.
    let other = TestRepo::local();
    std::fs::write(
        other.local_root().join("walship.json"),
        r#"{"format_version":1,"system_identifier":"1","pg_major":15,"wal_segment_size":16777216}"#,
    )
    .unwrap();
    let out = std::process::Command::new(support::walship_bin())
        .arg("--config")
        .arg(&copier)
        .args(["copy", "--to", &other.url])
        .envs(source.env())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", describe(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("another cluster"),
        "{}",
        describe(&out)
    );
    assert!(!other.local_root().join("wal").exists());
}
