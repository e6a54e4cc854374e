//! The `tandem` command: CLI and wiring only.
fn main() {
    eprintln!("tandem: not wired yet");
    std::process::exit(2);
}
