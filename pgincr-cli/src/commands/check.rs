//! `pgincr check`: is this server ready for logical backups? Reads settings and catalogs,
//! prints one line per check with a fix for each problem, changes nothing.

use crate::cli::CheckArgs;
use crate::pg::compat;
use crate::{Error, Result, pg};
use tokio_postgres::Client;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Ok,
    Warn,
    Fail,
}

#[derive(Debug)]
pub struct Finding {
    pub level: Level,
    pub what: String,
    pub fix: Option<String>,
}

fn ok(what: impl Into<String>) -> Finding {
    Finding {
        level: Level::Ok,
        what: what.into(),
        fix: None,
    }
}

fn problem(level: Level, what: impl Into<String>, fix: impl Into<String>) -> Finding {
    Finding {
        level,
        what: what.into(),
        fix: Some(fix.into()),
    }
}

pub async fn run(args: CheckArgs) -> Result<()> {
    let client = pg::connect(&args.conn.dsn).await?;
    if args.fix {
        apply_fixes(&client, args.yes).await?;
    }
    let findings = inspect(&client).await?;
    for f in &findings {
        let tag = match f.level {
            Level::Ok => "ok  ",
            Level::Warn => "WARN",
            Level::Fail => "FAIL",
        };
        println!("{tag} {}", f.what);
        if let Some(fix) = &f.fix {
            println!("     fix: {fix}");
        }
    }
    let failed = findings.iter().filter(|f| f.level == Level::Fail).count();
    if failed > 0 {
        Err(Error::CheckFailed { failed })
    } else {
        Ok(())
    }
}

async fn setting(client: &Client, name: &str) -> Result<String> {
    Ok(client
        .query_one("SELECT current_setting($1)", &[&name])
        .await?
        .get(0))
}

/// Runs every check against the connected database.
pub async fn inspect(client: &Client) -> Result<Vec<Finding>> {
    let mut out = Vec::new();

    let version: i32 = setting(client, "server_version_num")
        .await?
        .parse()
        .unwrap_or(0);
    out.push(if version >= 130000 {
        ok(format!("server version {version}"))
    } else {
        problem(
            Level::Fail,
            format!("server version {version} is not supported"),
            "use PostgreSQL 13 or later",
        )
    });

    out.push(match plugin_libraries_fix(client).await? {
        None => ok("decoder_sql may be used as an output plugin"),
        Some(fix) => problem(
            Level::Fail,
            "output_plugin_libraries does not list decoder_sql: the server refuses to create or use its slot",
            format!("{fix}; SELECT pg_reload_conf(); (as a superuser; pgincr check --fix does it)"),
        ),
    });

    let wal_level = setting(client, "wal_level").await?;
    out.push(if wal_level == "logical" {
        ok("wal_level = logical")
    } else {
        problem(
            Level::Fail,
            format!("wal_level = {wal_level}"),
            "ALTER SYSTEM SET wal_level = logical; then restart the server",
        )
    });

    let row = client
        .query_one(
            "SELECT current_setting('max_replication_slots')::int, \
                    (SELECT count(*) FROM pg_replication_slots)::int, \
                    current_setting('max_wal_senders')::int",
            &[],
        )
        .await?;
    let (max_slots, used_slots, senders): (i32, i32, i32) = (row.get(0), row.get(1), row.get(2));
    out.push(if used_slots < max_slots {
        ok(format!(
            "replication slots: {used_slots} of {max_slots} in use"
        ))
    } else {
        problem(
            Level::Fail,
            format!("replication slots: all {max_slots} in use"),
            "raise max_replication_slots (restart needed) or drop an unused slot",
        )
    });
    out.push(if senders > 0 {
        ok(format!("max_wal_senders = {senders}"))
    } else {
        problem(
            Level::Fail,
            "max_wal_senders = 0",
            "ALTER SYSTEM SET max_wal_senders = 10; then restart",
        )
    });

    let can_replicate: bool = client
        .query_one(
            "SELECT rolsuper OR rolreplication FROM pg_roles WHERE rolname = current_user",
            &[],
        )
        .await?
        .get(0);
    out.push(if can_replicate {
        ok("role may use replication")
    } else {
        problem(
            Level::Fail,
            "role lacks the REPLICATION attribute",
            "ALTER ROLE <backup role> REPLICATION;",
        )
    });

    out.push(match preload_fix(client).await? {
        None => ok("decoder_sql is loaded by every session (DDL inside functions is captured)"),
        Some(fix) => problem(
            Level::Warn,
            "decoder_sql is not in session_preload_libraries or shared_preload_libraries: DDL \
             run inside functions, procedures and DO blocks is captured only in sessions that \
             loaded it before (others get a WARNING and a NOT CAPTURED marker)",
            format!("{fix}; (as a superuser; pgincr check --fix does it)"),
        ),
    });

    let ext = client
        .query_opt("SELECT default_version, installed_version FROM pg_available_extensions WHERE name = 'decoder_sql'", &[])
        .await?;
    out.push(match ext {
        None => problem(
            Level::Fail,
            "extension decoder_sql is not installed on the server",
            "install the decoder_sql package (cargo pgrx install) on the database host",
        ),
        Some(r) => match r.get::<_, Option<String>>(1) {
            Some(v) => ok(format!("extension decoder_sql {v} created")),
            None => problem(
                Level::Warn,
                "extension decoder_sql is available but not created in this database (DDL is not captured)",
                "CREATE EXTENSION decoder_sql;",
            ),
        },
    });

    let no_identity = tables_without_identity(client).await?;
    out.push(if no_identity.is_empty() {
        ok("every table has a usable replica identity")
    } else {
        let names: Vec<&str> = no_identity.iter().map(|(t, _)| t.as_str()).collect();
        problem(
            Level::Fail,
            format!("tables without usable replica identity (UPDATE/DELETE cannot be backed up): {}", names.join(", ")),
            "add a primary key, or ALTER TABLE <t> REPLICA IDENTITY USING INDEX <unique index>, or REPLICA IDENTITY FULL",
        )
    });

    let unlogged = client
        .query(
            "SELECT format('%I.%I', n.nspname, c.relname) FROM pg_class c \
             JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE c.relkind IN ('r', 'p') AND c.relpersistence = 'u' \
               AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass \
                               AND d.objid = c.oid AND d.deptype = 'e') \
             ORDER BY 1",
            &[],
        )
        .await?;
    out.push(if unlogged.is_empty() {
        ok("no unlogged tables")
    } else {
        let names: Vec<String> = unlogged.iter().map(|r| r.get(0)).collect();
        problem(
            Level::Warn,
            format!(
                "unlogged tables are not in the WAL; only their base-dump contents are kept: {}",
                names.join(", ")
            ),
            "ALTER TABLE <t> SET LOGGED if their changes matter",
        )
    });

    let large_objects: i64 = client
        .query_one("SELECT count(*) FROM pg_largeobject_metadata", &[])
        .await?
        .get(0);
    out.push(if large_objects == 0 {
        ok("no large objects")
    } else {
        problem(
            Level::Warn,
            format!("{large_objects} large objects: their changes are not decoded, only the base dump has them"),
            "store such data in bytea columns",
        )
    });

    // The plugin executes only DDL messages tagged by the capture's C event-trigger functions;
    // an extension created by an older version writes untagged ones, which it refuses.
    let capture_in_c: Option<bool> = client
        .query_opt(
            "SELECT l.lanname = 'c' FROM pg_catalog.pg_proc p
               JOIN pg_catalog.pg_language l ON l.oid = p.prolang
              WHERE p.oid = pg_catalog.to_regproc('decoder_sql.capture_ddl_command_end')",
            &[],
        )
        .await?
        .map(|r| r.get(0));
    match capture_in_c {
        Some(true) => out.push(ok(
            "DDL capture writes authenticated messages (no role can forge one)",
        )),
        Some(false) => out.push(problem(
            Level::Fail,
            "decoder_sql's DDL capture was created by an older version: its messages carry no \
             tag and the plugin writes them as comments, so DDL is not restored",
            "DROP EXTENSION decoder_sql; CREATE EXTENSION decoder_sql; (then take a new base)",
        )),
        None => {} // not created: reported above
    }

    let keep = setting(client, "max_slot_wal_keep_size").await?;
    out.push(if keep == "-1" {
        problem(
            Level::Warn,
            "max_slot_wal_keep_size = -1: a stalled backup stream can fill the WAL disk",
            "set max_slot_wal_keep_size to what the WAL disk can hold, and monitor the slot",
        )
    } else {
        ok(format!("max_slot_wal_keep_size = {keep}"))
    });

    Ok(out)
}

/// Permanent user tables whose UPDATE/DELETE cannot be decoded (no usable replica
/// identity), with the index that could serve as one: the narrowest unique, immediate,
/// valid, non-partial index on NOT NULL plain columns, if any.
async fn tables_without_identity(client: &Client) -> Result<Vec<(String, Option<String>)>> {
    let rows = client
        .query(
            "SELECT format('%I.%I', n.nspname, c.relname),
                    (SELECT format('%I', ic.relname)
                       FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid
                      WHERE i.indrelid = c.oid AND i.indisunique AND i.indimmediate AND i.indisvalid
                        AND i.indpred IS NULL AND i.indexprs IS NULL
                        AND NOT EXISTS (SELECT 1 FROM pg_attribute a
                                         WHERE a.attrelid = c.oid AND a.attnum = ANY (i.indkey)
                                           AND NOT a.attnotnull)
                      ORDER BY i.indnatts, ic.relname LIMIT 1)
               FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
              WHERE c.relkind = 'r' AND c.relpersistence = 'p'
                AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%'
                AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass
                                AND d.objid = c.oid AND d.deptype = 'e')
                AND (c.relreplident = 'n'
                     OR (c.relreplident = 'd' AND NOT EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisprimary))
                     OR (c.relreplident = 'i' AND NOT EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisreplident)))
              ORDER BY 1",
            &[],
        )
        .await?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

/// `ALTER SYSTEM` that lets decoder_sql be used as an output plugin, keeping the libraries
/// already listed; None where the server does not restrict plugins or already lists it.
pub async fn plugin_libraries_fix(client: &Client) -> Result<Option<String>> {
    let Some(row) = client
        .query_opt(compat::OUTPUT_PLUGIN_LIBRARIES, &[])
        .await?
    else {
        return Ok(None);
    };
    let current: String = row.get(0);
    Ok(
        compat::plugin_list_with(&current, "decoder_sql").map(|list| {
            format!(
                "ALTER SYSTEM SET output_plugin_libraries = {}",
                library_list_value(&list)
            )
        }),
    )
}

/// A library-list setting's value for ALTER SYSTEM/DATABASE … SET: one literal per library
/// (a single 'a, b' literal would be read as one library name).
fn library_list_value(list: &[String]) -> String {
    let literals: Vec<String> = list.iter().map(|l| sqlgen::quote_literal(l)).collect();
    literals.join(", ")
}

/// `ALTER DATABASE … SET session_preload_libraries` that makes every new session of this
/// database load decoder_sql before its first statement (keeping the libraries already
/// listed); None where it is already loaded that way (or through shared_preload_libraries).
pub async fn preload_fix(client: &Client) -> Result<Option<String>> {
    let row = client
        .query_one(
            // The database's own setting (what new sessions get), else this session's.
            "SELECT coalesce(
                        (SELECT substr(c, length('session_preload_libraries=') + 1)
                           FROM pg_catalog.pg_db_role_setting d, unnest(d.setconfig) c
                          WHERE d.setrole = 0
                            AND d.setdatabase = (SELECT oid FROM pg_catalog.pg_database
                                                  WHERE datname = current_database())
                            AND c LIKE 'session\\_preload\\_libraries=%'),
                        current_setting('session_preload_libraries')),
                    current_setting('shared_preload_libraries'),
                    current_database()",
            &[],
        )
        .await?;
    let (session, shared, database): (String, String, String) =
        (row.get(0), row.get(1), row.get(2));
    if compat::plugin_list_with(&shared, "decoder_sql").is_none() {
        return Ok(None);
    }
    Ok(
        compat::plugin_list_with(&session, "decoder_sql").map(|list| {
            format!(
                "ALTER DATABASE {} SET session_preload_libraries = {}",
                sqlgen::quote_ident(&database),
                library_list_value(&list)
            )
        }),
    )
}

/// Waits (up to 10 s) until a configuration reload lets decoder_sql be used.
async fn wait_for_plugin_reload(client: &Client) -> Result<()> {
    for _ in 0..100 {
        if plugin_libraries_fix(client).await?.is_none() {
            return Ok(());
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    Err(Error::Invalid(
        "output_plugin_libraries still does not list decoder_sql 10 s after the reload: \
         is it set on the command line or in a file included after postgresql.auto.conf?"
            .into(),
    ))
}

/// The safe fixes `check --fix` offers, as SQL statements.
pub async fn safe_fixes(client: &Client) -> Result<Vec<String>> {
    let mut fixes = Vec::new();
    if let Some(fix) = plugin_libraries_fix(client).await? {
        fixes.push(fix);
        fixes.push("SELECT pg_reload_conf()".to_owned());
    }
    if let Some(fix) = preload_fix(client).await? {
        fixes.push(fix);
    }
    let missing_extension: bool = client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'decoder_sql' AND installed_version IS NULL)",
            &[],
        )
        .await?
        .get(0);
    if missing_extension {
        fixes.push("CREATE EXTENSION decoder_sql".to_owned());
    }
    for (table, index) in tables_without_identity(client).await? {
        fixes.push(match index {
            Some(index) => format!("ALTER TABLE {table} REPLICA IDENTITY USING INDEX {index}"),
            None => format!("ALTER TABLE {table} REPLICA IDENTITY FULL"),
        });
    }
    Ok(fixes)
}

async fn apply_fixes(client: &Client, yes: bool) -> Result<()> {
    use std::io::{BufRead, IsTerminal, Write};
    let fixes = safe_fixes(client).await?;
    if fixes.is_empty() {
        println!("no safe fixes to apply");
        return Ok(());
    }
    println!("safe fixes:");
    for f in &fixes {
        println!("  {f};");
    }
    if !yes {
        if !std::io::stdin().is_terminal() {
            return Err(Error::Invalid(
                "not applying fixes without confirmation: run in a terminal or add --yes".into(),
            ));
        }
        print!("apply these {} change(s)? [y/N] ", fixes.len());
        std::io::stdout().flush()?;
        let mut answer = String::new();
        std::io::stdin().lock().read_line(&mut answer)?;
        if !matches!(answer.trim(), "y" | "Y" | "yes") {
            println!("nothing changed");
            return Ok(());
        }
    }
    for f in &fixes {
        client.batch_execute(f).await?;
        println!("applied: {f}");
        if f.starts_with("SELECT pg_reload_conf()") {
            wait_for_plugin_reload(client).await?;
        }
    }
    Ok(())
}
