//! `bench <name>`: walship's benchmarks against peer tools (see `pg_test_harness::bench`).

use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    pg_test_harness::bench::main(&args)
}
