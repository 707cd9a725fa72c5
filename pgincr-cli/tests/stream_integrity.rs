//! The stream never loses a change and never stalls silently: statement text that looks like
//! the stream's own transaction lines, and messages forged by an unprivileged role, neither
//! stop the stream nor change what a restore does.

mod common;

use common::*;

/// DDL whose text holds lines that look like the stream's `BEGIN;`/`COMMIT;` lines: in a
/// comment's string, a procedure body, a dollar-quoted function, a block comment, a quoted
/// identifier.
const FRAMING_LIKE_DDL: &str = "
    CREATE TABLE notes (id int PRIMARY KEY, body text);
    COMMENT ON TABLE notes IS 'Usage:
BEGIN;
INSERT INTO notes VALUES (1);
COMMIT;
';
    CREATE PROCEDURE bump() LANGUAGE plpgsql AS $$
BEGIN
UPDATE notes SET body = body || '+';
COMMIT;
END $$;
    CREATE FUNCTION framed() RETURNS text LANGUAGE sql AS $body$
SELECT 'x'
$body$;
    COMMENT ON FUNCTION framed() IS E'BEGIN; -- xid=1 commit_lsn=0/1 end_lsn=FF/FFFFFF00 commit_time=2026-01-01T00:00:00.000000Z\\nCOMMIT; -- xid=1 end_lsn=FF/FFFFFF00\\n';
    /* a block comment
COMMIT;
    */
    CREATE TABLE \"odd
COMMIT;
\" (x int PRIMARY KEY);
    INSERT INTO \"odd
COMMIT;
\" VALUES (1);
    INSERT INTO notes VALUES (1, E'line\\nCOMMIT;\\nBEGIN;');";

#[tokio::test]
async fn framing_like_text_and_forged_messages_do_not_stop_the_stream() {
    let (cluster, source, repo) = initialised("CREATE EXTENSION IF NOT EXISTS decoder_sql;").await;
    let repo_s = repo.to_str().unwrap();
    source.batch_execute(FRAMING_LIKE_DDL).await.unwrap();
    source.batch_execute("CALL bump()").await.unwrap();
    catch_up(&cluster, repo_s);

    // An unprivileged role forges a DDL message that would end the transaction, grant
    // itself superuser and announce a far-future position.
    source
        .batch_execute(
            "CREATE ROLE intruder LOGIN;
             GRANT ALL ON notes TO intruder;",
        )
        .await
        .unwrap();
    let intruder = cluster.connect_as("postgres", "intruder").await;
    intruder
        .batch_execute(
            "BEGIN;
             INSERT INTO notes VALUES (2, 'by intruder');
             SELECT pg_logical_emit_message(true, 'ddl', E'SELECT 1;\\nCOMMIT; -- xid=1 end_lsn=FF/FFFFFF00\\nALTER ROLE intruder SUPERUSER;\\nBEGIN; -- xid=2 commit_lsn=FF/FFFFFF00 end_lsn=FF/FFFFFF00 commit_time=2026-01-01T00:00:00.000000Z');
             SELECT pg_logical_emit_message(true, 'ddl', E'ALTER ROLE intruder SUPERUSER; SELECT ''');
             COMMIT;",
        )
        .await
        .unwrap();
    source
        .batch_execute("INSERT INTO notes VALUES (3, 'after the forgery')")
        .await
        .unwrap();
    source.batch_execute("CALL bump()").await.unwrap();
    // Two more runs: the stream restarts and goes on past all of it.
    catch_up(&cluster, repo_s);
    source
        .batch_execute("INSERT INTO notes VALUES (4, 'later');")
        .await
        .unwrap();
    catch_up(&cluster, repo_s);

    let verified = run_ok(&cluster, &["verify", "-r", repo_s]);
    assert!(!verified.contains("FAIL"), "{verified}");
    // Drop the intruder's role on the source: the restore target is the same cluster, and a
    // restore must not have changed its attributes.
    restore_into(&cluster, repo_s, "dbname=restored", &[]);
    let superuser: bool = source
        .query_one(
            "SELECT rolsuper FROM pg_roles WHERE rolname = 'intruder'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(!superuser, "the forged message ran at restore");
    assert_same_database(&cluster, &source, "restored").await;
    let rows: i64 = cluster
        .connect("restored")
        .await
        .query_one("SELECT count(*) FROM notes", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(rows, 4);
}
