//! Restores that meet a transaction they cannot apply: the error names the right one, the
//! operator can leave transactions out (by name or on error, into a reject file), and a
//! restore resumed after fixing the target by hand ends equal to the source.

mod common;

use common::*;
use e2e::TestCluster;
use std::path::Path;
use tokio_postgres::Client;

const SETUP: &str = "
    CREATE TABLE accounts (id serial PRIMARY KEY, owner text NOT NULL);
    CREATE TABLE codes (code text PRIMARY KEY, note text);
    INSERT INTO accounts (owner) SELECT 'owner ' || g FROM generate_series(1, 20) g;";

/// A repository whose stream holds, after the base: a transaction that deletes account 1,
/// then one that inserts code 'b' (returned: its xid). A restore into `db` stops before both.
async fn prepared(db: &str) -> (TestCluster, Client, std::path::PathBuf, String) {
    let (cluster, source, repo) = initialised(SETUP).await;
    let base_lsn = query_text(&source, "SELECT pg_current_wal_lsn()::text").await;
    source
        .batch_execute("DELETE FROM accounts WHERE id = 1")
        .await
        .unwrap();
    source
        .batch_execute("BEGIN; INSERT INTO codes VALUES ('b', 'second')")
        .await
        .unwrap();
    let xid = query_text(&source, "SELECT txid_current()::text").await;
    source.batch_execute("COMMIT").await.unwrap();
    let repo_s = repo.to_str().unwrap().to_owned();
    catch_up(&cluster, &repo_s);
    restore_into(
        &cluster,
        &repo_s,
        &format!("dbname={db}"),
        &["--to-lsn", &base_lsn],
    );
    (cluster, source, repo, xid)
}

/// Makes the first transaction change nothing on the target and the second one fail.
async fn obstruct(cluster: &TestCluster, db: &str) -> Client {
    let target = cluster.connect(db).await;
    target
        .batch_execute(
            "DELETE FROM accounts WHERE id = 1;
             INSERT INTO codes VALUES ('b', 'in the way');",
        )
        .await
        .unwrap();
    target
}

fn psql_file(cluster: &TestCluster, db: &str, file: &Path) {
    let out = cluster
        .client_command("psql")
        .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", db, "-f"])
        .arg(file)
        .output()
        .unwrap();
    assert!(out.status.success(), "psql -f: {}", describe(&out));
}

#[tokio::test]
async fn the_failing_transaction_is_named_even_after_one_that_changed_nothing() {
    let (cluster, source, repo, _) = prepared("located").await;
    let repo_s = repo.to_str().unwrap();
    let target = obstruct(&cluster, "located").await;
    let err = fails(
        &cluster,
        &["restore", "-r", repo_s, "-t", "dbname=located"],
        &[],
    );
    // Line 1 is the DELETE's BEGIN; the INSERT is on line 5.
    assert!(err.contains(".sql.zst:5 (transaction end_lsn"), "{err}");
    assert!(
        err.contains("duplicate key value violates unique constraint \"codes_pkey\""),
        "{err}"
    );
    // The same again: the origin did not move.
    let again = fails(
        &cluster,
        &["restore", "-r", repo_s, "-t", "dbname=located"],
        &[],
    );
    assert!(again.contains(".sql.zst:5 (transaction end_lsn"), "{again}");
    target
        .batch_execute("DELETE FROM codes WHERE code = 'b'")
        .await
        .unwrap();
    succeeds(
        &cluster,
        &["restore", "-r", repo_s, "-t", "dbname=located"],
        &[],
    );
    assert_same_database(&cluster, &source, "located").await;
}

#[tokio::test]
async fn failing_transactions_go_to_the_reject_file_and_can_be_applied_by_hand() {
    let (cluster, source, repo, _) = prepared("rejecting").await;
    let repo_s = repo.to_str().unwrap();
    let target = obstruct(&cluster, "rejecting").await;
    let rejects = cluster.scratch_dir("rejects").join("rejected.sql");
    let rejects_s = rejects.to_str().unwrap();

    let err = fails(
        &cluster,
        &[
            "restore",
            "-r",
            repo_s,
            "-t",
            "dbname=rejecting",
            "--on-error=skip",
        ],
        &[],
    );
    assert!(err.contains("--reject-file"), "{err}");
    let out = succeeds(
        &cluster,
        &[
            "restore",
            "-r",
            repo_s,
            "-t",
            "dbname=rejecting",
            "--on-error=skip",
            "--reject-file",
            rejects_s,
        ],
        &[],
    );
    assert!(
        out.contains("1 transaction(s) failed and were not applied"),
        "{out}"
    );
    let text = std::fs::read_to_string(&rejects).unwrap();
    assert!(
        text.contains(
            "-- failed: ERROR: duplicate key value violates unique constraint \"codes_pkey\""
        ) && text.contains("INSERT INTO")
            && text.contains("'second'"),
        "{text}"
    );
    // Fixed by hand: the reject file applies as it is.
    target
        .batch_execute("DELETE FROM codes WHERE code = 'b'")
        .await
        .unwrap();
    psql_file(&cluster, "rejecting", &rejects);
    assert_same_database(&cluster, &source, "rejecting").await;
}

#[tokio::test]
async fn transactions_named_by_the_operator_are_left_out() {
    let (cluster, source, repo, xid) = prepared("skipping").await;
    let repo_s = repo.to_str().unwrap();
    let target = obstruct(&cluster, "skipping").await;
    let rejects = cluster.scratch_dir("rejects").join("skipped.sql");
    let out = succeeds(
        &cluster,
        &[
            "restore",
            "-r",
            repo_s,
            "-t",
            "dbname=skipping",
            "--skip-transaction",
            &format!("xid={xid}"),
            "--reject-file",
            rejects.to_str().unwrap(),
        ],
        &[],
    );
    assert!(
        out.contains("left out 1 transaction(s) named by --skip-transaction"),
        "{out}"
    );
    let text = std::fs::read_to_string(&rejects).unwrap();
    assert!(
        text.contains(&format!("transaction xid={xid} "))
            && text.contains("--skip-transaction")
            && text.contains("'second'"),
        "{text}"
    );
    target
        .batch_execute("UPDATE codes SET note = 'second' WHERE code = 'b'")
        .await
        .unwrap();
    assert_same_database(&cluster, &source, "skipping").await;
}
