//! The product under load and faults, run as a user would: pgbench with base backups taken
//! mid-run, rotations, killed pg_recvlogical and crashed servers, and a mixed workload of
//! DDL between DML over every common type. Restores are compared with the source.
//!
//! Load phases last `PGINCR_LOAD_SECONDS` (default 6, short for CI); the long run is
//! `PGINCR_LOAD_SECONDS=60 cargo test -p pgincr-cli --test load`.

mod common;

use common::*;
use e2e::TestCluster;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

fn load_seconds() -> u64 {
    std::env::var("PGINCR_LOAD_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(6)
}

/// pgbench with 4 clients for `seconds`, in the background.
fn pgbench_run(cluster: &TestCluster, seconds: u64) -> Child {
    pgbench(
        cluster,
        &[
            "-n",
            "-c",
            "4",
            "-j",
            "2",
            "-T",
            &seconds.to_string(),
            "postgres",
        ],
    )
    .spawn()
    .unwrap()
}

/// A cluster with pgbench tables and a repository initialised for them.
async fn pgbench_repo() -> (TestCluster, tokio_postgres::Client, PathBuf) {
    let cluster = TestCluster::start();
    pgbench_init(&cluster, 2);
    let source = cluster.connect("postgres").await;
    let repo = repo_dir(&cluster);
    run_ok(
        &cluster,
        &[
            "init",
            "-d",
            "dbname=postgres",
            "-r",
            repo.to_str().unwrap(),
        ],
    );
    (cluster, source, repo)
}

#[tokio::test]
async fn pgbench_with_base_backups_mid_run() {
    let (cluster, source, repo) = pgbench_repo().await;
    let repo_s = repo.to_str().unwrap();
    let stream = start_stream(&cluster, &repo);

    let secs = load_seconds();
    let bench = pgbench_run(&cluster, secs);
    tokio::time::sleep(Duration::from_secs(secs / 2)).await;
    run_ok(&cluster, &["base", "-d", "dbname=postgres", "-r", repo_s]);
    let out = bench.wait_with_output().unwrap();
    assert!(out.status.success(), "pgbench: {}", describe(&out));
    let log = stop_stream_when_caught_up(&source, stream).await;
    assert!(
        log.matches("closed segment").count() >= 2,
        "fewer than two rotations:\n{log}"
    );

    let m = manifest(&repo);
    let bases: Vec<String> = m["bases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(bases.len(), 2);
    run_ok(&cluster, &["verify", "-r", repo_s]);
    for (i, base) in bases.iter().enumerate() {
        let db = format!("from_base_{i}");
        restore_into(&cluster, repo_s, &format!("dbname={db}"), &["--base", base]);
        assert_same_database(&cluster, &source, &db).await;
    }
}

#[tokio::test]
async fn pgbench_with_crashes_and_a_killed_receiver() {
    let (mut cluster, source, repo) = pgbench_repo().await;
    drop(source); // the server crashes below; a new connection is made afterwards
    let repo_s = repo.to_str().unwrap().to_owned();
    let stream = start_stream(&cluster, &repo);
    let secs = load_seconds().max(3);

    // Phase 1: pg_recvlogical killed while transactions stream in.
    let bench = pgbench_run(&cluster, secs);
    tokio::time::sleep(Duration::from_secs(secs / 2)).await;
    let killed = Command::new("pkill")
        .args(["-KILL", "-f", &format!("pg_recvlogical.*{repo_s}")])
        .status()
        .unwrap();
    assert!(killed.success(), "no pg_recvlogical to kill");
    let out = bench.wait_with_output().unwrap();
    assert!(out.status.success(), "pgbench: {}", describe(&out));

    // Phases 2 and 3: the server crashes in the middle of the load.
    for _ in 0..2 {
        let bench = pgbench_run(&cluster, secs);
        tokio::time::sleep(Duration::from_secs(secs / 2)).await;
        cluster.stop("immediate");
        // Clients lose their connections: pgbench reports errors, which is expected.
        let _ = bench.wait_with_output();
        cluster.restart();
    }
    let bench = pgbench_run(&cluster, 2);
    let out = bench.wait_with_output().unwrap();
    assert!(out.status.success(), "pgbench: {}", describe(&out));

    let source = cluster.connect("postgres").await;
    let log = stop_stream_when_caught_up(&source, stream).await;
    assert!(
        log.matches("restarting pg_recvlogical").count() >= 2,
        "{log}"
    );
    run_ok(&cluster, &["verify", "-r", &repo_s]);
    restore_into(&cluster, &repo_s, "dbname=restored", &[]);
    assert_same_database(&cluster, &source, "restored").await;
    // pgbench_history has no key: duplicates from re-sent transactions would show here.
    let count = |c: tokio_postgres::Client| async move {
        c.query_one("SELECT count(*) FROM pgbench_history", &[])
            .await
            .unwrap()
            .get::<_, i64>(0)
    };
    let restored = cluster.connect("restored").await;
    assert_eq!(count(source).await, count(restored).await);
}

const ZOO: &str = include_str!("../../sql/type_zoo.sql");
const ZOO_ROWS: &str = include_str!("../../sql/type_zoo_rows.sql");

/// Statements run one call each (each its own transaction), mixing DDL into DML.
const MIXED: &[&str] = &[
    "INSERT INTO zoo (id, txt) VALUES (50, repeat('toast me ', 20000))",
    "UPDATE zoo SET i2 = 5 WHERE id = 50",
    "CREATE SCHEMA \"Odd Schema\"",
    "CREATE TABLE \"Odd Schema\".\"Weird \"\"Name\"\"\" (id int PRIMARY KEY, \"select\" text, \"Mixed Case\" int)",
    "INSERT INTO \"Odd Schema\".\"Weird \"\"Name\"\"\" VALUES (1, 'kw', 2), (2, 'two', 3)",
    "ALTER TABLE \"Odd Schema\".\"Weird \"\"Name\"\"\" ADD COLUMN added timestamptz DEFAULT '2026-01-01 00:00+00'",
    "UPDATE \"Odd Schema\".\"Weird \"\"Name\"\"\" SET \"select\" = 'changed' WHERE id = 1",
    "ALTER TABLE \"Odd Schema\".\"Weird \"\"Name\"\"\" RENAME COLUMN \"Mixed Case\" TO renamed",
    "ALTER TABLE \"Odd Schema\".\"Weird \"\"Name\"\"\" DROP COLUMN added",
    "INSERT INTO \"Odd Schema\".\"Weird \"\"Name\"\"\" VALUES (3, 'after drop', 4)",
    "CREATE TYPE status AS ENUM ('new', 'done')",
    "CREATE TABLE tasks (id serial PRIMARY KEY, s status, tags text[], meta jsonb, at timestamptz)",
    "INSERT INTO tasks (s, tags, meta, at) VALUES ('new', '{a,b}', '{\"k\": [1, 2]}', '2026-03-29 01:30+01'), ('done', '{}', 'null', 'infinity')",
    "ALTER TYPE status ADD VALUE 'archived'",
    "UPDATE tasks SET s = 'archived' WHERE s = 'done'",
    "CREATE TABLE measurements (id int, at date, v double precision, PRIMARY KEY (id, at)) PARTITION BY RANGE (at)",
    "CREATE TABLE measurements_2026 PARTITION OF measurements FOR VALUES FROM ('2026-01-01') TO ('2027-01-01')",
    "CREATE TABLE measurements_2027 PARTITION OF measurements FOR VALUES FROM ('2027-01-01') TO ('2028-01-01')",
    "INSERT INTO measurements VALUES (1, '2026-05-01', 'NaN'), (2, '2027-05-01', '-Infinity'), (3, '2026-06-01', 1e300)",
    "UPDATE measurements SET at = '2027-06-01' WHERE id = 3",
    "CREATE TABLE ri_full (a int, b text)",
    "ALTER TABLE ri_full REPLICA IDENTITY FULL",
    "INSERT INTO ri_full VALUES (1, 'dup'), (1, 'dup'), (2, NULL)",
    "UPDATE ri_full SET b = 'one' WHERE ctid = (SELECT ctid FROM ri_full WHERE a = 1 LIMIT 1)",
    "DELETE FROM ri_full WHERE a = 2",
    "CREATE TABLE ri_index (a int NOT NULL, b text)",
    "CREATE UNIQUE INDEX ri_index_a ON ri_index (a)",
    "ALTER TABLE ri_index REPLICA IDENTITY USING INDEX ri_index_a",
    "INSERT INTO ri_index VALUES (1, 'x'), (2, 'y')",
    "UPDATE ri_index SET a = 10 WHERE a = 1",
    "CREATE TABLE parent (id int PRIMARY KEY)",
    "CREATE TABLE child (id int PRIMARY KEY, p int REFERENCES parent)",
    "INSERT INTO parent VALUES (1), (2); INSERT INTO child VALUES (1, 1), (2, 2)",
    "TRUNCATE parent CASCADE",
    "INSERT INTO parent VALUES (3); INSERT INTO child VALUES (3, 3)",
    "ALTER TABLE tasks RENAME TO jobs",
    "INSERT INTO jobs (s) VALUES ('archived')",
    "DROP TABLE ri_index",
    "CREATE TABLE bytes_and_time (id int PRIMARY KEY, b bytea, t timestamptz, iv interval)",
    "INSERT INTO bytes_and_time VALUES (1, '\\x00010203ff', '2026-10-25 02:30:00 Europe/Berlin', '-1 year 2 mons -3 days')",
];

#[tokio::test]
async fn mixed_workload_with_ddl_and_every_type() {
    let (cluster, source, repo) = initialised(ZOO).await;
    let repo_s = repo.to_str().unwrap();
    let stream = start_stream(&cluster, &repo);
    source.batch_execute(ZOO_ROWS).await.unwrap();
    for (i, sql) in MIXED.iter().enumerate() {
        source
            .batch_execute(sql)
            .await
            .unwrap_or_else(|e| panic!("statement {i} ({sql}): {e}"));
    }
    let log = stop_stream_when_caught_up(&source, stream).await;
    assert!(!log.contains("NOT CAPTURED"), "{log}");
    restore_into(&cluster, repo_s, "dbname=restored", &[]);
    assert_same_database(&cluster, &source, "restored").await;
    // The large value survived the unchanged-TOAST update.
    let restored = cluster.connect("restored").await;
    let len: i32 = restored
        .query_one("SELECT length(txt) FROM zoo WHERE id = 50", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(len, 9 * 20000);
}

#[tokio::test]
async fn a_killed_restore_resumes_where_it_stopped() {
    let (cluster, source, repo) = pgbench_repo().await;
    let repo_s = repo.to_str().unwrap();
    let out = pgbench(&cluster, &["-n", "-c", "2", "-t", "10000", "postgres"])
        .output()
        .unwrap();
    assert!(out.status.success(), "pgbench: {}", describe(&out));
    catch_up(&cluster, repo_s);

    // Small batches make the restore commit often; kill it once it is under way.
    let mut restore = pgincr(&cluster)
        .args([
            "restore",
            "-r",
            repo_s,
            "-t",
            "dbname=restored",
            "--create",
            "--batch-size",
            "4kB",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let progress = |c: tokio_postgres::Client| async move {
        c.query_opt(
            "SELECT pg_replication_origin_progress(roname, true)::text FROM pg_replication_origin WHERE roname LIKE 'pgincr\\_%'",
            &[],
        )
        .await
        .ok()
        .flatten()
        // The origin exists from the base's transaction on; its progress is NULL until the
        // first streamed transaction commits.
        .and_then(|r| r.get::<_, Option<String>>(0))
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let mut seen = 0;
    loop {
        if let Ok(c) = cluster.connect_checked("restored").await
            && progress(c).await.is_some()
        {
            seen += 1;
            if seen == 3 {
                break;
            }
        }
        assert!(
            restore.try_wait().unwrap().is_none(),
            "restore finished before it could be interrupted"
        );
        assert!(
            std::time::Instant::now() < deadline,
            "restore never started applying"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    restore.kill().unwrap();
    restore.wait().unwrap();

    let out = run_ok(
        &cluster,
        &["restore", "-r", repo_s, "-t", "dbname=restored"],
    );
    assert!(out.contains("resuming the restore"), "{out}");
    let applied: u64 = out
        .split("applied ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{out}"));
    assert!(applied > 0 && !out.contains(" 0 already applied"), "{out}");
    assert_same_database(&cluster, &source, "restored").await;
}
