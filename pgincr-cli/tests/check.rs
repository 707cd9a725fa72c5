//! `pgincr check` against real clusters: it reports each problem it claims to find, with its
//! fix, and exits 3 when a check fails.

use e2e::TestCluster;
use std::process::Output;

fn pgincr_check(cluster: &TestCluster, dbname: &str) -> Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_pgincr"))
        .args(["check", "-d", &cluster.conninfo(dbname)])
        .env_remove("PGINCR_DSN")
        .output()
        .expect("run pgincr")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test]
async fn wal_level_replica_fails() {
    let cluster = TestCluster::start_without_plugin(&["wal_level = replica"]);
    let out = pgincr_check(&cluster, "postgres");
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(3), "{text}");
    assert!(text.contains("FAIL wal_level = replica"), "{text}");
    assert!(
        text.contains("fix: ALTER SYSTEM SET wal_level = logical"),
        "{text}"
    );
}

#[tokio::test]
async fn finds_tables_that_cannot_be_backed_up_and_passes_once_fixed() {
    let cluster = TestCluster::start_without_plugin(&["max_slot_wal_keep_size = 1GB"]);
    let db = cluster.connect("postgres").await;
    db.batch_execute(
        "CREATE TABLE nopk (a int);
         CREATE TABLE nothing (a int PRIMARY KEY); ALTER TABLE nothing REPLICA IDENTITY NOTHING;
         CREATE TABLE fine (a int PRIMARY KEY);
         CREATE TABLE full_ok (a int); ALTER TABLE full_ok REPLICA IDENTITY FULL;
         CREATE UNLOGGED TABLE scratch (a int PRIMARY KEY);
         SELECT lo_create(0);",
    )
    .await
    .unwrap();
    let out = pgincr_check(&cluster, "postgres");
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(3), "{text}");
    assert!(
        text.contains("FAIL tables without usable replica identity (UPDATE/DELETE cannot be backed up): public.\"nothing\", public.nopk")
            || text.contains("FAIL tables without usable replica identity (UPDATE/DELETE cannot be backed up): public.nopk, public.nothing"),
        "{text}"
    );
    assert!(
        !text.contains("full_ok") && !text.contains("public.fine"),
        "{text}"
    );
    assert!(text.contains("WARN unlogged tables are not in the WAL; only their base-dump contents are kept: public.scratch"), "{text}");
    assert!(text.contains("WARN 1 large objects"), "{text}");
    assert!(text.contains("ok   wal_level = logical"), "{text}");
    assert!(text.contains("ok   max_slot_wal_keep_size = 1GB"), "{text}");
    // No REVOKE of a core function is needed: the capture's messages are authenticated.
    assert!(!text.contains("pg_logical_emit_message"), "{text}");

    db.batch_execute(
        "ALTER TABLE nopk REPLICA IDENTITY FULL; ALTER TABLE nothing REPLICA IDENTITY DEFAULT;
         DROP TABLE scratch; SELECT lo_unlink(oid) FROM pg_largeobject_metadata;",
    )
    .await
    .unwrap();
    let out = pgincr_check(&cluster, "postgres");
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(
        text.contains("ok   every table has a usable replica identity"),
        "{text}"
    );
}

#[test]
fn unreachable_server_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_pgincr"))
        .args([
            "check",
            "-d",
            &format!(
                "host={} port=1 user=postgres dbname=postgres",
                dir.path().display()
            ),
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    // The failure names where it tried to connect and why.
    assert!(
        stderr.contains(&format!(
            "could not connect to {}/.s.PGSQL.1",
            dir.path().display()
        )) && stderr.contains("No such file or directory"),
        "{stderr}"
    );
}

#[tokio::test]
async fn fix_gives_tables_an_identity_after_confirmation() {
    let cluster = TestCluster::start();
    let db = cluster.connect("postgres").await;
    db.batch_execute(
        "CREATE TABLE with_unique (a int NOT NULL, b int NOT NULL, c int);
         CREATE UNIQUE INDEX wide ON with_unique (a, b);
         CREATE UNIQUE INDEX narrow ON with_unique (a);
         CREATE UNIQUE INDEX nullable ON with_unique (c);
         CREATE TABLE only_nullable (c int UNIQUE);
         CREATE TABLE plain (x int);",
    )
    .await
    .unwrap();
    let fix = |extra: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_pgincr"))
            .args(["check", "--fix", "-d", &cluster.conninfo("postgres")])
            .args(extra)
            .env_remove("PGINCR_DSN")
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap()
    };
    // Without a terminal and without --yes nothing is changed.
    let out = fix(&[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--yes"));
    let text = stdout(&out);
    assert!(
        text.contains("ALTER TABLE public.with_unique REPLICA IDENTITY USING INDEX narrow;"),
        "{text}"
    );
    assert!(
        text.contains("ALTER TABLE public.only_nullable REPLICA IDENTITY FULL;"),
        "{text}"
    );
    assert!(
        text.contains("ALTER TABLE public.plain REPLICA IDENTITY FULL;"),
        "{text}"
    );
    assert!(text.contains("CREATE EXTENSION decoder_sql;"), "{text}");
    let unchanged: String = db
        .query_one(
            "SELECT relreplident::text FROM pg_class WHERE relname = 'plain'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(unchanged, "d");

    assert!(
        text.contains("ALTER DATABASE postgres SET session_preload_libraries = 'decoder_sql';"),
        "{text}"
    );
    let out = fix(&["--yes"]);
    let text = stdout(&out);
    assert!(
        text.contains("ok   decoder_sql is loaded by every session"),
        "{text}"
    );
    let preloaded: String = cluster
        .connect("postgres")
        .await
        .query_one("SELECT current_setting('session_preload_libraries')", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(preloaded, "decoder_sql");
    assert!(
        text.contains("applied: ALTER TABLE public.plain REPLICA IDENTITY FULL"),
        "{text}"
    );
    assert!(
        text.contains("ok   every table has a usable replica identity"),
        "{text}"
    );
    let idents: Vec<(String, String)> = db
        .query(
            "SELECT relname::text, relreplident::text FROM pg_class WHERE relname IN ('with_unique', 'only_nullable', 'plain') ORDER BY 1",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(
        idents,
        [
            ("only_nullable".into(), "f".into()),
            ("plain".into(), "f".into()),
            ("with_unique".into(), "i".into())
        ]
    );
}

/// Servers with the CVE-2026-6471 fix (15.19+, 16.15+, 17.11+, 18.6+) refuse output plugins
/// not listed in `output_plugin_libraries`: check says so, and --fix adds decoder_sql while
/// keeping what was listed. Servers without the setting pass the check.
#[tokio::test]
async fn output_plugin_libraries_is_checked_and_fixed() {
    let restricted = e2e::cluster::restricts_output_plugins(&e2e::cluster::pg_bindir());
    let conf: &[&str] = if restricted {
        &["output_plugin_libraries = 'pgoutput, test_decoding'"]
    } else {
        &[]
    };
    let cluster = TestCluster::start_with(conf);
    let out = pgincr_check(&cluster, "postgres");
    let text = stdout(&out);
    if !restricted {
        assert!(
            text.contains("ok   decoder_sql may be used as an output plugin"),
            "{text}"
        );
        return;
    }
    assert_eq!(out.status.code(), Some(3), "{text}");
    assert!(
        text.contains("FAIL output_plugin_libraries does not list decoder_sql"),
        "{text}"
    );
    assert!(
        text.contains(
            "fix: ALTER SYSTEM SET output_plugin_libraries = 'pgoutput', 'test_decoding', 'decoder_sql'"
        ),
        "{text}"
    );
    let db = cluster.connect("postgres").await;
    let refused = db
        .execute(
            "SELECT pg_create_logical_replication_slot('s', 'decoder_sql')",
            &[],
        )
        .await
        .unwrap_err();
    assert!(
        refused
            .to_string()
            .contains("may not be used as an output plugin")
            || format!("{refused:?}").contains("may not be used as an output plugin"),
        "{refused:?}"
    );

    // init refuses before creating anything, and says how to fix it.
    let repo = cluster.scratch_dir("repo").join("r");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_pgincr"))
        .args(["init", "-d", &cluster.conninfo("postgres"), "-r"])
        .arg(&repo)
        .env("PGINCR_PG_BINDIR", cluster.bindir())
        .env_remove("PGINCR_DSN")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("does not allow decoder_sql as an output plugin")
            && stderr.contains("pgincr check --fix"),
        "{stderr}"
    );
    assert!(!repo.exists(), "init left {} behind", repo.display());

    let out = std::process::Command::new(env!("CARGO_BIN_EXE_pgincr"))
        .args([
            "check",
            "--fix",
            "--yes",
            "-d",
            &cluster.conninfo("postgres"),
        ])
        .env_remove("PGINCR_DSN")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let text = stdout(&out);
    assert!(
        text.contains("applied: ALTER SYSTEM SET output_plugin_libraries = 'pgoutput', 'test_decoding', 'decoder_sql'"),
        "{text}"
    );
    assert!(
        text.contains("ok   decoder_sql may be used as an output plugin"),
        "{text}"
    );
    let fresh = cluster.connect("postgres").await;
    let setting: String = fresh
        .query_one("SELECT current_setting('output_plugin_libraries')", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(setting, "pgoutput, test_decoding, decoder_sql");
    // Both the added plugin and the ones listed before are usable.
    for plugin in ["decoder_sql", "test_decoding"] {
        fresh
            .execute(
                "SELECT pg_create_logical_replication_slot('s_' || $1, $1)",
                &[&plugin],
            )
            .await
            .unwrap_or_else(|e| panic!("slot with {plugin}: {e:?}"));
    }
}
