//! `pgincr init`: creates the repository, the extension (DDL capture), the permanent
//! logical slot with an exported snapshot and the first base backup under that snapshot.
//!
//! Safe to re-run: an initialised repository whose slot still exists is left alone. An
//! existing repository or slot is only replaced with `--force`.

use super::base::{report, source_identity, take_base};
use crate::cli::InitArgs;
use crate::pg::Endpoint;
use crate::repo::{self, Manifest, Repo, Source};
use crate::{Error, Result};
use std::path::PathBuf;
use tokio_postgres::Client;

pub async fn run(args: InitArgs, bindir: Option<PathBuf>) -> Result<()> {
    let repo = Repo::new(&args.repo.repo);
    let source = Endpoint::new(&args.conn.dsn, bindir)?;
    let client = source.connect().await?;
    let (system_identifier, database) = source_identity(&client).await?;
    let slot = slot_state(&client, &args.slot).await?;

    if repo.exists() && !args.force {
        let m = repo.load()?;
        let same_source =
            m.source.system_identifier == system_identifier && m.source.database == database;
        return match (same_source, m.source.slot == args.slot, &slot) {
            (true, true, Some(s)) if s.plugin == "decoder_sql" && s.database == database => {
                println!(
                    "{} is already initialised for database \"{database}\" with slot {}; nothing to do",
                    repo.root.display(),
                    args.slot
                );
                Ok(())
            }
            (true, true, None) => Err(Error::Repository(format!(
                "{} belongs to slot {}, which no longer exists: the change stream has a gap \
                 from here on. Start a new repository (or `pgincr init --force` to empty this one).",
                repo.root.display(),
                args.slot
            ))),
            _ => Err(Error::Repository(format!(
                "{} already holds a repository of database \"{}\" (slot {}); use another \
                 directory, or --force to empty it and start over",
                repo.root.display(),
                m.source.database,
                m.source.slot
            ))),
        };
    }
    if let Some(fix) = super::check::plugin_libraries_fix(&client).await? {
        return Err(Error::Invalid(format!(
            "the server does not allow decoder_sql as an output plugin (output_plugin_libraries); \
             as a superuser run: {fix}; SELECT pg_reload_conf(); (or pgincr check --fix)"
        )));
    }
    if !args.force && dir_has_entries(&repo.root) {
        return Err(Error::Repository(format!(
            "{} exists and is not empty; use an empty directory (or --force to empty it)",
            repo.root.display()
        )));
    }
    if let Some(s) = &slot {
        if !args.force {
            return Err(Error::Invalid(format!(
                "replication slot {} already exists (plugin {}, database {}); drop it, choose \
                 another name with --slot, or use --force to drop and recreate it",
                args.slot, s.plugin, s.database
            )));
        }
        if s.active {
            return Err(Error::Invalid(format!(
                "replication slot {} is in use by {} (is `pgincr stream` running?); stop it first",
                args.slot,
                s.holder.as_deref().unwrap_or("another session")
            )));
        }
        client
            .execute(
                "SELECT pg_catalog.pg_drop_replication_slot($1)",
                &[&args.slot],
            )
            .await?;
        tracing::info!("dropped existing slot {}", args.slot);
    }
    if args.force && repo.root.exists() {
        empty_dir(&repo.root)?;
    }

    let created: bool = client
        .query_one(
            "SELECT NOT EXISTS (SELECT 1 FROM pg_catalog.pg_extension WHERE extname = 'decoder_sql')",
            &[],
        )
        .await?
        .get(0);
    if created {
        client.batch_execute("CREATE EXTENSION decoder_sql").await?;
        println!("created extension decoder_sql (DDL capture is on)");
    }
    repo.create_dirs()?;
    let base = match take_base(&repo, &source, &client, &args.slot, false).await {
        Ok(b) => b,
        Err(e) => {
            // A permanent slot without a repository would hold WAL forever.
            let _ = client
                .execute(
                    "SELECT pg_catalog.pg_drop_replication_slot(slot_name)
                       FROM pg_catalog.pg_replication_slots WHERE slot_name = $1",
                    &[&args.slot],
                )
                .await;
            return Err(e);
        }
    };
    let manifest = Manifest {
        format: repo::FORMAT,
        created: repo::now_rfc3339(),
        source: Source {
            system_identifier,
            database: database.clone(),
            slot: args.slot.clone(),
            stream_start_lsn: base.consistent_lsn,
            confirmed_clean_lsn: None,
        },
        bases: vec![base.clone()],
        segments: vec![],
    };
    repo.store(&manifest)?;
    println!(
        "initialised {} for database \"{database}\": slot {}",
        repo.root.display(),
        args.slot
    );
    report(&base);
    println!("next: run `pgincr stream` to receive changes continuously");
    Ok(())
}

pub struct SlotState {
    pub plugin: String,
    pub database: String,
    pub active: bool,
    /// The walsender streaming from it, if active.
    pub active_pid: Option<i32>,
    /// Who that is: PID, program, client address, since when.
    pub holder: Option<String>,
    /// How far the consumer has confirmed it has the changes.
    pub confirmed_flush_lsn: Option<sqlgen::lsn::Lsn>,
}

pub async fn slot_state(client: &Client, slot: &str) -> Result<Option<SlotState>> {
    Ok(client
        .query_opt(
            "SELECT coalesce(s.plugin::text, ''), coalesce(s.database::text, ''), s.active,
                    s.active_pid,
                    format('PID %s (%s%s, connected since %s)', a.pid,
                           coalesce(nullif(a.application_name, ''), a.backend_type),
                           coalesce(' from ' || host(a.client_addr), ''),
                           date_trunc('second', a.backend_start)),
                    s.confirmed_flush_lsn::text
               FROM pg_catalog.pg_replication_slots s
               LEFT JOIN pg_catalog.pg_stat_activity a ON a.pid = s.active_pid
              WHERE s.slot_name = $1",
            &[&slot],
        )
        .await?
        .map(|r| SlotState {
            plugin: r.get(0),
            database: r.get(1),
            active: r.get(2),
            active_pid: r.get(3),
            holder: r.get(4),
            confirmed_flush_lsn: r.get::<_, Option<String>>(5).and_then(|l| l.parse().ok()),
        }))
}

fn dir_has_entries(dir: &std::path::Path) -> bool {
    std::fs::read_dir(dir).is_ok_and(|mut d| d.next().is_some())
}

fn empty_dir(dir: &std::path::Path) -> Result<()> {
    for entry in std::fs::read_dir(dir).map_err(Error::io(format!("reading {}", dir.display())))? {
        let path = entry?.path();
        let r = if path.is_dir() {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        };
        r.map_err(Error::io(format!("removing {}", path.display())))?;
    }
    Ok(())
}
