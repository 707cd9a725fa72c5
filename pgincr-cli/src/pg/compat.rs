//! SQL and client-program differences between PostgreSQL majors, kept in one place. Each item
//! names the majors it distinguishes. Pure: callers pass the version numbers they read.

/// `CREATE_REPLICATION_SLOT` with an exported snapshot: the parenthesised option syntax exists
/// from PostgreSQL 15, the keyword syntax (`EXPORT_SNAPSHOT`) before it.
pub fn create_slot_command(quoted_slot: &str, temporary: bool, server_version_num: i32) -> String {
    let temp = if temporary { " TEMPORARY" } else { "" };
    if server_version_num >= 150000 {
        format!(
            "CREATE_REPLICATION_SLOT {quoted_slot}{temp} LOGICAL decoder_sql (SNAPSHOT 'export');"
        )
    } else {
        format!("CREATE_REPLICATION_SLOT {quoted_slot}{temp} LOGICAL decoder_sql EXPORT_SNAPSHOT;")
    }
}

/// `output_plugin_libraries` (added by the CVE-2026-6471 fix in 15.19, 16.15, 17.11 and 18.6):
/// the current value, or no row on servers without the setting.
pub const OUTPUT_PLUGIN_LIBRARIES: &str =
    "SELECT setting FROM pg_catalog.pg_settings WHERE name = 'output_plugin_libraries'";

/// Whether psql of this version knows `\restrict`/`\unrestrict`, which pg_dump writes from
/// 13.22, 14.19, 15.14, 16.10, 17.6 and 18.0 on (CVE-2025-8714). An older psql stops at them.
pub fn psql_understands_restrict(psql_version_num: i32) -> bool {
    let (major, minor) = (psql_version_num / 10000, psql_version_num % 10000);
    match major {
        ..=12 => false,
        13 => minor >= 22,
        14 => minor >= 19,
        15 => minor >= 14,
        16 => minor >= 10,
        17 => minor >= 6,
        _ => true,
    }
}

/// Parses a client program's `--version` line ("psql (PostgreSQL) 16.15 (Debian …)",
/// "pg_dump (PostgreSQL) 18.6", "psql (PostgreSQL) 17beta1") into a version number like the
/// server's `server_version_num` (160015).
pub fn parse_client_version(line: &str) -> Option<i32> {
    let word = line.split_whitespace().nth(2)?;
    let digits_end = |s: &str| s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let major: i32 = word[..digits_end(word)].parse().ok()?;
    let rest = &word[digits_end(word)..];
    let minor: i32 = match rest.strip_prefix('.') {
        Some(m) => m[..digits_end(m)].parse().ok()?,
        None => 0,
    };
    Some(major * 10000 + minor)
}

/// The entries of `output_plugin_libraries` with `plugin` added, keeping the existing ones;
/// None when it is already listed. The value is a comma-separated list of library names,
/// possibly double-quoted.
pub fn plugin_list_with(current: &str, plugin: &str) -> Option<Vec<String>> {
    let mut entries: Vec<String> = current
        .split(',')
        .map(|e| e.trim().trim_matches('"').to_owned())
        .filter(|e| !e.is_empty())
        .collect();
    if entries.iter().any(|e| e == plugin) {
        return None;
    }
    entries.push(plugin.to_owned());
    Some(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slot_command_per_server_version() {
        assert_eq!(
            create_slot_command("pgincr", false, 150004),
            "CREATE_REPLICATION_SLOT pgincr LOGICAL decoder_sql (SNAPSHOT 'export');"
        );
        assert_eq!(
            create_slot_command("\"Base 1\"", true, 140000),
            "CREATE_REPLICATION_SLOT \"Base 1\" TEMPORARY LOGICAL decoder_sql EXPORT_SNAPSHOT;"
        );
    }

    #[test]
    fn restrict_support_by_version() {
        assert!(!psql_understands_restrict(130016));
        assert!(psql_understands_restrict(130022));
        assert!(!psql_understands_restrict(150013));
        assert!(psql_understands_restrict(150018));
        assert!(!psql_understands_restrict(170005));
        assert!(psql_understands_restrict(180000));
        assert!(!psql_understands_restrict(120020));
    }

    #[test]
    fn client_versions() {
        assert_eq!(
            parse_client_version("psql (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)"),
            Some(150018)
        );
        assert_eq!(
            parse_client_version("pg_dump (PostgreSQL) 18.6"),
            Some(180006)
        );
        assert_eq!(
            parse_client_version("psql (PostgreSQL) 17beta1"),
            Some(170000)
        );
        assert_eq!(
            parse_client_version("psql (PostgreSQL) 13.16\n"),
            Some(130016)
        );
        assert_eq!(parse_client_version("garbage"), None);
    }

    #[test]
    fn plugin_lists() {
        assert_eq!(
            plugin_list_with("pgoutput, test_decoding", "decoder_sql"),
            Some(vec![
                "pgoutput".into(),
                "test_decoding".into(),
                "decoder_sql".into()
            ])
        );
        assert_eq!(
            plugin_list_with("", "decoder_sql"),
            Some(vec!["decoder_sql".into()])
        );
        assert_eq!(
            plugin_list_with("pgoutput,decoder_sql", "decoder_sql"),
            None
        );
        assert_eq!(plugin_list_with("\"decoder_sql\"", "decoder_sql"), None);
    }
}
