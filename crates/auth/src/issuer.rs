//! A signing key pair that issues rentacar tokens: the development issuer of `rentacar up`
//! and `rentacar token`, and the issuer tests mint tokens with.

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use aws_lc_rs::{
    rand::SystemRandom,
    signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair},
};
use jsonwebtoken::{
    Algorithm, EncodingKey, Header,
    jwk::{Jwk, JwkSet, KeyAlgorithm, PublicKeyUse, ThumbprintHash},
};
use serde::{Deserialize, Serialize};

use crate::{DEFAULT_AUDIENCE, MANAGER_ROLE};

/// The private key's file in an issuer's folder.
const KEY_FILE: &str = "signing-key.pem";
/// The public keys' file in an issuer's folder: what `RENTACAR_AUTH_JWKS` points at.
pub const JWKS_FILE: &str = "jwks.json";

#[derive(Debug, thiserror::Error)]
pub enum IssuerError {
    #[error("{path}: {reason}")]
    File { path: PathBuf, reason: String },
    #[error("the signing key is not usable: {0}")]
    Key(String),
}

/// The claims of a rentacar token.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Claims {
    pub iss: String,
    pub aud: String,
    /// The customer.
    pub sub: String,
    pub iat: u64,
    pub exp: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<u64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<String>,
}

/// An ES256 key pair and the issuer name its tokens carry.
pub struct Issuer {
    name: String,
    key: EncodingKey,
    public: Jwk,
}

impl Issuer {
    /// A new key pair, its key id the public key's thumbprint.
    pub fn generate(name: &str) -> Self {
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new())
            .expect("the system's random source works");
        Self::from_pkcs8(name, pkcs8.as_ref(), None).expect("a generated key is valid")
    }

    /// A new key pair published under `key_id`: a stand-in for a forger in tests.
    pub fn generate_with_id(name: &str, key_id: &str) -> Self {
        let mut issuer = Self::generate(name);
        issuer.public.common.key_id = Some(key_id.to_owned());
        issuer
    }

    /// The issuer whose key is kept in `dir`, creating the key the first time; writes the
    /// matching JWKS beside it.
    pub fn load_or_create(dir: &Path, name: &str) -> Result<Self, IssuerError> {
        let key_path = dir.join(KEY_FILE);
        let file_error = |path: &Path, err: std::io::Error| IssuerError::File {
            path: path.to_owned(),
            reason: err.to_string(),
        };
        let issuer = match std::fs::read(&key_path) {
            Ok(pem) => {
                let pem = pem::parse(pem).map_err(|e| IssuerError::Key(e.to_string()))?;
                Self::from_pkcs8(name, pem.contents(), None)?
            }
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                std::fs::create_dir_all(dir).map_err(|e| file_error(dir, e))?;
                let issuer = Self::generate(name);
                issuer
                    .write_private_key(&key_path)
                    .map_err(|e| file_error(&key_path, e))?;
                issuer
            }
            Err(err) => return Err(file_error(&key_path, err)),
        };
        let jwks = dir.join(JWKS_FILE);
        issuer.write_jwks(&jwks).map_err(|e| file_error(&jwks, e))?;
        Ok(issuer)
    }

    /// The issuer whose key `dir` already holds.
    pub fn load(dir: &Path, name: &str) -> Result<Self, IssuerError> {
        let key_path = dir.join(KEY_FILE);
        let pem = std::fs::read(&key_path).map_err(|e| IssuerError::File {
            path: key_path,
            reason: e.to_string(),
        })?;
        let pem = pem::parse(pem).map_err(|e| IssuerError::Key(e.to_string()))?;
        Self::from_pkcs8(name, pem.contents(), None)
    }

    fn from_pkcs8(name: &str, pkcs8: &[u8], key_id: Option<String>) -> Result<Self, IssuerError> {
        // Checks the key before anything is signed with it.
        EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8)
            .map_err(|e| IssuerError::Key(e.to_string()))?;
        let key = EncodingKey::from_ec_der(pkcs8);
        let mut public =
            Jwk::from_encoding_key(&key, Algorithm::ES256).map_err(|e| IssuerError::Key(e.to_string()))?;
        let thumbprint = public
            .thumbprint(ThumbprintHash::SHA256)
            .map_err(|e| IssuerError::Key(e.to_string()))?;
        public.common.key_id = Some(key_id.unwrap_or(thumbprint));
        public.common.key_algorithm = Some(KeyAlgorithm::ES256);
        public.common.public_key_use = Some(PublicKeyUse::Signature);
        Ok(Self {
            name: name.to_owned(),
            key,
            public,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn key_id(&self) -> &str {
        self.public.common.key_id.as_deref().unwrap_or_default()
    }

    /// The public half, as the JWKS verifiers read.
    pub fn jwks(&self) -> JwkSet {
        JwkSet {
            keys: vec![self.public.clone()],
        }
    }

    pub fn write_jwks(&self, path: &Path) -> std::io::Result<()> {
        let json = serde_json::to_string_pretty(&self.jwks()).map_err(std::io::Error::other)?;
        write_replacing(path, json.as_bytes(), 0o644)
    }

    fn write_private_key(&self, path: &Path) -> std::io::Result<()> {
        let pem = pem::Pem::new("PRIVATE KEY", self.key.as_bytes().to_vec());
        write_replacing(path, pem::encode(&pem).as_bytes(), 0o600)
    }

    /// The claims of a token for `customer`, valid from now for `ttl`.
    pub fn claims(&self, customer: &str, manager: bool, ttl: Duration) -> Claims {
        let now = jsonwebtoken::get_current_timestamp();
        Claims {
            iss: self.name.clone(),
            aud: DEFAULT_AUDIENCE.to_owned(),
            sub: customer.to_owned(),
            iat: now,
            exp: now + ttl.as_secs(),
            nbf: None,
            roles: if manager {
                vec![MANAGER_ROLE.to_owned()]
            } else {
                Vec::new()
            },
        }
    }

    /// `claims`, signed.
    pub fn sign(&self, claims: &Claims) -> String {
        let mut header = Header::new(Algorithm::ES256);
        header.kid = self.public.common.key_id.clone();
        jsonwebtoken::encode(&header, claims, &self.key).expect("an ES256 key signs")
    }

    /// A signed token for `customer`, valid for `ttl`.
    pub fn token(&self, customer: &str, manager: bool, ttl: Duration) -> String {
        self.sign(&self.claims(customer, manager, ttl))
    }
}

/// Writes `path` whole, through a temporary file, so readers never see half of it.
fn write_replacing(path: &Path, contents: &[u8], mode: u32) -> std::io::Result<()> {
    use std::{io::Write, os::unix::fs::OpenOptionsExt};
    let partial = path.with_extension("partial");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&partial)?;
    file.write_all(contents)?;
    file.sync_all()?;
    std::fs::rename(&partial, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_is_kept_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let first = Issuer::load_or_create(dir.path(), "dev").unwrap();
        let again = Issuer::load_or_create(dir.path(), "dev").unwrap();
        assert_eq!(first.key_id(), again.key_id());
        assert_eq!(Issuer::load(dir.path(), "dev").unwrap().key_id(), first.key_id());
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join(KEY_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "the private key is readable by others");
    }
}
