//! Waiting in Rust with the GVL released; the process's tokio runtime and the fork check.
//!
//! Every wait is interruptible: Ruby's unblocking function (run on `Thread#kill`,
//! `Thread#raise`, a signal such as Ctrl-C, or VM shutdown) fires a [`Cancel`] the wait
//! races against. `rb_thread_call_without_gvl2` is used rather than `..._without_gvl`
//! because it never raises: a pending interrupt runs at the next Ruby-level check, after the
//! call returned normally, so no Ruby exception ever longjmps over Rust frames.

use std::ffi::c_void;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::Duration;

use conductor_worker::Cancel;
use conductor_worker::host::{ProcessBound, process_runtime};
use magnus::{Error, Ruby};
use tokio::runtime::Handle;

use crate::errors;

/// The tokio runtime of this process (rebuilt in a forked child).
pub(crate) fn handle() -> Result<Handle, Error> {
    process_runtime().map_err(|e| errors::internal(format!("cannot start the tokio runtime: {e}")))
}

/// Raises if an object made in another process (before a fork) is used.
pub(crate) fn fork_check<T>(bound: &ProcessBound<T>, what: &str) -> Result<(), Error> {
    bound.check().map(|_| ()).map_err(|pid| {
        errors::internal(format!(
            "this {what} was created in process {pid} and cannot be used after fork: \
             create a new ConductorWorker::Runner in the child process"
        ))
    })
}

/// Runs `f` without the GVL. `f` must return soon after `interrupted` is cancelled. `None`
/// when an interrupt was already pending (then `f` never ran).
pub(crate) fn without_gvl<F, R>(interrupted: &Cancel, f: F) -> Result<Option<R>, Error>
where
    F: FnOnce() -> R,
{
    struct Call<F, R> {
        f: Option<F>,
        result: Option<std::thread::Result<R>>,
    }
    unsafe extern "C" fn run<F: FnOnce() -> R, R>(data: *mut c_void) -> *mut c_void {
        // SAFETY: `data` is the `Call` below, alive for the whole call.
        let call = unsafe { &mut *data.cast::<Call<F, R>>() };
        if let Some(f) = call.f.take() {
            // A panic must never unwind into Ruby's C frames.
            call.result = Some(catch_unwind(AssertUnwindSafe(f)));
        }
        std::ptr::null_mut()
    }
    unsafe extern "C" fn unblock(data: *mut c_void) {
        // SAFETY: `data` is the `Cancel` below; Ruby calls this only while the call runs.
        let cancel = unsafe { &*data.cast::<Cancel>() };
        cancel.cancel();
    }
    let mut call = Call {
        f: Some(f),
        result: None,
    };
    // SAFETY: both pointers outlive the call, which does not return before `run` has.
    unsafe {
        rb_sys::rb_thread_call_without_gvl2(
            Some(run::<F, R>),
            (&raw mut call).cast(),
            Some(unblock),
            std::ptr::from_ref(interrupted).cast_mut().cast(),
        );
    }
    match call.result {
        None => Ok(None),
        Some(Ok(value)) => Ok(Some(value)),
        Some(Err(_)) => Err(errors::internal(
            "the operation panicked (a bug in conductor-worker; see the logs)",
        )),
    }
}

/// Runs `future` on the runtime and waits for it with the GVL released. When Ruby interrupts
/// the wait the future goes on in the background (a `stop` half done is worse than one
/// finished unobserved) and `None` comes back.
pub(crate) fn block_on<T, F>(handle: &Handle, future: F) -> Result<Option<T>, Error>
where
    F: Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    let task = handle.spawn(future);
    let interrupted = Cancel::new();
    let waited = without_gvl(&interrupted, || {
        handle.block_on(async {
            tokio::select! {
                joined = task => Some(joined),
                _ = interrupted.cancelled() => None,
            }
        })
    })?;
    match waited.flatten() {
        None => Ok(None),
        Some(Ok(value)) => Ok(Some(value)),
        Some(Err(e)) => Err(errors::internal(format!(
            "the operation ended without a result: {e}"
        ))),
    }
}

/// Seconds given by Ruby as a [`Duration`], or an `ArgumentError` naming the option.
pub(crate) fn seconds(ruby: &Ruby, name: &str, value: f64) -> Result<Duration, Error> {
    Duration::try_from_secs_f64(value).map_err(|_| {
        Error::new(
            ruby.exception_arg_error(),
            format!("{name} must be a number of seconds >= 0, not {value}"),
        )
    })
}
