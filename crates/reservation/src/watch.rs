//! Telling watchers that a reservation changed.
//!
//! A change made in this process is announced to its watches as soon as it commits. Changes
//! made by other replicas are announced by their events: [`Changes::follow`] reads
//! reservation's events from NATS (its own come back that way too, and cost their watches
//! one more read that finds nothing new). Only the watches of the changed reservation wake.
//! Core NATS delivers at most once, so a watch also re-reads its reservation every
//! [`RECHECK`], which bounds how late a missed announcement (NATS down or reconnecting) is
//! noticed.

use std::{
    collections::HashMap,
    pin::Pin,
    sync::{Arc, Mutex},
    time::Duration,
};

use futures::{Stream, StreamExt};
use prost::Message as _;
use rentacar_proto::{events::EventEnvelope, reservation as pb};
use rentacar_runtime::status;
use sea_orm::DatabaseConnection;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::Status;

use crate::{domain::Reservation, store};

/// How often a watch re-reads its reservation when no announcement came.
const RECHECK: Duration = Duration::from_secs(5);

/// Watches open at once per process. Each re-reads once per [`RECHECK`] and once per
/// change, so this bounds the reads watches add to the database, which writes share.
const MAX_WATCHES: usize = 512;

/// The events of changes a watch can see. Not `reservation.paid`: a reservation is invisible,
/// and so unwatched, until it is paid.
const ANNOUNCING: [&str; 3] = [
    "rentacar.reservation.confirmed",
    "rentacar.reservation.rejected",
    "rentacar.reservation.canceled",
];

/// How long [`Changes::follow`] waits before subscribing again after NATS refused it.
const RESUBSCRIBE_AFTER: Duration = Duration::from_secs(1);

/// The open watches of this process, by reservation. Cheap to clone.
#[derive(Clone)]
pub struct Changes {
    watches: Arc<Mutex<HashMap<String, Vec<Arc<Notify>>>>>,
    permits: Arc<Semaphore>,
}

impl Default for Changes {
    fn default() -> Self {
        Self {
            watches: Arc::default(),
            permits: Arc::new(Semaphore::new(MAX_WATCHES)),
        }
    }
}

impl Changes {
    /// Wakes the watches of `reservation_id`, and no others.
    pub fn notify(&self, reservation_id: &str) {
        let watches = self.watches.lock().expect("not poisoned");
        for watch in watches.get(reservation_id).into_iter().flatten() {
            // Kept for the watch if it is busy reading: the change is not lost.
            watch.notify_one();
        }
    }

    /// Starts a watch of `reservation_id`. Taken before its current state is read, so that
    /// a change right after that read is announced to it. While [`MAX_WATCHES`] are open,
    /// another is UNAVAILABLE with a RetryInfo.
    pub fn watch(&self, reservation_id: &str) -> Result<Watch, Status> {
        let Ok(permit) = self.permits.clone().try_acquire_owned() else {
            return Err(status::unavailable(
                "TOO_MANY_WATCHES",
                "this replica holds as many watches as it can; try again",
                Duration::from_secs(1),
            ));
        };
        let woken = Arc::new(Notify::new());
        self.watches
            .lock()
            .expect("not poisoned")
            .entry(reservation_id.to_owned())
            .or_default()
            .push(woken.clone());
        Ok(Watch {
            changes: self.clone(),
            reservation_id: reservation_id.to_owned(),
            woken,
            _permit: permit,
        })
    }

    /// Announces the changes that reservation's events report, from every replica, until
    /// `stop` fires. The client subscribes again by itself after a reconnect.
    pub async fn follow(self, nats: async_nats::Client, stop: CancellationToken) {
        loop {
            let subscribed =
                futures::future::try_join_all(ANNOUNCING.map(|subject| nats.subscribe(subject))).await;
            let mut events = match subscribed {
                Ok(subscriptions) => futures::stream::select_all(subscriptions),
                Err(err) => {
                    tracing::warn!(error = %err, "cannot follow reservation's events; watches re-read meanwhile");
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        _ = tokio::time::sleep(RESUBSCRIBE_AFTER) => continue,
                    }
                }
            };
            loop {
                let message = tokio::select! {
                    _ = stop.cancelled() => return,
                    message = events.next() => message,
                };
                let Some(message) = message else { break };
                match EventEnvelope::decode(message.payload) {
                    Ok(event) => self.notify(&event.aggregate_id),
                    Err(err) => tracing::debug!(error = %err, "not an event; no watch woken"),
                }
            }
        }
    }
}

/// A watch's place among [`Changes`]; dropping it ends the watch's announcements.
pub struct Watch {
    changes: Changes,
    reservation_id: String,
    woken: Arc<Notify>,
    _permit: OwnedSemaphorePermit,
}

impl Drop for Watch {
    fn drop(&mut self) {
        let mut watches = self.changes.watches.lock().expect("not poisoned");
        if let Some(same) = watches.get_mut(&self.reservation_id) {
            same.retain(|w| !Arc::ptr_eq(w, &self.woken));
            if same.is_empty() {
                watches.remove(&self.reservation_id);
            }
        }
    }
}

pub type WatchStream = Pin<Box<dyn Stream<Item = Result<pb::WatchReservationResponse, Status>> + Send>>;

impl Watch {
    /// Streams `current`, then every change of it, until a final state, the client leaving,
    /// or the server shutting down (then UNAVAILABLE, so the client watches again elsewhere).
    pub fn stream(
        self,
        db: DatabaseConnection,
        current: Reservation,
        shutdown: CancellationToken,
    ) -> WatchStream {
        let (tx, rx) = mpsc::channel(8);
        tokio::spawn(async move {
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
                    _ = self.woken.notified() => {}
                }
                let now = match store::find(&db, &self.reservation_id).await {
                    Ok(Some(now)) => now,
                    Ok(None) => return,
                    Err(err) => {
                        tracing::warn!(reservation_id = %self.reservation_id, error = %err, "watch could not read the reservation");
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

#[cfg(test)]
mod tests {
    use futures::FutureExt;
    use rentacar_events::{Event, Payload, nats_server::NatsServer};
    use rentacar_proto::events::ReservationCanceled;

    use super::*;

    /// A change reaches the watches of every replica through its event, whichever replica
    /// made it.
    #[tokio::test]
    async fn an_event_wakes_the_watches_of_its_reservation() {
        let binary = NatsServer::find_binary().expect("nats-server: set RENTACAR_NATS_SERVER");
        let store = tempfile::tempdir().unwrap();
        let nats = NatsServer::start(&binary, 0, store.path()).await.unwrap();
        let client = async_nats::connect(nats.url()).await.unwrap();
        let changes = Changes::default();
        let stop = CancellationToken::new();
        tokio::spawn(changes.clone().follow(client.clone(), stop.clone()));
        let watched = changes.watch("r-1").unwrap();
        let other = changes.watch("r-2").unwrap();

        let canceled = Event::new(
            "reservation",
            "r-1",
            Payload::ReservationCanceled(ReservationCanceled {
                reservation_id: "r-1".into(),
                ..Default::default()
            }),
        );
        // Sent again until it is seen: the subscription starts in the background.
        let seen = async {
            loop {
                client
                    .publish(canceled.subject(), canceled.encode().into())
                    .await
                    .unwrap();
                tokio::select! {
                    _ = watched.woken.notified() => return,
                    _ = tokio::time::sleep(Duration::from_millis(50)) => {}
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(30), seen)
            .await
            .expect("the watch of r-1 was never woken");
        assert!(other.woken.notified().now_or_never().is_none());
        stop.cancel();
    }

    #[test]
    fn a_change_wakes_the_watches_of_its_reservation_alone() {
        let changes = Changes::default();
        let first = changes.watch("r-1").unwrap();
        let second = changes.watch("r-1").unwrap();
        let other = changes.watch("r-2").unwrap();

        changes.notify("r-1");

        assert!(first.woken.notified().now_or_never().is_some());
        assert!(second.woken.notified().now_or_never().is_some());
        assert!(other.woken.notified().now_or_never().is_none());
    }

    #[test]
    fn an_ended_watch_leaves_nothing_behind() {
        let changes = Changes::default();
        let first = changes.watch("r-1").unwrap();
        let second = changes.watch("r-1").unwrap();

        drop(first);
        assert_eq!(changes.watches.lock().unwrap()["r-1"].len(), 1);
        drop(second);

        assert!(changes.watches.lock().unwrap().is_empty());
        assert_eq!(changes.permits.available_permits(), MAX_WATCHES);
    }
}
