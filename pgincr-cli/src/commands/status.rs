//! `pgincr status`: is the backup keeping up? Slot state and lag from the server, the
//! failure `pgincr stream` keeps running into (from `stream-state.json`), the age of the
//! newest committed change the repository holds and its size, how full its filesystem is, how
//! old the newest base backup and the last prune are, with Nagios exit codes (0 OK,
//! 1 WARNING, 2 CRITICAL) and text, JSON or Prometheus output.

use super::stream::store_slot::store_slot_name;
use crate::cli::{StatusArgs, StatusFormat};
use crate::pg::Endpoint;
use crate::repo::{self, Manifest, Repo, StreamError};
use crate::segment::{Summary, summarize};
use crate::units::human_bytes;
use crate::{Error, Result};
use serde::Serialize;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Serialize)]
pub struct Status {
    pub state: &'static str,
    pub problems: Vec<String>,
    pub slot: String,
    pub slot_exists: bool,
    pub slot_active: bool,
    pub wal_status: Option<String>,
    pub safe_wal_size_bytes: Option<i64>,
    pub restart_lag_bytes: Option<i64>,
    pub flush_lag_bytes: Option<i64>,
    pub restart_lsn: Option<String>,
    pub confirmed_flush_lsn: Option<String>,
    /// `stream --confirm-after store`: WAL the store slot holds back (since the last upload).
    pub store_slot_restart_lag_bytes: Option<i64>,
    /// Commit time of the newest transaction in the repository (RFC 3339).
    pub newest_change_time: Option<String>,
    /// Server time since that commit.
    pub newest_change_age_seconds: Option<u64>,
    /// The failure `pgincr stream` keeps running into, if any.
    pub stream_error: Option<StreamError>,
    /// Server time since that failure was first seen.
    pub stream_error_seconds: Option<u64>,
    pub repository_bytes: Option<u64>,
    pub base_backups: Option<usize>,
    pub segments: Option<usize>,
    /// UPDATEs and DELETEs skipped for want of a replica identity (`--missing-identity skip`).
    pub skipped_changes: Option<u64>,
    /// How full the repository's filesystem is, in percent (as `df` counts it).
    pub filesystem_used_percent: Option<f64>,
    /// Server time since the newest base backup finished.
    pub newest_base_age_seconds: Option<u64>,
    /// Server time since `pgincr prune` last ran; None if it never did.
    pub last_prune_age_seconds: Option<u64>,
    /// Server time since the repository was created.
    pub repository_age_seconds: Option<u64>,
    /// Object storage: why the repository could not be read.
    pub repository_error: Option<String>,
    /// Object storage: closed segments in the spool waiting for their upload.
    pub upload_backlog_files: Option<usize>,
    pub upload_backlog_bytes: Option<u64>,
    /// Object storage: how long the oldest of them has waited.
    pub oldest_unuploaded_seconds: Option<u64>,
}

/// Closed segments of an object-storage repository that are still only in the spool: their
/// count, size and the age of the oldest (None for a directory repository).
fn upload_backlog(repo: &Repo) -> Option<(usize, u64, Option<u64>)> {
    repo.remote()?;
    let mut backlog = (0, 0, None::<u64>);
    for entry in std::fs::read_dir(repo.segments_dir()).ok()?.flatten() {
        if entry.file_name() == repo::OPEN_SEGMENT {
            continue;
        }
        let Ok(meta) = entry.metadata() else { continue };
        let age = meta
            .modified()
            .ok()
            .and_then(|t| t.elapsed().ok())
            .map_or(0, |d| d.as_secs());
        backlog.0 += 1;
        backlog.1 += meta.len();
        backlog.2 = Some(backlog.2.map_or(age, |a| a.max(age)));
    }
    Some(backlog)
}

/// How full the filesystem holding `path` is, in percent of what its users can have.
fn filesystem_used_percent(path: &std::path::Path) -> Option<f64> {
    let fs = nix::sys::statvfs::statvfs(path).ok()?;
    let used = fs.blocks().saturating_sub(fs.blocks_free()) as f64;
    let usable = used + fs.blocks_available() as f64;
    (usable > 0.0).then(|| used * 100.0 / usable)
}

pub async fn run(args: StatusArgs, bindir: Option<PathBuf>) -> Result<()> {
    let repo = args
        .repo
        .as_ref()
        .map(|r| Repo::open(r, args.spool.as_deref()))
        .transpose()?;
    // An object store that cannot be read is a finding, not a failure of status: the spool
    // still tells how much waits for it.
    let (manifest, repository_error) = match repo.as_ref().map(|r| (r.load(), r.remote().is_some()))
    {
        None => (None, None),
        Some((Ok(m), _)) => (Some(m), None),
        Some((Err(e), true)) => (None, Some(e.to_string())),
        Some((Err(e), false)) => return Err(e),
    };
    let slot = args
        .slot
        .clone()
        .or_else(|| manifest.as_ref().map(|m| m.source.slot.clone()))
        .unwrap_or_else(|| "pgincr".to_owned());
    let client = Endpoint::new(&args.conn.dsn, bindir)?.connect().await?;
    let server_now: i64 = client
        .query_one(
            "SELECT (extract(epoch FROM pg_catalog.now()) * 1000000)::bigint",
            &[],
        )
        .await?
        .get(0);
    let age_at = |rfc3339: &str| {
        repo::parse_rfc3339_micros(rfc3339)
            .map(|t| ((i128::from(server_now) - t).max(0) / 1_000_000) as u64)
    };
    // The open segment, scanned once for what the manifest does not know yet.
    let open = repo
        .as_ref()
        .and_then(|r| summarize(vec![(r.open_segment_path(), repo::OPEN_SEGMENT.to_owned())]).ok());
    let newest_change_time = manifest
        .as_ref()
        .and_then(|m| newest_commit_time(open.as_ref(), m));
    let stream_error = repo
        .as_ref()
        .and_then(|r| r.load_stream_state())
        .and_then(|s| s.error);
    let backlog = repo.as_ref().and_then(upload_backlog);
    let row = client
        .query_opt(
            "SELECT active, wal_status, safe_wal_size,
                    pg_catalog.pg_wal_lsn_diff(pg_catalog.pg_current_wal_lsn(), restart_lsn)::bigint,
                    pg_catalog.pg_wal_lsn_diff(pg_catalog.pg_current_wal_lsn(), confirmed_flush_lsn)::bigint,
                    restart_lsn::text, confirmed_flush_lsn::text
               FROM pg_catalog.pg_replication_slots WHERE slot_name = $1",
            &[&slot],
        )
        .await?;
    let store_slot_lag: Option<i64> = client
        .query_opt(
            "SELECT pg_catalog.pg_wal_lsn_diff(pg_catalog.pg_current_wal_lsn(), restart_lsn)::bigint
               FROM pg_catalog.pg_replication_slots WHERE slot_name = $1",
            &[&store_slot_name(&slot)],
        )
        .await?
        .and_then(|r| r.get(0));
    let mut st = Status {
        state: "OK",
        problems: vec![],
        slot: slot.clone(),
        slot_exists: row.is_some(),
        slot_active: row.as_ref().is_some_and(|r| r.get(0)),
        wal_status: row.as_ref().and_then(|r| r.get(1)),
        safe_wal_size_bytes: row.as_ref().and_then(|r| r.get(2)),
        restart_lag_bytes: row.as_ref().and_then(|r| r.get(3)),
        flush_lag_bytes: row.as_ref().and_then(|r| r.get(4)),
        restart_lsn: row.as_ref().and_then(|r| r.get(5)),
        confirmed_flush_lsn: row.as_ref().and_then(|r| r.get(6)),
        store_slot_restart_lag_bytes: store_slot_lag,
        newest_change_age_seconds: newest_change_time.as_deref().and_then(age_at),
        newest_change_time,
        stream_error_seconds: stream_error.as_ref().and_then(|e| age_at(&e.first_seen)),
        stream_error,
        repository_bytes: repo.as_ref().map(|r| r.disk_usage()),
        base_backups: manifest.as_ref().map(|m| m.bases.len()),
        segments: manifest.as_ref().map(|m| m.segments.len()),
        skipped_changes: manifest.as_ref().map(|m| {
            m.segments.iter().map(|s| s.skipped_changes).sum::<u64>()
                + open.as_ref().map_or(0, |o| o.skipped_changes)
        }),
        filesystem_used_percent: repo.as_ref().and_then(|r| filesystem_used_percent(&r.root)),
        newest_base_age_seconds: manifest
            .as_ref()
            .and_then(|m| m.bases.last())
            .and_then(|b| age_at(&b.finished)),
        last_prune_age_seconds: manifest
            .as_ref()
            .and_then(|m| m.prune_history.last())
            .and_then(|p| age_at(&p.at)),
        repository_age_seconds: manifest.as_ref().and_then(|m| age_at(&m.created)),
        repository_error,
        upload_backlog_files: backlog.map(|b| b.0),
        upload_backlog_bytes: backlog.map(|b| b.1),
        oldest_unuploaded_seconds: backlog.and_then(|b| b.2),
    };
    let code = evaluate(&mut st, &args);
    match args.format {
        StatusFormat::Text => print_text(&st),
        StatusFormat::Json => println!(
            "{}",
            serde_json::to_string_pretty(&st).expect("status serialises")
        ),
        StatusFormat::Prometheus => print!("{}", prometheus(&st)),
    }
    if code == 0 {
        Ok(())
    } else {
        Err(Error::Status(code))
    }
}

/// Applies the thresholds: sets `state` and `problems`, returns the Nagios code.
pub fn evaluate(st: &mut Status, args: &StatusArgs) -> u8 {
    const WARNING: u8 = 1;
    const CRITICAL: u8 = 2;
    // (level, message) of every problem found.
    let mut found: Vec<(u8, String)> = Vec::new();
    if let Some(e) = &st.repository_error {
        found.push((CRITICAL, format!("the repository cannot be read: {e}")));
    }
    if let Some(e) = &st.stream_error {
        found.push((
            CRITICAL,
            format!(
                "pgincr stream has been failing for {} ({} time(s) since {}, last at {}): {}",
                humantime::format_duration(Duration::from_secs(
                    st.stream_error_seconds.unwrap_or(0)
                )),
                e.count,
                e.first_seen,
                e.last_seen,
                e.message
            ),
        ));
    }
    if !st.slot_exists {
        found.push((CRITICAL, format!("slot {} does not exist", st.slot)));
    } else {
        let lag = st.restart_lag_bytes.unwrap_or(0).max(0) as u64;
        // The WAL the server keeps is what the slot that holds most back keeps.
        let held_back = lag.max(st.store_slot_restart_lag_bytes.unwrap_or(0).max(0) as u64);
        match st.wal_status.as_deref() {
            Some("lost") => found.push((
                CRITICAL,
                "the slot has lost required WAL: the change stream has a gap".into(),
            )),
            Some("unreserved") => found.push((
                CRITICAL,
                "the slot's WAL is about to be removed (wal_status unreserved)".into(),
            )),
            _ => {}
        }
        if held_back >= args.warn_lag.min(args.critical_lag) {
            let level = if held_back >= args.critical_lag {
                CRITICAL
            } else {
                WARNING
            };
            let which = if held_back > lag {
                format!("store slot {}", store_slot_name(&st.slot))
            } else {
                "slot".to_owned()
            };
            found.push((
                level,
                format!("{which} holds back {} of WAL", human_bytes(held_back)),
            ));
        }
        if !st.slot_active {
            found.push((
                WARNING,
                "slot is not active: is `pgincr stream` running?".into(),
            ));
        }
        if let Some(age) = st.newest_change_age_seconds
            && age >= args.critical_age.as_secs()
            && (!st.slot_active || lag >= args.warn_lag)
        {
            found.push((
                CRITICAL,
                format!(
                    "no change reached the repository for {}",
                    humantime::format_duration(std::time::Duration::from_secs(age))
                ),
            ));
        }
    }
    if let Some(n) = st.skipped_changes.filter(|n| *n > 0) {
        found.push((
            WARNING,
            format!(
                "{n} update(s) and delete(s) of tables without a primary key or replica identity \
                 were skipped (--missing-identity skip): those tables will not match the source \
                 after a restore"
            ),
        ));
    }
    if let Some(waited) = st.oldest_unuploaded_seconds
        && waited >= args.upload_warn.min(args.upload_critical).as_secs()
    {
        let level = if waited >= args.upload_critical.as_secs() {
            CRITICAL
        } else {
            WARNING
        };
        found.push((
            level,
            format!(
                "{} closed segment(s) ({}) wait for their upload to the object store, the \
                 oldest for {}",
                st.upload_backlog_files.unwrap_or(0),
                human_bytes(st.upload_backlog_bytes.unwrap_or(0)),
                humantime::format_duration(Duration::from_secs(waited))
            ),
        ));
    }
    if let Some(used) = st.filesystem_used_percent
        && used >= args.fs_warn.min(args.fs_critical)
    {
        let level = if used >= args.fs_critical {
            CRITICAL
        } else {
            WARNING
        };
        found.push((
            level,
            format!("the repository's filesystem is {used:.0}% full"),
        ));
    }
    let days = |secs: u64| humantime::format_duration(Duration::from_secs(secs / 60 * 60));
    if let Some(age) = st.newest_base_age_seconds
        && age >= args.base_max_age.as_secs()
    {
        found.push((
            WARNING,
            format!(
                "the newest base backup is {} old: is `pgincr base` still scheduled?",
                days(age)
            ),
        ));
    }
    match (st.last_prune_age_seconds, st.repository_age_seconds) {
        (Some(age), _) if age >= args.prune_max_age.as_secs() => found.push((
            WARNING,
            format!(
                "pgincr prune last ran {} ago: the repository only grows",
                days(age)
            ),
        )),
        (None, Some(age)) if age >= args.prune_max_age.as_secs() => found.push((
            WARNING,
            format!(
                "pgincr prune has never run in this repository ({} old): it only grows",
                days(age)
            ),
        )),
        _ => {}
    }
    let code = found.iter().map(|(level, _)| *level).max().unwrap_or(0);
    st.problems = found.into_iter().map(|(_, msg)| msg).collect();
    st.state = ["OK", "WARNING", "CRITICAL"][code as usize];
    code
}

/// Commit time of the newest complete transaction in the repository: in the open segment,
/// else in the last closed one. (A file's modification time says nothing: a stream that
/// keeps failing touches its files without receiving anything.)
fn newest_commit_time(open: Option<&Summary>, manifest: &Manifest) -> Option<String> {
    let in_open = open
        .and_then(|s| s.last_commit_time)
        .map(sqlgen::txn::format_pg_timestamp);
    in_open.or_else(|| {
        manifest
            .segments
            .iter()
            .rev()
            .find_map(|s| s.last_commit_time.clone())
    })
}

fn print_text(st: &Status) {
    let lag = |b: Option<i64>| b.map_or("-".to_owned(), |b| human_bytes(b.max(0) as u64));
    println!(
        "PGINCR {} - slot {} {}, restart lag {}, flush lag {}{}",
        st.state,
        st.slot,
        if !st.slot_exists {
            "missing"
        } else if st.slot_active {
            "active"
        } else {
            "inactive"
        },
        lag(st.restart_lag_bytes),
        lag(st.flush_lag_bytes),
        st.problems
            .iter()
            .map(|p| format!("; {p}"))
            .collect::<String>()
    );
    if let Some(w) = &st.wal_status {
        println!(
            "wal_status: {w}, safe_wal_size: {}",
            st.safe_wal_size_bytes
                .map_or("unlimited".into(), |b| human_bytes(b.max(0) as u64))
        );
    }
    if let (Some(r), Some(c)) = (&st.restart_lsn, &st.confirmed_flush_lsn) {
        println!("restart_lsn: {r}, confirmed_flush_lsn: {c}");
    }
    if let (Some(age), Some(time)) = (st.newest_change_age_seconds, &st.newest_change_time) {
        println!(
            "newest change in the repository: committed {} ago ({time})",
            humantime::format_duration(std::time::Duration::from_secs(age))
        );
    }
    if let Some(b) = st.repository_bytes {
        println!(
            "repository: {}, {} base backup(s), {} closed segment(s){}",
            human_bytes(b),
            st.base_backups.unwrap_or(0),
            st.segments.unwrap_or(0),
            st.filesystem_used_percent
                .map_or(String::new(), |p| format!(", filesystem {p:.0}% full"))
        );
    }
    let ago = |secs: u64| humantime::format_duration(Duration::from_secs(secs));
    if let Some(age) = st.newest_base_age_seconds {
        println!("newest base backup: finished {} ago", ago(age));
    }
    match st.last_prune_age_seconds {
        Some(age) => println!("last prune: {} ago", ago(age)),
        None if st.repository_age_seconds.is_some() => println!("last prune: never"),
        None => {}
    }
}

/// Prometheus text exposition format.
pub fn prometheus(st: &Status) -> String {
    let mut out = String::new();
    let label = format!("{{slot=\"{}\"}}", label_value(&st.slot));
    let code = match st.state {
        "OK" => 0.0,
        "WARNING" => 1.0,
        _ => 2.0,
    };
    let flag = |b: bool| Some(f64::from(u8::from(b)));
    let int = |v: Option<i64>| v.map(|v| v as f64);
    let uint = |v: Option<u64>| v.map(|v| v as f64);
    let gauges = [
        ("status", "0 ok, 1 warning, 2 critical", Some(code)),
        (
            "slot_exists",
            "1 if the replication slot exists",
            flag(st.slot_exists),
        ),
        (
            "slot_active",
            "1 if a client is streaming from the slot",
            flag(st.slot_active),
        ),
        (
            "slot_restart_lag_bytes",
            "WAL retained for the slot",
            int(st.restart_lag_bytes),
        ),
        (
            "slot_flush_lag_bytes",
            "WAL not yet confirmed by pgincr stream",
            int(st.flush_lag_bytes),
        ),
        (
            "store_slot_restart_lag_bytes",
            "WAL retained for changes not yet uploaded (stream --confirm-after store)",
            int(st.store_slot_restart_lag_bytes),
        ),
        (
            "slot_safe_wal_size_bytes",
            "WAL that can still be written before the slot is lost",
            int(st.safe_wal_size_bytes),
        ),
        (
            "upload_backlog_files",
            "closed segments waiting for their upload to object storage",
            st.upload_backlog_files.map(|n| n as f64),
        ),
        (
            "oldest_unuploaded_seconds",
            "how long the oldest segment waiting for its upload has waited",
            uint(st.oldest_unuploaded_seconds),
        ),
        (
            "skipped_changes",
            "updates and deletes skipped for want of a replica identity (--missing-identity skip)",
            uint(st.skipped_changes),
        ),
        (
            "newest_change_age_seconds",
            "time since the newest transaction in the repository committed",
            uint(st.newest_change_age_seconds),
        ),
        (
            "stream_error",
            "1 while pgincr stream keeps failing (see status text for the message)",
            flag(st.stream_error.is_some()),
        ),
        (
            "stream_error_seconds",
            "time since pgincr stream started failing",
            uint(st.stream_error_seconds),
        ),
        (
            "repository_bytes",
            "size of the repository on disk",
            uint(st.repository_bytes),
        ),
        (
            "filesystem_used_ratio",
            "how full the repository's filesystem is (0 to 1)",
            st.filesystem_used_percent.map(|p| p / 100.0),
        ),
        (
            "newest_base_age_seconds",
            "time since the newest base backup finished",
            uint(st.newest_base_age_seconds),
        ),
        (
            "last_prune_age_seconds",
            "time since pgincr prune last ran (absent if it never did)",
            uint(st.last_prune_age_seconds),
        ),
    ];
    for (name, help, value) in gauges {
        if let Some(v) = value {
            out.push_str(&format!(
                "# HELP pgincr_{name} {help}\n# TYPE pgincr_{name} gauge\npgincr_{name}{label} {v}\n"
            ));
        }
    }
    if let Some(e) = &st.stream_error {
        out.push_str(&format!(
            "# HELP pgincr_stream_error_info the failure pgincr stream keeps running into; the value counts its occurrences\n\
             # TYPE pgincr_stream_error_info gauge\n\
             pgincr_stream_error_info{{slot=\"{}\",kind=\"{}\",first_seen=\"{}\",message=\"{}\"}} {}\n",
            label_value(&st.slot),
            label_value(&e.kind),
            label_value(&e.first_seen),
            label_value(&e.message),
            e.count
        ));
    }
    out
}

/// A Prometheus label value: backslash, double quote and newline escaped.
/// `status --all`: one `pgincr status` per configured database, run at once, and their
/// reports together.
pub async fn run_all(args: StatusArgs, config: Option<PathBuf>) -> Result<()> {
    let (path, databases) = crate::fleet::databases(config.as_deref())?;
    let format = match args.format {
        StatusFormat::Text => "text",
        StatusFormat::Json => "json",
        StatusFormat::Prometheus => "prometheus",
    };
    let mut running = Vec::new();
    for (name, _) in &databases {
        let mut cmd = crate::fleet::command(&path, name, &["status", "--format", format])?;
        cmd.stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let child = cmd
            .spawn()
            .map_err(Error::io(format!("starting pgincr status for {name}")))?;
        running.push((name.clone(), child));
    }
    let mut reports = Vec::new();
    for (name, child) in running {
        let out = child
            .wait_with_output()
            .await
            .map_err(Error::io(format!("running pgincr status for {name}")))?;
        let code = out
            .status
            .code()
            .map_or(3, |c| u8::try_from(c).unwrap_or(3));
        reports.push(Report {
            database: name,
            code,
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        });
    }
    let worst = crate::fleet::worst_exit_code(&reports.iter().map(|r| r.code).collect::<Vec<_>>());
    match args.format {
        StatusFormat::Text => {
            for r in &reports {
                println!("== database {} ({})", r.database, verdict(r.code));
                print!("{}", r.stdout);
                for line in r.stderr.lines() {
                    println!("   {line}");
                }
            }
            println!("all databases: {}", verdict(worst));
        }
        StatusFormat::Json => {
            let mut each = serde_json::Map::new();
            for r in &reports {
                let value = serde_json::from_str(&r.stdout).unwrap_or_else(
                    |_| serde_json::json!({ "status": verdict(r.code), "error": r.stderr }),
                );
                each.insert(r.database.clone(), value);
            }
            let all = serde_json::json!({ "status": verdict(worst), "databases": each });
            println!(
                "{}",
                serde_json::to_string_pretty(&all).expect("JSON serialises")
            );
        }
        StatusFormat::Prometheus => {
            let parts: Vec<(String, String)> = reports
                .iter()
                .map(|r| (r.database.clone(), r.stdout.clone()))
                .collect();
            print!("{}", merge_prometheus(&parts));
            for r in reports.iter().filter(|r| r.stdout.trim().is_empty()) {
                eprintln!("{}: {}", r.database, r.stderr);
            }
        }
    }
    match worst {
        0 => Ok(()),
        code => Err(Error::Status(code)),
    }
}

/// One database's `pgincr status` run.
struct Report {
    database: String,
    code: u8,
    stdout: String,
    stderr: String,
}

fn verdict(code: u8) -> &'static str {
    match code {
        0 => "OK",
        1 => "WARNING",
        2 => "CRITICAL",
        _ => "UNKNOWN",
    }
}

/// Prometheus texts of several databases as one exposition: each metric family once, its
/// samples labelled with their database.
fn merge_prometheus(parts: &[(String, String)]) -> String {
    // Family name -> (HELP and TYPE lines, samples), in first-seen order.
    let mut families: Vec<(String, Vec<String>, Vec<String>)> = Vec::new();
    for (database, text) in parts {
        let label = format!("database=\"{}\"", label_value(database));
        for line in text.lines() {
            let (family, is_comment) = match line
                .strip_prefix("# HELP ")
                .or(line.strip_prefix("# TYPE "))
            {
                Some(rest) => (rest.split(' ').next().unwrap_or_default().to_owned(), true),
                None => (
                    line.split(['{', ' ']).next().unwrap_or_default().to_owned(),
                    false,
                ),
            };
            if family.is_empty() {
                continue;
            }
            let index = match families.iter().position(|(f, _, _)| *f == family) {
                Some(i) => i,
                None => {
                    families.push((family.clone(), Vec::new(), Vec::new()));
                    families.len() - 1
                }
            };
            let entry = &mut families[index];
            if is_comment {
                if !entry.1.contains(&line.to_owned()) {
                    entry.1.push(line.to_owned());
                }
            } else if let Some((name, rest)) = line.split_once('{') {
                entry.2.push(format!("{name}{{{label},{rest}"));
            } else if let Some((name, value)) = line.split_once(' ') {
                entry.2.push(format!("{name}{{{label}}} {value}"));
            }
        }
    }
    let mut out = String::new();
    for (_, comments, samples) in families {
        for line in comments.iter().chain(&samples) {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

fn label_value(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::ConnArgs;

    fn args() -> StatusArgs {
        StatusArgs {
            conn: ConnArgs { dsn: String::new() },
            repo: None,
            spool: None,
            slot: None,
            warn_lag: 1 << 30,
            critical_lag: 10 << 30,
            critical_age: Duration::from_secs(86_400),
            fs_warn: 80.0,
            fs_critical: 95.0,
            upload_warn: Duration::from_secs(600),
            upload_critical: Duration::from_secs(3600),
            base_max_age: Duration::from_secs(8 * 86_400),
            prune_max_age: Duration::from_secs(8 * 86_400),
            format: StatusFormat::Text,
            all: false,
        }
    }

    fn healthy() -> Status {
        Status {
            state: "OK",
            problems: vec![],
            slot: "pgincr".into(),
            slot_exists: true,
            slot_active: true,
            wal_status: Some("reserved".into()),
            safe_wal_size_bytes: None,
            restart_lag_bytes: Some(0),
            flush_lag_bytes: Some(0),
            restart_lsn: None,
            confirmed_flush_lsn: None,
            store_slot_restart_lag_bytes: None,
            newest_change_time: None,
            newest_change_age_seconds: Some(5),
            stream_error: None,
            stream_error_seconds: None,
            repository_bytes: None,
            base_backups: None,
            segments: None,
            skipped_changes: Some(0),
            filesystem_used_percent: Some(40.0),
            newest_base_age_seconds: Some(3_600),
            last_prune_age_seconds: Some(3_600),
            repository_age_seconds: Some(30 * 86_400),
            repository_error: None,
            upload_backlog_files: None,
            upload_backlog_bytes: None,
            oldest_unuploaded_seconds: None,
        }
    }

    #[test]
    fn wal_held_back_for_uploads_counts_against_the_lag_thresholds() {
        let mut st = healthy();
        st.store_slot_restart_lag_bytes = Some(2 << 30);
        assert_eq!(evaluate(&mut st, &args()), 1);
        assert_eq!(
            st.problems,
            ["store slot pgincr_stored holds back 2.00 GiB of WAL"]
        );
        st.store_slot_restart_lag_bytes = Some(11 << 30);
        assert_eq!(evaluate(&mut st, &args()), 2);
        let prom = prometheus(&st);
        assert!(
            prom.contains("pgincr_store_slot_restart_lag_bytes{slot=\"pgincr\"} 11811160064\n"),
            "{prom}"
        );
    }

    #[test]
    fn a_full_filesystem_an_old_base_and_no_prune_are_reported() {
        let mut st = healthy();
        assert_eq!(evaluate(&mut st, &args()), 0, "{:?}", st.problems);
        st.filesystem_used_percent = Some(85.0);
        assert_eq!(evaluate(&mut st, &args()), 1);
        assert_eq!(st.problems, ["the repository's filesystem is 85% full"]);
        st.filesystem_used_percent = Some(97.0);
        assert_eq!(evaluate(&mut st, &args()), 2);
        st.filesystem_used_percent = Some(10.0);
        st.newest_base_age_seconds = Some(9 * 86_400);
        assert_eq!(evaluate(&mut st, &args()), 1);
        assert!(
            st.problems[0].starts_with("the newest base backup is 9days old"),
            "{:?}",
            st.problems
        );
        st.newest_base_age_seconds = Some(60);
        st.last_prune_age_seconds = None;
        assert_eq!(evaluate(&mut st, &args()), 1);
        assert!(
            st.problems[0].starts_with("pgincr prune has never run"),
            "{:?}",
            st.problems
        );
        // A young repository that was never pruned is fine.
        st.repository_age_seconds = Some(86_400);
        assert_eq!(evaluate(&mut st, &args()), 0);
        st.last_prune_age_seconds = Some(10 * 86_400);
        assert_eq!(evaluate(&mut st, &args()), 1);
        assert!(
            st.problems[0].starts_with("pgincr prune last ran 10days ago"),
            "{:?}",
            st.problems
        );
        let prom = prometheus(&st);
        assert!(
            prom.contains("pgincr_filesystem_used_ratio{slot=\"pgincr\"} 0.1\n"),
            "{prom}"
        );
        assert!(
            prom.contains("pgincr_last_prune_age_seconds{slot=\"pgincr\"} 864000\n"),
            "{prom}"
        );
    }

    #[test]
    fn skipped_changes_are_a_warning() {
        let mut st = healthy();
        st.skipped_changes = Some(3);
        assert_eq!(evaluate(&mut st, &args()), 1);
        assert!(
            st.problems[0].starts_with("3 update(s) and delete(s)"),
            "{:?}",
            st.problems
        );
    }

    #[test]
    fn a_failing_stream_is_critical_with_its_message() {
        let mut st = healthy();
        assert_eq!(evaluate(&mut st, &args()), 0);
        st.stream_error = Some(StreamError {
            kind: repo::DISK_FULL.into(),
            message: "No space left on device".into(),
            first_seen: "2026-01-01T00:00:00Z".into(),
            last_seen: "2026-01-01T00:10:00Z".into(),
            count: 7,
        });
        st.stream_error_seconds = Some(600);
        assert_eq!(evaluate(&mut st, &args()), 2);
        assert_eq!(st.state, "CRITICAL");
        assert!(
            st.problems[0].contains("failing for 10m")
                && st.problems[0].contains("7 time(s)")
                && st.problems[0].contains("No space left on device"),
            "{:?}",
            st.problems
        );
        let prom = prometheus(&st);
        assert!(
            prom.contains("pgincr_stream_error{slot=\"pgincr\"} 1"),
            "{prom}"
        );
        assert!(
            prom.contains("kind=\"disk full\"") && prom.contains("No space left on device"),
            "{prom}"
        );
    }

    #[test]
    fn prometheus_of_several_databases_merges_families() {
        let one = "# HELP pgincr_status s\n# TYPE pgincr_status gauge\npgincr_status{slot=\"pgincr\"} 0\n";
        let two = "# HELP pgincr_status s\n# TYPE pgincr_status gauge\npgincr_status{slot=\"p\"} 2\n\
                   # HELP pgincr_skipped_changes k\n# TYPE pgincr_skipped_changes gauge\npgincr_skipped_changes{slot=\"p\"} 1\n";
        let merged = merge_prometheus(&[("app".into(), one.into()), ("sh\"op".into(), two.into())]);
        assert_eq!(
            merged,
            "# HELP pgincr_status s\n# TYPE pgincr_status gauge\n\
             pgincr_status{database=\"app\",slot=\"pgincr\"} 0\n\
             pgincr_status{database=\"sh\\\"op\",slot=\"p\"} 2\n\
             # HELP pgincr_skipped_changes k\n# TYPE pgincr_skipped_changes gauge\n\
             pgincr_skipped_changes{database=\"sh\\\"op\",slot=\"p\"} 1\n"
        );
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(label_value("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
