//! Values of types whose input function rejects everything (`pg_node_tree`, the extended
//! statistics types, BRIN summaries), which `CREATE TABLE t AS SELECT * FROM pg_class` copies
//! into user tables: nothing can read their text back, so decoder_sql writes NULL for them and
//! a `-- decoder_sql:` comment naming the columns before the statement. Also inside composite
//! values (a column of type `pg_attrdef`). The stream replays; every other column is exact.

use e2e::TestCluster;
use e2e::decode::{create_slot, get_changes, replay};
use tokio_postgres::Client;

const OPTIONS: &[(&str, &str)] = &[("include_transaction", "on"), ("skip_empty_xacts", "on")];

/// Rows of `table` as jsonb text without the columns `skip`, sorted.
async fn rows_without(db: &Client, table: &str, skip: &[&str]) -> Vec<String> {
    let skip = skip.iter().map(|c| format!(" - '{c}'")).collect::<String>();
    db.query(
        &format!("SELECT (to_jsonb(x){skip})::text AS r FROM {table} x ORDER BY r"),
        &[],
    )
    .await
    .unwrap()
    .iter()
    .map(|r| r.get(0))
    .collect()
}

async fn count(db: &Client, sql: &str) -> i64 {
    db.query_one(sql, &[]).await.unwrap().get(0)
}

#[tokio::test]
async fn pg_node_tree_values_are_written_as_null_with_a_comment() {
    let cluster = TestCluster::start();
    let admin = cluster.connect("postgres").await;
    for db in ["src", "dst"] {
        admin
            .batch_execute(&format!("CREATE DATABASE {db}"))
            .await
            .unwrap();
    }
    // Both databases get tables with the same columns (copies of catalogs, no rows).
    let schema = "CREATE TABLE defaults_src (a int DEFAULT 42, b text DEFAULT 'x' || 'y');
         CREATE TABLE parted (k int) PARTITION BY RANGE (k);
         CREATE TABLE parted_1 PARTITION OF parted FOR VALUES FROM (0) TO (10);
         CREATE TABLE cls AS SELECT * FROM pg_class WITH NO DATA;
         CREATE TABLE trees (id int PRIMARY KEY, e pg_node_tree, note text);
         CREATE TABLE full_trees (id int, e pg_node_tree);
         ALTER TABLE full_trees REPLICA IDENTITY FULL;
         CREATE TABLE whole (id int PRIMARY KEY, d pg_attrdef);";
    let src = cluster.connect("src").await;
    let dst = cluster.connect("dst").await;
    src.batch_execute(schema).await.unwrap();
    dst.batch_execute(schema).await.unwrap();
    create_slot(&src, "s").await;
    src.batch_execute(
        "INSERT INTO cls SELECT * FROM pg_class WHERE relname IN ('parted_1', 'pg_class', 'defaults_src');
         INSERT INTO trees SELECT a.adnum, a.adbin, 'default ' || a.adnum FROM pg_attrdef a
             WHERE a.adrelid = 'defaults_src'::regclass;
         INSERT INTO trees VALUES (3, NULL, 'no tree');
         UPDATE trees SET note = note || ' changed';
         UPDATE trees SET e = (SELECT adbin FROM pg_attrdef WHERE adrelid = 'defaults_src'::regclass AND adnum = 2) WHERE id = 1;
         DELETE FROM trees WHERE id = 2;
         -- Two rows equal but for the tree: replay holds them both with NULL there.
         INSERT INTO full_trees SELECT 1, adbin FROM pg_attrdef WHERE adrelid = 'defaults_src'::regclass;
         INSERT INTO full_trees VALUES (2, NULL);
         DELETE FROM full_trees WHERE e::text LIKE '%:consttype 23 %';
         UPDATE full_trees SET id = 10 WHERE id = 2;
         INSERT INTO whole SELECT adnum, a FROM pg_attrdef a WHERE adrelid = 'defaults_src'::regclass;
         UPDATE whole SET id = id + 10;",
    )
    .await
    .unwrap();
    let lines = get_changes(&src, "s", OPTIONS).await;
    let out = replay(&cluster, "dst", &lines);
    assert!(
        out.status.success(),
        "replay failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        lines.join("\n")
    );

    // Each statement that dropped a value is preceded by a comment naming the columns.
    for (i, line) in lines.iter().enumerate() {
        if line.starts_with("INSERT INTO public.cls ") && line.contains("'parted_1'") {
            let note = &lines[i - 1];
            assert!(
                note.starts_with("-- decoder_sql: INSERT on public.cls at ")
                    && note.ends_with(
                        "wrote NULL for column relpartbound (pg_node_tree): the type has no \
                         input function, the value cannot be read back"
                    ),
                "{note}"
            );
        }
    }
    let notes = |prefix: &str| {
        lines
            .iter()
            .filter(|l| l.starts_with(&format!("-- decoder_sql: {prefix}")))
            .count()
    };
    assert_eq!(notes("INSERT on public.trees "), 2, "{lines:#?}");
    // The updates of rows 1 and 2 carry the tree in the new row; row 3 has none.
    assert_eq!(notes("UPDATE on public.trees "), 3, "{lines:#?}");
    assert_eq!(notes("DELETE on public.trees "), 0, "{lines:#?}");
    assert_eq!(notes("DELETE on public.full_trees "), 1, "{lines:#?}");
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("-- decoder_sql: INSERT on public.whole ")
                && l.contains("column d (pg_attrdef)")),
        "{lines:#?}"
    );
    assert!(
        !lines.iter().any(|l| l.contains("{CONST")),
        "a node tree was written as a literal: {lines:#?}"
    );

    // Everything but the unreadable columns is as on the source; those are NULL.
    for (table, skip) in [
        ("cls", &["relpartbound"][..]),
        ("trees", &["e"][..]),
        ("full_trees", &["e"][..]),
        ("whole", &["d"][..]),
    ] {
        assert_eq!(
            rows_without(&src, table, skip).await,
            rows_without(&dst, table, skip).await,
            "{table}"
        );
    }
    assert_eq!(
        count(
            &dst,
            "SELECT count(*) FROM cls WHERE relpartbound IS NOT NULL"
        )
        .await,
        0
    );
    assert_eq!(
        count(
            &src,
            "SELECT count(*) FROM cls WHERE relpartbound IS NOT NULL"
        )
        .await,
        1
    );
    assert_eq!(
        count(&dst, "SELECT count(*) FROM whole WHERE d IS NOT NULL").await,
        0
    );
    assert_eq!(count(&dst, "SELECT count(*) FROM full_trees").await, 2);
}
