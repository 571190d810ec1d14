//! The four services by name, and the commands that run one of them.

use std::net::SocketAddr;

use anyhow::Context;
use clap::ValueEnum;
use rentacar_runtime::{
    RunError, ServiceConfig,
    config::{ConfigError, Env},
    db, shutdown,
};
use sea_orm_migration::MigratorTrait;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, ValueEnum)]
pub enum Service {
    Reservation,
    Payment,
    Fleet,
    Mypage,
}

impl Service {
    pub const ALL: [Service; 4] = [Self::Reservation, Self::Payment, Self::Fleet, Self::Mypage];

    pub fn name(self) -> &'static str {
        match self {
            Self::Reservation => rentacar_reservation::SERVICE,
            Self::Payment => rentacar_payment::SERVICE,
            Self::Fleet => rentacar_fleet::SERVICE,
            Self::Mypage => rentacar_mypage::SERVICE,
        }
    }

    pub fn default_port(self) -> u16 {
        match self {
            Self::Reservation => 50051,
            Self::Payment => 50052,
            Self::Fleet => 50053,
            Self::Mypage => 50054,
        }
    }

    /// Runs the service with its configuration from `env`.
    pub async fn run(
        self,
        env: &Env,
        listener: TcpListener,
        shutdown: CancellationToken,
    ) -> anyhow::Result<()> {
        let result: Result<(), RunError> = match self {
            Self::Reservation => {
                rentacar_reservation::run(rentacar_reservation::Config::from_env(env)?, listener, shutdown)
                    .await
            }
            Self::Payment => {
                rentacar_payment::run(ServiceConfig::from_env(env, self.name())?, listener, shutdown).await
            }
            Self::Fleet => {
                rentacar_fleet::run(ServiceConfig::from_env(env, self.name())?, listener, shutdown).await
            }
            Self::Mypage => {
                rentacar_mypage::run(rentacar_mypage::Config::from_env(env)?, listener, shutdown).await
            }
        };
        result.with_context(|| format!("{} stopped with an error", self.name()))
    }

    /// Checks everything `serve` reads without running it, and returns where the service
    /// would listen: `RENTACAR_LISTEN_ADDR` (default `0.0.0.0:<port>`).
    pub fn check_config(self, env: &Env) -> Result<SocketAddr, ConfigError> {
        match self {
            Self::Reservation => rentacar_reservation::Config::from_env(env).map(drop),
            Self::Payment => ServiceConfig::from_env(env, self.name()).map(drop),
            Self::Fleet => ServiceConfig::from_env(env, self.name()).map(drop),
            Self::Mypage => rentacar_mypage::Config::from_env(env).map(drop),
        }?;
        let default_addr = SocketAddr::from(([0, 0, 0, 0], self.default_port()));
        env.parse_or(
            "RENTACAR_LISTEN_ADDR",
            default_addr,
            "an address such as 0.0.0.0:50051",
        )
    }
}

/// `rentacar serve <service>`: listens on `RENTACAR_LISTEN_ADDR` (default `0.0.0.0:<port>`).
pub async fn serve(service: Service, env: &Env) -> anyhow::Result<()> {
    let addr = service.check_config(env)?;
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    tracing::info!(service = service.name(), %addr, "listening");

    let stop = CancellationToken::new();
    let signal = stop.clone();
    tokio::spawn(async move {
        shutdown::signal().await;
        signal.cancel();
    });
    service.run(env, listener, stop).await?;
    tracing::info!(service = service.name(), "stopped");
    Ok(())
}

/// The settings of a command that serves no calls (migrating, rebuilding): what a
/// service reads, without authentication, which only calls need.
fn serving_nothing(env: &Env) -> Env {
    env.clone().with("RENTACAR_AUTH", "off")
}

/// `rentacar migrate <service>`: brings the service's database up to date.
pub async fn migrate(service: Service, env: &Env) -> anyhow::Result<()> {
    let config = ServiceConfig::from_env(&serving_nothing(env), service.name())?;
    let url = &config.database_connect_url();
    let result = match service {
        Service::Reservation => {
            db::connect_and_migrate::<rentacar_reservation::migration::Migrator>(url).await
        }
        Service::Payment => db::connect_and_migrate::<rentacar_payment::migration::Migrator>(url).await,
        Service::Fleet => db::connect_and_migrate::<rentacar_fleet::migration::Migrator>(url).await,
        Service::Mypage => db::connect_and_migrate::<rentacar_mypage::migration::Migrator>(url).await,
    };
    let shown = rentacar_runtime::config::without_password(&config.database_url);
    let db = result.with_context(|| format!("migrating {} at {shown}", service.name()))?;
    let applied = match service {
        Service::Reservation => {
            rentacar_reservation::migration::Migrator::get_applied_migrations(&db).await?
        }
        Service::Payment => rentacar_payment::migration::Migrator::get_applied_migrations(&db).await?,
        Service::Fleet => rentacar_fleet::migration::Migrator::get_applied_migrations(&db).await?,
        Service::Mypage => rentacar_mypage::migration::Migrator::get_applied_migrations(&db).await?,
    };
    println!("{}: {} migrations applied", service.name(), applied.len());
    Ok(())
}

/// `rentacar mypage rebuild`: the read model made again from the whole stream.
pub async fn rebuild_mypage(env: &Env) -> anyhow::Result<()> {
    let config = rentacar_mypage::Config::from_env(&serving_nothing(env))?;
    let applied = rentacar_mypage::rebuild::rebuild(&config)
        .await
        .context("rebuilding mypage's read model")?;
    println!("mypage: read model rebuilt from {applied} events");
    Ok(())
}
