//! The `rentacar` binary's library: the services by name ([`Service`]), running one
//! ([`serve`]), migrating one ([`migrate`]), running them all ([`up`]), rebuilding
//! mypage's read model ([`rebuild_mypage`]), handling [`dead_letters`], and signing
//! development tokens ([`dev_auth`]).

pub mod dead_letters;
pub mod dev_auth;
pub mod service;
pub mod up;

pub use service::{Service, migrate, rebuild_mypage, serve};
