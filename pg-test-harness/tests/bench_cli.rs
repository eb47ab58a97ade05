//! The `bench` binary: dispatch by name, usage on unknown names, the `peers` bench.

use std::process::Command;

fn bench(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_bench"))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn unknown_bench_lists_the_available_ones_and_exits_2() {
    let out = bench(&["no-such-bench"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("unknown bench 'no-such-bench'") && err.contains("peers"),
        "{err}"
    );
    assert_eq!(bench(&[]).status.code(), Some(2));
}

#[test]
fn peers_reports_each_peer_tool() {
    let out = bench(&["peers"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for tool in pg_test_harness::bench::PEER_TOOLS {
        let line = text
            .lines()
            .find(|l| l.starts_with(tool))
            .unwrap_or_else(|| panic!("{tool} missing in:\n{text}"));
        let installed = pg_test_harness::bench::find_peer(tool).is_some();
        assert_eq!(line.contains("installed"), installed, "{line}");
    }
}
