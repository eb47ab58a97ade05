//! `walship key init|list|rotate|rewrap`: the keys of client-side encryption
//! (`docs/FORMAT.md`, "Encrypted objects"). Prints key ids and files, never key material.

use std::collections::BTreeMap;
use std::path::PathBuf;

use bytes::Bytes;
use clap::{Args, Subcommand};
use walship_common::crypto::{DekId, KekId, Keyring, WrappedDek};
use walship_common::repo::Repository;
use walship_common::repo::encryption::{KEYS_PREFIX, parse_wrapped_key, wrapped_key};
use walship_common::storage::{ObjectKey, Storage};

use crate::context::Context;
use crate::exit;

/// Manage encryption keys: create a key file, list, rotate and rewrap data keys.
///
/// Objects are encrypted with data keys (DEKs, stored wrapped under `keys/` in the
/// repository); the key file's key-encryption keys (KEKs) wrap them and never leave this
/// host. `init` creates a key file; `rotate` adds a new active key (and data key) to it;
/// `rewrap` wraps every data key under a new key without rewriting any data, so that the old
/// key can be retired. Nothing here prints key material.
///
/// The key-encryption keys come from `[encryption] key_file` (WALSHIP_ENCRYPTION_KEY_FILE)
/// or `passphrase_command` (WALSHIP_ENCRYPTION_PASSPHRASE_COMMAND). AWS KMS is not
/// supported: `kms_key_id` (WALSHIP_ENCRYPTION_KMS_KEY_ID) is refused with an error.
#[derive(Debug, Args)]
pub struct KeyArgs {
    /// What to do.
    #[command(subcommand)]
    pub action: KeyAction,
}

/// The `key` subcommands.
#[derive(Debug, Subcommand)]
pub enum KeyAction {
    /// Create a key file (mode 0600) with one random 256-bit key; never overwrites a file.
    Init {
        /// Where to create it (then set [encryption] key_file to it).
        #[arg(long, value_name = "PATH")]
        key_file: PathBuf,
    },
    /// List the repository's data keys, the key-encryption keys that wrap them, and how many
    /// objects each protects (counted from every object's header: one small ranged read per
    /// object, no decryption).
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Add a new key to the key file and make it active; new objects use a new data key
    /// wrapped by it. Old objects stay readable with the old key until `key rewrap`.
    Rotate,
    /// Wrap every data key under the active key of NEW (default: the configured key file's
    /// active key), as new create-only objects; no data object is rewritten. Afterwards the
    /// old keys are no longer needed.
    Rewrap {
        /// The key file whose active key wraps the data keys.
        #[arg(long, value_name = "PATH")]
        new_key_file: Option<PathBuf>,
    },
}

/// Runs `walship key init` (which needs no configuration).
pub fn init(key_file: &std::path::Path) -> u8 {
    match Keyring::init(key_file) {
        Ok(ring) => {
            println!(
                "created key file {} with key {} (active)",
                key_file.display(),
                ring.active().id
            );
            exit::SUCCESS
        }
        Err(e) => {
            eprintln!("walship key init: error: {e}");
            exit::FAILED
        }
    }
}

/// Runs the subcommands that need the repository.
pub fn run(ctx: Context, action: KeyAction) -> u8 {
    ctx.block_on(async {
        let repo = match ctx.open_repository().await {
            Ok(repo) => repo,
            Err(e) => return ctx.fail(exit::FAILED, &e),
        };
        let Some(keys) = repo.keys() else {
            eprintln!(
                "walship key: error: no key file configured: set [encryption] key_file (WALSHIP_ENCRYPTION_KEY_FILE)"
            );
            return exit::USAGE;
        };
        // Changes to the keys are audited; listing them is not.
        let operation = match &action {
            KeyAction::Rotate => Some("key_rotate"),
            KeyAction::Rewrap { .. } => Some("key_rewrap"),
            KeyAction::Init { .. } | KeyAction::List { .. } => None,
        };
        let result = match action {
            KeyAction::Init { .. } => unreachable!("key init runs without a context"),
            KeyAction::List { json } => list(&repo, json).await,
            KeyAction::Rotate if !keys.is_key_file() => Err(
                "key rotate adds a key to a key file; with passphrase_command, move to a key file with `walship key init` and `walship key rewrap --new-key-file`"
                    .into(),
            ),
            KeyAction::Rotate => match keys.keyring() {
                Ok(ring) => rotate(&repo, ring.clone()).await,
                Err(e) => Err(Box::new(e) as _),
            },
            KeyAction::Rewrap { new_key_file } => rewrap(&repo, new_key_file).await,
        };
        let code = match result {
            Ok(()) => exit::SUCCESS,
            Err(e) => ctx.fail(exit::FAILED, e.as_ref()),
        };
        if let Some(operation) = operation {
            // Key ids only (never key material) are in the command line and the figures.
            super::audit::record(&ctx, &repo, operation, code, serde_json::Map::new()).await;
        }
        code
    })
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Every `keys/<dek>/<kek>.json`, by data key.
async fn wrapped_keys(repo: &Repository) -> Result<BTreeMap<DekId, Vec<KekId>>, BoxError> {
    let mut by_dek: BTreeMap<DekId, Vec<KekId>> = BTreeMap::new();
    for meta in repo.storage().list(KEYS_PREFIX).await? {
        if let Some((dek, kek)) = parse_wrapped_key(meta.key.as_ref()) {
            by_dek.entry(dek).or_default().push(kek);
        }
    }
    Ok(by_dek)
}

async fn list(repo: &Repository, json: bool) -> Result<(), BoxError> {
    let identity = repo.require_identity().await?;
    let ring = repo.keyring(repo.keys().expect("checked")).await?;
    let mut by_dek = wrapped_keys(repo).await?;
    let usage = repo.dek_usage().await?;
    // A data key objects name but `keys/` lacks (its wrapped copies removed): listed with no
    // wrapping key, since those objects cannot be read by anyone.
    for dek in usage.by_dek.keys() {
        by_dek.entry(*dek).or_default();
    }
    let objects = |dek: &DekId| usage.by_dek.get(dek).copied().unwrap_or(0);
    if json {
        let rows: Vec<_> = by_dek
            .iter()
            .map(|(dek, keks)| {
                serde_json::json!({
                    "dek_id": dek.to_string(),
                    "objects": objects(dek),
                    "wrapped_by": keks.iter().map(|k| serde_json::json!({
                        "kek_id": k.to_string(),
                        "in_key_file": ring.get(k).is_some(),
                        "active": *k == ring.active().id,
                    })).collect::<Vec<_>>(),
                })
            })
            .collect();
        let doc = serde_json::json!({
            "scheme": identity.encryption.map(|e| e.scheme),
            "key_file": ring.path(),
            "active_kek": ring.active().id.to_string(),
            "deks": rows,
            "plain_objects": usage.plain,
            "damaged_objects": usage.damaged,
        });
        println!("{}", serde_json::to_string_pretty(&doc)?);
        return Ok(());
    }
    println!(
        "key file {} (active key {})",
        ring.path().display(),
        ring.active().id
    );
    for (dek, keks) in &by_dek {
        let shown: Vec<String> = keks
            .iter()
            .map(|k| {
                let mark = if *k == ring.active().id {
                    " (active)"
                } else if ring.get(k).is_some() {
                    ""
                } else {
                    " (not in key file)"
                };
                format!("{k}{mark}")
            })
            .collect();
        let wrapped = if shown.is_empty() {
            "NOT WRAPPED by any key (its objects cannot be read)".to_string()
        } else {
            format!("wrapped by {}", shown.join(", "))
        };
        println!("data key {dek}: {} object(s), {wrapped}", objects(dek));
    }
    if usage.plain > 0 {
        println!(
            "{} object(s) not encrypted: an encrypted repository refuses to read them (written by a walship before records were encrypted, or planted)",
            usage.plain
        );
    }
    if usage.damaged > 0 {
        println!(
            "{} object(s) with a damaged encryption header (run `walship verify`)",
            usage.damaged
        );
    }
    Ok(())
}

async fn rotate(repo: &Repository, mut ring: Keyring) -> Result<(), BoxError> {
    repo.require_identity().await?;
    let id = ring.rotate()?;
    let active = ring.active();
    let dek_id = DekId::generate();
    let dek = walship_common::crypto::SecretKey::generate();
    let wrapped = WrappedDek::wrap(&dek_id, &dek, &active.id, &active.key);
    repo.put_plain(
        &wrapped_key(&dek_id, &active.id),
        Bytes::from(wrapped.to_json()),
        true,
    )
    .await?;
    println!(
        "key {id} added to {} and active; new objects use data key {dek_id}",
        ring.path().display()
    );
    Ok(())
}

async fn rewrap(repo: &Repository, new_key_file: Option<PathBuf>) -> Result<(), BoxError> {
    repo.require_identity().await?;
    let keys = repo.keys().expect("checked");
    let target = match &new_key_file {
        Some(path) => Keyring::load(path)?,
        None => repo.keyring(keys).await?.clone(),
    };
    let target = target.active();
    let (mut added, mut kept) = (0, 0);
    for (dek, keks) in wrapped_keys(repo).await? {
        if keks.contains(&target.id) {
            kept += 1;
            continue;
        }
        let probe = ObjectKey::new(format!("{KEYS_PREFIX}{dek}"))?;
        let key = repo.reader_dek(keys, &dek, &probe).await?;
        let wrapped = WrappedDek::wrap(&dek, &key, &target.id, &target.key);
        match repo
            .put_plain(
                &wrapped_key(&dek, &target.id),
                Bytes::from(wrapped.to_json()),
                true,
            )
            .await
        {
            Ok(()) => added += 1,
            Err(walship_common::repo::RepoError::Storage(e)) if e.is_already_exists() => kept += 1,
            Err(e) => return Err(e.into()),
        }
    }
    println!(
        "rewrapped {added} data key(s) under key {} ({kept} already were); no data object was rewritten",
        target.id
    );
    Ok(())
}
