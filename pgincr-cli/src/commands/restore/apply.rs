//! Applying the change stream: transactions in stream order through one session bound to the
//! restore's replication origin, several per round trip.
//!
//! Every transaction takes a transaction id and records its end LSN in the origin as it
//! commits, so the origin always says exactly which transactions are in the target — also
//! for a transaction that changes nothing there, which would otherwise commit without a
//! commit record and leave the origin behind. A failure is located from that: the first
//! queued transaction past the origin's progress is the one that failed.

use super::origin;
use super::plan::{Selection, Verdict};
use super::report::{ApplyStats, Rejects};
use super::session;
use crate::cli::OnError;
use crate::error::describe_pg_error;
use crate::segment::{Event, Location, Parser, StreamReader, Txn};
use crate::{Error, Result, progress};
use sqlgen::lsn::Lsn;
use sqlgen::txn::format_pg_timestamp;
use std::path::PathBuf;
use std::time::Instant;
use tokio_postgres::Client;
use tokio_postgres::error::{ErrorPosition, SqlState};

/// How the stream is applied.
pub struct ApplyOptions {
    pub batch_size: u64,
    pub on_error: OnError,
    pub rejects: Option<Rejects>,
    pub server_version_num: i32,
}

/// A transaction queued in the current batch.
struct Queued {
    xid: u32,
    end_lsn: Lsn,
    commit_time: i64,
    begin: Location,
    /// The transaction as the stream has it (for the reject file).
    text: String,
    /// Byte range in the batch text.
    start: usize,
    end: usize,
    /// A stand-in that only moves the origin past a transaction left out.
    skipped: bool,
}

struct Applier<'a> {
    client: &'a Client,
    origin: &'a str,
    options: ApplyOptions,
    stats: ApplyStats,
    batch: String,
    queued: Vec<Queued>,
}

pub async fn apply_changes(
    client: &Client,
    origin_name: &str,
    selection: Selection,
    files: Vec<(PathBuf, String)>,
    options: ApplyOptions,
) -> Result<ApplyStats> {
    client
        .batch_execute(&session::stream_settings(options.server_version_num))
        .await?;
    origin::setup_session(client, origin_name).await?;
    let mut applier = Applier {
        client,
        origin: origin_name,
        options,
        stats: ApplyStats::default(),
        batch: String::new(),
        queued: Vec::new(),
    };
    let result = applier.apply_stream(selection, files).await;
    if result.is_err() {
        // Release the origin now rather than when the backend exits, so that a retry started
        // right after this one does not find it still held.
        let _ = client
            .batch_execute("ROLLBACK; SELECT pg_catalog.pg_replication_origin_session_reset()")
            .await;
    }
    result.map(|()| applier.stats)
}

impl Applier<'_> {
    async fn apply_stream(
        &mut self,
        mut selection: Selection,
        files: Vec<(PathBuf, String)>,
    ) -> Result<()> {
        let total: u64 = files
            .iter()
            .map(|(p, _)| std::fs::metadata(p).map_or(0, |m| m.len()))
            .sum();
        let bar = progress::bytes_bar(total);
        let started = Instant::now();
        let mut reader = StreamReader::new(files);
        let mut parser = Parser::new(true);
        let mut stop = false;
        // The first line of the current transaction that is not valid UTF-8.
        let mut not_utf8: Option<Location> = None;
        while !stop {
            let Some((line, at, lossy)) =
                tokio::task::block_in_place(|| reader.next_line_checked())?
            else {
                break;
            };
            if lossy && not_utf8.is_none() {
                not_utf8 = Some(at.clone());
            }
            let event = parser.feed(line, at).map_err(Error::Repository)?;
            if matches!(event, Some(Event::Superseded { .. })) {
                not_utf8 = None;
            }
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
                    let verdict = selection.judge(&txn.info);
                    if verdict != Verdict::Apply {
                        not_utf8 = None;
                    }
                    match verdict {
                        Verdict::InBase => self.stats.in_base += 1,
                        Verdict::AlreadyApplied => self.stats.already_applied += 1,
                        Verdict::PastTarget => {
                            stop = true;
                            self.stats.reached_target = true;
                        }
                        Verdict::Skip => {
                            self.stats.skipped_on_request += 1;
                            if let Some(r) = &mut self.options.rejects {
                                r.write(
                                    &txn,
                                    "left out at the operator's request (--skip-transaction)",
                                )?;
                            }
                            self.queue(&txn, true);
                        }
                        Verdict::Apply if not_utf8.is_some() => {
                            // Its text was read with U+FFFD in place of the bad bytes: applying
                            // it would store something else. The segment keeps the bytes.
                            let at = not_utf8.take().expect("checked");
                            let why = format!(
                                "{at}: holds bytes that are not valid UTF-8 (a database in another \
                                 encoding, or a value that bypassed encoding checks); pgincr \
                                 restore sends UTF-8 and cannot apply it exactly: apply it from the \
                                 segment file with psql and client_encoding set to the database's"
                            );
                            match &mut self.options.rejects {
                                Some(r) if self.options.on_error == OnError::Skip => {
                                    r.write(&txn, &why)?;
                                    self.stats.rejected += 1;
                                    self.queue(&txn, true);
                                }
                                _ => return Err(Error::Repository(why)),
                            }
                        }
                        Verdict::Apply => {
                            self.stats.sequences.observe(&txn.text);
                            self.stats.applied += 1;
                            self.stats.bytes += txn.text.len() as u64;
                            self.queue(&txn, false);
                        }
                    }
                    if self.batch.len() as u64 >= self.options.batch_size {
                        self.send_batch().await?;
                        bar.set_position(reader.bytes_read.min(total));
                        let secs = started.elapsed().as_secs_f64().max(0.001);
                        bar.set_message(format!(
                            "{} txn ({:.0}/s)",
                            self.stats.applied,
                            self.stats.applied as f64 / secs
                        ));
                    }
                }
            }
        }
        if !self.batch.is_empty() {
            self.send_batch().await?;
        }
        bar.finish_and_clear();
        self.stats.incomplete_tail = !stop && parser.in_transaction();
        self.stats.elapsed_secs = started.elapsed().as_secs_f64();
        Ok(())
    }

    fn queue(&mut self, txn: &Txn, skipped: bool) {
        let start = self.batch.len();
        if skipped {
            push_origin_stand_in(&mut self.batch, txn.info.end_lsn, txn.info.commit_time);
        } else {
            push_with_origin_progress(&mut self.batch, txn);
        }
        self.queued.push(Queued {
            xid: txn.info.xid,
            end_lsn: txn.info.end_lsn,
            commit_time: txn.info.commit_time,
            begin: txn.begin.clone(),
            text: if skipped {
                String::new()
            } else {
                txn.text.clone()
            },
            start,
            end: self.batch.len(),
            skipped,
        });
    }

    /// Sends the queued transactions. With `--on-error=skip`, a failing transaction goes to
    /// the reject file, the origin moves past it, and the rest of the batch is sent again.
    async fn send_batch(&mut self) -> Result<()> {
        loop {
            let Err(err) = self.client.batch_execute(&self.batch).await else {
                if let Some(q) = self.queued.iter().rev().find(|q| !q.skipped) {
                    self.stats.last = Some((q.end_lsn, q.commit_time));
                }
                self.batch.clear();
                self.queued.clear();
                return Ok(());
            };
            // Transactions before the failing one committed; the origin says how far.
            let _ = self.client.batch_execute("ROLLBACK").await;
            let done = origin::progress(self.client, self.origin)
                .await
                .ok()
                .flatten()
                .unwrap_or_default();
            let failed = self
                .queued
                .iter()
                .position(|q| q.end_lsn > done)
                .unwrap_or(0);
            let location = self.locate(failed, &err).await;
            let q = &self.queued[failed];
            let message = describe_pg_error(&err);
            if self.options.on_error == OnError::Stop || q.skipped {
                return Err(Error::Apply {
                    location: location.to_string(),
                    end_lsn: q.end_lsn.to_string(),
                    message,
                });
            }
            tracing::warn!(
                "transaction xid {} (end_lsn {}, {location}) not applied: {message}",
                q.xid,
                q.end_lsn
            );
            if let Some(r) = &mut self.options.rejects {
                r.write_failed(q.xid, q.end_lsn, &location, &q.text, &message)?;
            }
            self.stats.applied -= 1;
            self.stats.bytes -= q.text.len() as u64;
            self.stats.rejected += 1;
            if let Some(last) = self.queued[..failed].iter().rev().find(|q| !q.skipped) {
                self.stats.last = Some((last.end_lsn, last.commit_time));
            }
            self.resend_after(failed);
        }
    }

    /// Rebuilds the batch from the failed transaction on: a stand-in for it, then the rest.
    fn resend_after(&mut self, failed: usize) {
        let old = std::mem::take(&mut self.batch);
        let mut queued = std::mem::take(&mut self.queued);
        let rest = queued.split_off(failed + 1);
        let q = queued.pop().expect("the failed transaction is queued");
        push_origin_stand_in(&mut self.batch, q.end_lsn, q.commit_time);
        self.queued.push(Queued {
            text: String::new(),
            start: 0,
            end: self.batch.len(),
            skipped: true,
            ..q
        });
        for r in rest {
            let start = self.batch.len();
            self.batch.push_str(&old[r.start..r.end]);
            self.queued.push(Queued {
                start,
                end: self.batch.len(),
                ..r
            });
        }
    }

    /// Where the failing transaction failed: the statement the server points at, or the one
    /// that fails again when the transaction is rerun statement by statement.
    async fn locate(&self, failed: usize, err: &tokio_postgres::Error) -> Location {
        let q = &self.queued[failed];
        let mut location = q.begin.clone();
        if let Some(ErrorPosition::Original(pos)) = err.as_db_error().and_then(|d| d.position()) {
            let byte = self
                .batch
                .char_indices()
                .nth((*pos as usize).saturating_sub(1))
                .map_or(self.batch.len(), |(i, _)| i);
            if byte >= q.start && byte <= q.end {
                location.line += self.batch[q.start..byte].matches('\n').count() as u64;
            }
        } else if let Some(offset) =
            locate_failure(self.client, &self.batch[q.start..q.end], err.code()).await
        {
            location.line += offset;
        }
        location
    }
}

/// Appends the transaction, recording its end LSN and commit time in the session's
/// replication origin just before its COMMIT. The transaction id it takes makes the COMMIT
/// write a commit record, which carries the origin's progress, even when nothing changed.
fn push_with_origin_progress(batch: &mut String, txn: &Txn) {
    let body = txn.text.trim_end_matches('\n');
    let (before_commit, commit) = body.rsplit_once('\n').unwrap_or(("", body));
    batch.push_str(before_commit);
    batch.push('\n');
    push_origin_progress(batch, txn.info.end_lsn, txn.info.commit_time);
    batch.push_str(commit);
    batch.push('\n');
}

fn push_origin_progress(batch: &mut String, end_lsn: Lsn, commit_time: i64) {
    batch.push_str(&format!(
        "SELECT pg_catalog.pg_current_xact_id(), pg_catalog.pg_replication_origin_xact_setup('{}', '{}');\n",
        end_lsn,
        format_pg_timestamp(commit_time)
    ));
}

/// An empty transaction standing in for one left out, so the origin moves past it.
fn push_origin_stand_in(batch: &mut String, end_lsn: Lsn, commit_time: i64) {
    batch.push_str("BEGIN;\n");
    push_origin_progress(batch, end_lsn, commit_time);
    batch.push_str("COMMIT;\n");
}

/// Finds the line of a transaction that fails with `code`, by running it again statement
/// by statement (one per line, as decoder_sql writes DML) inside a transaction that is
/// rolled back. `None` when the failure does not show up that way.
async fn locate_failure(client: &Client, txn_text: &str, code: Option<&SqlState>) -> Option<u64> {
    let code = code?;
    client.batch_execute("BEGIN").await.ok()?;
    let mut found = None;
    let mut statement = String::new();
    let mut first_line = 0u64;
    for (i, line) in txn_text.lines().enumerate().skip(1) {
        if line.starts_with("COMMIT;")
            || line.starts_with("SELECT pg_catalog.pg_current_xact_id(), pg_catalog.pg_replication_origin_xact_setup(")
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origin_progress_goes_before_commit() {
        let txn = Txn {
            info: sqlgen::txn::parse_begin(
                "BEGIN; -- xid=5 commit_lsn=0/10 end_lsn=0/38 commit_time=2026-01-01T00:00:00.000000Z",
            )
            .unwrap(),
            text: "BEGIN; -- x\nINSERT INTO t VALUES (1);\nCOMMIT; -- xid=5 end_lsn=0/38\n".into(),
            begin: Location {
                file: "f".into(),
                line: 1,
            },
        };
        let mut batch = String::new();
        push_with_origin_progress(&mut batch, &txn);
        assert_eq!(
            batch,
            "BEGIN; -- x\nINSERT INTO t VALUES (1);\nSELECT pg_catalog.pg_current_xact_id(), pg_catalog.pg_replication_origin_xact_setup('0/38', '2026-01-01T00:00:00.000000Z');\nCOMMIT; -- xid=5 end_lsn=0/38\n"
        );
    }
}
