//! mypage's settings: the common ones plus where the read model lives.

use rentacar_runtime::{ConfigError, ServiceConfig, config::Env};

/// The table name used when `RENTACAR_MYPAGE_DYNAMODB_TABLE` is not set.
pub const DEFAULT_TABLE: &str = "rentacar-mypage";

#[derive(Debug, Clone)]
pub struct Config {
    pub service: ServiceConfig,
    pub store: StoreConfig,
}

/// Which provider keeps the read model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreConfig {
    /// The service's SQL database (`RENTACAR_DATABASE_URL`).
    Sql,
    Dynamodb(DynamodbConfig),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DynamodbConfig {
    pub table: String,
    /// A DynamoDB-compatible endpoint instead of AWS's own (local development and tests).
    pub endpoint: Option<String>,
    /// Creates the table when it is missing: for local use; in a cluster the table is a
    /// provisioned resource.
    pub create_table: bool,
}

impl Config {
    /// The common settings, and `RENTACAR_MYPAGE_STORE` (`sql`, the default, or `dynamodb`)
    /// with `RENTACAR_MYPAGE_DYNAMODB_TABLE`, `RENTACAR_MYPAGE_DYNAMODB_ENDPOINT` and
    /// `RENTACAR_MYPAGE_DYNAMODB_CREATE_TABLE` for the latter. Region and credentials come
    /// from AWS's default chains (`AWS_REGION`, EKS Pod Identity, IRSA, ...).
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let service = ServiceConfig::from_env(env, crate::SERVICE)?;
        let store = match env.get("RENTACAR_MYPAGE_STORE").as_deref().map(str::trim) {
            None | Some("sql") => StoreConfig::Sql,
            Some("dynamodb") => StoreConfig::Dynamodb(DynamodbConfig::from_env(env)?),
            Some(other) => return Err(invalid("RENTACAR_MYPAGE_STORE", other, "sql or dynamodb")),
        };
        Ok(Self { service, store })
    }
}

impl DynamodbConfig {
    fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let table = env
            .get("RENTACAR_MYPAGE_DYNAMODB_TABLE")
            .unwrap_or_else(|| DEFAULT_TABLE.to_owned());
        let valid_name = (3..=255).contains(&table.len())
            && table
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
        if !valid_name {
            return Err(invalid(
                "RENTACAR_MYPAGE_DYNAMODB_TABLE",
                &table,
                "a DynamoDB table name: 3 to 255 letters, digits, '_', '.' or '-'",
            ));
        }
        let endpoint = match env.get("RENTACAR_MYPAGE_DYNAMODB_ENDPOINT") {
            None => None,
            Some(_) => Some(env.url_or("RENTACAR_MYPAGE_DYNAMODB_ENDPOINT", "", &["http", "https"])?),
        };
        let create_table = env.parse_or("RENTACAR_MYPAGE_DYNAMODB_CREATE_TABLE", false, "true or false")?;
        Ok(Self {
            table,
            endpoint,
            create_table,
        })
    }
}

fn invalid(variable: &str, value: &str, expected: &str) -> ConfigError {
    ConfigError {
        variable: variable.to_owned(),
        value: value.to_owned(),
        expected: expected.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sql_is_the_default_and_dynamodb_is_chosen_by_name() {
        let config = Config::from_env(&Env::from_pairs([
            ("RENTACAR_DATA_DIR", "/tmp"),
            ("RENTACAR_AUTH", "off"),
        ]))
        .unwrap();
        assert_eq!(config.store, StoreConfig::Sql);

        let env = Env::from_pairs([
            ("RENTACAR_MYPAGE_STORE", "dynamodb"),
            ("RENTACAR_MYPAGE_DYNAMODB_ENDPOINT", "http://127.0.0.1:5000"),
            ("RENTACAR_AUTH", "off"),
        ]);
        let StoreConfig::Dynamodb(dynamodb) = Config::from_env(&env).unwrap().store else {
            panic!("dynamodb expected");
        };
        assert_eq!(dynamodb.table, DEFAULT_TABLE);
        assert_eq!(dynamodb.endpoint.as_deref(), Some("http://127.0.0.1:5000"));
        assert!(!dynamodb.create_table);
    }

    #[test]
    fn bad_values_name_their_variable() {
        for (variable, value) in [
            ("RENTACAR_MYPAGE_STORE", "mongodb"),
            ("RENTACAR_MYPAGE_DYNAMODB_TABLE", "no spaces allowed"),
            ("RENTACAR_MYPAGE_DYNAMODB_ENDPOINT", "127.0.0.1:5000"),
            ("RENTACAR_MYPAGE_DYNAMODB_CREATE_TABLE", "yes"),
        ] {
            let env = Env::from_pairs([
                ("RENTACAR_MYPAGE_STORE", "dynamodb"),
                ("RENTACAR_AUTH", "off"),
                (variable, value),
            ]);
            let err = Config::from_env(&env).unwrap_err();
            assert_eq!(err.variable, variable, "{err}");
        }
    }
}
