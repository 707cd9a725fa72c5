//! The target database: creating it, claiming it for this restore, and checking that a new
//! restore starts from an empty one.

use crate::repo::Base;
use crate::{Error, Result};
use sqlgen::ident::quote_ident;
use tokio_postgres::Client;
use tokio_postgres::error::SqlState;

/// Creates the target with the source's encoding and locale unless it exists; true when this
/// call created it. Another restore creating the same database at the same moment counts as
/// "exists": the lock taken next decides which of the two goes on.
pub async fn create_database(admin: &Client, dbname: &str, base: &Base) -> Result<bool> {
    let exists = admin
        .query_opt(
            "SELECT 1 FROM pg_catalog.pg_database WHERE datname = $1",
            &[&dbname],
        )
        .await?
        .is_some();
    if exists {
        println!("database \"{dbname}\" exists; restoring into it");
        return Ok(false);
    }
    let server = &base.server;
    let lit = |s: &str| format!("'{}'", s.replace('\'', "''"));
    let created = admin
        .batch_execute(&format!(
            "CREATE DATABASE {} TEMPLATE template0 ENCODING {} LC_COLLATE {} LC_CTYPE {}",
            quote_ident(dbname),
            lit(&server.encoding),
            lit(&server.lc_collate),
            lit(&server.lc_ctype)
        ))
        .await;
    match created {
        Ok(()) => {
            println!("created database \"{dbname}\"");
            Ok(true)
        }
        Err(e)
            if e.code() == Some(&SqlState::DUPLICATE_DATABASE)
                || e.code() == Some(&SqlState::UNIQUE_VIOLATION) =>
        {
            println!("database \"{dbname}\" was created by another session; restoring into it");
            Ok(false)
        }
        Err(e) => Err(e.into()),
    }
}

/// Gives a database this restore created the source database's owner, privileges, settings
/// and comment, as far as the target's roles allow (a missing role is reported, not fatal).
pub async fn give_database_properties(client: &Client, dbname: &str, base: &Base) -> Result<()> {
    let Some(props) = &base.server.database else {
        return Ok(());
    };
    let mut failed = Vec::new();
    for statement in crate::database::statements(props, dbname) {
        if let Err(e) = client.batch_execute(&statement).await {
            failed.push(format!(
                "{statement}: {}",
                crate::error::describe_pg_error(&e)
            ));
        }
    }
    if failed.is_empty() {
        println!("database \"{dbname}\" has the source database's owner, privileges and settings");
    } else {
        for f in &failed {
            tracing::warn!("database property not restored: {f}");
        }
    }
    Ok(())
}

/// The key of the session-level advisory lock a restore holds on its target database.
const RESTORE_LOCK: &str = "pg_catalog.hashtextextended('pgincr restore', 0)";

/// Claims the target for this restore for as long as `client` stays connected, so that two
/// restores never interleave in one database.
pub async fn lock_target(client: &Client) -> Result<()> {
    let locked: bool = client
        .query_one(
            &format!("SELECT pg_catalog.pg_try_advisory_lock({RESTORE_LOCK})"),
            &[],
        )
        .await?
        .get(0);
    if locked {
        return Ok(());
    }
    let holder = client
        .query_opt(
            "SELECT l.pid, coalesce(a.application_name, ''), coalesce(a.client_addr::text, 'local'),
                    coalesce(to_char(a.backend_start, 'YYYY-MM-DD HH24:MI:SS TZ'), '?'),
                    current_database()::text
               FROM pg_catalog.pg_locks l
               LEFT JOIN pg_catalog.pg_stat_activity a ON a.pid = l.pid
              WHERE l.locktype = 'advisory' AND l.granted AND l.pid <> pg_catalog.pg_backend_pid()
                AND l.database = (SELECT oid FROM pg_catalog.pg_database
                                   WHERE datname = current_database())
              LIMIT 1",
            &[],
        )
        .await?;
    let described = holder.map_or_else(String::new, |r| {
        format!(
            " (backend PID {}, application \"{}\", client {}, connected since {})",
            r.get::<_, i32>(0),
            r.get::<_, String>(1),
            r.get::<_, String>(2),
            r.get::<_, String>(3)
        )
    });
    let db: String = client
        .query_one("SELECT current_database()::text", &[])
        .await?
        .get(0);
    Err(Error::Invalid(format!(
        "another pgincr restore is running into database \"{db}\"{described}; \
         wait for it to finish (or stop it), then run this restore again to resume it"
    )))
}

/// Objects a fresh database does not have: anything created after initdb (object ids from
/// 16384 on) in the catalogs a dump or a user fills, outside temporary schemas.
const USER_OBJECTS: &str = "
    WITH user_ns AS (
        SELECT oid FROM pg_catalog.pg_namespace WHERE nspname !~ '^pg_(toast_)?temp_')
    SELECT (SELECT count(*) FROM pg_catalog.pg_class
             WHERE oid >= 16384 AND relnamespace IN (SELECT oid FROM user_ns))
         + (SELECT count(*) FROM pg_catalog.pg_type
             WHERE oid >= 16384 AND typnamespace IN (SELECT oid FROM user_ns)
               AND typrelid = 0 AND typelem = 0)
         + (SELECT count(*) FROM pg_catalog.pg_proc
             WHERE oid >= 16384 AND pronamespace IN (SELECT oid FROM user_ns))
         + (SELECT count(*) FROM pg_catalog.pg_namespace
             WHERE oid >= 16384 AND oid IN (SELECT oid FROM user_ns))
         + (SELECT count(*) FROM pg_catalog.pg_extension WHERE oid >= 16384)
         + (SELECT count(*) FROM pg_catalog.pg_collation WHERE oid >= 16384)
         + (SELECT count(*) FROM pg_catalog.pg_operator WHERE oid >= 16384)
         + (SELECT count(*) FROM pg_catalog.pg_ts_config WHERE oid >= 16384)
         + (SELECT count(*) FROM pg_catalog.pg_event_trigger WHERE oid >= 16384)
         + (SELECT count(*) FROM pg_catalog.pg_foreign_server WHERE oid >= 16384)
         + (SELECT count(*) FROM pg_catalog.pg_publication WHERE oid >= 16384),
           current_database()::text";

/// Refuses a target that already holds user objects. Called only when no interrupted
/// restore of this target is on record, so whatever is there is not pgincr's to continue.
pub async fn ensure_empty(client: &Client) -> Result<()> {
    let row = client.query_one(USER_OBJECTS, &[]).await?;
    let objects: i64 = row.get(0);
    if objects > 0 {
        let db: String = row.get(1);
        return Err(Error::Invalid(format!(
            "target database \"{db}\" is not empty ({objects} object(s)) and no interrupted pgincr \
             restore of it is on record (no replication origin), so there is nothing to resume; \
             restore into a new database (e.g. --create with another name) or drop this one first \
             (a restore of a directory-format base interrupted in pg_restore leaves such a target)"
        )));
    }
    Ok(())
}
