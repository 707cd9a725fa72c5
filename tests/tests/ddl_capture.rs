//! DDL capture installed by `CREATE EXTENSION decoder_sql`: schema changes appear in the
//! decoded stream at their position among the data changes, and replaying the stream onto a
//! copy of the starting schema gives the source's schema and data.

use e2e::TestCluster;
use e2e::decode::{create_slot, database_contents, get_changes, line_diff, replay, schema_dump};

const OPTIONS: &[(&str, &str)] = &[("include_transaction", "on"), ("skip_empty_xacts", "on")];

struct Scenario {
    cluster: TestCluster,
    src: tokio_postgres::Client,
    dst: tokio_postgres::Client,
}

/// Source database `src` with the extension and `start` applied; target `dst` with `start`
/// only (no extension: a restore target need not have it); a decoder_sql slot on `src`.
async fn scenario(start: &str) -> Scenario {
    let cluster = TestCluster::start();
    let admin = cluster.connect("postgres").await;
    admin.batch_execute("CREATE DATABASE src").await.unwrap();
    admin.batch_execute("CREATE DATABASE dst").await.unwrap();
    let src = cluster.connect("src").await;
    let dst = cluster.connect("dst").await;
    dst.batch_execute(start).await.unwrap();
    src.batch_execute(start).await.unwrap();
    src.batch_execute("CREATE EXTENSION decoder_sql")
        .await
        .unwrap();
    create_slot(&src, "s").await;
    Scenario { cluster, src, dst }
}

impl Scenario {
    /// Decodes everything, replays it onto `dst`, and checks schema and data are equal.
    async fn replay_and_compare(&self) -> Vec<String> {
        let lines = get_changes(&self.src, "s", OPTIONS).await;
        let out = replay(&self.cluster, "dst", &lines);
        assert!(
            out.status.success(),
            "replay failed: {}\nstream:\n{}",
            String::from_utf8_lossy(&out.stderr),
            lines.join("\n")
        );
        let (a, b) = (
            schema_dump(&self.cluster, "src"),
            schema_dump(&self.cluster, "dst"),
        );
        assert!(
            a == b,
            "schemas differ:\n{}\nstream:\n{}",
            line_diff(&a, &b),
            lines.join("\n")
        );
        assert_eq!(
            database_contents(&self.src).await,
            database_contents(&self.dst).await,
            "data differs"
        );
        lines
    }
}

#[tokio::test]
async fn columns_added_and_dropped_between_inserts() {
    let s = scenario("CREATE TABLE t (id int PRIMARY KEY, a text)").await;
    s.src
        .batch_execute("INSERT INTO t VALUES (1, 'one')")
        .await
        .unwrap();
    s.src
        .batch_execute("ALTER TABLE t ADD COLUMN b int DEFAULT 42")
        .await
        .unwrap();
    s.src
        .batch_execute("INSERT INTO t VALUES (2, 'two', 2)")
        .await
        .unwrap();
    s.src
        .batch_execute("ALTER TABLE t DROP COLUMN a")
        .await
        .unwrap();
    s.src
        .batch_execute("INSERT INTO t VALUES (3, 3); UPDATE t SET b = b + 1")
        .await
        .unwrap();
    let lines = s.replay_and_compare().await;
    let add = lines
        .iter()
        .position(|l| l == "ALTER TABLE t ADD COLUMN b int DEFAULT 42;")
        .expect("ADD COLUMN captured");
    let insert2 = lines
        .iter()
        .position(|l| l.starts_with("INSERT INTO public.t (id, a, b) VALUES (2,"))
        .unwrap();
    assert!(add < insert2);
    assert!(
        lines[add - 1].starts_with("SELECT pg_catalog.set_config('search_path', "),
        "{}",
        lines[add - 1]
    );
}

#[tokio::test]
async fn multi_statement_string_emits_each_ddl_once_and_no_dml() {
    let s = scenario("").await;
    s.src
        .batch_execute(
            "CREATE TABLE a (i int); INSERT INTO a VALUES (1); CREATE INDEX a_i ON a (i);
             ALTER TABLE a ADD COLUMN j int; INSERT INTO a VALUES (2, 3)",
        )
        .await
        .unwrap();
    let lines = s.replay_and_compare().await;
    let ddl: Vec<&String> = lines
        .iter()
        .filter(|l| {
            !l.starts_with("INSERT")
                && !l.starts_with("SELECT pg_catalog.set_config")
                && *l != "BEGIN;"
                && *l != "COMMIT;"
        })
        .collect();
    // A table without a primary key gets REPLICA IDENTITY FULL right after its creation.
    assert_eq!(
        ddl,
        [
            "CREATE TABLE a (i int);",
            "ALTER TABLE public.a REPLICA IDENTITY FULL;",
            "CREATE INDEX a_i ON a (i);",
            "ALTER TABLE a ADD COLUMN j int;"
        ]
    );
    // Order: each DDL right before the DML that follows it in the string.
    let pos = |p: &str| lines.iter().position(|l| l.starts_with(p)).unwrap();
    assert!(pos("CREATE TABLE a") < pos("INSERT INTO public.a (i) VALUES (1)"));
    assert!(pos("INSERT INTO public.a (i) VALUES (1)") < pos("ALTER TABLE a"));
    assert!(pos("ALTER TABLE a") < pos("INSERT INTO public.a (i, j)"));
}

#[tokio::test]
async fn unqualified_names_follow_the_search_path() {
    let s = scenario("CREATE SCHEMA app").await;
    s.src
        .batch_execute(
            "SET search_path = app, public;
             CREATE TABLE items (id int PRIMARY KEY, label text);
             CREATE TYPE mood AS ENUM ('sad', 'happy');
             ALTER TABLE items ADD COLUMN m mood;
             INSERT INTO items VALUES (1, 'x', 'happy');
             CREATE VIEW happy_items AS SELECT * FROM items WHERE m = 'happy';
             CREATE FUNCTION item_count() RETURNS bigint LANGUAGE sql AS $$ SELECT count(*) FROM items $$;
             RESET search_path;",
        )
        .await
        .unwrap();
    let lines = s.replay_and_compare().await;
    assert!(lines.contains(
        &"SELECT pg_catalog.set_config('search_path', 'app, public', false);".to_owned()
    ));
    assert!(
        lines.contains(
            &"INSERT INTO app.items (id, \"label\", m) VALUES (1, 'x', 'happy');".to_owned()
        ),
        "{lines:#?}"
    );
}

#[tokio::test]
async fn temporary_objects_are_not_captured() {
    let s = scenario("CREATE TABLE kept (i int)").await;
    s.src
        .batch_execute(
            "CREATE TEMP TABLE scratch (i int); CREATE INDEX ON scratch (i); ALTER TABLE scratch ADD COLUMN j int;
             INSERT INTO scratch VALUES (1, 2); INSERT INTO kept SELECT i FROM scratch; DROP TABLE scratch;",
        )
        .await
        .unwrap();
    let lines = s.replay_and_compare().await;
    assert!(!lines.iter().any(|l| l.contains("scratch")), "{lines:#?}");
    assert!(lines.contains(&"INSERT INTO public.kept (i) VALUES (1);".to_owned()));
}

#[tokio::test]
async fn ddl_inside_do_block_is_marked_and_warned_about() {
    let s = scenario("CREATE TABLE t (i int)").await;
    s.src
        .batch_execute("DO $$ BEGIN EXECUTE 'ALTER TABLE t ADD COLUMN hidden int'; END $$; CREATE TABLE after_do (i int);")
        .await
        .unwrap();
    let lines = get_changes(&s.src, "s", OPTIONS).await;
    let marker = lines
        .iter()
        .find(|l| l.starts_with("-- decoder_sql: NOT CAPTURED: ALTER TABLE (run inside a function, procedure or DO block) in: DO $$"))
        .unwrap_or_else(|| panic!("no marker in {lines:#?}"));
    assert!(marker.ends_with(';') && !marker.contains('\n'));
    // The top-level DDL after the DO block is captured normally, once.
    assert_eq!(
        lines
            .iter()
            .filter(|l| *l == "CREATE TABLE after_do (i int);")
            .count(),
        1
    );
    let logged: i64 = s
        .src
        .query_one(
            "SELECT count(*) FROM decoder_sql.uncaptured WHERE command_tag = 'ALTER TABLE'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(logged, 1);
}

#[tokio::test]
async fn ddl_inside_do_block_raises_a_warning() {
    let s = scenario("CREATE TABLE t (i int)").await;
    let out = s
        .cluster
        .client_command("psql")
        .args([
            "-X",
            "-d",
            "src",
            "-c",
            "DO $$ BEGIN ALTER TABLE t ADD COLUMN x int; END $$",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("WARNING:  decoder_sql: ALTER TABLE was not captured"),
        "{stderr}"
    );
}

#[tokio::test]
async fn create_table_as_is_created_empty_before_its_rows() {
    let s =
        scenario("CREATE TABLE base (i int); INSERT INTO base SELECT generate_series(1, 5);").await;
    s.src
        .batch_execute("CREATE TABLE copied AS SELECT i, i * 2 AS doubled FROM base WHERE i > 2")
        .await
        .unwrap();
    let lines = s.replay_and_compare().await;
    let create = lines
        .iter()
        .position(|l| l == "CREATE TABLE copied AS SELECT i, i * 2 AS doubled FROM base WHERE i > 2 WITH NO DATA;")
        .unwrap_or_else(|| panic!("{lines:#?}"));
    let first_row = lines
        .iter()
        .position(|l| l.starts_with("INSERT INTO public.copied"))
        .unwrap();
    assert!(create < first_row);
}

#[tokio::test]
async fn materialized_views_are_recomputed_not_copied() {
    let s = scenario("CREATE TABLE base (i int); INSERT INTO base VALUES (1), (2);").await;
    s.src
        .batch_execute(
            "CREATE MATERIALIZED VIEW total AS SELECT sum(i) AS s FROM base;
             INSERT INTO base VALUES (10);
             REFRESH MATERIALIZED VIEW total;",
        )
        .await
        .unwrap();
    let lines = s.replay_and_compare().await;
    assert!(
        !lines
            .iter()
            .any(|l| l.starts_with("INSERT INTO public.total")),
        "{lines:#?}"
    );
    let total: i64 = s
        .dst
        .query_one("SELECT s FROM total", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(total, 13);
}

#[tokio::test]
async fn objects_of_many_kinds_and_drops() {
    let s = scenario("CREATE TABLE old_stuff (i int)").await;
    s.src
        .batch_execute(
            "CREATE TYPE color AS ENUM ('red', 'green');
             ALTER TYPE color ADD VALUE 'blue';",
        )
        .await
        .unwrap();
    s.src
        .batch_execute(
            "CREATE DOMAIN small_positive AS int CHECK (VALUE BETWEEN 1 AND 9);
             CREATE SEQUENCE counter START 100;
             CREATE TABLE things (id serial PRIMARY KEY, c color, n small_positive, note text DEFAULT 'n/a');
             CREATE INDEX things_c ON things (c);
             CREATE VIEW blue_things AS SELECT * FROM things WHERE c = 'blue';
             CREATE FUNCTION shout(t text) RETURNS text LANGUAGE sql IMMUTABLE
               AS $$ SELECT upper(t) || '!' $$;
             COMMENT ON TABLE things IS 'all the things';
             INSERT INTO things (c, n) VALUES ('blue', 3), ('red', 1);
             DROP TABLE old_stuff;
             ALTER TABLE things RENAME COLUMN note TO remark;
             DROP INDEX things_c;",
        )
        .await
        .unwrap();
    s.replay_and_compare().await;
}

#[tokio::test]
async fn sequences_are_snapshotted_into_the_stream() {
    let s = scenario("CREATE SEQUENCE a_seq; CREATE TABLE t (id serial PRIMARY KEY);").await;
    s.src
        .batch_execute(
            "SELECT nextval('a_seq') FROM generate_series(1, 7); INSERT INTO t DEFAULT VALUES;",
        )
        .await
        .unwrap();
    let n: i32 = s
        .src
        .query_one("SELECT decoder_sql.snapshot_sequences()", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 2);
    let lines = s.replay_and_compare().await;
    assert!(
        lines.contains(&"SELECT pg_catalog.setval('public.a_seq', 7, true);".to_owned()),
        "{lines:#?}"
    );
    assert!(
        lines.contains(&"SELECT pg_catalog.setval('public.t_id_seq', 1, true);".to_owned()),
        "{lines:#?}"
    );
    let next: i64 = s
        .dst
        .query_one("SELECT nextval('a_seq')", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(next, 8);
}

#[tokio::test]
async fn capture_can_be_paused_and_resumed() {
    let s = scenario("").await;
    s.src
        .batch_execute("SELECT decoder_sql.pause_capture()")
        .await
        .unwrap();
    let st: String = s
        .src
        .query_one("SELECT decoder_sql.capture_status()", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(st, "paused");
    s.src
        .batch_execute("CREATE TABLE invisible (i int)")
        .await
        .unwrap();
    s.src
        .batch_execute("SELECT decoder_sql.resume_capture()")
        .await
        .unwrap();
    let st: String = s
        .src
        .query_one("SELECT decoder_sql.capture_status()", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(st, "enabled");
    s.src
        .batch_execute("CREATE TABLE visible (i int)")
        .await
        .unwrap();
    let lines = get_changes(&s.src, "s", OPTIONS).await;
    assert!(!lines.iter().any(|l| l.contains("invisible")), "{lines:#?}");
    assert!(
        lines.contains(&"CREATE TABLE visible (i int);".to_owned()),
        "{lines:#?}"
    );
}

#[tokio::test]
async fn extension_itself_is_not_in_the_stream() {
    let s = scenario("").await;
    s.src
        .batch_execute(
            "DROP EXTENSION decoder_sql; CREATE EXTENSION decoder_sql; CREATE TABLE x (i int);",
        )
        .await
        .unwrap();
    let lines = get_changes(&s.src, "s", OPTIONS).await;
    assert!(!lines.iter().any(|l| l.contains("EXTENSION")), "{lines:#?}");
    assert!(
        lines.contains(&"CREATE TABLE x (i int);".to_owned()),
        "{lines:#?}"
    );
}

#[tokio::test]
async fn other_extensions_are_created_by_their_create_extension_only() {
    let s = scenario("").await;
    s.src
        .batch_execute("CREATE EXTENSION pg_trgm; CREATE TABLE words (w text); CREATE INDEX ON words USING gin (w gin_trgm_ops);")
        .await
        .unwrap();
    let lines = s.replay_and_compare().await;
    let ddl: Vec<&String> = lines.iter().filter(|l| l.starts_with("CREATE")).collect();
    assert_eq!(
        ddl,
        [
            "CREATE EXTENSION pg_trgm;",
            "CREATE TABLE words (w text);",
            "CREATE INDEX ON words USING gin (w gin_trgm_ops);"
        ]
    );
}
