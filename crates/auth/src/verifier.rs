//! Turning a bearer token into a customer, or saying precisely why not.

use std::{
    collections::HashMap,
    fmt,
    sync::{Arc, Mutex},
};

use jsonwebtoken::{Algorithm, Validation, errors::ErrorKind};
use rentacar_types::FieldViolations;
use serde::Deserialize;

use crate::{
    Customer, MANAGER_ROLE,
    keys::{JwksSource, KeySet, KeysError, Lookup},
};

/// How far the issuer's clock and ours may disagree, in seconds.
const CLOCK_SKEW_SECONDS: u64 = 30;
/// A header longer than this is not a token worth parsing.
const MAX_TOKEN_BYTES: usize = 8 * 1024;
/// Tokens remembered as verified; past this many, the memory starts over.
const REMEMBERED_TOKENS: usize = 10_000;

/// Why a call's credentials were refused: said to the caller as UNAUTHENTICATED, except
/// [`Rejected::KeysUnavailable`], which is the server's trouble (UNAVAILABLE).
#[derive(Debug, thiserror::Error)]
pub enum Rejected {
    #[error("no bearer token: send the metadata `authorization: Bearer <JWT>`")]
    Missing,
    #[error("the authorization metadata is not `Bearer <JWT>`")]
    NotBearer,
    #[error("the bearer token is not a JWT: {0}")]
    Malformed(String),
    #[error("the token is signed with {0:?}; RS256 and ES256 are accepted")]
    UnsupportedAlgorithm(Algorithm),
    #[error("the token's key id {0:?} is not one of the issuer's keys")]
    UnknownKey(String),
    #[error("the token's signature does not verify")]
    BadSignature,
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid yet (nbf is in the future)")]
    NotYetValid,
    #[error("the token is for another audience; expected {0:?}")]
    WrongAudience(String),
    #[error("the token is from another issuer; expected {0:?}")]
    WrongIssuer(String),
    #[error("the token has no {0:?} claim")]
    MissingClaim(String),
    #[error("the token's claims are not valid: {0}")]
    BadClaims(String),
    #[error("the issuer's signing keys cannot be fetched: {0}")]
    KeysUnavailable(KeysError),
}

impl Rejected {
    /// A stable `ErrorInfo.reason` for the refusal.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Missing => "TOKEN_MISSING",
            Self::NotBearer | Self::Malformed(_) => "TOKEN_MALFORMED",
            Self::UnsupportedAlgorithm(_) => "TOKEN_ALGORITHM",
            Self::UnknownKey(_) => "TOKEN_UNKNOWN_KEY",
            Self::BadSignature => "TOKEN_SIGNATURE",
            Self::Expired => "TOKEN_EXPIRED",
            Self::NotYetValid => "TOKEN_NOT_YET_VALID",
            Self::WrongAudience(_) => "TOKEN_AUDIENCE",
            Self::WrongIssuer(_) => "TOKEN_ISSUER",
            Self::MissingClaim(_) | Self::BadClaims(_) => "TOKEN_CLAIMS",
            Self::KeysUnavailable(_) => "SIGNING_KEYS_UNAVAILABLE",
        }
    }
}

/// The claims rentacar reads; `exp`, `iss` and `aud` are checked by the validation.
#[derive(Deserialize)]
struct Identity {
    sub: String,
    exp: u64,
    #[serde(default)]
    roles: Vec<String>,
}

/// Verifies bearer tokens from one issuer for one audience.
pub struct Verifier {
    keys: KeySet,
    issuer: String,
    audience: String,
    /// Tokens that verified, with their expiry (seconds since the epoch). A client sends
    /// the same token with every call until it expires, and checking its signature again
    /// (tens of microseconds for ES256 or RS256) would be the costliest part of most calls.
    verified: Mutex<HashMap<Arc<str>, (Customer, u64)>>,
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Verifier")
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .finish_non_exhaustive()
    }
}

impl Verifier {
    /// Trusts tokens that `issuer` signed with a key of `jwks` for `audience`.
    pub fn new(jwks: JwksSource, issuer: &str, audience: &str) -> Result<Self, KeysError> {
        Ok(Self {
            keys: KeySet::new(jwks)?,
            issuer: issuer.to_owned(),
            audience: audience.to_owned(),
            verified: Mutex::default(),
        })
    }

    #[cfg(test)]
    fn refreshing_every(mut self, interval: std::time::Duration) -> Self {
        self.keys = self.keys.refreshing_every(interval);
        self
    }

    /// The customer the `authorization` metadata value speaks for.
    pub async fn verify(&self, authorization: &[u8]) -> Result<Customer, Rejected> {
        let token = std::str::from_utf8(authorization)
            .ok()
            .and_then(|value| {
                value
                    .strip_prefix("Bearer ")
                    .or_else(|| value.strip_prefix("bearer "))
            })
            .map(str::trim)
            .filter(|token| !token.is_empty())
            .ok_or(Rejected::NotBearer)?;
        if token.len() > MAX_TOKEN_BYTES {
            return Err(Rejected::Malformed(format!(
                "longer than {MAX_TOKEN_BYTES} bytes"
            )));
        }
        let now = jsonwebtoken::get_current_timestamp();
        if let Some((customer, exp)) = self.verified.lock().expect("not poisoned").get(token)
            && now <= exp + CLOCK_SKEW_SECONDS
        {
            return Ok(customer.clone());
        }
        let customer = self.check(token).await?;
        let mut verified = self.verified.lock().expect("not poisoned");
        if verified.len() >= REMEMBERED_TOKENS {
            verified.retain(|_, (_, exp)| now <= *exp + CLOCK_SKEW_SECONDS);
            if verified.len() >= REMEMBERED_TOKENS {
                verified.clear();
            }
        }
        verified.insert(customer.0.token.clone(), customer.clone());
        Ok(customer.0)
    }

    /// Verifies `token`'s signature and claims; the customer and the token's expiry.
    async fn check(&self, token: &str) -> Result<(Customer, u64), Rejected> {
        let header = jsonwebtoken::decode_header(token).map_err(|e| Rejected::Malformed(e.to_string()))?;
        if !matches!(header.alg, Algorithm::RS256 | Algorithm::ES256) {
            return Err(Rejected::UnsupportedAlgorithm(header.alg));
        }
        let key = match self.keys.find(header.kid.as_deref()).await {
            Lookup::Found(key) => key,
            Lookup::Unknown => return Err(Rejected::UnknownKey(header.kid.unwrap_or_default())),
            Lookup::Unavailable(err) => return Err(Rejected::KeysUnavailable(err)),
        };
        if key.algorithm != header.alg {
            return Err(Rejected::BadSignature);
        }
        let mut validation = Validation::new(key.algorithm);
        validation.leeway = CLOCK_SKEW_SECONDS;
        validation.validate_nbf = true;
        validation.set_issuer(&[&self.issuer]);
        validation.set_audience(&[&self.audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        let data = jsonwebtoken::decode::<Identity>(token, &key.decoding, &validation)
            .map_err(|e| self.rejection(e.into_kind()))?;
        let identity = data.claims;
        let mut violations = FieldViolations::new();
        let id = violations.id("sub", &identity.sub);
        if !violations.is_empty() {
            return Err(Rejected::BadClaims(violations.to_string()));
        }
        let customer = Customer {
            id,
            manager: identity.roles.iter().any(|role| role == MANAGER_ROLE),
            token: Arc::from(token),
        };
        Ok((customer, identity.exp))
    }

    fn rejection(&self, kind: ErrorKind) -> Rejected {
        match kind {
            ErrorKind::InvalidSignature | ErrorKind::InvalidAlgorithm | ErrorKind::InvalidEcdsaKey => {
                Rejected::BadSignature
            }
            ErrorKind::ExpiredSignature => Rejected::Expired,
            ErrorKind::ImmatureSignature => Rejected::NotYetValid,
            ErrorKind::InvalidAudience => Rejected::WrongAudience(self.audience.clone()),
            ErrorKind::InvalidIssuer => Rejected::WrongIssuer(self.issuer.clone()),
            ErrorKind::MissingRequiredClaim(claim) => Rejected::MissingClaim(claim),
            ErrorKind::InvalidClaimFormat(claim) => {
                Rejected::BadClaims(format!("{claim:?} has the wrong type"))
            }
            ErrorKind::Json(err) => Rejected::BadClaims(err.to_string()),
            other => Rejected::Malformed(format!("{other:?}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::{DEFAULT_AUDIENCE, Issuer};

    fn verifier_of(issuer: &Issuer, dir: &tempfile::TempDir) -> Verifier {
        let jwks = dir.path().join("jwks.json");
        issuer.write_jwks(&jwks).unwrap();
        Verifier::new(JwksSource::File(jwks), issuer.name(), DEFAULT_AUDIENCE).unwrap()
    }

    fn bearer(token: &str) -> Vec<u8> {
        format!("Bearer {token}").into_bytes()
    }

    #[tokio::test]
    async fn a_valid_token_names_its_customer_and_roles() {
        let dir = tempfile::tempdir().unwrap();
        let issuer = Issuer::generate("test-issuer");
        let verifier = verifier_of(&issuer, &dir);
        let alice = verifier
            .verify(&bearer(&issuer.token("alice", false, Duration::from_secs(60))))
            .await
            .unwrap();
        assert_eq!((alice.id.as_str(), alice.manager), ("alice", false));
        let boss = verifier
            .verify(&bearer(&issuer.token("boss", true, Duration::from_secs(60))))
            .await
            .unwrap();
        assert!(boss.manager);
    }

    #[tokio::test]
    async fn every_bad_token_says_what_is_wrong() {
        let dir = tempfile::tempdir().unwrap();
        let issuer = Issuer::generate("test-issuer");
        let verifier = verifier_of(&issuer, &dir);
        let now = jsonwebtoken::get_current_timestamp();
        let claims = || issuer.claims("alice", false, Duration::from_secs(60));

        let expired = Claims {
            exp: now - 120,
            ..claims()
        };
        let early = Claims {
            nbf: Some(now + 120),
            ..claims()
        };
        let elsewhere = Claims {
            aud: "billing".into(),
            ..claims()
        };
        let stranger = Claims {
            iss: "someone-else".into(),
            ..claims()
        };
        let blank = Claims {
            sub: String::new(),
            ..claims()
        };
        let cases = [
            (issuer.sign(&expired), "TOKEN_EXPIRED"),
            (issuer.sign(&early), "TOKEN_NOT_YET_VALID"),
            (issuer.sign(&elsewhere), "TOKEN_AUDIENCE"),
            (issuer.sign(&stranger), "TOKEN_ISSUER"),
            (issuer.sign(&blank), "TOKEN_CLAIMS"),
            // Signed by another key that claims the same key id.
            (
                Issuer::generate_with_id("test-issuer", issuer.key_id()).sign(&claims()),
                "TOKEN_SIGNATURE",
            ),
            (
                Issuer::generate("test-issuer").sign(&claims()),
                "TOKEN_UNKNOWN_KEY",
            ),
            ("not.a.jwt".to_owned(), "TOKEN_MALFORMED"),
        ];
        for (token, reason) in cases {
            let err = verifier.verify(&bearer(&token)).await.unwrap_err();
            assert_eq!(err.reason(), reason, "{err}");
        }
        let err = verifier.verify(b"Basic YWxpY2U6c2VjcmV0").await.unwrap_err();
        assert_eq!(err.reason(), "TOKEN_MALFORMED");
    }

    /// A verified token is remembered, and the memory keeps its expiry: the token is
    /// refused once it expires (beyond the clock skew), as when it was first checked.
    #[tokio::test]
    async fn a_remembered_token_still_expires() {
        let dir = tempfile::tempdir().unwrap();
        let issuer = Issuer::generate("test-issuer");
        let verifier = verifier_of(&issuer, &dir);
        let now = jsonwebtoken::get_current_timestamp();
        let almost_expired = Claims {
            exp: now - CLOCK_SKEW_SECONDS + 1,
            ..issuer.claims("alice", false, Duration::from_secs(60))
        };
        let token = bearer(&issuer.sign(&almost_expired));
        for _ in 0..2 {
            assert_eq!(verifier.verify(&token).await.unwrap().id, "alice");
        }
        tokio::time::sleep(Duration::from_millis(2100)).await;
        let err = verifier.verify(&token).await.unwrap_err();
        assert_eq!(err.reason(), "TOKEN_EXPIRED", "{err}");
    }

    #[tokio::test]
    async fn a_token_from_a_new_key_fetches_the_keys_again() {
        let dir = tempfile::tempdir().unwrap();
        let jwks = dir.path().join("jwks.json");
        let old = Issuer::generate("test-issuer");
        old.write_jwks(&jwks).unwrap();
        let verifier = Verifier::new(JwksSource::File(jwks.clone()), "test-issuer", DEFAULT_AUDIENCE)
            .unwrap()
            .refreshing_every(Duration::ZERO);
        let rotated = Issuer::generate("test-issuer");
        rotated.write_jwks(&jwks).unwrap();
        let token = rotated.token("alice", false, Duration::from_secs(60));
        assert_eq!(verifier.verify(&bearer(&token)).await.unwrap().id, "alice");
    }

    #[tokio::test]
    async fn keys_come_from_the_issuers_url() {
        let issuer = Issuer::generate("test-issuer");
        let body = serde_json::to_string(&issuer.jwks()).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/.well-known/jwks.json", listener.local_addr().unwrap());
        tokio::spawn(async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            while let Ok((mut socket, _)) = listener.accept().await {
                let mut request = [0; 1024];
                let _ = socket.read(&mut request).await;
                let response = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = socket.write_all(response.as_bytes()).await;
            }
        });
        let verifier = Verifier::new(JwksSource::parse(&url), "test-issuer", DEFAULT_AUDIENCE).unwrap();
        let token = issuer.token("alice", false, Duration::from_secs(60));
        assert_eq!(verifier.verify(&bearer(&token)).await.unwrap().id, "alice");
    }

    #[tokio::test]
    async fn an_issuer_that_fails_is_the_servers_trouble_and_asked_once_per_interval() {
        // An issuer that hangs up on every request.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/jwks.json", listener.local_addr().unwrap());
        let asked = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = asked.clone();
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                drop(socket);
            }
        });
        let verifier = Verifier::new(JwksSource::parse(&url), "test-issuer", DEFAULT_AUDIENCE).unwrap();
        let token = Issuer::generate("test-issuer").token("alice", false, Duration::from_secs(60));
        for _ in 0..3 {
            let err = verifier.verify(&bearer(&token)).await.unwrap_err();
            assert_eq!(err.reason(), "SIGNING_KEYS_UNAVAILABLE", "{err}");
        }
        assert_eq!(asked.load(std::sync::atomic::Ordering::SeqCst), 1);
    }

    use crate::Claims;
}
