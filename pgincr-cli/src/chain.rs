//! The chain of change segments: naming, continuity, and which segments a base backup
//! needs. Shared by stream, restore, verify and prune.

use crate::repo::{Manifest, Segment};
use sqlgen::lsn::Lsn;

/// `00000042_0000000016B374D8.sql`: sequence number, then the LSN the segment starts after;
/// names sort in stream order.
pub fn segment_file_name(seq: u64, start_lsn: Lsn) -> String {
    format!("{seq:08}_{:016X}.sql", start_lsn.0)
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
            },
            start_lsn: Lsn(start),
            end_lsn: Lsn(end),
            transactions: 1,
            starts_in_transaction,
            last_commit_time: None,
            closed: String::new(),
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
            },
            bases: vec![],
            segments,
        }
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
