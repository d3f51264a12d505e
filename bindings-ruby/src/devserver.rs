//! The bundled dev server: the gem's `conductor-devserver` executable runs its command line here.

use magnus::Error;

use crate::gvl;

/// Runs the dev server's command line (`args` with the program name first) with the GVL
/// released until SIGINT or SIGTERM; returns the exit status, or nil when Ruby interrupted the
/// wait (its pending exception is raised next).
pub(crate) fn run_devserver(args: Vec<String>) -> Result<Option<u8>, Error> {
    let handle = gvl::handle()?;
    gvl::block_on(&handle, conductor_devserver::command::run(args))
}
