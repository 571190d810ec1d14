//! Authentication of every call: the bearer token in the `authorization` metadata is
//! verified before the handler runs, and the [`Caller`] it names goes into the request's
//! extensions for the handler to check what the request asks against. A call without a
//! valid token is answered here, trailers-only, with UNAUTHENTICATED saying what is wrong;
//! nothing behind this layer sees it. Health checks and reflection stay open.

use std::{
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use rentacar_auth::{Caller, Rejected, Verifier};
use tonic::Code;

use crate::{config::Authentication, status};

/// What a call without any token is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WithoutToken {
    /// Refused: every caller is a customer (public services).
    Refused,
    /// Another service acting on its own account (payment, called by reservation's settler
    /// and compensation). Only the mesh's policy keeps others from calling so.
    ServiceCall,
}

#[derive(Clone)]
pub struct AuthnLayer {
    verifier: Option<Arc<Verifier>>,
    without_token: WithoutToken,
    exempt: fn(&str) -> bool,
}

impl AuthnLayer {
    pub fn new(
        authentication: &Authentication,
        without_token: WithoutToken,
        exempt: fn(&str) -> bool,
    ) -> Self {
        let verifier = match authentication {
            Authentication::Jwt(verifier) => Some(verifier.clone()),
            Authentication::Off => None,
        };
        Self {
            verifier,
            without_token,
            exempt,
        }
    }
}

impl<S> tower::Layer<S> for AuthnLayer {
    type Service = Authn<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Authn {
            inner,
            layer: self.clone(),
        }
    }
}

#[derive(Clone)]
pub struct Authn<S> {
    inner: S,
    layer: AuthnLayer,
}

impl<S, B, R> tower::Service<http::Request<B>> for Authn<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<R>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    B: Send + 'static,
    R: Default + Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        if (self.layer.exempt)(request.uri().path()) {
            return Box::pin(self.inner.call(request));
        }
        let Some(verifier) = self.layer.verifier.clone() else {
            request.extensions_mut().insert(Caller::Unchecked);
            return Box::pin(self.inner.call(request));
        };
        let header = request.headers().get(http::header::AUTHORIZATION).cloned();
        let header = match (header, self.layer.without_token) {
            (Some(header), _) => header,
            (None, WithoutToken::ServiceCall) => {
                request.extensions_mut().insert(Caller::Service);
                return Box::pin(self.inner.call(request));
            }
            (None, WithoutToken::Refused) => {
                return Box::pin(std::future::ready(Ok(refusal(&Rejected::Missing))));
            }
        };
        // The ready service is taken for this call; a clone waits for the next one.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        Box::pin(async move {
            match verifier.verify(header.as_bytes()).await {
                Ok(customer) => {
                    request.extensions_mut().insert(Caller::Customer(customer));
                    inner.call(request).await
                }
                Err(rejected) => Ok(refusal(&rejected)),
            }
        })
    }
}

/// The answer to a call whose credentials were refused.
fn refusal<R: Default>(rejected: &Rejected) -> http::Response<R> {
    let status = match rejected {
        Rejected::KeysUnavailable(_) => {
            tracing::warn!(error = %rejected, "a call could not be authenticated");
            status::unavailable(rejected.reason(), rejected.to_string(), Duration::from_secs(1))
        }
        _ => {
            tracing::debug!(error = %rejected, "a call was not authenticated");
            status::with_reason(Code::Unauthenticated, rejected.reason(), rejected.to_string())
        }
    };
    status.into_http()
}
