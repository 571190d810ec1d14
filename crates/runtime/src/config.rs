//! Typed configuration from `RENTACAR_*` environment variables.
//!
//! Every value is parsed and checked when the process starts; an error names the variable,
//! the value it had and what would have been accepted, so a bad ConfigMap fails loudly at
//! rollout instead of at the first request.

use std::{
    collections::{BTreeSet, HashMap},
    fmt::Display,
    str::FromStr,
    sync::{Arc, Mutex},
    time::Duration,
};

use rentacar_auth::{JwksSource, Verifier};

/// A variable held a value the process cannot run with.
#[derive(Debug, thiserror::Error)]
#[error("{variable}={value:?} is not valid: expected {expected}")]
pub struct ConfigError {
    pub variable: String,
    pub value: String,
    pub expected: String,
}

/// Where variables come from: set values first, then (unless isolated) the process
/// environment. `rentacar up` and tests set the per-service values this way.
#[derive(Debug, Clone, Default)]
pub struct Env {
    values: HashMap<String, String>,
    read_process: bool,
    /// Every name asked for, shared by clones: what the process reads, for checking that
    /// the manifests set nothing it ignores.
    asked: Arc<Mutex<BTreeSet<String>>>,
}

impl Env {
    /// Reads the process environment.
    pub fn process() -> Self {
        Self {
            read_process: true,
            ..Self::default()
        }
    }

    /// Reads only the given pairs, never the process environment.
    pub fn from_pairs<K: Into<String>, V: Into<String>>(pairs: impl IntoIterator<Item = (K, V)>) -> Self {
        Self {
            values: pairs.into_iter().map(|(k, v)| (k.into(), v.into())).collect(),
            ..Self::default()
        }
    }

    /// The same source with `name` set to `value`.
    pub fn with(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.values.insert(name.into(), value.into());
        self
    }

    /// The raw value of `name`, if set and not empty.
    pub fn get(&self, name: &str) -> Option<String> {
        self.asked
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .insert(name.to_owned());
        let value = match self.values.get(name) {
            Some(value) => Some(value.clone()),
            None if self.read_process => std::env::var(name).ok(),
            None => None,
        };
        value.filter(|v| !v.trim().is_empty())
    }

    /// The names asked for so far, set or not.
    pub fn asked(&self) -> BTreeSet<String> {
        self.asked
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Parses `name` as `T`, or returns `default` when it is unset.
    pub fn parse_or<T>(&self, name: &str, default: T, expected: &str) -> Result<T, ConfigError>
    where
        T: FromStr,
    {
        match self.get(name) {
            None => Ok(default),
            Some(raw) => raw.trim().parse().map_err(|_| ConfigError {
                variable: name.to_owned(),
                value: raw,
                expected: expected.to_owned(),
            }),
        }
    }

    /// A duration given in milliseconds.
    pub fn millis_or(&self, name: &str, default: Duration) -> Result<Duration, ConfigError> {
        let ms = self.parse_or(name, default.as_millis() as u64, "a whole number of milliseconds")?;
        Ok(Duration::from_millis(ms))
    }

    /// A URL that must start with one of `schemes`.
    pub fn url_or(&self, name: &str, default: &str, schemes: &[&str]) -> Result<String, ConfigError> {
        let value = self.get(name).unwrap_or_else(|| default.to_owned());
        if schemes.iter().any(|s| value.starts_with(&format!("{s}://"))) {
            Ok(value)
        } else {
            Err(ConfigError {
                variable: name.to_owned(),
                value: without_password(&value),
                expected: format!("a URL starting with {}", join_schemes(schemes)),
            })
        }
    }
}

/// `url` with any password in it masked, for messages.
pub fn without_password(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("***"));
            parsed.into()
        }
        _ => url.to_owned(),
    }
}

fn join_schemes(schemes: &[&str]) -> impl Display {
    schemes
        .iter()
        .map(|s| format!("{s}://"))
        .collect::<Vec<_>>()
        .join(" or ")
}

/// A value that never shows in logs or `Debug` output.
#[derive(Clone)]
struct Hidden(String);

impl std::fmt::Debug for Hidden {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("(hidden)")
    }
}

/// Settings every service process has.
#[derive(Debug, Clone)]
pub struct ServiceConfig {
    /// sea-orm URL of the service's own database (`sqlite://…` or `postgres://…`), as
    /// configured: without the password, so it can be shown.
    pub database_url: String,
    /// The database password, kept apart from the URL (it comes from a Secret).
    database_password: Option<Hidden>,
    /// The NATS server with JetStream that carries events.
    pub nats_url: String,
    /// Copies of the event stream the NATS cluster keeps, when this process creates it.
    pub stream_replicas: usize,
    /// How long a stopping process keeps serving after turning NOT_SERVING, so that load
    /// balancers and the mesh see the change before connections are refused.
    pub drain_period: Duration,
    /// Calls answered at once; more are shed with UNAVAILABLE and a RetryInfo.
    pub max_in_flight_calls: usize,
    /// How callers prove who they are.
    pub authentication: Authentication,
}

/// How a service learns who calls it.
#[derive(Debug, Clone)]
pub enum Authentication {
    /// Every call but health and reflection carries a bearer JWT this verifies.
    Jwt(Arc<Verifier>),
    /// Nobody is checked: a request acts for whoever it names. Only for trying things out.
    Off,
}

impl Authentication {
    /// `RENTACAR_AUTH` (`jwt`, the default, or `off`); with `jwt`, `RENTACAR_AUTH_JWKS` (a
    /// JWKS file, or the issuer's JWKS URL), `RENTACAR_AUTH_ISSUER` and
    /// `RENTACAR_AUTH_AUDIENCE` (default `rentacar`).
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let mode = env.get("RENTACAR_AUTH").unwrap_or_else(|| "jwt".to_owned());
        match mode.trim() {
            "off" => return Ok(Self::Off),
            "jwt" => {}
            _ => {
                return Err(ConfigError {
                    variable: "RENTACAR_AUTH".to_owned(),
                    value: mode,
                    expected: "jwt (bearer tokens are required) or off".to_owned(),
                });
            }
        }
        let required = |name: &str, what: &str| {
            env.get(name).ok_or_else(|| ConfigError {
                variable: name.to_owned(),
                value: String::new(),
                expected: format!("{what}, or RENTACAR_AUTH=off to turn authentication off"),
            })
        };
        let jwks = required("RENTACAR_AUTH_JWKS", "the path or URL of the token issuer's JWKS")?;
        let issuer = required("RENTACAR_AUTH_ISSUER", "the tokens' issuer (their iss claim)")?;
        let audience = env
            .get("RENTACAR_AUTH_AUDIENCE")
            .unwrap_or_else(|| rentacar_auth::DEFAULT_AUDIENCE.to_owned());
        let verifier = Verifier::new(JwksSource::parse(jwks.trim()), issuer.trim(), audience.trim())
            .map_err(|err| ConfigError {
                variable: "RENTACAR_AUTH_JWKS".to_owned(),
                value: jwks.clone(),
                expected: format!("a readable JWKS with an RS256 or ES256 key ({err})"),
            })?;
        Ok(Self::Jwt(Arc::new(verifier)))
    }
}

impl ServiceConfig {
    /// `RENTACAR_DATABASE_URL` (default: a SQLite file `<RENTACAR_DATA_DIR>/<service>.db`),
    /// `RENTACAR_DATABASE_PASSWORD` (PostgreSQL only), `RENTACAR_NATS_URL` (default
    /// `nats://127.0.0.1:4222`), `RENTACAR_NATS_STREAM_REPLICAS` (1 to 5, default 1) and
    /// `RENTACAR_DRAIN_MS` (default 5000), `RENTACAR_MAX_IN_FLIGHT_CALLS` (default 1024), and
    /// the authentication settings of [`Authentication::from_env`].
    pub fn from_env(env: &Env, service: &str) -> Result<Self, ConfigError> {
        let data_dir = env.get("RENTACAR_DATA_DIR").unwrap_or_else(|| "data".to_owned());
        let default_db = format!("sqlite://{data_dir}/{service}.db?mode=rwc");
        let database_url = env.url_or(
            "RENTACAR_DATABASE_URL",
            &default_db,
            &["sqlite", "postgres", "postgresql"],
        )?;
        let database_password = env.get("RENTACAR_DATABASE_PASSWORD").map(Hidden);
        if database_password.is_some() && database_url.starts_with("sqlite") {
            return Err(ConfigError {
                variable: "RENTACAR_DATABASE_PASSWORD".to_owned(),
                value: "(hidden)".to_owned(),
                expected: "no password with a SQLite RENTACAR_DATABASE_URL".to_owned(),
            });
        }
        let stream_replicas =
            env.parse_or("RENTACAR_NATS_STREAM_REPLICAS", 1, "a whole number from 1 to 5")?;
        if !(1..=5).contains(&stream_replicas) {
            return Err(ConfigError {
                variable: "RENTACAR_NATS_STREAM_REPLICAS".to_owned(),
                value: stream_replicas.to_string(),
                expected: "a whole number from 1 to 5 (JetStream's limit)".to_owned(),
            });
        }
        let max_in_flight_calls = env.parse_or(
            "RENTACAR_MAX_IN_FLIGHT_CALLS",
            1024,
            "a whole number of at least 1",
        )?;
        if max_in_flight_calls == 0 {
            return Err(ConfigError {
                variable: "RENTACAR_MAX_IN_FLIGHT_CALLS".to_owned(),
                value: "0".to_owned(),
                expected: "a whole number of at least 1".to_owned(),
            });
        }
        Ok(Self {
            database_url,
            database_password,
            nats_url: env.url_or("RENTACAR_NATS_URL", "nats://127.0.0.1:4222", &["nats", "tls"])?,
            stream_replicas,
            drain_period: env.millis_or("RENTACAR_DRAIN_MS", Duration::from_secs(5))?,
            max_in_flight_calls,
            authentication: Authentication::from_env(env)?,
        })
    }

    /// The URL to connect with: the configured one with the password put in.
    pub fn database_connect_url(&self) -> String {
        let Some(Hidden(password)) = &self.database_password else {
            return self.database_url.clone();
        };
        let Ok(mut url) = url::Url::parse(&self.database_url) else {
            return self.database_url.clone();
        };
        // A URL without a host takes no password; connecting then reports what is wrong.
        match url.set_password(Some(password)) {
            Ok(()) => url.into(),
            Err(()) => self.database_url.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authentication_is_required_unless_turned_off() {
        let err = ServiceConfig::from_env(&Env::from_pairs([("RENTACAR_DATA_DIR", "/tmp/x")]), "fleet")
            .unwrap_err();
        assert_eq!(err.variable, "RENTACAR_AUTH_JWKS");
        assert!(err.to_string().contains("RENTACAR_AUTH=off"), "{err}");
        let missing = Env::from_pairs([
            ("RENTACAR_AUTH_JWKS", "/nonexistent/jwks.json"),
            ("RENTACAR_AUTH_ISSUER", "rentacar-dev"),
        ]);
        let err = ServiceConfig::from_env(&missing, "fleet").unwrap_err();
        assert_eq!(err.variable, "RENTACAR_AUTH_JWKS");
        let off = Env::from_pairs([("RENTACAR_AUTH", "off")]);
        assert!(matches!(
            ServiceConfig::from_env(&off, "fleet").unwrap().authentication,
            Authentication::Off
        ));
        let url = Env::from_pairs([
            (
                "RENTACAR_AUTH_JWKS",
                "https://issuer.example.com/.well-known/jwks.json",
            ),
            ("RENTACAR_AUTH_ISSUER", "https://issuer.example.com/"),
        ]);
        assert!(matches!(
            ServiceConfig::from_env(&url, "fleet").unwrap().authentication,
            Authentication::Jwt(_)
        ));
    }

    #[test]
    fn a_bad_value_names_the_variable() {
        let env = Env::from_pairs([("RENTACAR_DRAIN_MS", "soon")]);
        let err = ServiceConfig::from_env(&env, "fleet").unwrap_err();
        assert_eq!(err.variable, "RENTACAR_DRAIN_MS");
        assert!(err.to_string().contains("RENTACAR_DRAIN_MS=\"soon\""), "{err}");
    }

    #[test]
    fn the_password_goes_into_the_url_only_to_connect() {
        let env = Env::from_pairs([
            ("RENTACAR_DATABASE_URL", "postgres://fleet@db.internal:5432/fleet"),
            ("RENTACAR_DATABASE_PASSWORD", "p@ss/word"),
            ("RENTACAR_AUTH", "off"),
        ]);
        let config = ServiceConfig::from_env(&env, "fleet").unwrap();
        assert_eq!(config.database_url, "postgres://fleet@db.internal:5432/fleet");
        assert_eq!(
            config.database_connect_url(),
            "postgres://fleet:p%40ss%2Fword@db.internal:5432/fleet"
        );
        assert!(!format!("{config:?}").contains("p@ss"));
    }

    #[test]
    fn a_password_in_a_url_is_masked_in_messages() {
        let env = Env::from_pairs([("RENTACAR_DATABASE_URL", "mysql://fleet:secret@db/fleet")]);
        let err = ServiceConfig::from_env(&env, "fleet").unwrap_err();
        assert!(!err.to_string().contains("secret"), "{err}");
        assert_eq!(without_password("postgres://u:p@h/d"), "postgres://u:***@h/d");
    }

    #[test]
    fn stream_replicas_stay_within_what_jetstream_allows() {
        let env = Env::from_pairs([("RENTACAR_NATS_STREAM_REPLICAS", "7")]);
        let err = ServiceConfig::from_env(&env, "fleet").unwrap_err();
        assert_eq!(err.variable, "RENTACAR_NATS_STREAM_REPLICAS");
        let env = Env::from_pairs([("RENTACAR_NATS_STREAM_REPLICAS", "3"), ("RENTACAR_AUTH", "off")]);
        assert_eq!(ServiceConfig::from_env(&env, "fleet").unwrap().stream_replicas, 3);
    }

    #[test]
    fn every_name_asked_for_is_recorded() {
        let env = Env::from_pairs([("RENTACAR_DRAIN_MS", "10"), ("RENTACAR_AUTH", "off")]);
        ServiceConfig::from_env(&env.clone(), "fleet").unwrap();
        assert!(env.asked().contains("RENTACAR_DRAIN_MS"));
        assert!(env.asked().contains("RENTACAR_DATABASE_PASSWORD"));
    }

    #[test]
    fn a_database_url_needs_a_known_scheme() {
        let env = Env::from_pairs([("RENTACAR_DATABASE_URL", "mysql://localhost/x")]);
        let err = ServiceConfig::from_env(&env, "fleet").unwrap_err();
        assert_eq!(err.variable, "RENTACAR_DATABASE_URL");
    }

    #[test]
    fn defaults_give_a_sqlite_file_per_service() {
        let env = Env::from_pairs([("RENTACAR_DATA_DIR", "/tmp/x"), ("RENTACAR_AUTH", "off")]);
        let config = ServiceConfig::from_env(&env, "payment").unwrap();
        assert_eq!(config.database_url, "sqlite:///tmp/x/payment.db?mode=rwc");
        assert_eq!(config.nats_url, "nats://127.0.0.1:4222");
    }
}
