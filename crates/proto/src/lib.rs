//! Generated protobuf types, gRPC clients and servers of the rentacar API.
//!
//! The module tree mirrors the proto packages (`rentacar.fleet.v1` is
//! [`rentacar::fleet::v1`]); the short aliases at the root are what the services use.

pub mod rentacar {
    pub mod common {
        pub mod v1 {
            tonic::include_proto!("rentacar.common.v1");
        }
    }
    pub mod events {
        pub mod v1 {
            tonic::include_proto!("rentacar.events.v1");
        }
    }
    pub mod fleet {
        pub mod v1 {
            tonic::include_proto!("rentacar.fleet.v1");
        }
    }
    pub mod mypage {
        pub mod v1 {
            tonic::include_proto!("rentacar.mypage.v1");
        }
    }
    pub mod payment {
        pub mod v1 {
            tonic::include_proto!("rentacar.payment.v1");
        }
    }
    pub mod reservation {
        pub mod v1 {
            tonic::include_proto!("rentacar.reservation.v1");
        }
    }
}

pub use rentacar::common::v1 as common;
pub use rentacar::events::v1 as events;
pub use rentacar::fleet::v1 as fleet;
pub use rentacar::mypage::v1 as mypage;
pub use rentacar::payment::v1 as payment;
pub use rentacar::reservation::v1 as reservation;

/// Encoded `FileDescriptorSet` of every rentacar proto, for server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/rentacar_descriptor.bin"));
