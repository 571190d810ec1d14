//! `rentacar`: one binary for every service, the whole platform, and migrations.

#![forbid(unsafe_code)]

mod cli;
mod up;

use clap::Parser;
use rentacar_runtime::{config::Env, telemetry};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = cli::Cli::parse();
    let env = Env::process();
    telemetry::init(telemetry::LogFormat::from_env(&env)?);

    match cli.command {
        cli::Command::Serve { service } => cli::serve(service, &env).await,
        cli::Command::Up => up::run(&env).await,
        cli::Command::Migrate { service } => cli::migrate(service, &env).await,
    }
}
