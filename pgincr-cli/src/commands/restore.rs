//! `pgincr restore`: rebuilds the database in a new, empty target.
//!
//! 1. Chooses the newest base backup at or before the target point.
//! 2. Restores globals (roles that already exist are left alone and reported), then the
//!    base dump through psql in one transaction (decoder_sql's own extension is left out:
//!    the target needs no extension).
//! 3. Creates a replication origin for the restore and sets it to the base's consistent
//!    point.
//! 4. Applies the change stream through one connection with
//!    `session_replication_role = replica`, several transactions per round trip. Each
//!    transaction records its end LSN in the origin as it commits, so a transaction is
//!    applied exactly once: ones in the base dump, ones sent twice by the stream and ones
//!    applied before an interruption are all skipped by LSN.
//! 5. Moves sequences owned by columns up to the columns' maxima.

use crate::chain;
use crate::cli::RestoreArgs;
use crate::error::describe_pg_error;
use crate::pg::{Endpoint, compat};
use crate::repo::{self, Base, FileProblem, Manifest, Repo};
use crate::segment::{Event, Location, Parser, StreamReader, Txn};
use crate::units::human_bytes;
use crate::{Error, Result, progress};
use sqlgen::ident::quote_ident;
use sqlgen::lsn::Lsn;
use sqlgen::txn::{format_pg_timestamp, parse_pg_timestamp};
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Instant;
use tokio::io::AsyncWriteExt;
use tokio_postgres::Client;

/// Where to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Latest,
    /// Include transactions whose commit LSN is at or before this.
    Lsn(Lsn),
    /// Include transactions that committed at or before this (µs since 2000-01-01 UTC).
    Time(i64),
}

impl Target {
    /// Whether a transaction lies past the target.
    pub fn excludes(&self, txn: &sqlgen::txn::TxnInfo) -> bool {
        match *self {
            Target::Latest => false,
            Target::Lsn(l) => txn.commit_lsn > l,
            Target::Time(t) => txn.commit_time > t,
        }
    }
}

/// What a restore does with one transaction of the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Committed before the base's consistent point: the dump has it.
    InBase,
    /// Applied already (earlier in this run, before an interruption, or sent twice).
    AlreadyApplied,
    /// Past the target point: the restore stops here.
    PastTarget,
    Apply,
}

/// Decides, transaction by transaction and in stream order, what a restore applies.
#[derive(Debug, Clone)]
pub struct Selection {
    pub consistent_lsn: Lsn,
    /// End of the last transaction applied (or judged to be applied).
    pub applied_upto: Lsn,
    pub target: Target,
}

impl Selection {
    pub fn judge(&mut self, txn: &sqlgen::txn::TxnInfo) -> Verdict {
        if txn.end_lsn <= self.consistent_lsn {
            Verdict::InBase
        } else if txn.end_lsn <= self.applied_upto {
            Verdict::AlreadyApplied
        } else if self.target.excludes(txn) {
            Verdict::PastTarget
        } else {
            self.applied_upto = txn.end_lsn;
            Verdict::Apply
        }
    }
}

/// The newest base whose contents all lie at or before the target.
pub fn choose_base<'a>(
    manifest: &'a Manifest,
    target: Target,
    id: Option<&str>,
) -> Result<&'a Base> {
    if let Some(id) = id {
        return manifest
            .bases
            .iter()
            .find(|b| b.id == id)
            .ok_or_else(|| Error::Invalid(format!("no base backup {id} in the repository")));
    }
    manifest
        .bases
        .iter()
        .rev()
        .find(|b| match target {
            Target::Latest => true,
            Target::Lsn(l) => b.consistent_lsn <= l,
            Target::Time(t) => parse_pg_timestamp(&b.snapshot_time).is_some_and(|s| s <= t),
        })
        .ok_or_else(|| {
            Error::Invalid(format!(
                "no base backup is old enough for the target point (oldest: {})",
                manifest
                    .bases
                    .first()
                    .map_or("none".to_owned(), |b| format!(
                        "{} at {}",
                        b.id, b.snapshot_time
                    ))
            ))
        })
}

/// The files to read after `base`, in order, checked for gaps: (path, name for messages).
pub fn stream_files(
    repo: &Repo,
    manifest: &Manifest,
    base: &Base,
) -> Result<Vec<(PathBuf, String)>> {
    let segments = &manifest.segments;
    let first = chain::first_needed(segments, base.consistent_lsn);
    let needed = &segments[first..];
    if let Some(s) = needed.first()
        && s.start_lsn > base.consistent_lsn
    {
        return Err(Error::Repository(format!(
            "segment {} starts after {}, past the base's consistent point {}: the segments in between are missing",
            s.seq, s.start_lsn, base.consistent_lsn
        )));
    }
    for pair in needed.windows(2) {
        if pair[1].seq != pair[0].seq + 1 || pair[1].start_lsn != pair[0].end_lsn {
            return Err(Error::Repository(format!(
                "gap in the change stream between segment {} (ends at {}) and segment {} (starts after {})",
                pair[0].seq, pair[0].end_lsn, pair[1].seq, pair[1].start_lsn
            )));
        }
    }
    let mut files = Vec::new();
    for s in needed {
        ensure_intact(repo, &s.file, || {
            format!(
                "segment file {} is missing; restore cannot go past {}",
                s.file.path, s.start_lsn
            )
        })?;
        files.push((repo.path(&s.file.path), s.file.path.clone()));
    }
    let open = repo.open_segment_path();
    if open.exists() {
        files.push((
            open,
            format!("{}/{}", repo::SEGMENTS_DIR, repo::OPEN_SEGMENT),
        ));
    }
    Ok(files)
}

/// A file that is missing or whose checksum differs from the manifest's is never applied;
/// `missing` says what a missing file means.
fn ensure_intact(repo: &Repo, f: &repo::FileEntry, missing: impl FnOnce() -> String) -> Result<()> {
    match repo.stored_file_problem(f)? {
        None => Ok(()),
        Some(FileProblem::Missing) => Err(Error::Repository(missing())),
        Some(FileProblem::Damaged { .. }) => Err(Error::Repository(format!(
            "{} is damaged (its checksum differs from the manifest); nothing was restored. \
             `pgincr verify` lists every damaged file.",
            f.path
        ))),
    }
}

pub async fn run(args: RestoreArgs, bindir: Option<PathBuf>) -> Result<()> {
    let repo = Repo::new(&args.repo.repo);
    let manifest = repo.load()?;
    let target_db = Endpoint::new(&args.target, bindir)?;
    let dbname = target_db.dbname()?;
    // Everything is checked before the target is touched. A dry run needs the server only
    // to read --to-time; with --create the target may not exist yet, so ask its server.
    let first_contact = if args.create {
        target_db.with_dbname("postgres")?
    } else {
        target_db.clone()
    };
    let server = if args.dry_run && args.to_time.is_none() {
        None
    } else {
        Some(first_contact.connect().await?)
    };
    let target = resolve_target(server.as_ref(), &args).await?;
    let base = choose_base(&manifest, target, args.base.as_deref())?;
    let files = stream_files(&repo, &manifest, base)?;
    for f in [&base.dump, &base.globals] {
        ensure_intact(&repo, f, || format!("{} is missing", f.path))?;
    }
    let Some(server) = server.filter(|_| !args.dry_run) else {
        return dry_run(&repo, base, files, target);
    };
    if args.create {
        create_database(&server, &dbname, base).await?;
    }
    let client = target_db.connect().await?;
    // Replication origins are shared by all databases of a cluster: the name says which
    // database and which base it tracks.
    let origin_prefix: String = client
        .query_one(
            "SELECT 'pgincr_' || oid || '_' FROM pg_catalog.pg_database WHERE datname = current_database()",
            &[],
        )
        .await?
        .get(0);
    let origin = format!("{origin_prefix}{}", base.id);

    let applied_before = match origin_progress(&client, &origin).await? {
        Some(lsn) => {
            println!("resuming the restore from base {} at {lsn}", base.id);
            lsn
        }
        None => {
            ensure_empty(&client).await?;
            if !args.no_globals {
                restore_globals(&repo, base, &target_db, &client).await?;
            }
            restore_dump(&repo, base, &target_db).await?;
            client
                .query_one(
                    "SELECT pg_catalog.pg_replication_origin_create($1),
                            pg_catalog.pg_replication_origin_advance($1, $2::text::pg_lsn)",
                    &[&origin, &base.consistent_lsn.to_string()],
                )
                .await?;
            println!("base backup {} restored", base.id);
            base.consistent_lsn
        }
    };

    let selection = Selection {
        consistent_lsn: base.consistent_lsn,
        applied_upto: applied_before,
        target,
    };
    let stats = apply_changes(&client, &origin, selection, files, args.batch_size).await?;
    sync_owned_sequences(&client).await?;
    println!(
        "applied {} transaction(s) ({} of SQL) in {:.1}s; skipped {} already in the base, {} already applied",
        stats.applied,
        human_bytes(stats.bytes),
        stats.elapsed_secs,
        stats.in_base,
        stats.already_applied
    );
    match stats.last {
        Some((lsn, time)) => println!(
            "database \"{dbname}\" is restored to the transaction ending at {lsn}, committed {}",
            format_pg_timestamp(time)
        ),
        None => println!(
            "database \"{dbname}\" is restored up to {}",
            origin_progress(&client, &origin)
                .await?
                .unwrap_or(base.consistent_lsn)
        ),
    }
    if stats.incomplete_tail {
        println!(
            "note: the newest transaction in the open segment is incomplete and was not applied"
        );
    }
    Ok(())
}

async fn resolve_target(client: Option<&Client>, args: &RestoreArgs) -> Result<Target> {
    if let Some(l) = &args.to_lsn {
        return Ok(Target::Lsn(l.parse().map_err(
            |e: sqlgen::lsn::LsnParseError| Error::Invalid(e.to_string()),
        )?));
    }
    if let (Some(t), Some(client)) = (&args.to_time, client) {
        // The server reads every timestamptz spelling and time zone a DBA might use.
        let row = client
            .query_one(
                "SELECT to_char(($1::text)::timestamptz AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')",
                &[t],
            )
            .await
            .map_err(|e| Error::Invalid(format!("--to-time {t:?}: {}", describe_pg_error(&e))))?;
        let text: String = row.get(0);
        let micros = parse_pg_timestamp(&text)
            .ok_or_else(|| Error::Invalid(format!("--to-time {t:?} is out of range")))?;
        return Ok(Target::Time(micros));
    }
    Ok(Target::Latest)
}

async fn create_database(admin: &Client, dbname: &str, base: &Base) -> Result<()> {
    let exists = admin
        .query_opt(
            "SELECT 1 FROM pg_catalog.pg_database WHERE datname = $1",
            &[&dbname],
        )
        .await?
        .is_some();
    if exists {
        println!("database \"{dbname}\" exists; restoring into it");
        return Ok(());
    }
    let server = &base.server;
    let lit = |s: &str| format!("'{}'", s.replace('\'', "''"));
    admin
        .batch_execute(&format!(
            "CREATE DATABASE {} TEMPLATE template0 ENCODING {} LC_COLLATE {} LC_CTYPE {}",
            quote_ident(dbname),
            lit(&server.encoding),
            lit(&server.lc_collate),
            lit(&server.lc_ctype)
        ))
        .await?;
    println!("created database \"{dbname}\"");
    Ok(())
}

async fn origin_progress(client: &Client, origin: &str) -> Result<Option<Lsn>> {
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

/// Refuses a target that already holds user objects.
async fn ensure_empty(client: &Client) -> Result<()> {
    let row = client
        .query_one(
            "SELECT (SELECT count(*) FROM pg_catalog.pg_class c
                       JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
                      WHERE n.nspname NOT IN ('pg_catalog', 'information_schema')
                        AND n.nspname !~ '^pg_(toast|temp)')
                  + (SELECT count(*) FROM pg_catalog.pg_namespace
                      WHERE nspname NOT IN ('public', 'pg_catalog', 'information_schema')
                        AND nspname !~ '^pg_')
                  + (SELECT count(*) FROM pg_catalog.pg_extension WHERE extname <> 'plpgsql')
                  + (SELECT count(*) FROM pg_catalog.pg_proc p
                       JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
                      WHERE n.nspname = 'public'),
                    current_database()::text",
            &[],
        )
        .await?;
    let objects: i64 = row.get(0);
    if objects > 0 {
        let db: String = row.get(1);
        return Err(Error::Invalid(format!(
            "target database \"{db}\" is not empty ({objects} object(s)); restore into a new database (e.g. with --create)"
        )));
    }
    Ok(())
}

/// Globals with the CREATE/ALTER ROLE lines of roles that already exist left out (and the
/// `\restrict` guards for a psql that predates them).
pub fn filter_globals(
    sql: &str,
    existing_roles: &[String],
    psql_knows_restrict: bool,
) -> (String, Vec<String>) {
    let mut kept = String::with_capacity(sql.len());
    let mut skipped = Vec::new();
    for line in sql.lines() {
        if is_restrict_guard(line) && !psql_knows_restrict {
            continue;
        }
        let role = line
            .strip_prefix("CREATE ROLE ")
            .or_else(|| line.strip_prefix("ALTER ROLE "))
            .and_then(|rest| {
                existing_roles.iter().find(|r| {
                    let q = quote_ident(r);
                    rest.strip_prefix(q.as_str())
                        .is_some_and(|after| after.starts_with(';') || after.starts_with(" WITH "))
                })
            });
        match role {
            Some(r) => {
                if !skipped.contains(r) {
                    skipped.push(r.clone());
                }
            }
            None => {
                kept.push_str(line);
                kept.push('\n');
            }
        }
    }
    (kept, skipped)
}

async fn restore_globals(
    repo: &Repo,
    base: &Base,
    target: &Endpoint,
    client: &Client,
) -> Result<()> {
    let mut sql = String::new();
    std::io::Read::read_to_string(
        &mut repo::open_sql(&repo.path(&base.globals.path))?,
        &mut sql,
    )
    .map_err(Error::io(format!("reading {}", base.globals.path)))?;
    let roles: Vec<String> = client
        .query("SELECT rolname::text FROM pg_catalog.pg_roles", &[])
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let psql_version = target.tools.version("psql").await?;
    let (sql, skipped) = filter_globals(
        &sql,
        &roles,
        compat::psql_understands_restrict(psql_version),
    );
    if !skipped.is_empty() {
        println!(
            "roles that already exist were left unchanged: {}",
            skipped.join(", ")
        );
    }
    let mut file = tempfile::NamedTempFile::new()?;
    file.write_all(sql.as_bytes())?;
    // Not ON_ERROR_STOP: a tablespace directory or role setting the target cannot take
    // is reported, and the restore goes on.
    let out = target
        .tools
        .command("psql")
        .args(["-X", "-q", "-v", "ON_ERROR_STOP=0", "-d"])
        .arg(&target.public_dsn)
        .arg("-f")
        .arg(file.path())
        .stdout(Stdio::null())
        .spawn()?;
    let output = out.child.wait_with_output().await?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    for line in stderr.lines().filter(|l| l.contains("ERROR")) {
        tracing::warn!("globals: {line}");
    }
    Ok(())
}

/// Lines of a base dump that must not run on the target: decoder_sql's own extension, and
/// the `\restrict`/`\unrestrict` guards when the target's psql predates them (they only
/// restrict psql meta-commands, which an older psql reads as errors).
pub fn keep_dump_line(line: &str, psql_knows_restrict: bool) -> bool {
    !(line.starts_with("CREATE EXTENSION IF NOT EXISTS decoder_sql ")
        || line.starts_with("COMMENT ON EXTENSION decoder_sql ")
        || (is_restrict_guard(line) && !psql_knows_restrict))
}

/// pg_dump's and pg_dumpall's `\restrict KEY` / `\unrestrict KEY` lines.
fn is_restrict_guard(line: &str) -> bool {
    line.starts_with("\\restrict ") || line.starts_with("\\unrestrict ")
}

async fn restore_dump(repo: &Repo, base: &Base, target: &Endpoint) -> Result<()> {
    let psql_version = target.tools.version("psql").await?;
    let psql_knows_restrict = compat::psql_understands_restrict(psql_version);
    let mut psql = target
        .tools
        .command("psql")
        .args([
            "-X",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "--single-transaction",
            "-d",
        ])
        .arg(&target.public_dsn)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()?;
    let mut stdin = psql.child.stdin.take().expect("piped stdin");
    let bar = progress::bytes_bar(base.dump.sql_bytes);
    bar.set_message("base dump");
    let mut reader =
        BufReader::with_capacity(1 << 16, repo::open_sql(&repo.path(&base.dump.path))?);
    let mut line = Vec::new();
    let mut chunk = Vec::with_capacity(1 << 18);
    let mut write_failed = false;
    loop {
        line.clear();
        let n = tokio::task::block_in_place(|| reader.read_until(b'\n', &mut line))
            .map_err(Error::io(format!("reading {}", base.dump.path)))?;
        if n > 0
            && keep_dump_line(
                &String::from_utf8_lossy(&line[..line.len().min(64)]),
                psql_knows_restrict,
            )
        {
            chunk.extend_from_slice(&line);
        }
        if chunk.len() >= 1 << 18 || (n == 0 && !chunk.is_empty()) {
            if stdin.write_all(&chunk).await.is_err() {
                // psql stopped (ON_ERROR_STOP); its stderr says why.
                write_failed = true;
                break;
            }
            bar.inc(chunk.len() as u64);
            chunk.clear();
        }
        if n == 0 {
            break;
        }
    }
    drop(stdin);
    let result = psql.wait().await;
    bar.finish_and_clear();
    result.map_err(|e| match e {
        Error::Tool {
            program,
            status,
            stderr_tail,
        } => Error::Tool {
            program,
            status,
            stderr_tail: format!(
                "{stderr_tail}\n(restoring {}; the target was left unchanged)",
                base.dump.path
            ),
        },
        other => other,
    })?;
    if write_failed {
        return Err(Error::Invalid("psql stopped reading the base dump".into()));
    }
    Ok(())
}

#[derive(Debug, Default)]
struct ApplyStats {
    applied: u64,
    in_base: u64,
    already_applied: u64,
    bytes: u64,
    last: Option<(Lsn, i64)>,
    incomplete_tail: bool,
    elapsed_secs: f64,
}

/// A transaction queued in the current batch.
struct Queued {
    end_lsn: Lsn,
    begin: Location,
    /// Byte range in the batch text.
    start: usize,
}

async fn apply_changes(
    client: &Client,
    origin: &str,
    selection: Selection,
    files: Vec<(PathBuf, String)>,
    batch_size: u64,
) -> Result<ApplyStats> {
    client
        .batch_execute(
            "SET session_replication_role = replica;
             SET synchronous_commit = off;
             SET check_function_bodies = off;
             SET statement_timeout = 0;
             SET lock_timeout = 0;
             SET idle_in_transaction_session_timeout = 0;
             SET client_min_messages = warning;",
        )
        .await?;
    setup_origin_session(client, origin).await?;
    let result = apply_stream(client, origin, selection, files, batch_size).await;
    if result.is_err() {
        // Release the origin now rather than when the backend exits, so that a retry started
        // right after this one does not find it still held.
        let _ = client
            .batch_execute("ROLLBACK; SELECT pg_catalog.pg_replication_origin_session_reset()")
            .await;
    }
    result
}

/// Binds the session to the restore's origin. A previous run's backend may still be exiting
/// and holding it for a moment ("already active for PID …"): retry for a few seconds, then
/// name the holder.
async fn setup_origin_session(client: &Client, origin: &str) -> Result<()> {
    let deadline = Instant::now() + std::time::Duration::from_secs(10);
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
        if err.code() != Some(&tokio_postgres::error::SqlState::OBJECT_IN_USE) {
            return Err(err.into());
        }
        if Instant::now() >= deadline {
            return Err(Error::Invalid(format!(
                "another session is applying changes into this target (replication origin \
                 {origin}: {}); is another pgincr restore of it running?",
                describe_pg_error(&err)
            )));
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

async fn apply_stream(
    client: &Client,
    origin: &str,
    mut selection: Selection,
    files: Vec<(PathBuf, String)>,
    batch_size: u64,
) -> Result<ApplyStats> {
    let total: u64 = files
        .iter()
        .map(|(p, _)| std::fs::metadata(p).map_or(0, |m| m.len()))
        .sum();
    let bar = progress::bytes_bar(total);
    let started = Instant::now();
    let mut stats = ApplyStats::default();
    let mut reader = StreamReader::new(files);
    let mut parser = Parser::new(true);
    let mut batch = String::new();
    let mut queued: Vec<Queued> = Vec::new();
    let mut stop = false;
    while !stop {
        let Some((line, at)) = tokio::task::block_in_place(|| reader.next_line())? else {
            break;
        };
        let event = parser.feed(line, at).map_err(Error::Repository)?;
        match event {
            None | Some(Event::Superseded { .. }) => {}
            Some(Event::Stray { at, line }) => {
                tracing::warn!("{at}: statement outside any transaction not applied: {line}");
            }
            Some(Event::OrphanCommit { end_lsn, at }) => {
                if end_lsn > selection.applied_upto {
                    return Err(Error::Repository(format!(
                        "{at}: the transaction ending at {end_lsn} began in a segment that is missing"
                    )));
                }
            }
            Some(Event::Txn(txn)) => {
                match selection.judge(&txn.info) {
                    Verdict::InBase => {
                        stats.in_base += 1;
                        continue;
                    }
                    Verdict::AlreadyApplied => {
                        stats.already_applied += 1;
                        continue;
                    }
                    Verdict::PastTarget => {
                        stop = true;
                        continue;
                    }
                    Verdict::Apply => {}
                }
                queued.push(Queued {
                    end_lsn: txn.info.end_lsn,
                    begin: txn.begin.clone(),
                    start: batch.len(),
                });
                push_with_origin_progress(&mut batch, &txn);
                stats.applied += 1;
                stats.bytes += txn.text.len() as u64;
                stats.last = Some((txn.info.end_lsn, txn.info.commit_time));
                if batch.len() as u64 >= batch_size {
                    send_batch(client, origin, &batch, &queued).await?;
                    batch.clear();
                    queued.clear();
                    bar.set_position(reader.bytes_read.min(total));
                    let secs = started.elapsed().as_secs_f64().max(0.001);
                    bar.set_message(format!(
                        "{} txn ({:.0}/s)",
                        stats.applied,
                        stats.applied as f64 / secs
                    ));
                }
            }
        }
    }
    if !batch.is_empty() {
        send_batch(client, origin, &batch, &queued).await?;
    }
    bar.finish_and_clear();
    stats.incomplete_tail = !stop && parser.in_transaction();
    stats.elapsed_secs = started.elapsed().as_secs_f64();
    Ok(stats)
}

/// Appends the transaction, recording its end LSN and commit time in the session's
/// replication origin just before its COMMIT.
fn push_with_origin_progress(batch: &mut String, txn: &Txn) {
    let body = txn.text.trim_end_matches('\n');
    let (before_commit, commit) = body.rsplit_once('\n').unwrap_or(("", body));
    batch.push_str(before_commit);
    batch.push_str(&format!(
        "\nSELECT pg_catalog.pg_replication_origin_xact_setup('{}', '{}');\n",
        txn.info.end_lsn,
        format_pg_timestamp(txn.info.commit_time)
    ));
    batch.push_str(commit);
    batch.push('\n');
}

async fn send_batch(client: &Client, origin: &str, batch: &str, queued: &[Queued]) -> Result<()> {
    let Err(err) = client.batch_execute(batch).await else {
        return Ok(());
    };
    // Transactions before the failing one committed; the origin says how far.
    let _ = client.batch_execute("ROLLBACK").await;
    let done = origin_progress(client, origin)
        .await
        .ok()
        .flatten()
        .unwrap_or_default();
    let failed = queued.iter().position(|q| q.end_lsn > done).unwrap_or(0);
    let q = &queued[failed];
    let mut location = q.begin.clone();
    let end = queued.get(failed + 1).map_or(batch.len(), |n| n.start);
    let code = err.code().cloned();
    if let Some(tokio_postgres::error::ErrorPosition::Original(pos)) =
        err.as_db_error().and_then(|d| d.position())
    {
        let byte = batch
            .char_indices()
            .nth((*pos as usize).saturating_sub(1))
            .map_or(batch.len(), |(i, _)| i);
        if byte >= q.start {
            location.line += batch[q.start..byte].matches('\n').count() as u64;
        }
    } else if let Some(offset) = locate_failure(client, &batch[q.start..end], code.as_ref()).await {
        location.line += offset;
    }
    Err(Error::Apply {
        location: location.to_string(),
        end_lsn: q.end_lsn.to_string(),
        message: describe_pg_error(&err),
    })
}

/// Finds the line of a transaction that fails with `code`, by running it again statement
/// by statement (one per line, as decoder_sql writes DML) inside a transaction that is
/// rolled back. `None` when the failure does not show up that way.
async fn locate_failure(
    client: &Client,
    txn_text: &str,
    code: Option<&tokio_postgres::error::SqlState>,
) -> Option<u64> {
    let code = code?;
    client.batch_execute("BEGIN").await.ok()?;
    let mut found = None;
    let mut statement = String::new();
    let mut first_line = 0u64;
    for (i, line) in txn_text.lines().enumerate().skip(1) {
        if line.starts_with("COMMIT;")
            || line.starts_with("SELECT pg_catalog.pg_replication_origin_xact_setup(")
        {
            break;
        }
        if statement.is_empty() {
            first_line = i as u64;
        }
        statement.push_str(line);
        statement.push('\n');
        if !line.trim_end().ends_with(';') {
            continue;
        }
        if let Err(e) = client.batch_execute(&statement).await {
            if e.code() == Some(code) {
                found = Some(first_line);
            }
            break;
        }
        statement.clear();
    }
    let _ = client.batch_execute("ROLLBACK").await;
    found
}

/// Sequences owned by a column end up at least at the column's maximum, whatever the
/// stream's snapshots said.
async fn sync_owned_sequences(client: &Client) -> Result<()> {
    client
        .batch_execute(
            r#"DO $sync$
DECLARE r record; m bigint; cur bigint;
BEGIN
  FOR r IN
    SELECT s.oid::regclass AS seq, d.refobjid::regclass AS tbl, a.attname
      FROM pg_catalog.pg_class s
      JOIN pg_catalog.pg_sequence ps ON ps.seqrelid = s.oid
      JOIN pg_catalog.pg_depend d ON d.classid = 'pg_catalog.pg_class'::regclass AND d.objid = s.oid
       AND d.refclassid = 'pg_catalog.pg_class'::regclass AND d.deptype IN ('a', 'i')
      JOIN pg_catalog.pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
     WHERE s.relkind = 'S' AND ps.seqincrement > 0
  LOOP
    BEGIN
      EXECUTE pg_catalog.format('SELECT max(%I)::bigint FROM %s', r.attname, r.tbl) INTO m;
      EXECUTE pg_catalog.format('SELECT last_value FROM %s', r.seq) INTO cur;
      IF m IS NOT NULL AND m >= cur THEN
        PERFORM pg_catalog.setval(r.seq, m, true);
      END IF;
    EXCEPTION WHEN others THEN
      RAISE WARNING 'could not sync sequence %: %', r.seq, SQLERRM;
    END;
  END LOOP;
END
$sync$;"#,
        )
        .await?;
    Ok(())
}

fn dry_run(repo: &Repo, base: &Base, files: Vec<(PathBuf, String)>, target: Target) -> Result<()> {
    println!(
        "base backup: {} (consistent point {}, snapshot at {})",
        base.id, base.consistent_lsn, base.snapshot_time
    );
    println!("  {}", repo.path(&base.globals.path).display());
    println!("  {}", repo.path(&base.dump.path).display());
    println!("segments:");
    for (_, name) in &files {
        println!("  {name}");
    }
    println!("transactions to apply (xid, end LSN, commit time, location):");
    let mut reader = StreamReader::new(files);
    let mut parser = Parser::new(false);
    let mut selection = Selection {
        consistent_lsn: base.consistent_lsn,
        applied_upto: base.consistent_lsn,
        target,
    };
    let mut count = 0u64;
    while let Some((line, at)) = reader.next_line()? {
        if let Some(Event::Txn(t)) = parser.feed(line, at).map_err(Error::Repository)? {
            match selection.judge(&t.info) {
                Verdict::PastTarget => break,
                Verdict::InBase | Verdict::AlreadyApplied => continue,
                Verdict::Apply => {}
            }
            count += 1;
            println!(
                "  {} {} {} {}",
                t.info.xid,
                t.info.end_lsn,
                format_pg_timestamp(t.info.commit_time),
                t.begin
            );
        }
    }
    println!("{count} transaction(s) would be applied; nothing was changed");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globals_of_existing_roles_are_left_out() {
        let sql = "\\restrict k\nCREATE ROLE postgres;\nALTER ROLE postgres WITH SUPERUSER LOGIN;\nCREATE ROLE app;\nALTER ROLE app WITH LOGIN;\nCREATE ROLE \"Mixed\";\nCREATE ROLE postgres_ro;\nGRANT app TO postgres;\n\\unrestrict k\n";
        let roles = ["postgres".into(), "Mixed".into()];
        let (kept, skipped) = filter_globals(sql, &roles, false);
        assert_eq!(
            kept,
            "CREATE ROLE app;\nALTER ROLE app WITH LOGIN;\nCREATE ROLE postgres_ro;\nGRANT app TO postgres;\n"
        );
        assert_eq!(skipped, ["postgres", "Mixed"]);
        let (kept, _) = filter_globals(sql, &roles, true);
        assert!(kept.starts_with("\\restrict k\n") && kept.ends_with("\\unrestrict k\n"));
    }

    #[test]
    fn decoder_sql_is_left_out_of_the_dump() {
        for knows_restrict in [false, true] {
            assert!(!keep_dump_line(
                "CREATE EXTENSION IF NOT EXISTS decoder_sql WITH SCHEMA decoder_sql;\n",
                knows_restrict
            ));
            assert!(!keep_dump_line(
                "COMMENT ON EXTENSION decoder_sql IS 'x';\n",
                knows_restrict
            ));
            assert!(keep_dump_line(
                "CREATE EXTENSION IF NOT EXISTS hstore WITH SCHEMA public;\n",
                knows_restrict
            ));
            assert!(keep_dump_line(
                "INSERT INTO decoder_sql_notes VALUES (1);\n",
                knows_restrict
            ));
        }
    }

    #[test]
    fn restrict_guards_only_reach_a_psql_that_knows_them() {
        for line in ["\\restrict abc123\n", "\\unrestrict abc123\n"] {
            assert!(keep_dump_line(line, true), "{line}");
            assert!(!keep_dump_line(line, false), "{line}");
        }
        assert!(keep_dump_line("\\connect app\n", false));
    }

    #[test]
    fn origin_progress_goes_before_commit() {
        let txn = Txn {
            info: sqlgen::txn::parse_begin(
                "BEGIN; -- xid=5 commit_lsn=0/10 end_lsn=0/38 commit_time=2026-01-01T00:00:00.000000Z",
            )
            .unwrap(),
            text: "BEGIN; -- x\nINSERT INTO t VALUES (1);\nCOMMIT; -- xid=5 end_lsn=0/38\n".into(),
            begin: Location { file: "f".into(), line: 1 },
        };
        let mut batch = String::new();
        push_with_origin_progress(&mut batch, &txn);
        assert_eq!(
            batch,
            "BEGIN; -- x\nINSERT INTO t VALUES (1);\nSELECT pg_catalog.pg_replication_origin_xact_setup('0/38', '2026-01-01T00:00:00.000000Z');\nCOMMIT; -- xid=5 end_lsn=0/38\n"
        );
    }

    #[test]
    fn selection_skips_the_base_repeats_and_what_lies_past_the_target() {
        let txn = |end: u64, time: i64| sqlgen::txn::TxnInfo {
            xid: 1,
            commit_lsn: Lsn(end - 8),
            end_lsn: Lsn(end),
            commit_time: time,
        };
        let mut sel = Selection {
            consistent_lsn: Lsn(100),
            applied_upto: Lsn(150),
            target: Target::Time(30),
        };
        let verdicts: Vec<Verdict> = [
            txn(90, 1),
            txn(140, 2),
            txn(200, 10),
            txn(200, 10),
            txn(180, 9),
            txn(300, 31),
        ]
        .iter()
        .map(|t| sel.judge(t))
        .collect();
        assert_eq!(
            verdicts,
            [
                Verdict::InBase,
                Verdict::AlreadyApplied,
                Verdict::Apply,
                Verdict::AlreadyApplied,
                Verdict::AlreadyApplied,
                Verdict::PastTarget
            ]
        );
        assert_eq!(sel.applied_upto, Lsn(200));
    }

    #[test]
    fn targets() {
        let info = sqlgen::txn::parse_begin(
            "BEGIN; -- xid=5 commit_lsn=0/10 end_lsn=0/38 commit_time=2026-01-01T00:00:00.000000Z",
        )
        .unwrap();
        assert!(!Target::Latest.excludes(&info));
        assert!(!Target::Lsn(Lsn(0x10)).excludes(&info));
        assert!(Target::Lsn(Lsn(0xF)).excludes(&info));
        assert!(!Target::Time(info.commit_time).excludes(&info));
        assert!(Target::Time(info.commit_time - 1).excludes(&info));
    }
}
