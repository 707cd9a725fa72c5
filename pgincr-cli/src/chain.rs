//! The chain of change segments: naming, continuity, and which segments a base backup
//! needs. Shared by stream, restore, verify and prune.
//!
//! Every segment file `stream` writes begins with a header comment naming the segment and
//! its predecessor ([`SegmentHeader`]), written before pg_recvlogical appends to it. A file
//! that does not continue the chain (copied from a later moment of a live repository, or
//! from another repository) is recognised by it, and by its first transaction: a segment
//! that begins inside a transaction must continue the one its predecessor left open.

use crate::repo::{self, Manifest, Repo, Segment};
use crate::segment::summarize;
use crate::{Error, Result};
use sqlgen::lsn::Lsn;
use std::fmt;

/// `00000042_0000000016B374D8.sql`: sequence number, then the LSN the segment starts after;
/// names sort in stream order.
pub fn segment_file_name(seq: u64, start_lsn: Lsn) -> String {
    format!("{seq:08}_{:016X}.sql", start_lsn.0)
}

/// The first line of a segment file: which segment it is and which one it follows (for the
/// first segment of a chain, "segment 0" starting at the stream's start).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentHeader {
    pub seq: u64,
    pub previous_seq: u64,
    pub previous_start_lsn: Lsn,
}

const HEADER_PREFIX: &str = "-- pgincr segment=";

impl fmt::Display for SegmentHeader {
    /// `-- pgincr segment=8 previous=7 previous_start_lsn=0/160C1E0` (a comment to psql).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{HEADER_PREFIX}{} previous={} previous_start_lsn={}",
            self.seq, self.previous_seq, self.previous_start_lsn
        )
    }
}

impl SegmentHeader {
    /// The header of segment `seq` following the chain of `manifest` (as it ends now).
    pub fn following(manifest: &Manifest) -> SegmentHeader {
        match manifest.segments.last() {
            Some(last) => SegmentHeader {
                seq: last.seq + 1,
                previous_seq: last.seq,
                previous_start_lsn: last.start_lsn,
            },
            None => SegmentHeader {
                seq: 1,
                previous_seq: 0,
                previous_start_lsn: manifest.source.stream_start_lsn,
            },
        }
    }

    /// Parses a header line (with or without its newline); `None` for any other line.
    pub fn parse(line: &str) -> Option<SegmentHeader> {
        let rest = line
            .trim_end_matches(['\n', '\r'])
            .strip_prefix(HEADER_PREFIX)?;
        let mut fields = rest.split(' ');
        let seq = fields.next()?.parse().ok()?;
        let previous_seq = fields.next()?.strip_prefix("previous=")?.parse().ok()?;
        let previous_start_lsn = fields
            .next()?
            .strip_prefix("previous_start_lsn=")?
            .parse()
            .ok()?;
        fields.next().is_none().then_some(SegmentHeader {
            seq,
            previous_seq,
            previous_start_lsn,
        })
    }

    /// The header line with its newline, as written at the start of a segment file.
    pub fn line(&self) -> String {
        format!("{self}\n{SETTINGS_PREAMBLE}\n")
    }
}

/// The second line of every segment: the settings its SQL is written for, so that
/// `psql -f` of segment files reads every value as decoder_sql wrote it whatever the target's
/// defaults (`pgincr restore` pins the same on its sessions). Readers skip it.
pub const SETTINGS_PREAMBLE: &str = "SET standard_conforming_strings = on; SET array_nulls = on; \
SET backslash_quote = safe_encoding; SET DateStyle = 'ISO, YMD'; SET IntervalStyle = postgres; \
SET xmloption = content; SET TimeZone = 'UTC'; SET extra_float_digits = 3; \
SET bytea_output = hex; SET lc_monetary = 'C'; SET search_path = pg_catalog;";

/// Settings lines of segments written by earlier versions, still recognised as such.
const EARLIER_PREAMBLES: &[&str] = &[
    "SET standard_conforming_strings = on; SET array_nulls = on; \
SET backslash_quote = safe_encoding; SET DateStyle = 'ISO, YMD'; SET IntervalStyle = postgres; \
SET xmloption = content; SET TimeZone = 'UTC';",
];

/// `line` (without its line break) is a segment's settings line, of this or an earlier
/// version.
pub fn is_settings_preamble(line: &str) -> bool {
    line == SETTINGS_PREAMBLE || EARLIER_PREAMBLES.contains(&line)
}

/// How a segment file begins, as far as continuity is concerned.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SegmentStart {
    pub header: Option<SegmentHeader>,
    /// When the file begins inside a transaction: that transaction's end LSN.
    pub continued_transaction_end: Option<Lsn>,
}

/// What a segment must continue: its place in the chain and how its predecessor ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChainPosition {
    pub seq: u64,
    /// The predecessor's seq and start LSN (0 and the stream's start for the first
    /// segment); `None` when the predecessor was pruned.
    pub previous: Option<(u64, Lsn)>,
    /// The end LSN of the transaction the predecessor leaves open: `Some(None)` when it
    /// ends between transactions, `None` when not known.
    pub open_transaction_end: Option<Option<Lsn>>,
}

/// Why a segment file does not continue the chain at `position`; `None` when it does.
pub fn continuity_problem(
    name: &str,
    position: &ChainPosition,
    start: &SegmentStart,
) -> Option<String> {
    if let Some(h) = start.header {
        let previous_differs = position
            .previous
            .is_some_and(|(seq, lsn)| (h.previous_seq, h.previous_start_lsn) != (seq, lsn));
        if h.seq != position.seq || previous_differs {
            return Some(format!(
                "{name} is segment {} following segment {} (which starts after {}), but the \
                 chain continues with segment {}{}: it does not continue the chain, and the \
                 transactions in between are not in this repository (was it copied while \
                 `pgincr stream` ran, or taken from another repository?)",
                h.seq,
                h.previous_seq,
                h.previous_start_lsn,
                position.seq,
                position
                    .previous
                    .map(|(seq, lsn)| format!(" after segment {seq} (which starts after {lsn})"))
                    .unwrap_or_default()
            ));
        }
    }
    if let (Some(end), Some(left_open)) = (
        start.continued_transaction_end,
        position.open_transaction_end,
    ) && left_open != Some(end)
    {
        return Some(format!(
            "{name} begins inside a transaction ending at {end}, but the segment before it {}: \
             the beginning of that transaction is missing",
            match left_open {
                Some(other) => format!("leaves open a different one (ending at {other})"),
                None => "ends between transactions".to_owned(),
            }
        ));
    }
    None
}

/// Where the open segment must continue the chain, given the manifest.
fn open_segment_position(repo: &Repo, manifest: &Manifest) -> Result<ChainPosition> {
    let next = SegmentHeader::following(manifest);
    let open_transaction_end = transaction_left_open(repo, &manifest.segments)?;
    Ok(ChainPosition {
        seq: next.seq,
        previous: Some((next.previous_seq, next.previous_start_lsn)),
        open_transaction_end,
    })
}

/// The end LSN of the transaction that the closed segments `segments` leave open:
/// `Some(None)` when they end between transactions, `None` when that is not known (a file
/// is missing). A transaction larger than a segment spans several: segments with neither a
/// BEGIN nor a COMMIT line of their own (wholly inside it, or empty) leave open what the one
/// before them left open.
pub fn transaction_left_open(repo: &Repo, segments: &[Segment]) -> Result<Option<Option<Lsn>>> {
    for seg in segments.iter().rev() {
        if let Some(recorded) = seg.open_at_end {
            return Ok(Some(recorded.transaction_end));
        }
        if !repo.has_stored(&seg.file.path)? {
            return Ok(None);
        }
        let s = summarize(vec![(
            crate::repo::SqlSource::Stored(repo.clone(), seg.file.path.clone()),
            seg.file.path.clone(),
        )])?;
        if !s.leaves_open_as_before() {
            return Ok(Some(s.unfinished_end_lsn));
        }
    }
    Ok(Some(None))
}

/// Whether `segments/open.sql` continues the last closed segment: `Ok(Some(problem))` when
/// it does not (its transactions must not be applied after the chain: some in between are
/// missing). Restore, verify and stream check it before using the open segment.
pub fn open_segment_problem(repo: &Repo, manifest: &Manifest) -> Result<Option<String>> {
    let path = repo.open_segment_path();
    if !path.exists() {
        return Ok(None);
    }
    let name = format!("{}/{}", repo::SEGMENTS_DIR, repo::OPEN_SEGMENT);
    let summary = summarize(vec![(path, name.clone())])?;
    if summary.bytes == 0 {
        return Ok(None);
    }
    let position = open_segment_position(repo, manifest)?;
    Ok(continuity_problem(&name, &position, &summary.start()))
}

/// [`open_segment_problem`] as an error, for commands that must not go on.
pub fn ensure_open_segment_continues(repo: &Repo, manifest: &Manifest) -> Result<()> {
    match open_segment_problem(repo, manifest)? {
        None => Ok(()),
        Some(problem) => Err(Error::Repository(problem)),
    }
}

/// Breaks in the chain: each segment must start where the previous one ended, and the
/// first where the stream starts (or where the oldest kept base needs it to).
pub fn gaps(manifest: &Manifest) -> Vec<String> {
    let mut problems = Vec::new();
    let mut prev: Option<&Segment> = None;
    for seg in &manifest.segments {
        if let Some(p) = prev {
            if seg.seq != p.seq + 1 {
                problems.push(format!(
                    "segment {} follows segment {}: segment(s) missing from the chain",
                    seg.seq, p.seq
                ));
            } else if seg.start_lsn != p.end_lsn {
                problems.push(format!(
                    "gap in the change stream: segment {} ends at {} but segment {} starts after {}",
                    p.seq, p.end_lsn, seg.seq, seg.start_lsn
                ));
            }
        }
        prev = Some(seg);
    }
    if let Some(first) = manifest.segments.first()
        && let Some(oldest) = manifest.bases.iter().map(|b| b.consistent_lsn).min()
        && first.start_lsn > oldest
    {
        problems.push(format!(
            "the oldest segment ({}) starts after {}, past the consistent point {} of the oldest base backup",
            first.seq, first.start_lsn, oldest
        ));
    }
    problems
}

/// Index of the first segment a restore from a base with consistent point `cp` must read:
/// the first one holding a transaction that ends after `cp`, or earlier if that one starts
/// inside a transaction begun before it. `segments.len()` when none is needed.
pub fn first_needed(segments: &[Segment], cp: Lsn) -> usize {
    let mut i = segments
        .iter()
        .position(|s| s.end_lsn > cp)
        .unwrap_or(segments.len());
    while i > 0 && i < segments.len() && segments[i].starts_in_transaction {
        i -= 1;
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repo::{FileEntry, Source};

    fn seg(seq: u64, start: u64, end: u64, starts_in_transaction: bool) -> Segment {
        Segment {
            seq,
            file: FileEntry {
                path: String::new(),
                bytes: 0,
                sha256: String::new(),
                sql_bytes: 0,
                compression: "none".into(),
                encryption: None,
            },
            start_lsn: Lsn(start),
            end_lsn: Lsn(end),
            transactions: 1,
            starts_in_transaction,
            last_commit_time: None,
            closed: String::new(),
            skipped_changes: 0,
            open_at_end: None,
        }
    }

    fn manifest(segments: Vec<Segment>) -> Manifest {
        Manifest {
            format: 1,
            created: String::new(),
            source: Source {
                system_identifier: String::new(),
                database: String::new(),
                slot: String::new(),
                stream_start_lsn: Lsn(100),
                confirmed_clean_lsn: None,
                missing_identity: Default::default(),
            },
            bases: vec![],
            segments,
            globals: vec![],
            prune_history: vec![],
            encryption: None,
        }
    }

    #[test]
    fn headers_round_trip_and_other_lines_are_not_headers() {
        let h = SegmentHeader {
            seq: 8,
            previous_seq: 7,
            previous_start_lsn: Lsn(0x160_C1E0),
        };
        assert_eq!(
            h.to_string(),
            "-- pgincr segment=8 previous=7 previous_start_lsn=0/160C1E0"
        );
        assert_eq!(h.line(), format!("{h}\n{SETTINGS_PREAMBLE}\n"));
        assert_eq!(SegmentHeader::parse(&format!("{h}\n")), Some(h));
        assert_eq!(SegmentHeader::parse("-- pgincr segment=8"), None);
        assert_eq!(SegmentHeader::parse("BEGIN; -- xid=1"), None);
        let m = manifest(vec![seg(1, 100, 200, false), seg(2, 200, 300, false)]);
        assert_eq!(
            SegmentHeader::following(&m),
            SegmentHeader {
                seq: 3,
                previous_seq: 2,
                previous_start_lsn: Lsn(200)
            }
        );
        assert_eq!(
            SegmentHeader::following(&manifest(vec![])),
            SegmentHeader {
                seq: 1,
                previous_seq: 0,
                previous_start_lsn: Lsn(100)
            }
        );
    }

    #[test]
    fn a_segment_continues_only_its_predecessor() {
        let position = ChainPosition {
            seq: 3,
            previous: Some((2, Lsn(200))),
            open_transaction_end: Some(Some(Lsn(350))),
        };
        let header = |seq, previous_seq, start| {
            Some(SegmentHeader {
                seq,
                previous_seq,
                previous_start_lsn: Lsn(start),
            })
        };
        let fine = SegmentStart {
            header: header(3, 2, 200),
            continued_transaction_end: Some(Lsn(350)),
        };
        assert_eq!(continuity_problem("f", &position, &fine), None);
        // A later segment of the same chain: segments in between are missing.
        let later = SegmentStart {
            header: header(5, 4, 400),
            continued_transaction_end: None,
        };
        let p = continuity_problem("f", &position, &later).unwrap();
        assert!(
            p.contains("is segment 5") && p.contains("continues with segment 3"),
            "{p}"
        );
        // Without a header, the transaction it begins in must be the one left open.
        let other_txn = SegmentStart {
            header: None,
            continued_transaction_end: Some(Lsn(900)),
        };
        let p = continuity_problem("f", &position, &other_txn).unwrap();
        assert!(p.contains("ending at 0/384"), "{p}");
        let between = ChainPosition {
            open_transaction_end: Some(None),
            ..position
        };
        assert!(continuity_problem("f", &between, &other_txn).is_some());
        // Beginning with a whole transaction is always a possible continuation.
        assert_eq!(
            continuity_problem("f", &position, &SegmentStart::default()),
            None
        );
        // Predecessor pruned and its end unknown: only the seq is checked.
        let pruned = ChainPosition {
            seq: 3,
            previous: None,
            open_transaction_end: None,
        };
        assert_eq!(continuity_problem("f", &pruned, &other_txn), None);
    }

    #[test]
    fn names_sort_in_stream_order() {
        assert_eq!(
            segment_file_name(42, Lsn(0x16B3_74D8)),
            "00000042_0000000016B374D8.sql"
        );
        assert!(segment_file_name(9, Lsn(0xFFFF)) < segment_file_name(10, Lsn(1)));
    }

    #[test]
    fn gaps_are_found() {
        let ok = manifest(vec![seg(1, 100, 200, false), seg(2, 200, 300, true)]);
        assert!(gaps(&ok).is_empty());
        let missing = manifest(vec![seg(1, 100, 200, false), seg(3, 300, 400, false)]);
        assert!(
            gaps(&missing)[0].contains("missing"),
            "{:?}",
            gaps(&missing)
        );
        let jump = manifest(vec![seg(1, 100, 200, false), seg(2, 250, 300, false)]);
        assert!(gaps(&jump)[0].contains("gap in the change stream"));
    }

    #[test]
    fn a_base_needs_segments_from_where_its_transactions_begin() {
        let segs = vec![
            seg(1, 100, 200, false),
            seg(2, 200, 300, false),
            seg(3, 300, 400, true),
            seg(4, 400, 500, true),
        ];
        assert_eq!(first_needed(&segs, Lsn(50)), 0);
        assert_eq!(first_needed(&segs, Lsn(250)), 1);
        // Segment 4 holds the first transaction past 420, but it starts inside a
        // transaction, which may begin in segment 3, which also starts inside one.
        assert_eq!(first_needed(&segs, Lsn(420)), 1);
        assert_eq!(first_needed(&segs, Lsn(500)), 4);
    }
}
