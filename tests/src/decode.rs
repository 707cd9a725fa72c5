//! Helpers around the SQL decoding interface (`pg_logical_slot_*_changes`).

use tokio_postgres::Client;

/// Creates a decoder_sql slot. Must run outside a transaction that wrote anything.
pub async fn create_slot(client: &Client, slot: &str) {
    client
        .execute(
            "SELECT 'init' FROM pg_create_logical_replication_slot($1, 'decoder_sql')",
            &[&slot],
        )
        .await
        .unwrap_or_else(|e| panic!("create slot {slot}: {e}"));
}

fn option_array(options: &[(&str, &str)]) -> Vec<String> {
    options
        .iter()
        .flat_map(|(k, v)| [k.to_string(), v.to_string()])
        .collect()
}

/// Consumes and returns the decoded statements.
pub async fn get_changes(client: &Client, slot: &str, options: &[(&str, &str)]) -> Vec<String> {
    try_get_changes(client, slot, options)
        .await
        .unwrap_or_else(|e| panic!("get changes: {e:?}"))
}

/// Returns the decoded statements without consuming them.
pub async fn peek_changes(client: &Client, slot: &str, options: &[(&str, &str)]) -> Vec<String> {
    let rows = client
        .query(
            "SELECT data FROM pg_logical_slot_peek_changes($1, NULL, NULL, VARIADIC $2::text[])",
            &[&slot, &option_array(options)],
        )
        .await
        .unwrap_or_else(|e| panic!("peek changes: {e:?}"));
    rows.iter().map(|r| r.get(0)).collect()
}

/// Like [`get_changes`], returning the server's error instead of panicking.
pub async fn try_get_changes(
    client: &Client,
    slot: &str,
    options: &[(&str, &str)],
) -> Result<Vec<String>, tokio_postgres::Error> {
    let rows = client
        .query(
            "SELECT data FROM pg_logical_slot_get_changes($1, NULL, NULL, VARIADIC $2::text[])",
            &[&slot, &option_array(options)],
        )
        .await?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// The server error's message, SQLSTATE and hint, for assertions.
pub fn db_error(err: &tokio_postgres::Error) -> (String, String, String) {
    let db = err
        .as_db_error()
        .unwrap_or_else(|| panic!("not a server error: {err:?}"));
    (
        db.message().to_owned(),
        db.code().code().to_owned(),
        db.hint().unwrap_or_default().to_owned(),
    )
}

/// Every row of every user table as text, ordered: equal databases give equal strings.
pub async fn database_contents(client: &Client) -> String {
    let tables = client
        .query(
            "SELECT format('%I.%I', n.nspname, c.relname) FROM pg_class c \
             JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'decoder_sql') \
             AND n.nspname NOT LIKE 'pg_toast%' ORDER BY 1",
            &[],
        )
        .await
        .unwrap();
    let mut out = String::new();
    for t in tables {
        let name: String = t.get(0);
        let row = client
            .query_one(
                &format!(
                    "SELECT count(*)::text || ' rows ' || coalesce(md5(string_agg(x::text, E'\\n' ORDER BY x::text)), '') FROM {name} x"
                ),
                &[],
            )
            .await
            .unwrap();
        let digest: String = row.get(0);
        out.push_str(&format!("{name}: {digest}\n"));
    }
    out
}

/// Writes `lines` to a file and applies it to `dbname` with [`replay_file`].
pub fn replay(
    cluster: &crate::TestCluster,
    dbname: &str,
    lines: &[String],
) -> std::process::Output {
    let file = cluster.scratch_dir("replay").join(format!("{dbname}.sql"));
    std::fs::write(&file, lines.join("\n") + "\n").unwrap();
    replay_file(cluster, dbname, &file)
}

/// Applies a SQL file to `dbname` with psql as logical replication applies changes
/// (`session_replication_role = replica`), stopping at the first error.
pub fn replay_file(
    cluster: &crate::TestCluster,
    dbname: &str,
    file: &std::path::Path,
) -> std::process::Output {
    cluster
        .client_command("psql")
        .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", dbname])
        .args(["-c", "SET session_replication_role = replica", "-f"])
        .arg(file)
        .output()
        .expect("run psql")
}

/// `pg_dump --schema-only` of `dbname` without the decoder_sql extension's own objects and
/// without comments, for comparing schemas.
pub fn schema_dump(cluster: &crate::TestCluster, dbname: &str) -> String {
    schema_dump_with(cluster.bindir(), cluster, dbname, &["--no-owner"])
}

/// Like [`schema_dump`], with the pg_dump of `bindir` (to spell two majors' schemas alike) and
/// extra pg_dump arguments.
pub fn schema_dump_with(
    bindir: &std::path::Path,
    cluster: &crate::TestCluster,
    dbname: &str,
    extra: &[&str],
) -> String {
    let out = std::process::Command::new(bindir.join("pg_dump"))
        .env("PGHOST", cluster.socket_dir())
        .env("PGPORT", cluster.port().to_string())
        .env("PGUSER", "postgres")
        .stdin(std::process::Stdio::null())
        .args(["--schema-only", "--exclude-schema=decoder_sql"])
        .args(extra)
        .args(["-d", dbname])
        .output()
        .expect("run pg_dump");
    assert!(
        out.status.success(),
        "pg_dump: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        // \restrict carries a random key per dump (PostgreSQL 15.14+).
        .filter(|l| {
            !l.starts_with("--") && !l.starts_with("\\restrict") && !l.starts_with("\\unrestrict")
        })
        .filter(|l| !l.contains("decoder_sql") && !l.trim().is_empty())
        .collect::<Vec<_>>()
        .join("\n")
}

/// Lines only in `a` and lines only in `b`, for readable assertion messages.
pub fn line_diff(a: &str, b: &str) -> String {
    let only = |x: &str, y: &str| {
        let ys: std::collections::HashSet<&str> = y.lines().collect();
        x.lines()
            .filter(|l| !ys.contains(l))
            .map(|l| format!("  {l}\n"))
            .collect::<String>()
    };
    format!(
        "only in first:\n{}only in second:\n{}",
        only(a, b),
        only(b, a)
    )
}

/// Runs pg_recvlogical against `dbname` with `args`, panicking with its stderr on failure.
pub fn recvlogical(cluster: &crate::TestCluster, dbname: &str, args: &[&str]) {
    let out = cluster
        .client_command("pg_recvlogical")
        .args(["-d", dbname])
        .args(args)
        .output()
        .expect("run pg_recvlogical");
    assert!(
        out.status.success(),
        "pg_recvlogical {args:?}: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        cluster.server_log()
    );
}
