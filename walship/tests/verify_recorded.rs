//! `walship verify` leaves a trace the operator's other tools read: an audit record, the
//! `last verify` line of `status`, and `walship_verify_last_success_timestamp_seconds` in the
//! metrics. A crafted `file://` repository (segments archived by `walship archive`); no
//! Postgres needed.

mod support;

use support::crafted::{segment, segment_name};
use support::{TestRepo, describe};

#[test]
fn a_sound_verify_is_audited_and_shown_by_status_and_the_metrics() {
    let repo = TestRepo::local();
    let source = repo.dir.path().join("source");
    std::fs::create_dir(&source).unwrap();
    for segno in [1, 2] {
        let path = source.join(segment_name(segno));
        std::fs::write(&path, segment(segno)).unwrap();
        let out = repo.walship(&["archive", path.to_str().unwrap()]);
        assert!(out.status.success(), "{}", describe(&out));
    }
    let status = repo.walship(&["status"]);
    let text = String::from_utf8_lossy(&status.stdout).into_owned();
    assert!(text.contains("last verify:   never"), "{text}");

    let out = repo.walship(&["verify"]);
    assert!(out.status.success(), "{}", describe(&out));

    let audit = repo.walship(&["audit", "--json"]);
    assert!(audit.status.success(), "{}", describe(&audit));
    let audit = String::from_utf8_lossy(&audit.stdout).into_owned();
    assert!(audit.contains("\"verify\""), "no verify record: {audit}");

    let status = repo.walship(&["status"]);
    let text = String::from_utf8_lossy(&status.stdout).into_owned();
    assert!(text.contains("last verify:   sound at"), "{text}");

    // A drill with no backup to restore fails, and still writes the metrics (a failed drill
    // is a metric too): they carry the verify's time.
    let metrics = repo.dir.path().join("walship.prom");
    let out = repo.walship(&["drill", "--metrics-textfile", metrics.to_str().unwrap()]);
    assert!(!out.status.success(), "{}", describe(&out));
    let text = std::fs::read_to_string(&metrics).unwrap();
    assert!(
        text.lines()
            .any(|l| l.starts_with("walship_verify_last_success_timestamp_seconds{")),
        "{text}"
    );
}
