//! Cluster: every installed major starts, answers SQL, survives a crash restart, adopts a copied
//! data directory, retries on a taken port, and reports its log when it fails.

use std::net::TcpListener;
use std::process::Command;

use pg_test_harness::{Cluster, StopMode, client_tool, installs_under_test, test_dir};

#[test]
fn every_major_starts_and_reports_its_version() {
    let installs = installs_under_test();
    for install in &installs {
        let pg = Cluster::builder(install).start();
        let version = pg.query_string("select version()");
        let expected = format!("PostgreSQL {}", install.major);
        assert!(
            version.starts_with(&format!("{expected}."))
                || version.starts_with(&format!("{expected}beta")),
            "PG{} from {} reports {version}",
            install.major,
            install.bin_dir.display()
        );
        assert_eq!(
            pg.query_string("show server_version_num")[..2]
                .parse::<u32>()
                .unwrap(),
            install.major
        );
        assert_eq!(pg.query_string("show data_checksums"), "on");
        assert_eq!(pg.query_string("show listen_addresses"), "127.0.0.1");
        eprintln!("PG{}: {version}", install.major);
    }
}

#[test]
fn immediate_stop_preserves_committed_rows() {
    for install in installs_under_test() {
        let mut pg = Cluster::builder(&install).start();
        pg.execute("create table kept(id int primary key, note text); insert into kept values (1, 'committed')");
        pg.stop(StopMode::Immediate);
        assert!(!pg.is_running());
        pg.start();
        assert!(pg.is_running());
        assert_eq!(
            pg.query_string("select note from kept where id = 1"),
            "committed"
        );
        assert!(
            pg.log().contains("database system was interrupted"),
            "PG{}: crash recovery expected:\n{}",
            install.major,
            pg.log()
        );
        pg.stop(StopMode::Fast);
        assert!(!pg.is_running());
    }
}

#[test]
fn builder_settings_and_initdb_args_apply() {
    let install = installs_under_test()
        .pop()
        .expect("at least one PostgreSQL install");
    let pg = Cluster::builder(&install)
        .initdb_arg("--wal-segsize=1")
        .setting("work_mem", "'7MB'")
        .start();
    assert_eq!(pg.query_string("show wal_segment_size"), "1MB");
    assert_eq!(pg.query_string("show work_mem"), "7MB");
    let rows = pg.query_rows("select 1, null::text union all select 2, 'b' order by 1");
    assert_eq!(
        rows,
        vec![
            vec![Some("1".into()), None],
            vec![Some("2".into()), Some("b".into())]
        ]
    );
    pg.append_conf("work_mem = '9MB'");
    pg.reload();
    assert_eq!(pg.query_string("show work_mem"), "9MB");
}

/// `reload()` returns only once pg_hba.conf is in force: the very next connection obeys it,
/// both ways, with no sleep between.
#[test]
fn reload_returns_once_pg_hba_is_in_force() {
    let install = installs_under_test()
        .pop()
        .expect("at least one PostgreSQL install");
    let pg = Cluster::builder(&install).start();
    pg.execute("create role visitor login");
    let visitor = format!(
        "host=127.0.0.1 port={} user=visitor dbname=postgres",
        pg.port()
    );
    let connects = || postgres::Client::connect(&visitor, postgres::NoTls).is_ok();
    assert!(connects(), "the default pg_hba.conf lets visitor in");
    for round in 0..3 {
        pg.set_hba(
            "local all all trust\nhost all visitor 127.0.0.1/32 reject\nhost all all 127.0.0.1/32 trust\n",
        );
        pg.reload();
        assert!(!connects(), "round {round}: visitor let in after reload");
        pg.set_hba("local all all trust\nhost all all 127.0.0.1/32 trust\n");
        pg.reload();
        assert!(connects(), "round {round}: visitor refused after reload");
    }
}

#[test]
fn copied_data_directory_starts_as_a_new_cluster() {
    for install in installs_under_test() {
        let mut pg = Cluster::builder(&install).start();
        pg.execute("create table t(x int); insert into t select generate_series(1, 100)");
        pg.stop(StopMode::Fast);
        let copy_root = test_dir("copy");
        let copy = copy_root.path().join("data");
        let status = Command::new("cp")
            .arg("-a")
            .arg(pg.data_dir())
            .arg(&copy)
            .status()
            .unwrap();
        assert!(status.success());
        let mut restored = Cluster::from_data_dir(&install, &copy);
        assert_ne!(restored.port(), pg.port());
        restored.start();
        assert_eq!(restored.query_string("select sum(x) from t"), "5050");
        drop(restored);
        assert!(
            copy.exists(),
            "from_data_dir leaves the caller's directory in place"
        );
    }
}

#[test]
fn start_moves_to_a_new_port_when_the_chosen_one_is_taken() {
    let install = installs_under_test()
        .pop()
        .expect("at least one PostgreSQL install");
    let mut pg = Cluster::builder(&install).init();
    let taken = pg.port();
    let _squatter = TcpListener::bind(("127.0.0.1", taken)).expect("bind the cluster's port first");
    pg.start();
    assert_ne!(pg.port(), taken);
    assert_eq!(pg.query_string("select 1"), "1");
    assert_eq!(pg.query_string("show port"), pg.port().to_string());
}

#[test]
fn failed_start_panics_with_the_server_log() {
    let install = installs_under_test()
        .pop()
        .expect("at least one PostgreSQL install");
    let mut pg = Cluster::builder(&install).init();
    pg.append_conf("shared_buffers = 'not-a-size'");
    let err = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| pg.start())).unwrap_err();
    let msg = err.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(msg.contains("server log"), "{msg}");
    assert!(msg.contains("shared_buffers"), "{msg}");
}

#[test]
fn run_as_owner_lets_tools_read_cluster_files() {
    let install = installs_under_test()
        .into_iter()
        .find(|i| i.major == pg_test_harness::CLIENT_TOOLS_MAJOR)
        .expect("PostgreSQL 15 (the Debian referee tools' version)");
    let mut pg = Cluster::builder(&install)
        .setting("wal_keep_size", "'64MB'")
        .start();
    pg.execute("create table w(x int); insert into w values (1)");
    let segment = pg.query_string("select pg_walfile_name(pg_current_wal_lsn())");
    pg.execute("select pg_switch_wal()");
    pg.stop(StopMode::Fast);
    let mut waldump = Command::new(client_tool("pg_waldump"));
    waldump
        .arg("--path")
        .arg(pg.data_dir().join("pg_wal"))
        .arg(&segment);
    pg.run_as_owner(&mut waldump);
    let out = waldump.output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("rmgr: "),
        "pg_waldump output: {text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let mut checksums = Command::new(client_tool("pg_checksums"));
    checksums.arg("--check").arg("-D").arg(pg.data_dir());
    pg.run_as_owner(&mut checksums);
    let out = checksums.output().unwrap();
    assert!(
        out.status.success(),
        "pg_checksums: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn test_dir_is_writable_by_the_cluster_user() {
    let install = installs_under_test()
        .pop()
        .expect("at least one PostgreSQL install");
    let archive = test_dir("archive");
    let pg = Cluster::builder(&install)
        .setting("archive_mode", "on")
        .setting(
            "archive_command",
            &format!("'cp %p {}/%f'", archive.path().display()),
        )
        .start();
    pg.execute("create table a(x int); insert into a values (1)");
    let segment = pg.query_string("select pg_walfile_name(pg_current_wal_lsn())");
    pg.execute("select pg_switch_wal()");
    let archived = archive.path().join(&segment);
    for _ in 0..100 {
        if archived.exists() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    panic!(
        "{} was not archived into {}:\n{}",
        segment,
        archive.path().display(),
        pg.log()
    );
}
