//! Load shedding. A server answers a bounded number of calls at once; one call more is
//! answered at once, trailers-only, with UNAVAILABLE and a RetryInfo. The mesh and clients
//! retry UNAVAILABLE, on another replica if there is one; tonic's own shedding says
//! RESOURCE_EXHAUSTED, which nobody retries.
//!
//! A call counts until its response starts: a stream's later messages do not hold a slot
//! (open watches have a bound of their own).

use std::{
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use tokio::sync::Semaphore;

use crate::status;

/// What a shed caller is told to wait before trying again.
const RETRY_AFTER: Duration = Duration::from_millis(50);

#[derive(Clone)]
pub struct ShedLayer {
    permits: Arc<Semaphore>,
    /// Paths that are never shed: health checks must get through a busy server.
    exempt: fn(&str) -> bool,
}

impl ShedLayer {
    pub fn new(max_in_flight: usize, exempt: fn(&str) -> bool) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(max_in_flight)),
            exempt,
        }
    }
}

impl<S> tower::Layer<S> for ShedLayer {
    type Service = Shed<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Shed {
            inner,
            permits: self.permits.clone(),
            exempt: self.exempt,
        }
    }
}

#[derive(Clone)]
pub struct Shed<S> {
    inner: S,
    permits: Arc<Semaphore>,
    exempt: fn(&str) -> bool,
}

impl<S, B, R> tower::Service<http::Request<B>> for Shed<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<R>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    R: Default + Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        if (self.exempt)(request.uri().path()) {
            return Box::pin(self.inner.call(request));
        }
        let Ok(permit) = self.permits.clone().try_acquire_owned() else {
            tracing::debug!(path = request.uri().path(), "call shed");
            let shed = status::unavailable(
                "OVERLOADED",
                "the server is answering as many calls as it can; try again",
                RETRY_AFTER,
            );
            return Box::pin(std::future::ready(Ok(shed.into_http())));
        };
        let call = self.inner.call(request);
        Box::pin(async move {
            let response = call.await;
            drop(permit);
            response
        })
    }
}
