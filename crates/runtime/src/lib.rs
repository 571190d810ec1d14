//! The mechanisms every rentacar service shares, so that a service only plugs in its parts.
//!
//! - [`config`]: typed settings read from `RENTACAR_*` variables, validated before anything binds.
//! - [`db`]: connecting to SQLite or PostgreSQL and running a service's migrations.
//! - [`server`]: the gRPC server with health, reflection, load shedding, authentication and
//!   graceful drain.
//! - [`authn`]: verifying every call's bearer token before its handler runs.
//! - [`status`]: building `tonic::Status` values with `google.rpc` error details.
//! - [`telemetry`]: logging with `tracing`, human text locally and JSON in the cluster.
//! - [`shutdown`]: the signals that stop a process.
//! - [`tasks`]: background tasks that stop after the server drained, and [`RunError`].

pub mod authn;
pub mod config;
pub mod db;
pub mod metrics;
pub mod server;
mod shed;
pub mod shutdown;
pub mod status;
pub mod tasks;
pub mod telemetry;

pub use config::{ConfigError, ServiceConfig};
pub use rentacar_types::FieldViolations;
pub use server::Server;
pub use tasks::{RunError, Tasks};
