//! `--as-of TIME`, the flag of the reading commands (`list`, `info`, `verify`, `restore`,
//! `fetch`): read a versioned S3 repository as it was at TIME, through the read-only view
//! of `walship_common::storage::s3::versions`.

use chrono::{DateTime, SecondsFormat, Utc};
use clap::Args;
use walship_common::repo::Repository;

use crate::context::Context;

/// The `--as-of` flag, flattened into each reading command's arguments.
#[derive(Debug, Clone, Args)]
pub struct AsOfArg {
    /// Read the repository as it was at TIME (RFC 3339, `2026-12-01 00:00:00+00`, no zone:
    /// UTC): each object's newest version stored at or before TIME (to the second, by the
    /// storage's clock); later versions and every deletion are ignored. Needs an S3 bucket
    /// with versioning (Object Lock turns it on); nothing is written through this view.
    #[arg(long, value_name = "TIME", value_parser = super::expire::parse_time)]
    pub as_of: Option<DateTime<Utc>>,
}

impl AsOfArg {
    /// The flag as a child `walship fetch` takes it (the prefetch worker, the
    /// `restore_command` a restore writes): nothing, or `--as-of <RFC 3339>`.
    pub fn words(&self) -> Vec<String> {
        self.as_of
            .map(|t| {
                vec![
                    "--as-of".to_string(),
                    t.to_rfc3339_opts(SecondsFormat::AutoSi, true),
                ]
            })
            .into_iter()
            .flatten()
            .collect()
    }

    /// Records `operation` in the audit trail ([`super::audit::record`]). Read as of a
    /// time, `repo` is a read-only view: the record goes to the repository as it is now,
    /// as `<operation>-as-of` with the time among its figures, so that a sound past is never
    /// taken for the last sound `verify` of the repository as it is.
    pub async fn record_audit(
        &self,
        ctx: &Context,
        repo: &Repository,
        operation: &str,
        code: u8,
        mut figures: serde_json::Map<String, serde_json::Value>,
    ) -> bool {
        let Some(time) = self.as_of else {
            return super::audit::record(ctx, repo, operation, code, figures).await;
        };
        let operation = format!("{operation}-as-of");
        figures.insert("as_of".into(), time.to_rfc3339().into());
        match ctx.open_repository().await {
            Ok(live) => super::audit::record(ctx, &live, &operation, code, figures).await,
            Err(e) => {
                ctx.fail(code, &e);
                eprintln!("walship {operation}: warning: the audit record above was not written");
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::AsOfArg;

    #[test]
    fn passed_on_words_parse_back_to_the_same_time() {
        let time = super::super::expire::parse_time("2026-12-05T14:48:09.5+02:00").unwrap();
        let arg = AsOfArg { as_of: Some(time) };
        let words = arg.words();
        assert_eq!(words, ["--as-of", "2026-12-05T12:48:09.500Z"]);
        assert_eq!(super::super::expire::parse_time(&words[1]), Ok(time));
        assert!(AsOfArg { as_of: None }.words().is_empty());
    }
}
