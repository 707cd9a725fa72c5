//! `pgincr status`: is the backup keeping up? Slot state and lag from the server, the
//! failure `pgincr stream` keeps running into (from `stream-state.json`), the age of the
//! newest committed change the repository holds and its size, with Nagios exit codes
//! (0 OK, 1 WARNING, 2 CRITICAL) and text, JSON or Prometheus output.

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
}

pub async fn run(args: StatusArgs, bindir: Option<PathBuf>) -> Result<()> {
    let repo = args.repo.as_ref().map(Repo::new);
    let manifest = repo.as_ref().map(|r| r.load()).transpose()?;
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
        if lag >= args.warn_lag.min(args.critical_lag) {
            let level = if lag >= args.critical_lag {
                CRITICAL
            } else {
                WARNING
            };
            found.push((
                level,
                format!("slot holds back {} of WAL", human_bytes(lag)),
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
            "repository: {}, {} base backup(s), {} closed segment(s)",
            human_bytes(b),
            st.base_backups.unwrap_or(0),
            st.segments.unwrap_or(0)
        );
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
            "slot_safe_wal_size_bytes",
            "WAL that can still be written before the slot is lost",
            int(st.safe_wal_size_bytes),
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
            slot: None,
            warn_lag: 1 << 30,
            critical_lag: 10 << 30,
            critical_age: Duration::from_secs(86_400),
            format: StatusFormat::Text,
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
            newest_change_time: None,
            newest_change_age_seconds: Some(5),
            stream_error: None,
            stream_error_seconds: None,
            repository_bytes: None,
            base_backups: None,
            segments: None,
            skipped_changes: Some(0),
        }
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
    fn label_values_are_escaped() {
        assert_eq!(label_value("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
