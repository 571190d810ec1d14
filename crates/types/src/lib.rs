//! Value types the services share, each validated when it is built from a request:
//! [`Money`], [`RentalPeriod`], [`PageRequest`], and [`FieldViolations`] that collects what is
//! wrong with a request without knowing about gRPC, with the bounds on text fields.

mod money;
mod page;
mod period;
mod text;
mod violations;

pub use money::Money;
pub use page::{PageRequest, PageToken};
pub use period::{BOOKING_HORIZON_DAYS, MAX_RENTAL_DAYS, RentalPeriod};
pub use text::{
    MAX_CAR_NUMBER_CHARS, MAX_FREE_TEXT_CHARS, MAX_ID_CHARS, MAX_NAME_CHARS, MAX_PAGE_TOKEN_CHARS,
};
pub use violations::FieldViolations;
