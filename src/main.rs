//! The `tango-gateway` binary: everything lives in the library; see `cli.rs`.
mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}
