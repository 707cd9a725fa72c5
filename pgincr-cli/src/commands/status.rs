//! `pgincr status`: is the backup keeping up? Slot state and lag from the server, age and
//! size of the repository, with Nagios exit codes (0 OK, 1 WARNING, 2 CRITICAL) and
//! text, JSON or Prometheus output.

use crate::cli::{StatusArgs, StatusFormat};
use crate::pg::Endpoint;
use crate::repo::Repo;
use crate::units::human_bytes;
use crate::{Error, Result};
use serde::Serialize;
use std::path::PathBuf;
use std::time::SystemTime;

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
    pub newest_segment_age_seconds: Option<u64>,
    pub repository_bytes: Option<u64>,
    pub base_backups: Option<usize>,
    pub segments: Option<usize>,
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
        newest_segment_age_seconds: repo.as_ref().and_then(newest_segment_age),
        repository_bytes: repo.as_ref().map(|r| r.disk_usage()),
        base_backups: manifest.as_ref().map(|m| m.bases.len()),
        segments: manifest.as_ref().map(|m| m.segments.len()),
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
        if let Some(age) = st.newest_segment_age_seconds
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
    let code = found.iter().map(|(level, _)| *level).max().unwrap_or(0);
    st.problems = found.into_iter().map(|(_, msg)| msg).collect();
    st.state = ["OK", "WARNING", "CRITICAL"][code as usize];
    code
}

fn newest_segment_age(repo: &Repo) -> Option<u64> {
    let newest = std::fs::read_dir(repo.segments_dir())
        .ok()?
        .flatten()
        .filter_map(|e| e.metadata().ok()?.modified().ok())
        .max()?;
    Some(
        SystemTime::now()
            .duration_since(newest)
            .map_or(0, |d| d.as_secs()),
    )
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
    if let Some(age) = st.newest_segment_age_seconds {
        println!(
            "newest change in the repository: {} ago",
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
    let label = format!(
        "{{slot=\"{}\"}}",
        st.slot.replace('\\', "\\\\").replace('"', "\\\"")
    );
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
            "newest_segment_age_seconds",
            "time since a change last reached the repository",
            uint(st.newest_segment_age_seconds),
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
    out
}
