//! Sequence values after a restore.
//!
//! PostgreSQL does not decode sequences. Their values reach the target from the base dump
//! (pg_dump's `setval` lines) and from the snapshots `pgincr stream` writes into the stream
//! (`decoder_sql.snapshot_sequences()`, `SELECT pg_catalog.setval(...)` lines, applied with
//! the rest). Such a value is exact as long as the sequence's table did not change after it:
//! then it is kept, even below the column's maximum (rows inserted with explicit values).
//! A sequence whose table received rows after its last snapshot (or that has none) is moved
//! up to its column's maximum, so the next `nextval` does not collide.

use crate::Result;
use crate::error::describe_pg_error;
use sqlgen::ident::quote_ident;
use std::collections::HashMap;
use tokio_postgres::Client;

/// Watches the applied stream for sequence snapshots and for rows written to tables, by
/// position (line count), so that the last of each is known per name.
#[derive(Debug, Default)]
pub struct SequenceTracker {
    position: i64,
    snapshots: HashMap<String, i64>,
    changes: HashMap<String, i64>,
}

impl SequenceTracker {
    pub fn observe(&mut self, txn_text: &str) {
        for line in txn_text.lines() {
            self.observe_line(line);
        }
    }

    /// One line of an applied transaction.
    pub fn observe_line(&mut self, line: &str) {
        self.position += 1;
        if line.contains(char::REPLACEMENT_CHARACTER) {
            // Read from another encoding than UTF-8: a name in it could not be looked up.
            // (Its snapshots are applied all the same; only the raise to the column maximum
            // after later rows is left out for such a table.)
            return;
        }
        if let Some(rest) = line.strip_prefix("SELECT pg_catalog.setval(") {
            if let Some(name) = leading_literal(rest) {
                self.snapshots.insert(name, self.position);
            }
        } else if let Some(rest) = line
            .strip_prefix("INSERT INTO ")
            .or_else(|| line.strip_prefix("UPDATE ONLY "))
        {
            let name = leading_name(rest);
            // The same table row after row: no new allocation.
            match self.changes.get_mut(name) {
                Some(p) => *p = self.position,
                None => {
                    self.changes.insert(name.to_owned(), self.position);
                }
            }
        }
    }
}

/// The string literal at the start of `text` (`'a''b'`, or `E'a\\b'` as format's %L
/// writes names with backslashes).
fn leading_literal(text: &str) -> Option<String> {
    let (escaped, body) = match text.strip_prefix("E'") {
        Some(b) => (true, b),
        None => (false, text.strip_prefix('\'')?),
    };
    let mut out = String::new();
    let mut chars = body.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\'' if chars.peek() == Some(&'\'') => {
                chars.next();
                out.push('\'');
            }
            '\'' => return Some(out),
            '\\' if escaped => out.extend(chars.next()),
            c => out.push(c),
        }
    }
    None
}

/// The (qualified, possibly quoted) name at the start of `text`: up to the first space
/// outside double quotes.
fn leading_name(text: &str) -> &str {
    let mut quoted = false;
    for (i, c) in text.char_indices() {
        match c {
            '"' => quoted = !quoted,
            ' ' if !quoted => return &text[..i],
            _ => {}
        }
    }
    text
}

/// What happened to the column-owned sequences.
#[derive(Debug, Default)]
pub struct SequenceSummary {
    /// Kept at the value of their last snapshot (the base dump or the stream).
    pub captured: u64,
    /// Moved up to their column's maximum.
    pub raised: u64,
}

pub async fn sync_owned_sequences(
    client: &Client,
    tracker: &SequenceTracker,
) -> Result<SequenceSummary> {
    let (snap_names, snap_pos): (Vec<&str>, Vec<i64>) = tracker
        .snapshots
        .iter()
        .map(|(n, p)| (n.as_str(), *p))
        .unzip();
    let (table_names, table_pos): (Vec<&str>, Vec<i64>) = tracker
        .changes
        .iter()
        .map(|(n, p)| (n.as_str(), *p))
        .unzip();
    // Names are resolved by the server as the stream spelled them; no snapshot means the
    // base dump's value (position 0), no change means none (-1).
    // The stream's last DDL may have left its own search_path: names resolve in pg_catalog
    // only, and tables print schema-qualified.
    client
        .batch_execute("SELECT pg_catalog.set_config('search_path', 'pg_catalog', false)")
        .await?;
    let rows = client
        .query(
            "WITH snap AS (
                 SELECT pg_catalog.to_regclass(n) AS seq, pg_catalog.max(p) AS p
                   FROM ROWS FROM (pg_catalog.unnest($1::text[]), pg_catalog.unnest($2::int8[])) AS u(n, p)
                  GROUP BY 1),
             changed AS (
                 SELECT pg_catalog.to_regclass(n) AS tbl, pg_catalog.max(p) AS p
                   FROM ROWS FROM (pg_catalog.unnest($3::text[]), pg_catalog.unnest($4::int8[])) AS u(n, p)
                  GROUP BY 1)
             SELECT s.oid::regclass::text, d.refobjid::regclass::text, a.attname::text,
                    coalesce(ch.p, -1) > coalesce(sn.p, 0)
               FROM pg_catalog.pg_class s
               JOIN pg_catalog.pg_sequence ps ON ps.seqrelid = s.oid
               JOIN pg_catalog.pg_depend d ON d.classid = 'pg_catalog.pg_class'::regclass
                AND d.objid = s.oid AND d.refclassid = 'pg_catalog.pg_class'::regclass
                AND d.deptype IN ('a', 'i')
               JOIN pg_catalog.pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
               LEFT JOIN snap sn ON sn.seq = s.oid
               LEFT JOIN changed ch ON ch.tbl = d.refobjid
              WHERE s.relkind = 'S' AND ps.seqincrement > 0
              ORDER BY 1",
            &[&snap_names, &snap_pos, &table_names, &table_pos],
        )
        .await?;
    let mut summary = SequenceSummary::default();
    for row in rows {
        let (seq, table, column, stale): (String, String, String, bool) =
            (row.get(0), row.get(1), row.get(2), row.get(3));
        if !stale {
            summary.captured += 1;
            continue;
        }
        let raise = format!(
            "SELECT pg_catalog.setval('{seq_lit}'::regclass, m, true)
               FROM (SELECT pg_catalog.max({col})::pg_catalog.int8 AS m FROM {table}) x
              WHERE m IS NOT NULL AND m >= (SELECT last_value FROM {seq})",
            seq_lit = seq.replace('\'', "''"),
            col = quote_ident(&column),
        );
        match client.query(&raise, &[]).await {
            Ok(r) if !r.is_empty() => summary.raised += 1,
            Ok(_) => summary.captured += 1,
            Err(e) => tracing::warn!("could not sync sequence {seq}: {}", describe_pg_error(&e)),
        }
    }
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshots_and_changes_are_tracked_by_name_and_position() {
        let mut t = SequenceTracker::default();
        t.observe("BEGIN; -- xid=1\nINSERT INTO public.\"a b\" (id) VALUES (1000);\nCOMMIT;\n");
        t.observe(
            "BEGIN; -- xid=2\nSELECT pg_catalog.setval('\"a b_id_seq\"', 1, false);\nSELECT pg_catalog.setval(E'x\\\\y', 5, true);\nCOMMIT;\n",
        );
        t.observe("BEGIN; -- xid=3\nUPDATE ONLY s.t SET id = 2 WHERE id = 1;\nCOMMIT;\n");
        assert_eq!(t.changes["public.\"a b\""], 2);
        assert_eq!(t.snapshots["\"a b_id_seq\""], 5);
        assert_eq!(t.snapshots["x\\y"], 6);
        assert_eq!(t.changes["s.t"], 9);
    }
}
