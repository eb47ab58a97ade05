//! What only the local backend promises: permission bits for sharing through a group,
//! invisibility of temporary files a crash leaves behind, and refusal of reserved names.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use bytes::Bytes;
use walship_common::storage::{
    AnyStorage, LocalStorage, ObjectKey, PutOptions, Storage, StorageError,
};

fn key(s: &str) -> ObjectKey {
    ObjectKey::new(s).unwrap()
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

fn repo() -> (tempfile::TempDir, AnyStorage) {
    let dir = tempfile::tempdir().unwrap();
    let storage = AnyStorage::from(LocalStorage::new(dir.path().join("repo")).unwrap());
    (dir, storage)
}

#[tokio::test]
async fn files_are_0640_and_directories_0750() {
    let (dir, s) = repo();
    s.put(
        &key("wal/0000000100000000/000000010000000000000001"),
        Bytes::from_static(b"x"),
        PutOptions::default(),
    )
    .await
    .unwrap();
    s.put_stream(
        &key("backups/b1/manifest.json"),
        &b"{}"[..],
        PutOptions::if_absent(),
    )
    .await
    .unwrap();
    let root = dir.path().join("repo");
    for d in ["", "wal", "wal/0000000100000000", "backups", "backups/b1"] {
        assert_eq!(mode(&root.join(d)), 0o750, "{d}");
    }
    assert_eq!(
        mode(&root.join("wal/0000000100000000/000000010000000000000001")),
        0o640
    );
    assert_eq!(mode(&root.join("backups/b1/manifest.json")), 0o640);
}

#[tokio::test]
async fn leftover_temporary_files_are_invisible() {
    let (dir, s) = repo();
    s.put(
        &key("wal/a"),
        Bytes::from_static(b"real"),
        PutOptions::default(),
    )
    .await
    .unwrap();
    // What a crash in the middle of a put leaves behind.
    let leftover = dir.path().join("repo/wal/.walship-tmp.b.1234.0");
    std::fs::write(&leftover, b"half").unwrap();
    let names: Vec<String> = s
        .list("")
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.key.to_string())
        .collect();
    assert_eq!(names, ["wal/a"]);
    for k in ["wal/.walship-tmp.b.1234.0"] {
        let err = s.get(&key(k)).await.unwrap_err();
        assert!(err.is_not_found(), "{err}");
        assert!(s.head(&key(k)).await.unwrap_err().is_not_found());
        let err = s
            .put(&key(k), Bytes::new(), PutOptions::default())
            .await
            .unwrap_err();
        assert!(matches!(err, StorageError::Permanent { .. }), "{err}");
    }
    // The real object next to it is unaffected, and a put of its name works.
    s.put(
        &key("wal/b"),
        Bytes::from_static(b"b"),
        PutOptions::if_absent(),
    )
    .await
    .unwrap();
    assert_eq!(s.list("wal/").await.unwrap().len(), 2);
}

#[tokio::test]
async fn directories_and_symlinks_are_not_objects() {
    let (dir, s) = repo();
    s.put(&key("a/b"), Bytes::from_static(b"x"), PutOptions::default())
        .await
        .unwrap();
    // A directory where an object belongs is damage, not absence (issue 18, item 9).
    for err in [
        s.head(&key("a")).await.unwrap_err(),
        s.get(&key("a")).await.unwrap_err(),
    ] {
        assert!(!err.is_not_found() && err.is_permanent(), "{err}");
        assert!(err.to_string().contains("a directory"), "{err}");
    }
    s.delete(&key("a")).await.unwrap();
    assert!(dir.path().join("repo/a/b").exists());
    std::os::unix::fs::symlink("/etc/passwd", dir.path().join("repo/link")).unwrap();
    let names: Vec<String> = s
        .list("")
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.key.to_string())
        .collect();
    assert_eq!(names, ["a/b"]);
}

/// Only "no entry at all" is `NotFound`: a FIFO, a dangling link, or a dangling link on the
/// way (a `wal` directory on storage that is not mounted) is an error (issue 18, item 9).
#[tokio::test]
async fn only_a_missing_entry_is_not_found() {
    let (dir, s) = repo();
    let root = dir.path().join("repo");
    std::fs::create_dir_all(root.join("wal/0000000100000000")).unwrap();
    assert!(
        s.get(&key("wal/0000000100000000/x"))
            .await
            .unwrap_err()
            .is_not_found()
    );
    assert!(
        s.get(&key("nothing/at/all"))
            .await
            .unwrap_err()
            .is_not_found()
    );
    nix::unistd::mkfifo(&root.join("wal/fifo"), nix::sys::stat::Mode::S_IRWXU).unwrap();
    std::os::unix::fs::symlink(root.join("gone"), root.join("wal/dangling")).unwrap();
    std::fs::write(root.join("file"), b"x").unwrap();
    for (k, says) in [
        ("wal/fifo", "a FIFO"),
        ("wal/dangling", "does not exist"),
        ("file/below", "not a directory"),
    ] {
        for err in [
            s.get(&key(k)).await.unwrap_err(),
            s.head(&key(k)).await.unwrap_err(),
        ] {
            assert!(!err.is_not_found(), "{k}: {err}");
            assert!(err.to_string().contains(says), "{k}: {err}");
        }
    }
    std::fs::remove_dir_all(root.join("wal")).unwrap();
    std::os::unix::fs::symlink("/nonexistent/mount", root.join("wal")).unwrap();
    let err = s.get(&key("wal/0000000100000000/x")).await.unwrap_err();
    assert!(!err.is_not_found(), "{err}");
    assert!(
        err.to_string().contains("\"wal\" is a symbolic link"),
        "{err}"
    );
}

#[tokio::test]
async fn errors_name_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("not-a-dir");
    std::fs::write(&file, b"").unwrap();
    let s = AnyStorage::from(LocalStorage::new(&file).unwrap());
    let err = s
        .put(&key("x/y"), Bytes::new(), PutOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(err, StorageError::Io { .. }), "{err}");
    assert!(err.to_string().contains("not-a-dir"), "{err}");
    assert!(LocalStorage::new("relative/path").is_err());
}

#[tokio::test]
async fn open_accepts_file_urls() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("file://{}/repo", dir.path().display());
    let s = AnyStorage::open(&url, &Default::default()).await.unwrap();
    s.put(
        &key("walship.json"),
        Bytes::from_static(b"{}"),
        PutOptions::if_absent(),
    )
    .await
    .unwrap();
    assert!(dir.path().join("repo/walship.json").is_file());
    assert!(s.capabilities().conditional_create && s.capabilities().local_files);
    assert!(s.location().contains(&*dir.path().to_string_lossy()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocking_reader_reads_the_object_or_its_range_and_nothing_more() {
    let (_dir, s) = repo();
    // Larger than the reader's drop-behind step, so that pages are dropped midway.
    let content: Vec<u8> = (0..9u32 << 20).map(|i| (i % 253) as u8).collect();
    let k = key("backups/b1/bundle-0001");
    s.put(&k, Bytes::from(content.clone()), PutOptions::default())
        .await
        .unwrap();
    let runtime = tokio::runtime::Handle::current();
    let whole = s.get(&k).await.unwrap();
    let range = s.get_range(&k, 1_000_003..5_000_011).await.unwrap();
    let past_end = s.get_range(&k, 9_000_000..u64::MAX).await.unwrap();
    let read = |reader: walship_common::storage::ObjectReader| {
        let mut blocking = reader.into_blocking(&runtime);
        tokio::task::spawn_blocking(move || {
            let mut out = Vec::new();
            std::io::Read::read_to_end(&mut blocking, &mut out).map(|_| out)
        })
    };
    assert!(read(whole).await.unwrap().unwrap() == content);
    assert!(read(range).await.unwrap().unwrap() == content[1_000_003..5_000_011]);
    assert!(read(past_end).await.unwrap().unwrap() == content[9_000_000..]);
    // The async reading of a local object is unchanged.
    let again = s.get_range(&k, 10..20).await.unwrap().read_all(100).await;
    assert_eq!(&again.unwrap()[..], &content[10..20]);
}
