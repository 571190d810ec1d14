//! Local sign-in: the development issuer that `rentacar up` creates in its data folder, and
//! `rentacar token`, which signs tokens with it.

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::Context;
use rentacar_auth::{DEV_ISSUER, Issuer, issuer::JWKS_FILE};
use rentacar_runtime::config::Env;

/// The issuer's folder inside the data folder.
fn folder(data_dir: &Path) -> PathBuf {
    data_dir.join("auth")
}

/// The authentication settings the services of `rentacar up` get: the development issuer's
/// (created on the first run), unless authentication is configured or turned off already.
pub fn settings(env: &Env, data_dir: &Path) -> anyhow::Result<Vec<(&'static str, String)>> {
    if env.get("RENTACAR_AUTH").is_some() || env.get("RENTACAR_AUTH_JWKS").is_some() {
        return Ok(Vec::new());
    }
    let dir = folder(data_dir);
    Issuer::load_or_create(&dir, DEV_ISSUER).context("creating the development signing key")?;
    Ok(vec![
        ("RENTACAR_AUTH_JWKS", dir.join(JWKS_FILE).display().to_string()),
        ("RENTACAR_AUTH_ISSUER", DEV_ISSUER.to_owned()),
    ])
}

/// `rentacar token`: a token for `customer` signed by the development issuer of the data
/// folder (`RENTACAR_DATA_DIR`, default `data`).
pub fn token(env: &Env, customer: &str, manager: bool, ttl: Duration) -> anyhow::Result<String> {
    let data_dir = PathBuf::from(env.get("RENTACAR_DATA_DIR").unwrap_or_else(|| "data".to_owned()));
    let issuer = Issuer::load(&folder(&data_dir), DEV_ISSUER).with_context(|| {
        format!(
            "no development signing key in {}: `rentacar up` creates it",
            folder(&data_dir).display()
        )
    })?;
    Ok(issuer.token(customer, manager, ttl))
}
