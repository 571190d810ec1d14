//! The `rentacar` binary's library: the services by name ([`Service`]), running one
//! ([`serve`]), migrating one ([`migrate`]) and running them all ([`up`]).

pub mod service;
pub mod up;

pub use service::{Service, migrate, serve};
