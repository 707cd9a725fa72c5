//! The settings every restore session runs with, whatever the target's defaults say
//! (postgresql.conf, `ALTER DATABASE … SET`, `ALTER ROLE … SET`, `PGOPTIONS`).
//!
//! The stream's SQL is written for PostgreSQL's defaults and decoder_sql's pinned output
//! settings (docs/format.md): with `standard_conforming_strings = off` a backslash in a
//! literal becomes an escape, so values change and a crafted value can end its literal and
//! run SQL; with `array_nulls = off` array NULL elements become the string 'NULL'.

/// Settings of the values' spelling: the same for the base dump and the change stream.
/// `lc_monetary` is not among them: pg_dump writes money in the source's locale.
const VALUE_INPUT: &[(&str, &str)] = &[
    ("standard_conforming_strings", "on"),
    ("array_nulls", "on"),
    ("backslash_quote", "safe_encoding"),
    ("DateStyle", "'ISO, YMD'"),
    ("IntervalStyle", "postgres"),
    ("xmloption", "content"),
    ("transform_null_equals", "off"),
    ("default_transaction_read_only", "off"),
    ("row_security", "off"),
    ("check_function_bodies", "off"),
    ("statement_timeout", "0"),
    ("lock_timeout", "0"),
    ("idle_in_transaction_session_timeout", "0"),
    ("client_min_messages", "warning"),
];

/// Settings the change stream needs on top: decoder_sql writes values (and compares
/// REPLICA IDENTITY FULL rows by their text) with these.
const STREAM_ONLY: &[(&str, &str)] = &[
    ("session_replication_role", "replica"),
    ("synchronous_commit", "off"),
    ("TimeZone", "'UTC'"),
    ("extra_float_digits", "3"),
    ("bytea_output", "hex"),
    ("lc_monetary", "'C'"),
    // Names in decoder_sql's DML are schema-qualified; each DDL sets its own path first.
    ("search_path", "pg_catalog"),
];

/// Settings that exist only from some major on.
fn versioned(server_version_num: i32) -> Vec<(&'static str, &'static str)> {
    let mut v = Vec::new();
    if server_version_num >= 140000 {
        v.push(("idle_session_timeout", "0"));
    }
    if server_version_num >= 170000 {
        v.push(("transaction_timeout", "0"));
    }
    v
}

fn render(settings: impl IntoIterator<Item = (&'static str, &'static str)>) -> String {
    settings
        .into_iter()
        .map(|(k, v)| format!("SET {k} = {v};\n"))
        .collect()
}

/// `SET` statements for the session that loads the base dump and globals.
pub fn base_settings(server_version_num: i32) -> String {
    render(
        VALUE_INPUT
            .iter()
            .copied()
            .chain(versioned(server_version_num)),
    )
}

/// `SET` statements for the session that applies the change stream.
pub fn stream_settings(server_version_num: i32) -> String {
    render(
        VALUE_INPUT
            .iter()
            .chain(STREAM_ONLY)
            .copied()
            .chain(versioned(server_version_num)),
    )
}

/// The settings of [`base_settings`] as `PGOPTIONS` (`-c name=value`, spaces escaped), for
/// pg_restore's sessions, which take no SQL of ours before the dump.
pub fn base_pgoptions(server_version_num: i32) -> String {
    VALUE_INPUT
        .iter()
        .copied()
        .chain(versioned(server_version_num))
        .map(|(k, v)| {
            let v = v.trim_matches('\'');
            let escaped: String = v
                .chars()
                .flat_map(|c| match c {
                    ' ' | '\\' => vec!['\\', c],
                    c => vec![c],
                })
                .collect();
            format!("-c {k}={escaped}")
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_pgoptions_escape_spaces() {
        let o = base_pgoptions(150000);
        assert!(o.starts_with("-c standard_conforming_strings=on -c array_nulls=on "));
        assert!(o.contains(" -c DateStyle=ISO,\\ YMD "), "{o}");
        assert!(o.ends_with(" -c idle_session_timeout=0"), "{o}");
    }

    #[test]
    fn stream_settings_pin_literal_parsing_and_follow_the_major() {
        let s = stream_settings(130000);
        assert!(s.starts_with("SET standard_conforming_strings = on;\nSET array_nulls = on;\n"));
        assert!(s.contains("SET session_replication_role = replica;\n"));
        assert!(s.contains("SET lc_monetary = 'C';\n"));
        assert!(!s.contains("idle_session_timeout"));
        let s = stream_settings(170000);
        assert!(s.contains("SET idle_session_timeout = 0;\nSET transaction_timeout = 0;\n"));
        let b = base_settings(160000);
        assert!(b.contains("SET standard_conforming_strings = on;\n"));
        assert!(!b.contains("lc_monetary") && !b.contains("session_replication_role"));
    }
}
