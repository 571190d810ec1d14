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
}
