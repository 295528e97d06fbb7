//! tango-gateway: a secure outbound HTTP gateway in front of the Tango rewards API.
//!
//! The request path is assembled in [`stack`]; start with it.
pub mod access_log;
pub mod admin;
pub mod app;
pub mod auth;
pub mod body;
pub mod certs;
pub mod config;
pub mod context;
pub mod deadline;
pub mod demo;
pub mod doctor;
pub mod error;
pub mod headers;
pub mod inbound;
pub mod metrics;
pub mod random_id;
pub mod reload;
pub mod request_id;
pub mod rescue;
pub mod retry;
pub mod rt;
pub mod stack;
pub mod telemetry;
pub mod tools;
pub mod upstream;
