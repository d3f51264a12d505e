//! The `conductor_worker_ruby` extension: the Rust core seen from Ruby.

use magnus::{Error, Ruby, function, prelude::*};

fn core_version() -> &'static str {
    conductor_worker::VERSION
}

#[magnus::init]
fn init(ruby: &Ruby) -> Result<(), Error> {
    let module = ruby.define_module("ConductorWorker")?;
    let native = module.define_module("Native")?;
    native.define_singleton_method("core_version", function!(core_version, 0))?;
    Ok(())
}
