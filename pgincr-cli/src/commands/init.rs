//! `pgincr init`: creates the repository, the extension (DDL capture), the permanent
//! logical slot with an exported snapshot and the first base backup under that snapshot.
//!
//! Safe to re-run: an initialised repository whose slot still exists is left alone. An
//! existing repository or slot is only replaced with `--force`.
//!
//! Before it creates anything, init writes `init.json` naming the source and the slot it is
//! about to create. A failed init removes what it created (slot, partial base, directories,
//! marker); an init killed before it finished leaves the marker, and the next `pgincr init`
//! of the same source and slot recognises those remains, drops the slot that would
//! otherwise hold WAL forever, removes the partial files and starts again.

use super::base::{self, report, source_identity, take_base};
use crate::cli::InitArgs;
use crate::pg::Endpoint;
use crate::repo::{self, Manifest, MissingIdentity, Repo, Source};
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use tokio_postgres::Client;

/// The marker of an init in progress, in the repository root until the manifest exists.
pub const INIT_MARKER: &str = "init.json";

/// What an init in progress is creating.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct InitMarker {
    system_identifier: String,
    database: String,
    slot: String,
    started: String,
}

fn load_marker(repo: &Repo) -> Option<InitMarker> {
    let text = std::fs::read_to_string(repo.path(INIT_MARKER)).ok()?;
    serde_json::from_str(&text).ok()
}

/// Whether every entry of the directory is something init itself creates.
fn only_init_remains(repo: &Repo) -> bool {
    let Ok(entries) = std::fs::read_dir(&repo.root) else {
        return true;
    };
    entries.flatten().all(|e| {
        let name = e.file_name().to_string_lossy().into_owned();
        match name.as_str() {
            INIT_MARKER | base::BASE_LOCK | "manifest.lock" => true,
            repo::SEGMENTS_DIR => dir_is_empty(&e.path()),
            repo::BASES_DIR => std::fs::read_dir(e.path()).is_ok_and(|d| {
                d.flatten()
                    .all(|b| b.file_name().to_string_lossy().ends_with(".partial"))
            }),
            _ => false,
        }
    })
}

fn dir_is_empty(dir: &std::path::Path) -> bool {
    std::fs::read_dir(dir).is_ok_and(|mut d| d.next().is_none())
}

/// Removes what an init wrote into the repository directory (never anything else): the
/// partial base backups, the directories it created when they are empty, its lock files
/// and the marker.
fn remove_init_files(repo: &Repo) -> Result<()> {
    for name in base::partial_bases(repo) {
        let dir = repo.path(repo::BASES_DIR).join(name);
        std::fs::remove_dir_all(&dir).map_err(Error::io(format!("removing {}", dir.display())))?;
    }
    for dir in [repo::BASES_DIR, repo::SEGMENTS_DIR] {
        let path = repo.path(dir);
        if dir_is_empty(&path) {
            let _ = std::fs::remove_dir(&path);
        }
    }
    for file in [base::BASE_LOCK, "manifest.lock", INIT_MARKER] {
        let _ = std::fs::remove_file(repo.path(file));
    }
    Ok(())
}

/// Drops `slot` when it exists and nobody streams from it (after a moment for the
/// walsender of a killed init to notice).
async fn drop_slot_if_idle(client: &Client, slot: &str) -> Result<bool> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while slot_state(client, slot).await?.is_some_and(|s| s.active)
        && std::time::Instant::now() < deadline
    {
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    match slot_state(client, slot).await? {
        None => Ok(false),
        Some(s) if s.active => Err(Error::Invalid(format!(
            "replication slot {slot}, created by an interrupted `pgincr init`, is in use by {}; \
             stop that first",
            s.holder.as_deref().unwrap_or("another session")
        ))),
        Some(_) => {
            client
                .execute("SELECT pg_catalog.pg_drop_replication_slot($1)", &[&slot])
                .await?;
            Ok(true)
        }
    }
}

pub async fn run(args: InitArgs, bindir: Option<PathBuf>) -> Result<()> {
    if args.all_databases {
        return enrol_every_database(args, bindir).await;
    }
    let recipients = crate::crypt::parse_recipients(&args.encrypt_to)?;
    let repo = args.repo.open()?;
    base::check_dump_args(&args.dump, !recipients.is_empty(), repo.remote().is_some())?;
    if let Some(remote) = repo.remote() {
        remote.check_access()?;
    }
    if args.force && repo.remote().is_some() {
        return Err(Error::Invalid(format!(
            "--force does not empty object storage: delete {} yourself (aws s3 rm --recursive), \
             or use another prefix",
            repo.location()
        )));
    }
    let source = Endpoint::new(&args.conn.dsn, bindir)?;
    let client = source.connect().await?;
    let (system_identifier, database) = source_identity(&client).await?;
    let mut slot = slot_state(&client, &args.slot).await?;

    if repo.exists() && !args.force {
        let m = repo.load()?;
        let same_source =
            m.source.system_identifier == system_identifier && m.source.database == database;
        return match (same_source, m.source.slot == args.slot, &slot) {
            (true, true, Some(s)) if s.is_decoder_sql_in(&database) => {
                println!(
                    "{} is already initialised for database \"{database}\" with slot {}; nothing to do",
                    repo.location(),
                    args.slot
                );
                Ok(())
            }
            (true, true, None) => Err(Error::Repository(format!(
                "{} belongs to slot {}, which no longer exists: the change stream has a gap \
                 from here on. Start a new repository in another, empty directory (this one \
                 still restores up to the gap).",
                repo.location(),
                args.slot
            ))),
            _ => Err(Error::Repository(format!(
                "{} already holds a repository of database \"{}\" (slot {}); use another \
                 directory, or --force to empty it and start over",
                repo.location(),
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
    if !args.force
        && let Some(marker) = load_marker(&repo)
        && only_init_remains(&repo)
    {
        if (&marker.system_identifier, &marker.database, &marker.slot)
            != (&system_identifier, &database, &args.slot)
        {
            return Err(Error::Repository(format!(
                "{} holds the remains of an interrupted `pgincr init` of database \"{}\" with \
                 slot {}; run that init again to finish it, or use another directory",
                repo.root.display(),
                marker.database,
                marker.slot
            )));
        }
        let dropped = drop_slot_if_idle(&client, &marker.slot).await?;
        slot = slot_state(&client, &args.slot).await?;
        remove_init_files(&repo)?;
        println!(
            "an earlier `pgincr init` (started {}) did not finish: {}removed its partial files; \
             starting again",
            marker.started,
            if dropped {
                format!("dropped the slot {} it had created, ", marker.slot)
            } else {
                String::new()
            }
        );
    }
    if repo.remote().is_some() {
        if [repo::BASES_DIR, repo::SEGMENTS_DIR]
            .iter()
            .any(|d| dir_has_entries(&repo.path(d)))
        {
            return Err(Error::Repository(format!(
                "the spool {} holds files of another repository; give this one its own --spool",
                repo.root.display()
            )));
        }
    } else if !args.force && dir_has_entries(&repo.root) {
        let holds_backups = [repo::BASES_DIR, repo::SEGMENTS_DIR]
            .iter()
            .any(|d| dir_has_entries(&repo.path(d)));
        return Err(Error::Repository(if holds_backups {
            repo.missing_manifest_advice()
        } else {
            format!(
                "{} exists and is not empty; use an empty directory",
                repo.root.display()
            )
        }));
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
    let root_existed = repo.root.exists();
    repo::create_private_dir(&repo.root)?;
    // The marker goes first: whatever init creates after it, a later init can clean up.
    let marker = InitMarker {
        system_identifier: system_identifier.clone(),
        database: database.clone(),
        slot: args.slot.clone(),
        started: repo::now_rfc3339(),
    };
    repo::write_atomically(
        &repo.path(INIT_MARKER),
        serde_json::to_string_pretty(&marker)
            .expect("marker serialises")
            .as_bytes(),
    )?;
    repo.create_dirs()?;
    let encrypted = !recipients.is_empty();
    // Before the manifest exists: the base below is written encrypted, or not.
    repo.encrypt_to(recipients);
    if encrypted {
        println!(
            "encrypting the repository to {} age recipient(s): restore needs --identity",
            args.encrypt_to.len()
        );
    }
    let encryption = (!args.encrypt_to.is_empty()).then(|| repo::Encryption {
        method: "age".into(),
        recipients: args
            .encrypt_to
            .iter()
            .map(|r| r.trim().to_owned())
            .collect(),
    });

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
    set_missing_identity_policy(&client, &database, args.missing_identity).await?;
    // Every new session loads decoder_sql before its first statement, so that DDL inside
    // functions and DO blocks is captured too (no restart needed).
    if let Some(preload) = super::check::preload_fix(&client).await? {
        match client.batch_execute(&preload).await {
            Ok(()) => println!("{preload} (DDL inside functions is captured in new sessions)"),
            Err(e) => tracing::warn!(
                "could not make sessions load decoder_sql ({}); DDL inside functions is \
                 captured only where they did. As a superuser: {preload};",
                crate::error::describe_pg_error(&e)
            ),
        }
    }
    let base = match take_base(&repo, &source, &client, &args.slot, false, args.dump).await {
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
            if let Err(cleanup) = remove_init_files(&repo) {
                tracing::warn!("cleaning up after the failed init: {cleanup}");
            }
            if !root_existed {
                let _ = std::fs::remove_dir(&repo.root);
            }
            return Err(e);
        }
    };
    let manifest = Manifest {
        format: Manifest::format_for(&encryption),
        created: repo::now_rfc3339(),
        source: Source {
            system_identifier,
            database: database.clone(),
            slot: args.slot.clone(),
            stream_start_lsn: base.consistent_lsn,
            confirmed_clean_lsn: None,
            missing_identity: args.missing_identity,
        },
        bases: vec![base.clone()],
        segments: vec![],
        globals: vec![],
        prune_history: vec![],
        encryption,
    };
    repo.store(&manifest)?;
    let _ = std::fs::remove_file(repo.path(INIT_MARKER));
    println!(
        "initialised {} for database \"{database}\": slot {}",
        repo.location(),
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

impl SlotState {
    /// Whether the slot decodes with decoder_sql in `database` (is one of pgincr's for it).
    pub fn is_decoder_sql_in(&self, database: &str) -> bool {
        self.plugin == "decoder_sql" && self.database == database
    }
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

/// Sets the extension's policy for new tables without a usable replica identity for the
/// database's new sessions (`decoder_sql.missing_identity`, read by its event trigger).
/// `full` is the extension's default: a setting the database already has (`error`, say) is
/// left as the DBA chose it, and reported.
async fn set_missing_identity_policy(
    client: &Client,
    database: &str,
    policy: MissingIdentity,
) -> Result<()> {
    match policy {
        MissingIdentity::Skip => {
            client
                .batch_execute(&format!(
                    "ALTER DATABASE {} SET decoder_sql.missing_identity = 'skip'",
                    sqlgen::quote_ident(database)
                ))
                .await?;
            println!(
                "updates and deletes of tables without a primary key or replica identity are \
                 skipped and counted by `pgincr status` (--missing-identity skip); sessions \
                 started from now on follow it"
            );
        }
        MissingIdentity::Full => {
            let current: Option<String> = client
                .query_one(
                    "SELECT pg_catalog.current_setting('decoder_sql.missing_identity', true)",
                    &[],
                )
                .await?
                .get(0);
            match current.as_deref().filter(|v| !v.is_empty() && *v != "full") {
                Some(other) => println!(
                    "note: this database sets decoder_sql.missing_identity = '{other}', which is \
                     kept; new tables without a primary key do not get REPLICA IDENTITY FULL"
                ),
                None => println!(
                    "new tables without a primary key get REPLICA IDENTITY FULL \
                     (--missing-identity full)"
                ),
            }
        }
    }
    Ok(())
}

/// `init --all-databases`: [`run`] for each database that is not a template, into
/// REPO/<name> with slot <slot>_<name> (the oid stands for a name unfit for either).
async fn enrol_every_database(args: InitArgs, bindir: Option<PathBuf>) -> Result<()> {
    let client = Endpoint::new(&args.conn.dsn, bindir.clone())?
        .connect()
        .await?;
    let rows = client
        .query(
            "SELECT datname::text, oid::int8 FROM pg_catalog.pg_database
              WHERE NOT datistemplate AND datallowconn ORDER BY datname",
            &[],
        )
        .await?;
    let mut sections = String::new();
    let mut failed = Vec::new();
    for row in rows {
        let (name, oid): (String, i64) = (row.get(0), row.get(1));
        let plain = plain_name(&name);
        let mut one = args.clone();
        one.all_databases = false;
        one.conn.dsn =
            crate::conninfo::with_param(&args.conn.dsn, "dbname", &name).map_err(Error::Invalid)?;
        one.repo.repo = args
            .repo
            .repo
            .join(plain.clone().unwrap_or_else(|| format!("db_{oid}")));
        one.slot = truncated_slot(&format!(
            "{}_{}",
            args.slot,
            plain.unwrap_or_else(|| oid.to_string())
        ));
        println!("== database {name}");
        let repo = one.repo.repo.clone();
        let dsn = one.conn.dsn.clone();
        match Box::pin(run(one, bindir.clone())).await {
            Ok(()) => sections.push_str(&format!(
                "\n[database.{}]\ndsn = {}\nrepo = {}\n",
                toml_string(&name),
                toml_string(&crate::config::masked_dsn(&dsn)),
                toml_string(&repo.display().to_string())
            )),
            Err(e) => {
                eprintln!("pgincr: database {name}: {e}");
                failed.push(name);
            }
        }
    }
    println!(
        "\nconfiguration file sections for these databases (pgincr supervise, status --all):\n{sections}"
    );
    if failed.is_empty() {
        Ok(())
    } else {
        Err(Error::Invalid(format!(
            "could not enrol {} (see above); the others are enrolled",
            failed.join(", ")
        )))
    }
}

/// `name` when it is fit for a directory and a slot name as it is (lower-case letters,
/// digits, `_`).
fn plain_name(name: &str) -> Option<String> {
    (!name.is_empty()
        && name.len() <= 40
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'))
    .then(|| name.to_owned())
}

/// A slot name within PostgreSQL's 63 bytes, lower case as slot names must be.
fn truncated_slot(slot: &str) -> String {
    slot.to_ascii_lowercase().chars().take(63).collect()
}

/// A TOML basic string.
fn toml_string(text: &str) -> String {
    toml::Value::String(text.to_owned()).to_string()
}
