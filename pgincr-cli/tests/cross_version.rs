//! Backups restored into other PostgreSQL majors: made on 13 and on 15, restored into 18, 15
//! into 16 and 17, and 15 into the older 13 (the SQL it holds is valid there). Each restore is
//! compared with the source by rows, sequence values and `pg_dump --schema-only`.
//!
//! These need the other majors set up (`scripts/setup --all-majors`); `scripts/test
//! --all-majors` runs them with `--ignored`.

mod common;

use common::*;
use e2e::TestCluster;
use e2e::cluster::Installation;
use e2e::decode::{database_contents, line_diff, schema_dump_with};
use tokio_postgres::Client;

const SETUP: &str = "
    CREATE EXTENSION decoder_sql;
    CREATE TABLE accounts (id serial PRIMARY KEY, owner text NOT NULL, balance numeric(12,2),
                           opened timestamptz DEFAULT '2026-01-01 00:00+00', tags text[]);
    CREATE TABLE events (at timestamptz, what text, body jsonb);
    ALTER TABLE events REPLICA IDENTITY FULL;
    CREATE SEQUENCE standalone START 40;
    INSERT INTO accounts (owner, balance, tags)
        SELECT 'owner ' || g, g, ARRAY['a', NULL, 'it''s'] FROM generate_series(1, 200) g;
    INSERT INTO events VALUES ('2026-01-01 00:00+00', 'same', '{\"k\": [1, 2]}');";

async fn workload(client: &Client) {
    client
        .batch_execute(
            "INSERT INTO accounts (owner, balance) SELECT 'later ' || g, g * 1.5 FROM generate_series(1, 50) g;
             UPDATE accounts SET balance = balance + 1, tags = NULL WHERE id % 7 = 3;
             DELETE FROM accounts WHERE id % 11 = 5;
             INSERT INTO events VALUES (now(), E'line\\nbreak', NULL);
             CREATE TABLE added (id int GENERATED ALWAYS AS IDENTITY PRIMARY KEY, note text);
             INSERT INTO added (note) SELECT 'n' || g FROM generate_series(1, 30) g;
             ALTER TABLE added ADD COLUMN flag boolean DEFAULT true;
             UPDATE added SET note = 'changed' WHERE id = 2;
             SELECT nextval('standalone') FROM generate_series(1, 5);",
        )
        .await
        .unwrap();
}

fn installation(major: u32, with_plugin: bool) -> Installation {
    Installation::major(major, with_plugin).unwrap_or_else(|| {
        panic!("PostgreSQL {major} is not set up: run bash scripts/setup --majors {major}")
    })
}

async fn sequences(client: &Client) -> Vec<(String, Option<i64>)> {
    client
        .query(
            "SELECT schemaname || '.' || sequencename, last_value FROM pg_sequences \
             WHERE schemaname <> 'decoder_sql' ORDER BY 1",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

/// Backs up a database on `from` (init, changes, catch-up) and restores it into a fresh
/// cluster of `into` that has no decoder_sql, with `into`'s client programs.
async fn round_trip(from: u32, into: u32) {
    let source_cluster = TestCluster::start_installation(&installation(from, true), &[]);
    let source = source_cluster.connect("postgres").await;
    source.batch_execute(SETUP).await.unwrap();
    let repo = repo_dir(&source_cluster);
    let repo_s = repo.to_str().unwrap();
    run_ok(
        &source_cluster,
        &["init", "-d", "dbname=postgres", "-r", repo_s],
    );
    workload(&source).await;
    catch_up(&source_cluster, repo_s);

    let target_install = installation(into, false);
    let target = TestCluster::start_installation(&target_install, &[]);
    let out = pgincr(&target)
        .args(["restore", "-r", repo_s, "-t", "dbname=restored", "--create"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "restore of a PostgreSQL {from} backup into {into}: {}",
        describe(&out)
    );
    let restored = target.connect("restored").await;
    let (a, b) = (
        database_contents(&source).await,
        database_contents(&restored).await,
    );
    assert_eq!(
        a,
        b,
        "{from} -> {into}: contents differ:\n{}",
        line_diff(&a, &b)
    );
    assert_eq!(
        sequences(&source).await,
        sequences(&restored).await,
        "{from} -> {into}: sequences differ"
    );
    let newer = if into >= from {
        target_install.bindir.clone()
    } else {
        source_cluster.bindir().to_path_buf()
    };
    let (mut a, mut b) = (
        schema_dump_with(&newer, &source_cluster, "postgres", &[]),
        schema_dump_with(&newer, &target, "restored", &[]),
    );
    if (from < 15) != (into < 15) {
        // PostgreSQL 15 changed the defaults of schema `public` (owner pg_database_owner, no
        // CREATE for PUBLIC). A dump states only what differs from its own major's defaults,
        // so across that boundary `public` takes the target's defaults, as with
        // pg_dump/pg_restore (README, Supported majors). Everything else must match.
        let public_defaults = |dump: &str| {
            dump.lines()
                .filter(|l| {
                    !matches!(
                        *l,
                        "ALTER SCHEMA public OWNER TO postgres;"
                            | "REVOKE USAGE ON SCHEMA public FROM PUBLIC;"
                            | "GRANT ALL ON SCHEMA public TO PUBLIC;"
                    )
                })
                .collect::<Vec<_>>()
                .join("\n")
        };
        (a, b) = (public_defaults(&a), public_defaults(&b));
    }
    assert_eq!(
        a,
        b,
        "{from} -> {into}: schemas differ:\n{}",
        line_diff(&a, &b)
    );
}

#[tokio::test]
#[ignore = "needs PostgreSQL 13 and 18: scripts/test --all-majors"]
async fn backup_on_13_restores_into_18() {
    round_trip(13, 18).await;
}

#[tokio::test]
#[ignore = "needs PostgreSQL 18: scripts/test --all-majors"]
async fn backup_on_15_restores_into_18() {
    round_trip(15, 18).await;
}

#[tokio::test]
#[ignore = "needs PostgreSQL 16: scripts/test --all-majors"]
async fn backup_on_15_restores_into_16() {
    round_trip(15, 16).await;
}

#[tokio::test]
#[ignore = "needs PostgreSQL 17: scripts/test --all-majors"]
async fn backup_on_15_restores_into_17() {
    round_trip(15, 17).await;
}

#[tokio::test]
#[ignore = "needs PostgreSQL 13: scripts/test --all-majors"]
async fn backup_on_15_restores_into_older_13() {
    round_trip(15, 13).await;
}
