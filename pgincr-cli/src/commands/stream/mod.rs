//! `pgincr stream`: runs `pg_recvlogical -P decoder_sql` into the repository and keeps it
//! running.
//!
//! - pg_recvlogical appends to `segments/open.sql`. Rotation renames that file to its final
//!   name and sends SIGHUP; once pg_recvlogical has let go of it, the segment is scanned
//!   (transactions, LSN range), compressed, checksummed and added to the manifest.
//! - After a failure pg_recvlogical is restarted with exponential backoff. Before each
//!   start the open segment is cut back to its last complete transaction: anything after
//!   it was never confirmed to the server, which sends it again.
//! - SIGINT/SIGTERM stop pg_recvlogical with SIGINT (it flushes and confirms what it
//!   wrote), then the open segment is closed.
//! - Every `--sequence-interval` the extension writes the sequences' values into the
//!   stream (`decoder_sql.snapshot_sequences()`).

pub mod store_slot;

use super::init::slot_state;
use crate::chain::{self, ChainPosition, SegmentHeader, segment_file_name};
use crate::cli::{Compression, StreamArgs};
use crate::pg::Endpoint;
use crate::repo::{
    self, Manifest, MissingIdentity, Repo, Segment, SqlFileWriter, StreamError, StreamState,
};
use crate::segment::summarize;
use crate::tool::Running;
use crate::units::human_bytes;
use crate::{Error, Result};
use nix::sys::signal::Signal;
use sqlgen::lsn::Lsn;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use store_slot::StoreSlot;
use tokio::signal::unix::{SignalKind, signal};
use tokio_postgres::Client;

/// How long pg_recvlogical gets to exit after SIGINT before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a walsender may take to let go of the slot after its receiver went away.
const SLOT_RELEASE_TIMEOUT: Duration = Duration::from_secs(10);
/// A run shorter than this counts as a failure for the backoff.
const HEALTHY_RUN: Duration = Duration::from_secs(60);
/// After running this long pg_recvlogical counts as streaming: a recorded failure is over.
const FLOWING_AFTER: Duration = Duration::from_secs(5);
/// A segment that could not be finished (full disk, object store away) is tried again after
/// this, doubling up to PENDING_RETRY_MAX.
const PENDING_RETRY_FIRST: Duration = Duration::from_secs(2);
const PENDING_RETRY_MAX: Duration = Duration::from_secs(60);

pub async fn run(args: StreamArgs, bindir: Option<PathBuf>) -> Result<()> {
    let repo = args.repo.open()?;
    let manifest = repo.load()?;
    let _running = repo.lock_exclusive("stream")?;
    let source = Endpoint::new(&args.conn.dsn, bindir)?;
    let client = source.connect().await?;
    // A receiver left by a previous run that died may still write into the segments: stop it
    // before anything here reads, truncates or deletes them.
    stop_stale_receivers(&repo).await?;
    wait_until_slot_free(&client, &manifest).await?;

    let mut segments = OpenSegment::recover(&repo, &manifest, args.compression)?;
    // With the store slot, a main slot gone or ahead of the repository is copied again from it.
    let mut store_slot = StoreSlot::prepare(
        &source,
        &client,
        &repo,
        &manifest,
        args.confirm_after,
        segments.resume_lsn(),
    )
    .await?;
    check_slot(&client, &manifest).await?;
    check_continuity(&client, &manifest, &segments).await?;
    let mut health = StreamHealth::load(&repo);
    let mut globals = GlobalsSnapshots::new(source.clone(), args.globals_interval);
    globals.maybe_snapshot(&repo).await;
    let end_lsn = if args.catch_up {
        // Sequence values go into the stream before the end point, so that this run receives
        // them as they are now.
        if args.sequence_interval > Duration::ZERO
            && let Err(e) = snapshot_sequences(&client).await
        {
            tracing::warn!(
                "could not snapshot sequences (restore still syncs owned sequences to their columns): {}",
                crate::error::describe_pg_error(&e)
            );
        }
        Some(current_wal_lsn(&client).await?)
    } else {
        None
    };
    tracing::info!(
        "streaming slot {} into {} from {}",
        manifest.source.slot,
        repo.segments_dir().display(),
        segments.resume_lsn()
    );

    let mut sigint = signal(SignalKind::interrupt())?;
    let mut sigterm = signal(SignalKind::terminate())?;
    let mut backoff = Duration::from_secs(1);
    let mut sequences = SequenceSnapshots::new(source.clone(), client, args.sequence_interval);
    loop {
        // A segment left unfinished by a full disk, and the next one's header, come first.
        let ready = match segments.finish_pending().await {
            Ok(()) => segments.prepare_open(),
            Err(e @ Error::Storage(_)) => {
                // The store being away must not stop the receiving: the spool holds it.
                tracing::error!("{e}");
                health.failed(&e);
                segments.prepare_open()
            }
            Err(e) => Err(e),
        };
        let mut child = match ready
            .and_then(|()| start_receiver(&source, &manifest, &repo, &args, &segments, &end_lsn))
        {
            Ok(child) => child,
            Err(e) => {
                tracing::error!("{e}");
                health.failed(&e);
                tracing::info!("trying again in {}s", backoff.as_secs());
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = sigint.recv() => return Err(e),
                    _ = sigterm.recv() => return Err(e),
                }
                backoff = (backoff * 2).min(args.max_backoff);
                continue;
            }
        };
        let started = Instant::now();
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        let outcome = loop {
            tokio::select! {
                status = child.child.wait() => break Some(status?),
                _ = sigint.recv() => break None,
                _ = sigterm.recv() => break None,
                _ = tick.tick() => {
                    if started.elapsed() >= FLOWING_AFTER {
                        health.flowing();
                    }
                    if segments.due(args.segment_size, args.segment_age) && started.elapsed() > Duration::from_secs(1) {
                        match segments.rotate(Some(&child)).await {
                            Ok(()) => {}
                            Err(e) if repo::is_disk_full(&e) || matches!(e, Error::Storage(_)) => {
                                tracing::error!("{e}");
                                health.failed(&e);
                            }
                            Err(e) => return Err(e),
                        }
                    }
                    advance_store_slot(&mut store_slot, &segments).await;
                    sequences.maybe_snapshot().await;
                    globals.maybe_snapshot(&repo).await;
                }
            }
        };
        match outcome {
            None => {
                tracing::info!("stopping");
                // The sequences' values as they are at the stop go into the stream, and this
                // run receives them before it ends.
                let snapshot_end = sequences.final_snapshot().await;
                stop_receiver(&mut child).await;
                segments.recover_tail()?;
                if let Some(end) = snapshot_end {
                    let end = Some(end);
                    if let Err(e) = segments.prepare_open() {
                        tracing::warn!("{e}");
                    }
                    match start_receiver(&source, &manifest, &repo, &args, &segments, &end) {
                        Ok(mut last) => {
                            match tokio::time::timeout(STOP_TIMEOUT, last.wait()).await {
                                Ok(Ok(())) => {
                                    segments.recover_tail()?;
                                    segments.rotate(None).await?;
                                    advance_store_slot(&mut store_slot, &segments).await;
                                    record_clean_stop(&source, &repo, &segments).await?;
                                    return Ok(());
                                }
                                Ok(Err(e)) => {
                                    tracing::warn!("receiving the last sequence values: {e}")
                                }
                                Err(_) => {
                                    tracing::warn!(
                                        "the last sequence values did not arrive in time"
                                    );
                                    stop_receiver(&mut last).await;
                                }
                            }
                            segments.recover_tail()?;
                        }
                        Err(e) => tracing::warn!("receiving the last sequence values: {e}"),
                    }
                }
                segments.rotate(None).await?;
                advance_store_slot(&mut store_slot, &segments).await;
                return Ok(());
            }
            Some(status) if status.success() && end_lsn.is_some() => {
                segments.recover_tail()?;
                segments.rotate(None).await?;
                advance_store_slot(&mut store_slot, &segments).await;
                record_clean_stop(&source, &repo, &segments).await?;
                health.flowing();
                tracing::info!("caught up to {}", end_lsn.as_deref().unwrap_or(""));
                return Ok(());
            }
            Some(status) => {
                let failure = match child.check(status).await {
                    Err(e) => e,
                    Ok(()) => Error::Invalid("pg_recvlogical exited unexpectedly".into()),
                };
                tracing::error!("{failure}");
                health.failed(&failure);
                segments.recover_tail()?;
                if repo::is_disk_full(&failure) {
                    // Compressing the open segment is what frees space.
                    tracing::info!("closing the open segment to free space");
                    if let Err(e) = segments.rotate(None).await {
                        tracing::error!("{e}");
                        health.failed(&e);
                    }
                }
                // A vanished or replaced slot cannot be resumed: the stream has a gap.
                match source.connect().await {
                    Ok(c) => {
                        check_slot(&c, &manifest).await?;
                        if !segments.has_pending() {
                            check_continuity(&c, &manifest, &segments).await?;
                        }
                    }
                    Err(e) => tracing::warn!("{e}"),
                }
                if started.elapsed() > HEALTHY_RUN {
                    backoff = Duration::from_secs(1);
                }
                tracing::info!("restarting pg_recvlogical in {}s", backoff.as_secs());
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = sigint.recv() => { segments.rotate(None).await?; return Ok(()); }
                    _ = sigterm.recv() => { segments.rotate(None).await?; return Ok(()); }
                }
                backoff = (backoff * 2).min(args.max_backoff);
            }
        }
    }
}

/// Moves the store slot (if in effect) past the segments the store holds now.
async fn advance_store_slot(store_slot: &mut Option<StoreSlot>, segments: &OpenSegment) {
    if let Some(slot) = store_slot.as_mut() {
        slot.advance(segments.last_end_lsn).await;
    }
}

async fn current_wal_lsn(client: &Client) -> std::result::Result<String, tokio_postgres::Error> {
    Ok(client
        .query_one("SELECT pg_catalog.pg_current_wal_lsn()::text", &[])
        .await?
        .get(0))
}

/// The failure the stream keeps running into, kept in `stream-state.json` for `status`.
struct StreamHealth {
    repo: Repo,
    state: StreamState,
}

impl StreamHealth {
    /// Reads what an earlier run recorded (its failure stands until the stream flows) and
    /// writes the file now, so that it exists at full size before the disk can fill up.
    fn load(repo: &Repo) -> Self {
        let mut health = StreamHealth {
            repo: repo.clone(),
            state: repo.load_stream_state().unwrap_or_default(),
        };
        health.store();
        health
    }

    fn failed(&mut self, error: &Error) {
        let kind = if repo::is_disk_full(error) {
            repo::DISK_FULL
        } else {
            "receiver"
        };
        let message = one_message(error);
        let now = repo::now_rfc3339();
        match &mut self.state.error {
            Some(e) => {
                e.kind = kind.to_owned();
                e.message = message;
                e.last_seen = now;
                e.count += 1;
            }
            None => {
                self.state.error = Some(StreamError {
                    kind: kind.to_owned(),
                    message,
                    first_seen: now.clone(),
                    last_seen: now,
                    count: 1,
                });
            }
        }
        self.store();
    }

    /// pg_recvlogical has been streaming for a while: whatever failed before is over.
    fn flowing(&mut self) {
        if let Some(e) = self.state.error.take() {
            tracing::info!(
                "streaming again after {} failure(s) since {}",
                e.count,
                e.first_seen
            );
            self.store();
        }
    }

    fn store(&mut self) {
        self.state.updated = repo::now_rfc3339();
        if let Err(e) = self.repo.store_stream_state(&self.state) {
            tracing::warn!("could not record the stream's state: {e}");
        }
    }
}

/// An error as one bounded message: the server's words from a program's stderr, without
/// repeated lines.
fn one_message(error: &Error) -> String {
    const MAX_CHARS: usize = 2000;
    let mut lines: Vec<&str> = Vec::new();
    let text = error.to_string();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if !lines.contains(&line) {
            lines.push(line);
        }
    }
    let joined = lines.join(" | ");
    match joined.char_indices().nth(MAX_CHARS) {
        Some((cut, _)) => format!("{}…", &joined[..cut]),
        None => joined,
    }
}

/// The slot must exist, use decoder_sql and belong to the repository's database.
async fn check_slot(client: &Client, manifest: &Manifest) -> Result<()> {
    let slot = &manifest.source.slot;
    match slot_state(client, slot).await? {
        None => Err(Error::Repository(format!(
            "replication slot {slot} does not exist: changes since it was dropped are lost to \
             this repository. Start a new repository with `pgincr init`."
        ))),
        Some(s) if !s.is_decoder_sql_in(&manifest.source.database) => {
            Err(Error::Repository(format!(
                "replication slot {slot} uses plugin {} on database {}, not decoder_sql on {}",
                s.plugin, s.database, manifest.source.database
            )))
        }
        Some(_) => Ok(()),
    }
}

/// Stops pg_recvlogical processes that still have files of this repository's segments
/// directory open: receivers of an earlier run that died without taking them along. This run
/// holds the repository's lock, so no receiver of its own is running yet.
async fn stop_stale_receivers(repo: &Repo) -> Result<()> {
    let segments_dir = fs::canonicalize(repo.segments_dir()).map_err(Error::io(format!(
        "resolving {}",
        repo.segments_dir().display()
    )))?;
    for pid in receivers_writing_into(&segments_dir) {
        tracing::warn!(
            "pg_recvlogical (PID {pid}) left by an earlier run still writes into {}; stopping it",
            segments_dir.display()
        );
        let pid = nix::unistd::Pid::from_raw(pid);
        let _ = nix::sys::signal::kill(pid, Signal::SIGINT);
        let deadline = Instant::now() + STOP_TIMEOUT;
        while process_alive(pid) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        if process_alive(pid) {
            let _ = nix::sys::signal::kill(pid, Signal::SIGKILL);
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        if process_alive(pid) {
            return Err(Error::Invalid(format!(
                "pg_recvlogical (PID {pid}) still writes into {} and could not be stopped",
                segments_dir.display()
            )));
        }
    }
    Ok(())
}

/// Whether a process exists and has not exited (a zombie has).
fn process_alive(pid: nix::unistd::Pid) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        // "pid (comm) S ...": the state follows the last ')'.
        stat.rsplit_once(')')
            .is_some_and(|(_, rest)| !rest.trim_start().starts_with(['Z', 'X']))
    })
}

/// PIDs of pg_recvlogical processes with a file under `dir` open (Linux /proc).
fn receivers_writing_into(dir: &Path) -> Vec<i32> {
    let Ok(procs) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    procs
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|c| c.trim_end() == "pg_recvlogical")
        })
        .filter(|pid| {
            fs::read_dir(format!("/proc/{pid}/fd")).is_ok_and(|fds| {
                fds.filter_map(|fd| fs::read_link(fd.ok()?.path()).ok())
                    .any(|target| target.starts_with(dir))
            })
        })
        .collect()
}

/// Waits a moment for a walsender still finishing a previous receiver's connection, then
/// refuses, naming whoever holds the slot.
async fn wait_until_slot_free(client: &Client, manifest: &Manifest) -> Result<()> {
    let slot = &manifest.source.slot;
    let deadline = Instant::now() + SLOT_RELEASE_TIMEOUT;
    loop {
        let Some(state) = slot_state(client, slot).await? else {
            // Checked once the store slot had its chance to bring it back.
            return Ok(());
        };
        if !state.active {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(Error::Invalid(format!(
                "replication slot {slot} is in use by {}: another receiver streams from it \
                 (a second `pgincr stream`, or a pg_recvlogical on another host); stop it first",
                state.holder.as_deref().unwrap_or("another session")
            )));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The slot must not have confirmed changes this repository does not hold: that happens when
/// the slot was dropped and created again under the same name, or when another consumer
/// (a receiver left running by a run that died, writing into a file since removed) took
/// them. The server never sends confirmed changes again, so that is a gap: refuse.
async fn check_continuity(
    client: &Client,
    manifest: &Manifest,
    segments: &OpenSegment,
) -> Result<()> {
    let Some(state) = slot_state(client, &manifest.source.slot).await? else {
        return check_slot(client, manifest).await;
    };
    let Some(confirmed) = state.confirmed_flush_lsn else {
        return Ok(());
    };
    let held = segments.resume_lsn();
    if !has_gap(
        confirmed,
        held,
        segments.unfinished_end_lsn,
        manifest.source.confirmed_clean_lsn,
    ) {
        return Ok(());
    }
    Err(Error::Repository(format!(
        "replication slot {} has confirmed changes up to {confirmed}, but this repository holds \
         them only up to {held}: the changes in between are lost to it (was the slot dropped \
         and created again, or did another receiver consume it?). This repository cannot \
         continue without a gap; start a new one with `pgincr init` into an empty directory \
         (restores from this one remain valid up to {held})",
        manifest.source.slot
    )))
}

/// Whether a slot confirmed at `confirmed` lost changes for a repository that holds complete
/// transactions up to `held`. Explained positions: `held` itself; inside a transaction cut
/// short on disk (the server sends it again, so up to but excluding its `unfinished_end`);
/// and the slot's position at the last clean stop.
fn has_gap(confirmed: Lsn, held: Lsn, unfinished_end: Option<Lsn>, clean: Option<Lsn>) -> bool {
    confirmed > held
        && clean.is_none_or(|c| confirmed > c)
        && unfinished_end.is_none_or(|end| confirmed >= end)
}

/// After a clean stop the slot may be confirmed past the last transaction (keepalives):
/// remember where, so the next run does not take that for a gap.
async fn record_clean_stop(source: &Endpoint, repo: &Repo, segments: &OpenSegment) -> Result<()> {
    let client = source.connect().await?;
    let manifest = repo.load()?;
    let Some(state) = slot_state(&client, &manifest.source.slot).await? else {
        return Ok(());
    };
    if let Some(confirmed) = state.confirmed_flush_lsn
        && confirmed > segments.resume_lsn()
    {
        repo.update(|m| {
            m.source.confirmed_clean_lsn = Some(confirmed);
            Ok(())
        })?;
    }
    Ok(())
}

fn start_receiver(
    source: &Endpoint,
    manifest: &Manifest,
    repo: &Repo,
    args: &StreamArgs,
    segments: &OpenSegment,
    end_lsn: &Option<String>,
) -> Result<Running> {
    let mut tool = source
        .tools
        .command("pg_recvlogical")
        .args(["--start", "--no-loop", "--no-password", "-S"])
        .arg(&manifest.source.slot)
        .arg("-d")
        .arg(&source.public_dsn)
        .arg("-f")
        .arg(repo.open_segment_path())
        .arg(format!(
            "--status-interval={}",
            args.status_interval.as_secs().max(1)
        ))
        .arg(format!(
            "--fsync-interval={}",
            args.fsync_interval.as_secs()
        ))
        .args(["-o", "include_annotations=on", "-o", "skip_empty_xacts=on"])
        .args(match manifest.source.missing_identity {
            MissingIdentity::Full => &[][..],
            MissingIdentity::Skip => &["-o", "missing_identity=skip"][..],
        })
        // Transactions up to here are complete in the repository: start after them.
        .arg(format!("--startpos={}", segments.resume_lsn()));
    if let Some(end) = end_lsn {
        tool = tool.arg(format!("--endpos={end}"));
    }
    tool.spawn()
}

async fn stop_receiver(child: &mut Running) {
    child.signal(Signal::SIGINT);
    match tokio::time::timeout(STOP_TIMEOUT, child.child.wait()).await {
        Ok(Ok(status)) => {
            if let Err(e) = child.check(status).await {
                tracing::warn!("on stop: {e}");
            }
        }
        Ok(Err(e)) => tracing::warn!("waiting for pg_recvlogical: {e}"),
        Err(_) => {
            tracing::warn!("pg_recvlogical did not stop in time; killing it");
            let _ = child.child.kill().await;
        }
    }
}

/// The segment being written and the chain position before it.
struct OpenSegment {
    repo: Repo,
    compression: Compression,
    /// End of the last transaction in the closed segments.
    last_end_lsn: Lsn,
    /// The last closed segment's seq and start (0 and the stream's start before the first).
    previous: (u64, Lsn),
    /// End of the last complete transaction in the open segment, as last recovered.
    open_end_lsn: Option<Lsn>,
    next_seq: u64,
    /// When the open segment was first seen with data (for age-based rotation).
    data_since: Option<Instant>,
    /// End LSN of a transaction last found cut short on disk (the server sends it again).
    unfinished_end_lsn: Option<Lsn>,
    /// Length of the header line at the start of the open segment (0 if it has none).
    header_bytes: u64,
    /// A segment closed while pg_recvlogical went on, whose compression, upload or
    /// registration failed (a full disk, an unreachable object store): it is finished
    /// before anything else.
    pending: Option<PathBuf>,
    /// When finishing the pending segment is tried next, and the delay after that.
    pending_retry: Option<(Instant, Duration)>,
}

impl OpenSegment {
    /// Finishes the segment a previous run left half-closed, then checks that the open
    /// segment continues the chain and cuts it back to its last complete transaction.
    /// Files in `segments/` that are not this chain's are left where they are.
    fn recover(repo: &Repo, manifest: &Manifest, compression: Compression) -> Result<Self> {
        let mut seg = OpenSegment {
            repo: repo.clone(),
            compression,
            last_end_lsn: manifest
                .segments
                .last()
                .map_or(manifest.source.stream_start_lsn, |s| s.end_lsn),
            previous: manifest
                .segments
                .last()
                .map_or((0, manifest.source.stream_start_lsn), |s| {
                    (s.seq, s.start_lsn)
                }),
            next_seq: manifest.segments.last().map_or(1, |s| s.seq + 1),
            data_since: None,
            open_end_lsn: None,
            unfinished_end_lsn: None,
            header_bytes: 0,
            pending: None,
            pending_retry: None,
        };
        let known: Vec<&str> = manifest
            .segments
            .iter()
            .map(|s| s.file.path.as_str())
            .collect();
        let mut leftovers = Vec::new();
        let mut others = Vec::new();
        for entry in fs::read_dir(repo.segments_dir()).map_err(Error::io(format!(
            "reading {}",
            repo.segments_dir().display()
        )))? {
            let name = entry?.file_name().to_string_lossy().into_owned();
            let rel = format!("{}/{name}", repo::SEGMENTS_DIR);
            if known.contains(&rel.as_str()) && repo.remote().is_some() {
                // Uploaded and registered; the run that spooled it did not get to remove it.
                let path = repo.segments_dir().join(&name);
                fs::remove_file(&path)
                    .map_err(Error::io(format!("removing {}", path.display())))?;
                continue;
            }
            if known.contains(&rel.as_str()) || name == repo::OPEN_SEGMENT {
                continue;
            }
            if name.ends_with(".sql") && known.iter().any(|k| stored_form_of(k, &rel)) {
                // The text of a segment already compressed (or encrypted) and registered:
                // this process's own copy, which the run that wrote it did not get to remove.
                let path = repo.segments_dir().join(&name);
                fs::remove_file(&path)
                    .map_err(Error::io(format!("removing {}", path.display())))?;
            } else if name.ends_with(".sql") {
                leftovers.push(name);
            } else {
                others.push(name);
            }
        }
        leftovers.sort();
        for name in leftovers {
            let path = repo.segments_dir().join(&name);
            if let Some(reason) = seg.not_adoptable(&name, &path)? {
                tracing::warn!(
                    "{}/{name} is not the next segment of this chain ({reason}); it is left in \
                     place and not used",
                    repo::SEGMENTS_DIR
                );
                continue;
            }
            tracing::info!("finishing segment {name} left by an earlier run");
            for other in others.iter().filter(|o| stored_form_of(o, &name)) {
                // A compression of this segment that did not finish; done again below.
                let copy = repo.segments_dir().join(other);
                fs::remove_file(&copy)
                    .map_err(Error::io(format!("removing {}", copy.display())))?;
            }
            others.retain(|o| !stored_form_of(o, &name));
            let unfinished = summarize(vec![(path.clone(), name)])?.unfinished_end_lsn;
            seg.finish(&path)?;
            seg.unfinished_end_lsn = seg.unfinished_end_lsn.max(unfinished);
        }
        for name in others {
            tracing::warn!(
                "{}/{name} is not a file of this repository; it is left in place and not used",
                repo::SEGMENTS_DIR
            );
        }
        // Appending to an open segment that does not continue the chain would hide a gap.
        chain::ensure_open_segment_continues(repo, &repo.load()?)?;
        seg.recover_tail()?;
        Ok(seg)
    }

    /// Why the leftover segment file `name` cannot be the next segment of the chain, if so.
    fn not_adoptable(&self, name: &str, path: &Path) -> Result<Option<String>> {
        let expected = segment_file_name(self.next_seq, self.last_end_lsn);
        if name != expected {
            return Ok(Some(format!("the chain continues with {expected}")));
        }
        let summary = summarize(vec![(path.to_owned(), name.to_owned())])?;
        let start = summary.start();
        // Whether the last closed segment leaves a transaction open matters only to a file
        // that begins inside one.
        let open_transaction_end = if start.continued_transaction_end.is_some() {
            chain::transaction_left_open(&self.repo, &self.repo.load()?.segments)?
        } else {
            None
        };
        let position = ChainPosition {
            seq: self.next_seq,
            previous: Some(self.previous),
            open_transaction_end,
        };
        Ok(chain::continuity_problem(name, &position, &start))
    }

    /// The header the open segment gets: this segment's place in the chain.
    fn open_header(&self) -> SegmentHeader {
        SegmentHeader {
            seq: self.next_seq,
            previous_seq: self.previous.0,
            previous_start_lsn: self.previous.1,
        }
    }

    /// Writes `header` as the first line of a new open segment (pg_recvlogical appends).
    fn write_header(&mut self, header: SegmentHeader) -> Result<()> {
        let path = self.repo.open_segment_path();
        let line = header.line();
        let mut f = repo::create_private_file(&path)?;
        let written =
            std::io::Write::write_all(&mut f, line.as_bytes()).and_then(|()| f.sync_all());
        if let Err(e) = written {
            // No half header: pg_recvlogical creates the file itself then.
            let _ = fs::remove_file(&path);
            return Err(Error::IoAt {
                context: format!("writing {}", path.display()),
                source: e,
            });
        }
        repo::sync_dir(&self.repo.segments_dir())?;
        self.header_bytes = line.len() as u64;
        Ok(())
    }

    /// Gives an open segment that does not exist yet (or is empty) its header.
    fn prepare_open(&mut self) -> Result<()> {
        if fs::metadata(self.repo.open_segment_path()).is_ok_and(|m| m.len() > 0) {
            return Ok(());
        }
        self.write_header(self.open_header())
    }

    /// Cuts the open segment after its last complete transaction (pg_recvlogical is not
    /// running). The cut-off part was never confirmed to the server, so it comes again.
    fn recover_tail(&mut self) -> Result<()> {
        let path = self.repo.open_segment_path();
        if !path.exists() {
            self.header_bytes = 0;
            return Ok(());
        }
        let s = summarize(vec![(path.clone(), repo::OPEN_SEGMENT.to_owned())])?;
        self.header_bytes = s.header_bytes;
        self.unfinished_end_lsn = self.unfinished_end_lsn.max(s.unfinished_end_lsn);
        let no_transaction_lines = s.transactions == 0
            && s.repeated == 0
            && s.superseded == 0
            && s.unfinished_end_lsn.is_none()
            && s.continued_transaction_end.is_none();
        if no_transaction_lines {
            // The open segment (empty, or wholly inside a transaction) has no BEGIN or COMMIT
            // of its own: a transaction the closed segments leave open is still open. The slot
            // may have confirmed a position inside it (pg_recvlogical reports what it
            // received), and the server sends it again from its BEGIN.
            let left_open = chain::transaction_left_open(&self.repo, &self.repo.load()?.segments)?;
            self.unfinished_end_lsn = self.unfinished_end_lsn.max(left_open.flatten());
        }
        let keep = s.complete_bytes.max(s.header_bytes);
        if keep < s.bytes {
            tracing::info!(
                "dropping {} bytes of an incomplete transaction at the end of {} (the server sends it again)",
                s.bytes - keep,
                repo::OPEN_SEGMENT
            );
            let f = fs::OpenOptions::new()
                .write(true)
                .open(&path)
                .map_err(Error::io(format!("opening {}", path.display())))?;
            f.set_len(keep)
                .and_then(|_| f.sync_all())
                .map_err(Error::io(format!("truncating {}", path.display())))?;
        }
        self.open_end_lsn = s.last_end_lsn;
        Ok(())
    }

    /// Where pg_recvlogical starts: after the last complete transaction on disk.
    fn resume_lsn(&self) -> Lsn {
        self.open_end_lsn
            .map_or(self.last_end_lsn, |o| o.max(self.last_end_lsn))
    }

    /// Bytes of changes in the open segment (its header aside).
    fn open_size(&self) -> u64 {
        fs::metadata(self.repo.open_segment_path())
            .map_or(0, |m| m.len().saturating_sub(self.header_bytes))
    }

    fn has_pending(&self) -> bool {
        self.pending.is_some()
    }

    /// Whether the open segment should be closed now: by size, by age, or because the disk
    /// has less room left than the segment holds (compressing it frees most of that).
    fn due(&mut self, max_size: u64, max_age: Duration) -> bool {
        let size = self.open_size();
        if size == 0 {
            self.data_since = None;
            return false;
        }
        let since = *self.data_since.get_or_insert_with(Instant::now);
        if size >= max_size || since.elapsed() >= max_age {
            return true;
        }
        match self.repo.free_bytes() {
            Some(free) if size >= free => {
                tracing::info!(
                    "closing the open segment early: {} of changes, {} free on the repository's disk",
                    human_bytes(size),
                    human_bytes(free)
                );
                true
            }
            _ => false,
        }
    }

    /// Finishes a segment whose finishing failed earlier; an error leaves it pending.
    async fn finish_pending(&mut self) -> Result<()> {
        let Some(path) = self.pending.take() else {
            return Ok(());
        };
        match self.finish_off_runtime(path.clone()).await {
            Ok(()) => {
                self.pending_retry = None;
                Ok(())
            }
            Err(e) => {
                self.pending = Some(path);
                let delay = self
                    .pending_retry
                    .map_or(PENDING_RETRY_FIRST, |(_, d)| (d * 2).min(PENDING_RETRY_MAX));
                self.pending_retry = Some((Instant::now() + delay, delay));
                Err(e)
            }
        }
    }

    /// Whether a pending segment waits for its next try (the open segment grows meanwhile).
    fn pending_waits(&self) -> bool {
        self.pending.is_some()
            && self
                .pending_retry
                .is_some_and(|(at, _)| Instant::now() < at)
    }

    /// Closes the open segment: renames it, makes pg_recvlogical (if running) reopen its
    /// output, then finishes the renamed file. When finishing fails (a full disk) nothing
    /// is lost: without a receiver the file becomes the open segment again, with one it
    /// stays pending.
    async fn rotate(&mut self, receiver: Option<&Running>) -> Result<()> {
        if receiver.is_some() && self.pending_waits() {
            return Ok(());
        }
        self.finish_pending().await?;
        let open = self.repo.open_segment_path();
        if self.open_size() == 0 {
            if receiver.is_none() {
                let _ = fs::remove_file(&open);
                self.header_bytes = 0;
            }
            return Ok(());
        }
        let closing = self
            .repo
            .segments_dir()
            .join(segment_file_name(self.next_seq, self.last_end_lsn));
        fs::rename(&open, &closing).map_err(Error::io(format!("renaming {}", open.display())))?;
        repo::sync_dir(&self.repo.segments_dir())?;
        let closing_header_bytes = std::mem::take(&mut self.header_bytes);
        if let Some(child) = receiver {
            // The next segment's header goes in before pg_recvlogical reopens its output.
            let next = SegmentHeader {
                seq: self.next_seq + 1,
                previous_seq: self.next_seq,
                previous_start_lsn: self.last_end_lsn,
            };
            if let Err(e) = self.write_header(next) {
                tracing::warn!("the next segment starts without its header: {e}");
            }
            child.signal(Signal::SIGHUP);
            wait_until_closed(child, &closing).await;
        }
        self.data_since = None;
        match self.finish_off_runtime(closing.clone()).await {
            Ok(()) => Ok(()),
            Err(e) => {
                if receiver.is_none() && !open.exists() {
                    fs::rename(&closing, &open)
                        .map_err(Error::io(format!("renaming {}", closing.display())))?;
                    self.header_bytes = closing_header_bytes;
                } else {
                    self.pending = Some(closing);
                }
                Err(e)
            }
        }
    }

    async fn finish_off_runtime(&mut self, path: PathBuf) -> Result<()> {
        let finisher = OpenSegmentFinisher::from(&*self);
        let segment = tokio::task::spawn_blocking(move || finisher.finish(&path))
            .await
            .map_err(|e| Error::Invalid(format!("segment finisher failed: {e}")))??;
        self.closed(&segment);
        Ok(())
    }

    /// Scans, compresses and registers a closed segment file (synchronous).
    fn finish(&mut self, path: &Path) -> Result<()> {
        let segment = OpenSegmentFinisher::from(&*self).finish(path)?;
        self.closed(&segment);
        Ok(())
    }

    /// The chain now ends with `segment`; a new open segment starts after it.
    fn closed(&mut self, segment: &Segment) {
        self.last_end_lsn = segment.end_lsn;
        self.previous = (segment.seq, segment.start_lsn);
        self.next_seq = segment.seq + 1;
        self.open_end_lsn = None;
    }
}

/// The part of closing a segment that runs off the async runtime.
struct OpenSegmentFinisher {
    repo: Repo,
    compression: Compression,
    last_end_lsn: Lsn,
    seq: u64,
}

impl From<&OpenSegment> for OpenSegmentFinisher {
    fn from(s: &OpenSegment) -> Self {
        OpenSegmentFinisher {
            repo: s.repo.clone(),
            compression: s.compression,
            last_end_lsn: s.last_end_lsn,
            seq: s.next_seq,
        }
    }
}

impl OpenSegmentFinisher {
    /// Compresses (or hashes) the file and registers it. On failure the text file stays
    /// and whatever this wrote is removed, so the segment can be finished again.
    fn finish(&self, path: &Path) -> Result<Segment> {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let summary = summarize(vec![(path.to_owned(), name.clone())])?;
        let open_at_end = if summary.leaves_open_as_before() {
            chain::transaction_left_open(&self.repo, &self.repo.load()?.segments)?
        } else {
            Some(summary.unfinished_end_lsn)
        }
        .map(|transaction_end| repo::OpenAtEnd { transaction_end });
        let rel = format!("{}/{name}", repo::SEGMENTS_DIR);
        let compress = self.compression == Compression::Zstd;
        // The text file is the segment itself only when neither compressed nor encrypted.
        let rewrite = compress || !self.repo.recipients()?.is_empty();
        let stored = self.repo.path(self.repo.stored_rel(&rel, compress)?);
        let file = if rewrite {
            let written = (|| {
                let mut out = SqlFileWriter::create(&self.repo, &rel, compress)?;
                let mut input = fs::File::open(path)
                    .map_err(Error::io(format!("opening {}", path.display())))?;
                std::io::copy(&mut input, &mut out)
                    .map_err(Error::io(format!("compressing {}", path.display())))?;
                let file = out.finish()?;
                repo::sync_dir(&self.repo.segments_dir())?;
                Ok(file)
            })();
            match written {
                Ok(file) => file,
                Err(e) => {
                    let _ = fs::remove_file(&stored);
                    return Err(e);
                }
            }
        } else {
            let (sha256, bytes) = repo::hash_file(path)?;
            fs::File::open(path)
                .and_then(|f| f.sync_all())
                .map_err(Error::io(format!("syncing {}", path.display())))?;
            repo::FileEntry {
                path: rel,
                bytes,
                sha256,
                sql_bytes: bytes,
                compression: "none".into(),
                encryption: None,
            }
        };
        if let Err(e) = self.repo.upload(&file.path) {
            if rewrite {
                let _ = fs::remove_file(&stored);
            }
            return Err(e);
        }
        let segment = Segment {
            seq: self.seq,
            file,
            start_lsn: self.last_end_lsn,
            end_lsn: summary
                .last_end_lsn
                .map_or(self.last_end_lsn, |e| e.max(self.last_end_lsn)),
            transactions: summary.transactions,
            starts_in_transaction: summary.starts_in_transaction,
            last_commit_time: summary
                .last_commit_time
                .map(sqlgen::txn::format_pg_timestamp),
            closed: repo::now_rfc3339(),
            skipped_changes: summary.skipped_changes,
            open_at_end,
        };
        let registered = self.repo.update(|m| {
            m.segments.push(segment.clone());
            Ok(())
        });
        if let Err(e) = registered {
            // The manifest may have been replaced before a later step failed.
            let in_manifest = self
                .repo
                .load()
                .is_ok_and(|m| m.segments.iter().any(|s| s.file.path == segment.file.path));
            if !in_manifest {
                if rewrite {
                    let _ = fs::remove_file(&stored);
                }
                return Err(e);
            }
        }
        if rewrite && let Err(e) = fs::remove_file(path) {
            // Registered already; the next run removes the redundant text file.
            tracing::warn!("removing {}: {e}", path.display());
        }
        if self.repo.remote().is_some()
            && let Err(e) = fs::remove_file(&stored)
        {
            // Uploaded and registered; the next run removes the spooled copy.
            tracing::warn!("removing {}: {e}", stored.display());
        }
        tracing::info!(
            "closed segment {} ({} transactions, up to {}, {})",
            segment.seq,
            segment.transactions,
            segment.end_lsn,
            human_bytes(segment.file.bytes)
        );
        Ok(segment)
    }
}

/// Whether `candidate` is the text segment `name` as stored compressed or encrypted
/// (`name.zst`, `name.zst.age`, `name.age`).
fn stored_form_of(candidate: &str, name: &str) -> bool {
    candidate
        .strip_prefix(name)
        .is_some_and(|suffix| suffix.starts_with('.'))
}

/// Waits until pg_recvlogical no longer has `path` open (it closes its output file on
/// the next turn of its loop after SIGHUP).
async fn wait_until_closed(child: &Running, path: &Path) {
    let Some(pid) = child.child.id() else { return };
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if !holds_open(pid, path) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tracing::warn!("pg_recvlogical still has {} open after 30s", path.display());
}

fn holds_open(pid: u32, path: &Path) -> bool {
    let Ok(fds) = fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    fds.flatten()
        .any(|fd| fs::read_link(fd.path()).is_ok_and(|target| target == path))
}

/// Work done every `every` on a connection of its own, opened again after errors (the server
/// may have restarted); a failure is logged once until the work succeeds again.
struct Periodic {
    source: Endpoint,
    client: Option<Client>,
    every: Duration,
    last: Option<Instant>,
    warned: bool,
}

impl Periodic {
    fn new(source: Endpoint, client: Option<Client>, every: Duration) -> Self {
        Periodic {
            source,
            client,
            every,
            last: None,
            warned: false,
        }
    }

    /// The connection, when the work is due now (and enabled) and the server can be reached.
    async fn due(&mut self) -> Option<&Client> {
        if self.every.is_zero() || self.last.is_some_and(|l| l.elapsed() < self.every) {
            return None;
        }
        self.last = Some(Instant::now());
        self.connected().await
    }

    async fn connected(&mut self) -> Option<&Client> {
        if self.client.is_none() {
            self.client = self.source.connect().await.ok();
        }
        self.client.as_ref()
    }

    fn succeeded(&mut self) {
        self.warned = false;
    }

    /// Logs `message` (once until the next success) and drops the connection.
    fn failed(&mut self, message: impl FnOnce() -> String) {
        if !self.warned {
            self.warned = true;
            tracing::warn!("{}", message());
        }
        self.client = None;
    }
}

/// Periodic comparisons of the globals with the repository's newest copy
/// ([`crate::globals`]).
struct GlobalsSnapshots(Periodic);

impl GlobalsSnapshots {
    fn new(source: Endpoint, every: Duration) -> Self {
        GlobalsSnapshots(Periodic::new(source, None, every))
    }

    async fn maybe_snapshot(&mut self, repo: &Repo) {
        let source = self.0.source.clone();
        let Some(client) = self.0.due().await else {
            return;
        };
        match crate::globals::snapshot_if_changed(repo, &source, client).await {
            Ok(taken) => {
                if let Some(s) = taken {
                    tracing::info!(
                        "roles or tablespaces changed: globals saved as {}",
                        s.file.path
                    );
                }
                self.0.succeeded();
            }
            Err(e) => self.0.failed(|| {
                format!(
                    "could not save the changed globals (roles, tablespaces); trying again: {e}"
                )
            }),
        }
    }
}

/// Periodic `decoder_sql.snapshot_sequences()` calls.
struct SequenceSnapshots(Periodic);

impl SequenceSnapshots {
    fn new(source: Endpoint, client: Client, every: Duration) -> Self {
        SequenceSnapshots(Periodic::new(source, Some(client), every))
    }

    async fn maybe_snapshot(&mut self) {
        let Some(client) = self.0.due().await else {
            return;
        };
        match snapshot_sequences(client).await {
            Ok(n) => {
                tracing::debug!("wrote {n} sequence values");
                self.0.succeeded();
            }
            Err(e) => self.0.failed(|| {
                format!(
                    "could not snapshot sequences (restore still syncs owned sequences to their columns): {}",
                    crate::error::describe_pg_error(&e)
                )
            }),
        }
    }

    /// Writes the sequences' values once more (at a clean stop) and returns the WAL position
    /// after them, up to which the stream must receive; `None` when snapshots are off or the
    /// server cannot be reached.
    async fn final_snapshot(&mut self) -> Option<String> {
        if self.0.every.is_zero() {
            return None;
        }
        let client = self.0.connected().await?;
        let written = async {
            snapshot_sequences(client).await?;
            current_wal_lsn(client).await
        }
        .await;
        match written {
            Ok(lsn) => Some(lsn),
            Err(e) => {
                tracing::warn!(
                    "could not snapshot sequences at the stop: {}",
                    crate::error::describe_pg_error(&e)
                );
                None
            }
        }
    }
}

/// Writes every sequence's value into the stream; returns how many.
async fn snapshot_sequences(client: &Client) -> std::result::Result<i32, tokio_postgres::Error> {
    Ok(client
        .query_one("SELECT decoder_sql.snapshot_sequences()", &[])
        .await?
        .get(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(super) fn lsn(s: &str) -> Lsn {
        s.parse().unwrap()
    }

    #[test]
    fn failure_messages_are_one_bounded_line() {
        let e = Error::Tool {
            program: "pg_recvlogical".into(),
            status: "exit code 1".into(),
            stderr_tail: "pg_recvlogical: error: ERROR: no usable replica identity\n\
                          pg_recvlogical: error: ERROR: no usable replica identity\n"
                .into(),
        };
        assert_eq!(
            one_message(&e),
            "pg_recvlogical failed (exit code 1): | pg_recvlogical: error: ERROR: no usable replica identity"
        );
        let long = Error::Invalid("x".repeat(5000));
        assert_eq!(one_message(&long).chars().count(), 2001);
    }

    #[test]
    fn gaps_are_confirmations_nothing_explains() {
        let held = lsn("0/2000");
        // Confirmed up to what the repository holds, or less: no gap.
        assert!(!has_gap(lsn("0/2000"), held, None, None));
        assert!(!has_gap(lsn("0/1000"), held, None, None));
        // Past it, with nothing to explain it: changes were confirmed and lost.
        assert!(has_gap(lsn("0/2100"), held, None, None));
        // Inside a transaction cut short on disk: the server sends it again.
        assert!(!has_gap(lsn("0/2100"), held, Some(lsn("0/2200")), None));
        // ... but not once its commit was confirmed.
        assert!(has_gap(lsn("0/2200"), held, Some(lsn("0/2200")), None));
        // Confirmed by keepalives at the end of a clean --catch-up.
        assert!(!has_gap(lsn("0/3000"), held, None, Some(lsn("0/3000"))));
        assert!(has_gap(lsn("0/3001"), held, None, Some(lsn("0/3000"))));
    }
}
