//! The replication origin that makes a restore exactly-once and resumable.
//!
//! Each restore has one origin, `pgincr_<target database oid>_<base id>` (origins are shared
//! by all databases of a cluster, and their number is limited by `max_replication_slots`).
//! It is created in the same transaction as the base dump, so it exists exactly when the base
//! is in place, and each applied transaction records its end LSN in it as it commits. It is
//! dropped when the restore is complete; origins of databases that no longer exist are
//! dropped by every restore into the cluster.

use crate::error::describe_pg_error;
use crate::{Error, Result};
use sqlgen::lsn::Lsn;
use std::time::{Duration, Instant};
use tokio_postgres::Client;
use tokio_postgres::error::SqlState;

/// The origin name of a restore of `base_id` into the database `client` is connected to.
pub async fn name(client: &Client, base_id: &str) -> Result<String> {
    let prefix: String = client
        .query_one(
            "SELECT 'pgincr_' || oid || '_' FROM pg_catalog.pg_database WHERE datname = current_database()",
            &[],
        )
        .await?
        .get(0);
    Ok(format!("{prefix}{base_id}"))
}

/// How far the restore tracked by `origin` got; `None` when no restore of this base into the
/// target is on record. A restore of another base into the same target is an error.
pub async fn progress(client: &Client, origin: &str) -> Result<Option<Lsn>> {
    let others: Vec<String> = client
        .query(
            "SELECT roname FROM pg_catalog.pg_replication_origin
              WHERE roname LIKE (SELECT 'pgincr\\_' || oid || '\\_%' FROM pg_catalog.pg_database
                                  WHERE datname = current_database())
                AND roname <> $1",
            &[&origin],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    if let Some(other) = others.first() {
        return Err(Error::Invalid(format!(
            "the target was partly restored from base {}; resume with --base {0}, or restore into a new database",
            other.rsplit('_').next().unwrap_or(other)
        )));
    }
    let row = client
        .query_opt(
            "SELECT coalesce(pg_catalog.pg_replication_origin_progress(roname, true), '0/0')::text
               FROM pg_catalog.pg_replication_origin WHERE roname = $1",
            &[&origin],
        )
        .await?;
    row.map(|r| {
        r.get::<_, String>(0)
            .parse()
            .map_err(|e: sqlgen::lsn::LsnParseError| Error::Invalid(e.to_string()))
    })
    .transpose()
}

/// The statement, run in the base dump's transaction, that creates the origin.
pub fn create_statement(origin: &str) -> String {
    format!(
        "SELECT pg_catalog.pg_replication_origin_create('{}');\n",
        origin.replace('\'', "''")
    )
}

/// Sets the origin to the base's consistent point. Until then its progress reads 0/0, which
/// a resumed restore treats the same way (everything up to the consistent point is in the
/// base).
pub async fn start_at(client: &Client, origin: &str, lsn: Lsn) -> Result<()> {
    client
        .query_one(
            "SELECT pg_catalog.pg_replication_origin_advance($1, $2::text::pg_lsn)",
            &[&origin, &lsn.to_string()],
        )
        .await?;
    Ok(())
}

/// Binds the session to the restore's origin. A previous run's backend may still be exiting
/// and holding it for a moment ("already active for PID …"): retry for a few seconds, then
/// name the holder.
pub async fn setup_session(client: &Client, origin: &str) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let err = match client
            .query_one(
                "SELECT pg_catalog.pg_replication_origin_session_setup($1)",
                &[&origin],
            )
            .await
        {
            Ok(_) => return Ok(()),
            Err(err) => err,
        };
        if err.code() != Some(&SqlState::OBJECT_IN_USE) {
            return Err(err.into());
        }
        if Instant::now() >= deadline {
            return Err(Error::Invalid(format!(
                "another session is applying changes into this target (replication origin \
                 {origin}: {}); is another pgincr restore of it running?",
                describe_pg_error(&err)
            )));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Releases the origin from this session and drops it: the restore is complete.
pub async fn drop_after_completion(client: &Client, origin: &str) -> Result<()> {
    client
        .batch_execute("SELECT pg_catalog.pg_replication_origin_session_reset()")
        .await?;
    client
        .query_one(
            "SELECT pg_catalog.pg_replication_origin_drop($1)",
            &[&origin],
        )
        .await?;
    Ok(())
}

/// Drops the origins of restores into databases that no longer exist; returns their names.
/// An origin some session still holds is left alone.
pub async fn drop_orphaned(client: &Client) -> Result<Vec<String>> {
    let orphans: Vec<String> = client
        .query(
            "SELECT roname FROM pg_catalog.pg_replication_origin
              WHERE roname ~ '^pgincr_[0-9]+_'
                AND substring(roname from '^pgincr_([0-9]+)_')::oid
                    NOT IN (SELECT oid FROM pg_catalog.pg_database)
              ORDER BY roname",
            &[],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let mut dropped = Vec::new();
    for name in orphans {
        match client
            .query_one("SELECT pg_catalog.pg_replication_origin_drop($1)", &[&name])
            .await
        {
            Ok(_) => dropped.push(name),
            Err(e) => tracing::warn!(
                "could not drop replication origin {name}: {}",
                describe_pg_error(&e)
            ),
        }
    }
    Ok(dropped)
}
