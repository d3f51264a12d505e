//! Keeps a worker's memory at what its payloads need.
//!
//! glibc's allocator serves a large block (above 128 KB at first) with its own mapping, but
//! after such a block is freed it raises that threshold to the block's size, up to 32 MB, and
//! from then on serves blocks of that size from its arenas, which keep the memory after it is
//! freed. A worker that downloads, converts and uploads multi-megabyte payloads on several
//! threads then holds several times each payload for the rest of its life (an 8 MB echo grew
//! the Rust worker by 80 MB). A fixed threshold of 1 MB keeps every block that large in its own
//! mapping, returned to the system when it is freed; smaller allocations are untouched.

/// Sets the threshold once per process; the runtime calls it when it is created. Does nothing
/// on other allocators and platforms.
pub fn return_large_blocks() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        static ONCE: std::sync::Once = std::sync::Once::new();
        ONCE.call_once(|| {
            // SAFETY: mallopt only changes allocator tunables; it is safe to call at any time.
            let set = unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, 1024 * 1024) };
            if set == 0 {
                tracing::debug!("the allocator's mmap threshold could not be set");
            }
        });
    }
}
