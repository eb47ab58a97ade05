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
//! `set` holds the binary's one `unsafe` call, allowed here and nowhere else.

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
pub fn tune() {
    set(Parameter::MmapThreshold, MMAP_THRESHOLD);
    set(Parameter::ArenaMax, ARENA_MAX);
    set(Parameter::TrimThreshold, TRIM_THRESHOLD);
}

/// Allocations up to this size come from malloc's heap in a process that asked for
/// [`reuse_large_buffers`]: glibc's largest mmap threshold.
pub const REUSE_UP_TO: usize = 32 << 20;

/// For the prefetch worker: buffers of up to [`REUSE_UP_TO`] (each segment's stored object,
/// a few MiB) come from the heap and are reused, instead of a mapping per segment whose
/// pages are faulted in afresh and unmapped again (a TLB shootdown that can interrupt the
/// recovery's startup process on the other core): its system CPU for 60 segments, 0.95 ->
/// 0.72 s. It holds a few objects at a time, so its memory stays small. Called before the
/// process starts any other thread.
pub fn reuse_large_buffers() {
    set(Parameter::MmapThreshold, REUSE_UP_TO);
}

/// The malloc parameters walship sets.
#[derive(Debug, Clone, Copy)]
enum Parameter {
    MmapThreshold,
    ArenaMax,
    TrimThreshold,
}

/// `mallopt(parameter, value)`; ignored when the value does not fit a C int.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn set(parameter: Parameter, value: usize) {
    let parameter = match parameter {
        Parameter::MmapThreshold => libc::M_MMAP_THRESHOLD,
        Parameter::ArenaMax => libc::M_ARENA_MAX,
        Parameter::TrimThreshold => libc::M_TRIM_THRESHOLD,
    };
    let Ok(value) = libc::c_int::try_from(value) else {
        return;
    };
    // SAFETY: mallopt only changes malloc's parameters; it is called before any other thread
    // exists (see `tune` and `reuse_large_buffers`), with documented parameters.
    unsafe {
        libc::mallopt(parameter, value);
    }
}

/// Other C libraries: nothing to tune.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn set(_parameter: Parameter, _value: usize) {}
