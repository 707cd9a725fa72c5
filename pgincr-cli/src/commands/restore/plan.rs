//! Planning a restore: which base backup, which segment files, where to stop, and which
//! transactions of the stream to apply. Nothing here touches the target.

use crate::chain;
use crate::cli::RestoreArgs;
use crate::error::describe_pg_error;
use crate::repo::{self, Base, FileProblem, Manifest, Repo, SqlSource};
use crate::{Error, Result};
use sqlgen::lsn::Lsn;
use sqlgen::txn::{TxnInfo, parse_pg_timestamp};
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
    pub fn excludes(&self, txn: &TxnInfo) -> bool {
        match *self {
            Target::Latest => false,
            Target::Lsn(l) => txn.commit_lsn > l,
            Target::Time(t) => txn.commit_time > t,
        }
    }
}

/// A transaction the operator asked to leave out (`--skip-transaction`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SkipRequest {
    Xid(u32),
    EndLsn(Lsn),
}

impl SkipRequest {
    /// An xid (digits) or an end LSN (`0/1A2B3C`), also as the BEGIN line spells them
    /// (`xid=730`, `end_lsn=0/1A2B3C`).
    pub fn parse(text: &str) -> std::result::Result<Self, String> {
        let text = text.trim();
        let text = text
            .strip_prefix("xid=")
            .or_else(|| text.strip_prefix("end_lsn="))
            .unwrap_or(text);
        if text.contains('/') {
            return text
                .parse()
                .map(SkipRequest::EndLsn)
                .map_err(|e: sqlgen::lsn::LsnParseError| format!("{text:?}: {e}"));
        }
        text.parse().map(SkipRequest::Xid).map_err(|_| {
            format!("{text:?} is neither a transaction id nor an end LSN like 0/1A2B3C")
        })
    }

    fn matches(&self, txn: &TxnInfo) -> bool {
        match *self {
            SkipRequest::Xid(x) => txn.xid == x,
            SkipRequest::EndLsn(l) => txn.end_lsn == l,
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
    /// Left out at the operator's request; the restore moves past it.
    Skip,
    Apply,
}

/// Decides, transaction by transaction and in stream order, what a restore applies.
#[derive(Debug, Clone)]
pub struct Selection {
    pub consistent_lsn: Lsn,
    /// End of the last transaction applied (or judged to be applied).
    pub applied_upto: Lsn,
    pub target: Target,
    pub skip: Vec<SkipRequest>,
}

impl Selection {
    pub fn judge(&mut self, txn: &TxnInfo) -> Verdict {
        if txn.end_lsn <= self.consistent_lsn {
            Verdict::InBase
        } else if txn.end_lsn <= self.applied_upto {
            Verdict::AlreadyApplied
        } else if self.target.excludes(txn) {
            Verdict::PastTarget
        } else {
            self.applied_upto = txn.end_lsn;
            if self.skip.iter().any(|s| s.matches(txn)) {
                Verdict::Skip
            } else {
                Verdict::Apply
            }
        }
    }
}

/// The newest base whose contents all lie at or before the target.
/// The globals snapshots the stream took after `after` (the base's consistent point, or
/// where a resumed restore stands) and not past the target point, oldest first.
pub fn later_globals<'a>(
    manifest: &'a Manifest,
    base: &Base,
    after: Lsn,
    target: Target,
) -> Vec<&'a crate::globals::GlobalsSnapshot> {
    let after = after.max(base.consistent_lsn);
    manifest
        .globals
        .iter()
        .filter(|g| g.lsn > after)
        .filter(|g| match target {
            Target::Latest => true,
            Target::Lsn(l) => g.lsn <= l,
            Target::Time(t) => parse_pg_timestamp(&g.taken).is_some_and(|taken| taken <= t),
        })
        .collect()
}

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
) -> Result<Vec<(SqlSource, String)>> {
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
    // A directory-format base's data files, checked with everything else before the target
    // is touched (its toc.dat is `base.dump`).
    for f in &base.dump_files {
        ensure_intact(repo, f, || format!("{} is missing", f.path))?;
    }
    let mut files = Vec::new();
    for s in needed {
        ensure_intact(repo, &s.file, || {
            format!(
                "segment file {} is missing; restore cannot go past {}",
                s.file.path, s.start_lsn
            )
        })?;
        files.push((
            SqlSource::Stored(repo.clone(), s.file.path.clone()),
            s.file.path.clone(),
        ));
    }
    let open = repo.open_segment_path();
    // An object-store repository holds closed segments only; its open segment is the
    // stream's spool, not part of the repository.
    if repo.remote().is_none() && open.exists() {
        // An open segment from another moment (a repository copied while the stream ran)
        // would apply transactions after a gap as if none were missing.
        if let Some(problem) = chain::open_segment_problem(repo, manifest)? {
            return Err(Error::Repository(format!(
                "{problem}; restore refuses what `pgincr verify` fails on. To restore up to the \
                 last closed segment, move segments/{} out of the repository",
                repo::OPEN_SEGMENT
            )));
        }
        files.push((
            SqlSource::File(open),
            format!("{}/{}", repo::SEGMENTS_DIR, repo::OPEN_SEGMENT),
        ));
    }
    Ok(files)
}

/// A file that is missing or whose checksum differs from the manifest's is never applied;
/// `missing` says what a missing file means.
pub fn ensure_intact(
    repo: &Repo,
    f: &repo::FileEntry,
    missing: impl FnOnce() -> String,
) -> Result<()> {
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

/// The target point from `--to-lsn` or `--to-time`; reading a time needs a server.
pub async fn resolve_target(client: Option<&Client>, args: &RestoreArgs) -> Result<Target> {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn txn(xid: u32, end: u64, time: i64) -> TxnInfo {
        TxnInfo {
            xid,
            commit_lsn: Lsn(end - 8),
            end_lsn: Lsn(end),
            commit_time: time,
        }
    }

    #[test]
    fn selection_skips_the_base_repeats_and_what_lies_past_the_target() {
        let mut sel = Selection {
            consistent_lsn: Lsn(100),
            applied_upto: Lsn(150),
            target: Target::Time(30),
            skip: Vec::new(),
        };
        let verdicts: Vec<Verdict> = [
            txn(1, 90, 1),
            txn(1, 140, 2),
            txn(1, 200, 10),
            txn(1, 200, 10),
            txn(1, 180, 9),
            txn(1, 300, 31),
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
    fn requested_skips_match_by_xid_or_end_lsn_and_move_past_the_transaction() {
        let mut sel = Selection {
            consistent_lsn: Lsn(100),
            applied_upto: Lsn(100),
            target: Target::Latest,
            skip: vec![
                SkipRequest::parse("xid=7").unwrap(),
                SkipRequest::parse("end_lsn=0/12C").unwrap(),
            ],
        };
        let verdicts: Vec<Verdict> = [txn(6, 200, 1), txn(7, 250, 2), txn(8, 300, 3)]
            .iter()
            .map(|t| sel.judge(t))
            .collect();
        assert_eq!(verdicts, [Verdict::Apply, Verdict::Skip, Verdict::Skip]);
        assert_eq!(sel.applied_upto, Lsn(300));
        assert_eq!(SkipRequest::parse("7"), Ok(SkipRequest::Xid(7)));
        assert!(SkipRequest::parse("x").unwrap_err().contains("neither"));
        assert!(SkipRequest::parse("0/zz").is_err());
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
