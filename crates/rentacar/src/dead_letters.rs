//! `rentacar dead-letters list|replay`: the operator's view of poison events.

use std::time::Duration;

use anyhow::Context;
use async_nats::jetstream;
use rentacar_events::dead_letter;
use rentacar_runtime::config::Env;

async fn connect(env: &Env) -> anyhow::Result<jetstream::Context> {
    let url = env.url_or("RENTACAR_NATS_URL", "nats://127.0.0.1:4222", &["nats", "tls"])?;
    let client = async_nats::ConnectOptions::new()
        .connection_timeout(Duration::from_secs(5))
        .connect(&url)
        .await
        .with_context(|| format!("cannot reach NATS at {url}"))?;
    Ok(jetstream::new(client))
}

pub async fn list(env: &Env, consumer: Option<&str>, after: u64, limit: usize) -> anyhow::Result<()> {
    let js = connect(env).await?;
    let page = dead_letter::list(&js, consumer, after, limit.max(1))
        .await
        .map_err(|e| anyhow::anyhow!(e))?;
    for letter in &page.letters {
        println!(
            "{}\t{}\t{}\t{}",
            letter.sequence, letter.consumer, letter.original_subject, letter.error
        );
    }
    println!("{} dead letters", page.letters.len());
    if let Some(next) = page.next_after {
        println!("more: dead-letters list --after {next}");
    }
    Ok(())
}

pub async fn replay(env: &Env, consumer: Option<&str>) -> anyhow::Result<()> {
    let js = connect(env).await?;
    let replayed = dead_letter::replay(&js, consumer)
        .await
        .map_err(|e| anyhow::anyhow!(e))?;
    println!("{replayed} dead letters replayed");
    Ok(())
}
