//! What a binding needs to survive `fork`: one tokio runtime per
//! process, built again in a forked child, and values that a child must neither use nor drop.
//!
//! After `fork` only the forking thread exists in the child: the parent's runtime has no
//! worker threads, its timers and sockets belong to nobody, and dropping it would wait for
//! threads that will never answer (Puma, Unicorn, gunicorn and `multiprocessing` all fork).

use std::mem::ManuallyDrop;
use std::ops::Deref;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, Once};

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

/// Forks this process's memory has gone through, counted by a `pthread_atfork` handler: a
/// process-identity check on every call from a host language (several per task) must not cost
/// a `getpid` system call each.
static FORKS: AtomicU32 = AtomicU32::new(0);
static WATCH_FORKS: Once = Once::new();
static FORKS_WATCHED: AtomicBool = AtomicBool::new(false);

extern "C" fn count_fork_in_child() {
    // Only an atomic increment: the child of a multi-threaded process may do little else.
    FORKS.fetch_add(1, Ordering::Relaxed);
}

/// This process's place in its fork lineage: `(forks counted, pid)`. The pid is read only when
/// the fork handler could not be installed.
pub(crate) fn lineage() -> (u32, Option<u32>) {
    WATCH_FORKS.call_once(|| {
        // SAFETY: the handler touches nothing but a static atomic.
        let installed = unsafe { libc::pthread_atfork(None, None, Some(count_fork_in_child)) } == 0;
        FORKS_WATCHED.store(installed, Ordering::Release);
    });
    let pid = (!FORKS_WATCHED.load(Ordering::Acquire)).then(std::process::id);
    (FORKS.load(Ordering::Relaxed), pid)
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
    lineage: (u32, Option<u32>),
}

impl<T> ProcessBound<T> {
    /// Binds `value` to the calling process.
    pub fn new(value: T) -> Self {
        Self {
            value: ManuallyDrop::new(value),
            pid: std::process::id(),
            lineage: lineage(),
        }
    }

    fn in_own_process(&self) -> bool {
        self.lineage == lineage()
    }

    /// The value, or `Err(pid of its process)` in a forked child.
    pub fn check(&self) -> Result<&T, u32> {
        if self.in_own_process() {
            Ok(&self.value)
        } else {
            Err(self.pid)
        }
    }

    /// The value itself, or `Err(pid of its process)` in a forked child (the value is then
    /// leaked, never dropped).
    pub fn into_inner(self) -> Result<T, u32> {
        let mut this = ManuallyDrop::new(self);
        if this.in_own_process() {
            // SAFETY: `this` is never dropped, so the value is taken out exactly once.
            Ok(unsafe { ManuallyDrop::take(&mut this.value) })
        } else {
            Err(this.pid)
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
        if self.in_own_process() {
            // SAFETY: dropped exactly once, here, and never used again.
            unsafe { ManuallyDrop::drop(&mut self.value) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::ProcessBound;

    #[test]
    fn a_forked_child_is_refused_the_parents_values_but_keeps_its_own() {
        let parent = std::process::id();
        let inherited = ProcessBound::new(7_u8);
        assert_eq!(inherited.check(), Ok(&7));
        // SAFETY: the child only reads memory, makes a stack value and exits without unwinding.
        let child = unsafe { libc::fork() };
        assert!(child >= 0, "fork failed");
        if child == 0 {
            let own = ProcessBound::new(8_u8);
            let ok = inherited.check() == Err(parent) && own.check() == Ok(&8);
            std::mem::forget(own);
            std::mem::forget(inherited);
            // SAFETY: ends the child at once, running nothing of the parent's.
            unsafe { libc::_exit(if ok { 0 } else { 1 }) };
        }
        let mut status = 0;
        // SAFETY: waits for the child made above.
        assert_eq!(unsafe { libc::waitpid(child, &mut status, 0) }, child);
        assert!(libc::WIFEXITED(status), "the child did not exit: {status}");
        assert_eq!(
            libc::WEXITSTATUS(status),
            0,
            "the child saw the wrong process"
        );
        assert_eq!(inherited.check(), Ok(&7));
    }
}
