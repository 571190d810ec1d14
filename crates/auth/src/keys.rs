//! The issuer's signing keys, from a JWKS file or URL, looked up by key id.

use std::{
    collections::HashMap,
    fmt,
    path::PathBuf,
    sync::{Arc, RwLock},
    time::{Duration, Instant},
};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::{client::legacy::Client, rt::TokioExecutor};
use jsonwebtoken::{
    Algorithm, DecodingKey,
    jwk::{AlgorithmParameters, JwkSet, KeyAlgorithm},
};

/// A JWKS larger than this is not one.
const MAX_JWKS_BYTES: usize = 256 * 1024;
/// How long fetching the JWKS may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// Tokens naming unknown key ids fetch the keys again at most this often, so that made-up
/// key ids cannot turn every call into a fetch.
pub(crate) const MIN_REFRESH_INTERVAL: Duration = Duration::from_secs(10);

/// Where the keys are published.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JwksSource {
    /// A JWKS document on disk (what `rentacar up` writes).
    File(PathBuf),
    /// The issuer's JWKS endpoint (`http://` or `https://`).
    Url(String),
}

impl JwksSource {
    /// A URL if `value` starts with `http://` or `https://`, otherwise a file path.
    pub fn parse(value: &str) -> Self {
        if value.starts_with("https://") || value.starts_with("http://") {
            Self::Url(value.to_owned())
        } else {
            Self::File(PathBuf::from(value))
        }
    }
}

impl fmt::Display for JwksSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::File(path) => write!(f, "{}", path.display()),
            Self::Url(url) => f.write_str(url),
        }
    }
}

#[derive(Clone, Debug, thiserror::Error)]
pub enum KeysError {
    #[error("cannot read the JWKS at {source_name}: {reason}")]
    Unreadable { source_name: String, reason: String },
    #[error("the JWKS at {source_name} is not valid: {reason}")]
    Invalid { source_name: String, reason: String },
}

/// One verification key: what it verifies and with which algorithm.
#[derive(Clone)]
pub(crate) struct Key {
    pub decoding: DecodingKey,
    pub algorithm: Algorithm,
}

#[derive(Default)]
struct Loaded {
    by_id: HashMap<String, Key>,
    /// Keys published without an id; usable only when there is exactly one key.
    without_id: Vec<Key>,
}

impl Loaded {
    fn is_empty(&self) -> bool {
        self.by_id.is_empty() && self.without_id.is_empty()
    }
}

/// The last time the keys were fetched, and why that failed if it did.
#[derive(Default)]
struct Attempt {
    at: Option<Instant>,
    failure: Option<KeysError>,
}

/// The keys of one JWKS source, fetched again when a token names a key id not seen yet.
pub(crate) struct KeySet {
    source: JwksSource,
    loaded: RwLock<Loaded>,
    /// One fetch at a time; callers that waited for it look again first.
    fetching: tokio::sync::Mutex<Attempt>,
    min_refresh: Duration,
}

/// The outcome of looking a key up.
pub(crate) enum Lookup {
    Found(Key),
    Unknown,
    /// The keys could not be fetched at all (the issuer is down).
    Unavailable(KeysError),
}

impl KeySet {
    /// A file is read now, so a bad one stops the process at start; a URL is fetched at
    /// the first call, so an issuer that is down at start does not.
    pub fn new(source: JwksSource) -> Result<Self, KeysError> {
        let mut set = Self {
            source,
            loaded: RwLock::default(),
            fetching: tokio::sync::Mutex::default(),
            min_refresh: MIN_REFRESH_INTERVAL,
        };
        if let JwksSource::File(path) = &set.source {
            let text = std::fs::read(path).map_err(|e| set.unreadable(e))?;
            set.install(&text)?;
            set.fetching.get_mut().at = Some(Instant::now());
        }
        Ok(set)
    }

    #[cfg(test)]
    pub fn refreshing_every(mut self, interval: Duration) -> Self {
        self.min_refresh = interval;
        self
    }

    /// The key `kid` names (or the only key, for a token without one).
    pub async fn find(&self, kid: Option<&str>) -> Lookup {
        if let Some(key) = self.cached(kid) {
            return Lookup::Found(key);
        }
        let mut attempt = self.fetching.lock().await;
        if let Some(key) = self.cached(kid) {
            return Lookup::Found(key);
        }
        let holding_keys = !self.read().is_empty();
        // However many tokens name keys it lacks, the issuer is asked at most once per
        // interval, also while it does not answer.
        if attempt.at.is_some_and(|at| at.elapsed() < self.min_refresh) {
            return match &attempt.failure {
                Some(err) if !holding_keys => Lookup::Unavailable(err.clone()),
                _ => Lookup::Unknown,
            };
        }
        attempt.at = Some(Instant::now());
        match self.fetch().await.and_then(|text| self.install(&text)) {
            Ok(()) => {
                attempt.failure = None;
                self.cached(kid).map_or(Lookup::Unknown, Lookup::Found)
            }
            Err(err) => {
                tracing::warn!(error = %err, "cannot refresh the token signing keys");
                attempt.failure = Some(err.clone());
                if holding_keys {
                    // The keys held still stand; this one is simply not among them.
                    Lookup::Unknown
                } else {
                    Lookup::Unavailable(err)
                }
            }
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Loaded> {
        self.loaded
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn cached(&self, kid: Option<&str>) -> Option<Key> {
        let loaded = self.read();
        match kid {
            Some(kid) => loaded.by_id.get(kid).cloned(),
            None if loaded.by_id.len() + loaded.without_id.len() == 1 => {
                loaded.by_id.values().chain(&loaded.without_id).next().cloned()
            }
            None => None,
        }
    }

    fn unreadable(&self, reason: impl fmt::Display) -> KeysError {
        KeysError::Unreadable {
            source_name: self.source.to_string(),
            reason: reason.to_string(),
        }
    }

    fn invalid(&self, reason: impl fmt::Display) -> KeysError {
        KeysError::Invalid {
            source_name: self.source.to_string(),
            reason: reason.to_string(),
        }
    }

    async fn fetch(&self) -> Result<Vec<u8>, KeysError> {
        match &self.source {
            JwksSource::File(path) => tokio::fs::read(path).await.map_err(|e| self.unreadable(e)),
            JwksSource::Url(url) => {
                let fetched = tokio::time::timeout(FETCH_TIMEOUT, get(url)).await;
                fetched
                    .unwrap_or_else(|_| Err(format!("no answer within {FETCH_TIMEOUT:?}")))
                    .map_err(|e| self.unreadable(e))
            }
        }
    }

    /// Replaces the keys with those of `text`, keeping the RS256 and ES256 signing keys.
    fn install(&self, text: &[u8]) -> Result<(), KeysError> {
        let set: JwkSet = serde_json::from_slice(text).map_err(|e| self.invalid(e))?;
        let mut loaded = Loaded::default();
        for jwk in &set.keys {
            let algorithm = match (&jwk.algorithm, jwk.common.key_algorithm) {
                (AlgorithmParameters::RSA(_), None | Some(KeyAlgorithm::RS256)) => Algorithm::RS256,
                (AlgorithmParameters::EllipticCurve(_), None | Some(KeyAlgorithm::ES256)) => Algorithm::ES256,
                // Other algorithms (and encryption keys) are not accepted here.
                _ => continue,
            };
            if jwk
                .common
                .public_key_use
                .as_ref()
                .is_some_and(|u| *u != jsonwebtoken::jwk::PublicKeyUse::Signature)
            {
                continue;
            }
            let decoding = DecodingKey::from_jwk(jwk).map_err(|e| self.invalid(e))?;
            let key = Key { decoding, algorithm };
            match &jwk.common.key_id {
                Some(kid) => {
                    loaded.by_id.insert(kid.clone(), key);
                }
                None => loaded.without_id.push(key),
            }
        }
        if loaded.is_empty() {
            return Err(self.invalid("it holds no RS256 or ES256 signing key"));
        }
        *self
            .loaded
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = loaded;
        Ok(())
    }
}

/// GETs `url`'s body over HTTP or HTTPS (the system's trusted roots).
async fn get(url: &str) -> Result<Vec<u8>, String> {
    let uri: http::Uri = url.parse().map_err(|e| format!("not a URL: {e}"))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_provider_and_native_roots(provider)
        .map_err(|e| format!("no TLS roots: {e}"))?
        .https_or_http()
        .enable_http1()
        .build();
    let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new()).build(connector);
    let response = client.get(uri).await.map_err(|e| e.to_string())?;
    if !response.status().is_success() {
        return Err(format!("answered {}", response.status()));
    }
    let body = Limited::new(response.into_body(), MAX_JWKS_BYTES)
        .collect()
        .await
        .map_err(|e| e.to_string())?;
    Ok(body.to_bytes().to_vec())
}
