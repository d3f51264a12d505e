//! What a host-language binding (Python, Ruby) needs to survive `fork`: one tokio runtime per
//! process, built again in a forked child, and values that a child must neither use nor drop.
//!
//! After `fork` only the forking thread exists in the child: the parent's runtime has no
//! worker threads, its timers and sockets belong to nobody, and dropping it would wait for
//! threads that will never answer (Puma, Unicorn, gunicorn and `multiprocessing` all fork).

use std::mem::ManuallyDrop;
use std::ops::Deref;
use std::sync::{Arc, Mutex};

use tokio::runtime::Handle;

struct ProcessRuntime {
    pid: u32,
    runtime: Arc<tokio::runtime::Runtime>,
}

static RUNTIME: Mutex<Option<ProcessRuntime>> = Mutex::new(None);

/// The tokio runtime of this process, created on first use (up to 4 worker threads). In a
/// forked child a new one is built and the parent's is leaked, never dropped.
///
/// ```
/// let handle = conductor_worker::host::process_runtime().unwrap();
/// assert_eq!(handle.block_on(async { 1 + 1 }), 2);
/// ```
pub fn process_runtime() -> std::io::Result<Handle> {
    let pid = std::process::id();
    let mut slot = RUNTIME.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(current) = slot.as_ref() {
        if current.pid == pid {
            return Ok(current.runtime.handle().clone());
        }
        if let Some(inherited) = slot.take() {
            std::mem::forget(inherited);
        }
    }
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
        .clamp(1, 4);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .thread_name("conductor-worker-tokio")
        .enable_all()
        .build()?;
    let runtime = Arc::new(runtime);
    let handle = runtime.handle().clone();
    *slot = Some(ProcessRuntime { pid, runtime });
    Ok(handle)
}

/// A value that belongs to the process that made it: dropped normally there, leaked in a
/// forked child, where [`ProcessBound::check`] refuses to hand it out.
///
/// ```
/// use conductor_worker::host::ProcessBound;
/// let bound = ProcessBound::new(vec![1, 2, 3]);
/// assert_eq!(bound.check().map(|v| v.len()), Ok(3));
/// assert_eq!(bound.len(), 3); // Deref does not check: for calls that are safe in a child
/// ```
#[derive(Debug)]
pub struct ProcessBound<T> {
    value: ManuallyDrop<T>,
    pid: u32,
}

impl<T> ProcessBound<T> {
    /// Binds `value` to the calling process.
    pub fn new(value: T) -> Self {
        Self {
            value: ManuallyDrop::new(value),
            pid: std::process::id(),
        }
    }

    /// The value, or `Err(pid of its process)` in a forked child.
    pub fn check(&self) -> Result<&T, u32> {
        if self.pid == std::process::id() {
            Ok(&self.value)
        } else {
            Err(self.pid)
        }
    }
}

impl<T> Deref for ProcessBound<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.value
    }
}

impl<T> Drop for ProcessBound<T> {
    fn drop(&mut self) {
        if self.pid == std::process::id() {
            // SAFETY: dropped exactly once, here, and never used again.
            unsafe { ManuallyDrop::drop(&mut self.value) };
        }
    }
}
