//! Compile-time guarantees: the client, its streams and the futures of their methods are
//! `Send`, so `walship stream` and `walship backup` can run them in spawned tasks.

use std::time::Duration;

use walship_common::Lsn;
use walship_common::pgconn::{
    BaseBackupOptions, BaseBackupStream, ConnParams, CopyOutStream, ReplicationClient,
    StandbyStatusUpdate, WalStream,
};

fn assert_send<T: Send>(_: &T) {}

#[allow(dead_code)]
async fn futures_are_send(
    params: &ConnParams,
    client: &mut ReplicationClient,
    wal: &mut WalStream<'_>,
    copy: &mut CopyOutStream<'_>,
    backup: &mut BaseBackupStream<'_>,
) {
    assert_send(&ReplicationClient::connect(params));
    assert_send(&client.identify_system());
    assert_send(&client.simple_query("IDENTIFY_SYSTEM"));
    assert_send(&client.start_replication(None, Lsn(0), None));
    assert_send(&client.copy_out("BASE_BACKUP"));
    assert_send(&client.base_backup(&BaseBackupOptions::default()));
    assert_send(&wal.next_event(Duration::from_secs(1)));
    let status = StandbyStatusUpdate {
        write: Lsn(0),
        flush: Lsn(0),
        apply: Lsn(0),
        reply_requested: false,
    };
    assert_send(&wal.send_status(&status));
    assert_send(&copy.next_event());
    assert_send(&backup.next_event());
}

#[test]
fn client_and_streams_are_send() {
    fn is_send<T: Send>() {}
    is_send::<ReplicationClient>();
    is_send::<WalStream<'static>>();
    is_send::<CopyOutStream<'static>>();
    is_send::<BaseBackupStream<'static>>();
}
