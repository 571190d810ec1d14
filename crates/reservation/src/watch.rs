//! Telling watchers that a reservation changed.
//!
//! Changes made in this process are announced at once; a watcher also re-reads the
//! reservation every [`RECHECK`], so it sees changes made by other replicas too.

use std::{pin::Pin, time::Duration};

use futures::Stream;
use rentacar_proto::reservation as pb;
use sea_orm::DatabaseConnection;
use tokio::sync::{broadcast, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::Status;

use crate::{domain::Reservation, store};

/// How often a watcher re-reads its reservation when nothing was announced.
const RECHECK: Duration = Duration::from_secs(1);

/// Announces the ids of reservations that changed. Cheap to clone.
#[derive(Clone)]
pub struct Changes {
    sender: broadcast::Sender<String>,
}

impl Default for Changes {
    fn default() -> Self {
        Self {
            sender: broadcast::channel(1024).0,
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
pub fn watch(
    db: DatabaseConnection,
    changes: &Changes,
    current: Reservation,
    shutdown: CancellationToken,
) -> WatchStream {
    let mut announced = changes.sender.subscribe();
    let (tx, rx) = mpsc::channel(8);
    tokio::spawn(async move {
        let id = current.reservation_id.clone();
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
                _ = tokio::time::sleep(RECHECK) => {}
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
    Box::pin(ReceiverStream::new(rx))
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
