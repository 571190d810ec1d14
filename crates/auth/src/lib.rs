//! Who is calling: bearer JWTs verified against the issuer's JWKS, and the identity a
//! handler checks requests against.
//!
//! - [`Verifier`]: checks a token's signature (RS256 or ES256, by key id), issuer, audience,
//!   expiry and not-before, and turns it into a [`Customer`]. Keys come from a JWKS file or
//!   the issuer's URL and are fetched again when a token names a key id not seen yet, so a
//!   rotation at the issuer needs no restart.
//! - [`Caller`]: what a service knows about the caller of one request: a customer, another
//!   service of the platform, or anyone (authentication turned off).
//! - [`Issuer`]: a key pair that signs tokens, for local development (`rentacar up`,
//!   `rentacar token`) and tests. In a cluster the organisation's identity provider issues
//!   tokens instead.

mod caller;
mod keys;
mod verifier;

pub use caller::{Caller, Customer};
pub mod issuer;

pub use issuer::{Claims, Issuer, IssuerError};
pub use keys::{JwksSource, KeysError};
pub use verifier::{Rejected, Verifier};

/// The audience a rentacar token is for, unless configured otherwise.
pub const DEFAULT_AUDIENCE: &str = "rentacar";

/// The issuer of the tokens `rentacar token` prints.
pub const DEV_ISSUER: &str = "rentacar-dev";

/// The role that may change the fleet.
pub const MANAGER_ROLE: &str = "manager";
