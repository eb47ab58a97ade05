//! Keeps glibc's malloc from holding on to freed WAL-sized buffers.
//!
//! walship handles WAL in buffers of up to a segment (16 MiB): a segment read for upload, a
//! stream's segment and tail snapshots, their compressed forms. glibc serves such a request
//! with `mmap` at first, but once one is freed it raises its mmap threshold to that size, and
//! from then on serves them from per-thread arenas, which keep freed memory, so that an
//! `--async` call or a stream peaks at twice the memory it uses (`bench archive`, `bench
//! stream`; the figures are in BENCHMARKS.md, "Design measurements"). A fixed threshold of
//! [`MMAP_THRESHOLD`] (which also turns the dynamic adjustment off) and at most
//! [`ARENA_MAX`] arenas keep the memory of a process close to what it uses; a trim threshold
//! of [`TRIM_THRESHOLD`] keeps it from being handed back and faulted in again buffer by buffer.
//!
//! This is the binary's one `unsafe` call, allowed here and nowhere else.

/// Allocations from this size up get their own mapping, returned to the system when freed.
pub const MMAP_THRESHOLD: usize = 1 << 20;
/// Most malloc arenas (glibc's default is 8 per core).
pub const ARENA_MAX: usize = 2;
/// Free memory at the top of an arena kept for reuse rather than returned to the system.
/// Setting the mmap threshold leaves glibc's trim threshold at its 128 KiB default, so a
/// backup's stream of 256 KiB network buffers and compressed blocks was returned and faulted
/// in again, buffer after buffer: measured on a 0.9 GiB backup, 54 000 page faults and
/// 0.8 s of system time; with 16 MiB, 7 500 and 0.55 s, the peak RSS unchanged (35 MiB).
pub const TRIM_THRESHOLD: usize = 16 << 20;

/// Sets [`MMAP_THRESHOLD`], [`ARENA_MAX`] and [`TRIM_THRESHOLD`]; called first thing in `main`, before any other
/// thread exists. Failures are ignored: the defaults only cost memory.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
pub fn tune() {
    // SAFETY: mallopt only changes malloc's parameters; it is called before any other thread
    // exists, with documented parameters and values in range (libc's c_int).
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD as libc::c_int);
        libc::mallopt(libc::M_ARENA_MAX, ARENA_MAX as libc::c_int);
        libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD as libc::c_int);
    }
}

/// Other C libraries: nothing to tune.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn tune() {}
