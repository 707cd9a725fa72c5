//! What a restore leaves behind and what it checks first: no replication origin once
//! complete (origins of dropped databases are cleaned up), no empty decoder_sql schema, a
//! target holding only types counts as not empty, and a dry run to a time needs no target.

mod common;

use common::*;
use tokio_postgres::Client;

const SETUP: &str = "
    CREATE TABLE items (id serial PRIMARY KEY, name text);
    INSERT INTO items (name) SELECT 'item ' || g FROM generate_series(1, 10) g;";

async fn pgincr_origins(client: &Client) -> Vec<String> {
    client
        .query(
            "SELECT roname FROM pg_replication_origin WHERE roname LIKE 'pgincr\\_%' ORDER BY 1",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

#[tokio::test]
async fn complete_restores_leave_no_origin_and_orphans_are_dropped() {
    let (cluster, source, repo) = initialised(SETUP).await;
    let repo_s = repo.to_str().unwrap();
    let mid_lsn = query_text(&source, "SELECT pg_current_wal_lsn()::text").await;
    source
        .batch_execute("INSERT INTO items (name) VALUES ('late')")
        .await
        .unwrap();
    catch_up(&cluster, repo_s);

    let args = |db: &str| {
        vec![
            "restore".to_owned(),
            "-r".into(),
            repo_s.into(),
            "-t".into(),
            format!("dbname={db}"),
            "--create".into(),
        ]
    };
    let run = |db: &str, extra: &[&str]| {
        let mut a = args(db);
        a.extend(extra.iter().map(|s| s.to_string()));
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        succeeds(&cluster, &a, &[])
    };

    run("complete", &[]);
    assert_same_database(&cluster, &source, "complete").await;
    assert_eq!(pgincr_origins(&source).await, Vec::<String>::new());

    // A restore to a point stays resumable; once its database is dropped, the next restore
    // into the cluster drops its origin.
    let out = run("partial", &["--to-lsn", &mid_lsn]);
    assert!(out.contains("can be taken further later"), "{out}");
    let kept = pgincr_origins(&source).await;
    assert_eq!(kept.len(), 1, "{kept:?}");
    source.batch_execute("DROP DATABASE partial").await.unwrap();
    let out = run("after_drop", &[]);
    assert!(
        out.contains("dropped 1 replication origin(s)") && out.contains(&kept[0]),
        "{out}"
    );
    assert_eq!(pgincr_origins(&source).await, Vec::<String>::new());
    assert_same_database(&cluster, &source, "after_drop").await;

    // decoder_sql lives in the source only.
    let restored = cluster.connect("complete").await;
    let schemas = query_text(
        &restored,
        "SELECT count(*)::text FROM pg_namespace WHERE nspname = 'decoder_sql'",
    )
    .await;
    assert_eq!(schemas, "0");
}

#[tokio::test]
async fn a_target_with_only_types_is_not_empty() {
    let (cluster, source, repo) = initialised(SETUP).await;
    let repo_s = repo.to_str().unwrap();
    source.batch_execute("CREATE DATABASE typed").await.unwrap();
    let typed = cluster.connect("typed").await;
    typed
        .batch_execute(
            "CREATE TYPE mood AS ENUM ('ok'); CREATE DOMAIN positive AS int CHECK (VALUE > 0);",
        )
        .await
        .unwrap();
    let err = fails(
        &cluster,
        &["restore", "-r", repo_s, "-t", "dbname=typed"],
        &[],
    );
    assert!(
        err.contains("target database \"typed\" is not empty (2 object(s))")
            && err.contains("nothing to resume"),
        "{err}"
    );
}

#[tokio::test]
async fn a_dry_run_to_a_time_needs_no_target_database() {
    let (cluster, source, repo) = initialised(SETUP).await;
    let repo_s = repo.to_str().unwrap();
    source
        .batch_execute("INSERT INTO items (name) VALUES ('late')")
        .await
        .unwrap();
    catch_up(&cluster, repo_s);
    let now = query_text(&source, "SELECT now()::text").await;
    let out = succeeds(
        &cluster,
        &[
            "restore",
            "-r",
            repo_s,
            "-t",
            "dbname=not_there",
            "--dry-run",
            "--to-time",
            &now,
        ],
        &[],
    );
    assert!(
        out.contains("transaction(s) would be applied") && !out.contains("\n0 transaction(s)"),
        "{out}"
    );
    let exists = query_text(
        &source,
        "SELECT count(*)::text FROM pg_database WHERE datname = 'not_there'",
    )
    .await;
    assert_eq!(exists, "0");
}

/// `pgincr origins` lists the origins restores keep, with their database and progress, and
/// `--drop-orphaned` drops those whose database is gone.
#[tokio::test]
async fn origins_command_lists_and_cleans_up() {
    let (cluster, source, repo) = initialised(SETUP).await;
    let repo_s = repo.to_str().unwrap();
    let mid_lsn = query_text(&source, "SELECT pg_current_wal_lsn()::text").await;
    source
        .batch_execute("INSERT INTO items (name) VALUES ('late')")
        .await
        .unwrap();
    catch_up(&cluster, repo_s);
    for db in ["kept_a", "kept_b"] {
        restore_into(
            &cluster,
            repo_s,
            &format!("dbname={db}"),
            &["--to-lsn", &mid_lsn],
        );
    }
    let out = run_ok(&cluster, &["origins", "-t", "dbname=postgres"]);
    assert_eq!(out.matches("database kept_").count(), 2, "{out}");
    assert!(out.contains("applied up to "), "{out}");
    source.batch_execute("DROP DATABASE kept_a").await.unwrap();
    let out = run_ok(&cluster, &["origins", "-t", "dbname=postgres"]);
    assert!(out.contains("database (database dropped)"), "{out}");
    let out = run_ok(
        &cluster,
        &["origins", "-t", "dbname=postgres", "--drop-orphaned"],
    );
    assert!(out.contains("dropped pgincr_"), "{out}");
    assert!(!out.contains("(database dropped)"), "{out}");
    assert_eq!(pgincr_origins(&source).await.len(), 1);
    assert!(out.contains("database kept_b"), "{out}");
}
