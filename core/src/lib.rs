//! placeholder
/// The version of this crate.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
