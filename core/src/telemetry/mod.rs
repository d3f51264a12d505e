//! What the runtime tells the outside: tracing spans (poll, execute, update, each with the task
//! type and, where there is one, the task id), [`Event`]s for listeners, and Prometheus
//! [`metrics`] under conductor-python's canonical names; hosts pull events and log records in
//! batches ([`EventQueue`], [`host_log`]).

pub mod endpoint;
mod events;
#[cfg(feature = "host-log")]
pub mod host_log;
pub mod metrics;
mod pull;

pub use crate::field::Field as EventField;
pub(crate) use events::EventBus;
pub use events::{Event, Listener};
pub use pull::{EventQueue, EventRecord};
