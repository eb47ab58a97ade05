//! `walship stream` against an idle server: the receiver's regular status replies keep the
//! walsender from sending keepalives of its own, so an idle server says nothing. The
//! receiver must ask for a keepalive before its silence timeout, not reconnect every minute.

// The stream future's type is deep (every storage call's future holds the S3 backend's):
// rustc's default query depth of 128 is not enough to lay it out.
#![recursion_limit = "256"]

mod pgconn_support;

use std::sync::Arc;
use std::time::Duration;

use pg_test_harness::{Cluster, installs_under_test};
use pgconn_support::{params, runtime};
use tokio_util::sync::CancellationToken;
use walship_common::codec::Codec;
use walship_common::repo::Repository;
use walship_common::storage::{AnyStorage, S3Options};
use walship_common::stream::{self, StreamMetrics, StreamOptions};

#[test]
fn an_idle_server_is_asked_for_keepalives_instead_of_being_reconnected() {
    let installs = installs_under_test();
    let Some(install) = installs.iter().find(|i| i.major == 15).or(installs.first()) else {
        return;
    };
    let _ = tracing_subscriber::fmt()
        .with_test_writer()
        .with_env_filter("walship_common=debug")
        .try_init();
    let pg = Cluster::builder(install).start();
    let dir = tempfile::tempdir().expect("tempdir");
    let rt = runtime();
    let metrics = Arc::new(StreamMetrics::default());
    let outcome = rt.block_on(async {
        let url = format!("file://{}", dir.path().display());
        let storage = AnyStorage::open(&url, &S3Options::default())
            .await
            .expect("local repository");
        let repo = Repository::new(storage, Codec::Lz4);
        let mut opts = StreamOptions::new(params(&pg, "application_name=idle_test"), "idle_test");
        // Replies every second (so the walsender never sends a keepalive by itself) and a
        // silence timeout far below the run's length: without asking, this reconnects.
        opts.status_interval = Duration::from_secs(1);
        opts.silence_timeout = Duration::from_secs(4);
        let cancel = CancellationToken::new();
        let stopper = cancel.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(14)).await;
            stopper.cancel();
        });
        stream::run(&repo, &opts, &metrics, &cancel).await
    });
    outcome.expect("stream ends cleanly when cancelled");
    let text = metrics.render();
    assert!(
        text.lines()
            .any(|l| l.trim() == "walship_stream_reconnects_total 0"),
        "an idle server must not cause reconnects:\n{text}"
    );
}
