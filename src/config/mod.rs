//! Configuration: the YAML schema of PRODUCT.md §3, loaded, interpolated and validated.
mod model;
pub use model::*;
