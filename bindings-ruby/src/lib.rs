//! The `conductor_worker_ruby` extension: the Rust core seen from Ruby. Each module here
//! matches a concept of the gem; the Ruby layer on top (`lib/conductor_worker`) is what users
//! require. Ruby code never runs on the core's threads: Ruby threads, fibers and Ractors pull
//! tasks from a [`worker::RbWorker`] with the GVL released while they wait.

mod devserver;
mod errors;
mod gvl;
mod json;
mod logging;
mod runtime;
mod task;
mod worker;

use magnus::{Error, Ruby, function, prelude::*};

/// The version of the Rust core this extension was built from.
fn core_version() -> &'static str {
    conductor_worker::VERSION
}

#[magnus::init]
fn init(ruby: &Ruby) -> Result<(), Error> {
    // Every method is safe to call from any Ractor: no Ruby object is kept in Rust statics,
    // and the only objects shared between Ractors (workers) are frozen and hold Rust data.
    // SAFETY: called during extension initialisation, as Ruby requires.
    unsafe { rb_sys::rb_ext_ractor_safe(true) };
    let module = ruby.define_module("ConductorWorker")?;
    let native = module.define_module("Native")?;
    native.define_singleton_method("core_version", function!(core_version, 0))?;
    native.define_singleton_method("option_tables", function!(runtime::option_tables, 0))?;
    native.define_singleton_method("error_kinds", function!(errors::error_kinds, 0))?;
    native.define_singleton_method(
        "check_worker_options",
        function!(runtime::check_worker_options, 2),
    )?;
    native.define_singleton_method("run_devserver", function!(devserver::run_devserver, 1))?;
    logging::define(native)?;
    task::define(ruby, module)?;
    worker::define(ruby, native)?;
    runtime::define(ruby, native)?;
    Ok(())
}
