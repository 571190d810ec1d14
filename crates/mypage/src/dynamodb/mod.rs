//! The `dynamodb` provider: the read model in one DynamoDB table (see [`table`] for its
//! items and indexes).
//!
//! There is no SQL transaction here. Each change is one `TransactWriteItems` of two
//! conditional writes: the inbox item for the event (only if it is not there yet, so a
//! redelivery is skipped, as with the SQL inbox) and the row itself:
//! - a reservation row is read, moved by the domain's rules, and written back on the
//!   condition that nobody wrote it since (its `version`); a lost race is read again;
//! - a car row is written only if the event is newer than the row.
//!
//! Inbox items expire through the table's time to live, long after any redelivery.

pub mod table;

use std::{collections::HashMap, sync::Arc, time::Duration};

use async_trait::async_trait;
use aws_sdk_dynamodb::{
    Client,
    config::http::HttpResponse,
    error::{DisplayErrorContext, ProvideErrorMetadata, SdkError},
    operation::transact_write_items::TransactWriteItemsError,
    types::{AttributeValue, Put, TransactWriteItem, Update},
};
use futures::{StreamExt, TryStreamExt};
use rentacar_events::{Apply, Delivery, HandlerError};
use rentacar_proto::events::EventEnvelope;
use rentacar_runtime::server::ReadinessCheck;
use rentacar_types::{MAX_RENTAL_DAYS, Money, RentalPeriod};
use tokio_util::sync::CancellationToken;

use crate::{
    Error,
    config::DynamodbConfig,
    domain::{self, CarAvailability, CarView, ReservationView, ViewEvent},
    views::{Page, ReadModel},
};

type Item = HashMap<String, AttributeValue>;

/// The partition holding every car, sorted by car number.
const CARS: &str = "CARS";
/// A reservation's sort key: its partition holds only itself.
const RESERVATION: &str = "RESERVATION";
/// Cars one `ListAvailableCars` call looks at before it returns a short page.
const MAX_CARS_EXAMINED: usize = 2_000;

/// An inbox item's sort key.
const INBOX: &str = "INBOX";
/// Conditional writes lost to a concurrent writer before an event is handed back for
/// redelivery.
const WRITE_ATTEMPTS: usize = 8;
/// Availability checks run at once while filling a page of free cars.
const PARALLEL_CHECKS: usize = 8;
/// How long an inbox item is kept: far beyond the stream's duplicate window and any
/// redelivery.
const INBOX_RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);

/// How a change written together with its inbox item ended.
enum Written {
    Applied,
    /// The inbox already had the event: it was applied before.
    Repeated,
    /// The row's own condition failed: it changed meanwhile, or is newer than the event.
    RowChanged,
}

/// A DynamoDB call that failed, with what DynamoDB said.
#[derive(Debug, thiserror::Error)]
#[error("{operation}: {detail}")]
pub struct DynamodbError {
    operation: &'static str,
    code: Option<String>,
    /// The HTTP status of DynamoDB's answer, when there was one.
    status: Option<u16>,
    detail: String,
    /// Throttled, timed out or not reached: the same call may succeed later.
    transient: bool,
}

impl DynamodbError {
    pub fn from_sdk<E>(operation: &'static str, err: SdkError<E, HttpResponse>) -> Self
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        let code = err.code().map(str::to_owned);
        let status = err.raw_response().map(|response| response.status().as_u16());
        let transient = match &err {
            SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => true,
            SdkError::ServiceError(_) => matches!(
                code.as_deref(),
                Some(
                    "ProvisionedThroughputExceededException"
                        | "ThrottlingException"
                        | "RequestLimitExceeded"
                        | "InternalServerError"
                        | "ServiceUnavailable"
                        | "TransactionConflictException"
                )
            ),
            _ => false,
        };
        Self {
            operation,
            code,
            status,
            detail: DisplayErrorContext(&err).to_string(),
            transient,
        }
    }

    fn other(operation: &'static str, err: impl std::error::Error) -> Self {
        Self {
            operation,
            code: None,
            status: None,
            detail: DisplayErrorContext(&err).to_string(),
            transient: true,
        }
    }

    pub fn is_transient(&self) -> bool {
        self.transient
    }

    fn is_conditional_check_failure(&self) -> bool {
        self.code.as_deref() == Some("ConditionalCheckFailedException")
    }

    fn is_missing_table(&self) -> bool {
        self.code.as_deref() == Some("ResourceNotFoundException")
    }

    /// Refused for want of an identity or a permission, including having no credentials.
    fn is_denied(&self) -> bool {
        self.status == Some(403)
            || matches!(
                self.code.as_deref(),
                Some(
                    "AccessDeniedException"
                        | "UnrecognizedClientException"
                        | "InvalidSignatureException"
                        | "MissingAuthenticationTokenException"
                        | "ExpiredTokenException"
                        | "IncompleteSignature"
                        | "InvalidClientTokenId"
                )
            )
            || (self.code.is_none() && self.detail.contains("credentials"))
    }
}

/// The read model in a DynamoDB table.
#[derive(Clone)]
pub struct DynamodbViews {
    client: Client,
    table: Arc<str>,
}

impl DynamodbViews {
    /// A client for `config`. Against AWS, region and credentials come from AWS's default
    /// chains (which cover EKS Pod Identity and IRSA). Against another endpoint (a local
    /// DynamoDB-compatible server) they come from `AWS_*` variables when set, else local
    /// placeholders, and no metadata service is asked.
    pub async fn connect(config: &DynamodbConfig) -> Self {
        use aws_config::{
            BehaviorVersion, environment::EnvironmentVariableRegionProvider,
            meta::credentials::CredentialsProviderChain, meta::region::RegionProviderChain,
        };
        let mut loader = aws_config::defaults(BehaviorVersion::latest());
        if let Some(endpoint) = &config.endpoint {
            let local =
                aws_sdk_dynamodb::config::Credentials::new("local", "local", None, None, "rentacar-local");
            loader = loader
                .endpoint_url(endpoint)
                .region(
                    RegionProviderChain::first_try(EnvironmentVariableRegionProvider::new())
                        .or_else("us-east-1"),
                )
                .credentials_provider(
                    CredentialsProviderChain::first_try(
                        "environment",
                        aws_config::environment::EnvironmentVariableCredentialsProvider::new(),
                    )
                    .or_else("local", local),
                );
        }
        let client = Client::new(&loader.load().await);
        Self {
            client,
            table: config.table.as_str().into(),
        }
    }

    /// Checks the table (creating it if `config` says so) until it is usable, logging what
    /// is wrong and what to do while it is not. Gives up only when `shutdown` fires.
    pub async fn wait_until_usable(
        config: &DynamodbConfig,
        shutdown: &CancellationToken,
    ) -> Result<Self, table::TableProblem> {
        let views = Self::connect(config).await;
        let mut delay = Duration::from_millis(500);
        loop {
            match table::check(&views.client, &views.table, config.create_table).await {
                Ok(()) => return Ok(views),
                Err(problem) => {
                    tracing::error!(table = %views.table, retry_in = ?delay, "{problem}");
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        _ = shutdown.cancelled() => return Err(problem),
                    }
                    delay = (delay * 2).min(Duration::from_secs(30));
                }
            }
        }
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    /// Readiness: the table answers.
    pub fn readiness(&self) -> ReadinessCheck {
        let views = self.clone();
        Arc::new(move || {
            let views = views.clone();
            Box::pin(async move {
                views
                    .client
                    .describe_table()
                    .table_name(&*views.table)
                    .send()
                    .await
                    .is_ok()
            })
        })
    }

    /// Deletes every item, for a rebuild from the stream.
    pub async fn clear(&self) -> Result<u64, DynamodbError> {
        let keys: Vec<Item> = self
            .client
            .scan()
            .table_name(&*self.table)
            .projection_expression("pk, sk")
            .into_paginator()
            .items()
            .send()
            .try_collect()
            .await
            .map_err(|err| DynamodbError::from_sdk("Scan", err))?;
        let deleted = keys.len() as u64;
        futures::stream::iter(keys)
            .map(|key| async move {
                self.client
                    .delete_item()
                    .table_name(&*self.table)
                    .set_key(Some(key))
                    .send()
                    .await
                    .map_err(|err| DynamodbError::from_sdk("DeleteItem", err))
            })
            .buffer_unordered(PARALLEL_CHECKS)
            .try_collect::<Vec<_>>()
            .await?;
        Ok(deleted)
    }

    async fn get(&self, pk: &str, sk: &str) -> Result<Option<Item>, DynamodbError> {
        let output = self
            .client
            .get_item()
            .table_name(&*self.table)
            .key("pk", s(pk))
            .key("sk", s(sk))
            .consistent_read(true)
            .send()
            .await
            .map_err(|err| DynamodbError::from_sdk("GetItem", err))?;
        Ok(output.item)
    }

    /// Applies one event; what it changes is the domain's to say.
    async fn apply_event(&self, inbox: &str, event: &ViewEvent, seq: i64) -> Result<(), DynamodbError> {
        match event {
            ViewEvent::CarRegistered(car) => self.put_car(inbox, &domain::car_view(car, seq)).await,
            ViewEvent::Paid(paid) => {
                let car = self
                    .move_reservation(inbox, &paid.reservation_id, |row| {
                        domain::after_paid(row, paid, seq)
                    })
                    .await?;
                self.note_car_event(&car, seq).await
            }
            ViewEvent::Status(change) => {
                let car = self
                    .move_reservation(inbox, &change.reservation_id, |row| {
                        domain::after_status(row, change, seq)
                    })
                    .await?;
                self.note_car_event(&car, seq).await
            }
        }
    }

    /// Writes `change` together with the inbox item `inbox`, each on its own condition.
    async fn write_once(&self, inbox: &str, change: TransactWriteItem) -> Result<Written, DynamodbError> {
        let expires_at = std::time::SystemTime::now() + INBOX_RETENTION;
        let expires_at = expires_at
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let record = Put::builder()
            .table_name(&*self.table)
            .item("pk", s(inbox))
            .item("sk", s(INBOX))
            .item(table::TIME_TO_LIVE, n(expires_at as i64))
            .condition_expression("attribute_not_exists(pk)")
            .build()
            .map_err(|err| DynamodbError::other("building an inbox write", err))?;
        let result = self
            .client
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().put(record).build())
            .transact_items(change)
            .send()
            .await;
        let err = match result {
            Ok(_) => return Ok(Written::Applied),
            Err(err) => err,
        };
        let failed = |index: usize| {
            err.as_service_error()
                .and_then(|e| match e {
                    TransactWriteItemsError::TransactionCanceledException(canceled) => {
                        canceled.cancellation_reasons().get(index)?.code()
                    }
                    _ => None,
                })
                .is_some_and(|code| code == "ConditionalCheckFailed")
        };
        if failed(0) {
            Ok(Written::Repeated)
        } else if failed(1) {
            Ok(Written::RowChanged)
        } else {
            Err(DynamodbError::from_sdk("TransactWriteItems", err))
        }
    }

    /// Writes a car unless the table already reflects a later event of it.
    async fn put_car(&self, inbox: &str, car: &CarView) -> Result<(), DynamodbError> {
        let update = Update::builder()
            .table_name(&*self.table)
            .key("pk", s(CARS))
            .key("sk", s(&car.car_number))
            .update_expression(
                "SET car_number = :number, model = :model, daily_price_minor = :price, \
                 currency_code = :currency, last_event_sequence = :seq",
            )
            .condition_expression("attribute_not_exists(last_event_sequence) OR last_event_sequence < :seq")
            .expression_attribute_values(":number", s(&car.car_number))
            .expression_attribute_values(":model", s(&car.model))
            .expression_attribute_values(":price", n(car.daily_price.amount_minor))
            .expression_attribute_values(":currency", s(&car.daily_price.currency_code))
            .expression_attribute_values(":seq", n(car.last_event_sequence))
            .build()
            .map_err(|err| DynamodbError::other("building a car write", err))?;
        // A newer row (RowChanged) stays as it is.
        self.write_once(inbox, TransactWriteItem::builder().update(update).build())
            .await
            .map(drop)
    }

    /// Records on a car that an event of one of its reservations was applied, for the
    /// sequence `GetCarAvailability` reports.
    async fn note_car_event(&self, car_number: &str, seq: i64) -> Result<(), DynamodbError> {
        if car_number.is_empty() {
            return Ok(());
        }
        let result = self
            .client
            .update_item()
            .table_name(&*self.table)
            .key("pk", s(CARS))
            .key("sk", s(car_number))
            .update_expression("SET reservations_sequence = :seq")
            .condition_expression(
                "attribute_exists(pk) AND (attribute_not_exists(reservations_sequence) OR reservations_sequence < :seq)",
            )
            .expression_attribute_values(":seq", n(seq))
            .send()
            .await
            .map_err(|err| DynamodbError::from_sdk("UpdateItem", err));
        match result {
            Err(err) if err.is_conditional_check_failure() => Ok(()),
            other => other.map(drop),
        }
    }

    /// Reads a reservation's row, lets `next` decide its new state, and writes it with the
    /// inbox item on the condition that the row did not change meanwhile, reading it again
    /// after a lost race. Returns the car the row is about ("" when not known yet).
    async fn move_reservation(
        &self,
        inbox: &str,
        reservation_id: &str,
        next: impl Fn(Option<&ReservationView>) -> Option<ReservationView>,
    ) -> Result<String, DynamodbError> {
        let pk = format!("RESERVATION#{reservation_id}");
        for _ in 0..WRITE_ATTEMPTS {
            let item = self.get(&pk, RESERVATION).await?;
            let version = item.as_ref().map(|item| number(item, "version"));
            let current = item.as_ref().map(reservation_from);
            let Some(row) = next(current.as_ref()) else {
                return Ok(current.map(|r| r.car_number).unwrap_or_default());
            };
            let put = Put::builder()
                .table_name(&*self.table)
                .set_item(Some(reservation_item(&pk, &row, version.unwrap_or(0) + 1)));
            let put = match version {
                None => put.condition_expression("attribute_not_exists(pk)"),
                Some(version) => put
                    .condition_expression("version = :version")
                    .expression_attribute_values(":version", n(version)),
            };
            let put = put
                .build()
                .map_err(|err| DynamodbError::other("building a reservation write", err))?;
            match self
                .write_once(inbox, TransactWriteItem::builder().put(put).build())
                .await?
            {
                Written::Applied | Written::Repeated => return Ok(row.car_number),
                // Another replica wrote the row meanwhile: read it again.
                Written::RowChanged => {}
            }
        }
        Err(DynamodbError::other(
            "writing a reservation",
            std::io::Error::other(format!("{pk} kept changing under {WRITE_ATTEMPTS} attempts")),
        ))
    }

    /// Reservations holding a day of `period` for `car_number`: those picking up at most
    /// `MAX_RENTAL_DAYS` before it ends, returning after it starts.
    async fn holding(
        &self,
        car_number: &str,
        period: &RentalPeriod,
    ) -> Result<Vec<ReservationView>, DynamodbError> {
        let earliest = period.pickup() - chrono::Days::new(MAX_RENTAL_DAYS as u64);
        let latest = period.return_date() - chrono::Days::new(1);
        let items: Vec<Item> = self
            .client
            .query()
            .table_name(&*self.table)
            .index_name(table::BY_CAR)
            .key_condition_expression("holding_car = :car AND pickup_date BETWEEN :earliest AND :latest")
            .filter_expression("return_date > :pickup")
            .expression_attribute_values(":car", s(car_number))
            .expression_attribute_values(":earliest", s(&earliest.to_string()))
            .expression_attribute_values(":latest", s(&latest.to_string()))
            .expression_attribute_values(":pickup", s(&period.pickup().to_string()))
            .into_paginator()
            .items()
            .send()
            .try_collect()
            .await
            .map_err(|err| DynamodbError::from_sdk("Query", err))?;
        Ok(items.iter().map(reservation_from).collect())
    }
}

impl Apply for DynamodbViews {
    async fn apply(
        &self,
        consumer: &str,
        envelope: &EventEnvelope,
        delivery: &Delivery,
    ) -> Result<(), HandlerError> {
        let Some(event) = ViewEvent::from_envelope(envelope) else {
            return Ok(());
        };
        let inbox = format!("INBOX#{consumer}#{}", envelope.event_id);
        self.apply_event(&inbox, &event, delivery.stream_sequence as i64)
            .await
            .map_err(|err| HandlerError::Store(err.into()))
    }
}

#[async_trait]
impl ReadModel for DynamodbViews {
    async fn my_reservations(
        &self,
        customer_id: &str,
        size: u64,
        after: Option<i64>,
    ) -> Result<Page<ReservationView, i64>, Error> {
        let mut query = self
            .client
            .query()
            .table_name(&*self.table)
            .index_name(table::BY_CUSTOMER)
            .scan_index_forward(false)
            .limit((size + 1) as i32)
            .expression_attribute_values(":customer", s(customer_id));
        query = match after {
            None => query.key_condition_expression("customer_id = :customer"),
            Some(after) => query
                .key_condition_expression("customer_id = :customer AND paid_sequence < :after")
                .expression_attribute_values(":after", n(after)),
        };
        let output = query
            .send()
            .await
            .map_err(|err| DynamodbError::from_sdk("Query", err))?;
        let rows = output.items().iter().map(reservation_from).collect();
        Ok(Page::from_one_extra(rows, size, |r| r.paid_sequence))
    }

    async fn car_availability(
        &self,
        car_number: &str,
        period: &RentalPeriod,
    ) -> Result<Option<CarAvailability>, Error> {
        let Some(car) = self.get(CARS, car_number).await? else {
            return Ok(None);
        };
        let holding = self.holding(car_number, period).await?;
        Ok(Some(CarAvailability {
            conflicting_reservation_ids: holding.into_iter().map(|r| r.reservation_id).collect(),
            last_event_sequence: number(&car, "last_event_sequence")
                .max(number(&car, "reservations_sequence")),
        }))
    }

    async fn available_cars(
        &self,
        period: &RentalPeriod,
        size: u64,
        after: Option<&str>,
    ) -> Result<Page<CarView, String>, Error> {
        // Walks the catalog in number order, a page at a time, keeping the cars that are
        // free, until one more than a page is found, the catalog ends, or
        // MAX_CARS_EXAMINED were looked at: then the page is short and its token continues
        // after the last car examined, so no call does unbounded work.
        let mut free = Vec::new();
        let mut examined = 0;
        let mut start: Option<Item> =
            after.map(|after| HashMap::from([("pk".into(), s(CARS)), ("sk".into(), s(after))]));
        loop {
            let output = self
                .client
                .query()
                .table_name(&*self.table)
                .key_condition_expression("pk = :cars")
                .expression_attribute_values(":cars", s(CARS))
                .set_exclusive_start_key(start.take())
                .limit((size + 1) as i32)
                .send()
                .await
                .map_err(|err| DynamodbError::from_sdk("Query", err))?;
            let cars: Vec<CarView> = output.items().iter().map(car_from).collect();
            examined += cars.len();
            let last_examined = cars.last().map(|car| car.car_number.clone());
            let checked: Vec<(CarView, bool)> = futures::stream::iter(cars)
                .map(|car| async move {
                    let busy = !self.holding(&car.car_number, period).await?.is_empty();
                    Ok::<_, DynamodbError>((car, busy))
                })
                .buffered(PARALLEL_CHECKS)
                .try_collect()
                .await?;
            free.extend(checked.into_iter().filter(|(_, busy)| !busy).map(|(car, _)| car));
            start = output.last_evaluated_key;
            if free.len() as u64 > size || start.is_none() {
                break;
            }
            if examined >= MAX_CARS_EXAMINED {
                return Ok(Page {
                    items: free,
                    next: last_examined,
                });
            }
        }
        Ok(Page::from_one_extra(free, size, |c| c.car_number.clone()))
    }
}

fn s(value: &str) -> AttributeValue {
    AttributeValue::S(value.to_owned())
}

fn n(value: i64) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

fn text(item: &Item, name: &str) -> String {
    match item.get(name) {
        Some(AttributeValue::S(value)) => value.clone(),
        _ => String::new(),
    }
}

fn number(item: &Item, name: &str) -> i64 {
    match item.get(name) {
        Some(AttributeValue::N(value)) => value.parse().unwrap_or_default(),
        _ => 0,
    }
}

/// A reservation's item. Empty strings are left out: DynamoDB refuses them in index keys.
fn reservation_item(pk: &str, row: &ReservationView, version: i64) -> Item {
    let mut item = Item::from([
        ("pk".into(), s(pk)),
        ("sk".into(), s(RESERVATION)),
        ("reservation_id".into(), s(&row.reservation_id)),
        ("price_minor".into(), n(row.price.amount_minor)),
        ("status".into(), s(&row.status)),
        ("paid_sequence".into(), n(row.paid_sequence)),
        ("last_event_sequence".into(), n(row.last_event_sequence)),
        ("version".into(), n(version)),
    ]);
    for (name, value) in [
        ("customer_id", &row.customer_id),
        ("car_number", &row.car_number),
        ("pickup_date", &row.pickup_date),
        ("return_date", &row.return_date),
        ("currency_code", &row.price.currency_code),
    ] {
        if !value.is_empty() {
            item.insert(name.into(), s(value));
        }
    }
    if row.holds_days() && !row.car_number.is_empty() {
        item.insert("holding_car".into(), s(&row.car_number));
    }
    item
}

fn reservation_from(item: &Item) -> ReservationView {
    ReservationView {
        reservation_id: text(item, "reservation_id"),
        customer_id: text(item, "customer_id"),
        car_number: text(item, "car_number"),
        pickup_date: text(item, "pickup_date"),
        return_date: text(item, "return_date"),
        price: Money {
            currency_code: text(item, "currency_code"),
            amount_minor: number(item, "price_minor"),
        },
        status: text(item, "status"),
        paid_sequence: number(item, "paid_sequence"),
        last_event_sequence: number(item, "last_event_sequence"),
    }
}

fn car_from(item: &Item) -> CarView {
    CarView {
        car_number: text(item, "car_number"),
        model: text(item, "model"),
        daily_price: Money {
            currency_code: text(item, "currency_code"),
            amount_minor: number(item, "daily_price_minor"),
        },
        last_event_sequence: number(item, "last_event_sequence"),
    }
}
