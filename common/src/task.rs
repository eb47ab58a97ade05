//! Running CPU-bound or blocking work (compression, checksums, file I/O) off the async
//! runtime's worker threads.

/// Runs `f` on tokio's blocking pool and returns its result. A panic inside `f` is a bug,
/// and is resumed in the caller rather than turned into an error.
pub(crate) async fn run_blocking<T, F>(f: F) -> T
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    match tokio::task::spawn_blocking(f).await {
        Ok(value) => value,
        Err(err) => std::panic::resume_unwind(err.into_panic()),
    }
}
