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

/// A repository whose stream holds, after the base: a transaction with DDL nested in a DO
/// block (the stream has only a NOT CAPTURED comment for it: nothing to do on the target),
/// one that inserts code 'b' (returned: its xid), and the top-level DDL that makes the
/// nested one moot. A restore into `db` stops before all three.
async fn prepared(db: &str) -> (TestCluster, Client, std::path::PathBuf, String) {
    let (cluster, source, repo) = initialised(SETUP).await;
    let base_lsn = query_text(&source, "SELECT pg_current_wal_lsn()::text").await;
    source
        .batch_execute("DO $$ BEGIN EXECUTE 'COMMENT ON TABLE public.codes IS ''nested'''; END $$")
        .await
        .unwrap();
    source
        .batch_execute("BEGIN; INSERT INTO codes VALUES ('b', 'second')")
        .await
        .unwrap();
    let xid = query_text(&source, "SELECT txid_current()::text").await;
    source.batch_execute("COMMIT").await.unwrap();
    source
        .batch_execute("COMMENT ON TABLE public.codes IS NULL")
        .await
        .unwrap();
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

/// Makes the transaction that inserts code 'b' fail on the target.
async fn obstruct(cluster: &TestCluster, db: &str) -> Client {
    let target = cluster.connect(db).await;
    target
        .batch_execute("INSERT INTO codes VALUES ('b', 'in the way');")
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

fn reported_line(err: &str) -> usize {
    reported_location(err).1
}

/// The number of the first line of the reported segment that starts with `prefix`.
fn line_of(repo: &Path, err: &str, prefix: &str) -> usize {
    let (file, _) = reported_location(err);
    let bytes = std::fs::read(repo.join("segments").join(&file)).unwrap();
    let text = String::from_utf8(zstd::decode_all(&bytes[..]).unwrap()).unwrap();
    text.lines()
        .position(|l| l.starts_with(prefix))
        .unwrap_or_else(|| panic!("no {prefix:?} in {file}:\n{text}"))
        + 1
}

/// The end LSN of the transaction holding the first line that starts with `prefix`.
fn end_lsn_of(repo: &Path, err: &str, prefix: &str) -> String {
    let (file, _) = reported_location(err);
    let bytes = std::fs::read(repo.join("segments").join(&file)).unwrap();
    let text = String::from_utf8(zstd::decode_all(&bytes[..]).unwrap()).unwrap();
    let mut begin = "";
    for line in text.lines() {
        if line.starts_with("BEGIN; --") {
            begin = line;
        }
        if line.starts_with(prefix) {
            return begin
                .split(' ')
                .find_map(|w| w.strip_prefix("end_lsn="))
                .unwrap()
                .to_owned();
        }
    }
    panic!("no {prefix:?} in {file}")
}

#[tokio::test]
async fn the_failing_transaction_is_named_even_after_one_that_changes_nothing() {
    let (cluster, source, repo, _) = prepared("located").await;
    let repo_s = repo.to_str().unwrap();
    let target = obstruct(&cluster, "located").await;
    let err = fails(
        &cluster,
        &["restore", "-r", repo_s, "-t", "dbname=located"],
        &[],
    );
    // The INSERT's line and transaction, not the comment-only transaction before it.
    assert_eq!(
        reported_line(&err),
        line_of(&repo, &err, "INSERT INTO public.codes "),
        "{err}"
    );
    let end_lsn = end_lsn_of(&repo, &err, "INSERT INTO public.codes ");
    assert!(
        err.contains(&format!("(transaction end_lsn {end_lsn})")),
        "the error should name the INSERT transaction (end_lsn {end_lsn}): {err}"
    );
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
    assert_eq!(reported_line(&again), reported_line(&err), "{again}");
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
