//! The caller of one request, as the server's authentication layer established it.

use std::sync::Arc;

/// A customer a valid token speaks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Customer {
    /// The token's `sub`.
    pub id: String,
    /// Whether its `roles` claim holds `manager`.
    pub manager: bool,
    /// The token itself, for calls made on the customer's behalf.
    pub(crate) token: Arc<str>,
}

/// Who is calling. Every served call carries one in its request extensions, put there
/// before the handler runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Caller {
    /// A customer (or manager), by a verified token.
    Customer(Customer),
    /// Another rentacar service acting on its own, without a customer: reservation's
    /// settler and compensation calling payment. Only services that accept such calls see
    /// this; the mesh admits them only from the calling service's identity.
    Service,
    /// Nobody checked: authentication is turned off, and a request is whoever it names.
    Unchecked,
}

impl Caller {
    /// The caller of `request`. A call that reached a handler without passing the
    /// authentication layer is nobody's (and refused).
    pub fn of<T>(request: &tonic::Request<T>) -> Result<Caller, tonic::Status> {
        request
            .extensions()
            .get::<Caller>()
            .cloned()
            .ok_or_else(|| tonic::Status::unauthenticated("the caller is not known"))
    }

    /// The customer a request acts for, given the `customer_id` it names (possibly empty):
    /// a customer acts only for themself, and an empty id means them. `None` when the
    /// request names somebody else.
    pub fn acting_for(&self, named: &str) -> Option<String> {
        match self {
            Self::Customer(customer) if named.is_empty() || named == customer.id => Some(customer.id.clone()),
            Self::Customer(_) => None,
            Self::Service | Self::Unchecked => Some(named.to_owned()),
        }
    }

    /// Whether the caller may see or change what belongs to `owner`.
    pub fn may_access(&self, owner: &str) -> bool {
        match self {
            Self::Customer(customer) => customer.id == owner,
            Self::Service | Self::Unchecked => true,
        }
    }

    /// Whether the caller may change the fleet.
    pub fn is_manager(&self) -> bool {
        match self {
            Self::Customer(customer) => customer.manager,
            Self::Unchecked => true,
            Self::Service => false,
        }
    }

    /// The bearer token to pass on when calling another service for this caller.
    pub fn token(&self) -> Option<&str> {
        match self {
            Self::Customer(customer) => Some(&customer.token),
            Self::Service | Self::Unchecked => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alice() -> Caller {
        Caller::Customer(Customer {
            id: "alice".into(),
            manager: false,
            token: "t".into(),
        })
    }

    #[test]
    fn a_customer_acts_only_for_themself() {
        assert_eq!(alice().acting_for(""), Some("alice".into()));
        assert_eq!(alice().acting_for("alice"), Some("alice".into()));
        assert_eq!(alice().acting_for("bob"), None);
        assert!(alice().may_access("alice"));
        assert!(!alice().may_access("bob"));
        assert!(!alice().is_manager());
    }

    #[test]
    fn unchecked_requests_are_whoever_they_name() {
        assert_eq!(Caller::Unchecked.acting_for("bob"), Some("bob".into()));
        assert!(Caller::Unchecked.may_access("bob"));
        assert!(Caller::Unchecked.is_manager());
        assert!(!Caller::Service.is_manager());
    }
}
