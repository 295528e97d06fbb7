//! The `tango-gateway` binary: everything lives in the library; see `cli.rs`.
//!
//! The allocator is mimalloc. Every proxied request allocates an 8 kB read buffer on each
//! side (hyper's, for the next message while the parsed one still holds the last) plus a
//! kilobyte-sized boxed future; glibc serves those sizes from its bins, with coalescing, not
//! from its per-thread cache. Two interleaved `bench/run` A/Bs against nginx, seven runs per
//! allocator (`docs/performance.md`): CPU per request relative to nginx's 6 % lower at 32
//! connections, 10 % at 256. Built with `no_thp`: on hosts with transparent huge pages always
//! on, mimalloc's arenas otherwise come in 2 MB pages and idle RSS doubles (27.7 MB against
//! 15.1 MB measured); without them it is within 2 MB of glibc's.
mod cli;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    cli::main()
}
