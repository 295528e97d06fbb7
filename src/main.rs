//! The `tango-gateway` binary: everything lives in the library; see `cli.rs`.
mod cli;

/// mimalloc instead of glibc's malloc: a proxy allocates and frees small buffers, headers
/// and futures on every request, from two threads, and the benchmark's profile showed
/// glibc's malloc/free at about 14 % of the gateway's CPU (`bench/`, README "Performance").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    cli::main()
}
