//! Transaction lines: `BEGIN;` / `COMMIT;`, optionally annotated with the transaction's identity
//! as a trailing SQL comment, so a reader can restore to a point in time and skip transactions
//! it already has, while the line stays plain executable SQL.
//!
//! `BEGIN; -- xid=735 commit_lsn=0/1A2B3C8 end_lsn=0/1A2B3F8 commit_time=2026-11-22T19:00:00.123456Z`
//! `COMMIT; -- xid=735 end_lsn=0/1A2B3F8`

use crate::lsn::Lsn;

/// Identity of a decoded transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TxnInfo {
    pub xid: u32,
    /// LSN of the commit record.
    pub commit_lsn: Lsn,
    /// LSN just past the commit record: what a consumer confirms as flushed.
    pub end_lsn: Lsn,
    /// Commit time, microseconds since 2000-01-01 00:00:00 UTC (PostgreSQL's epoch).
    pub commit_time: i64,
}

pub fn render_begin(out: &mut Vec<u8>, info: Option<&TxnInfo>) {
    out.extend_from_slice(b"BEGIN;");
    if let Some(i) = info {
        out.extend_from_slice(
            format!(
                " -- xid={} commit_lsn={} end_lsn={} commit_time={}",
                i.xid,
                i.commit_lsn,
                i.end_lsn,
                format_pg_timestamp(i.commit_time)
            )
            .as_bytes(),
        );
    }
}

pub fn render_commit(out: &mut Vec<u8>, info: Option<&TxnInfo>) {
    out.extend_from_slice(b"COMMIT;");
    if let Some(i) = info {
        out.extend_from_slice(format!(" -- xid={} end_lsn={}", i.xid, i.end_lsn).as_bytes());
    }
}

/// What ends a statement written outside any transaction (one that cannot run inside one,
/// such as CREATE TABLESPACE), before the LSN of the WAL record that carried it:
/// `CREATE TABLESPACE … ; -- decoder_sql: outside transactions lsn=0/1A2B3C8`.
pub const OUTSIDE_MARK: &str = "; -- decoder_sql: outside transactions lsn=";

/// A one-line statement (without its `;`) to run outside any transaction.
pub fn render_outside(out: &mut Vec<u8>, statement: &[u8], lsn: Lsn) {
    out.extend_from_slice(statement);
    out.extend_from_slice(OUTSIDE_MARK.as_bytes());
    out.extend_from_slice(lsn.to_string().as_bytes());
}

/// The statement (with its `;`) and LSN of a line [`render_outside`] wrote; `None` for any
/// other line.
pub fn parse_outside(line: &str) -> Option<(&str, Lsn)> {
    let at = line.rfind(OUTSIDE_MARK)?;
    let lsn = line[at + OUTSIDE_MARK.len()..].trim_end().parse().ok()?;
    Some((&line[..=at], lsn))
}

/// Reads the annotation of a `BEGIN; -- ...` line; `None` for any other line.
pub fn parse_begin(line: &str) -> Option<TxnInfo> {
    let rest = line.strip_prefix("BEGIN; -- ")?;
    let (mut xid, mut commit_lsn, mut end_lsn, mut commit_time) = (None, None, None, None);
    for field in rest.split_ascii_whitespace() {
        let (k, v) = field.split_once('=')?;
        match k {
            "xid" => xid = v.parse().ok(),
            "commit_lsn" => commit_lsn = v.parse().ok(),
            "end_lsn" => end_lsn = v.parse().ok(),
            "commit_time" => commit_time = parse_pg_timestamp(v),
            _ => {} // later format versions may add fields
        }
    }
    Some(TxnInfo {
        xid: xid?,
        commit_lsn: commit_lsn?,
        end_lsn: end_lsn?,
        commit_time: commit_time?,
    })
}

const USECS_PER_SEC: i64 = 1_000_000;
const SECS_PER_DAY: i64 = 86_400;
/// Days from 1970-01-01 to 2000-01-01.
const PG_EPOCH_DAYS: i64 = 10_957;

/// Formats a PostgreSQL timestamp (µs since 2000-01-01 UTC) as RFC 3339 UTC with microseconds.
pub fn format_pg_timestamp(usecs: i64) -> String {
    let secs = usecs.div_euclid(USECS_PER_SEC);
    let micros = usecs.rem_euclid(USECS_PER_SEC);
    let days = secs.div_euclid(SECS_PER_DAY) + PG_EPOCH_DAYS;
    let sod = secs.rem_euclid(SECS_PER_DAY);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{micros:06}Z",
        sod / 3600,
        sod % 3600 / 60,
        sod % 60
    )
}

/// Parses what [`format_pg_timestamp`] writes (also without fraction, and `+00:00` for `Z`).
pub fn parse_pg_timestamp(s: &str) -> Option<i64> {
    let s = s.strip_suffix('Z').or_else(|| s.strip_suffix("+00:00"))?;
    let (date, time) = s.split_once('T')?;
    let mut dp = date.splitn(3, '-');
    let (y, m, d): (i64, u32, u32) = (
        dp.next()?.parse().ok()?,
        dp.next()?.parse().ok()?,
        dp.next()?.parse().ok()?,
    );
    let (hms, frac) = time.split_once('.').unwrap_or((time, ""));
    let mut tp = hms.splitn(3, ':');
    let (hh, mm, ss): (i64, i64, i64) = (
        tp.next()?.parse().ok()?,
        tp.next()?.parse().ok()?,
        tp.next()?.parse().ok()?,
    );
    if !(1..=12).contains(&m)
        || !(1..=31).contains(&d)
        || hh > 23
        || mm > 59
        || ss > 60
        || frac.len() > 6
    {
        return None;
    }
    let micros: i64 = if frac.is_empty() {
        0
    } else {
        if !frac.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        frac.parse::<i64>().ok()? * 10i64.pow(6 - frac.len() as u32)
    };
    let days = days_from_civil(y, m, d) - PG_EPOCH_DAYS;
    Some(((days * SECS_PER_DAY + hh * 3600 + mm * 60 + ss) * USECS_PER_SEC) + micros)
}

/// Howard Hinnant's algorithm: days since 1970-01-01 → proleptic Gregorian (y, m, d).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// Inverse of [`civil_from_days`].
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outside_lines_round_trip() {
        let mut out = Vec::new();
        render_outside(
            &mut out,
            b"CREATE TABLESPACE \"t;s\" OWNER o LOCATION '/x'",
            Lsn(0x1_0000_00A0),
        );
        let line = String::from_utf8(out).unwrap();
        assert_eq!(
            line,
            "CREATE TABLESPACE \"t;s\" OWNER o LOCATION '/x'; -- decoder_sql: outside transactions lsn=1/A0"
        );
        assert_eq!(
            parse_outside(&line),
            Some((
                "CREATE TABLESPACE \"t;s\" OWNER o LOCATION '/x';",
                Lsn(0x1_0000_00A0)
            ))
        );
        assert_eq!(
            parse_outside("SELECT 1; -- decoder_sql: outside transactions lsn=x"),
            None
        );
        assert_eq!(parse_outside("COMMIT; -- xid=1 end_lsn=0/1"), None);
    }

    #[test]
    fn pg_epoch_is_2000() {
        assert_eq!(format_pg_timestamp(0), "2000-01-01T00:00:00.000000Z");
        assert_eq!(format_pg_timestamp(-1), "1999-12-31T23:59:59.999999Z");
    }

    #[test]
    fn known_timestamps() {
        // SELECT extract(epoch from '2026-11-22 19:00:00.123456+00'::timestamptz) - 946684800
        let t = (848_689_200 * USECS_PER_SEC) + 123_456;
        assert_eq!(format_pg_timestamp(t), "2026-11-22T19:00:00.123456Z");
        // Leap day.
        let leap = parse_pg_timestamp("2024-02-29T12:00:00Z").unwrap();
        assert_eq!(format_pg_timestamp(leap), "2024-02-29T12:00:00.000000Z");
    }

    #[test]
    fn timestamp_round_trip_over_centuries() {
        let mut t = -3_000_000_000_000_000i64;
        while t < 3_000_000_000_000_000 {
            let s = format_pg_timestamp(t);
            assert_eq!(parse_pg_timestamp(&s), Some(t), "{s}");
            t += 7_777_777_777_777;
        }
    }

    #[test]
    fn parse_variants_and_garbage() {
        assert_eq!(
            parse_pg_timestamp("2000-01-01T00:00:01+00:00"),
            Some(USECS_PER_SEC)
        );
        assert_eq!(parse_pg_timestamp("2000-01-01T00:00:00.5Z"), Some(500_000));
        for bad in [
            "",
            "2000-01-01",
            "2000-13-01T00:00:00Z",
            "2000-01-01T00:00:00",
            "2000-01-01T00:00:00.1234567Z",
            "2000-01-01T00:00:00.x1Z",
        ] {
            assert_eq!(parse_pg_timestamp(bad), None, "{bad}");
        }
    }

    #[test]
    fn annotated_lines_round_trip() {
        let info = TxnInfo {
            xid: 735,
            commit_lsn: "0/1A2B3C8".parse().unwrap(),
            end_lsn: "0/1A2B3F8".parse().unwrap(),
            commit_time: 848_689_200 * USECS_PER_SEC,
        };
        let mut out = Vec::new();
        render_begin(&mut out, Some(&info));
        let line = String::from_utf8(out).unwrap();
        assert_eq!(
            line,
            "BEGIN; -- xid=735 commit_lsn=0/1A2B3C8 end_lsn=0/1A2B3F8 commit_time=2026-11-22T19:00:00.000000Z"
        );
        assert_eq!(parse_begin(&line), Some(info));
        let mut out = Vec::new();
        render_commit(&mut out, Some(&info));
        assert_eq!(out, b"COMMIT; -- xid=735 end_lsn=0/1A2B3F8");
    }

    #[test]
    fn plain_lines() {
        let mut out = Vec::new();
        render_begin(&mut out, None);
        render_commit(&mut out, None);
        assert_eq!(out, b"BEGIN;COMMIT;");
        assert_eq!(parse_begin("BEGIN;"), None);
        assert_eq!(parse_begin("BEGIN; -- xid=1"), None);
    }
}
