//! The `forge` command line: create, run and operate a Forge application (see `cli/`).

mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}
