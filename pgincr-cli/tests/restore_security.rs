//! What a restore trusts: a role that can only run its own DDL must not gain anything when a
//! superuser restores the backup.

mod common;

use common::*;

/// A role sets `search_path = myschema, pg_catalog` for its DDL and defines `myschema.=` for
/// `bigint = integer` (what a decoded `WHERE id = 2` on a bigint key compares), which makes
/// whoever calls it a superuser. Another role's `UPDATE … WHERE id = 2`
/// later in the stream must still compare with the built-in `=`: decoder_sql's DML runs with
/// search_path `pg_catalog`, whatever path the DDL before it captured.
#[tokio::test(flavor = "multi_thread")]
async fn a_captured_search_path_does_not_reach_other_roles_changes() {
    let (cluster, source, repo) = initialised(
        "CREATE ROLE intruder LOGIN;
         CREATE SCHEMA myschema AUTHORIZATION intruder;
         CREATE TABLE accounts (id bigint PRIMARY KEY, owner text);
         INSERT INTO accounts VALUES (1, 'a'), (2, 'b');",
    )
    .await;
    let intruder = cluster.connect_as("postgres", "intruder").await;
    intruder
        .batch_execute(
            "SET search_path = myschema, pg_catalog;
             CREATE FUNCTION myschema.grab(bigint, int) RETURNS bool LANGUAGE plpgsql AS $f$
             BEGIN
               EXECUTE 'ALTER ROLE intruder SUPERUSER';
               RETURN $1 OPERATOR(pg_catalog.=) $2;
             END $f$;
             CREATE OPERATOR myschema.= (LEFTARG = bigint, RIGHTARG = int, FUNCTION = myschema.grab);
             CREATE TABLE myschema.notes (n int);",
        )
        .await
        .unwrap();
    source
        .batch_execute("UPDATE accounts SET owner = 'changed' WHERE id = 2")
        .await
        .unwrap();
    let is_superuser = "SELECT rolsuper::text FROM pg_catalog.pg_roles WHERE rolname = 'intruder'";
    assert_eq!(query_text(&source, is_superuser).await, "false");
    let repo = repo.to_str().unwrap();
    catch_up(&cluster, repo);
    restore_into(&cluster, repo, "dbname=restored", &[]);
    assert_eq!(
        query_text(&source, is_superuser).await,
        "false",
        "the restore ran the intruder's operator as a superuser"
    );
    assert_same_database(&cluster, &source, "restored").await;
}
