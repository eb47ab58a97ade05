//! Encryption helpers for the binary's tests: a key file made by `walship key init` that the
//! cluster's OS user can read, pointing a test repository's config at it, and looking for a
//! plaintext marker in stored bytes.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::{TestRepo, describe};

/// Creates a key file with `walship key init`, owned by the cluster's OS user (the test
/// directory's owner), so that archive_command and restore_command can read it.
pub fn key_file(repo: &TestRepo, name: &str) -> PathBuf {
    let path = repo.dir.path().join(name);
    let out = repo.walship(&["key", "init", "--key-file", path.to_str().unwrap()]);
    assert!(out.status.success(), "{}", describe(&out));
    let owner = std::fs::metadata(repo.dir.path()).unwrap();
    nix::unistd::chown(
        &path,
        Some(nix::unistd::Uid::from_raw(owner.uid())),
        Some(nix::unistd::Gid::from_raw(owner.gid())),
    )
    .unwrap();
    assert_eq!(
        std::fs::metadata(&path).unwrap().mode() & 0o777,
        0o600,
        "key file mode"
    );
    path
}

/// Points the repository's config file at `key_file` (or at no key file).
pub fn configure_key(repo: &TestRepo, key_file: Option<&Path>) {
    let text = std::fs::read_to_string(&repo.config).unwrap();
    let base = text.split("[encryption]").next().unwrap().to_string();
    let text = match key_file {
        Some(path) => format!("{base}[encryption]\nkey_file = \"{}\"\n", path.display()),
        None => base,
    };
    std::fs::write(&repo.config, text).unwrap();
}

/// True when `needle` occurs in `haystack`.
pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// The key material of a key file made by `walship key init` (its first key), to look for.
pub fn secret_of(key_file: &Path) -> String {
    let text = std::fs::read_to_string(key_file).unwrap();
    text.split("\"key\": \"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_string()
}
