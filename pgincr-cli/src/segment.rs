//! Reading the change stream back: segment files hold decoder_sql output with transaction
//! annotations (`BEGIN; -- xid=… commit_lsn=… end_lsn=… commit_time=…` … `COMMIT; -- …`).
//! This module cuts that text into whole transactions, whatever file boundaries fall
//! in between, and says where each came from.
//!
//! Transaction lines are recognised only where a statement may begin: an SQL lexer
//! (`sqlgen::lexer`) follows quotes, dollar quotes and comments across lines, so statement
//! text that happens to contain a line `COMMIT;` (a comment's text, a function body) is never
//! taken for one.
//!
//! Two irregularities are normal and handled here: a transaction cut short when
//! pg_recvlogical stopped (a later BEGIN supersedes it: the server sends it again), and a
//! transaction sent twice after a restart (the caller skips it by LSN).

use crate::chain::{SegmentHeader, SegmentStart};
use crate::repo::SqlSource;
use crate::{Error, Result};
use sqlgen::lexer::Lexer;
use sqlgen::lsn::Lsn;
use sqlgen::txn::{TxnInfo, parse_begin};
use std::fmt;
use std::io::{BufRead, BufReader};

/// A position in the change stream, for messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    pub file: String,
    pub line: u64,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file, self.line)
    }
}

/// One complete transaction, BEGIN line to COMMIT line.
#[derive(Debug, Clone)]
pub struct Txn {
    pub info: TxnInfo,
    /// The transaction's text, each line ending in '\n'.
    pub text: String,
    /// Where its BEGIN line is.
    pub begin: Location,
}

#[derive(Debug)]
pub enum Event {
    Txn(Txn),
    /// A transaction that stopped before its COMMIT; the stream sends it again in full.
    Superseded {
        xid: u32,
        at: Location,
    },
    /// A statement decoder_sql wrote outside transactions because it cannot run inside one
    /// (CREATE TABLESPACE), with the LSN of its WAL record.
    OutsideStatement {
        at: Location,
        lsn: Lsn,
        statement: String,
    },
    /// A statement outside any transaction (not written by decoder_sql's transaction
    /// output); it is reported, never applied.
    Stray {
        at: Location,
        line: String,
    },
    /// The COMMIT of a transaction whose BEGIN is in an earlier file (the input started
    /// in the middle of it).
    OrphanCommit {
        end_lsn: Lsn,
        at: Location,
    },
}

/// What one line is to the transaction structure (see [`Parser::step`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Not part of any transaction: a segment's settings line, blank lines and comments
    /// between transactions, and lines continuing a transaction begun before the input.
    Outside,
    /// The BEGIN line of a transaction, and the transaction it cuts short, if one was open
    /// (its xid and BEGIN location; the stream sends that one again in full).
    Begin {
        info: TxnInfo,
        superseded: Option<(u32, Location)>,
    },
    /// A line of the open transaction between its BEGIN and COMMIT lines.
    Body(LineShape),
    /// The COMMIT line of the open transaction.
    Commit,
    /// A statement decoder_sql wrote outside transactions, with its LSN
    /// (`sqlgen::txn::render_outside`).
    OutsideStatement { lsn: Lsn },
    /// A statement outside any transaction (reported, never applied).
    Stray,
    /// The COMMIT of a transaction whose BEGIN is in an earlier file.
    OrphanCommit { end_lsn: Lsn },
}

/// Where statements begin and end on a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LineShape {
    /// The line begins a statement (rather than continuing one that spans lines).
    pub starts_statement: bool,
    /// Non-empty statements that end on this line.
    pub statements_ended: u64,
    /// A statement is still open at the end of the line.
    pub ends_inside_statement: bool,
}

/// Cuts lines into transactions.
#[derive(Debug)]
pub struct Parser {
    /// The open transaction's identity and BEGIN location.
    open: Option<(TxnInfo, Location)>,
    /// The transaction whose COMMIT line was the last line.
    last_committed: Option<(TxnInfo, Location)>,
    /// The open transaction's text, when [`feed`](Self::feed) keeps it.
    text: String,
    /// Whether a BEGIN (or the COMMIT ending a leading partial transaction) was seen:
    /// lines before it continue a transaction begun before the input started.
    started: bool,
    /// Whether transactions keep their text (restore) or only their identity (scans).
    keep_text: bool,
    /// Lines before the first BEGIN that belong to an earlier transaction.
    pub continuation_lines: u64,
    /// Where statements begin, across lines.
    lexer: Lexer,
    /// The file the last line came from.
    file: String,
}

impl Default for Parser {
    fn default() -> Self {
        Parser::new(true)
    }
}

impl Parser {
    pub fn new(keep_text: bool) -> Self {
        Parser {
            open: None,
            last_committed: None,
            text: String::new(),
            started: false,
            keep_text,
            continuation_lines: 0,
            lexer: Lexer::new(),
            file: String::new(),
        }
    }

    /// Whether a transaction is open (its COMMIT not seen yet).
    pub fn in_transaction(&self) -> bool {
        self.open.is_some()
    }

    /// The identity of the open transaction, from its BEGIN line.
    pub fn open_transaction(&self) -> Option<TxnInfo> {
        self.open.as_ref().map(|(info, _)| *info)
    }

    /// Takes one line (with or without its '\n') and says what it is, keeping no text: the
    /// caller streams a transaction of any size.
    pub fn step(&mut self, line: &str, at: &Location) -> std::result::Result<Step, String> {
        let content = line.trim_end_matches(['\n', '\r']);
        // Every file begins between messages, so between statements: a line cut short at the
        // end of the previous file (a crash while it was written) must not open a quote that
        // swallows the next one.
        if at.file != self.file {
            self.file.clone_from(&at.file);
            self.lexer = Lexer::new();
        }
        let at_boundary = self.lexer.at_statement_boundary();
        let ended_before = self.lexer.statements_ended();
        self.lexer.feed(content.as_bytes());
        self.lexer.feed(b"\n");
        let body = Step::Body(LineShape {
            starts_statement: at_boundary,
            statements_ended: self.lexer.statements_ended() - ended_before,
            ends_inside_statement: !self.lexer.at_statement_boundary(),
        });
        if at_boundary && crate::chain::is_settings_preamble(content) {
            return Ok(Step::Outside); // a segment's settings line, wherever segments are joined
        }
        if !at_boundary {
            // Inside a statement that spans lines: its text, whatever it looks like.
            if !self.started {
                self.continuation_lines += 1;
            }
            return Ok(if self.open.is_some() {
                body
            } else {
                Step::Outside
            });
        }
        if content.starts_with("BEGIN;") {
            let info = parse_begin(content).ok_or_else(|| {
                format!(
                    "{at}: BEGIN without a transaction annotation; the stream must be written with \
                     decoder_sql's include_annotations option"
                )
            })?;
            let superseded = self.open.take().map(|(i, begin)| (i.xid, begin));
            self.started = true;
            self.open = Some((info, at.clone()));
            return Ok(Step::Begin { info, superseded });
        }
        if let Some((info, begin)) = &self.open {
            if content.starts_with("COMMIT;") {
                let xid = commit_xid(content);
                if xid.is_some_and(|x| x != info.xid) {
                    return Err(format!(
                        "{at}: COMMIT of transaction {} inside transaction {} (begun at {begin})",
                        xid.unwrap_or_default(),
                        info.xid,
                    ));
                }
                self.last_committed = self.open.take();
                return Ok(Step::Commit);
            }
            return Ok(body);
        }
        if content.trim().is_empty() || content.starts_with("--") {
            return Ok(Step::Outside);
        }
        // Recognised even first in a file: it is one line, written between transactions.
        if let Some((_, lsn)) = sqlgen::txn::parse_outside(content) {
            return Ok(Step::OutsideStatement { lsn });
        }
        if !self.started {
            self.continuation_lines += 1;
            if content.starts_with("COMMIT;") {
                self.started = true;
                let end_lsn = commit_end_lsn(content)
                    .ok_or_else(|| format!("{at}: COMMIT without a transaction annotation"))?;
                return Ok(Step::OrphanCommit { end_lsn });
            }
            return Ok(Step::Outside);
        }
        Ok(Step::Stray)
    }

    /// Takes one line (with or without its '\n') and returns whole transactions.
    pub fn feed(&mut self, line: &str, at: Location) -> std::result::Result<Option<Event>, String> {
        let content = line.trim_end_matches(['\n', '\r']);
        let keep_line = |text: &mut String| {
            text.push_str(content);
            text.push('\n');
        };
        Ok(match self.step(line, &at)? {
            Step::Outside => None,
            Step::Begin { superseded, .. } => {
                self.text.clear();
                if self.keep_text {
                    keep_line(&mut self.text);
                }
                superseded.map(|(xid, at)| Event::Superseded { xid, at })
            }
            Step::Body(_) => {
                if self.keep_text {
                    keep_line(&mut self.text);
                }
                None
            }
            Step::Commit => {
                if self.keep_text {
                    keep_line(&mut self.text);
                }
                let (info, begin) = self.last_committed.take().expect("set by step");
                Some(Event::Txn(Txn {
                    info,
                    text: std::mem::take(&mut self.text),
                    begin,
                }))
            }
            Step::OutsideStatement { lsn } => Some(Event::OutsideStatement {
                at,
                lsn,
                statement: content.to_owned(),
            }),
            Step::Stray => Some(Event::Stray {
                at,
                line: content.to_owned(),
            }),
            Step::OrphanCommit { end_lsn } => Some(Event::OrphanCommit { end_lsn, at }),
        })
    }

    /// The transaction still open at the end of the input (not applied: it has no COMMIT yet).
    pub fn finish(self) -> Option<Txn> {
        self.open.map(|(info, begin)| Txn {
            info,
            text: self.text,
            begin,
        })
    }
}

fn commit_end_lsn(line: &str) -> Option<Lsn> {
    line.split_ascii_whitespace()
        .find_map(|f| f.strip_prefix("end_lsn="))
        .and_then(|x| x.parse().ok())
}

fn commit_xid(line: &str) -> Option<u32> {
    line.split_ascii_whitespace()
        .find_map(|f| f.strip_prefix("xid="))
        .and_then(|x| x.parse().ok())
}

/// A line as [`StreamReader::next_line_raw`] reads it.
pub struct RawLine<'a> {
    /// The line as text; bytes that are not valid UTF-8 read as U+FFFD.
    pub text: &'a str,
    /// The line's bytes as in the file, with its newline.
    pub bytes: &'a [u8],
    pub at: Location,
    pub not_utf8: bool,
}

/// Reads a list of segment files in order as one stream of lines.
pub struct StreamReader {
    files: std::vec::IntoIter<(SqlSource, String)>,
    current: Option<(Box<dyn BufRead + Send>, String, u64)>,
    bytes: Vec<u8>,
    line: String,
    /// SQL bytes read so far (after decompression).
    pub bytes_read: u64,
}

impl StreamReader {
    /// `files` are (path, name to show in messages).
    pub fn new(files: Vec<(impl Into<SqlSource>, String)>) -> Self {
        let files: Vec<_> = files.into_iter().map(|(f, n)| (f.into(), n)).collect();
        StreamReader {
            files: files.into_iter(),
            current: None,
            bytes: Vec::new(),
            line: String::new(),
            bytes_read: 0,
        }
    }

    /// The next line and where it is; `None` at the end of the last file. Bytes that are not
    /// valid UTF-8 (a database in another encoding, or a value that bypassed encoding checks)
    /// are read as U+FFFD for scanning; [`next_line_checked`](Self::next_line_checked) says so.
    pub fn next_line(&mut self) -> Result<Option<(&str, Location)>> {
        Ok(self.next_line_checked()?.map(|(line, at, _)| (line, at)))
    }

    /// Like [`next_line`](Self::next_line), with whether the line held invalid UTF-8.
    pub fn next_line_checked(&mut self) -> Result<Option<(&str, Location, bool)>> {
        Ok(self
            .next_line_raw()?
            .map(|line| (line.text, line.at, line.not_utf8)))
    }

    /// The next line as text (for scanning) and as the bytes in the file (the database's
    /// encoding).
    pub fn next_line_raw(&mut self) -> Result<Option<RawLine<'_>>> {
        loop {
            if self.current.is_none() {
                let Some((source, name)) = self.files.next() else {
                    return Ok(None);
                };
                let reader = BufReader::with_capacity(1 << 16, source.open()?);
                self.current = Some((Box::new(reader), name, 0));
            }
            let (reader, name, line_no) = self.current.as_mut().expect("current file");
            self.bytes.clear();
            let n = reader.read_until(b'\n', &mut self.bytes).map_err(|e| {
                Error::Repository(format!("{name}:{}: cannot read: {e}", *line_no + 1))
            })?;
            if n == 0 {
                self.current = None;
                continue;
            }
            *line_no += 1;
            self.bytes_read += n as u64;
            let at = Location {
                file: name.clone(),
                line: *line_no,
            };
            self.line.clear();
            let not_utf8 = match std::str::from_utf8(&self.bytes) {
                Ok(text) => {
                    self.line.push_str(text);
                    false
                }
                Err(_) => {
                    self.line.push_str(&String::from_utf8_lossy(&self.bytes));
                    true
                }
            };
            return Ok(Some(RawLine {
                text: &self.line,
                bytes: &self.bytes,
                at,
                not_utf8,
            }));
        }
    }
}

/// Reads one transaction again from the stream's files, BEGIN line to COMMIT line (or to
/// where it was cut short), for the reject file: a restore does not keep the transactions it
/// applies in memory.
pub fn reread_transaction(
    files: &[(SqlSource, String)],
    begin: &Location,
    mut each_line: impl FnMut(&[u8]) -> Result<()>,
) -> Result<()> {
    let from = files
        .iter()
        .position(|(_, name)| *name == begin.file)
        .ok_or_else(|| Error::Repository(format!("{begin}: the file is not in the stream")))?;
    let mut reader = StreamReader::new(files[from..].to_vec());
    let mut parser = Parser::new(false);
    while let Some(line) = reader.next_line_raw()? {
        let at = line.at;
        if at.file == begin.file && at.line < begin.line {
            continue;
        }
        let step = parser.step(line.text, &at).map_err(Error::Repository)?;
        if matches!(step, Step::Begin { .. }) && at != *begin {
            break; // cut short: the stream sends it again
        }
        // The file's bytes (the database's encoding), without the line end.
        let bytes = line.bytes.strip_suffix(b"\n").unwrap_or(line.bytes);
        each_line(bytes.strip_suffix(b"\r").unwrap_or(bytes))?;
        if step == Step::Commit {
            break;
        }
    }
    Ok(())
}

/// What a scan of segment files found.
#[derive(Debug, Default, Clone)]
pub struct Summary {
    /// Transactions whose COMMIT is in the files, repeats excluded.
    pub transactions: u64,
    /// Transactions whose end_lsn is not past an earlier one (sent again after a restart).
    pub repeated: u64,
    pub superseded: u64,
    pub strays: u64,
    /// Statements written outside transactions (CREATE TABLESPACE).
    pub outside_statements: u64,
    /// UPDATEs and DELETEs decoder_sql skipped for want of a replica identity (its
    /// `-- decoder_sql: skipped …` comments), in transactions whose COMMIT is in the input.
    pub skipped_changes: u64,
    /// DDL messages decoder_sql refused to write as SQL (forged, or not one complete
    /// statement): its `-- decoder_sql: refused …` comments.
    pub refused_messages: u64,
    /// The input begins inside a transaction begun in an earlier file.
    pub starts_in_transaction: bool,
    /// The input ends inside a transaction (continued in the next file, or cut short).
    pub ends_in_transaction: bool,
    /// That transaction's end LSN, from its BEGIN line.
    pub unfinished_end_lsn: Option<Lsn>,
    pub last_end_lsn: Option<Lsn>,
    pub last_commit_time: Option<i64>,
    /// The segment header on the first line, if any, and its length with the newline.
    pub header: Option<SegmentHeader>,
    pub header_bytes: u64,
    /// When the input begins inside a transaction: that transaction's end LSN.
    pub continued_transaction_end: Option<Lsn>,
    /// Byte offset just past the last complete transaction (where a cut-short tail begins).
    pub complete_bytes: u64,
    pub bytes: u64,
}

impl Summary {
    /// Whether the chain leaves open after this segment what it left open before it: the
    /// segment has neither a BEGIN nor a COMMIT of its own (wholly inside a transaction, or
    /// empty).
    pub fn leaves_open_as_before(&self) -> bool {
        self.transactions == 0
            && self.repeated == 0
            && self.superseded == 0
            && self.unfinished_end_lsn.is_none()
            && self.continued_transaction_end.is_none()
    }

    /// How the input begins, for continuity checks.
    pub fn start(&self) -> SegmentStart {
        SegmentStart {
            header: self.header,
            continued_transaction_end: self.continued_transaction_end,
        }
    }
}

/// How decoder_sql writes an UPDATE or DELETE it skipped (`missing_identity 'skip'`).
const SKIPPED_CHANGE: &str = "-- decoder_sql: skipped ";
/// How decoder_sql writes a DDL message it did not execute (docs/format.md).
const REFUSED_MESSAGE: &str = "-- decoder_sql: refused ";

/// Scans files in order for their transactions (segment metadata, verify, tail recovery).
pub fn summarize(files: Vec<(impl Into<SqlSource>, String)>) -> Result<Summary> {
    let mut reader = StreamReader::new(files);
    let mut parser = Parser::new(false);
    let mut s = Summary::default();
    let note_end = |s: &mut Summary, end_lsn: Lsn, time: Option<i64>| {
        if s.last_end_lsn.is_some_and(|l| end_lsn <= l) {
            s.repeated += 1;
            return;
        }
        s.transactions += 1;
        s.last_end_lsn = Some(end_lsn);
        if time.is_some() {
            s.last_commit_time = time;
        }
    };
    let mut line_no = 0u64;
    // Skipped changes of the open transaction, counted once its COMMIT is seen.
    let mut skipped_open = 0u64;
    while let Some((line, at)) = reader.next_line()? {
        line_no += 1;
        if line_no == 1
            && let Some(header) = SegmentHeader::parse(line)
        {
            s.header = Some(header);
            s.header_bytes = line.len() as u64;
        } else if line_no == 2
            && s.header.is_some()
            && crate::chain::is_settings_preamble(line.trim_end_matches(['\n', '\r']))
        {
            s.header_bytes += line.len() as u64;
        }
        let skipped_here = line.starts_with(SKIPPED_CHANGE);
        if line.starts_with(REFUSED_MESSAGE) {
            s.refused_messages += 1;
        }
        let event = parser.feed(line, at).map_err(Error::Repository)?;
        if matches!(event, Some(Event::Superseded { .. })) {
            skipped_open = 0; // sent again in full later
        }
        if skipped_here {
            skipped_open += 1;
        }
        let bytes = reader.bytes_read;
        match event {
            Some(Event::Txn(t)) => {
                let skipped = std::mem::take(&mut skipped_open);
                if s.last_end_lsn.is_none_or(|l| t.info.end_lsn > l) {
                    s.skipped_changes += skipped;
                }
                s.complete_bytes = bytes;
                note_end(&mut s, t.info.end_lsn, Some(t.info.commit_time));
            }
            Some(Event::OrphanCommit { end_lsn, .. }) => {
                s.skipped_changes += std::mem::take(&mut skipped_open);
                s.complete_bytes = bytes;
                s.continued_transaction_end = Some(end_lsn);
                note_end(&mut s, end_lsn, None);
            }
            Some(Event::Superseded { .. }) => s.superseded += 1,
            Some(Event::Stray { .. }) => s.strays += 1,
            Some(Event::OutsideStatement { .. }) => {
                s.outside_statements += 1;
                s.complete_bytes = bytes;
            }
            None => {
                if !parser.in_transaction() && parser.started {
                    s.complete_bytes = bytes;
                }
            }
        }
    }
    s.starts_in_transaction = parser.continuation_lines > 0;
    s.ends_in_transaction = parser.in_transaction();
    if s.ends_in_transaction {
        // The transaction goes on in the next segment, which sees only its own part.
        s.skipped_changes += skipped_open;
    }
    s.unfinished_end_lsn = parser.open_transaction().map(|t| t.end_lsn);
    s.bytes = reader.bytes_read;
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(line: u64) -> Location {
        Location {
            file: "f".into(),
            line,
        }
    }

    const B1: &str =
        "BEGIN; -- xid=10 commit_lsn=0/100 end_lsn=0/128 commit_time=2026-01-01T00:00:00.000000Z";
    const B2: &str =
        "BEGIN; -- xid=11 commit_lsn=0/200 end_lsn=0/228 commit_time=2026-01-01T00:00:01.000000Z";

    fn feed_all(lines: &[&str]) -> (Vec<Event>, Option<Txn>) {
        let mut p = Parser::default();
        let mut out = Vec::new();
        for (i, l) in lines.iter().enumerate() {
            out.extend(p.feed(l, at(i as u64 + 1)).unwrap());
        }
        (out, p.finish())
    }

    #[test]
    fn cuts_transactions_and_keeps_their_text() {
        let (events, open) = feed_all(&[
            B1,
            "INSERT INTO public.t (a) VALUES (1);",
            "COMMIT; -- xid=10 end_lsn=0/128",
            "",
            B2,
            "DELETE FROM public.t WHERE a = 1;",
        ]);
        assert_eq!(events.len(), 1);
        let Event::Txn(t) = &events[0] else {
            panic!("{events:?}")
        };
        assert_eq!(t.info.xid, 10);
        assert_eq!(t.info.end_lsn.to_string(), "0/128");
        assert_eq!(
            t.text,
            format!(
                "{B1}\nINSERT INTO public.t (a) VALUES (1);\nCOMMIT; -- xid=10 end_lsn=0/128\n"
            )
        );
        assert_eq!(t.begin, at(1));
        assert_eq!(open.unwrap().info.xid, 11);
    }

    #[test]
    fn a_cut_short_transaction_is_superseded_by_the_next_begin() {
        let (events, open) = feed_all(&[
            B1,
            "INSERT INTO public.t (a) VALUES (1);",
            B1,
            "INSERT INTO public.t (a) VALUES (1);",
            "COMMIT; -- xid=10 end_lsn=0/128",
        ]);
        assert!(matches!(events[0], Event::Superseded { xid: 10, .. }));
        assert!(matches!(&events[1], Event::Txn(t) if t.begin == at(3)));
        assert!(open.is_none());
    }

    #[test]
    fn strays_and_unannotated_begins_are_reported() {
        let (events, _) = feed_all(&[
            B1,
            "COMMIT; -- xid=10 end_lsn=0/128",
            "-- comment",
            "DROP TABLE x;",
        ]);
        assert!(matches!(&events[1], Event::Stray { line, .. } if line == "DROP TABLE x;"));
        let mut p = Parser::default();
        let err = p.feed("BEGIN;", at(7)).unwrap_err();
        assert!(
            err.contains("f:7") && err.contains("include_annotations"),
            "{err}"
        );
        let mut p = Parser::default();
        p.feed(B1, at(1)).unwrap();
        let err = p.feed("COMMIT; -- xid=99 end_lsn=0/1", at(2)).unwrap_err();
        assert!(err.contains("COMMIT of transaction 99"), "{err}");
    }

    #[test]
    fn transaction_lines_inside_statement_text_are_text() {
        let ddl = [
            "COMMENT ON TABLE public.t IS 'Usage:",
            "BEGIN; -- xid=99 commit_lsn=0/1 end_lsn=FF/FFFFFF00 commit_time=2026-01-01T00:00:00.000000Z",
            "COMMIT; -- xid=99 end_lsn=FF/FFFFFF00",
            "';",
            "CREATE PROCEDURE public.p() LANGUAGE plpgsql AS $$",
            "BEGIN",
            "COMMIT;",
            "END $$;",
        ];
        let mut lines = vec![B1];
        lines.extend(ddl);
        lines.extend([
            "INSERT INTO public.t (a) VALUES (1);",
            "COMMIT; -- xid=10 end_lsn=0/128",
        ]);
        let (events, open) = feed_all(&lines);
        assert!(open.is_none());
        assert_eq!(events.len(), 1, "{events:?}");
        let Event::Txn(t) = &events[0] else {
            panic!("{events:?}")
        };
        assert_eq!(t.info.xid, 10);
        assert_eq!(t.text, lines.join("\n") + "\n");
    }

    #[test]
    fn a_line_cut_short_at_the_end_of_a_file_does_not_swallow_the_next_file() {
        let mut p = Parser::default();
        let in_file = |file: &str, line: u64| Location {
            file: file.into(),
            line,
        };
        p.feed(B1, in_file("a", 1)).unwrap();
        // Cut in the middle of a literal by a crash.
        p.feed("INSERT INTO public.t (v) VALUES ('cut sh", in_file("a", 2))
            .unwrap();
        let superseded = p.feed(B1, in_file("b", 1)).unwrap();
        assert!(matches!(
            superseded,
            Some(Event::Superseded { xid: 10, .. })
        ));
        p.feed(
            "INSERT INTO public.t (v) VALUES ('whole');",
            in_file("b", 2),
        )
        .unwrap();
        let done = p
            .feed("COMMIT; -- xid=10 end_lsn=0/128", in_file("b", 3))
            .unwrap();
        assert!(matches!(done, Some(Event::Txn(t)) if t.begin == in_file("b", 1)));
    }

    #[test]
    fn input_starting_inside_a_transaction_yields_its_commit() {
        let (events, _) = feed_all(&["UPDATE t SET a = 2;", "COMMIT; -- xid=9 end_lsn=0/99", B1]);
        assert!(
            matches!(&events[0], Event::OrphanCommit { end_lsn, at } if end_lsn.to_string() == "0/99" && at.line == 2),
            "{events:?}"
        );
    }

    #[test]
    fn summary_spans_files_and_counts_repeats() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.sql");
        let b = dir.path().join("b.sql.zst");
        std::fs::write(
            &a,
            format!("{B1}\nINSERT INTO t VALUES (1);\nCOMMIT; -- xid=10 end_lsn=0/128\n{B2}\n"),
        )
        .unwrap();
        let tail = format!(
            "UPDATE t SET a = 2;\nCOMMIT; -- xid=11 end_lsn=0/228\n{B1}\nCOMMIT; -- xid=10 end_lsn=0/128\n{B2}\nUPDATE"
        );
        std::fs::write(&b, zstd::encode_all(tail.as_bytes(), 1).unwrap()).unwrap();
        let s = summarize(vec![(a, "a".into()), (b, "b".into())]).unwrap();
        assert_eq!(s.transactions, 2);
        assert_eq!(s.repeated, 1);
        assert!(!s.starts_in_transaction && s.ends_in_transaction);
        let tail_only = dir.path().join("c.sql");
        std::fs::write(
            &tail_only,
            "UPDATE t SET a = 2;\nCOMMIT; -- xid=11 end_lsn=0/228\n",
        )
        .unwrap();
        let c = summarize(vec![(tail_only, "c".into())]).unwrap();
        assert!(c.starts_in_transaction && !c.ends_in_transaction);
        assert_eq!(
            (c.transactions, c.last_end_lsn.unwrap().to_string()),
            (1, "0/228".into())
        );
        assert_eq!(s.last_end_lsn.unwrap().to_string(), "0/228");
        assert_eq!(c.continued_transaction_end.unwrap().to_string(), "0/228");
        assert!(s.header.is_none() && s.continued_transaction_end.is_none());
        let a_len = std::fs::metadata(dir.path().join("a.sql")).unwrap().len();
        assert_eq!(s.bytes, a_len + tail.len() as u64);
        assert_eq!(
            s.bytes - s.complete_bytes,
            (B2.len() + 1 + "UPDATE".len()) as u64
        );
    }

    #[test]
    fn a_header_is_read_from_the_first_line_only() {
        let dir = tempfile::tempdir().unwrap();
        let header = "-- pgincr segment=2 previous=1 previous_start_lsn=0/100\n";
        let f = dir.path().join("h.sql");
        std::fs::write(
            &f,
            format!("{header}{B1}\nCOMMIT; -- xid=10 end_lsn=0/128\n{header}"),
        )
        .unwrap();
        let s = summarize(vec![(f, "h".into())]).unwrap();
        assert_eq!(s.header.unwrap().seq, 2);
        assert_eq!(s.header_bytes, header.len() as u64);
        assert!(!s.starts_in_transaction);
        assert_eq!(s.transactions, 1);
    }

    #[test]
    fn the_settings_line_is_part_of_the_header_and_never_a_statement() {
        let dir = tempfile::tempdir().unwrap();
        let header = crate::chain::SegmentHeader {
            seq: 2,
            previous_seq: 1,
            previous_start_lsn: "0/100".parse().unwrap(),
        }
        .line();
        assert!(header.ends_with(&format!("\n{}\n", crate::chain::SETTINGS_PREAMBLE)));
        // A segment that begins inside a transaction: its header and settings are not taken
        // for the end of that transaction.
        let f = dir.path().join("p.sql");
        std::fs::write(
            &f,
            format!("{header}UPDATE t SET a = 2;\nCOMMIT; -- xid=9 end_lsn=0/99\n{B1}\nCOMMIT; -- xid=10 end_lsn=0/128\n"),
        )
        .unwrap();
        let s = summarize(vec![(f, "p".into())]).unwrap();
        assert_eq!(s.header_bytes, header.len() as u64);
        assert!(s.starts_in_transaction);
        assert_eq!((s.transactions, s.strays), (2, 0));
    }
}
