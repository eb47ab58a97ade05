//! `bench stream`: `walship stream` under pgbench at the highest rate the machine sustains.
//!
//! - **Repository lag** (default mode): while unthrottled pgbench runs, a sampler reads the
//!   primary's `pg_current_wal_lsn()` and the stream's `walship_stream_flushed_lsn` (its
//!   `--metrics-addr` endpoint) every [`SAMPLE_EVERY`], each with its time. The lag of a
//!   primary sample is the time until the first metrics sample whose flushed position covers
//!   it; the series reports p50, p99 and max (resolution: the sampling period).
//! - **`--synchronous`**: pgbench TPS and mean commit latency with the stream as the only
//!   synchronous standby, and in the same run with `pg_receivewal --synchronous` to a local
//!   directory as the synchronous standby (and with none, for reference).
//! - **Peak RSS** of each `walship stream` process, from `wait4(2)`.
//!
//! Every series runs against a local directory and, unless `--no-s3`, SeaweedFS.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use wait4::Wait4;

use super::BenchTable;
use super::wal_load::{self, parse_lsn, pgbench};
use super::walship_bin::{WalshipRepo, s3_unless, walship_binary};
use crate::{Cluster, S3Server};

/// How often the sampler reads both positions.
pub const SAMPLE_EVERY: Duration = Duration::from_millis(50);
/// The aims.
const AIM_LAG_P99_S: f64 = 2.0;
const AIM_RSS_MIB: f64 = 128.0;
/// `--synchronous` TPS against pg_receivewal `--synchronous` (issue 24).
const AIM_SYNC_FS: f64 = 0.5;
const AIM_SYNC_S3: f64 = 0.25;
/// pgbench's scale (about 150 MiB of data).
const SCALE: &str = "10";

/// What to run.
#[derive(Debug, Clone)]
pub struct StreamBenchConfig {
    /// Seconds of pgbench per series.
    pub seconds: u64,
    /// pgbench clients.
    pub clients: u32,
    /// The walship binary (None: build it beside the bench).
    pub walship: Option<PathBuf>,
}

/// Repository lag under load, default mode.
#[derive(Debug, Clone, Default)]
pub struct LagSeries {
    /// Lag of every primary sample taken under load, in seconds, sorted.
    pub lags_s: Vec<f64>,
    /// pgbench transactions per second meanwhile.
    pub tps: f64,
    /// WAL written per second meanwhile (MB/s, 10^6 bytes).
    pub wal_mb_s: f64,
    /// Peak RSS of the stream process (MiB).
    pub peak_rss_mib: f64,
}

impl LagSeries {
    /// The nearest-rank percentile `p` (0-100) of the lags, in seconds.
    pub fn percentile_s(&self, p: f64) -> f64 {
        if self.lags_s.is_empty() {
            return 0.0;
        }
        let rank = ((p / 100.0) * self.lags_s.len() as f64).ceil() as usize;
        self.lags_s[rank.clamp(1, self.lags_s.len()) - 1]
    }
}

/// pgbench with a synchronous standby.
#[derive(Debug, Clone, Default)]
pub struct SyncSeries {
    /// Transactions per second (pgbench's figure without connection time).
    pub tps: f64,
    /// Mean commit latency (pgbench's "latency average"), ms.
    pub latency_ms: f64,
    /// 99th percentile of the transactions' latency (pgbench's per-transaction log), ms.
    pub latency_p99_ms: f64,
    /// Peak RSS of the standby process (MiB).
    pub peak_rss_mib: f64,
}

/// Everything `bench stream` measured.
#[derive(Debug, Default)]
pub struct StreamReport {
    /// The configuration.
    pub seconds: u64,
    /// pgbench clients.
    pub clients: u32,
    /// PostgreSQL major of the cluster.
    pub major: u32,
    /// Default mode, local directory.
    pub lag_fs: LagSeries,
    /// Default mode, SeaweedFS.
    pub lag_s3: Option<LagSeries>,
    /// `--synchronous`, local directory.
    pub sync_fs: SyncSeries,
    /// `--synchronous`, SeaweedFS.
    pub sync_s3: Option<SyncSeries>,
    /// `pg_receivewal --synchronous` to a local directory.
    pub receivewal: SyncSeries,
    /// No synchronous standby (reference).
    pub no_standby: SyncSeries,
}

/// The `stream` bench: `bench stream [--seconds N] [--clients N] [--no-s3] [--walship PATH]`.
pub fn run(args: &[String]) -> Result<()> {
    let mut config = StreamBenchConfig {
        seconds: 30,
        clients: 8,
        walship: None,
    };
    let mut no_s3 = false;
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let mut value = || it.next().with_context(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--seconds" => config.seconds = value()?.parse().context("--seconds")?,
            "--clients" => config.clients = value()?.parse().context("--clients")?,
            "--walship" => config.walship = Some(PathBuf::from(value()?)),
            "--no-s3" => no_s3 = true,
            other => bail!(
                "unknown argument {other:?} (known: --seconds N, --clients N, --walship PATH, --no-s3)"
            ),
        }
    }
    let s3 = s3_unless(no_s3)?;
    let report = run_stream(&config, s3.as_ref())?;
    print!("{}", report.render());
    Ok(())
}

/// Runs every series on one PostgreSQL cluster and returns the measurements.
pub fn run_stream(config: &StreamBenchConfig, s3: Option<&S3Server>) -> Result<StreamReport> {
    let walship = walship_binary(config.walship.as_deref())?;
    let install = wal_load::bench_install()?;
    let work = crate::test_dir("bench-stream");
    let cluster = Cluster::builder(&install)
        .setting("max_wal_size", "'2GB'")
        .setting("checkpoint_timeout", "'30min'")
        .start();
    pgbench(&cluster, &["-i", "-q", "-s", SCALE])?;
    let mut report = StreamReport {
        seconds: config.seconds,
        clients: config.clients,
        major: install.major,
        ..StreamReport::default()
    };
    let bench = Bench {
        cluster: &cluster,
        walship: &walship,
        config,
        work: work.path(),
    };
    let fs = WalshipRepo::local(work.path(), "repo-fs")?;
    report.lag_fs = bench.lag(&fs)?;
    if let Some(s3) = s3 {
        let repo = WalshipRepo::s3(work.path(), s3, "bench-stream")?;
        report.lag_s3 = Some(bench.lag(&repo)?);
        report.sync_s3 = Some(bench.synchronous_walship(&repo)?);
    }
    report.sync_fs = bench.synchronous_walship(&fs)?;
    report.receivewal = bench.synchronous_receivewal()?;
    report.no_standby = bench.synchronous(None, "")?;
    Ok(report)
}

struct Bench<'a> {
    cluster: &'a Cluster,
    walship: &'a Path,
    config: &'a StreamBenchConfig,
    work: &'a Path,
}

/// A standby process measured with `wait4` when it ends.
struct Standby {
    pid: i32,
    waiter: std::thread::JoinHandle<std::io::Result<f64>>,
}

impl Standby {
    fn spawn(mut cmd: Command) -> Result<Standby> {
        let child: Child = cmd.spawn().with_context(|| format!("spawn {cmd:?}"))?;
        let pid = child.id() as i32;
        let waiter = std::thread::spawn(move || {
            let usage = child.wait4()?;
            Ok(usage.rusage.maxrss as f64 / (1024.0 * 1024.0))
        });
        Ok(Standby { pid, waiter })
    }

    /// SIGTERM, wait; the peak RSS in MiB.
    fn stop(self) -> Result<f64> {
        let pid = nix::unistd::Pid::from_raw(self.pid);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(60);
        while !self.waiter.is_finished() {
            if Instant::now() > deadline {
                let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
                bail!("standby {} ignored SIGTERM for 60 s", self.pid);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let rss = self
            .waiter
            .join()
            .map_err(|_| anyhow::anyhow!("wait4 thread panicked"))??;
        Ok(rss)
    }
}

impl Bench<'_> {
    fn set(&self, sync_names: &str) {
        self.cluster.execute(&format!(
            "alter system set synchronous_standby_names = '{sync_names}'"
        ));
        self.cluster.execute("select pg_reload_conf()");
    }

    fn stream(&self, repo: &WalshipRepo, slot: &str, extra: &[&str]) -> Result<Standby> {
        let log = self.work.join(format!("stream-{slot}.log"));
        let conn = self.conn();
        let mut args = vec!["stream", "-d", &conn, "--slot", slot];
        args.extend_from_slice(extra);
        let mut cmd = repo.command(self.walship, &args);
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?);
        Standby::spawn(cmd)
    }

    fn conn(&self) -> String {
        format!(
            "host=127.0.0.1 port={} user=postgres dbname=postgres",
            self.cluster.port()
        )
    }

    fn wait_streaming(&self, app: &str, sync: bool) -> Result<()> {
        let want = if sync { "sync" } else { "async" };
        let sql = format!(
            "select coalesce(max(sync_state), '') from pg_stat_replication where application_name = '{app}' and state = 'streaming'"
        );
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.cluster.query_string(&sql) != want {
            if Instant::now() > deadline {
                bail!("{app} did not become a {want} standby within 60 s");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(())
    }

    /// Default mode: the lag distribution while pgbench runs unthrottled.
    fn lag(&self, repo: &WalshipRepo) -> Result<LagSeries> {
        self.set("");
        let addr = format!("127.0.0.1:{}", crate::ports::free_port());
        let slot = format!("lag_{}", repo.local_root().map_or("s3", |_| "fs"));
        let stream = self.stream(repo, &slot, &["--metrics-addr", &addr])?;
        self.wait_streaming("walship", false)?;
        eprintln!("bench stream: lag under pgbench, {}", repo.url);
        let start_lsn = self.current_lsn()?;
        let sampler = Sampler::start(self.cluster.connstr(), addr.clone());
        let out = pgbench_load(self.cluster, self.config)?;
        let end_lsn = self.current_lsn()?;
        let (primary, flushed) = sampler.finish_when_covered(end_lsn, Duration::from_secs(60))?;
        let peak_rss_mib = stream.stop()?;
        self.drop_slot(&slot);
        let mut lags_s = lags(&primary, &flushed);
        lags_s.sort_by(f64::total_cmp);
        if lags_s.is_empty() {
            bail!("no lag sample under load (the repository never covered the primary's position)");
        }
        Ok(LagSeries {
            lags_s,
            tps: out.tps,
            wal_mb_s: (end_lsn - start_lsn) as f64 / 1e6 / self.config.seconds as f64,
            peak_rss_mib,
        })
    }

    fn synchronous_walship(&self, repo: &WalshipRepo) -> Result<SyncSeries> {
        self.set("walship");
        let slot = format!("sync_{}", repo.local_root().map_or("s3", |_| "fs"));
        eprintln!("bench stream: --synchronous, {}", repo.url);
        let stream = self.stream(repo, &slot, &["--synchronous"])?;
        let result = self.synchronous(Some("walship"), &repo.url);
        let rss = stream.stop()?;
        self.set("");
        self.drop_slot(&slot);
        Ok(SyncSeries {
            peak_rss_mib: rss,
            ..result?
        })
    }

    fn synchronous_receivewal(&self) -> Result<SyncSeries> {
        self.set("pg_receivewal");
        let dir = self.work.join("receivewal");
        std::fs::create_dir_all(&dir)?;
        crate::chown_to_owner_recursive(&dir)?;
        eprintln!(
            "bench stream: pg_receivewal --synchronous to {}",
            dir.display()
        );
        let mut cmd = Command::new(crate::client_tool("pg_receivewal"));
        cmd.args(["--synchronous", "--no-loop", "-D"])
            .arg(&dir)
            .args(["-d", &self.conn()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(self.work.join("receivewal.log"))?);
        crate::os_user::run_as_cluster_owner(&mut cmd);
        let standby = Standby::spawn(cmd)?;
        let result = self.synchronous(Some("pg_receivewal"), "pg_receivewal");
        let rss = standby.stop()?;
        self.set("");
        std::fs::remove_dir_all(&dir)?;
        Ok(SyncSeries {
            peak_rss_mib: rss,
            ..result?
        })
    }

    /// pgbench with `app` as the synchronous standby (None: none).
    fn synchronous(&self, app: Option<&str>, what: &str) -> Result<SyncSeries> {
        if let Some(app) = app {
            self.wait_streaming(app, true)?;
        }
        let out = pgbench_load(self.cluster, self.config)?;
        eprintln!(
            "bench stream: {what}: {:.0} TPS, latency {:.2} ms",
            out.tps, out.latency_ms
        );
        eprintln!(
            "bench stream: {what}: p99 latency {:.2} ms",
            out.latency_p99_ms
        );
        Ok(SyncSeries {
            tps: out.tps,
            latency_ms: out.latency_ms,
            latency_p99_ms: out.latency_p99_ms,
            peak_rss_mib: 0.0,
        })
    }

    fn current_lsn(&self) -> Result<u64> {
        parse_lsn(
            &self
                .cluster
                .query_string("select pg_current_wal_lsn()::text"),
        )
    }

    fn drop_slot(&self, slot: &str) {
        self.cluster.execute(&format!(
            "select pg_drop_replication_slot(slot_name) from pg_replication_slots where slot_name = '{slot}'"
        ));
    }
}

/// For each primary sample, the time until the first flushed sample covering it.
fn lags(primary: &[(Instant, u64)], flushed: &[(Instant, u64)]) -> Vec<f64> {
    let mut out = Vec::with_capacity(primary.len());
    let mut j = 0;
    for &(at, lsn) in primary {
        while j < flushed.len() && (flushed[j].0 < at || flushed[j].1 < lsn) {
            // Samples before `at`, or not covering `lsn`, cannot answer this or later ones
            // (positions only grow and primary samples are in time order).
            j += 1;
        }
        if let Some(&(covered, _)) = flushed.get(j) {
            out.push(covered.duration_since(at).as_secs_f64());
        }
    }
    out
}

/// Reads both positions every [`SAMPLE_EVERY`] on its own thread.
struct Sampler {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<Result<Samples>>,
    addr: String,
}

type Samples = (Vec<(Instant, u64)>, Vec<(Instant, u64)>);

impl Sampler {
    fn start(connstr: String, addr: String) -> Sampler {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let metrics_addr = addr.clone();
        let thread = std::thread::spawn(move || -> Result<Samples> {
            let mut client = postgres::Client::connect(&connstr, postgres::NoTls)?;
            let (mut primary, mut flushed) = (Vec::new(), Vec::new());
            while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                let row = client.query_one("select pg_current_wal_lsn()::text", &[])?;
                primary.push((Instant::now(), parse_lsn(row.get(0))?));
                if let Ok(lsn) = flushed_lsn(&metrics_addr) {
                    flushed.push((Instant::now(), lsn));
                }
                std::thread::sleep(SAMPLE_EVERY);
            }
            Ok((primary, flushed))
        });
        Sampler { stop, thread, addr }
    }

    /// Samples until the stream has stored `end` (or `timeout`), then returns both series;
    /// primary samples taken after `end` are dropped (no load then).
    fn finish_when_covered(self, end: u64, timeout: Duration) -> Result<Samples> {
        let deadline = Instant::now() + timeout;
        while flushed_lsn(&self.addr).unwrap_or(0) < end {
            if Instant::now() > deadline {
                bail!(
                    "the stream did not store WAL up to {end:X} within {timeout:?} after the load"
                );
            }
            std::thread::sleep(SAMPLE_EVERY);
        }
        std::thread::sleep(SAMPLE_EVERY * 2);
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let (mut primary, flushed) = self
            .thread
            .join()
            .map_err(|_| anyhow::anyhow!("sampler panicked"))??;
        primary.retain(|&(_, lsn)| lsn <= end);
        Ok((primary, flushed))
    }
}

/// `walship_stream_flushed_lsn` from the metrics endpoint at `addr`.
fn flushed_lsn(addr: &str) -> Result<u64> {
    use std::io::{Read, Write};
    let mut conn = std::net::TcpStream::connect(addr)?;
    conn.set_read_timeout(Some(Duration::from_secs(5)))?;
    conn.write_all(format!("GET /metrics HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())?;
    let mut body = String::new();
    conn.read_to_string(&mut body)?;
    let line = body
        .lines()
        .find(|l| l.starts_with("walship_stream_flushed_lsn "))
        .context("no walship_stream_flushed_lsn in the metrics")?;
    let value: f64 = line["walship_stream_flushed_lsn ".len()..].trim().parse()?;
    Ok(value as u64)
}

/// What pgbench reported.
struct PgbenchOut {
    tps: f64,
    latency_ms: f64,
    latency_p99_ms: f64,
}

/// Unthrottled TPC-B-like pgbench for the configured time, with its per-transaction log (in
/// `/tmp`, which the cluster's user can write) for the latency percentile.
fn pgbench_load(cluster: &Cluster, config: &StreamBenchConfig) -> Result<PgbenchOut> {
    static RUN: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let clients = config.clients.to_string();
    let secs = config.seconds.to_string();
    let run = RUN.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let stem = format!("walship-bench-pgbench-{}-{run}", std::process::id());
    let prefix = std::env::temp_dir().join(&stem);
    let prefix_arg = format!("--log-prefix={}", prefix.display());
    let text = pgbench(
        cluster,
        &[
            "-n",
            "-c",
            &clients,
            "-j",
            "2",
            "-T",
            &secs,
            "--log",
            &prefix_arg,
        ],
    )?;
    let mut latencies_us = Vec::new();
    for entry in std::fs::read_dir(std::env::temp_dir())?.flatten() {
        if !entry.file_name().to_string_lossy().starts_with(&stem) {
            continue;
        }
        let log = std::fs::read_to_string(entry.path())?;
        // `client_id transaction_no time script_no time_epoch time_us`: `time` is the
        // transaction's latency in microseconds.
        latencies_us.extend(
            log.lines()
                .filter_map(|l| l.split_whitespace().nth(2)?.parse::<f64>().ok()),
        );
        let _ = std::fs::remove_file(entry.path());
    }
    let mut out = parse_pgbench(&text).with_context(|| format!("pgbench output:\n{text}"))?;
    out.latency_p99_ms = percentile(&mut latencies_us, 99.0) / 1000.0;
    Ok(out)
}

/// The nearest-rank percentile `p` of `values` (sorted in place); 0 when empty.
fn percentile(values: &mut [f64], p: f64) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * values.len() as f64).ceil() as usize;
    values[rank.clamp(1, values.len()) - 1]
}

fn parse_pgbench(text: &str) -> Result<PgbenchOut> {
    let number_after = |prefix: &str| -> Option<f64> {
        let line = text.lines().find(|l| l.starts_with(prefix))?;
        line[prefix.len()..].split_whitespace().next()?.parse().ok()
    };
    Ok(PgbenchOut {
        tps: number_after("tps = ").context("no tps line")?,
        latency_ms: number_after("latency average = ").context("no latency line")?,
        latency_p99_ms: 0.0,
    })
}

impl StreamReport {
    /// The report as printed: one table, then the aims.
    pub fn render(&self) -> String {
        let mut t = BenchTable::new(
            &format!(
                "walship stream: PG{}, pgbench -c {} unthrottled, {} s per series",
                self.major, self.clients, self.seconds
            ),
            "pg_receivewal",
        );
        let lag_rows = |t: &mut BenchTable, case: &str, s: &LagSeries| {
            t.row(case, "repository lag p50 s", s.percentile_s(50.0), None);
            t.row(case, "repository lag p99 s", s.percentile_s(99.0), None);
            t.row(case, "repository lag max s", s.percentile_s(100.0), None);
            t.row(case, "lag samples", s.lags_s.len() as f64, None);
            t.row(case, "pgbench TPS", s.tps, None);
            t.row(case, "WAL MB/s", s.wal_mb_s, None);
            t.row(case, "peak RSS MiB", s.peak_rss_mib, None);
        };
        lag_rows(&mut t, "default, filesystem", &self.lag_fs);
        if let Some(s) = &self.lag_s3 {
            lag_rows(&mut t, "default, SeaweedFS", s);
        }
        let peer = &self.receivewal;
        let sync_rows = |t: &mut BenchTable, case: &str, s: &SyncSeries| {
            t.row(case, "pgbench TPS", s.tps, Some(peer.tps));
            t.row(
                case,
                "commit latency ms",
                s.latency_ms,
                Some(peer.latency_ms),
            );
            t.row(
                case,
                "commit latency p99 ms",
                s.latency_p99_ms,
                Some(peer.latency_p99_ms),
            );
            t.row(
                case,
                "peak RSS MiB",
                s.peak_rss_mib,
                Some(peer.peak_rss_mib),
            );
        };
        sync_rows(&mut t, "--synchronous, filesystem", &self.sync_fs);
        if let Some(s) = &self.sync_s3 {
            sync_rows(&mut t, "--synchronous, SeaweedFS", s);
        }
        let mut out = t.render();
        out.push_str(&format!(
            "reference, no synchronous standby: {:.0} TPS, commit latency {:.2} ms\n",
            self.no_standby.tps, self.no_standby.latency_ms
        ));
        out.push_str(&format!(
            "lag resolution: {} ms sampling of pg_current_wal_lsn() and the metrics endpoint\n",
            SAMPLE_EVERY.as_millis()
        ));
        out.push_str("\naims:\n");
        let verdict = |ok: bool| if ok { "met" } else { "NOT met" };
        let mut lag_aim = |what: &str, s: &LagSeries| {
            let p99 = s.percentile_s(99.0);
            out.push_str(&format!(
                "  repository lag p99 <= {AIM_LAG_P99_S} s ({what}): {p99:.2} s -> {}\n",
                verdict(p99 <= AIM_LAG_P99_S)
            ));
        };
        lag_aim("filesystem", &self.lag_fs);
        if let Some(s) = &self.lag_s3 {
            lag_aim("SeaweedFS", s);
        }
        let peak = [
            Some(self.lag_fs.peak_rss_mib),
            self.lag_s3.as_ref().map(|s| s.peak_rss_mib),
            Some(self.sync_fs.peak_rss_mib),
            self.sync_s3.as_ref().map(|s| s.peak_rss_mib),
        ]
        .into_iter()
        .flatten()
        .fold(0.0, f64::max);
        out.push_str(&format!(
            "  peak RSS of walship stream <= {AIM_RSS_MIB} MiB: {peak:.1} MiB -> {}\n",
            verdict(peak <= AIM_RSS_MIB)
        ));
        let fs = ratio(self.sync_fs.tps, peer.tps);
        out.push_str(&format!(
            "  --synchronous TPS >= {AIM_SYNC_FS}x pg_receivewal --synchronous (filesystem): {fs:.2}x -> {} (p99 commit latency {:.2} ms vs {:.2} ms)\n",
            verdict(fs >= AIM_SYNC_FS),
            self.sync_fs.latency_p99_ms,
            peer.latency_p99_ms
        ));
        if let Some(s) = &self.sync_s3 {
            let r = ratio(s.tps, peer.tps);
            out.push_str(&format!(
                "  --synchronous TPS >= {AIM_SYNC_S3}x pg_receivewal --synchronous (SeaweedFS): {r:.2}x -> {} (p99 commit latency {:.2} ms)\n",
                verdict(r >= AIM_SYNC_S3),
                s.latency_p99_ms
            ));
        }
        out
    }
}

fn ratio(a: f64, b: f64) -> f64 {
    if b == 0.0 { 0.0 } else { a / b }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lag_is_the_time_until_a_flushed_sample_covers_the_position() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let primary = [(at(0), 100), (at(100), 200), (at(200), 300)];
        let flushed = [(at(50), 150), (at(150), 250), (at(400), 300)];
        let l = lags(&primary, &flushed);
        assert_eq!(l.len(), 3);
        assert!((l[0] - 0.05).abs() < 1e-9, "{l:?}");
        assert!((l[1] - 0.05).abs() < 1e-9, "{l:?}");
        assert!((l[2] - 0.2).abs() < 1e-9, "{l:?}");
    }

    #[test]
    fn parses_pgbench_summary() {
        let text = "number of transactions actually processed: 10\nlatency average = 3.125 ms\ninitial connection time = 2.0 ms\ntps = 1279.5 (without initial connection time)\n";
        let out = parse_pgbench(text).unwrap();
        assert_eq!(out.tps, 1279.5);
        assert_eq!(out.latency_ms, 3.125);
    }
}
