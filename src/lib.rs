//! tango-gateway: a secure outbound HTTP gateway in front of the Tango rewards API.
pub mod certs;
pub mod config;
pub mod pki;
pub mod sandbox;
