//! The state every handler shares, and what the routes may do with the port.
//!
//! Its own module so that the routes and the server both depend on it and not on each other: the
//! server builds the routes, and the routes reach the listener only through [`Port`].

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

use crate::auth::Auth;
use crate::faults::FaultState;
use crate::store::Store;

/// Everything the handlers share.
pub struct App {
    pub store: Arc<Store>,
    pub faults: FaultState,
    pub auth: Auth,
    /// The port, for `POST /admin/down` and uris (set once the server listens; weak because the
    /// listener holds the app).
    pub port: OnceLock<Weak<dyn Port>>,
}

/// The listening port as the routes use it.
pub trait Port: Send + Sync {
    /// The bound address.
    fn addr(&self) -> SocketAddr;

    /// Closes the port (after `grace`, so the caller's answer gets out), keeps it closed for
    /// `down`, then listens again on the same port with the same state.
    fn down_for(self: Arc<Self>, grace: Duration, down: Duration);
}

impl App {
    /// The port, unless the server is shutting down.
    pub fn port(&self) -> Option<Arc<dyn Port>> {
        self.port.get().and_then(Weak::upgrade)
    }
}
