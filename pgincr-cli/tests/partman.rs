//! pg_partman (Debian's postgresql-15-partman) creates and drops partitions from PL/pgSQL
//! with dynamic SQL. With decoder_sql preloaded, every partition it makes is in the stream:
//! months of maintenance with rows in each new partition, under a concurrent pgbench load,
//! restore equal from the first base and from one taken midway.

mod common;

use common::*;
use e2e::TestCluster;
use e2e::decode::database_contents;
use std::process::Stdio;

fn partman_available(cluster: &TestCluster) -> bool {
    let share = std::process::Command::new(cluster.bindir().join("pg_config"))
        .arg("--sharedir")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    std::path::Path::new(&share)
        .join("extension/pg_partman.control")
        .exists()
}

#[tokio::test]
async fn pg_partman_maintenance_restores_equal() {
    let cluster = TestCluster::start_with(&["session_preload_libraries = 'decoder_sql'"]);
    if !partman_available(&cluster) {
        // scripts/setup installs pg_partman for the default major (15) only.
        assert_ne!(
            e2e::cluster::pg_major(),
            15,
            "pg_partman is not installed: run bash scripts/setup"
        );
        eprintln!("pg_partman is not packaged for this major; skipped");
        return;
    }
    let source = cluster.connect("postgres").await;
    source
        .batch_execute(
            "CREATE SCHEMA partman;
             CREATE EXTENSION pg_partman SCHEMA partman;
             CREATE TABLE public.payment (
                 id bigint GENERATED ALWAYS AS IDENTITY,
                 paid_at timestamptz NOT NULL,
                 amount numeric(12,2),
                 note text,
                 PRIMARY KEY (id, paid_at)
             ) PARTITION BY RANGE (paid_at);
             SELECT partman.create_parent('public.payment', 'paid_at', 'native', 'monthly',
                                          p_premake := 2, p_start_partition := '2026-01-01');",
        )
        .await
        .unwrap();
    let pgbench = |args: &[&str]| {
        let mut c = cluster.client_command("pgbench");
        c.args(args).stdout(Stdio::null()).stderr(Stdio::piped());
        c
    };
    let out = pgbench(&["-q", "-i", "-s", "1", "postgres"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", describe(&out));
    source
        .batch_execute("ALTER TABLE pgbench_history REPLICA IDENTITY FULL")
        .await
        .unwrap();
    let repo = repo_dir(&cluster);
    let repo_s = repo.to_str().unwrap().to_owned();
    run_ok(&cluster, &["init", "-d", "dbname=postgres", "-r", &repo_s]);
    let bench = pgbench(&["-n", "-c", "2", "-T", "6", "postgres"])
        .spawn()
        .unwrap();

    // Twelve months: rows in the newest partition, then maintenance makes the next ones.
    for month in 0..12 {
        source
            .batch_execute(&format!(
                "INSERT INTO payment (paid_at, amount, note)
                 SELECT timestamptz '2026-01-15 00:00+00' + interval '1 month' * {month}
                        + interval '1 hour' * g, g * 1.5, 'month {month}'
                   FROM generate_series(1, 20) g;
                 UPDATE payment SET note = note || ' paid' WHERE id % 7 = 0;
                 SELECT partman.run_maintenance('public.payment', p_analyze := false);"
            ))
            .await
            .unwrap();
        if month == 5 {
            run_ok(&cluster, &["base", "-d", "dbname=postgres", "-r", &repo_s]);
        }
    }
    // Retention drops the oldest partitions, again from PL/pgSQL.
    source
        .batch_execute(
            "UPDATE partman.part_config SET retention = '9 months', retention_keep_table = false
              WHERE parent_table = 'public.payment';
             DELETE FROM payment WHERE note LIKE 'month 1%' AND id % 3 = 0;",
        )
        .await
        .unwrap();
    source
        .batch_execute("SELECT partman.run_maintenance('public.payment', p_analyze := false)")
        .await
        .unwrap();
    let out = bench.wait_with_output().unwrap();
    assert!(out.status.success(), "pgbench: {}", describe(&out));
    let partitions: i64 = source
        .query_one(
            "SELECT count(*) FROM pg_inherits WHERE inhparent = 'public.payment'::regclass",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(
        partitions >= 10,
        "pg_partman made only {partitions} partitions"
    );
    catch_up(&cluster, &repo_s);

    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(repo.join("manifest.json")).unwrap())
            .unwrap();
    let bases: Vec<String> = manifest["bases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(bases.len(), 2, "{manifest}");
    for (i, base) in bases.iter().enumerate() {
        let target = format!("dbname=restored_{i}");
        let out = restore_into(&cluster, &repo_s, &target, &["--base", base]);
        assert!(!out.contains("NOT CAPTURED"), "{out}");
        assert_same_database(&cluster, &source, &format!("restored_{i}")).await;
        let restored = cluster.connect(&format!("restored_{i}")).await;
        assert_eq!(
            database_contents(&source).await,
            database_contents(&restored).await
        );
    }
}
