//! Compiles `proto/` with the pure-Rust protox compiler (no system protoc needed), then
//! generates messages, clients and servers, and keeps the descriptor set for reflection.

use std::{env, fs, path::PathBuf};

use prost::Message;

const FILES: &[&str] = &[
    "rentacar/common/v1/money.proto",
    "rentacar/common/v1/refund.proto",
    "rentacar/events/v1/events.proto",
    "rentacar/fleet/v1/fleet.proto",
    "rentacar/mypage/v1/mypage.proto",
    "rentacar/payment/v1/payment.proto",
    "rentacar/reservation/v1/reservation.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(env::var("CARGO_MANIFEST_DIR")?).join("../../proto");
    println!("cargo:rerun-if-changed={}", root.display());

    let descriptors = protox::compile(FILES, [&root])?;
    let out_dir = PathBuf::from(env::var("OUT_DIR")?);
    fs::write(
        out_dir.join("rentacar_descriptor.bin"),
        descriptors.encode_to_vec(),
    )?;

    tonic_prost_build::configure().compile_fds(descriptors)?;
    Ok(())
}
