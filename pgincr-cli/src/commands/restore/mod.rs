//! `pgincr restore`: rebuilds the database in a new, empty target.
//!
//! 1. Plans ([`plan`]): the newest base backup at or before the target point, and the
//!    segments after it, all checked before the target is touched.
//! 2. Claims the target ([`target`]): creates it with `--create`, takes a lock that keeps a
//!    second restore out, and drops replication origins left by restores into databases
//!    that no longer exist.
//! 3. Loads the base ([`base`]): globals (roles that already exist are left alone and
//!    reported), then the dump through psql in one transaction that also creates the
//!    restore's replication origin ([`origin`]); decoder_sql's own extension is left out.
//! 4. Applies the change stream ([`apply`]) with pinned settings ([`session`]); each
//!    transaction records its end LSN in the origin as it commits, so a transaction is
//!    applied exactly once: ones in the base dump, ones sent twice by the stream and ones
//!    applied before an interruption are all skipped by LSN. The stream's globals snapshots
//!    are applied before it and again at their place in it ([`globals_replay`]).
//! 5. Sets sequences ([`sequences`]: the captured value where it is current, else the
//!    column's maximum), reports ([`report`]), and drops the origin once the
//!    restore is complete.

pub mod apply;
pub mod base;
pub mod globals_replay;
pub mod origin;
pub mod plan;
pub mod report;
pub mod sequences;
pub mod session;
pub mod target;

use crate::cli::RestoreCommand;
use crate::pg::Endpoint;
use crate::repo::Repo;
use crate::{Error, Result};
use plan::{Selection, Target};
use sqlgen::txn::format_pg_timestamp;
use std::path::{Path, PathBuf};
use tokio_postgres::error::SqlState;

pub async fn run(command: impl Into<RestoreCommand>, bindir: Option<PathBuf>) -> Result<()> {
    let RestoreCommand { args, control } = command.into();
    let repo = args.repo.open()?;
    // Prune waits for this restore (and this restore for a running prune).
    let _reading = repo.lock_file_shared(crate::repo::READERS_LOCK)?;
    let manifest = repo.load()?;
    unlock(&repo, &manifest, args.identity.as_deref())?;
    let target_db = Endpoint::new(&args.target, bindir)?;
    let dbname = target_db.dbname()?;
    // Everything is checked before the target is touched. A dry run needs the server only
    // to read --to-time; with --create, or for a dry run, the target may not exist yet, so
    // ask its server.
    let server = if args.dry_run && args.to_time.is_none() {
        None
    } else if args.create {
        Some(target_db.with_dbname("postgres")?.connect().await?)
    } else if args.dry_run {
        Some(match target_db.connect().await {
            Err(Error::Connect(e)) if e.code() == Some(&SqlState::INVALID_CATALOG_NAME) => {
                target_db.with_dbname("postgres")?.connect().await?
            }
            other => other?,
        })
    } else {
        Some(target_db.connect().await?)
    };
    let target = plan::resolve_target(server.as_ref(), &args).await?;
    let base = plan::choose_base(&manifest, target, args.base.as_deref())?;
    let files = plan::stream_files(&repo, &manifest, base)?;
    for f in [&base.dump, &base.globals].into_iter().chain(
        plan::later_globals(&manifest, base, base.consistent_lsn, target)
            .into_iter()
            .map(|g| &g.file),
    ) {
        plan::ensure_intact(&repo, f, || format!("{} is missing", f.path))?;
    }
    let Some(server) = server.filter(|_| !args.dry_run) else {
        let selection = report::fresh_selection(base, target, control.skip_transaction);
        return report::dry_run(&repo, base, files, selection);
    };
    let created = args.create && target::create_database(&server, &dbname, base).await?;
    let client = if args.create {
        target_db.connect().await?
    } else {
        server
    };
    target::lock_target(&client).await?;
    let server_version_num: i32 = client
        .query_one("SELECT current_setting('server_version_num')::int", &[])
        .await?
        .get(0);
    let orphans = origin::drop_orphaned(&client).await?;
    if !orphans.is_empty() {
        println!(
            "dropped {} replication origin(s) of restores into databases that no longer exist: {}",
            orphans.len(),
            orphans.join(", ")
        );
    }
    let origin_name = origin::name(&client, &base.id).await?;

    let roles_before = base::existing_roles(&client).await?;
    let applied_before = match origin::progress(&client, &origin_name).await? {
        Some(lsn) => {
            println!("resuming the restore from base {} at {lsn}", base.id);
            lsn
        }
        None => {
            target::ensure_empty(&client).await?;
            if !args.no_globals {
                let left_alone = base::restore_globals(
                    &repo,
                    &[&base.globals],
                    &roles_before,
                    &args.tablespace_map,
                    &target_db,
                    &client,
                    server_version_num,
                )
                .await?;
                base::report_left_alone(&left_alone);
            }
            base::restore_dump(
                &repo,
                base,
                &target_db,
                server_version_num,
                &origin_name,
                args.jobs,
            )
            .await?;
            origin::start_at(&client, &origin_name, base.consistent_lsn).await?;
            if created {
                target::give_database_properties(&client, &dbname, base).await?;
            }
            println!("base backup {} restored", base.id);
            base.consistent_lsn
        }
    };

    // Roles and tablespaces created or changed after the base, up to the target point, before
    // the changes that use them.
    let later_globals = plan::later_globals(&manifest, base, applied_before, target);
    let mut globals_replay = None;
    if !args.no_globals && !later_globals.is_empty() {
        let files: Vec<_> = later_globals.iter().map(|g| &g.file).collect();
        let left_alone = base::restore_globals(
            &repo,
            &files,
            &roles_before,
            &args.tablespace_map,
            &target_db,
            &client,
            server_version_num,
        )
        .await?;
        base::report_left_alone(&left_alone);
        println!(
            "applied {} later snapshot(s) of roles and tablespaces",
            later_globals.len()
        );
        globals_replay = Some(globals_replay::GlobalsReplay::new(
            repo.clone(),
            later_globals.into_iter().cloned().collect(),
            roles_before.clone(),
            args.tablespace_map.clone(),
            target_db.clone(),
            server_version_num,
        ));
    }

    let selection = Selection {
        consistent_lsn: base.consistent_lsn,
        applied_upto: applied_before,
        target,
        skip: control.skip_transaction.clone(),
    };
    let rejects = control
        .reject_file
        .as_deref()
        .map(report::Rejects::create)
        .transpose()?;
    let options = apply::ApplyOptions {
        batch_size: args.batch_size,
        on_error: control.on_error,
        rejects,
        server_version_num,
        copy_min_rows: args.copy_min_rows,
        source_encoding: base.server.encoding.clone(),
        tablespace_map: args.tablespace_map.clone(),
    };
    let stats = apply::apply_changes(
        &client,
        &origin_name,
        selection,
        files,
        options,
        globals_replay.as_mut(),
    )
    .await?;
    if let Some(g) = &globals_replay {
        println!(
            "{} snapshot(s) of roles and tablespaces applied again at their place in the stream",
            g.replayed
        );
        if !g.reset.is_empty() {
            println!(
                "{} role(s) given the attributes of their CREATE ROLE in the stream (they existed \
                 already, from a later snapshot): {}",
                g.reset.len(),
                report::name_list(&g.reset, 10)
            );
        }
    }
    let seqs = sequences::sync_owned_sequences(&client, &stats.sequences).await?;
    stats.print_summary(control.reject_file.as_deref());
    if let Some(kib) = peak_memory_kib() {
        println!("peak memory: {} MiB", kib / 1024);
    }
    println!(
        "sequences: {} at their captured value (base dump or the stream's snapshots), {} moved up \
         to their column's maximum (rows written after their last snapshot)",
        seqs.captured, seqs.raised
    );
    match stats.last {
        Some((lsn, time)) => println!(
            "database \"{dbname}\" is restored to the transaction ending at {lsn}, committed {}",
            format_pg_timestamp(time)
        ),
        None => println!(
            "database \"{dbname}\" is restored up to {}",
            origin::progress(&client, &origin_name)
                .await?
                .unwrap_or(base.consistent_lsn)
        ),
    }
    // A restore to a target point stays resumable: it may be taken further later.
    if target == Target::Latest && !control.keep_origin {
        origin::drop_after_completion(&client, &origin_name).await?;
    } else {
        println!(
            "the restore can be taken further later (replication origin {origin_name} is kept)"
        );
    }
    Ok(())
}

/// The process's peak resident memory (Linux: VmHWM of /proc/self/status; getrusage's
/// maximum would include the memory of the parent it was forked from before exec).
fn peak_memory_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Loads the identities that read an encrypted repository, and proves on one of its files
/// that they do, before the target is touched.
fn unlock(repo: &Repo, manifest: &crate::repo::Manifest, identity: Option<&Path>) -> Result<()> {
    if manifest.encryption.is_none() {
        return Ok(());
    }
    let Some(identity) = identity else {
        return Err(Error::Invalid(format!(
            "{} is encrypted: give the age identity file that reads it with --identity FILE",
            repo.location()
        )));
    };
    crate::crypt::load_identities(identity)?;
    if let Some(file) = manifest.bases.last().map(|b| &b.dump) {
        repo.open_sql(&file.path)?;
    }
    Ok(())
}
