//! `rentacar`: one binary for every service, the whole platform, and migrations.

use clap::{Parser, Subcommand};
use rentacar::{Service, up};
use rentacar_runtime::{config::Env, telemetry};

#[derive(Parser)]
#[command(
    version,
    about = "rentacar: a rent-a-car reservation platform of gRPC services"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Runs one service. Configured by RENTACAR_* variables (see README).
    Serve { service: Service },
    /// Runs the whole platform on this machine: four services, SQLite files and NATS.
    Up,
    /// Applies a service's database migrations and exits.
    Migrate { service: Service },
    /// Prints a token for calling a platform that `rentacar up` runs (signed with the
    /// development key in RENTACAR_DATA_DIR): `grpcurl -H "authorization: Bearer $TOKEN"`.
    Token {
        /// The customer it speaks for (its `sub`).
        #[arg(long)]
        customer: String,
        /// Adds the `manager` role, which may register cars.
        #[arg(long)]
        manager: bool,
        /// How long it is valid, such as 30m, 1h or 7days.
        #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
        ttl: std::time::Duration,
    },
    /// Maintains mypage's read model (configured as for `serve mypage`).
    Mypage {
        #[command(subcommand)]
        action: MypageAction,
    },
    /// Lists or replays events that a consumer failed to apply, or that the stream refused to
    /// take from a service's outbox (at RENTACAR_NATS_URL).
    DeadLetters {
        #[command(subcommand)]
        action: DeadLetterAction,
    },
}

#[derive(Subcommand)]
enum DeadLetterAction {
    /// Shows dead letters, a page at a time, with their consumer, subject and error.
    List {
        /// Only this consumer's, for example `reservation-saga` or `outbox-payment`.
        #[arg(long)]
        consumer: Option<String>,
        /// Continue after this sequence, as the previous page says.
        #[arg(long, default_value_t = 0)]
        after: u64,
        /// At most this many.
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// Sends dead letters back to their subjects (after fixing what failed), then removes them.
    Replay {
        #[arg(long)]
        consumer: Option<String>,
    },
}

#[derive(Subcommand)]
enum MypageAction {
    /// Empties the read model and applies every event of the stream to it again.
    Rebuild,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let env = Env::process();
    // Two TLS crypto back ends are linked in (the AWS SDK brings its own); say which one
    // the rest of the process uses.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let process_name = match &cli.command {
        Command::Serve { service } => service.name(),
        _ => "rentacar",
    };
    let telemetry = telemetry::init(&telemetry::TelemetryConfig::from_env(&env, process_name)?)?;

    let result = match cli.command {
        Command::Serve { service } => rentacar::serve(service, &env).await,
        Command::Up => up::run(&env).await,
        Command::Migrate { service } => rentacar::migrate(service, &env).await,
        Command::Token {
            customer,
            manager,
            ttl,
        } => rentacar::dev_auth::token(&env, &customer, manager, ttl).map(|token| println!("{token}")),
        Command::Mypage {
            action: MypageAction::Rebuild,
        } => rentacar::rebuild_mypage(&env).await,
        Command::DeadLetters { action } => match action {
            DeadLetterAction::List {
                consumer,
                after,
                limit,
            } => rentacar::dead_letters::list(&env, consumer.as_deref(), after, limit).await,
            DeadLetterAction::Replay { consumer } => {
                rentacar::dead_letters::replay(&env, consumer.as_deref()).await
            }
        },
    };
    telemetry.shutdown().await;
    result
}
