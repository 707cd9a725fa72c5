//! `pgincr verify`: every file against the manifest's checksum, every compressed file
//! decompressed in full, every segment's transactions against its recorded LSN range, the
//! chain of segments for gaps, both in the manifest and in the files' contents (each file's
//! header and first transaction continue its predecessor), and whether the open segment
//! continues the chain. With `--restore-test`, a full restore into a scratch database.
//! An encrypted repository's files are checked against their checksums without the key;
//! their contents are read too when `--identity` is given.

use crate::chain::{self, ChainPosition};
use crate::cli::{RepoArgs, RestoreArgs, VerifyArgs};
use crate::repo::{self, FileEntry, FileProblem, Repo};
use crate::segment::summarize;
use crate::{Error, Result};
use std::path::PathBuf;

pub async fn run(args: VerifyArgs, bindir: Option<PathBuf>) -> Result<()> {
    let repo = args.repo.open()?;
    let manifest = repo.load()?;
    if let Some(identity) = &args.identity {
        crate::crypt::load_identities(identity)?;
    }
    // Without the key, an encrypted repository's checksums and chain are still checked.
    let read_contents = manifest.encryption.is_none() || args.identity.is_some();
    let mut problems: Vec<String> = Vec::new();
    let mut checked = 0usize;
    let mut refused = 0u64;
    let sample = Sample::new(args.sample);
    let check_file = |repo: &Repo, f: &FileEntry, read_contents: bool| {
        if sample.picks(&f.path) {
            sample.picked.set(sample.picked.get() + 1);
            check_file(repo, f, read_contents)
        } else {
            check_size(repo, f)
        }
    };

    for base in &manifest.bases {
        for f in base.files() {
            checked += 1;
            if let Err(p) = check_file(&repo, f, read_contents) {
                problems.push(format!("base {}: {p}", base.id));
            }
        }
    }
    for g in &manifest.globals {
        checked += 1;
        if let Err(p) = check_file(&repo, &g.file, read_contents) {
            problems.push(format!("globals taken at {}: {p}", g.lsn));
        }
    }
    // How the previous segment in the chain ends: its seq, start and the transaction it
    // leaves open (None after a segment that could not be read).
    let mut previous: Option<(u64, sqlgen::lsn::Lsn, Option<sqlgen::lsn::Lsn>)> = None;
    for seg in &manifest.segments {
        checked += 1;
        let before = previous.take();
        let read_in_full = read_contents && sample.picks(&seg.file.path);
        // From an object store, a segment read in full is downloaded once: its checksum,
        // its SQL and its place in the chain are all read from that copy.
        let copy = if read_in_full && repo.remote().is_some() {
            match download(&repo, &seg.file) {
                Ok(copy) => Some(copy),
                Err(p) => {
                    problems.push(format!("segment {}: {p}", seg.seq));
                    continue;
                }
            }
        } else {
            None
        };
        let file_checked = match &copy {
            Some(copy) => {
                sample.picked.set(sample.picked.get() + 1);
                check_copy(&copy.path, &seg.file)
            }
            None => check_file(&repo, &seg.file, read_contents),
        };
        if let Err(p) = file_checked {
            problems.push(format!("segment {}: {p}", seg.seq));
            continue;
        }
        if !read_in_full {
            continue;
        }
        let source = match &copy {
            Some(copy) => repo::SqlSource::File(copy.path.clone()),
            None => repo::SqlSource::Stored(repo.clone(), seg.file.path.clone()),
        };
        match summarize(vec![(source, seg.file.path.clone())]) {
            Ok(s) => {
                refused += s.refused_messages;
                previous = Some((seg.seq, seg.start_lsn, s.unfinished_end_lsn));
                let first_of_chain = seg.seq == 1 && manifest.segments[0].seq == 1;
                let position = ChainPosition {
                    seq: seg.seq,
                    previous: match before {
                        Some((seq, start, _)) if seq + 1 == seg.seq => Some((seq, start)),
                        _ if first_of_chain => Some((0, manifest.source.stream_start_lsn)),
                        _ => None,
                    },
                    open_transaction_end: match before {
                        Some((seq, _, open)) if seq + 1 == seg.seq => Some(open),
                        _ if first_of_chain => Some(None),
                        _ => None,
                    },
                };
                if let Some(p) = chain::continuity_problem(&seg.file.path, &position, &s.start()) {
                    problems.push(format!("segment {}: {p}", seg.seq));
                }
                if s.starts_in_transaction != seg.starts_in_transaction {
                    problems.push(format!(
                        "segment {}: {} inside a transaction, the manifest says it does{}",
                        seg.seq,
                        if s.starts_in_transaction {
                            "begins"
                        } else {
                            "does not begin"
                        },
                        if seg.starts_in_transaction {
                            ""
                        } else {
                            " not"
                        }
                    ));
                }
                let end = s
                    .last_end_lsn
                    .map_or(seg.start_lsn, |e| e.max(seg.start_lsn));
                if end != seg.end_lsn || s.transactions != seg.transactions {
                    problems.push(format!(
                        "segment {}: holds {} transaction(s) up to {end}, the manifest says {} up to {}",
                        seg.seq, s.transactions, seg.transactions, seg.end_lsn
                    ));
                }
            }
            Err(e) => problems.push(format!("segment {}: {e}", seg.seq)),
        }
    }
    problems.extend(chain::gaps(&manifest));
    match chain::open_segment_problem(&repo, &manifest) {
        Ok(None) => {}
        Ok(Some(p)) => problems.push(format!("open segment: {p}")),
        Err(e) => problems.push(format!("open segment: {e}")),
    }

    for p in &problems {
        println!("FAIL {p}");
    }
    if refused > 0 {
        // Not a fault of the backup: someone wrote a DDL message the capture did not (or one
        // that is not a complete statement), and the plugin kept it out of the SQL.
        println!(
            "WARN {refused} DDL message(s) refused by decoder_sql and kept as comments, not \
             executed on restore (lines beginning `-- decoder_sql: refused`)"
        );
    }
    if !read_contents {
        println!(
            "NOTE the repository is encrypted: sizes and checksums checked; give --identity \
             FILE to also decrypt every file and check its contents"
        );
    }
    if sample.percent < 100.0 {
        println!(
            "NOTE --sample {}: {} file(s) read and checked in full, the others by presence and \
             size only",
            sample.percent,
            sample.picked.get()
        );
    }
    println!(
        "checked {checked} file(s), {} base backup(s), {} segment(s): {}",
        manifest.bases.len(),
        manifest.segments.len(),
        if problems.is_empty() {
            "all good".to_owned()
        } else {
            format!("{} problem(s)", problems.len())
        }
    );
    if !problems.is_empty() {
        return Err(Error::VerifyFailed {
            problems: problems.len(),
        });
    }
    if let Some(target) = args.restore_test {
        println!(
            "restore test into {}",
            crate::conninfo::split_password(&target).map_or(String::new(), |(d, _)| d)
        );
        let restore = RestoreArgs {
            repo: RepoArgs {
                repo: args.repo.repo.clone(),
                spool: args.repo.spool.clone(),
            },
            identity: args.identity.clone(),
            target,
            create: true,
            to_time: None,
            to_lsn: None,
            base: None,
            no_globals: true,
            tablespace_map: vec![],
            dry_run: false,
            batch_size: 1 << 20,
            copy_min_rows: 32,
            jobs: 1,
        };
        super::restore::run(restore, bindir).await?;
        println!("restore test passed");
    }
    Ok(())
}

/// Which files a `--sample` run reads in full: each with the given probability.
struct Sample {
    percent: f64,
    seed: u64,
    picked: std::cell::Cell<usize>,
}

impl Sample {
    fn new(percent: f64) -> Self {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        Sample {
            percent,
            seed,
            picked: std::cell::Cell::new(0),
        }
    }

    /// Whether `path` is read in full (the same answer every time in one run).
    fn picks(&self, path: &str) -> bool {
        use std::hash::Hasher;
        self.percent >= 100.0 || {
            let mut h = std::collections::hash_map::DefaultHasher::new();
            h.write_u64(self.seed);
            h.write(path.as_bytes());
            (h.finish() % 10_000) as f64 / 100.0 < self.percent
        }
    }
}

/// Presence and size only (a file `--sample` did not pick).
fn check_size(repo: &Repo, f: &FileEntry) -> std::result::Result<(), String> {
    match repo.stored_size(&f.path).map_err(|e| e.to_string())? {
        None => Err(format!("{} is missing", f.path)),
        Some(bytes) if bytes != f.bytes => Err(format!(
            "{} is damaged: {bytes} bytes, manifest says {}",
            f.path, f.bytes
        )),
        Some(_) => Ok(()),
    }
}

/// Size, checksum and (for compressed or encrypted files, when `read_contents`) full
/// decompression.
fn check_file(repo: &Repo, f: &FileEntry, read_contents: bool) -> std::result::Result<(), String> {
    match repo.stored_file_problem(f).map_err(|e| e.to_string())? {
        None => {}
        Some(FileProblem::Missing) => return Err(format!("{} is missing", f.path)),
        Some(FileProblem::Damaged { sha256, bytes }) => return Err(damaged(f, &sha256, bytes)),
    }
    if !read_contents {
        return Ok(());
    }
    check_sql(repo.open_sql(&f.path).map_err(|e| e.to_string())?, f)
}

fn damaged(f: &FileEntry, sha256: &str, bytes: u64) -> String {
    format!(
        "{} is damaged: checksum {sha256} ({bytes} bytes), manifest says {} ({} bytes)",
        f.path, f.sha256, f.bytes
    )
}

/// A repository file downloaded from an object store, deleted when dropped.
struct Downloaded {
    path: PathBuf,
    _dir: tempfile::TempDir,
}

fn download(repo: &Repo, f: &FileEntry) -> std::result::Result<Downloaded, String> {
    if !repo.has_stored(&f.path).map_err(|e| e.to_string())? {
        return Err(format!("{} is missing", f.path));
    }
    let dir = tempfile::tempdir().map_err(|e| format!("a temporary directory: {e}"))?;
    // The same name, so that its suffixes (.zst, .age) say how to read it.
    let name = std::path::Path::new(&f.path)
        .file_name()
        .ok_or_else(|| format!("{} names no file", f.path))?;
    let path = dir.path().join(name);
    let mut out = std::fs::File::create(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut stored = repo.open_stored(&f.path).map_err(|e| e.to_string())?;
    std::io::copy(&mut stored, &mut out).map_err(|e| format!("downloading {}: {e}", f.path))?;
    Ok(Downloaded { path, _dir: dir })
}

/// [`check_file`] of a downloaded copy.
fn check_copy(path: &std::path::Path, f: &FileEntry) -> std::result::Result<(), String> {
    let (sha256, bytes) = repo::hash_file(path).map_err(|e| e.to_string())?;
    if sha256 != f.sha256 || bytes != f.bytes {
        return Err(damaged(f, &sha256, bytes));
    }
    check_sql(repo::open_sql(path).map_err(|e| e.to_string())?, f)
}

/// Decompresses (and decrypts) a file in full and compares its SQL's size with the manifest.
fn check_sql(
    mut reader: Box<dyn std::io::Read + Send>,
    f: &FileEntry,
) -> std::result::Result<(), String> {
    let total = std::io::copy(&mut reader, &mut std::io::sink())
        .map_err(|e| format!("{} cannot be decompressed: {e}", f.path))?;
    if total != f.sql_bytes {
        return Err(format!(
            "{} holds {total} bytes of SQL, manifest says {}",
            f.path, f.sql_bytes
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_pick_their_share_of_files() {
        let paths: Vec<String> = (0..2000)
            .map(|i| format!("segments/{i:08}.sql.zst"))
            .collect();
        let count = |percent| {
            let s = Sample::new(percent);
            paths.iter().filter(|p| s.picks(p)).count()
        };
        assert_eq!(count(100.0), 2000);
        assert_eq!(count(0.0), 0);
        let half = count(50.0);
        assert!((800..1200).contains(&half), "{half}");
        let s = Sample::new(30.0);
        assert!(paths.iter().all(|p| s.picks(p) == s.picks(p)));
    }
}
