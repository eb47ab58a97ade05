//! `walship pin ID [--reason TEXT]` and `walship unpin ID`: keep a backup whatever the
//! retention policy says, or stop doing so. Each writes a new create-only record.

use clap::Args;
use walship_common::backup::BackupError;
use walship_common::retention::lock::set_backup_legal_hold;
use walship_common::retention::{PinAction, PinError, set_pin};

use super::list::open_catalog;
use crate::context::Context;
use crate::exit;

/// Pin a backup: `expire` never removes it nor the WAL it needs (start to stop LSN).
///
/// Exits 1 when there is no such backup.
#[derive(Debug, Args)]
pub struct PinArgs {
    /// The backup id (YYYYMMDDTHHMMSSZ).
    pub backup: String,
    /// Why it is kept (shown by `list` and `info`).
    #[arg(long, value_name = "TEXT")]
    pub reason: Option<String>,
}

/// Unpin a backup: the retention policy decides again.
///
/// Exits 1 when there is no such backup.
#[derive(Debug, Args)]
pub struct UnpinArgs {
    /// The backup id (YYYYMMDDTHHMMSSZ).
    pub backup: String,
}

/// Runs `walship pin` or `walship unpin`.
pub fn run(ctx: Context, backup: &str, action: PinAction, reason: Option<String>) -> u8 {
    ctx.block_on(async {
        let repo = match open_catalog(&ctx).await {
            Ok(repo) => repo,
            Err(code) => return code,
        };
        let id = match backup.parse() {
            Ok(id) => id,
            Err(e) => return ctx.fail(exit::NOT_FOUND, &e),
        };
        let operation = match action {
            PinAction::Pin => "pin",
            PinAction::Unpin => "unpin",
        };
        let mut figures = serde_json::Map::new();
        figures.insert("backup".into(), backup.into());
        let code = match set_pin(&repo, id, action, reason, chrono::Utc::now()).await {
            Ok((_, changed)) => {
                // Under Object Lock a pin is also a legal hold on the backup's objects (set
                // again when already pinned: it repairs an interrupted pin).
                if repo.object_lock().is_some() {
                    let on = action == PinAction::Pin;
                    match set_backup_legal_hold(&repo, id, on).await {
                        Ok(n) => println!(
                            "{id}: legal hold {} on {n} objects",
                            if on { "set" } else { "released" }
                        ),
                        Err(e) => {
                            let code = ctx.fail(exit::FAILED, &e);
                            super::audit::record(&ctx, &repo, operation, code, figures).await;
                            return code;
                        }
                    }
                }
                let what = match (action, changed) {
                    (PinAction::Pin, true) => "pinned",
                    (PinAction::Pin, false) => "already pinned",
                    (PinAction::Unpin, true) => "unpinned",
                    (PinAction::Unpin, false) => "not pinned",
                };
                println!("{id}: {what}");
                exit::SUCCESS
            }
            Err(e @ PinError::Backup(BackupError::NotFound(_))) => ctx.fail(exit::NOT_FOUND, &e),
            Err(e) => ctx.fail(exit::FAILED, &e),
        };
        super::audit::record(&ctx, &repo, operation, code, figures).await;
        code
    })
}
