//! The `tandem` command: CLI and wiring only (see `tandem::cli`).
fn main() -> std::process::ExitCode {
    tandem::cli::main()
}
