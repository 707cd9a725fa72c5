//! What a restore tells the operator: the summary, the dry-run listing, and the reject file
//! of transactions that were not applied.

use super::plan::{Selection, Target, Verdict};
use crate::repo::SqlSource;
use crate::repo::{Base, Repo};
use crate::segment::{Event, Location, Parser, StreamReader};
use crate::units::human_bytes;
use crate::{Error, Result};
use sqlgen::lsn::Lsn;
use sqlgen::txn::format_pg_timestamp;
use std::io::Write;
use std::path::{Path, PathBuf};

#[derive(Debug, Default)]
pub struct ApplyStats {
    pub applied: u64,
    pub in_base: u64,
    pub already_applied: u64,
    /// Left out by `--skip-transaction`.
    pub skipped_on_request: u64,
    /// Failed and left out under `--on-error=skip`.
    pub rejected: u64,
    pub bytes: u64,
    /// Rows loaded with COPY (runs of INSERTs into one table).
    pub copied_rows: u64,
    /// Statements run outside transactions (tablespaces created).
    pub outside_statements: u64,
    /// End LSN and commit time of the last transaction applied.
    pub last: Option<(Lsn, i64)>,
    /// The restore stopped at the target point (a later transaction exists).
    pub reached_target: bool,
    pub incomplete_tail: bool,
    pub elapsed_secs: f64,
    /// Sequence snapshots and table changes among the applied transactions.
    pub sequences: super::sequences::SequenceTracker,
}

impl ApplyStats {
    pub fn print_summary(&self, reject_file: Option<&Path>) {
        println!(
            "applied {} transaction(s) ({} of SQL) in {:.1}s; skipped {} already in the base, {} already applied",
            self.applied,
            human_bytes(self.bytes),
            self.elapsed_secs,
            self.in_base,
            self.already_applied
        );
        if self.copied_rows > 0 {
            println!(
                "{} row(s) of runs of INSERTs into one table were loaded with COPY",
                self.copied_rows
            );
        }
        if self.outside_statements > 0 {
            println!(
                "{} tablespace(s) created from the stream",
                self.outside_statements
            );
        }
        let file = reject_file.map_or(String::new(), |f| format!(" ({})", f.display()));
        if self.skipped_on_request > 0 {
            println!(
                "left out {} transaction(s) named by --skip-transaction{file}",
                self.skipped_on_request
            );
        }
        if self.rejected > 0 {
            println!(
                "{} transaction(s) failed and were not applied; their SQL and errors are in the reject file{file}",
                self.rejected
            );
        }
        if self.incomplete_tail {
            println!(
                "note: the newest transaction in the open segment is incomplete and was not applied"
            );
        }
    }
}

/// The reject file: every transaction left out, as SQL that can be applied by hand once the
/// target is fixed, each preceded by comments saying why it was left out.
pub struct Rejects {
    path: PathBuf,
    file: std::fs::File,
}

impl Rejects {
    pub fn create(path: &Path) -> Result<Rejects> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(Error::io(format!(
                "opening the reject file {}",
                path.display()
            )))?;
        Ok(Rejects {
            path: path.to_owned(),
            file,
        })
    }

    /// Appends a transaction left out, read again from the stream's files (a restore does
    /// not keep the transactions it applies in memory), after comments saying why.
    pub fn write_from_stream(
        &mut self,
        files: &[(SqlSource, String)],
        xid: u32,
        end_lsn: Lsn,
        begin: &Location,
        why: &str,
    ) -> Result<()> {
        let context = format!("writing the reject file {}", self.path.display());
        let mut out = std::io::BufWriter::new(&self.file);
        let mut header = format!(
            "-- pgincr restore: transaction xid={xid} end_lsn={end_lsn} ({begin}) was not applied\n"
        );
        for line in why.lines() {
            header.push_str(&format!("-- {line}\n"));
        }
        out.write_all(header.as_bytes())
            .map_err(Error::io(context.clone()))?;
        crate::segment::reread_transaction(files, begin, |line| {
            out.write_all(line)
                .and_then(|()| out.write_all(b"\n"))
                .map_err(Error::io(context.clone()))
        })?;
        out.write_all(b"\n").map_err(Error::io(context.clone()))?;
        out.flush().map_err(Error::io(context.clone()))?;
        drop(out);
        self.file.sync_data().map_err(Error::io(context))
    }
}

/// Lists what a restore would do, changing nothing.
pub fn dry_run(
    repo: &Repo,
    base: &Base,
    files: Vec<(SqlSource, String)>,
    mut selection: Selection,
) -> Result<()> {
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
    let mut count = 0u64;
    while let Some((line, at)) = reader.next_line()? {
        if let Some(Event::Txn(t)) = parser.feed(line, at).map_err(Error::Repository)? {
            let note = match selection.judge(&t.info) {
                Verdict::PastTarget => break,
                Verdict::InBase | Verdict::AlreadyApplied => continue,
                Verdict::Skip => " (left out: --skip-transaction)",
                Verdict::Apply => {
                    count += 1;
                    ""
                }
            };
            println!(
                "  {} {} {} {}{note}",
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

/// A `Selection` for a dry run from the start of `base`.
pub fn fresh_selection(
    base: &Base,
    target: Target,
    skip: Vec<super::plan::SkipRequest>,
) -> Selection {
    Selection {
        consistent_lsn: base.consistent_lsn,
        applied_upto: base.consistent_lsn,
        target,
        skip,
    }
}
/// Up to `shown` of `names`, then how many more there are.
pub fn name_list(names: &[String], shown: usize) -> String {
    let mut out = names
        .iter()
        .take(shown)
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join(", ");
    if names.len() > shown {
        out.push_str(&format!(
            " and {} more (listed in the log)",
            names.len() - shown
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_name_lists_are_cut_with_a_count() {
        let names: Vec<String> = ["a", "b", "c"].map(String::from).to_vec();
        assert_eq!(name_list(&names, 3), "a, b, c");
        assert_eq!(name_list(&names, 2), "a, b and 1 more (listed in the log)");
        assert_eq!(name_list(&[], 2), "");
    }
}
