//! Exact decoded text for each kind of change, replica identity mode and column kind.

use e2e::TestCluster;
use e2e::decode::{create_slot, db_error, get_changes, try_get_changes};

async fn setup(schema: &str) -> (TestCluster, tokio_postgres::Client) {
    let cluster = TestCluster::start();
    let db = cluster.connect("postgres").await;
    db.batch_execute(schema).await.unwrap();
    create_slot(&db, "s").await;
    (cluster, db)
}

#[tokio::test]
async fn insert_update_delete_with_primary_key() {
    let (_c, db) = setup("CREATE TABLE t (id int PRIMARY KEY, name text, n numeric)").await;
    db.batch_execute(
        "INSERT INTO t VALUES (1, 'a', 1.5);
         UPDATE t SET name = 'b' WHERE id = 1;
         UPDATE t SET id = 2 WHERE id = 1;
         DELETE FROM t WHERE id = 2;",
    )
    .await
    .unwrap();
    assert_eq!(
        get_changes(&db, "s", &[]).await,
        [
            "INSERT INTO public.t (id, \"name\", n) VALUES (1, 'a', 1.5);",
            "UPDATE ONLY public.t SET id = 1, \"name\" = 'b', n = 1.5 WHERE id = 1;",
            // The key changed: WHERE uses the old key.
            "UPDATE ONLY public.t SET id = 2, \"name\" = 'b', n = 1.5 WHERE id = 1;",
            "DELETE FROM ONLY public.t WHERE id = 2;",
        ]
    );
}

#[tokio::test]
async fn transaction_lines_and_annotations() {
    let (_c, db) = setup("CREATE TABLE t (id int PRIMARY KEY)").await;
    db.batch_execute("INSERT INTO t VALUES (1)").await.unwrap();
    db.batch_execute("BEGIN; CREATE TEMP TABLE x (i int); COMMIT;")
        .await
        .unwrap();
    let plain = e2e::decode::peek_changes(&db, "s", &[("include_transaction", "on")]).await;
    assert_eq!(
        plain,
        [
            "BEGIN;",
            "INSERT INTO public.t (id) VALUES (1);",
            "COMMIT;",
            "BEGIN;",
            "COMMIT;"
        ]
    );
    let skip = e2e::decode::peek_changes(
        &db,
        "s",
        &[("include_transaction", "on"), ("skip_empty_xacts", "on")],
    )
    .await;
    assert_eq!(
        skip,
        ["BEGIN;", "INSERT INTO public.t (id) VALUES (1);", "COMMIT;"]
    );

    let annotated = get_changes(
        &db,
        "s",
        &[("include_annotations", "on"), ("skip_empty_xacts", "on")],
    )
    .await;
    assert_eq!(annotated.len(), 3, "{annotated:?}");
    let info = sqlgen::txn::parse_begin(&annotated[0])
        .unwrap_or_else(|| panic!("annotated BEGIN: {}", annotated[0]));
    assert_eq!(
        annotated[2],
        format!("COMMIT; -- xid={} end_lsn={}", info.xid, info.end_lsn)
    );
    assert!(info.commit_lsn < info.end_lsn);
    // The commit time is the server's clock at commit.
    let commit_time = sqlgen::txn::format_pg_timestamp(info.commit_time);
    let recent: bool = db
        .query_one(
            "SELECT $1::text::timestamptz BETWEEN now() - interval '5 minutes' AND now()",
            &[&commit_time],
        )
        .await
        .unwrap()
        .get(0);
    assert!(recent, "commit time {commit_time} is not recent");
}

#[tokio::test]
async fn replica_identity_modes() {
    let (_c, db) = setup(
        "CREATE TABLE by_index (a int NOT NULL, b int NOT NULL, v text);
         CREATE UNIQUE INDEX by_index_ab ON by_index (a, b);
         ALTER TABLE by_index REPLICA IDENTITY USING INDEX by_index_ab;
         CREATE TABLE full_id (a int, j json, v text);
         ALTER TABLE full_id REPLICA IDENTITY FULL;",
    )
    .await;
    db.batch_execute(
        "INSERT INTO by_index VALUES (1, 2, 'x');
         UPDATE by_index SET v = 'y';
         DELETE FROM by_index;
         INSERT INTO full_id VALUES (1, '{\"k\": 1}', null), (1, '{\"k\": 1}', null);
         UPDATE full_id SET v = 'z' WHERE ctid = (SELECT min(ctid) FROM full_id);
         DELETE FROM full_id WHERE v IS NULL;",
    )
    .await
    .unwrap();
    assert_eq!(
        get_changes(&db, "s", &[]).await,
        [
            "INSERT INTO public.by_index (a, b, v) VALUES (1, 2, 'x');",
            "UPDATE ONLY public.by_index SET a = 1, b = 2, v = 'y' WHERE a = 1 AND b = 2;",
            "DELETE FROM ONLY public.by_index WHERE a = 1 AND b = 2;",
            "INSERT INTO public.full_id (a, j, v) VALUES (1, '{\"k\": 1}', null);",
            "INSERT INTO public.full_id (a, j, v) VALUES (1, '{\"k\": 1}', null);",
            // json has no equality operator: compared on its text form. Duplicates:
            // exactly one row.
            "UPDATE ONLY public.full_id SET a = 1, j = '{\"k\": 1}', v = 'z' WHERE ctid = (SELECT ctid FROM ONLY public.full_id \
             WHERE a = 1 AND pg_catalog.concat(j) = '{\"k\": 1}' AND v IS NULL LIMIT 1);",
            "DELETE FROM ONLY public.full_id WHERE ctid = (SELECT ctid FROM ONLY public.full_id \
             WHERE a = 1 AND pg_catalog.concat(j) = '{\"k\": 1}' AND v IS NULL LIMIT 1);",
        ]
    );
}

#[tokio::test]
async fn missing_identity_is_an_error_or_a_recorded_skip() {
    let (_c, db) = setup(
        "CREATE TABLE nokey (a int);
         CREATE TABLE nothing (a int PRIMARY KEY);
         ALTER TABLE nothing REPLICA IDENTITY NOTHING;",
    )
    .await;
    db.batch_execute("INSERT INTO nokey VALUES (1); UPDATE nokey SET a = 2; DELETE FROM nothing;")
        .await
        .unwrap();
    let err = try_get_changes(&db, "s", &[]).await.unwrap_err();
    let (message, code, hint) = db_error(&err);
    assert_eq!(
        message,
        "cannot decode UPDATE on table public.nokey: it has no usable replica identity"
    );
    assert_eq!(code, "55000");
    assert!(
        hint.contains("REPLICA IDENTITY FULL") && hint.contains("missing_identity"),
        "{hint}"
    );

    db.batch_execute("INSERT INTO nothing VALUES (5); DELETE FROM nothing;")
        .await
        .unwrap();
    let out = get_changes(&db, "s", &[("missing_identity", "skip")]).await;
    assert_eq!(out.len(), 4, "{out:?}");
    assert_eq!(out[0], "INSERT INTO public.nokey (a) VALUES (1);");
    assert!(
        out[1].starts_with("-- decoder_sql: skipped UPDATE on public.nokey at "),
        "{}",
        out[1]
    );
    assert!(out[1].ends_with(": no replica identity"));
    assert_eq!(out[2], "INSERT INTO public.\"nothing\" (a) VALUES (5);");
    assert!(
        out[3].starts_with("-- decoder_sql: skipped DELETE on public.\"nothing\" at "),
        "{}",
        out[3]
    );
}

#[tokio::test]
async fn generated_identity_and_dropped_columns() {
    let (_c, db) = setup(
        "CREATE TABLE g (id int GENERATED ALWAYS AS IDENTITY PRIMARY KEY, d int GENERATED BY DEFAULT AS IDENTITY,
                         x int, doubled int GENERATED ALWAYS AS (x * 2) STORED, gone text);
         ALTER TABLE g DROP COLUMN gone;",
    )
    .await;
    db.batch_execute("INSERT INTO g (x) VALUES (21); UPDATE g SET x = 1;")
        .await
        .unwrap();
    assert_eq!(
        get_changes(&db, "s", &[]).await,
        [
            "INSERT INTO public.g (id, d, x) OVERRIDING SYSTEM VALUE VALUES (1, 1, 21);",
            // An UPDATE may not assign a GENERATED ALWAYS column; the key is in WHERE.
            "UPDATE ONLY public.g SET d = 1, x = 1 WHERE id = 1;",
        ]
    );
}

#[tokio::test]
async fn column_added_with_default_after_rows_existed() {
    let (_c, db) = setup(
        "CREATE TABLE late (a int);
         ALTER TABLE late REPLICA IDENTITY FULL;
         INSERT INTO late VALUES (1);
         ALTER TABLE late ADD COLUMN b int DEFAULT 7;",
    )
    .await;
    db.batch_execute("DELETE FROM late").await.unwrap();
    // The old row was written before b existed: its value is the stored default, not NULL.
    assert_eq!(
        get_changes(&db, "s", &[]).await,
        [
            "DELETE FROM ONLY public.late WHERE ctid = (SELECT ctid FROM ONLY public.late WHERE a = 1 AND b = 7 LIMIT 1);"
        ]
    );
}

#[tokio::test]
async fn unchanged_toast_is_left_out() {
    let (_c, db) = setup(
        "CREATE TABLE big (id int PRIMARY KEY, small text, large text);
         ALTER TABLE big ALTER COLUMN large SET STORAGE EXTERNAL;",
    )
    .await;
    db.batch_execute(
        "INSERT INTO big VALUES (1, 's', repeat('x', 10000));
         UPDATE big SET small = 't';
         UPDATE big SET large = repeat('y', 9000);",
    )
    .await
    .unwrap();
    let out = get_changes(&db, "s", &[]).await;
    assert_eq!(out.len(), 3);
    // Compared without printing 10 kB on failure.
    let insert = format!(
        "INSERT INTO public.big (id, small, \"large\") VALUES (1, 's', '{}');",
        "x".repeat(10000)
    );
    assert!(out[0] == insert, "INSERT differs: {}...", &out[0][..80]);
    // `large` was not modified: its value is not in the WAL, and SET leaves it out.
    assert_eq!(
        out[1],
        "UPDATE ONLY public.big SET id = 1, small = 't' WHERE id = 1;"
    );
    let update = format!(
        "UPDATE ONLY public.big SET id = 1, small = 't', \"large\" = '{}' WHERE id = 1;",
        "y".repeat(9000)
    );
    assert!(out[2] == update, "UPDATE differs: {}...", &out[2][..80]);
}

#[tokio::test]
async fn truncate_variants() {
    let (_c, db) = setup(
        "CREATE TABLE a (id int GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY);
         CREATE TABLE b (a_id int REFERENCES a);
         CREATE TABLE c (i int);",
    )
    .await;
    db.batch_execute(
        "TRUNCATE c;
         TRUNCATE a, c RESTART IDENTITY CASCADE;",
    )
    .await
    .unwrap();
    let out = get_changes(&db, "s", &[]).await;
    assert_eq!(out[0], "TRUNCATE TABLE ONLY public.c;");
    // All relations of one TRUNCATE (including those reached by CASCADE) in one statement.
    assert!(out[1].starts_with("TRUNCATE TABLE ONLY "), "{}", out[1]);
    assert!(out[1].ends_with(" RESTART IDENTITY CASCADE;"), "{}", out[1]);
    for t in ["public.a", "public.b", "public.c"] {
        assert!(out[1].contains(t), "{} lacks {t}", out[1]);
    }
    assert_eq!(out.len(), 2);
}

#[tokio::test]
async fn partitions_decode_as_their_leaf() {
    let (_c, db) = setup(
        "CREATE TABLE p (id int PRIMARY KEY, v text) PARTITION BY RANGE (id);
         CREATE TABLE p_low PARTITION OF p FOR VALUES FROM (0) TO (100);
         CREATE TABLE p_high PARTITION OF p FOR VALUES FROM (100) TO (200);",
    )
    .await;
    db.batch_execute(
        "INSERT INTO p VALUES (1, 'a'), (150, 'b'); UPDATE p SET v = 'c' WHERE id = 150;",
    )
    .await
    .unwrap();
    assert_eq!(
        get_changes(&db, "s", &[]).await,
        [
            "INSERT INTO public.p_low (id, v) VALUES (1, 'a');",
            "INSERT INTO public.p_high (id, v) VALUES (150, 'b');",
            "UPDATE ONLY public.p_high SET id = 150, v = 'c' WHERE id = 150;",
        ]
    );
}

#[tokio::test]
async fn odd_identifiers_are_quoted() {
    let (_c, db) = setup(
        r#"CREATE SCHEMA "My Schema";
           CREATE TABLE "My Schema"."select" ("Id" int PRIMARY KEY, "we""ird" text, "from" int);"#,
    )
    .await;
    db.batch_execute(
        r#"INSERT INTO "My Schema"."select" VALUES (1, 'x', 2); DELETE FROM "My Schema"."select";"#,
    )
    .await
    .unwrap();
    assert_eq!(
        get_changes(&db, "s", &[]).await,
        [
            r#"INSERT INTO "My Schema"."select" ("Id", "we""ird", "from") VALUES (1, 'x', 2);"#,
            r#"DELETE FROM ONLY "My Schema"."select" WHERE "Id" = 1;"#,
        ]
    );
}

/// Only DDL messages written by the capture (tagged, `sqlgen::channel`) are executed; the same
/// prefix from `pg_logical_emit_message` is an inert comment, whoever sends it.
#[tokio::test]
async fn logical_messages() {
    let (_c, db) = setup("CREATE TABLE t (id int)").await;
    db.batch_execute("CREATE EXTENSION decoder_sql")
        .await
        .unwrap();
    let _ = get_changes(&db, "s", &[]).await;
    db.batch_execute(
        // Non-transactional messages are not flushed by themselves before PostgreSQL 17: the
        // commit that follows flushes it.
        "SELECT pg_logical_emit_message(false, 'ddl', 'DROP TABLE t;');
         BEGIN;
         INSERT INTO t VALUES (1);
         SELECT pg_logical_emit_message(true, 'ddl', 'ALTER TABLE t ADD COLUMN x int');
         SELECT pg_logical_emit_message(true, 'ddl:0123', 'ALTER TABLE t ADD COLUMN z int');
         ALTER TABLE t ADD COLUMN y int;
         SELECT pg_logical_emit_message(true, 'other', 'hello
world');
         COMMIT;",
    )
    .await
    .unwrap();
    let out = e2e::decode::peek_changes(&db, "s", &[]).await;
    assert_eq!(out.len(), 10, "{out:#?}");
    // Outside any transaction as inside one.
    assert!(
        out[0].starts_with("-- decoder_sql: refused unauthenticated ddl message at ")
            && out[0].ends_with("not executed: DROP TABLE t;"),
        "{}",
        out[0]
    );
    let out = &out[1..];
    assert_eq!(out[0], "INSERT INTO public.t (id) VALUES (1);");
    for (line, text) in [
        (&out[1], "ALTER TABLE t ADD COLUMN x int"),
        (&out[2], "ALTER TABLE t ADD COLUMN z int"),
    ] {
        assert!(
            line.starts_with("-- decoder_sql: refused unauthenticated ddl message at ")
                && line.ends_with(&format!(
                    ": not written by decoder_sql's DDL capture; not executed: {text}"
                )),
            "{line}"
        );
    }
    assert_eq!(
        out[3],
        "SELECT pg_catalog.set_config('search_path', '\"$user\", public', false);"
    );
    // Replayed as the role that ran it.
    assert_eq!(
        out[4],
        "SELECT pg_catalog.set_config('role', rolname, false) FROM pg_catalog.pg_roles WHERE rolname = 'postgres';"
    );
    assert_eq!(out[5], "ALTER TABLE t ADD COLUMN y int;");
    assert_eq!(out[6], "RESET ROLE;");
    // The table got REPLICA IDENTITY FULL from the capture, written by it too.
    assert_eq!(out[8], "ALTER TABLE public.t REPLICA IDENTITY FULL;");
    let out = get_changes(
        &db,
        "s",
        &[("include_messages", "on"), ("ddl_prefix", "other")],
    )
    .await;
    assert_eq!(out.len(), 11, "{out:#?}");
    assert!(
        out[0].starts_with("-- message prefix=ddl transactional=false lsn="),
        "{}",
        out[0]
    );
    assert!(out[0].ends_with(": DROP TABLE t;"), "{}", out[0]);
    assert_eq!(out[1], "INSERT INTO public.t (id) VALUES (1);");
    assert!(
        out[2].starts_with("-- message prefix=ddl transactional=true lsn="),
        "{}",
        out[2]
    );
    // Under another DDL prefix, the capture's messages are other messages, and a message
    // with that prefix is refused just the same.
    assert!(out[4].starts_with("-- message prefix=ddl:"), "{}", out[4]);
    assert!(
        out[10].starts_with("-- decoder_sql: refused unauthenticated other message at ")
            && out[10].ends_with("not executed: hello world"),
        "{}",
        out[10]
    );
}

#[tokio::test]
async fn bad_options_are_clear_errors() {
    let (_c, db) = setup("CREATE TABLE t (id int)").await;
    type Case<'a> = (&'a [(&'a str, &'a str)], &'a str, &'a str);
    let cases: &[Case] = &[
        (
            &[("include-xids", "1")],
            "option \"include-xids\" = \"1\" is unknown",
            "Valid options are",
        ),
        (
            &[("include_transaction", "maybe")],
            "could not parse value \"maybe\" for parameter \"include_transaction\"",
            "boolean",
        ),
        (
            &[("missing_identity", "ignore")],
            "could not parse value \"ignore\" for parameter \"missing_identity\"",
            "\"skip\"",
        ),
        (
            &[("output_format", "json")],
            "could not parse value \"json\" for parameter \"output_format\"",
            "textual",
        ),
    ];
    for (options, message, hint_part) in cases {
        let err = try_get_changes(&db, "s", options).await.unwrap_err();
        let (msg, code, hint) = db_error(&err);
        assert_eq!(msg, *message);
        assert_eq!(code, "22023");
        assert!(hint.contains(hint_part), "{hint}");
    }
}

#[tokio::test]
async fn schema_changes_between_changes_are_followed() {
    let (_c, db) = setup("CREATE TABLE t (id int PRIMARY KEY, a text)").await;
    db.batch_execute(
        "INSERT INTO t VALUES (1, 'x');
         ALTER TABLE t ADD COLUMN b int DEFAULT 5;
         INSERT INTO t VALUES (2, 'y', 6);
         ALTER TABLE t DROP COLUMN a;
         INSERT INTO t VALUES (3, 7);
         ALTER TABLE t RENAME COLUMN b TO c;
         ALTER TABLE t RENAME TO u;
         UPDATE u SET c = 8 WHERE id = 3;
         ALTER TABLE u REPLICA IDENTITY FULL;
         DELETE FROM u WHERE id = 1;",
    )
    .await
    .unwrap();
    // All decoded in one session: the relation cache must follow each change.
    assert_eq!(
        get_changes(&db, "s", &[]).await,
        [
            "INSERT INTO public.t (id, a) VALUES (1, 'x');",
            "INSERT INTO public.t (id, a, b) VALUES (2, 'y', 6);",
            "INSERT INTO public.t (id, b) VALUES (3, 7);",
            "UPDATE ONLY public.u SET id = 3, c = 8 WHERE id = 3;",
            "DELETE FROM ONLY public.u WHERE ctid = (SELECT ctid FROM ONLY public.u WHERE id = 1 AND c = 5 LIMIT 1);",
        ]
    );
}

#[tokio::test]
async fn decoding_session_settings_are_restored() {
    let (_c, db) = setup("CREATE TABLE t (ts timestamptz)").await;
    db.batch_execute(
        "SET DateStyle = 'SQL, DMY'; SET TimeZone = 'Asia/Tokyo'; SET extra_float_digits = 0;",
    )
    .await
    .unwrap();
    db.batch_execute("INSERT INTO t VALUES ('2024-01-02 03:04:05+00')")
        .await
        .unwrap();
    assert_eq!(
        get_changes(&db, "s", &[]).await,
        ["INSERT INTO public.t (ts) VALUES ('2024-01-02 03:04:05+00');"]
    );
    let row = db
        .query_one("SELECT current_setting('DateStyle'), current_setting('TimeZone'), current_setting('extra_float_digits')", &[])
        .await
        .unwrap();
    let settings: (String, String, String) = (row.get(0), row.get(1), row.get(2));
    assert_eq!(
        settings,
        ("SQL, DMY".into(), "Asia/Tokyo".into(), "0".into())
    );
}
