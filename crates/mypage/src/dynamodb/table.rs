//! The one table the `dynamodb` provider keeps, in the single-table style, and the checks
//! made on it at start.
//!
//! | item          | `pk`                  | `sk`          | indexed by                                |
//! |---------------|-----------------------|---------------|-------------------------------------------|
//! | a reservation | `RESERVATION#<id>`    | `RESERVATION` | `by_customer`; `by_car` while it holds days |
//! | a car         | `CARS`                | `<car number>`| the table: cars in number order           |
//! | an applied event | `INBOX#<consumer>#<event id>` | `INBOX` | -; expires by `expires_at`     |
//!
//! - `by_customer` (`customer_id`, `paid_sequence`): "my reservations", newest first.
//! - `by_car` (`holding_car`, `pickup_date`): sparse; only reservations that hold their
//!   car's days carry `holding_car`, so availability is a query of one car's partition over
//!   a bounded range of pickup dates (a rental is at most `MAX_RENTAL_DAYS` long).
//!
//! `deploy/k8s/overlays/eks/mypage-table.yaml` provisions the same table through ACK; a
//! test keeps the two alike.

use aws_sdk_dynamodb::{
    Client,
    client::Waiters,
    types::{
        AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection,
        ProjectionType, ScalarAttributeType, TableDescription, TimeToLiveSpecification,
    },
};

use super::DynamodbError;

pub const PARTITION_KEY: &str = "pk";
pub const SORT_KEY: &str = "sk";
pub const BY_CUSTOMER: &str = "by_customer";
pub const BY_CAR: &str = "by_car";
/// The attribute holding when an item expires (seconds since the epoch): DynamoDB's time
/// to live removes inbox items by it.
pub const TIME_TO_LIVE: &str = "expires_at";

/// A key of the table or of an index: partition attribute, sort attribute and their types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Key {
    pub partition: (&'static str, ScalarKind),
    pub sort: (&'static str, ScalarKind),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ScalarKind {
    S,
    N,
}

/// The table's own key and its indexes, by name. Everything else about the table
/// (capacity, encryption, tags) is the operator's.
pub const TABLE_KEY: Key = Key {
    partition: (PARTITION_KEY, ScalarKind::S),
    sort: (SORT_KEY, ScalarKind::S),
};
pub const INDEXES: [(&str, Key); 2] = [
    (
        BY_CUSTOMER,
        Key {
            partition: ("customer_id", ScalarKind::S),
            sort: ("paid_sequence", ScalarKind::N),
        },
    ),
    (
        BY_CAR,
        Key {
            partition: ("holding_car", ScalarKind::S),
            sort: ("pickup_date", ScalarKind::S),
        },
    ),
];

impl ScalarKind {
    fn sdk(self) -> ScalarAttributeType {
        match self {
            Self::S => ScalarAttributeType::S,
            Self::N => ScalarAttributeType::N,
        }
    }
}

impl Key {
    fn schema(&self) -> Vec<KeySchemaElement> {
        [(self.partition.0, KeyType::Hash), (self.sort.0, KeyType::Range)]
            .into_iter()
            .map(|(name, key_type)| {
                KeySchemaElement::builder()
                    .attribute_name(name)
                    .key_type(key_type)
                    .build()
                    .expect("name and key type are set")
            })
            .collect()
    }

    fn of(schema: &[KeySchemaElement]) -> Vec<(String, KeyType)> {
        schema
            .iter()
            .map(|k| (k.attribute_name().to_owned(), k.key_type().clone()))
            .collect()
    }
}

/// Why the table cannot serve the read model.
#[derive(Debug, thiserror::Error)]
pub enum TableProblem {
    #[error(
        "DynamoDB table {table:?} does not exist: provision it (deploy/k8s/overlays/eks/mypage-table.yaml), \
         or set RENTACAR_MYPAGE_DYNAMODB_CREATE_TABLE=true for local use"
    )]
    Missing { table: String },
    #[error(
        "access to DynamoDB table {table:?} was denied ({cause}): give mypage's service account an AWS \
         identity allowed to read and write it (an EKS Pod Identity association or an IRSA role)"
    )]
    Denied { table: String, cause: String },
    #[error("DynamoDB table {table:?} does not have the key schema mypage needs: {mismatch}")]
    WrongSchema { table: String, mismatch: String },
    #[error("DynamoDB table {table:?} is not usable yet")]
    Unreachable {
        table: String,
        #[source]
        cause: DynamodbError,
    },
}

/// Checks that `table` exists with the keys and indexes mypage reads, creating it first
/// when `create` allows and it is missing.
pub async fn check(client: &Client, table: &str, create: bool) -> Result<(), TableProblem> {
    let description = match describe(client, table).await {
        Err(TableProblem::Missing { .. }) if create => {
            create_table(client, table)
                .await
                .map_err(|cause| classify(table, cause))?;
            tracing::info!(table, "created the read model's DynamoDB table");
            describe(client, table).await?
        }
        other => other?,
    };
    let mismatch = mismatches(&description);
    if mismatch.is_empty() {
        Ok(())
    } else {
        Err(TableProblem::WrongSchema {
            table: table.to_owned(),
            mismatch: mismatch.join("; "),
        })
    }
}

async fn describe(client: &Client, table: &str) -> Result<TableDescription, TableProblem> {
    let output = client
        .describe_table()
        .table_name(table)
        .send()
        .await
        .map_err(|err| classify(table, DynamodbError::from_sdk("DescribeTable", err)))?;
    output.table.ok_or_else(|| TableProblem::Missing {
        table: table.to_owned(),
    })
}

fn classify(table: &str, cause: DynamodbError) -> TableProblem {
    let table = table.to_owned();
    if cause.is_missing_table() {
        TableProblem::Missing { table }
    } else if cause.is_denied() {
        TableProblem::Denied {
            table,
            cause: cause.to_string(),
        }
    } else {
        TableProblem::Unreachable { table, cause }
    }
}

/// What differs between `description` and the keys mypage needs.
fn mismatches(description: &TableDescription) -> Vec<String> {
    let mut problems = Vec::new();
    let table_key = Key::of(description.key_schema());
    if table_key != Key::of(&TABLE_KEY.schema()) {
        problems.push(format!("key is {table_key:?}, expected pk (HASH) and sk (RANGE)"));
    }
    for (name, key) in INDEXES {
        let found = description
            .global_secondary_indexes()
            .iter()
            .find(|index| index.index_name() == Some(name));
        match found {
            None => problems.push(format!("global secondary index {name} is missing")),
            Some(index) if Key::of(index.key_schema()) != Key::of(&key.schema()) => problems.push(format!(
                "index {name} is keyed by {:?}, expected {} (HASH) and {} (RANGE)",
                Key::of(index.key_schema()),
                key.partition.0,
                key.sort.0
            )),
            Some(_) => {}
        }
    }
    problems
}

/// Creates the table on demand (pay per request), for local use.
async fn create_table(client: &Client, table: &str) -> Result<(), DynamodbError> {
    let mut attributes = vec![TABLE_KEY.partition, TABLE_KEY.sort];
    for (_, key) in INDEXES {
        attributes.extend([key.partition, key.sort]);
    }
    let mut request = client
        .create_table()
        .table_name(table)
        .billing_mode(BillingMode::PayPerRequest)
        .set_key_schema(Some(TABLE_KEY.schema()));
    for (name, kind) in attributes {
        request = request.attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name(name)
                .attribute_type(kind.sdk())
                .build()
                .expect("name and type are set"),
        );
    }
    for (name, key) in INDEXES {
        request = request.global_secondary_indexes(
            GlobalSecondaryIndex::builder()
                .index_name(name)
                .set_key_schema(Some(key.schema()))
                .projection(Projection::builder().projection_type(ProjectionType::All).build())
                .build()
                .expect("name, key and projection are set"),
        );
    }
    match request.send().await {
        Ok(_) => {}
        // Another replica created it first.
        Err(err)
            if err
                .as_service_error()
                .is_some_and(|e| e.is_resource_in_use_exception()) => {}
        Err(err) => return Err(DynamodbError::from_sdk("CreateTable", err)),
    }
    client
        .wait_until_table_exists()
        .table_name(table)
        .wait(std::time::Duration::from_secs(60))
        .await
        .map_err(|err| DynamodbError::other("waiting for the new table", err))?;
    let time_to_live = TimeToLiveSpecification::builder()
        .attribute_name(TIME_TO_LIVE)
        .enabled(true)
        .build()
        .expect("name and switch are set");
    client
        .update_time_to_live()
        .table_name(table)
        .time_to_live_specification(time_to_live)
        .send()
        .await
        .map_err(|err| DynamodbError::from_sdk("UpdateTimeToLive", err))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use serde_yaml_ng::Value;

    use super::*;

    fn key_of(value: &Value) -> Vec<(String, String)> {
        value
            .as_sequence()
            .expect("keySchema is a list")
            .iter()
            .map(|k| {
                (
                    k["attributeName"].as_str().unwrap().to_owned(),
                    k["keyType"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    }

    fn expected(key: &Key) -> Vec<(String, String)> {
        vec![
            (key.partition.0.to_owned(), "HASH".to_owned()),
            (key.sort.0.to_owned(), "RANGE".to_owned()),
        ]
    }

    fn manifest(relative: &str) -> Value {
        let path = format!("{}/../../{relative}", env!("CARGO_MANIFEST_DIR"));
        serde_yaml_ng::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
    }

    /// The ACK `Table` shipped for EKS describes the table this code creates and checks.
    #[test]
    fn the_provisioned_table_matches_the_code() {
        let manifest = manifest("deploy/k8s/overlays/eks/mypage-table.yaml");
        assert_table_matches_the_code(&manifest["spec"]);
    }

    /// So does the one the kro RentalStack creates.
    #[test]
    fn the_kro_stacks_table_matches_the_code() {
        let graph = manifest("deploy/kro/rental-stack.yaml");
        let table = graph["spec"]["resources"]
            .as_sequence()
            .unwrap()
            .iter()
            .find(|resource| resource["template"]["kind"] == "Table")
            .expect("the RentalStack creates a Table");
        assert_table_matches_the_code(&table["template"]["spec"]);
    }

    fn assert_table_matches_the_code(spec: &Value) {
        assert_eq!(key_of(&spec["keySchema"]), expected(&TABLE_KEY));

        let mut attributes = BTreeSet::from([TABLE_KEY.partition, TABLE_KEY.sort]);
        for (_, key) in INDEXES {
            attributes.extend([key.partition, key.sort]);
        }
        let attributes: BTreeSet<(String, String)> = attributes
            .into_iter()
            .map(|(name, kind)| (name.to_owned(), format!("{kind:?}")))
            .collect();
        let declared: BTreeSet<(String, String)> = spec["attributeDefinitions"]
            .as_sequence()
            .unwrap()
            .iter()
            .map(|a| {
                (
                    a["attributeName"].as_str().unwrap().to_owned(),
                    a["attributeType"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        assert_eq!(declared, attributes);

        let indexes = spec["globalSecondaryIndexes"].as_sequence().unwrap();
        assert_eq!(indexes.len(), INDEXES.len());
        for (name, key) in INDEXES {
            let index = indexes
                .iter()
                .find(|i| i["indexName"].as_str() == Some(name))
                .unwrap_or_else(|| panic!("index {name} is not provisioned"));
            assert_eq!(key_of(&index["keySchema"]), expected(&key), "index {name}");
            assert_eq!(
                index["projection"]["projectionType"].as_str(),
                Some("ALL"),
                "index {name}"
            );
        }

        assert_eq!(spec["timeToLive"]["attributeName"].as_str(), Some(TIME_TO_LIVE));
        assert_eq!(spec["timeToLive"]["enabled"].as_bool(), Some(true));
    }
}
