//! Connecting to a service's own database and bringing its schema up to date.

use std::time::Duration;

use sea_orm::{
    ConnectOptions, Database, DatabaseConnection, DbErr,
    sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous},
};
use sea_orm_migration::MigratorTrait;
use tokio_util::sync::CancellationToken;

/// How long a pooled connection may sit unused before it is checked on its next use.
const PING_IF_IDLE_FOR: Duration = Duration::from_secs(30);

/// Opens a pool to `url`. A SQLite file (and its folder) is created when missing.
pub async fn connect(url: &str) -> Result<DatabaseConnection, DbErr> {
    let mut options = ConnectOptions::new(url.to_owned());
    options
        .connect_timeout(Duration::from_secs(5))
        .acquire_timeout(Duration::from_secs(10))
        // The pool's default pings a connection every time it is taken: one more round trip
        // to the database (to SQLite's thread) for every statement or transaction. Only a
        // connection idle long enough for a proxy or the server to have dropped it is
        // pinged; a hot one that broke fails its statement, which callers retry.
        .test_before_acquire_if_idle_for(PING_IF_IDLE_FOR)
        .sqlx_logging(false);
    if url.starts_with("sqlite:") {
        create_sqlite_folder(url);
        // SQLite allows one writer; a single connection turns lock contention into a queue
        // instead of SQLITE_BUSY errors under concurrent requests.
        options
            .max_connections(1)
            .min_connections(1)
            .map_sqlx_sqlite_opts(for_a_server);
    } else {
        options.max_connections(16);
    }
    Database::connect(options).await
}

/// SQLite set up for a server rather than a desktop: a write-ahead log synced at
/// checkpoints (`synchronous=NORMAL`) survives a process crash and commits in tens of
/// microseconds instead of the milliseconds of a rollback journal synced at every commit; a
/// writer in another process (a second replica on the same file) is waited for.
fn for_a_server(options: SqliteConnectOptions) -> SqliteConnectOptions {
    options
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .busy_timeout(Duration::from_secs(5))
        .foreign_keys(true)
}

fn create_sqlite_folder(url: &str) {
    let path = url.trim_start_matches("sqlite:").trim_start_matches("//");
    let path = path.split('?').next().unwrap_or_default();
    if let Some(parent) = std::path::Path::new(path).parent()
        && !parent.as_os_str().is_empty()
    {
        // A failure shows up as a clear connect error right after.
        let _ = std::fs::create_dir_all(parent);
    }
}

/// Connects and applies every pending migration of `M`.
pub async fn connect_and_migrate<M: MigratorTrait>(url: &str) -> Result<DatabaseConnection, DbErr> {
    let db = connect(url).await?;
    M::up(&db, None).await?;
    Ok(db)
}

/// Like [`connect_and_migrate`], but keeps trying while the database is unreachable, as a
/// pod does while its database starts. Gives up only when `shutdown` fires.
pub async fn wait_and_migrate<M: MigratorTrait>(
    url: &str,
    shutdown: &CancellationToken,
) -> Result<DatabaseConnection, DbErr> {
    let mut delay = Duration::from_millis(200);
    loop {
        match connect_and_migrate::<M>(url).await {
            Ok(db) => return Ok(db),
            Err(err) => {
                tracing::warn!(error = %err, retry_in = ?delay, "database not ready");
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = shutdown.cancelled() => return Err(err),
                }
                delay = (delay * 2).min(Duration::from_secs(5));
            }
        }
    }
}

/// Whether `err` is a unique-key clash, as when two replicas insert the same key at once.
pub fn is_unique_violation(err: &DbErr) -> bool {
    matches!(err.sql_err(), Some(sea_orm::SqlErr::UniqueConstraintViolation(_)))
}

/// Begins a transaction that will write. On SQLite it takes the write lock at once
/// (`BEGIN IMMEDIATE`), so that concurrent writers, such as two replicas on one file, wait
/// for each other instead of failing when a read turns into a write.
pub async fn begin_write(db: &DatabaseConnection) -> Result<sea_orm::DatabaseTransaction, DbErr> {
    use sea_orm::{SqliteTransactionMode, TransactionOptions, TransactionTrait};
    let mut options = TransactionOptions::default();
    if db.get_database_backend() == sea_orm::DbBackend::Sqlite {
        options.sqlite_transaction_mode = Some(SqliteTransactionMode::Immediate);
    }
    db.begin_with_options(options).await
}

/// Whether `err` may go away by itself, so that the same call can succeed when retried.
pub fn is_transient(err: &DbErr) -> bool {
    use sea_orm::{RuntimeErr, sqlx};
    let runtime = match err {
        DbErr::ConnectionAcquire(_) | DbErr::Conn(_) => return true,
        DbErr::Exec(runtime) | DbErr::Query(runtime) => runtime,
        _ => return false,
    };
    let RuntimeErr::SqlxError(err) = runtime else {
        return false;
    };
    match err.as_ref() {
        sqlx::Error::Io(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        // PostgreSQL: serialization failure, deadlock, admin shutdown.
        // SQLite: SQLITE_BUSY, SQLITE_LOCKED and their extended codes.
        sqlx::Error::Database(db) => matches!(
            db.code().as_deref(),
            Some("40001" | "40P01" | "57P01" | "5" | "6" | "261" | "262" | "517")
        ),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use sea_orm::{ConnectionTrait, Statement};

    /// The build turns on SQLite's query planner stability guarantee (`.cargo/config.toml`):
    /// without it, a query with a bound LIMIT is parsed and planned again at every run.
    #[tokio::test]
    async fn sqlite_is_built_to_plan_a_statement_once() {
        let db = super::connect("sqlite::memory:").await.unwrap();
        let pragma = Statement::from_string(db.get_database_backend(), "PRAGMA compile_options");
        let options: Vec<String> = db
            .query_all_raw(pragma)
            .await
            .unwrap()
            .iter()
            .map(|row| row.try_get_by_index(0).unwrap())
            .collect();
        assert!(options.iter().any(|o| o == "ENABLE_QPSG"), "{options:?}");
    }
}
