//! Replay changes exactly the rows the source changed, with exactly the source's values:
//! inheritance parents, REPLICA IDENTITY FULL rows that are equal but not identical, special
//! float/numeric/date values, TRUNCATE of partitioned and inheritance trees, and identifiers
//! holding control characters. Each case decodes under session settings unlike the source's,
//! replays the statements into a second database whose default settings differ from both (with
//! the stream's settings, as every reader applies them: docs/format.md), and compares every
//! table in text and binary (send) form.

use e2e::TestCluster;
use e2e::cluster::{pg_config, pg_major};
use e2e::decode::{create_slot, get_changes, line_diff, replay};
use tokio_postgres::Client;

/// Defaults of the replay target that would change a value or a row match if a reader did not
/// apply the stream's settings.
const ODD_TARGET_DEFAULTS: &str = "ALTER DATABASE restored SET DateStyle = 'SQL, DMY';
     ALTER DATABASE restored SET IntervalStyle = 'sql_standard';
     ALTER DATABASE restored SET extra_float_digits = -3;
     ALTER DATABASE restored SET bytea_output = 'escape';
     ALTER DATABASE restored SET TimeZone = 'America/St_Johns';
     ALTER DATABASE restored SET lc_monetary = 'C';";

/// The settings every reader of the stream applies first (the second line of each segment
/// file; `pgincr restore` pins the same).
const STREAM_SETTINGS: &str = "SET standard_conforming_strings = on; SET array_nulls = on; \
SET backslash_quote = safe_encoding; SET DateStyle = 'ISO, YMD'; SET IntervalStyle = postgres; \
SET xmloption = content; SET TimeZone = 'UTC'; SET extra_float_digits = 3; \
SET bytea_output = hex; SET lc_monetary = 'C'; SET search_path = pg_catalog;";

/// The server under test was built with ICU (needed for nondeterministic collations). ICU is
/// opt-in (`--with-icu`) before PostgreSQL 16 and opt-out (`--without-icu`) from 16 on.
fn has_icu() -> bool {
    let out = std::process::Command::new(pg_config())
        .arg("--configure")
        .output()
        .expect("run pg_config --configure");
    let configure = String::from_utf8_lossy(&out.stdout);
    if pg_major() >= 16 {
        !configure.contains("--without-icu")
    } else {
        configure.contains("--with-icu")
    }
}

struct Pair {
    cluster: TestCluster,
    src: Client,
    dst: Client,
}

/// A cluster with `schema` in `postgres` (the source, with a slot) and in `restored`.
async fn pair(schema: &str) -> Pair {
    let cluster = TestCluster::start();
    let src = cluster.connect("postgres").await;
    src.batch_execute(schema).await.unwrap();
    src.batch_execute("CREATE DATABASE restored").await.unwrap();
    src.batch_execute(ODD_TARGET_DEFAULTS).await.unwrap();
    let dst = cluster.connect("restored").await;
    dst.batch_execute(schema).await.unwrap();
    create_slot(&src, "s").await;
    Pair { cluster, src, dst }
}

impl Pair {
    /// Decodes under odd session settings, checks every statement is one line, replays into
    /// the target with odd defaults and returns the decoded statements.
    async fn decode_and_replay(&self) -> Vec<String> {
        let decoder = self.cluster.connect("postgres").await;
        decoder
            .batch_execute(
                "SET DateStyle = 'German, DMY'; SET IntervalStyle = 'iso_8601'; \
                 SET extra_float_digits = 0; SET bytea_output = 'escape'; SET TimeZone = 'Asia/Kolkata';",
            )
            .await
            .unwrap();
        let messages = get_changes(&decoder, "s", &[("include_transaction", "on")]).await;
        let mut lines = Vec::new();
        for message in &messages {
            // One line per message, except the one that ends a transaction, which may put
            // the triggers the stream switched off back on before its COMMIT line.
            let parts: Vec<&str> = message.split('\n').collect();
            let (last, before) = parts.split_last().unwrap();
            assert!(
                !message.contains('\r')
                    && (before.is_empty()
                        || (last.starts_with("COMMIT;")
                            && before.iter().all(|l| l.starts_with("ALTER TABLE ONLY ")))),
                "statement spans lines: {message:?}"
            );
            lines.extend(parts.iter().map(|l| l.to_string()));
        }
        let mut script = vec![STREAM_SETTINGS.to_string()];
        script.extend(lines.iter().cloned());
        let out = replay(&self.cluster, "restored", &script);
        assert!(
            out.status.success(),
            "replay failed: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            lines.join("\n")
        );
        lines
    }

    async fn assert_same(&self, lines: &[String]) {
        let (a, b) = (
            exact_contents(&self.src).await,
            exact_contents(&self.dst).await,
        );
        assert!(
            a == b,
            "replayed rows differ\n{}\nstatements:\n{}",
            line_diff(&a, &b),
            lines.join("\n")
        );
    }
}

/// Every row of every table in schema `public` (each table on its own, `ONLY`), as text under
/// fixed settings and as the binary send form of each column whose send output does not embed
/// a database-specific OID. Sorted, so equal databases give equal strings.
async fn exact_contents(db: &Client) -> String {
    db.batch_execute(
        "SET extra_float_digits = 3; SET DateStyle = 'ISO, YMD'; SET IntervalStyle = postgres; \
         SET bytea_output = hex; SET TimeZone = UTC; SET lc_monetary = 'C';",
    )
    .await
    .unwrap();
    let tables = db
        .query(
            "SELECT c.oid::int8, format('%I', c.relname) FROM pg_class c \
             WHERE c.relnamespace = 'public'::regnamespace AND c.relkind = 'r' ORDER BY c.relname",
            &[],
        )
        .await
        .unwrap();
    let mut out = String::new();
    for t in tables {
        let (oid, name): (i64, String) = (t.get(0), t.get(1));
        let sends = db
            .query(
                "SELECT format('coalesce(encode(%s(row_.%I), ''hex''), ''null'')', b.typsend::regproc, a.attname) \
                 FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid \
                 JOIN pg_type b ON b.oid = CASE WHEN t.typtype = 'd' THEN t.typbasetype ELSE t.oid END \
                 WHERE a.attrelid = $1::int8::oid AND a.attnum > 0 AND NOT a.attisdropped \
                 AND b.typsend <> 0 AND (b.oid < 16384 OR (b.typtype IN ('b', 'e') AND b.typelem = 0)) \
                 ORDER BY a.attnum",
                &[&oid],
            )
            .await
            .unwrap();
        let mut row = String::from("row_::text");
        for s in sends {
            let expr: String = s.get(0);
            row.push_str(" || ' ' || ");
            row.push_str(&expr);
        }
        let rows = db
            .query(
                &format!("SELECT r FROM (SELECT {row} AS r FROM ONLY {name} row_) s ORDER BY r"),
                &[],
            )
            .await
            .unwrap();
        out.push_str(&format!("{name}: {} rows\n", rows.len()));
        for r in rows {
            let r: String = r
                .try_get(0)
                .unwrap_or_else(|e| panic!("{name}: {e:?} in SELECT {row}"));
            out.push_str(&format!("  {name} {r}\n"));
        }
    }
    out
}

#[tokio::test]
async fn inheritance_parent_changes_leave_children_alone() {
    let p = pair(
        "CREATE TABLE parent (id int PRIMARY KEY, v text);
         CREATE TABLE child (extra int) INHERITS (parent);
         ALTER TABLE child ADD PRIMARY KEY (id);
         CREATE TABLE fparent (a int, v text);
         ALTER TABLE fparent REPLICA IDENTITY FULL;
         CREATE TABLE fchild () INHERITS (fparent);
         ALTER TABLE fchild REPLICA IDENTITY FULL;",
    )
    .await;
    p.src
        .batch_execute(
            "INSERT INTO parent VALUES (1, 'p1'), (2, 'p2');
             INSERT INTO child VALUES (1, 'c1', 10), (2, 'c2', 20);
             UPDATE ONLY parent SET v = 'p1 changed' WHERE id = 1;
             DELETE FROM ONLY parent WHERE id = 2;
             -- Same ctid (0,1) in parent and child: the FULL form must not reach the child.
             INSERT INTO fparent VALUES (1, 'x');
             INSERT INTO fchild VALUES (1, 'x'), (2, 'y');
             UPDATE ONLY fparent SET v = 'x changed';
             INSERT INTO fparent VALUES (2, 'y');
             DELETE FROM ONLY fparent WHERE a = 2;",
        )
        .await
        .unwrap();
    let lines = p.decode_and_replay().await;
    p.assert_same(&lines).await;
    assert!(
        lines.contains(
            &"UPDATE ONLY public.parent SET id = 1, v = 'p1 changed' WHERE id = 1;".to_string()
        ),
        "{lines:#?}"
    );
    assert!(
        lines.contains(&"DELETE FROM ONLY public.parent WHERE id = 2;".to_string()),
        "{lines:#?}"
    );
    assert!(
        lines.contains(
            &"DELETE FROM ONLY public.fparent WHERE ctid = (SELECT ctid FROM ONLY public.fparent \
              WHERE a = 2 AND v = 'y' LIMIT 1);"
                .to_string()
        ),
        "{lines:#?}"
    );
    let child: i64 = p
        .dst
        .query_one("SELECT count(*) FROM child WHERE v LIKE 'c%'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(child, 2);
}

/// Per type: two values equal under `=` but not identical. Rows (a, 'x'), (b, 'x'), (a, 'z'),
/// (b, 'z'); the source updates (b, 'x') and deletes (b, 'z'), the rows a seq scan reaches
/// second. Matching on `=` alone changes (a, ...) instead.
#[tokio::test]
async fn full_identity_changes_the_identical_row_not_an_equal_one() {
    let mut pairs: Vec<(&str, &str, &str)> = vec![
        ("numeric", "1.0", "1.00"),
        ("double precision", "0", "-0"),
        ("real", "0", "-0"),
        ("interval", "1 mon", "30 days"),
        ("citext", "A", "a"),
        ("jsonb", "{\"n\": 1.0}", "{\"n\": 1.00}"),
        ("numeric[]", "{1.0,NULL}", "{1.00,NULL}"),
        ("numrange", "[1.0,2.0)", "[1.00,2.00)"),
        ("box", "(1,1),(0,0)", "(2,0.5),(0,0)"),
        ("bpchar", "a", "a  "),
        ("dom_numeric", "2.5", "2.50"),
        // A composite's text form depends on the session (TimeZone, extra_float_digits).
        (
            "stamp",
            "(1.0,\"2024-01-01 00:00+00\",0.1)",
            "(1.00,\"2024-01-01 00:00+00\",0.1)",
        ),
    ];
    if pg_major() >= 14 {
        pairs.push(("nummultirange", "{[1.0,2.0)}", "{[1.00,2.00)}"));
    }
    let mut schema = String::from(
        "CREATE EXTENSION citext;
         CREATE DOMAIN dom_numeric AS numeric;
         CREATE TYPE stamp AS (n numeric, ts timestamptz, f float8);\n",
    );
    if has_icu() {
        schema.push_str(
            "CREATE COLLATION ci (provider = icu, locale = 'und-u-ks-level2', deterministic = false);\n",
        );
        pairs.push(("text COLLATE ci", "Hello", "HELLO"));
        pairs.push(("varchar COLLATE ci", "b", "B"));
    } else {
        eprintln!("no ICU in this build: nondeterministic collations left out");
    }
    let mut work = String::new();
    for (i, (ty, a, b)) in pairs.iter().enumerate() {
        schema.push_str(&format!(
            "CREATE TABLE f{i} (v {ty}, w text); ALTER TABLE f{i} REPLICA IDENTITY FULL;\n"
        ));
        let (a, b) = (a.replace('\'', "''"), b.replace('\'', "''"));
        work.push_str(&format!(
            "INSERT INTO f{i} VALUES ('{a}', 'x'), ('{b}', 'x'), ('{a}', 'z'), ('{b}', 'z');
             UPDATE f{i} SET w = 'y' WHERE ctid = '(0,2)';
             DELETE FROM f{i} WHERE ctid = '(0,4)';\n"
        ));
    }
    let p = pair(&schema).await;
    p.src.batch_execute(&work).await.unwrap();
    let lines = p.decode_and_replay().await;
    p.assert_same(&lines).await;
    assert!(
        lines
            .iter()
            .any(|l| l.contains("WHERE pg_catalog.concat(v) = '1.00' AND")),
        "{lines:#?}"
    );
    assert!(
        lines.iter().any(|l| l
            .contains("WHERE pg_catalog.concat(v) = '(1.00,\"2024-01-01 00:00:00+00\",0.1)' AND")),
        "{lines:#?}"
    );
}

/// FULL identity on a table with an index on an inexact column: the row match writes `=` for
/// that column as well as its text form, and the replaying planner uses the index.
#[tokio::test]
async fn full_identity_keeps_an_index_on_an_inexact_column_usable() {
    let p = pair(
        "CREATE TABLE fi (n numeric, w text, j jsonb);
         CREATE INDEX fi_n ON fi (n);
         ALTER TABLE fi REPLICA IDENTITY FULL;",
    )
    .await;
    p.src
        .batch_execute(
            "INSERT INTO fi SELECT g, 'x', '{}' FROM generate_series(1, 2000) g;
             INSERT INTO fi VALUES (7.0, 'x', '{}');
             UPDATE fi SET w = 'changed' WHERE n = 7 AND scale(n) = 1;",
        )
        .await
        .unwrap();
    let lines = p.decode_and_replay().await;
    p.assert_same(&lines).await;
    let update = lines
        .iter()
        .find(|l| l.starts_with("UPDATE"))
        .expect("an UPDATE");
    let condition =
        "n = 7.0 AND pg_catalog.concat(n) = '7.0' AND w = 'x' AND pg_catalog.concat(j) = '{}'";
    assert!(update.contains(condition), "{update}");
    p.dst.batch_execute("ANALYZE fi").await.unwrap();
    let plan: Vec<String> = p
        .dst
        .query(
            &format!("EXPLAIN SELECT ctid FROM ONLY public.fi WHERE {condition} LIMIT 1"),
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(
        plan.iter().any(|l| l.contains("Index Scan using fi_n") || l.contains("Bitmap Index Scan on fi_n")),
        "{plan:#?}"
    );
}

/// Key identity: a unique index cannot hold two equal keys, so `=` finds the row.
#[tokio::test]
async fn key_identity_with_inexact_equality_types() {
    let p = pair(
        "CREATE EXTENSION citext;
         CREATE TABLE k (n numeric PRIMARY KEY, v text);
         CREATE TABLE c (t citext PRIMARY KEY, v text);",
    )
    .await;
    p.src
        .batch_execute(
            "INSERT INTO k VALUES (1.00, 'a'), (-0.0, 'z');
             UPDATE k SET v = 'b' WHERE n = 1;
             UPDATE k SET n = 2.50 WHERE n = 1;
             DELETE FROM k WHERE n = 0;
             INSERT INTO c VALUES ('Abc', 'a');
             UPDATE c SET v = 'b';
             UPDATE c SET t = 'ABC';",
        )
        .await
        .unwrap();
    let lines = p.decode_and_replay().await;
    p.assert_same(&lines).await;
    assert!(
        lines.contains(&"UPDATE ONLY public.k SET n = 2.50, v = 'b' WHERE n = 1.00;".to_string()),
        "{lines:#?}"
    );
}

#[tokio::test]
async fn special_values_round_trip_exactly() {
    let numeric_infinity = pg_major() >= 14;
    let p = pair(
        "CREATE TABLE s (id int PRIMARY KEY, d float8, r float4, n numeric, ts timestamp,
                         tz timestamptz, dt date);
         CREATE TABLE sf (d float8, r float4, n numeric, ts timestamp, tz timestamptz, dt date);
         ALTER TABLE sf REPLICA IDENTITY FULL;",
    )
    .await;
    let mut work = String::from(
        "INSERT INTO s VALUES
           (1, '-0', '-0', '0', 'infinity', 'infinity', 'infinity'),
           (2, '0', '0', '-0', '-infinity', '-infinity', '-infinity'),
           (3, 'Infinity', 'Infinity', 'NaN', '0044-03-15 12:00 BC', '4713-01-01 00:00+00 BC', '0001-01-01 BC'),
           (4, '-Infinity', '-Infinity', '-1.5e-3', '294276-12-31 23:59:59.999999', '2000-01-01 00:00+14', '5874897-12-31'),
           (5, 'NaN', 'NaN', '1e-20', '2024-02-29 00:00', '2024-02-29 00:00+00', '4714-11-24 BC'),
           (6, '-1e-300', '-1.17549435e-38', '-0.000', null, null, null);
         UPDATE s SET d = '-0', r = '-0' WHERE id = 3;
         UPDATE s SET d = 'NaN' WHERE id = 1;
         INSERT INTO sf SELECT d, r, n, ts, tz, dt FROM s;
         INSERT INTO sf SELECT d, r, n, ts, tz, dt FROM s;
         UPDATE sf SET n = 7 WHERE ctid = '(0,2)';
         DELETE FROM sf WHERE ctid = '(0,3)';\n",
    );
    if numeric_infinity {
        work.push_str(
            "INSERT INTO s VALUES (7, 1, 1, 'Infinity', null, null, null), (8, 2, 2, '-Infinity', null, null, null);
             UPDATE s SET n = '-Infinity' WHERE id = 7;
             INSERT INTO sf SELECT d, r, n, ts, tz, dt FROM s WHERE id IN (7, 8);
             DELETE FROM sf WHERE n = '-Infinity';\n",
        );
    }
    // -0 vs 0 under FULL identity: delete the -0 row, not the 0 one.
    work.push_str(
        "INSERT INTO sf (d, r) VALUES ('0', '0'), ('-0', '-0');
         DELETE FROM sf WHERE d = 0 AND float8send(d) = float8send('-0');",
    );
    p.src.batch_execute(&work).await.unwrap();
    let lines = p.decode_and_replay().await;
    p.assert_same(&lines).await;
    let first = lines
        .iter()
        .find(|l| l.starts_with("INSERT INTO public.s "))
        .unwrap();
    assert_eq!(
        first,
        "INSERT INTO public.s (id, d, r, n, ts, tz, dt) VALUES (1, '-0', '-0', 0, 'infinity', 'infinity', 'infinity');"
    );
    let zeros = p
        .dst
        .query_one(
            "SELECT string_agg(encode(float8send(d), 'hex') || '/' || encode(float4send(r), 'hex'), ',' ORDER BY id) \
             FROM s WHERE id IN (1, 2, 3)",
            &[],
        )
        .await
        .unwrap();
    let zeros: String = zeros.get(0);
    assert_eq!(
        zeros,
        "7ff8000000000000/80000000,0000000000000000/00000000,8000000000000000/80000000"
    );
}

#[tokio::test]
async fn truncate_of_partitioned_and_inheritance_trees() {
    let p = pair(
        "CREATE TABLE p (id int, v text) PARTITION BY RANGE (id);
         CREATE TABLE p_low PARTITION OF p FOR VALUES FROM (0) TO (100);
         CREATE TABLE p_high PARTITION OF p FOR VALUES FROM (100) TO (200) PARTITION BY RANGE (id);
         CREATE TABLE p_high_a PARTITION OF p_high FOR VALUES FROM (100) TO (150);
         CREATE TABLE p_high_b PARTITION OF p_high FOR VALUES FROM (150) TO (200);
         CREATE TABLE q (id int, v text) PARTITION BY LIST (id);
         CREATE TABLE q1 PARTITION OF q FOR VALUES IN (1);
         CREATE TABLE q2 PARTITION OF q FOR VALUES IN (2);
         CREATE TABLE ip (id int);
         CREATE TABLE ic (x int) INHERITS (ip);
         CREATE TABLE ip2 (id int);
         CREATE TABLE ic2 () INHERITS (ip2);
         CREATE TABLE plain (id int);",
    )
    .await;
    let fill = "INSERT INTO p VALUES (1, 'a'), (120, 'b'), (170, 'c');
                INSERT INTO q VALUES (1, 'a'), (2, 'b');
                INSERT INTO ip VALUES (1); INSERT INTO ic VALUES (2, 2);
                INSERT INTO ip2 VALUES (1); INSERT INTO ic2 VALUES (2);
                INSERT INTO plain VALUES (1);";
    p.src.batch_execute(fill).await.unwrap();
    p.src
        .batch_execute(
            "TRUNCATE p;
             TRUNCATE plain, ONLY ip;
             TRUNCATE q2;
             TRUNCATE p_high, ip2 RESTART IDENTITY;",
        )
        .await
        .unwrap();
    p.src.batch_execute(fill).await.unwrap();
    p.src.batch_execute("TRUNCATE ONLY ip2, q").await.unwrap();
    let lines = p.decode_and_replay().await;
    p.assert_same(&lines).await;
    let truncates: Vec<&String> = lines.iter().filter(|l| l.starts_with("TRUNCATE")).collect();
    assert_eq!(truncates.len(), 5, "{lines:#?}");
    assert!(truncates[1].contains("ONLY public.ip"), "{}", truncates[1]);
    assert!(
        truncates[1].contains("ONLY public.plain"),
        "{}",
        truncates[1]
    );
    assert_eq!(truncates[2], "TRUNCATE TABLE ONLY public.q2;");
    assert!(truncates[0].contains("public.p,") || truncates[0].contains("public.p;"));
    assert!(!truncates[0].contains("ONLY public.p,"), "{}", truncates[0]);
    assert!(
        !truncates[0].contains("ONLY public.p_high,"),
        "{}",
        truncates[0]
    );
    // The inheritance children that were not truncated kept their rows.
    let ic: i64 = p
        .dst
        .query_one("SELECT count(*) FROM ic", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(ic, 2);
}

/// `ONLY` belongs to each name of a TRUNCATE: an inheritance parent listed after another table
/// must not take its (untruncated) children with it.
#[tokio::test]
async fn truncate_keeps_inheritance_children_that_were_not_truncated() {
    let p = pair(
        "CREATE TABLE plain (id int);
         CREATE TABLE ip (id int);
         CREATE TABLE ic (x int) INHERITS (ip);",
    )
    .await;
    p.src
        .batch_execute(
            "INSERT INTO plain VALUES (1); INSERT INTO ip VALUES (1); INSERT INTO ic VALUES (2, 2);
             TRUNCATE plain, ONLY ip;",
        )
        .await
        .unwrap();
    let lines = p.decode_and_replay().await;
    p.assert_same(&lines).await;
    assert!(
        lines.contains(&"TRUNCATE TABLE ONLY public.plain, ONLY public.ip;".to_string()),
        "{lines:#?}"
    );
}

#[tokio::test]
async fn identifiers_with_control_characters_stay_on_one_line() {
    let p = pair(
        "CREATE SCHEMA \"sch\nema\";
         CREATE TABLE \"sch\nema\".\"ta\r\nble\" (\"i\nd\" int PRIMARY KEY, \"back\\slash\t\"\"q\" text, plain int);
         CREATE TABLE \"fu\u{1}ll\\\" (\"c\u{7f}\" int, \"é\n\" text);
         ALTER TABLE \"fu\u{1}ll\\\" REPLICA IDENTITY FULL;",
    )
    .await;
    p.src
        .batch_execute(
            "INSERT INTO \"sch\nema\".\"ta\r\nble\" VALUES (1, 'a', 1), (2, 'b', 2);
             UPDATE \"sch\nema\".\"ta\r\nble\" SET \"back\\slash\t\"\"q\" = 'c' WHERE \"i\nd\" = 1;
             DELETE FROM \"sch\nema\".\"ta\r\nble\" WHERE \"i\nd\" = 2;
             INSERT INTO \"fu\u{1}ll\\\" VALUES (1, 'x'), (2, 'y');
             UPDATE \"fu\u{1}ll\\\" SET \"é\n\" = 'z' WHERE \"c\u{7f}\" = 1;
             DELETE FROM \"fu\u{1}ll\\\" WHERE \"c\u{7f}\" = 2;
             TRUNCATE \"sch\nema\".\"ta\r\nble\";",
        )
        .await
        .unwrap();
    let lines = p.decode_and_replay().await;
    p.assert_same(&lines).await;
    assert!(
        lines.contains(
            &"INSERT INTO U&\"sch\\000Aema\".U&\"ta\\000D\\000Able\" (U&\"i\\000Ad\", U&\"back\\\\slash\\0009\"\"q\", plain) VALUES (1, 'a', 1);"
                .to_string()
        ),
        "{lines:#?}"
    );
    // exact_contents covers schema public; compare the other schema's table too.
    let q = "SELECT coalesce((SELECT string_agg(x::text, ',' ORDER BY x::text) FROM \"sch\nema\".\"ta\r\nble\" x), '') \
             || ' | ' || (SELECT string_agg(y::text, ',' ORDER BY y::text) FROM \"fu\u{1}ll\\\" y)";
    let a: String = p.src.query_one(q, &[]).await.unwrap().get(0);
    let b: String = p.dst.query_one(q, &[]).await.unwrap().get(0);
    assert_eq!(a, b);
    assert_eq!(a, " | (1,z)");
}

const CORPUS_COLUMNS: &str = "n numeric, f4 real, f8 double precision, iv interval,
    tstz timestamptz, ts timestamp, d date, m money, b bit(4), vb varbit, by bytea, u uuid,
    ip inet, cn cidr, mac macaddr, j json, jb jsonb, x xml, pt point, bx box, tv tsvector,
    tq tsquery, r int4range, na numeric[], ta text[], dm posint, e mood, comp pair,
    ct citext, hs hstore";

const CORPUS_ROW_A: &str = "1.0, '-0', '-0', '30 days', '2024-02-29 13:14:15.123456+05:30',
    '0044-03-15 12:00 BC', 'infinity', '12.34', B'1010', B'1', '\\x00ff', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11',
    '192.168.1.5/24', '10.0.0.0/8', '08:00:2b:01:02:03', '{\"a\": 1.0}', '{\"a\": 1.0}',
    '<r>t</r>', '(0.1,0.30000000000000004)', '(1,1),(0,0)', 'a fat:2 cat', 'fat & rat',
    '[1,5)', '{1.0,NULL,2}', '{\"x y\",NULL,\"\"}', 5, 'sad', '(1.0,\"a b\")', 'A', 'k=>1.0, z=>NULL'";

const CORPUS_ROW_B: &str = "1.00, '0', '0', '1 mon', '2024-02-29 07:44:15.123456+00',
    '0044-03-15 12:00 BC', '-infinity', '12.34', B'1010', B'1', '\\x00ff', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11',
    '192.168.1.5/24', '10.0.0.0/8', '08:00:2b:01:02:03', '{\"a\": 1.0}', '{\"a\": 1.00}',
    '<r>t</r>', '(0.1,0.30000000000000004)', '(1,1),(0,0)', 'a fat:2 cat', 'fat & rat',
    '[1,5)', '{1.00,NULL,2}', '{\"x y\",NULL,\"\"}', 5, 'sad', '(1.00,\"a b\")', 'a', 'k=>1.0, z=>NULL'";

/// A compact corpus of built-in and contrib types under FULL and primary-key identity, with
/// rows that are duplicates by equality, replayed under other session settings.
#[tokio::test]
async fn type_corpus_round_trips_exactly() {
    let p = pair(&format!(
        "CREATE EXTENSION citext; CREATE EXTENSION hstore;
         CREATE DOMAIN posint AS int CHECK (VALUE > 0);
         CREATE TYPE mood AS ENUM ('sad', 'happy');
         CREATE TYPE pair AS (n numeric, t text);
         CREATE TABLE corpus_full (tag int, {CORPUS_COLUMNS});
         ALTER TABLE corpus_full REPLICA IDENTITY FULL;
         CREATE TABLE corpus_pk (id int PRIMARY KEY, {CORPUS_COLUMNS});"
    ))
    .await;
    p.src
        .batch_execute(&format!(
            "INSERT INTO corpus_full VALUES (1, {CORPUS_ROW_A}), (1, {CORPUS_ROW_B}),
                                           (2, {CORPUS_ROW_A}), (2, {CORPUS_ROW_B}),
                                           (3, {CORPUS_ROW_A}), (3, {CORPUS_ROW_A});
             INSERT INTO corpus_full (tag) VALUES (4), (4);
             UPDATE corpus_full SET tag = 10 WHERE ctid = '(0,2)';
             DELETE FROM corpus_full WHERE ctid = '(0,4)';
             UPDATE corpus_full SET e = 'happy', ta = '{{}}' WHERE ctid = '(0,6)';
             DELETE FROM corpus_full WHERE ctid = '(0,8)';
             INSERT INTO corpus_pk VALUES (1, {CORPUS_ROW_A}), (2, {CORPUS_ROW_B});
             INSERT INTO corpus_pk (id) VALUES (3);
             UPDATE corpus_pk SET n = 2.000, iv = '-1 days +02:00', jb = '[1.50]' WHERE id = 1;
             UPDATE corpus_pk SET id = 20 WHERE id = 2;
             DELETE FROM corpus_pk WHERE id = 3;"
        ))
        .await
        .unwrap();
    let lines = p.decode_and_replay().await;
    p.assert_same(&lines).await;
    let full = exact_contents(&p.dst).await;
    assert!(full.contains("corpus_full: 6 rows"), "{full}");
}

/// More types: contrib ltree and cube, pg_lsn, the geometric types, time zones on times,
/// ranges over timestamps and dates, fixed and variable characters, macaddr8, and (PostgreSQL
/// 14+) multiranges, under FULL identity with rows that differ only in representation, replayed
/// under other session settings.
#[tokio::test]
async fn more_types_round_trip_exactly() {
    let multirange = pg_major() >= 14;
    let extra_column = if multirange {
        ", mr datemultirange"
    } else {
        ""
    };
    let p = pair(&format!(
        "CREATE EXTENSION ltree; CREATE EXTENSION cube;
         CREATE TABLE more_types (tag int, lt ltree, cu cube, lsn pg_lsn, ln line, ls lseg,
             pa path, pg polygon, ci circle, tm time, tz timetz, tsr tstzrange, dr daterange,
             bp char(5), vc varchar(10), nm name, ch \"char\", m8 macaddr8, i2 int2[],
             f4a real[]{extra_column});
         ALTER TABLE more_types REPLICA IDENTITY FULL;"
    ))
    .await;
    let mr = |v: &str| {
        if multirange {
            format!(", '{v}'")
        } else {
            String::new()
        }
    };
    p.src
        .batch_execute(&format!(
            "INSERT INTO more_types VALUES
             (1, 'top.mid.leaf', '(1.0, 2.0),(3.0, 4.0)', '16/B374D848', '{{1,-1,0}}', '[(0,0),(1,1)]',
              '((0,0),(1,1),(2,0))', '((0,0),(1,1),(1,0))', '<(0,0),1.5>', '24:00:00', '12:00:00+05:30',
              '[2024-01-01 00:00+00,2024-01-02 00:00+00)', '[2024-01-01,2024-01-05)', 'ab', 'x ',
              'name', 'z', '08:00:2b:01:02:03:04:05', '{{1,NULL,-32768}}', '{{-0,Infinity,NaN}}'{}),
             (1, 'top.mid.leaf', '(1.00, 2.00),(3.00, 4.00)', '16/B374D848', '{{1,-1,0}}', '[(0,0),(1,1)]',
              '((0,0),(1,1),(2,0))', '((0,0),(1,1),(1,0))', '<(0,0),1.5>', '24:00:00', '06:30:00+00',
              '[2024-01-01 05:00+05,2024-01-02 00:00+00)', '[2024-01-01,2024-01-04]', 'ab   ', 'x ',
              'name', 'z', '08:00:2b:01:02:03:04:05', '{{1,NULL,-32768}}', '{{0,Infinity,NaN}}'{});
             INSERT INTO more_types (tag) VALUES (2);
             UPDATE more_types SET tag = 10 WHERE ctid = '(0,2)';
             DELETE FROM more_types WHERE ctid = '(0,1)';",
            mr("{[2024-01-01,2024-01-03),[2024-02-01,2024-02-02)}"),
            mr("{[2024-01-01,2024-01-03),[2024-02-01,2024-02-02)}"),
        ))
        .await
        .unwrap();
    let lines = p.decode_and_replay().await;
    p.assert_same(&lines).await;
    let tags: Vec<i32> = p
        .dst
        .query("SELECT tag FROM more_types ORDER BY tag", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(tags, [2, 10]);
}

/// Triggers enabled ALWAYS or REPLICA would fire on replay (under
/// `session_replication_role = replica`) and add their effects a second time: the stream
/// switches them off around the transaction's changes and back on as they were.
#[tokio::test]
async fn always_and_replica_triggers_do_not_fire_on_replay() {
    let p = pair(
        "CREATE TABLE audit (n int, what text);
         CREATE FUNCTION log_it() RETURNS trigger LANGUAGE plpgsql AS
             $$ BEGIN INSERT INTO audit VALUES (NEW.id, TG_OP); RETURN NEW; END $$;
         CREATE TABLE t (id int PRIMARY KEY, v text);
         CREATE TRIGGER t_audit AFTER INSERT OR UPDATE ON t FOR EACH ROW EXECUTE FUNCTION log_it();
         ALTER TABLE t ENABLE ALWAYS TRIGGER t_audit;
         CREATE TABLE r (id int PRIMARY KEY);
         CREATE TRIGGER r_audit AFTER INSERT ON r FOR EACH ROW EXECUTE FUNCTION log_it();
         ALTER TABLE r ENABLE REPLICA TRIGGER r_audit;
         CREATE TABLE quiet (id int PRIMARY KEY);
         CREATE TRIGGER quiet_audit AFTER INSERT ON quiet FOR EACH ROW EXECUTE FUNCTION log_it();
         CREATE TABLE ruled (id int PRIMARY KEY);
         CREATE RULE \"Log it\" AS ON INSERT TO ruled DO ALSO INSERT INTO audit VALUES (NEW.id, 'RULE');
         ALTER TABLE ruled ENABLE ALWAYS RULE \"Log it\";",
    )
    .await;
    p.src
        .batch_execute(
            "INSERT INTO t VALUES (1, 'a'), (2, 'b');
             UPDATE t SET v = 'c' WHERE id = 2;
             BEGIN; INSERT INTO r VALUES (1); INSERT INTO quiet VALUES (1); COMMIT;
             INSERT INTO ruled VALUES (5);",
        )
        .await
        .unwrap();
    let lines = p.decode_and_replay().await;
    p.assert_same(&lines).await;
    let audited: i64 = p
        .dst
        .query_one("SELECT count(*) FROM audit", &[])
        .await
        .unwrap()
        .get(0);
    // t: two INSERTs and an UPDATE; quiet: one INSERT; ruled: one; r's REPLICA trigger does
    // not fire on the source. Replayed, none fires again.
    assert_eq!(audited, 5, "{lines:#?}");
    assert!(
        lines.contains(&"ALTER TABLE ONLY public.t DISABLE TRIGGER t_audit;".to_string())
            && lines
                .contains(&"ALTER TABLE ONLY public.r ENABLE REPLICA TRIGGER r_audit;".to_string())
            && lines
                .contains(&"ALTER TABLE ONLY public.ruled DISABLE RULE \"Log it\";".to_string())
            && lines.contains(
                &"ALTER TABLE ONLY public.ruled ENABLE ALWAYS RULE \"Log it\";".to_string()
            )
            && !lines.iter().any(|l| l.contains("quiet_audit")),
        "{lines:#?}"
    );
    for db in [&p.src, &p.dst] {
        let state: String = db
            .query_one(
                "SELECT string_agg(tgname || '=' || tgenabled::text, ' ' ORDER BY tgname) FROM pg_trigger
                  WHERE tgname IN ('t_audit', 'r_audit', 'quiet_audit')",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(state, "quiet_audit=O r_audit=R t_audit=A");
        let rule = query_one_text(
            db,
            "SELECT ev_enabled::text FROM pg_rewrite WHERE rulename = 'Log it'",
        )
        .await;
        assert_eq!(rule, "A");
    }
}

async fn query_one_text(db: &Client, sql: &str) -> String {
    db.query_one(sql, &[]).await.unwrap().get(0)
}
