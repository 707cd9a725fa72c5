//! `pgincr prune`: retention. Deletes base backups beyond what `--keep-bases` and
//! `--keep-age` keep (the newest is always kept), then the segments that no kept base
//! needs. The manifest is updated first, so a crash leaves unreferenced files at worst.

use crate::chain;
use crate::cli::PruneArgs;
use crate::repo::{self, Repo};
use crate::units::human_bytes;
use crate::{Error, Result};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Which base backups (by index, oldest first) are kept.
pub fn kept_bases(
    ids_and_times: &[(String, Option<i128>)],
    keep_bases: Option<usize>,
    keep_age: Option<Duration>,
    now_micros: i128,
) -> Vec<bool> {
    let n = ids_and_times.len();
    (0..n)
        .map(|i| {
            let newest = i + 1 == n;
            let by_count = keep_bases.is_some_and(|k| n - i <= k);
            let by_age = keep_age.is_some_and(|age| {
                ids_and_times[i]
                    .1
                    .is_some_and(|t| now_micros - t <= age.as_micros() as i128)
            });
            newest || by_count || by_age
        })
        .collect()
}

pub async fn run(args: PruneArgs) -> Result<()> {
    if args.keep_bases.is_none() && args.keep_age.is_none() {
        return Err(Error::Invalid(
            "say what to keep: --keep-bases N and/or --keep-age DURATION".into(),
        ));
    }
    let repo = Repo::new(&args.repo.repo);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i128);
    let plan = |m: &repo::Manifest| {
        let times: Vec<_> = m
            .bases
            .iter()
            .map(|b| (b.id.clone(), repo::parse_rfc3339_micros(&b.finished)))
            .collect();
        let keep = kept_bases(&times, args.keep_bases, args.keep_age, now);
        let oldest_kept = m
            .bases
            .iter()
            .zip(&keep)
            .filter(|(_, k)| **k)
            .map(|(b, _)| b.consistent_lsn)
            .min();
        let first_needed = oldest_kept.map_or(0, |cp| chain::first_needed(&m.segments, cp));
        (keep, first_needed)
    };
    let manifest = repo.load()?;
    let (keep, first_needed) = plan(&manifest);
    let doomed_bases: Vec<_> = manifest
        .bases
        .iter()
        .zip(&keep)
        .filter(|(_, k)| !**k)
        .map(|(b, _)| b.clone())
        .collect();
    let doomed_segments = manifest.segments[..first_needed].to_vec();
    let bytes: u64 = doomed_bases.iter().map(|b| b.bytes()).sum::<u64>()
        + doomed_segments.iter().map(|s| s.file.bytes).sum::<u64>();
    let verb = if args.dry_run {
        "would delete"
    } else {
        "deleting"
    };
    for b in &doomed_bases {
        println!(
            "{verb} base backup {} (consistent point {})",
            b.id, b.consistent_lsn
        );
    }
    for s in &doomed_segments {
        println!(
            "{verb} segment {} ({} to {})",
            s.file.path, s.start_lsn, s.end_lsn
        );
    }
    if args.dry_run {
        println!(
            "{} base backup(s), {} segment(s), {} would be freed",
            doomed_bases.len(),
            doomed_segments.len(),
            human_bytes(bytes)
        );
        return Ok(());
    }
    repo.update(|m| {
        let doomed: Vec<&str> = doomed_bases.iter().map(|b| b.id.as_str()).collect();
        m.bases.retain(|b| !doomed.contains(&b.id.as_str()));
        let cut = doomed_segments.len().min(m.segments.len());
        m.segments.drain(..cut);
        Ok(())
    })?;
    for b in &doomed_bases {
        let dir = repo.path(repo::BASES_DIR).join(&b.id);
        std::fs::remove_dir_all(&dir).map_err(Error::io(format!("removing {}", dir.display())))?;
    }
    for s in &doomed_segments {
        let path = repo.path(&s.file.path);
        std::fs::remove_file(&path).map_err(Error::io(format!("removing {}", path.display())))?;
    }
    println!(
        "deleted {} base backup(s) and {} segment(s), freed {}",
        doomed_bases.len(),
        doomed_segments.len(),
        human_bytes(bytes)
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_newest_by_count_and_age() {
        let day = 86_400_000_000i128;
        let bases: Vec<_> = (0..4)
            .map(|i| (format!("b{i}"), Some(i as i128 * day)))
            .collect();
        let now = 3 * day;
        assert_eq!(
            kept_bases(&bases, Some(2), None, now),
            [false, false, true, true]
        );
        assert_eq!(
            kept_bases(&bases, None, Some(Duration::from_secs(86_400)), now),
            [false, false, true, true]
        );
        assert_eq!(
            kept_bases(&bases, Some(1), Some(Duration::from_secs(2 * 86_400)), now),
            [false, true, true, true]
        );
        assert_eq!(
            kept_bases(&bases, Some(0), None, now),
            [false, false, false, true]
        );
    }
}
