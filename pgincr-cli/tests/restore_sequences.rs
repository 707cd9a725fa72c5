//! Sequences after a restore: the value the stream captured is kept when it is current, even
//! below the column's maximum; a sequence whose table got rows after its last snapshot moves
//! up to the column's maximum. Either way `nextval` gives what it gives on the source.

mod common;

use common::*;

const SETUP: &str = "
    CREATE TABLE explicit (id serial PRIMARY KEY, v text);
    CREATE TABLE later (id serial PRIMARY KEY, v text);
    INSERT INTO later (v) VALUES ('in the base');";

#[tokio::test]
async fn captured_sequence_values_are_kept_and_stale_ones_raised() {
    let (cluster, source, repo) = initialised(SETUP).await;
    let repo_s = repo.to_str().unwrap();
    // Separate transactions: a snapshot between rows with explicit ids and rows from nextval.
    for statement in [
        "INSERT INTO explicit VALUES (1000, 'explicit id; the sequence stays unused')",
        "SELECT decoder_sql.snapshot_sequences()",
        "INSERT INTO later (v) SELECT 'after the snapshot ' || g FROM generate_series(1, 5) g",
    ] {
        source.batch_execute(statement).await.unwrap();
    }
    // No further snapshot at the end: `later` stays changed after its last one.
    run_ok(
        &cluster,
        &[
            "stream",
            "-d",
            "dbname=postgres",
            "-r",
            repo_s,
            "--catch-up",
            "--sequence-interval",
            "0",
        ],
    );
    let out = succeeds(
        &cluster,
        &["restore", "-r", repo_s, "-t", "dbname=restored", "--create"],
        &[],
    );
    assert_same_database(&cluster, &source, "restored").await;
    let restored = cluster.connect("restored").await;
    for seq in ["explicit_id_seq", "later_id_seq"] {
        let sql = format!("SELECT nextval('{seq}')::text");
        let (a, b) = (
            query_text(&source, &sql).await,
            query_text(&restored, &sql).await,
        );
        assert_eq!(
            a, b,
            "{seq}: nextval on the source {a}, on the restored database {b}"
        );
    }
    assert!(
        out.contains("sequences: 1 at their captured value") && out.contains("1 moved up"),
        "{out}"
    );
}
