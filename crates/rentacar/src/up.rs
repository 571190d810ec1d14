//! `rentacar up`: the whole platform on one machine.
//!
//! Four services on ports 50051-50054, each with its own SQLite file under the data
//! folder, and a NATS server: the one at `RENTACAR_NATS_URL` when it answers, otherwise a
//! `nats-server -js` started here with its store in the data folder. Callers sign in with
//! tokens from `rentacar token`, signed by a development key the data folder keeps.
//! Ctrl-C stops all.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use anyhow::Context;
use rentacar_events::nats_server::NatsServer;
use rentacar_runtime::{config::Env, shutdown};
use tokio::{net::TcpListener, task::JoinSet};
use tokio_util::sync::CancellationToken;

use crate::Service;

pub async fn run(env: &Env) -> anyhow::Result<()> {
    let data_dir = PathBuf::from(env.get("RENTACAR_DATA_DIR").unwrap_or_else(|| "data".to_owned()));
    std::fs::create_dir_all(&data_dir).with_context(|| format!("cannot create {}", data_dir.display()))?;
    let data_dir = data_dir.canonicalize()?;

    let nats_url = env.url_or("RENTACAR_NATS_URL", "nats://127.0.0.1:4222", &["nats"])?;
    let (nats_url, _nats_server) = match reachable(&nats_url).await {
        true => {
            println!("using NATS at {nats_url}");
            (nats_url, None)
        }
        false => {
            let binary = NatsServer::find_binary().context(
                "nats-server is not installed and no NATS answers at RENTACAR_NATS_URL; \
                 `cargo xtask up` installs it, or set RENTACAR_NATS_SERVER to its path",
            )?;
            let server = NatsServer::start(&binary, 0, &data_dir.join("nats")).await?;
            println!("started nats-server with JetStream at {}", server.url());
            (server.url(), Some(server))
        }
    };

    let auth = crate::dev_auth::settings(env, &data_dir)?;

    let stop = CancellationToken::new();
    let mut services = JoinSet::new();
    for service in Service::ALL {
        let port = service.default_port();
        let addr = SocketAddr::from(([0, 0, 0, 0], port));
        let listener = TcpListener::bind(addr)
            .await
            .with_context(|| format!("port {port} for {} is taken", service.name()))?;
        let database_url = env
            .get(&format!(
                "RENTACAR_{}_DATABASE_URL",
                service.name().to_uppercase()
            ))
            .unwrap_or_else(|| format!("sqlite://{}/{}.db?mode=rwc", data_dir.display(), service.name()));
        let mut service_env = env.clone();
        for (name, value) in &auth {
            service_env = service_env.with(*name, value.clone());
        }
        let service_env = service_env
            .with("RENTACAR_DATABASE_URL", database_url)
            .with("RENTACAR_NATS_URL", nats_url.clone())
            .with(
                "RENTACAR_PAYMENT_URL",
                format!("http://127.0.0.1:{}", Service::Payment.default_port()),
            )
            .with(
                "RENTACAR_DRAIN_MS",
                env.get("RENTACAR_DRAIN_MS").unwrap_or_else(|| "0".to_owned()),
            );
        service.check_config(&service_env)?;
        let stop = stop.clone();
        services.spawn(async move { service.run(&service_env, listener, stop).await });
    }

    println!("\nrentacar is up (data in {}):", data_dir.display());
    for service in Service::ALL {
        println!("  {:<12} 127.0.0.1:{}", service.name(), service.default_port());
    }
    println!("\ntry:\n  grpcurl -plaintext 127.0.0.1:50053 list");
    let authorization = if auth.is_empty() {
        String::new()
    } else {
        let binary = std::env::current_exe().unwrap_or_else(|_| PathBuf::from("rentacar"));
        println!(
            "  TOKEN=$(RENTACAR_DATA_DIR={} {} token --customer alice --manager)",
            data_dir.display(),
            binary.display()
        );
        " -H \"authorization: Bearer $TOKEN\"".to_owned()
    };
    println!(
        "  grpcurl -plaintext{authorization} -d '{{\"car_number\":\"1111\",\"model\":\"Corolla\",\"daily_price\":{{\"currency_code\":\"JPY\",\"amount_minor\":5000}}}}' \\\n    127.0.0.1:50053 rentacar.fleet.v1.FleetService/RegisterCar"
    );
    println!("\nCtrl-C stops everything.");

    tokio::select! {
        _ = shutdown::signal() => {}
        Some(result) = services.join_next() => {
            result??;
            anyhow::bail!("a service stopped unexpectedly");
        }
    }
    stop.cancel();
    while let Some(result) = services.join_next().await {
        result??;
    }
    println!("stopped");
    Ok(())
}

/// Whether something accepts connections at a `nats://host:port` URL.
async fn reachable(url: &str) -> bool {
    let authority = url
        .trim_start_matches("nats://")
        .split('/')
        .next()
        .unwrap_or_default();
    let connect = tokio::net::TcpStream::connect(authority.to_owned());
    matches!(
        tokio::time::timeout(Duration::from_millis(500), connect).await,
        Ok(Ok(_))
    )
}
