//! The inbound side: admission of callers, path normalisation, route selection, listener,
//! serving workers.
pub mod accept;
pub mod admission;
pub mod body;
pub mod connection;
pub mod limit;
pub mod listener;
pub mod path;
pub mod route;
pub mod workers;
