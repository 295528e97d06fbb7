//! The `tango-gateway` binary: everything lives in the library; see `cli.rs`.
//!
//! The system allocator is kept on purpose: mimalloc measured about 10 % less CPU per request
//! in `bench/run`, but 30 MB idle RSS instead of 11 MB and a peak at the 64 MB target
//! (README "Performance").
mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}
