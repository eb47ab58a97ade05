use super::*;

fn rows(values: &[&[Option<&str>]]) -> CopyFrame {
    CopyFrame::Rows(
        values
            .iter()
            .map(|r| r.iter().map(|v| v.map(str::to_string)).collect())
            .collect(),
    )
}

fn opts() -> BaseBackupOptions {
    BaseBackupOptions {
        label: "it's mine".into(),
        checkpoint: Checkpoint::Fast,
        max_rate_kb: Some(1024),
    }
}

#[test]
fn builds_both_syntaxes() {
    assert_eq!(
        base_backup_command(14, &opts()).unwrap(),
        "BASE_BACKUP LABEL 'it''s mine' PROGRESS FAST NOWAIT MAX_RATE 1024 TABLESPACE_MAP MANIFEST 'yes' MANIFEST_CHECKSUMS 'CRC32C'"
    );
    assert_eq!(
        base_backup_command(15, &opts()).unwrap(),
        "BASE_BACKUP (LABEL 'it''s mine', PROGRESS, CHECKPOINT 'fast', WAIT false, MAX_RATE 1024, TABLESPACE_MAP, MANIFEST 'yes', MANIFEST_CHECKSUMS 'CRC32C', TARGET 'client')"
    );
    assert_eq!(
        base_backup_command(12, &opts()),
        Err(CommandError::TooOld(12))
    );
    let slow = BaseBackupOptions {
        max_rate_kb: Some(1),
        ..opts()
    };
    assert_eq!(
        base_backup_command(16, &slow),
        Err(CommandError::BadRate(1))
    );
}

#[test]
fn decodes_the_legacy_framing() {
    let mut d = FrameDecoder::new(Framing::Legacy);
    let mut events = Vec::new();
    for frame in [
        rows(&[&[Some("0/2000028"), Some("1")]]),
        rows(&[
            &[Some("16384"), Some("/srv/ts"), Some("10")],
            &[None, None, Some("20")],
        ]),
        CopyFrame::CopyStart,
        CopyFrame::Data(Bytes::from_static(b"ts")),
        CopyFrame::CopyEnd,
        CopyFrame::CopyStart,
        CopyFrame::Data(Bytes::from_static(b"main")),
        CopyFrame::CopyEnd,
        CopyFrame::CopyStart,
        CopyFrame::Data(Bytes::from_static(b"{}")),
        CopyFrame::CopyEnd,
        rows(&[&[Some("0/2000100"), Some("1")]]),
    ] {
        events.extend(d.decode(frame).unwrap());
    }
    assert_eq!(
        events,
        vec![
            BackupEvent::Started {
                start_lsn: "0/2000028".parse().unwrap(),
                timeline: TimelineId(1)
            },
            BackupEvent::Tablespaces {
                tablespaces: vec![TablespaceInfo {
                    oid: 16384,
                    location: "/srv/ts".into()
                }],
                estimated_bytes: Some(30 * 1024),
            },
            BackupEvent::ArchiveStart {
                name: "16384.tar".into(),
                tablespace: Some(16384)
            },
            BackupEvent::Data(Bytes::from_static(b"ts")),
            BackupEvent::ArchiveEnd,
            BackupEvent::ArchiveStart {
                name: "base.tar".into(),
                tablespace: None
            },
            BackupEvent::Data(Bytes::from_static(b"main")),
            BackupEvent::ArchiveEnd,
            BackupEvent::Manifest(Bytes::from_static(b"{}")),
            BackupEvent::Ended {
                stop_lsn: "0/2000100".parse().unwrap(),
                timeline: TimelineId(1)
            },
        ]
    );
}

#[test]
fn decodes_the_typed_framing() {
    let mut d = FrameDecoder::new(Framing::Typed);
    let mut events = Vec::new();
    let mut progress = vec![b'p'];
    progress.extend_from_slice(&4096u64.to_be_bytes());
    for frame in [
        rows(&[&[Some("0/2000028"), Some("1")]]),
        rows(&[&[None, None, None]]),
        CopyFrame::CopyStart,
        CopyFrame::Data(Bytes::from_static(b"nbase.tar\0\0")),
        CopyFrame::Data(Bytes::from_static(b"dabc")),
        CopyFrame::Data(Bytes::from(progress)),
        CopyFrame::Data(Bytes::from_static(b"m")),
        CopyFrame::Data(Bytes::from_static(b"d{}")),
        CopyFrame::CopyEnd,
        rows(&[&[Some("0/2000100"), Some("1")]]),
    ] {
        events.extend(d.decode(frame).unwrap());
    }
    assert_eq!(
        &events[2..],
        &[
            BackupEvent::ArchiveStart {
                name: "base.tar".into(),
                tablespace: None
            },
            BackupEvent::Data(Bytes::from_static(b"abc")),
            BackupEvent::Progress(4096),
            BackupEvent::ArchiveEnd,
            BackupEvent::Manifest(Bytes::from_static(b"{}")),
            BackupEvent::Ended {
                stop_lsn: "0/2000100".parse().unwrap(),
                timeline: TimelineId(1)
            },
        ]
    );
    let mut d = FrameDecoder::new(Framing::Typed);
    d.decode(CopyFrame::CopyStart).unwrap();
    assert!(
        d.decode(CopyFrame::Data(Bytes::from_static(b"nbase.tar.gz\0\0")))
            .is_err()
    );
    assert!(d.decode(CopyFrame::Data(Bytes::from_static(b"x"))).is_err());
}
