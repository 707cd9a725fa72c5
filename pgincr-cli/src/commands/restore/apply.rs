//! Applying the change stream: segments are read, decompressed and sent statement by
//! statement through one session bound to the restore's replication origin, so memory stays
//! the same whatever the size of a transaction.
//!
//! * Statements are gathered into chunks of up to `--batch-size` bytes, one round trip each;
//!   a chunk may hold many small transactions or a piece of a large one (the server keeps
//!   that transaction open between chunks).
//! * A run of INSERTs into one table with one column list (`--copy-min-rows` or more) goes
//!   through `COPY … FROM STDIN` instead ([`sqlgen::copy`]); the stored values are the same.
//! * Every transaction takes a transaction id and records its end LSN in the origin as it
//!   commits, so the origin always says exactly which transactions are in the target, also
//!   for a transaction that changes nothing there.
//! * A transaction whose end turns out to be missing (cut short when pg_recvlogical stopped,
//!   and sent again in full later) is rolled back when that shows, not held in memory to
//!   decide first.
//! * A failure is located from the server's count of statements that completed (or a COPY's
//!   row number); a transaction left out is read again from the segment for the reject file.

use super::globals_replay::GlobalsReplay;
use super::origin;
use super::plan::{Selection, Verdict};
use super::report::{ApplyStats, Rejects};
use super::session;
use crate::cli::OnError;
use crate::error::describe_pg_error;
use crate::repo::SqlSource;
use crate::segment::{LineShape, Location, Parser, Step, StreamReader};
use crate::{Error, Result, progress};
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use sqlgen::copy::{Insert, copy_statement, head_table, push_copy_row, split_insert};
use sqlgen::lsn::Lsn;
use sqlgen::txn::{TxnInfo, format_pg_timestamp};
use std::collections::HashMap;
use std::pin::Pin;
use std::time::Instant;
use tokio_postgres::error::ErrorPosition;
use tokio_postgres::{Client, CopyInSink, SimpleQueryMessage};

/// How the stream is applied.
pub struct ApplyOptions {
    pub batch_size: u64,
    pub on_error: OnError,
    pub rejects: Option<Rejects>,
    pub server_version_num: i32,
    /// Runs of at least this many INSERTs into one table go through COPY (0: never).
    pub copy_min_rows: u64,
    /// The source database's encoding (the segments hold text in it).
    pub source_encoding: String,
    /// `--tablespace-map`: tablespaces the stream creates move from OLD to NEW.
    pub tablespace_map: Vec<(String, String)>,
}

/// COPY data is handed to the connection in pieces of about this size.
const COPY_PIECE: usize = 256 << 10;

/// A line of the stream, cheap to keep per statement: its file (index into the stream's
/// files) and line number.
#[derive(Debug, Clone, Copy)]
struct Pos {
    file: usize,
    line: u64,
}

/// A statement in the chunk: where it came from and where its text begins.
#[derive(Debug, Clone, Copy)]
struct Statement {
    pos: Pos,
    offset: usize,
}

/// A transaction's share of the chunk.
#[derive(Debug, Clone)]
struct Part {
    xid: u32,
    end_lsn: Lsn,
    commit_time: i64,
    begin: Location,
    text_start: usize,
    stmt_start: usize,
    /// Its COMMIT is in the chunk.
    complete: bool,
    /// An empty transaction that only moves the origin past one left out.
    stand_in: bool,
    /// Stream bytes of a complete applied transaction (taken back from the statistics if
    /// it fails).
    bytes: u64,
}

/// SQL waiting to be sent in one round trip.
#[derive(Debug, Default)]
struct Chunk {
    text: String,
    statements: Vec<Statement>,
    parts: Vec<Part>,
}

/// The transaction being read.
struct Open {
    info: TxnInfo,
    begin: Location,
    begin_pos: Pos,
    verdict: Verdict,
    /// The selection's progress before this transaction was judged, restored if it turns
    /// out to be cut short (its full copy comes later and must be judged the same way).
    applied_upto_before: Lsn,
    /// Some of its statements reached the server (an earlier chunk or a COPY).
    sent: bool,
    /// It failed and was left out: its remaining lines are dropped.
    rejected: bool,
    bytes: u64,
    /// The first line of a statement spanning lines, until the statement ends.
    statement_start: Option<Pos>,
}

/// Consecutive INSERTs with one head (table and column list).
#[derive(Default)]
enum Run {
    #[default]
    None,
    /// Sent as SQL so far (in the chunk from `text_start`): not yet long enough for COPY.
    Candidate {
        head: String,
        rows: u64,
        text_start: usize,
        stmt_start: usize,
    },
    /// Rows with this head go into an open COPY.
    Copying(Box<CopyRun>),
    /// Rows with this head stay INSERTs (the table must not be loaded with COPY).
    Sql { head: String },
}

struct CopyRun {
    head: String,
    sink: Pin<Box<CopyInSink<Bytes>>>,
    buf: Vec<u8>,
    /// Where the rows came from: the first line and length of each stretch of consecutive
    /// lines, so that a COPY's row number leads back to its line.
    spans: Vec<(Pos, u64)>,
}

impl CopyRun {
    fn note_row(&mut self, pos: Pos) {
        if let Some((first, n)) = self.spans.last_mut()
            && first.file == pos.file
            && first.line + *n == pos.line
        {
            *n += 1;
            return;
        }
        self.spans.push((pos, 1));
    }
}

/// The line of row `row` (1-based, as COPY counts) of a COPY fed from `spans`.
fn row_pos(spans: &[(Pos, u64)], row: u64) -> Option<Pos> {
    let mut before = 0;
    for (first, n) in spans {
        if row <= before + n {
            return Some(Pos {
                file: first.file,
                line: first.line + (row - before - 1),
            });
        }
        before += n;
    }
    None
}

/// A statement spanning lines, gathered as bytes while it is read, in a database whose
/// encoding is not UTF-8: if any of its bytes is not ASCII it is sent as bytes.
struct EncodedStatement {
    offset: usize,
    stmt_index: usize,
    pos: Pos,
    bytes: Vec<u8>,
    not_ascii: bool,
}

struct Applier<'a> {
    client: &'a Client,
    options: ApplyOptions,
    stats: ApplyStats,
    /// The stream's files (path, name), read again for the reject file.
    files: Vec<(SqlSource, String)>,
    chunk: Chunk,
    open: Option<Open>,
    run: Run,
    /// Whether COPY may load a table, by the table's name as the stream writes it; emptied
    /// whenever a statement other than DML comes by (it may add a trigger or a rule).
    copy_allowed: HashMap<String, bool>,
    scratch: Vec<u8>,
    /// The last line read ends inside a statement: the chunk must not be sent yet (a
    /// statement spanning lines is sent whole).
    inside_statement: bool,
    /// The source's encoding when it is not UTF-8: statements with other bytes than ASCII go
    /// to the server as the file's bytes, converted by the server itself.
    encoding: Option<String>,
    gathering: Option<EncodedStatement>,
    /// A statement other than decoder_sql's DML ran since the search_path was last set to
    /// [`SAFE_SEARCH_PATH`] (a DDL's captured search_path, or anything a message carried).
    path_dirty: bool,
    /// The stream's later globals snapshots, applied again at their place.
    globals: Option<&'a mut GlobalsReplay>,
}

pub async fn apply_changes(
    client: &Client,
    origin_name: &str,
    selection: Selection,
    files: Vec<(SqlSource, String)>,
    options: ApplyOptions,
    globals: Option<&mut GlobalsReplay>,
) -> Result<ApplyStats> {
    client
        .batch_execute(&session::stream_settings(options.server_version_num))
        .await?;
    let encoding = (!options.source_encoding.eq_ignore_ascii_case("UTF8"))
        .then(|| options.source_encoding.clone());
    if encoding.is_some() {
        // Before the origin is bound: this does not move it.
        client.batch_execute(CREATE_ENCODED_STATEMENT_TABLE).await?;
    }
    origin::setup_session(client, origin_name).await?;
    let mut applier = Applier {
        client,
        options,
        stats: ApplyStats::default(),
        files,
        chunk: Chunk::default(),
        open: None,
        run: Run::None,
        copy_allowed: HashMap::new(),
        scratch: Vec::new(),
        inside_statement: false,
        encoding: None,
        gathering: None,
        path_dirty: false,
        globals,
    };
    applier.encoding = encoding;
    let result = applier.apply_stream(selection).await;
    if result.is_err() {
        // An open COPY is aborted first; then release the origin now rather than when the
        // backend exits, so that a retry started right after this one does not find it held.
        applier.run = Run::None;
        let _ = client
            .batch_execute("ROLLBACK; SELECT pg_catalog.pg_replication_origin_session_reset()")
            .await;
    }
    result.map(|()| applier.stats)
}

impl Applier<'_> {
    async fn apply_stream(&mut self, mut selection: Selection) -> Result<()> {
        let total: u64 = self.files.iter().map(|(f, _)| f.stored_len()).sum();
        let bar = progress::bytes_bar(total);
        let started = Instant::now();
        let mut reader = StreamReader::new(self.files.clone());
        let mut parser = Parser::new(false);
        let mut shown = 0u64;
        let mut file_index = 0usize;
        let mut stop = false;
        while let Some(read) = tokio::task::block_in_place(|| reader.next_line_raw())? {
            let (line, raw, at, lossy) = (read.text, read.bytes, read.at, read.not_utf8);
            if self
                .files
                .get(file_index)
                .is_none_or(|(_, n)| *n != at.file)
            {
                file_index = self
                    .files
                    .iter()
                    .position(|(_, n)| *n == at.file)
                    .unwrap_or_default();
            }
            let pos = Pos {
                file: file_index,
                line: at.line,
            };
            let content = line.trim_end_matches(['\n', '\r']);
            match parser.step(line, &at).map_err(Error::Repository)? {
                Step::Outside => {}
                Step::OutsideStatement { lsn } => {
                    self.outside_statement(content, lsn, &at).await?;
                }
                Step::Stray => {
                    tracing::warn!(
                        "{at}: statement outside any transaction not applied: {content}"
                    );
                }
                Step::OrphanCommit { end_lsn } => {
                    if end_lsn > selection.applied_upto {
                        return Err(Error::Repository(format!(
                            "{at}: the transaction ending at {end_lsn} began in a segment that is missing"
                        )));
                    }
                }
                Step::Begin { info, superseded } => {
                    self.inside_statement = false;
                    if superseded.is_some() {
                        self.drop_open(&mut selection).await?;
                    }
                    let applied_upto_before = selection.applied_upto;
                    let verdict = selection.judge(&info);
                    if verdict == Verdict::PastTarget {
                        stop = true;
                        self.stats.reached_target = true;
                        break;
                    }
                    if let Some(g) = self.globals.as_deref_mut() {
                        g.transaction_begins();
                    }
                    if verdict == Verdict::Apply
                        && self
                            .globals
                            .as_ref()
                            .is_some_and(|g| g.due_before(info.end_lsn))
                    {
                        self.send_chunk().await?;
                        if let Some(g) = self.globals.as_deref_mut() {
                            g.apply_due(Some(info.end_lsn)).await?;
                        }
                    }
                    self.open = Some(Open {
                        info,
                        begin: at.clone(),
                        begin_pos: pos,
                        verdict,
                        applied_upto_before,
                        sent: false,
                        rejected: false,
                        bytes: line.len() as u64,
                        statement_start: None,
                    });
                    if verdict == Verdict::Apply {
                        self.stats.sequences.observe_line(content);
                        self.chunk.parts.push(Part {
                            xid: info.xid,
                            end_lsn: info.end_lsn,
                            commit_time: info.commit_time,
                            begin: at.clone(),
                            text_start: self.chunk.text.len(),
                            stmt_start: self.chunk.statements.len(),
                            complete: false,
                            stand_in: false,
                            bytes: 0,
                        });
                        self.push_statement(content, pos);
                    }
                }
                Step::Body(shape) => {
                    self.inside_statement = shape.ends_inside_statement;
                    if self.applying() {
                        if let Some(g) = self.globals.as_deref_mut() {
                            g.watch_line(content, shape.starts_statement).await?;
                        }
                        if self.encoding.is_some() {
                            self.encoded_body_line(content, raw, pos, shape).await?;
                        } else if lossy {
                            self.not_utf8(&at).await?;
                        } else {
                            self.body_line(content, pos, shape).await?;
                        }
                    }
                }
                Step::Commit => {
                    self.inside_statement = false;
                    self.commit_line(content, pos).await?;
                }
            }
            if !self.inside_statement && self.chunk.text.len() as u64 >= self.options.batch_size {
                self.send_chunk().await?;
            }
            if reader.bytes_read - shown >= 1 << 20 {
                shown = reader.bytes_read;
                bar.set_position(shown.min(total));
                let secs = started.elapsed().as_secs_f64().max(0.001);
                bar.set_message(format!(
                    "{} txn ({:.0}/s)",
                    self.stats.applied,
                    self.stats.applied as f64 / secs
                ));
            }
        }
        if !stop && self.open.is_some() {
            // The newest transaction has no COMMIT yet (the open segment's tail).
            self.drop_open(&mut selection).await?;
            self.stats.incomplete_tail = true;
        }
        self.send_chunk().await?;
        if let Some(g) = self.globals.as_deref_mut() {
            g.apply_due(None).await?;
        }
        bar.finish_and_clear();
        self.stats.elapsed_secs = started.elapsed().as_secs_f64();
        Ok(())
    }

    /// A statement that cannot run inside a transaction (CREATE TABLESPACE), run on its own
    /// once everything before it is applied. A tablespace the target already has is left as
    /// it is, as the globals snapshots leave it.
    async fn outside_statement(&mut self, content: &str, lsn: Lsn, at: &Location) -> Result<()> {
        let Some((statement, _)) = sqlgen::txn::parse_outside(content) else {
            return Ok(());
        };
        self.send_chunk().await?;
        let statement =
            super::base::map_tablespace_locations(statement, &self.options.tablespace_map);
        let statement = statement.trim();
        // An in-place tablespace (a directory inside the data directory) needs this
        // developer setting, as it did on the source.
        let in_place = statement.contains(" LOCATION ''");
        if in_place {
            self.client
                .batch_execute("SET allow_in_place_tablespaces = on")
                .await?;
        }
        let result = self.client.batch_execute(statement).await;
        if in_place {
            self.client
                .batch_execute("RESET allow_in_place_tablespaces")
                .await?;
        }
        match result {
            Ok(()) => {
                self.stats.outside_statements += 1;
                tracing::info!("{at}: {statement}");
                Ok(())
            }
            Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::DUPLICATE_OBJECT) => {
                tracing::info!("{at}: already present, left as it is: {statement}");
                Ok(())
            }
            Err(e) => Err(Error::Apply {
                location: at.to_string(),
                end_lsn: lsn.to_string(),
                message: format!(
                    "{}; {statement} (a tablespace's directory can be moved with \
                     --tablespace-map OLD=NEW)",
                    crate::error::describe_pg_error(&e)
                ),
            }),
        }
    }

    /// Whether the open transaction's lines are being applied.
    fn applying(&self) -> bool {
        self.open
            .as_ref()
            .is_some_and(|o| o.verdict == Verdict::Apply && !o.rejected)
    }

    /// Appends a one-line statement of the open transaction to the chunk.
    fn push_statement(&mut self, content: &str, pos: Pos) {
        self.chunk.statements.push(Statement {
            pos,
            offset: self.chunk.text.len(),
        });
        self.chunk.text.push_str(content);
        self.chunk.text.push('\n');
    }

    async fn body_line(&mut self, content: &str, pos: Pos, shape: LineShape) -> Result<()> {
        let LineShape {
            starts_statement,
            statements_ended,
            ends_inside_statement,
        } = shape;
        let open = self.open.as_mut().expect("applying");
        open.bytes += content.len() as u64 + 1;
        self.stats.sequences.observe_line(content);
        if starts_statement {
            self.track_search_path(content, pos);
        }
        if self.options.copy_min_rows > 0
            && starts_statement
            && statements_ended == 1
            && let Some(insert) = split_insert(content)
        {
            self.scratch.clear();
            if push_copy_row(&mut self.scratch, insert.values).is_some() {
                return self.insert_line(insert, content, pos).await;
            }
        }
        self.end_run().await?;
        if !self.applying() {
            return Ok(()); // the COPY that ended failed and the transaction was left out
        }
        // Anything but decoder_sql's changes may add a trigger or a rule.
        let decoded_change = starts_statement && is_decoded_dml(content);
        let code = !content.trim().is_empty() && !content.trim_start().starts_with("--");
        if code && !decoded_change {
            self.copy_allowed.clear();
        }
        // One entry per statement that ends here, at the line where it began.
        let offset = self.chunk.text.len();
        let open = self.open.as_mut().expect("applying");
        for i in 0..statements_ended {
            let first = if i == 0 {
                open.statement_start.take().unwrap_or(pos)
            } else {
                pos
            };
            self.chunk.statements.push(Statement { pos: first, offset });
        }
        if ends_inside_statement && open.statement_start.is_none() {
            open.statement_start = Some(pos);
        }
        self.chunk.text.push_str(content);
        self.chunk.text.push('\n');
        Ok(())
    }

    /// A line of a database whose encoding is not UTF-8. ASCII goes the usual way; a
    /// statement with other bytes is sent as the file's bytes.
    async fn encoded_body_line(
        &mut self,
        content: &str,
        raw: &[u8],
        pos: Pos,
        shape: LineShape,
    ) -> Result<()> {
        let raw = raw.strip_suffix(b"\n").unwrap_or(raw);
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        let not_ascii = !raw.is_ascii();
        let begins_long_statement = shape.starts_statement && shape.ends_inside_statement;
        if self.gathering.is_none() {
            if begins_long_statement {
                self.gathering = Some(EncodedStatement {
                    offset: self.chunk.text.len(),
                    stmt_index: self.chunk.statements.len(),
                    pos,
                    bytes: raw.to_vec(),
                    not_ascii,
                });
                return self.body_line(content, pos, shape).await;
            }
            if !not_ascii {
                return self.body_line(content, pos, shape).await;
            }
            // A statement on one line with bytes that are not ASCII.
            self.end_run().await?;
            if !self.applying() {
                return Ok(());
            }
            if shape.starts_statement {
                self.track_search_path(content, pos);
            }
            let open = self.open.as_mut().expect("applying");
            open.bytes += raw.len() as u64 + 1;
            self.stats.sequences.observe_line(content);
            return self.execute_encoded(raw, pos).await;
        }
        let gathered = self.gathering.as_mut().expect("checked");
        gathered.bytes.push(b'\n');
        gathered.bytes.extend_from_slice(raw);
        gathered.not_ascii |= not_ascii;
        self.body_line(content, pos, shape).await?;
        if shape.ends_inside_statement {
            return Ok(());
        }
        let gathered = self.gathering.take().expect("checked");
        if gathered.not_ascii && self.applying() {
            // The text sent so far for it was read as UTF-8: its bytes go instead.
            self.chunk.text.truncate(gathered.offset);
            self.chunk.statements.truncate(gathered.stmt_index);
            self.execute_encoded(&gathered.bytes, gathered.pos).await?;
        }
        Ok(())
    }

    /// Runs one statement given as bytes in the source's encoding: what came before it is
    /// sent, the bytes go into a temporary table through COPY with `client_encoding` set to
    /// that encoding (so the server converts them exactly as it converts its own input), and
    /// a DO block runs the statement from there.
    async fn execute_encoded(&mut self, statement: &[u8], pos: Pos) -> Result<()> {
        self.send_chunk().await?;
        if !self.applying() {
            return Ok(());
        }
        let encoding = self.encoding.clone().unwrap_or_default();
        let mut data = Vec::with_capacity(statement.len() + 16);
        for &b in statement {
            match b {
                b'\\' => data.extend_from_slice(b"\\\\"),
                b'\n' => data.extend_from_slice(b"\\n"),
                b'\r' => data.extend_from_slice(b"\\r"),
                b'\t' => data.extend_from_slice(b"\\t"),
                b => data.push(b),
            }
        }
        data.push(b'\n');
        let client = self.client;
        let result = async {
            client
                .batch_execute(&format!(
                    "SET client_encoding = {}",
                    sqlgen::quote_literal(&encoding)
                ))
                .await?;
            let sink = client
                .copy_in::<_, Bytes>("COPY pg_temp.pgincr_encoded_statement (s) FROM STDIN")
                .await?;
            let mut sink = std::pin::pin!(sink);
            sink.send(Bytes::from(data)).await?;
            sink.as_mut().finish().await?;
            client.batch_execute("SET client_encoding = 'UTF8'").await?;
            client.batch_execute(RUN_ENCODED_STATEMENT).await
        }
        .await;
        if let Some(open) = &mut self.open {
            open.sent = true;
        }
        match result {
            Ok(()) => Ok(()),
            Err(e) if e.as_db_error().is_some() => {
                // The rollback also undoes the client_encoding setting.
                let _ = self.rollback().await;
                if let Some(open) = &mut self.open {
                    open.sent = false;
                }
                let location = self.location(pos);
                self.reject_open(location, describe_pg_error(&e)).await
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Rolls back the transaction open on the server; whatever search_path it set or reset
    /// is undone with it, so the next DML sets the safe one again.
    async fn rollback(&mut self) -> std::result::Result<(), tokio_postgres::Error> {
        self.path_dirty = true;
        self.client.batch_execute("ROLLBACK").await
    }

    /// Keeps every captured search_path to its own statement: decoder_sql's DML runs with
    /// [`SAFE_SEARCH_PATH`] (so a path set by one role's DDL, or by a forged message, cannot
    /// lead another role's `WHERE id = 2` to an operator of its choosing), anything else marks
    /// the path as changed.
    fn track_search_path(&mut self, content: &str, pos: Pos) {
        let trimmed = content.trim_start();
        if trimmed.is_empty() || trimmed.starts_with("--") {
            return;
        }
        if !is_decoded_dml(content) {
            self.path_dirty = true;
        } else if self.path_dirty {
            self.path_dirty = false;
            self.push_statement(SAFE_SEARCH_PATH, pos);
        }
    }

    /// An INSERT that COPY could load (its row is in `self.scratch`).
    async fn insert_line(&mut self, insert: Insert<'_>, content: &str, pos: Pos) -> Result<()> {
        match &mut self.run {
            Run::Copying(copy) if copy.head == insert.head => {
                copy.buf.extend_from_slice(&self.scratch);
                copy.note_row(pos);
                if copy.buf.len() >= COPY_PIECE {
                    let piece = Bytes::from(std::mem::take(&mut copy.buf));
                    if let Err(e) = copy.sink.send(piece).await {
                        self.copy_failed(e).await?;
                    }
                }
                return Ok(());
            }
            Run::Sql { head } if head == insert.head => {
                self.push_statement(content, pos);
                return Ok(());
            }
            Run::Candidate { head, rows, .. } if head == insert.head => {
                *rows += 1;
                let long_enough = *rows >= self.options.copy_min_rows;
                self.push_statement(content, pos);
                if long_enough {
                    self.start_copy().await?;
                }
                return Ok(());
            }
            _ => {}
        }
        self.end_run().await?;
        if !self.applying() {
            return Ok(());
        }
        let head = insert.head.to_owned();
        let refused = head_table(&head).is_some_and(|t| self.copy_allowed.get(t) == Some(&false));
        self.run = if refused {
            Run::Sql { head }
        } else {
            Run::Candidate {
                head,
                rows: 1,
                text_start: self.chunk.text.len(),
                stmt_start: self.chunk.statements.len(),
            }
        };
        self.push_statement(content, pos);
        if !refused && self.options.copy_min_rows <= 1 {
            self.start_copy().await?;
        }
        Ok(())
    }

    /// The candidate run is long enough: what came before it is sent, and its rows go into
    /// a COPY if the table allows.
    async fn start_copy(&mut self) -> Result<()> {
        let Run::Candidate {
            head,
            text_start,
            stmt_start,
            ..
        } = std::mem::take(&mut self.run)
        else {
            return Ok(());
        };
        let rows_text = self.chunk.text.split_off(text_start);
        let rows = self.chunk.statements.split_off(stmt_start);
        self.send_chunk().await?;
        if !self.applying() {
            return Ok(()); // the transaction failed in what was sent before the rows
        }
        let table = head_table(&head).unwrap_or_default().to_owned();
        let allowed = match self.copy_allowed.get(&table) {
            Some(a) => *a,
            None => {
                let a = copy_allowed(self.client, &table).await?;
                self.copy_allowed.insert(table, a);
                a
            }
        };
        let statement = copy_statement(&head).filter(|_| allowed);
        let Some(statement) = statement else {
            tracing::debug!(
                "{}: INSERTs, not COPY (the table has triggers or rules that fire during a \
                 restore, or row security)",
                head_table(&head).unwrap_or_default()
            );
            for (row, line) in rows.iter().zip(rows_text.lines()) {
                self.push_statement(line, row.pos);
            }
            self.run = Run::Sql { head };
            return Ok(());
        };
        let mut buf = Vec::with_capacity(COPY_PIECE + (1 << 12));
        for line in rows_text.lines() {
            let values = split_insert(line).map(|i| i.values).unwrap_or_default();
            push_copy_row(&mut buf, values).expect("checked when the row was read");
        }
        let sink = match self.client.copy_in::<_, Bytes>(statement.as_str()).await {
            Ok(sink) => sink,
            Err(e) if e.as_db_error().is_some() => {
                let _ = self.rollback().await;
                if let Some(open) = &mut self.open {
                    open.sent = false;
                }
                let location =
                    self.location(rows.first().map_or(Pos { file: 0, line: 0 }, |r| r.pos));
                return self.reject_open(location, describe_pg_error(&e)).await;
            }
            Err(e) => return Err(e.into()),
        };
        if let Some(open) = &mut self.open {
            open.sent = true;
        }
        let mut copy = CopyRun {
            head,
            sink: Box::pin(sink),
            buf,
            spans: Vec::new(),
        };
        for row in &rows {
            copy.note_row(row.pos);
        }
        self.run = Run::Copying(Box::new(copy));
        Ok(())
    }

    /// Ends the current run of INSERTs: an open COPY is completed.
    async fn end_run(&mut self) -> Result<()> {
        let Run::Copying(mut copy) = std::mem::take(&mut self.run) else {
            return Ok(());
        };
        let piece = Bytes::from(std::mem::take(&mut copy.buf));
        let result = async {
            if !piece.is_empty() {
                copy.sink.send(piece).await?;
            }
            copy.sink.as_mut().finish().await
        }
        .await;
        match result {
            Ok(rows) => {
                self.stats.copied_rows += rows;
                tracing::debug!(
                    "{rows} row(s) loaded with COPY from {}",
                    copy.spans
                        .first()
                        .map_or(String::new(), |(p, _)| self.location(*p).to_string())
                );
                Ok(())
            }
            Err(e) => {
                self.run = Run::Copying(copy);
                self.copy_failed(e).await
            }
        }
    }

    /// A COPY failed: its transaction is the open one.
    async fn copy_failed(&mut self, err: tokio_postgres::Error) -> Result<()> {
        let Run::Copying(copy) = std::mem::take(&mut self.run) else {
            return Err(err.into());
        };
        let row_pos = err
            .as_db_error()
            .and_then(|d| d.where_())
            .and_then(copy_row_number)
            .and_then(|row| row_pos(&copy.spans, row));
        drop(copy); // aborts the COPY if the server still waits for data
        if err.as_db_error().is_none() {
            return Err(err.into()); // the connection, not the data
        }
        let _ = self.rollback().await;
        if let Some(open) = &mut self.open {
            open.sent = false;
        }
        let location = match row_pos {
            Some(p) => self.location(p),
            None => self
                .open
                .as_ref()
                .map(|o| o.begin.clone())
                .unwrap_or_else(|| Location {
                    file: String::new(),
                    line: 0,
                }),
        };
        self.reject_open(location, describe_pg_error(&err)).await
    }

    /// A line of the open transaction is not valid UTF-8.
    async fn not_utf8(&mut self, at: &Location) -> Result<()> {
        let why = format!(
            "{at}: holds bytes that are not valid UTF-8 (a database in another encoding, or a \
             value that bypassed encoding checks); pgincr restore sends UTF-8 and cannot apply \
             it exactly: apply it from the segment file with psql and client_encoding set to the \
             database's"
        );
        if self.options.on_error == OnError::Stop || self.options.rejects.is_none() {
            return Err(Error::Repository(why));
        }
        self.take_back_open().await?;
        self.reject_open(at.clone(), why).await
    }

    /// Removes what the open transaction has in the chunk and on the server (rolled back).
    async fn take_back_open(&mut self) -> Result<()> {
        let aborted_copy = matches!(self.run, Run::Copying(_));
        self.run = Run::None;
        let Some(open) = &mut self.open else {
            return Ok(());
        };
        if let Some(i) = self
            .chunk
            .parts
            .iter()
            .rposition(|p| p.xid == open.info.xid && !p.complete)
        {
            let part = self.chunk.parts.remove(i);
            self.chunk.text.truncate(part.text_start);
            self.chunk.statements.truncate(part.stmt_start);
        }
        let sent = std::mem::replace(&mut open.sent, false);
        open.statement_start = None;
        if sent || aborted_copy {
            self.rollback().await?;
        }
        Ok(())
    }

    /// Leaves the open transaction out (`--on-error=skip`) or stops the restore.
    async fn reject_open(&mut self, location: Location, message: String) -> Result<()> {
        let open = self.open.as_mut().expect("a transaction is open");
        let (xid, end_lsn, begin) = (open.info.xid, open.info.end_lsn, open.begin.clone());
        if self.options.on_error == OnError::Stop {
            return Err(Error::Apply {
                location: location.to_string(),
                end_lsn: end_lsn.to_string(),
                message,
            });
        }
        open.rejected = true;
        self.take_back_open().await?;
        tracing::warn!(
            "transaction xid {xid} (end_lsn {end_lsn}, {location}) not applied: {message}"
        );
        self.write_reject(xid, end_lsn, &begin, &format!("failed: {message}"))?;
        self.stats.rejected += 1;
        Ok(())
    }

    async fn commit_line(&mut self, content: &str, pos: Pos) -> Result<()> {
        if self.applying() {
            self.end_run().await?;
        }
        let Some(open) = self.open.take() else {
            return Ok(());
        };
        let info = open.info;
        match open.verdict {
            Verdict::InBase => self.stats.in_base += 1,
            Verdict::AlreadyApplied => self.stats.already_applied += 1,
            Verdict::PastTarget => {}
            Verdict::Skip => {
                self.stats.skipped_on_request += 1;
                self.write_reject(
                    info.xid,
                    info.end_lsn,
                    &open.begin,
                    "left out at the operator's request (--skip-transaction)",
                )?;
                self.push_stand_in(&info, &open.begin, open.begin_pos);
            }
            Verdict::Apply if open.rejected => {
                self.push_stand_in(&info, &open.begin, open.begin_pos);
            }
            Verdict::Apply => {
                let bytes = open.bytes + content.len() as u64 + 1;
                self.stats.sequences.observe_line(content);
                self.stats.applied += 1;
                self.stats.bytes += bytes;
                self.chunk.statements.push(Statement {
                    pos,
                    offset: self.chunk.text.len(),
                });
                push_origin_progress(&mut self.chunk.text, info.end_lsn, info.commit_time);
                self.push_statement(content, pos);
                let part = self.chunk.parts.last_mut().expect("the transaction's part");
                part.complete = true;
                part.bytes = bytes;
            }
        }
        Ok(())
    }

    /// An empty transaction standing in for one left out, so the origin moves past it.
    fn push_stand_in(&mut self, info: &TxnInfo, begin: &Location, pos: Pos) {
        let text_start = self.chunk.text.len();
        let stmt_start = self.chunk.statements.len();
        for _ in 0..3 {
            self.chunk.statements.push(Statement {
                pos,
                offset: text_start,
            });
        }
        push_origin_stand_in(&mut self.chunk.text, info.end_lsn, info.commit_time);
        self.chunk.parts.push(Part {
            xid: info.xid,
            end_lsn: info.end_lsn,
            commit_time: info.commit_time,
            begin: begin.clone(),
            text_start,
            stmt_start,
            complete: true,
            stand_in: true,
            bytes: 0,
        });
    }

    /// The open transaction turned out to be cut short (a new BEGIN, or the end of the
    /// stream, came before its COMMIT): what was sent of it is rolled back.
    async fn drop_open(&mut self, selection: &mut Selection) -> Result<()> {
        if self.applying() {
            self.take_back_open().await?;
        }
        if let Some(open) = self.open.take() {
            selection.applied_upto = open.applied_upto_before;
        }
        Ok(())
    }

    /// Sends the chunk. With `--on-error=skip`, a failing transaction goes to the reject
    /// file, the origin moves past it, and the rest of the chunk is sent again.
    async fn send_chunk(&mut self) -> Result<()> {
        loop {
            if self.chunk.text.is_empty() {
                return Ok(());
            }
            match execute_counting(self.client, &self.chunk.text).await {
                Ok(()) => {
                    self.sent();
                    return Ok(());
                }
                Err((err, completed)) => self.chunk_failed(err, completed).await?,
            }
        }
    }

    /// The chunk committed what it completed; the open transaction continues on the server.
    fn sent(&mut self) {
        if let Some(last) = self
            .chunk
            .parts
            .iter()
            .rev()
            .find(|p| p.complete && !p.stand_in)
        {
            self.stats.last = Some((last.end_lsn, last.commit_time));
        }
        let continuing = self
            .chunk
            .parts
            .last()
            .filter(|p| !p.complete)
            .map(|p| Part {
                text_start: 0,
                stmt_start: 0,
                ..p.clone()
            });
        self.chunk = Chunk::default();
        if let Some(part) = continuing {
            if let Some(open) = &mut self.open {
                open.sent = true;
            }
            self.chunk.parts.push(part);
        }
        if let Run::Candidate {
            rows,
            text_start,
            stmt_start,
            ..
        } = &mut self.run
        {
            (*rows, *text_start, *stmt_start) = (0, 0, 0);
        }
    }

    async fn chunk_failed(&mut self, err: tokio_postgres::Error, completed: usize) -> Result<()> {
        if err.as_db_error().is_none() {
            return Err(err.into()); // the connection, not the data
        }
        let _ = self.rollback().await;
        let failed = self
            .chunk
            .parts
            .iter()
            .rposition(|p| p.stmt_start <= completed)
            .unwrap_or(0);
        let location = self.locate(completed, &err);
        let message = describe_pg_error(&err);
        let Some(part) = self.chunk.parts.get(failed).cloned() else {
            return Err(Error::Apply {
                location: location.to_string(),
                end_lsn: String::new(),
                message,
            });
        };
        if self.options.on_error == OnError::Stop || part.stand_in {
            return Err(Error::Apply {
                location: location.to_string(),
                end_lsn: part.end_lsn.to_string(),
                message,
            });
        }
        tracing::warn!(
            "transaction xid {} (end_lsn {}, {location}) not applied: {message}",
            part.xid,
            part.end_lsn
        );
        self.write_reject(
            part.xid,
            part.end_lsn,
            &part.begin,
            &format!("failed: {message}"),
        )?;
        self.stats.rejected += 1;
        if part.complete {
            self.stats.applied -= 1;
            self.stats.bytes -= part.bytes;
        }
        if let Some(last) = self.chunk.parts[..failed]
            .iter()
            .rev()
            .find(|p| p.complete && !p.stand_in)
        {
            self.stats.last = Some((last.end_lsn, last.commit_time));
        }
        // The chunk again from the failed transaction on: a stand-in for it (or, if it is
        // the open one, nothing: its remaining lines are dropped), then the rest.
        let old = std::mem::take(&mut self.chunk);
        self.run = Run::None;
        if part.complete {
            let info = TxnInfo {
                xid: part.xid,
                commit_lsn: Lsn::default(),
                end_lsn: part.end_lsn,
                commit_time: part.commit_time,
            };
            let pos = old
                .statements
                .get(part.stmt_start)
                .map_or(Pos { file: 0, line: 0 }, |s| s.pos);
            self.push_stand_in(&info, &part.begin, pos);
        } else if let Some(open) = &mut self.open {
            open.rejected = true;
            open.sent = false;
            open.statement_start = None;
        }
        let rest = &old.parts[failed + 1..];
        for (i, p) in rest.iter().enumerate() {
            let (text_end, stmt_end) = rest
                .get(i + 1)
                .map_or((old.text.len(), old.statements.len()), |n| {
                    (n.text_start, n.stmt_start)
                });
            let shift = self.chunk.text.len() as isize - p.text_start as isize;
            let stmt_start = self.chunk.statements.len();
            self.chunk.parts.push(Part {
                text_start: self.chunk.text.len(),
                stmt_start,
                ..p.clone()
            });
            self.chunk.text.push_str(&old.text[p.text_start..text_end]);
            self.chunk
                .statements
                .extend(
                    old.statements[p.stmt_start..stmt_end]
                        .iter()
                        .map(|s| Statement {
                            pos: s.pos,
                            offset: (s.offset as isize + shift) as usize,
                        }),
                );
        }
        Ok(())
    }

    /// Where statement `index` of the chunk failed: the line the server points at, or the
    /// line where the statement begins.
    fn locate(&self, index: usize, err: &tokio_postgres::Error) -> Location {
        let Some(statement) = self
            .chunk
            .statements
            .get(index)
            .or(self.chunk.statements.last())
        else {
            return Location {
                file: String::new(),
                line: 0,
            };
        };
        let mut location = self.location(statement.pos);
        if let Some(ErrorPosition::Original(pos)) = err.as_db_error().and_then(|d| d.position()) {
            let byte = self
                .chunk
                .text
                .char_indices()
                .nth((*pos as usize).saturating_sub(1))
                .map_or(self.chunk.text.len(), |(i, _)| i);
            if byte >= statement.offset {
                location.line += self.chunk.text[statement.offset..byte]
                    .matches('\n')
                    .count() as u64;
            }
        }
        location
    }

    fn location(&self, pos: Pos) -> Location {
        Location {
            file: self
                .files
                .get(pos.file)
                .map(|(_, n)| n.clone())
                .unwrap_or_default(),
            line: pos.line,
        }
    }

    /// Appends a transaction left out to the reject file, read again from the segments.
    fn write_reject(&mut self, xid: u32, end_lsn: Lsn, begin: &Location, why: &str) -> Result<()> {
        let Some(rejects) = &mut self.options.rejects else {
            return Ok(());
        };
        rejects.write_from_stream(&self.files, xid, end_lsn, begin, why)
    }
}

/// The search_path decoder_sql's DML runs with: its names are all schema-qualified, and its
/// operators and functions must be the built-in ones.
const SAFE_SEARCH_PATH: &str = "SELECT pg_catalog.set_config('search_path', 'pg_catalog', false);";

/// Whether a line is a change decoder_sql wrote (or a sequence snapshot), which needs no
/// search_path of its own.
fn is_decoded_dml(line: &str) -> bool {
    [
        "INSERT INTO ",
        "UPDATE ONLY ",
        "DELETE FROM ONLY ",
        "TRUNCATE TABLE ",
        "SELECT pg_catalog.setval(",
    ]
    .iter()
    .any(|p| line.starts_with(p))
}

/// Holds a statement in the source's encoding on its way to [`RUN_ENCODED_STATEMENT`].
const CREATE_ENCODED_STATEMENT_TABLE: &str =
    "CREATE TEMPORARY TABLE IF NOT EXISTS pgincr_encoded_statement (s text)";

/// Takes the statement out of the temporary table and runs it.
const RUN_ENCODED_STATEMENT: &str = "DO $pgincr$
DECLARE statement text;
BEGIN
  DELETE FROM pg_temp.pgincr_encoded_statement RETURNING s INTO STRICT statement;
  EXECUTE statement;
END $pgincr$";

/// Runs `text` as one simple query; on failure, also says how many statements completed
/// before the failing one (the server answers each with a CommandComplete).
async fn execute_counting(
    client: &Client,
    text: &str,
) -> std::result::Result<(), (tokio_postgres::Error, usize)> {
    let stream = client.simple_query_raw(text).await.map_err(|e| (e, 0))?;
    let mut stream = std::pin::pin!(stream);
    let mut completed = 0;
    while let Some(message) = stream.next().await {
        match message {
            Ok(SimpleQueryMessage::CommandComplete(_)) => completed += 1,
            Ok(_) => {}
            Err(e) => return Err((e, completed)),
        }
    }
    Ok(())
}

/// Whether COPY stores rows into `table` exactly as INSERT would during a restore: a plain
/// or partitioned table without row security, and without triggers or rules on INSERT that
/// fire under `session_replication_role = replica` (COPY skips rules and fires statement
/// triggers once, and later rows of one COPY are invisible to row triggers).
async fn copy_allowed(client: &Client, table: &str) -> Result<bool> {
    let row = client
        .query_one(
            "SELECT coalesce((
                SELECT c.relkind IN ('r', 'p') AND NOT c.relrowsecurity
                   AND NOT EXISTS (SELECT FROM pg_catalog.pg_trigger t
                                    WHERE t.tgrelid = c.oid AND t.tgenabled IN ('A', 'R')
                                      AND t.tgtype::int & 4 <> 0)
                   AND NOT EXISTS (SELECT FROM pg_catalog.pg_rewrite r
                                    WHERE r.ev_class = c.oid AND r.ev_type = '3'
                                      AND r.ev_enabled IN ('A', 'R'))
                 FROM pg_catalog.pg_class c WHERE c.oid = pg_catalog.to_regclass($1)), false)",
            &[&table],
        )
        .await?;
    Ok(row.get(0))
}

/// The row number in a COPY error's context (`COPY t, line 5, column a: "x"`; the table
/// name is written raw, so the first `, line N` that the context's grammar can end at).
fn copy_row_number(context: &str) -> Option<u64> {
    let rest = context.strip_prefix("COPY ")?;
    rest.match_indices(", line ").find_map(|(at, _)| {
        let tail = &rest[at + 7..];
        let digits = tail.bytes().take_while(u8::is_ascii_digit).count();
        let after = &tail[digits..];
        (digits > 0
            && (after.is_empty() || after.starts_with(", column ") || after.starts_with(':')))
        .then(|| tail[..digits].parse().ok())
        .flatten()
    })
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_row_numbers_come_from_the_error_context() {
        assert_eq!(copy_row_number("COPY t, line 5, column a: \"x\""), Some(5));
        assert_eq!(copy_row_number("COPY a, line 9, line 12"), Some(12));
        assert_eq!(copy_row_number("COPY t, line 3: \"x\""), Some(3));
        assert_eq!(copy_row_number("SQL statement \"…\""), None);
    }

    #[test]
    fn rows_lead_back_to_their_lines() {
        let spans = [
            (Pos { file: 0, line: 10 }, 3),
            (Pos { file: 1, line: 2 }, 2),
        ];
        let find = |row| row_pos(&spans, row).map(|p| (p.file, p.line));
        assert_eq!(find(1), Some((0, 10)));
        assert_eq!(find(3), Some((0, 12)));
        assert_eq!(find(4), Some((1, 2)));
        assert_eq!(find(5), Some((1, 3)));
        assert_eq!(find(6), None);
    }
}
