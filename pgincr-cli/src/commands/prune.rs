//! `pgincr prune`: retention. Deletes the base backups the policy does not keep (the newest is
//! always kept), then the segments that no kept base needs and that are older than the
//! segment age kept. The manifest is updated first, so a crash leaves unreferenced files at
//! worst.
//!
//! Without any retention option the default policy applies: bases of the last 30 days, then
//! the newest base of each of the last 12 months, and every segment of the last 7 days.

use crate::chain;
use crate::cli::PruneArgs;
use crate::globals::GLOBALS_DIR;
use crate::repo;
use crate::storage::{Listed, ObjectStorage};
use crate::units::human_bytes;
use crate::{Error, Result};
use std::collections::HashSet;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const DAY: Duration = Duration::from_secs(86_400);

/// What prune keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    pub keep_bases: Option<usize>,
    pub keep_age: Option<Duration>,
    pub keep_monthly: Option<usize>,
    pub keep_segments_age: Option<Duration>,
}

impl Policy {
    /// The policy of the options given, or the default one when none was.
    pub fn from_args(args: &PruneArgs) -> Self {
        let given = Policy {
            keep_bases: args.keep_bases,
            keep_age: args.keep_age,
            keep_monthly: args.keep_monthly,
            keep_segments_age: args.keep_segments_age,
        };
        if given
            == (Policy {
                keep_bases: None,
                keep_age: None,
                keep_monthly: None,
                keep_segments_age: None,
            })
        {
            Policy::default_retention()
        } else {
            given
        }
    }

    /// Bases of the last 30 days, the newest of each of the last 12 months, segments of the
    /// last 7 days.
    pub fn default_retention() -> Self {
        Policy {
            keep_bases: None,
            keep_age: Some(30 * DAY),
            keep_monthly: Some(12),
            keep_segments_age: Some(7 * DAY),
        }
    }
}

/// Why a base backup is kept, or None when it goes.
pub fn kept_bases(
    ids_and_times: &[(String, Option<i128>)],
    policy: &Policy,
    now_micros: i128,
) -> Vec<Option<String>> {
    let n = ids_and_times.len();
    // The newest base of each calendar month, newest month first.
    let mut month_newest: Vec<((i32, u8), usize)> = Vec::new();
    for (i, (_, t)) in ids_and_times.iter().enumerate().rev() {
        if let Some(month) = t.and_then(month_of)
            && !month_newest.iter().any(|(m, _)| *m == month)
        {
            month_newest.push((month, i));
        }
    }
    (0..n)
        .map(|i| {
            let time = ids_and_times[i].1;
            if i + 1 == n {
                return Some("the newest base".to_owned());
            }
            if let Some(k) = policy.keep_bases
                && n - i <= k
            {
                return Some(format!("one of the {k} newest"));
            }
            if let Some(age) = policy.keep_age
                && time.is_some_and(|t| now_micros - t <= age.as_micros() as i128)
            {
                return Some(format!("younger than {}", humantime::format_duration(age)));
            }
            if let Some(months) = policy.keep_monthly
                && let Some(rank) = month_newest.iter().position(|(_, j)| *j == i)
                && rank < months
            {
                let (y, m) = month_newest[rank].0;
                return Some(format!(
                    "the newest of {y}-{m:02}, one of the last {months} months"
                ));
            }
            None
        })
        .collect()
}

/// (year, month) in UTC of a time in microseconds since the epoch.
fn month_of(micros: i128) -> Option<(i32, u8)> {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(micros * 1000).ok()?;
    Some((t.year(), t.month() as u8))
}

/// How many of the oldest segments go: those before the first one the oldest kept base needs
/// (`first_needed`), except that none closed within `keep_age` goes (nor any after it, so what
/// stays is one unbroken chain).
pub fn segments_to_delete(
    closed_micros: &[Option<i128>],
    first_needed: usize,
    keep_age: Option<Duration>,
    now_micros: i128,
) -> usize {
    let young = keep_age.and_then(|age| {
        closed_micros
            .iter()
            .position(|t| t.is_none_or(|t| now_micros - t <= age.as_micros() as i128))
    });
    young.map_or(first_needed, |y| y.min(first_needed))
}

/// Directories whose objects the manifest names; anything else in them is an orphan.
const MANAGED_DIRS: [&str; 3] = [repo::BASES_DIR, repo::SEGMENTS_DIR, GLOBALS_DIR];

/// The objects under the managed directories that `named` does not hold and that were last
/// written more than `grace` before `now` (seconds since the epoch).
pub fn orphans<'a>(
    listed: &'a [Listed],
    named: &HashSet<&str>,
    grace: Duration,
    now: i64,
) -> Vec<&'a Listed> {
    listed
        .iter()
        .filter(|o| {
            MANAGED_DIRS
                .iter()
                .any(|d| o.rel.strip_prefix(d).is_some_and(|r| r.starts_with('/')))
        })
        .filter(|o| !named.contains(o.rel.as_str()))
        .filter(|o| now.saturating_sub(o.modified) >= grace.as_secs() as i64)
        .collect()
}

/// Object storage: deletes (or with `dry_run` lists) the objects no manifest entry names.
fn prune_orphans(
    repo: &repo::Repo,
    remote: &ObjectStorage,
    grace: Duration,
    dry_run: bool,
) -> Result<(usize, u64)> {
    // Listed before the manifest is read: an object uploaded and registered in between is
    // named by what is read, one uploaded after the listing is not in it.
    let mut listed = Vec::new();
    for dir in MANAGED_DIRS {
        listed.extend(remote.list(dir)?);
    }
    let manifest = repo.load()?;
    let named: HashSet<&str> = manifest
        .bases
        .iter()
        .flat_map(|b| b.files())
        .chain(manifest.segments.iter().map(|s| &s.file))
        .chain(manifest.globals.iter().map(|g| &g.file))
        .map(|f| f.path.as_str())
        .collect();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    tracing::debug!(
        "{} object(s) under {MANAGED_DIRS:?}, {} named by the manifest",
        listed.len(),
        named.len()
    );
    let found = orphans(&listed, &named, grace, now);
    for o in &found {
        println!(
            "{} {} ({}): on the store but named by no manifest entry",
            if dry_run { "would delete" } else { "deleting" },
            o.rel,
            human_bytes(o.bytes)
        );
        if !dry_run {
            remote.delete(&o.rel)?;
        }
    }
    Ok((found.len(), found.iter().map(|o| o.bytes).sum()))
}

pub async fn run(args: PruneArgs) -> Result<()> {
    let policy = Policy::from_args(&args);
    let repo = args.repo.open()?;
    // A restore reads segments and bases prune would delete: it holds this lock shared.
    let _no_restore = match repo.lock_file(repo::READERS_LOCK, false) {
        Err(Error::Repository(_)) => {
            return Err(Error::Repository(format!(
                "a restore is reading {}: prune when it has finished",
                repo.location()
            )));
        }
        other => other?,
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i128);
    let plan = |m: &repo::Manifest| {
        let times: Vec<_> = m
            .bases
            .iter()
            .map(|b| (b.id.clone(), repo::parse_rfc3339_micros(&b.finished)))
            .collect();
        let keep = kept_bases(&times, &policy, now);
        let oldest_kept = m
            .bases
            .iter()
            .zip(&keep)
            .filter(|(_, k)| k.is_some())
            .map(|(b, _)| b.consistent_lsn)
            .min();
        let first_needed = oldest_kept.map_or(0, |cp| chain::first_needed(&m.segments, cp));
        let closed: Vec<_> = m
            .segments
            .iter()
            .map(|s| repo::parse_rfc3339_micros(&s.closed))
            .collect();
        let cut = segments_to_delete(&closed, first_needed, policy.keep_segments_age, now);
        // A restore applies globals taken after its base; the oldest kept base has its own.
        let globals_cut =
            oldest_kept.map_or(0, |cp| m.globals.iter().take_while(|g| g.lsn <= cp).count());
        (keep, cut, globals_cut)
    };
    let manifest = repo.load()?;
    let (keep, cut, globals_cut) = plan(&manifest);
    let doomed_globals = manifest.globals[..globals_cut].to_vec();
    if args.dry_run {
        for (b, why) in manifest.bases.iter().zip(&keep) {
            match why {
                Some(why) => println!("keep base backup {} ({why})", b.id),
                None => println!(
                    "would delete base backup {} (finished {}: kept by no rule)",
                    b.id, b.finished
                ),
            }
        }
    }
    let doomed_bases: Vec<_> = manifest
        .bases
        .iter()
        .zip(&keep)
        .filter(|(_, k)| k.is_none())
        .map(|(b, _)| b.clone())
        .collect();
    let doomed_segments = manifest.segments[..cut].to_vec();
    let bytes: u64 = doomed_bases.iter().map(|b| b.bytes()).sum::<u64>()
        + doomed_segments.iter().map(|s| s.file.bytes).sum::<u64>()
        + doomed_globals.iter().map(|g| g.file.bytes).sum::<u64>();
    for g in &doomed_globals {
        println!(
            "{} globals {} (taken at {}): older than the oldest kept base",
            if args.dry_run {
                "would delete"
            } else {
                "deleting"
            },
            g.file.path,
            g.lsn
        );
    }
    let verb = if args.dry_run {
        "would delete"
    } else {
        "deleting"
    };
    if !args.dry_run {
        for b in &doomed_bases {
            println!(
                "{verb} base backup {} (consistent point {})",
                b.id, b.consistent_lsn
            );
        }
    }
    for s in &doomed_segments {
        println!(
            "{verb} segment {} ({} to {}, closed {}): before what the oldest kept base needs",
            s.file.path, s.start_lsn, s.end_lsn, s.closed
        );
    }
    if args.dry_run {
        if let Some(remote) = repo.remote() {
            prune_orphans(&repo, remote, args.orphans_older_than, true)?;
        }
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
        let doomed: Vec<&str> = doomed_globals
            .iter()
            .map(|g| g.file.path.as_str())
            .collect();
        m.globals
            .retain(|g| !doomed.contains(&g.file.path.as_str()));
        m.prune_history.push(repo::PruneRun {
            at: repo::now_rfc3339(),
            bases: doomed_bases.iter().map(|b| b.id.clone()).collect(),
            segments: doomed_segments.len(),
            segments_upto: doomed_segments.last().map(|s| s.end_lsn.to_string()),
            globals: doomed_globals.len(),
            bytes,
        });
        let excess = m.prune_history.len().saturating_sub(repo::PRUNE_HISTORY);
        m.prune_history.drain(..excess);
        Ok(())
    })?;
    // Files go only once the manifest no longer names them.
    for g in &doomed_globals {
        repo.remove_stored(&g.file.path)?;
    }
    for b in &doomed_bases {
        if repo.remote().is_some() {
            for f in b.files() {
                repo.remove_stored(&f.path)?;
            }
        } else {
            let dir = repo.path(repo::BASES_DIR).join(&b.id);
            std::fs::remove_dir_all(&dir)
                .map_err(Error::io(format!("removing {}", dir.display())))?;
        }
    }
    for s in &doomed_segments {
        repo.remove_stored(&s.file.path)?;
    }
    if let Some(remote) = repo.remote() {
        let (count, freed) = prune_orphans(&repo, remote, args.orphans_older_than, false)?;
        if count > 0 {
            println!(
                "deleted {count} orphaned object(s), freed {}",
                human_bytes(freed)
            );
        }
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

    const MICROS_PER_DAY: i128 = 86_400_000_000;

    fn policy(keep_bases: Option<usize>, keep_age_days: Option<u64>) -> Policy {
        Policy {
            keep_bases,
            keep_age: keep_age_days.map(|d| d as u32 * DAY),
            keep_monthly: None,
            keep_segments_age: None,
        }
    }

    fn kept(v: Vec<Option<String>>) -> Vec<bool> {
        v.into_iter().map(|k| k.is_some()).collect()
    }

    #[test]
    fn orphans_are_old_unnamed_objects_of_the_managed_directories() {
        let object = |rel: &str, modified: i64| Listed {
            rel: rel.into(),
            bytes: 10,
            modified,
        };
        let listed = [
            object("segments/000001-0_0.sql.zst", 0),
            object("segments/000002-0_10.sql.zst", 0),
            object("bases/20260101T000000Z/dump.sql.zst", 0),
            object("bases/20260102T000000Z/dump.sql.zst", 950),
            object("globals/20260101T000000Z.sql", 0),
            object("segmentsX/whatever", 0),
            object("manifest.json", 0),
        ];
        let named: HashSet<&str> = [
            "segments/000001-0_0.sql.zst",
            "globals/20260101T000000Z.sql",
        ]
        .into_iter()
        .collect();
        let found: Vec<&str> = orphans(&listed, &named, Duration::from_secs(100), 1000)
            .iter()
            .map(|o| o.rel.as_str())
            .collect();
        // The young base (still being written, perhaps) and what is outside stay.
        assert_eq!(
            found,
            [
                "segments/000002-0_10.sql.zst",
                "bases/20260101T000000Z/dump.sql.zst"
            ]
        );
    }

    #[test]
    fn keeps_newest_by_count_and_age() {
        let day = MICROS_PER_DAY;
        let bases: Vec<_> = (0..4)
            .map(|i| (format!("b{i}"), Some(i as i128 * day)))
            .collect();
        let now = 3 * day;
        assert_eq!(
            kept(kept_bases(&bases, &policy(Some(2), None), now)),
            [false, false, true, true]
        );
        assert_eq!(
            kept(kept_bases(&bases, &policy(None, Some(1)), now)),
            [false, false, true, true]
        );
        assert_eq!(
            kept(kept_bases(&bases, &policy(Some(1), Some(2)), now)),
            [false, true, true, true]
        );
        assert_eq!(
            kept(kept_bases(&bases, &policy(Some(0), None), now)),
            [false, false, false, true]
        );
    }

    /// A daily base for 400 days: the default keeps the last 30 days and then the newest base
    /// of each month back to 12 months (counting the months the 30 days already cover).
    #[test]
    fn default_policy_is_grandfather_father_son() {
        let day = MICROS_PER_DAY;
        // 2026-12-01T00:00:00Z
        let now = 1_796_083_200_000_000i128;
        assert_eq!(month_of(now), Some((2026, 12)));
        let bases: Vec<_> = (0..400)
            .rev()
            .map(|ago| {
                (
                    format!("b{ago}"),
                    Some(now - ago as i128 * day - 3_600_000_000),
                )
            })
            .collect();
        let keep = kept_bases(&bases, &Policy::default_retention(), now);
        let kept_times: Vec<i128> = bases
            .iter()
            .zip(&keep)
            .filter(|(_, k)| k.is_some())
            .map(|(b, _)| b.1.unwrap())
            .collect();
        let recent = kept_times.iter().filter(|&&t| now - t <= 30 * day).count();
        assert_eq!(recent, 30);
        // Older ones: one per month, the month's newest (its last day), for 2026-11 back to
        // 2025-12: the 12 newest months with a base, Nov 2026 included.
        let older: Vec<(i32, u8)> = kept_times
            .iter()
            .filter(|&&t| now - t > 30 * day)
            .map(|&t| month_of(t).unwrap())
            .collect();
        assert_eq!(older.first(), Some(&(2025, 12)), "{older:?}");
        assert_eq!(older.len(), 11, "{older:?}"); // 2026-11's newest is within 30 days
        for w in older.windows(2) {
            assert_ne!(w[0], w[1], "one base per month: {older:?}");
        }
        let why = keep
            .iter()
            .flatten()
            .find(|w| w.contains("2025-12"))
            .unwrap();
        assert!(why.contains("one of the last 12 months"), "{why}");
        assert_eq!(keep.last().unwrap().as_deref(), Some("the newest base"));
    }

    #[test]
    fn young_segments_stay_and_the_chain_stays_unbroken() {
        let day = MICROS_PER_DAY;
        let now = 100 * day;
        let closed: Vec<_> = [80, 90, 95, 99].iter().map(|d| Some(d * day)).collect();
        // The oldest kept base needs segment 3 on; 7 days keep 95 and 99.
        assert_eq!(segments_to_delete(&closed, 3, Some(7 * DAY), now), 2);
        // Without an age rule, the base decides.
        assert_eq!(segments_to_delete(&closed, 3, None, now), 3);
        // The base needs more than the age keeps.
        assert_eq!(segments_to_delete(&closed, 1, Some(7 * DAY), now), 1);
        // An unreadable close time counts as young.
        let closed = vec![Some(80 * day), None, Some(85 * day)];
        assert_eq!(segments_to_delete(&closed, 3, Some(DAY), now), 1);
    }

    #[test]
    fn no_option_means_the_default_policy() {
        use clap::Parser;
        let cli = crate::cli::Cli::try_parse_from(["pgincr", "prune", "-r", "/x"]).unwrap();
        let crate::cli::Command::Prune(args) = cli.command else {
            panic!("not prune")
        };
        assert_eq!(Policy::from_args(&args), Policy::default_retention());
        let cli =
            crate::cli::Cli::try_parse_from(["pgincr", "prune", "-r", "/x", "--keep-bases", "2"])
                .unwrap();
        let crate::cli::Command::Prune(args) = cli.command else {
            panic!("not prune")
        };
        assert_eq!(Policy::from_args(&args), policy(Some(2), None));
    }
}
