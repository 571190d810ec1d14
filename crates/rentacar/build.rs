//! Link settings for the `rentacar` binary.

fn main() {
    let target_os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let target_env = std::env::var("CARGO_CFG_TARGET_ENV").unwrap_or_default();
    if target_os == "linux" && target_env == "gnu" {
        // Relative relocations packed into a bitmap (DT_RELR, glibc 2.36 and binutils 2.38 or
        // newer, as in the image's Debian 12): the loader reads a few kilobytes at start
        // instead of the 1.6 MB table of a position-independent binary this size, and every
        // process keeps those pages out of its memory.
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
    // The functions that run from start to idle, placed side by side, so that an idle
    // service maps a few pages of code instead of most of the binary. The list names the
    // release build's symbols (`cargo xtask bench --layout` makes it again); a function it
    // no longer names is placed as the compiler left it. The option is lld's, the linker
    // Rust uses on x86-64 Linux.
    let functions = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("startup-functions.txt");
    println!("cargo:rerun-if-changed={}", functions.display());
    let release = std::env::var("PROFILE").as_deref() == Ok("release");
    let x86_64_linux =
        target_os == "linux" && std::env::var("CARGO_CFG_TARGET_ARCH").as_deref() == Ok("x86_64");
    if release && x86_64_linux && functions.is_file() {
        println!(
            "cargo:rustc-link-arg-bins=-Wl,--symbol-ordering-file={}",
            functions.display()
        );
        println!("cargo:rustc-link-arg-bins=-Wl,--no-warn-symbol-ordering");
    }
}
