//! Compiles the XDP program in bpf/ with clang into `$OUT_DIR/tandem_xdp.o`, which
//! src/io/xdp/program.rs embeds with `include_bytes!` (so the binary carries its own program
//! and needs no files at run time).
//!
//! clang is a build requirement of the AF_XDP backend: when it is missing the build stops
//! with a message that says which package to install, rather than an obscure error later.
//! `TANDEM_CLANG` overrides the compiler (e.g. `clang-16`).

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

const SOURCE: &str = "bpf/tandem_xdp.c";

fn main() {
    // Only the AF_XDP backend (cargo feature `xdp`) embeds the program.
    if env::var_os("CARGO_FEATURE_XDP").is_none() {
        return;
    }
    println!("cargo:rerun-if-changed={SOURCE}");
    println!("cargo:rerun-if-env-changed=TANDEM_CLANG");

    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let object = out_dir.join("tandem_xdp.o");
    let clang = env::var("TANDEM_CLANG").unwrap_or_else(|_| "clang".to_owned());

    let mut command = Command::new(&clang);
    command
        .args(["-O2", "-g", "-Wall", "-Werror", "-target", "bpf"])
        // asm/types.h lives in the multiarch directory on Debian/Ubuntu; the BPF target does
        // not search it by default.
        .args(multiarch_include())
        .arg("-c")
        .arg(SOURCE)
        .arg("-o")
        .arg(&object);

    match command.output() {
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => fail(&format!(
            "`{clang}` was not found. tandem compiles its XDP program (bpf/tandem_xdp.c) with \
             clang at build time.\n  Debian/Ubuntu: apt-get install clang linux-libc-dev\n  \
             or set TANDEM_CLANG to a clang binary."
        )),
        Err(error) => fail(&format!("could not run `{clang}`: {error}")),
        Ok(output) if !output.status.success() => fail(&format!(
            "`{clang}` failed to compile {SOURCE} (exit {}):\n{}\nThe program needs the \
             kernel UAPI headers (Debian/Ubuntu: apt-get install linux-libc-dev).",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        )),
        Ok(_) => {}
    }
}

/// `-I/usr/include/<multiarch>` for the host, when that directory exists.
fn multiarch_include() -> Vec<String> {
    let arch = env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default();
    let triple = match arch.as_str() {
        "x86_64" => "x86_64-linux-gnu",
        "aarch64" => "aarch64-linux-gnu",
        "riscv64" => "riscv64-linux-gnu",
        "powerpc64" => "powerpc64le-linux-gnu",
        "s390x" => "s390x-linux-gnu",
        _ => return Vec::new(),
    };
    let dir = Path::new("/usr/include").join(triple);
    if dir.join("asm/types.h").exists() {
        vec![format!("-I{}", dir.display())]
    } else {
        Vec::new()
    }
}

fn fail(message: &str) -> ! {
    eprintln!("error: {message}");
    std::process::exit(1);
}
