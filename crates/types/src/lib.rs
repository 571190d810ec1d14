//! Value types the services share, each validated when it is built from a request:
//! [`Money`], [`RentalPeriod`], [`PageRequest`], and [`FieldViolations`] that collects what is
//! wrong with a request without knowing about gRPC.

mod money;
mod page;
mod period;
mod violations;

pub use money::Money;
pub use page::{PageRequest, PageToken};
pub use period::{MAX_RENTAL_DAYS, RentalPeriod};
pub use violations::FieldViolations;
