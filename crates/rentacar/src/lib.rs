//! The `rentacar` binary's library: the services by name ([`Service`]), running one
//! ([`serve`]), migrating one ([`migrate`]), running them all ([`up`]) and handling
//! [`dead_letters`].

pub mod dead_letters;
pub mod service;
pub mod up;

pub use service::{Service, migrate, serve};
