//! Links the `walship` binary as a position-dependent executable on Linux.
//!
//! Postgres starts `walship archive` and `walship fetch` once per WAL segment, so process
//! start-up is on the path of every segment. A position-independent executable (Rust's
//! default) needs about 51,000 relative relocations applied at each start, which writes to
//! some 200 pages of the binary and faults each one in as private memory (a fifth of a
//! `fetch` call's page faults, measured with `perf record -e page-faults`). A
//! position-dependent one has those addresses fixed at link time and shares the pages with
//! the page cache. Only address-space layout randomisation of the executable itself is lost
//! (libraries, stack and heap stay randomised).

fn main() {
    let target_os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    if target_os == "linux" {
        println!("cargo:rustc-link-arg-bin=walship=-no-pie");
    }
}
