//! The restore plan on crafted local repositories (issue 19, item 3): manifests, `.history`
//! files and WAL listings written by hand into a `file://` repository, no server. Covers every
//! refusal the plan makes before reading WAL, the choice of backup across timelines, the
//! segments it reports missing, and `.partial` segments (counted for `--target latest`
//! only). Runs in milliseconds; the WAL-reading half of the plan is covered on real servers by
//! `walship/tests/restore_*.rs`.

mod crafted_support;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use walship_common::Lsn;
use walship_common::catalog::{BackupId, BackupManifest};
use walship_common::pg::{ArchiveFileName, TimelineHistory, TimelineId, WalFileName, WalSegSize};
use walship_common::repo::{Repository, layout};
use walship_common::storage::Storage;
use walship_restore::plan::plan;
use walship_restore::target::parse_target_time;
use walship_restore::timeline::{ArchiveListing, backup_on_path};
use walship_restore::{PlanRequest, ProblemKind, RecoveryTarget, TargetSpec, TimelineChoice};

const SYSTEM_ID: u64 = 7_300_000_000_000_000_001;
/// 16 MiB segments: LSN 0/N000000 is segment N.
const SEG: u32 = 16 << 20;

fn seg_size() -> WalSegSize {
    WalSegSize::new(u64::from(SEG)).unwrap()
}

/// A local repository with `walship.json`, in a temporary directory.
struct Crafted {
    _dir: tempfile::TempDir,
    repo: Repository,
}

impl Crafted {
    async fn new() -> Crafted {
        let (dir, repo) = crafted_support::local_repo(SYSTEM_ID, SEG).await;
        Crafted { _dir: dir, repo }
    }

    /// Stores a manifest of a backup on `timeline` from `start` to `stop` (LSNs), stopped at
    /// `stop_time`.
    async fn backup(&self, id: &str, timeline: u32, start: u64, stop: u64, stop_time: &str) {
        let stop_time: DateTime<Utc> = stop_time.parse().unwrap();
        let json = serde_json::json!({
            "format_version": 1,
            "id": id,
            "label": "crafted",
            "system_identifier": SYSTEM_ID.to_string(),
            "pg_major": 15, "pg_version_num": 150010, "wal_segment_size": SEG,
            "start_timeline": timeline, "stop_timeline": timeline,
            "start_lsn": Lsn(start).to_string(), "stop_lsn": Lsn(stop).to_string(),
            "start_time": (stop_time - chrono::Duration::seconds(60)).to_rfc3339(),
            "stop_time": stop_time.to_rfc3339(),
            "duration_ms": 60000,
            "backup_label": "",
            "tablespace_map": null, "tablespaces": [], "pg_backup_manifest": null,
            "bytes_raw": 0, "bytes_stored": 0, "walship_version": "crafted",
            // Structurally whole (the plan checks it): one bundle holding global/pg_control.
            "bundles": [{"name": "00000000", "raw_len": 8192, "stored_len": 8300}],
            "files": [{
                "path": "global/pg_control", "kind": "file", "size": 8192, "mode": 384,
                "mtime": 0, "crc32c": 0, "bundle": 0, "offset": 0, "link_target": null,
            }],
        });
        let manifest: BackupManifest = serde_json::from_value(json).unwrap();
        let key = layout::manifest_key(manifest.id);
        let text = serde_json::to_vec(&manifest).unwrap();
        self.repo
            .put_content(&key, Bytes::from(text), false)
            .await
            .unwrap();
    }

    /// Stores a manifest like [`Crafted::backup`]'s but of another cluster.
    async fn foreign_backup(&self, id: &str) {
        self.backup(id, 1, 0x300_0028, 0x300_0100, "2026-11-22T10:00:00Z")
            .await;
        let key = layout::manifest_key(id.parse().unwrap());
        let mut manifest: BackupManifest = serde_json::from_slice(
            &self
                .repo
                .get_content(&key, walship_common::repo::limits::MANIFEST_MAX)
                .await
                .unwrap(),
        )
        .unwrap();
        manifest.system_identifier = SYSTEM_ID + 1;
        let text = serde_json::to_vec(&manifest).unwrap();
        self.repo.storage().delete(&key).await.unwrap();
        self.repo
            .put_content(&key, Bytes::from(text), false)
            .await
            .unwrap();
    }

    /// Stores `history` as its `.history` file.
    async fn history(&self, history: &TimelineHistory) {
        let key = layout::wal_key(&ArchiveFileName::History(history.timeline()));
        let bytes = Bytes::copy_from_slice(history.to_bytes());
        self.repo.put_content(&key, bytes, false).await.unwrap();
    }

    /// Stores a (content-free) object under the WAL name: enough for the listing.
    async fn wal(&self, name: &str) {
        let name = ArchiveFileName::parse(name, seg_size()).unwrap();
        let key = layout::wal_key(&name);
        self.repo
            .put_content(&key, Bytes::from_static(b"crafted"), false)
            .await
            .unwrap();
    }

    async fn plan(
        &self,
        target: RecoveryTarget,
        timeline: TimelineChoice,
        backup: Option<&str>,
    ) -> walship_restore::RestorePlan {
        let request = PlanRequest {
            spec: TargetSpec {
                target,
                timeline,
                exclusive: false,
                backup: backup.map(|b| b.parse::<BackupId>().unwrap()),
            },
            resolve_lsn: false,
            placement: None,
        };
        plan(&self.repo, &request).await.unwrap()
    }
}

fn kinds(plan: &walship_restore::RestorePlan) -> Vec<ProblemKind> {
    plan.problems.iter().map(|p| p.kind).collect()
}

fn time(text: &str) -> RecoveryTarget {
    RecoveryTarget::Time(parse_target_time(text).unwrap())
}

/// Timeline 2 branched off timeline 1 at 0/6000000; timeline 3 off 2 at 0/9000000.
fn histories() -> (TimelineHistory, TimelineHistory) {
    let tl2 = TimelineHistory::first()
        .child(
            TimelineId(2),
            Lsn(0x600_0000),
            "no recovery target specified\n",
        )
        .unwrap();
    let tl3 = tl2
        .child(
            TimelineId(3),
            Lsn(0x900_0000),
            "no recovery target specified\n",
        )
        .unwrap();
    (tl2, tl3)
}

#[tokio::test]
async fn a_timeline_without_history_is_refused_naming_it_and_the_newest() {
    let c = Crafted::new().await;
    let (tl2, _) = histories();
    c.history(&tl2).await;
    c.backup(
        "20261122T100000Z",
        1,
        0x200_0028,
        0x200_0100,
        "2026-11-22T10:00:00Z",
    )
    .await;
    let plan = c
        .plan(
            RecoveryTarget::Latest,
            TimelineChoice::Id(TimelineId(5)),
            None,
        )
        .await;
    assert_eq!(kinds(&plan), [ProblemKind::UnknownTimeline]);
    let message = &plan.problems[0].message;
    assert!(message.contains("00000005.history"), "{message}");
    assert!(
        message.contains("newest timeline archived is 2"),
        "{message}"
    );
    assert!(!plan.is_ok());
    assert!(plan.backup.is_none());
}

#[tokio::test]
async fn no_backup_at_all_is_refused() {
    let c = Crafted::new().await;
    let plan = c
        .plan(RecoveryTarget::Latest, TimelineChoice::Latest, None)
        .await;
    assert_eq!(kinds(&plan), [ProblemKind::NoBackup]);
    assert!(
        plan.problems[0].message.contains("0 backups in all"),
        "{:?}",
        plan.problems
    );
}

#[tokio::test]
async fn a_backup_asked_for_that_does_not_exist_is_refused_naming_it() {
    let c = Crafted::new().await;
    c.backup(
        "20261122T100000Z",
        1,
        0x200_0028,
        0x200_0100,
        "2026-11-22T10:00:00Z",
    )
    .await;
    let plan = c
        .plan(
            RecoveryTarget::Latest,
            TimelineChoice::Latest,
            Some("20261122T110000Z"),
        )
        .await;
    assert_eq!(kinds(&plan), [ProblemKind::NoBackup]);
    assert!(
        plan.problems[0]
            .message
            .contains("backup 20261122T110000Z does not exist")
    );
}

/// A backup of timeline 1 taken after timeline 2 branched off (consistent at 0/7000000, past
/// the switch at 0/6000000) cannot start recovery along timeline 2.
#[tokio::test]
async fn a_backup_off_the_target_path_is_refused_and_never_chosen() {
    let c = Crafted::new().await;
    let (tl2, _) = histories();
    c.history(&tl2).await;
    c.backup(
        "20261122T120000Z",
        1,
        0x700_0028,
        0x700_0100,
        "2026-11-22T12:00:00Z",
    )
    .await;
    let forced = c
        .plan(
            RecoveryTarget::Latest,
            TimelineChoice::Id(TimelineId(2)),
            Some("20261122T120000Z"),
        )
        .await;
    assert_eq!(kinds(&forced), [ProblemKind::NoBackup]);
    assert!(
        forced.problems[0]
            .message
            .contains("not on the path to timeline 2"),
        "{:?}",
        forced.problems
    );
    let chosen = c
        .plan(RecoveryTarget::Latest, TimelineChoice::Latest, None)
        .await;
    assert_eq!(kinds(&chosen), [ProblemKind::NoBackup]);
    assert!(
        chosen.problems[0]
            .message
            .contains("no backup on the path to timeline 2 (1 backups in all)")
    );
}

#[tokio::test]
async fn a_target_before_the_oldest_backup_is_refused_naming_it() {
    let c = Crafted::new().await;
    c.backup(
        "20261122T100000Z",
        1,
        0x200_0028,
        0x200_0100,
        "2026-11-22T10:00:00Z",
    )
    .await;
    c.backup(
        "20261122T120000Z",
        1,
        0x500_0028,
        0x500_0100,
        "2026-11-22T12:00:00Z",
    )
    .await;
    let plan = c
        .plan(time("2026-11-22 09:30:00+00"), TimelineChoice::Latest, None)
        .await;
    assert_eq!(kinds(&plan), [ProblemKind::BeforeOldestBackup]);
    assert!(
        plan.problems[0].message.contains("backup 20261122T100000Z"),
        "{:?}",
        plan.problems
    );
    let by_lsn = c
        .plan(
            RecoveryTarget::Lsn(Lsn(0x200_0000)),
            TimelineChoice::Latest,
            None,
        )
        .await;
    assert_eq!(kinds(&by_lsn), [ProblemKind::BeforeOldestBackup]);
}

/// The newest backup consistent before the target, on the path to the target timeline:
/// across timelines 1, 2 and 3; and the WAL it needs, by timeline, is what is reported
/// missing when the archive lacks it.
#[tokio::test]
async fn the_newest_backup_on_the_path_before_the_target_is_chosen() {
    let c = Crafted::new().await;
    let (tl2, tl3) = histories();
    c.history(&tl2).await;
    c.history(&tl3).await;
    // tl1 before the first switch; tl1 after it (off the path of 2 and 3); tl2 before the
    // second switch; tl3.
    c.backup(
        "20261122T100000Z",
        1,
        0x300_0028,
        0x300_0100,
        "2026-11-22T10:00:00Z",
    )
    .await;
    c.backup(
        "20261122T110000Z",
        1,
        0x700_0028,
        0x700_0100,
        "2026-11-22T11:00:00Z",
    )
    .await;
    c.backup(
        "20261122T120000Z",
        2,
        0x800_0028,
        0x800_0100,
        "2026-11-22T12:00:00Z",
    )
    .await;
    c.backup(
        "20261122T130000Z",
        3,
        0xA00_0028,
        0xA00_0100,
        "2026-11-22T13:00:00Z",
    )
    .await;
    let chosen =
        |plan: &walship_restore::RestorePlan| plan.backup.as_ref().map(|b| b.id.to_string());

    let latest = c
        .plan(RecoveryTarget::Latest, TimelineChoice::Latest, None)
        .await;
    assert_eq!(latest.target_timeline, TimelineId(3));
    assert_eq!(chosen(&latest).as_deref(), Some("20261122T130000Z"));

    let noon = c
        .plan(time("2026-11-22 12:30:00+00"), TimelineChoice::Latest, None)
        .await;
    assert_eq!(chosen(&noon).as_deref(), Some("20261122T120000Z"));

    // Along timeline 1, the backup taken there after timeline 2 branched off is fine.
    let on_one = c
        .plan(
            time("2026-11-22 12:30:00+00"),
            TimelineChoice::Id(TimelineId(1)),
            None,
        )
        .await;
    assert_eq!(chosen(&on_one).as_deref(), Some("20261122T110000Z"));

    // Along timeline 2, before its backup: the timeline-1 backup before the switch.
    let on_two = c
        .plan(
            time("2026-11-22 11:30:00+00"),
            TimelineChoice::Id(TimelineId(2)),
            None,
        )
        .await;
    assert_eq!(chosen(&on_two).as_deref(), Some("20261122T100000Z"));

    // No WAL is archived: the plan refuses, naming the first segment recovery needs.
    for plan in [&latest, &noon, &on_one, &on_two] {
        assert!(!plan.is_ok());
        assert!(!plan.reachable);
        assert!(
            kinds(plan).contains(&ProblemKind::MissingSegments),
            "{:?}",
            plan.problems
        );
    }
    assert!(
        noon.problems
            .iter()
            .any(|p| p.message.contains("000000020000000000000008")),
        "{:?}",
        noon.problems
    );
}

/// Segments missing between the backup and the newest archived segment are all listed, each
/// on the timeline the history picks for it; a `.partial` at the end counts only for
/// `--target latest`.
#[tokio::test]
async fn missing_segments_follow_the_history_and_partials_count_only_for_latest() {
    let c = Crafted::new().await;
    let (tl2, _) = histories();
    c.history(&tl2).await;
    c.backup(
        "20261122T100000Z",
        1,
        0x300_0028,
        0x300_0100,
        "2026-11-22T10:00:00Z",
    )
    .await;
    // Recovery along timeline 2 reads 3, 4, 5 from timeline 1 and 6, 7, 8 from timeline 2
    // (the switch at 0/6000000 starts segment 6). Archived: 1/3, 1/5, timeline 1's copy of
    // 6 (not read), 2/7, and 2/8 only as a .partial.
    for name in [
        "000000010000000000000003",
        "000000010000000000000005",
        "000000010000000000000006",
        "000000020000000000000007",
        "000000020000000000000008.partial",
    ] {
        c.wal(name).await;
    }
    let latest = c
        .plan(RecoveryTarget::Latest, TimelineChoice::Latest, None)
        .await;
    assert_eq!(
        latest.missing_segments,
        ["000000010000000000000004", "000000020000000000000006",]
    );
    let by_time = c
        .plan(time("2026-11-22 12:00:00+00"), TimelineChoice::Latest, None)
        .await;
    assert_eq!(latest.missing_segments, by_time.missing_segments);

    // The end of the archive along timeline 2: the partial counts only with partials.
    let listing = ArchiveListing::load(&c.repo, seg_size()).await.unwrap();
    assert!(
        listing
            .partials
            .contains_key(&(TimelineId(2), walship_common::pg::SegNo(8)))
    );
    assert_eq!(
        listing.last_on_path(&tl2, seg_size(), true),
        Some(walship_common::pg::SegNo(8))
    );
    assert_eq!(
        listing.last_on_path(&tl2, seg_size(), false),
        Some(walship_common::pg::SegNo(7))
    );
    let seven = WalFileName::new(TimelineId(2), walship_common::pg::SegNo(7), seg_size()).unwrap();
    assert!(listing.has(&seven));
}

/// `backup_on_path`: on the path means on a timeline of the history, consistent no later
/// than the point where that timeline was left.
#[tokio::test]
async fn backup_on_path_is_the_history_rule() {
    let c = Crafted::new().await;
    let (_, tl3) = histories();
    c.backup(
        "20261122T100000Z",
        1,
        0x500_0028,
        0x600_0000,
        "2026-11-22T10:00:00Z",
    )
    .await;
    c.backup(
        "20261122T110000Z",
        1,
        0x600_0028,
        0x600_0100,
        "2026-11-22T11:00:00Z",
    )
    .await;
    c.backup(
        "20261122T120000Z",
        2,
        0x800_0028,
        0x900_0000,
        "2026-11-22T12:00:00Z",
    )
    .await;
    c.backup(
        "20261122T130000Z",
        4,
        0xA00_0028,
        0xA00_0100,
        "2026-11-22T13:00:00Z",
    )
    .await;
    let all = walship_common::backup::read_catalog(&c.repo)
        .await
        .unwrap()
        .complete;
    let on: Vec<String> = all
        .iter()
        .filter(|b| backup_on_path(&tl3, b))
        .map(|b| b.id.to_string())
        .collect();
    // Consistent exactly at the switch point is on the path; one byte past it is not; a
    // timeline the history does not know is not.
    assert_eq!(on, ["20261122T100000Z", "20261122T120000Z"]);
}

/// `wal_scan::matches`, the rule of `recoveryStopsBefore`/`recoveryStopsAfter`: a time target
/// stops at the first commit or abort after the time (at or after it when exclusive), never
/// at another kind of record; an XID target matches the low 32 bits; a name target only a
/// restore point of that name; an LSN target any record at or past it.
#[test]
fn wal_scan_matches_is_postgres_stop_rule() {
    use walship_common::pg::wal_record::{PgTimestamp, XLogRecordHeader};
    use walship_common::pg::{RecordKind, WalRecord};
    use walship_restore::wal_scan::matches;
    let at: DateTime<Utc> = "2026-11-22T12:00:00Z".parse().unwrap();
    let record = |lsn: u64, kind: RecordKind| WalRecord {
        lsn: Lsn(lsn),
        end: Lsn(lsn + 64),
        header: XLogRecordHeader {
            xl_tot_len: 64,
            xl_xid: 0,
            xl_prev: Lsn(0),
            xl_info: 0,
            xl_rmid: 0,
            xl_crc: 0,
        },
        kind,
    };
    let commit = |secs: i64, xid: u32| {
        record(
            0x300_0000,
            RecordKind::Commit {
                xid,
                time: PgTimestamp::from_utc(at + chrono::Duration::seconds(secs)),
                prepared: false,
            },
        )
    };
    let abort = record(
        0x300_0000,
        RecordKind::Abort {
            xid: 9,
            time: PgTimestamp::from_utc(at + chrono::Duration::seconds(1)),
            prepared: true,
        },
    );
    let target = time("2026-11-22 12:00:00+00");
    assert!(!matches(&target, false, &commit(-1, 1)));
    assert!(
        !matches(&target, false, &commit(0, 1)),
        "inclusive: a commit at the time is replayed"
    );
    assert!(
        matches(&target, true, &commit(0, 1)),
        "exclusive: a commit at the time stops"
    );
    assert!(matches(&target, false, &commit(1, 1)));
    assert!(matches(&target, false, &abort));
    assert!(!matches(
        &target,
        false,
        &record(0x300_0000, RecordKind::Other)
    ));
    assert!(!matches(
        &target,
        false,
        &record(0x300_0000, RecordKind::Switch)
    ));

    let xid = RecoveryTarget::Xid((5u64 << 32) | 7);
    assert!(
        matches(&xid, false, &commit(0, 7)),
        "an XID with epoch matches its low 32 bits"
    );
    assert!(!matches(&xid, false, &commit(0, 8)));

    let name = RecoveryTarget::Name("before_drop".into());
    let point = |n: &str| {
        record(
            0x300_0000,
            RecordKind::RestorePoint {
                name: n.into(),
                time: PgTimestamp::from_utc(at),
            },
        )
    };
    assert!(matches(&name, false, &point("before_drop")));
    assert!(!matches(&name, false, &point("before_drop2")));
    assert!(!matches(&name, false, &commit(0, 1)));

    let lsn = RecoveryTarget::Lsn(Lsn(0x300_0000));
    assert!(matches(&lsn, false, &record(0x300_0000, RecordKind::Other)));
    assert!(!matches(
        &lsn,
        false,
        &record(0x2FF_FFF8, RecordKind::Other)
    ));
    assert!(!matches(&RecoveryTarget::Latest, false, &commit(1, 1)));
    assert!(!matches(&RecoveryTarget::Immediate, false, &commit(1, 1)));
}

/// A backup of another cluster in the repository is refused as such, naming both system
/// identifiers.
#[tokio::test]
async fn a_backup_of_another_cluster_is_refused_naming_both() {
    let c = Crafted::new().await;
    c.foreign_backup("20261122T100000Z").await;
    // Chosen on its own, a backup of another cluster is skipped: there is none to use.
    let plan = c
        .plan(RecoveryTarget::Latest, TimelineChoice::Latest, None)
        .await;
    assert_eq!(kinds(&plan), [ProblemKind::NoBackup], "{:?}", plan.problems);
    // Named with --backup, it is refused as another cluster's.
    let plan = c
        .plan(
            RecoveryTarget::Latest,
            TimelineChoice::Latest,
            Some("20261122T100000Z"),
        )
        .await;
    assert!(
        kinds(&plan).contains(&ProblemKind::OtherCluster),
        "{:?}",
        plan.problems
    );
    let message = &plan.problems[0].message;
    assert!(message.contains(&SYSTEM_ID.to_string()), "{message}");
    assert!(message.contains(&(SYSTEM_ID + 1).to_string()), "{message}");
    assert!(!plan.is_ok());
}

/// A segment object that is not the segment its name says (here: 7 bytes) is refused as a
/// bad segment naming it, never read past.
#[tokio::test]
async fn a_segment_that_is_not_what_its_name_says_is_refused_naming_it() {
    let c = Crafted::new().await;
    c.backup(
        "20261122T100000Z",
        1,
        0x300_0028,
        0x300_0100,
        "2026-11-22T10:00:00Z",
    )
    .await;
    c.wal("000000010000000000000003").await;
    let plan = c
        .plan(RecoveryTarget::Latest, TimelineChoice::Latest, None)
        .await;
    assert_eq!(
        kinds(&plan),
        [ProblemKind::BadSegment],
        "{:?}",
        plan.problems
    );
    assert!(
        plan.problems[0]
            .message
            .contains("000000010000000000000003")
    );
    assert!(!plan.reachable);
}
