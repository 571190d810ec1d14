//! Telling watchers that a reservation changed.
//!
//! Changes made in this process are announced at once; a watcher also re-reads the
//! reservation every [`RECHECK`], so it sees changes made by other replicas too.

use std::{pin::Pin, sync::Arc, time::Duration};

use futures::Stream;
use rentacar_proto::reservation as pb;
use rentacar_runtime::status;
use sea_orm::DatabaseConnection;
use tokio::sync::{Semaphore, broadcast, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::Status;

use crate::{domain::Reservation, store};

/// How often a watcher re-reads its reservation, whatever else is announced meanwhile.
const RECHECK: Duration = Duration::from_secs(1);

/// Watches open at once per process. Each re-reads once per [`RECHECK`], so this bounds the
/// reads watchers add to the database, which writes share.
const MAX_WATCHES: usize = 512;

/// Announces the ids of reservations that changed. Cheap to clone.
#[derive(Clone)]
pub struct Changes {
    sender: broadcast::Sender<String>,
    watches: Arc<Semaphore>,
}

impl Default for Changes {
    fn default() -> Self {
        Self {
            sender: broadcast::channel(1024).0,
            watches: Arc::new(Semaphore::new(MAX_WATCHES)),
        }
    }
}

impl Changes {
    pub fn notify(&self, reservation_id: &str) {
        // No receivers is fine: nobody is watching.
        let _ = self.sender.send(reservation_id.to_owned());
    }
}

pub type WatchStream = Pin<Box<dyn Stream<Item = Result<pb::WatchReservationResponse, Status>> + Send>>;

/// Streams `current`, then every change of it, until a final state, the client leaving, or
/// the server shutting down (then UNAVAILABLE, so the client watches again elsewhere).
/// While [`MAX_WATCHES`] are open, another is UNAVAILABLE with a RetryInfo.
pub fn watch(
    db: DatabaseConnection,
    changes: &Changes,
    current: Reservation,
    shutdown: CancellationToken,
) -> Result<WatchStream, Status> {
    let Ok(permit) = changes.watches.clone().try_acquire_owned() else {
        return Err(status::unavailable(
            "TOO_MANY_WATCHES",
            "this replica holds as many watches as it can; try again",
            Duration::from_secs(1),
        ));
    };
    let mut announced = changes.sender.subscribe();
    let (tx, rx) = mpsc::channel(8);
    tokio::spawn(async move {
        let _permit = permit;
        let id = current.reservation_id.clone();
        let mut recheck = tokio::time::interval_at(tokio::time::Instant::now() + RECHECK, RECHECK);
        recheck.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last = current;
        if send(&tx, &last).await.is_err() || last.status.is_final() {
            return;
        }
        loop {
            tokio::select! {
                _ = tx.closed() => return,
                _ = shutdown.cancelled() => {
                    let _ = tx.send(Err(Status::unavailable("server shutting down; watch again"))).await;
                    return;
                }
                _ = recheck.tick() => {}
                message = announced.recv() => match message {
                    Ok(changed) if changed != id => continue,
                    Err(broadcast::error::RecvError::Closed) => return,
                    // Ours, or some announcements were missed: read it again either way.
                    _ => {}
                },
            }
            let now = match store::find(&db, &id).await {
                Ok(Some(now)) => now,
                Ok(None) => return,
                Err(err) => {
                    tracing::warn!(reservation_id = %id, error = %err, "watch could not read the reservation");
                    continue;
                }
            };
            if now != last {
                last = now;
                if send(&tx, &last).await.is_err() || last.status.is_final() {
                    return;
                }
            }
        }
    });
    Ok(Box::pin(ReceiverStream::new(rx)))
}

async fn send(
    tx: &mpsc::Sender<Result<pb::WatchReservationResponse, Status>>,
    reservation: &Reservation,
) -> Result<(), mpsc::error::SendError<Result<pb::WatchReservationResponse, Status>>> {
    let response = pb::WatchReservationResponse {
        reservation: Some(reservation.clone().into()),
    };
    tx.send(Ok(response)).await
}
