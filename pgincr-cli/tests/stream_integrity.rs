//! The stream never loses a change and never stalls silently: statement text that looks like
//! the stream's own transaction lines, and messages forged by an unprivileged role, neither
//! stop the stream nor change what a restore does.

mod common;

use common::*;
use e2e::TestCluster;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tokio_postgres::Client;

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
    assert!(
        verified.contains("WARN 2 DDL message(s) refused by decoder_sql"),
        "{verified}"
    );
    // Drop the intruder's role on the source: the restore target is the same cluster, and a
    // restore must not have changed its attributes.
    restore_into(&cluster, repo_s, "dbname=restored", &[]);
    let superuser = is_superuser(&source, "intruder").await;
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

/// A cluster with pgbench tables (no key on pgbench_history: FULL identity) and a repository.
async fn pgbench_repo() -> (TestCluster, Client, PathBuf) {
    let cluster = TestCluster::start();
    pgbench_init(&cluster, 1);
    let source = cluster.connect("postgres").await;
    source
        .batch_execute("ALTER TABLE pgbench_history REPLICA IDENTITY FULL")
        .await
        .unwrap();
    let repo = repo_dir(&cluster);
    run_ok(
        &cluster,
        &[
            "init",
            "-d",
            "dbname=postgres",
            "-r",
            repo.to_str().unwrap(),
        ],
    );
    (cluster, source, repo)
}

/// `pgincr stream` in its own process group, so that the group can be killed.
fn start_stream_group(cluster: &TestCluster, repo: &Path) -> Child {
    pgincr(cluster)
        .args(["stream", "-d", "dbname=postgres", "-r"])
        .arg(repo)
        .args(["--segment-size", "4kB", "--fsync-interval", "1s"])
        .args(["--status-interval", "1s", "--sequence-interval", "2s"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .unwrap()
}

fn receivers_of(repo: &Path) -> Vec<String> {
    let out = Command::new("pgrep")
        .args(["-a", "-f", &format!("pg_recvlogical.*{}", repo.display())])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

async fn no_receiver_left(repo: &Path) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !receivers_of(repo).is_empty() {
        assert!(
            Instant::now() < deadline,
            "pg_recvlogical outlived pgincr: {:?}",
            receivers_of(repo)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// kill -9 of pgincr alone, and of its whole process group, while segments rotate under
/// pgbench: the receiver dies with it, the next run goes on, and the restore is complete.
#[tokio::test]
async fn killed_stream_takes_its_receiver_along() {
    let (cluster, source, repo) = pgbench_repo().await;
    let repo_s = repo.to_str().unwrap().to_owned();
    let bench = pgbench(
        &cluster,
        &["-n", "-c", "4", "-j", "2", "-T", "8", "postgres"],
    )
    .spawn()
    .unwrap();
    for kill_group in [false, true] {
        let stream = start_stream_group(&cluster, &repo);
        tokio::time::sleep(Duration::from_millis(2500)).await;
        assert!(!receivers_of(&repo).is_empty(), "no receiver running");
        let pid = nix::unistd::Pid::from_raw(stream.id() as i32);
        if kill_group {
            nix::sys::signal::killpg(pid, nix::sys::signal::Signal::SIGKILL).unwrap();
        } else {
            nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL).unwrap();
        }
        let _ = stream.wait_with_output();
        no_receiver_left(&repo).await;
    }
    let out = bench.wait_with_output().unwrap();
    assert!(out.status.success(), "pgbench: {}", describe(&out));
    catch_up(&cluster, &repo_s);
    run_ok(&cluster, &["verify", "-r", &repo_s]);
    restore_into(&cluster, &repo_s, "dbname=restored", &[]);
    assert_same_database(&cluster, &source, "restored").await;
}

/// A pg_recvlogical left running by a run that died (as older versions left it) is stopped
/// before the stream touches the segments, and nothing it wrote is lost.
#[tokio::test]
async fn a_receiver_left_running_is_stopped_first() {
    let (cluster, source, repo) = initialised(
        "CREATE TABLE t (id int PRIMARY KEY, v text); INSERT INTO t VALUES (1, 'base');",
    )
    .await;
    let repo_s = repo.to_str().unwrap().to_owned();
    let mut orphan = cluster
        .client_command("pg_recvlogical")
        .args(["-d", "postgres", "-S", "pgincr", "--start", "--no-loop"])
        .args(["-o", "include_annotations=on", "-o", "skip_empty_xacts=on"])
        .args(["--fsync-interval=1", "--status-interval=1", "-f"])
        .arg(repo.join("segments/open.sql"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .unwrap();
    source
        .batch_execute("INSERT INTO t SELECT g, 'orphan' FROM generate_series(2, 500) g")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(orphan.try_wait().unwrap().is_none(), "the receiver exited");
    source
        .batch_execute("UPDATE t SET v = 'later' WHERE id % 3 = 0")
        .await
        .unwrap();
    let log = catch_up_log(&cluster, &repo_s);
    assert!(
        log.contains("left by an earlier run still writes into"),
        "{log}"
    );
    assert!(
        orphan.try_wait().unwrap().is_some(),
        "the receiver still runs"
    );
    restore_into(&cluster, &repo_s, "dbname=restored", &[]);
    assert_same_database(&cluster, &source, "restored").await;
}

/// A slot dropped and created again under the same name has not kept the changes made in
/// between: the stream refuses to go on, naming the gap.
#[tokio::test]
async fn a_recreated_slot_is_refused_as_a_gap() {
    let (cluster, source, repo) =
        initialised("CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t VALUES (1);").await;
    let repo_s = repo.to_str().unwrap().to_owned();
    source
        .batch_execute("INSERT INTO t VALUES (2)")
        .await
        .unwrap();
    catch_up(&cluster, &repo_s);
    source
        .batch_execute("SELECT pg_drop_replication_slot('pgincr')")
        .await
        .unwrap();
    source
        .batch_execute("INSERT INTO t VALUES (3)")
        .await
        .unwrap();
    source
        .batch_execute("SELECT pg_create_logical_replication_slot('pgincr', 'decoder_sql')")
        .await
        .unwrap();
    source
        .batch_execute("INSERT INTO t VALUES (4)")
        .await
        .unwrap();
    let (code, err) = run_err(
        &cluster,
        &[
            "stream",
            "-d",
            "dbname=postgres",
            "-r",
            &repo_s,
            "--catch-up",
        ],
    );
    assert_ne!(code, Some(0));
    assert!(
        err.contains("has confirmed changes up to") && err.contains("are lost to it"),
        "{err}"
    );
}

/// A table created after init without a primary key does not stop the backup: it gets
/// REPLICA IDENTITY FULL (also in the stream), and its updates and deletes restore.
#[tokio::test]
async fn a_table_without_identity_does_not_stop_the_stream() {
    let (cluster, source, repo) = initialised("CREATE EXTENSION IF NOT EXISTS decoder_sql;").await;
    let repo_s = repo.to_str().unwrap().to_owned();
    source
        .batch_execute(
            "CREATE TABLE log (at int, what text);
             INSERT INTO log SELECT g, 'row ' || g FROM generate_series(1, 20) g;
             CREATE TABLE keyed (id int PRIMARY KEY, v text);
             INSERT INTO keyed VALUES (1, 'a'), (2, 'b');
             ALTER TABLE keyed DROP CONSTRAINT keyed_pkey;
             CREATE SCHEMA app
                 CREATE TABLE parted (a int, b text) PARTITION BY LIST (a)
                 CREATE TABLE parted_1 PARTITION OF app.parted FOR VALUES IN (1) PARTITION BY LIST (a)
                 CREATE TABLE parted_1_1 PARTITION OF app.parted_1 FOR VALUES IN (1);
             CREATE TABLE keyed_parts (id int PRIMARY KEY, v text) PARTITION BY RANGE (id);
             CREATE TABLE keyed_parts_1 PARTITION OF keyed_parts FOR VALUES FROM (0) TO (100);
             ALTER TABLE keyed_parts DROP CONSTRAINT keyed_parts_pkey;
             INSERT INTO app.parted VALUES (1, 'x'), (1, 'y');
             INSERT INTO keyed_parts VALUES (1, 'a'), (2, 'b');",
        )
        .await
        .unwrap();
    source
        .batch_execute(
            "UPDATE log SET what = 'changed' WHERE at % 2 = 0;
             DELETE FROM log WHERE at > 15;
             UPDATE keyed SET v = 'c' WHERE id = 2;
             DELETE FROM keyed WHERE id = 1;
             DELETE FROM app.parted WHERE b = 'x';
             UPDATE keyed_parts SET v = 'z' WHERE id = 2;",
        )
        .await
        .unwrap();
    let identities: Vec<(String, String)> = source
        .query(
            "SELECT relname::text, relreplident::text FROM pg_class
              WHERE relname IN ('log', 'keyed') ORDER BY 1",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(
        identities,
        [("keyed".into(), "f".into()), ("log".into(), "f".into())]
    );
    catch_up(&cluster, &repo_s);
    restore_into(&cluster, &repo_s, "dbname=restored", &[]);
    assert_same_database(&cluster, &source, "restored").await;
}

/// `init --missing-identity skip`: tables without a usable identity keep it that way, their
/// UPDATEs and DELETEs are skipped (not a stall), counted into the manifest and reported by
/// `status` as a WARNING; everything else restores equal.
#[tokio::test]
async fn the_skip_policy_counts_what_it_skips() {
    let cluster = TestCluster::start();
    let source = cluster.connect("postgres").await;
    source
        .batch_execute("CREATE TABLE keyed (id int PRIMARY KEY, v text)")
        .await
        .unwrap();
    let repo = repo_dir(&cluster);
    let repo_s = repo.to_str().unwrap().to_owned();
    let out = run_ok(
        &cluster,
        &[
            "init",
            "-d",
            "dbname=postgres",
            "-r",
            &repo_s,
            "--missing-identity",
            "skip",
        ],
    );
    assert!(out.contains("--missing-identity skip"), "{out}");
    // The policy holds for sessions started after init.
    let source = cluster.connect("postgres").await;
    source
        .batch_execute(
            "CREATE TABLE log (at int, what text);
             INSERT INTO log SELECT g, 'row ' || g FROM generate_series(1, 5) g;
             INSERT INTO keyed VALUES (1, 'a'), (2, 'b');",
        )
        .await
        .unwrap();
    source
        .batch_execute(
            "UPDATE log SET what = 'changed' WHERE at <= 2;
             DELETE FROM log WHERE at = 5;
             UPDATE keyed SET v = 'c' WHERE id = 2;",
        )
        .await
        .unwrap();
    assert_eq!(
        query_text(
            &source,
            "SELECT relreplident::text FROM pg_class WHERE relname = 'log'"
        )
        .await,
        "d"
    );
    catch_up(&cluster, &repo_s);
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(repo.join("manifest.json")).unwrap())
            .unwrap();
    assert_eq!(manifest["source"]["missing_identity"], "skip");
    let skipped: u64 = manifest["segments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["skipped_changes"].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(skipped, 3, "{manifest}");
    let status = pgincr(&cluster)
        .args(["status", "-d", "dbname=postgres", "-r", &repo_s])
        .args(["--fs-warn", "100", "--fs-critical", "100"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&status.stdout);
    assert_eq!(status.status.code(), Some(1), "{}", describe(&status));
    assert!(text.contains("3 update(s) and delete(s)"), "{text}");

    restore_into(&cluster, &repo_s, "dbname=restored", &[]);
    let restored = cluster.connect("restored").await;
    let rows =
        |t: &'static str| format!("SELECT string_agg(t::text, ',' ORDER BY t::text) FROM {t} t");
    assert_eq!(
        query_text(&restored, &rows("keyed")).await,
        query_text(&source, &rows("keyed")).await
    );
    // The skipped changes are missing, as reported: the rows as inserted.
    assert_eq!(
        query_text(&restored, &rows("log")).await,
        "(1,\"row 1\"),(2,\"row 2\"),(3,\"row 3\"),(4,\"row 4\"),(5,\"row 5\")"
    );
}

/// A database whose text is not UTF-8 (SQL_ASCII with high bytes) does not stop the stream:
/// segments keep the bytes exactly, verify passes, and restore stores the same bytes.
#[tokio::test]
async fn bytes_that_are_not_utf8_do_not_stop_the_stream() {
    let cluster = TestCluster::start();
    let admin = cluster.connect("postgres").await;
    admin
        .batch_execute("CREATE DATABASE ascii ENCODING 'SQL_ASCII' TEMPLATE template0")
        .await
        .unwrap();
    let source = cluster.connect("ascii").await;
    source
        .batch_execute(
            "CREATE TABLE t (id int PRIMARY KEY, v text); INSERT INTO t VALUES (1, 'plain');",
        )
        .await
        .unwrap();
    let repo = repo_dir(&cluster);
    let repo_s = repo.to_str().unwrap().to_owned();
    run_ok(&cluster, &["init", "-d", "dbname=ascii", "-r", &repo_s]);
    // Two transactions: only the first holds the byte.
    source
        .batch_execute("INSERT INTO t VALUES (2, E'caf\\xe9')")
        .await
        .unwrap();
    source
        .batch_execute("INSERT INTO t VALUES (3, 'after')")
        .await
        .unwrap();
    for _ in 0..2 {
        run_ok(
            &cluster,
            &["stream", "-d", "dbname=ascii", "-r", &repo_s, "--catch-up"],
        );
    }
    source
        .batch_execute("INSERT INTO t VALUES (4, 'later')")
        .await
        .unwrap();
    run_ok(
        &cluster,
        &["stream", "-d", "dbname=ascii", "-r", &repo_s, "--catch-up"],
    );
    run_ok(&cluster, &["verify", "-r", &repo_s]);
    // The exact bytes are in the segments.
    let mut all = Vec::new();
    for entry in std::fs::read_dir(repo.join("segments")).unwrap() {
        let path = entry.unwrap().path();
        let bytes = std::fs::read(&path).unwrap();
        if path.extension().is_some_and(|e| e == "zst") {
            all.extend(zstd::decode_all(&bytes[..]).unwrap());
        } else {
            all.extend(bytes);
        }
    }
    assert!(
        all.windows(4).any(|w| w == b"caf\xe9"),
        "the byte 0xE9 is not in the segments"
    );
    // Restored byte for byte: the statement goes to the server in the database's encoding.
    run_ok(
        &cluster,
        &["restore", "-r", &repo_s, "-t", "dbname=copy", "--create"],
    );
    let restored = cluster.connect("copy").await;
    let bytes = "SELECT string_agg(id || ':' || encode(v::bytea, 'hex'), ',' ORDER BY id) FROM t";
    assert_eq!(
        query_text(&restored, bytes).await,
        query_text(&source, bytes).await
    );
    assert!(query_text(&restored, bytes).await.contains("2:636166e9"));
}

/// A LATIN1 database: text that is not ASCII, including bytes that happen to read as valid
/// UTF-8 (`Ã©`, C3 A9), in rows, next to a run loaded with COPY, and in captured DDL (names,
/// defaults, a function body and a comment spanning lines) restores exactly: the capture
/// keeps the statement's bytes, and the server converts the segment's bytes itself.
#[tokio::test]
async fn a_latin1_database_restores_exactly() {
    let cluster = TestCluster::start();
    let admin = cluster.connect("postgres").await;
    admin
        .batch_execute(
            "CREATE DATABASE latin ENCODING 'LATIN1' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0",
        )
        .await
        .unwrap();
    let source = cluster.connect("latin").await;
    source
        .batch_execute("CREATE TABLE t (id int PRIMARY KEY, v text)")
        .await
        .unwrap();
    let repo = repo_dir(&cluster);
    let repo_s = repo.to_str().unwrap().to_owned();
    run_ok(&cluster, &["init", "-d", "dbname=latin", "-r", &repo_s]);
    // tokio-postgres speaks UTF-8; the server stores LATIN1.
    source
        .batch_execute(
            "INSERT INTO t VALUES (1, 'café'), (2, 'Ã©'), (3, 'plain');
             INSERT INTO t SELECT g, 'ligne ' || g || ' déjà vu' FROM generate_series(10, 99) g;
             INSERT INTO t SELECT g, 'ascii ' || g FROM generate_series(100, 199) g;
             CREATE TABLE \"Straße\" (k int PRIMARY KEY, note text DEFAULT 'naïve');
             CREATE FUNCTION grüße() RETURNS text LANGUAGE plpgsql AS $f$
             BEGIN
               RETURN 'grüße, ' ||
                 'à bientôt';
             END $f$;
             COMMENT ON TABLE t IS 'Übersicht
             über zwei Zeilen';
             INSERT INTO \"Straße\" (k) VALUES (1);
             UPDATE t SET v = v || ' ©' WHERE id = 2;",
        )
        .await
        .unwrap();
    run_ok(
        &cluster,
        &["stream", "-d", "dbname=latin", "-r", &repo_s, "--catch-up"],
    );
    let out = run_ok(
        &cluster,
        &[
            "restore",
            "-r",
            &repo_s,
            "-t",
            "dbname=latin_copy",
            "--create",
        ],
    );
    assert!(out.contains("loaded with COPY"), "{out}");
    let restored = cluster.connect("latin_copy").await;
    let rows = "SELECT string_agg(id || ':' || encode(convert_to(v, 'LATIN1'), 'hex'), ',' ORDER BY id) FROM t";
    assert_eq!(
        query_text(&restored, rows).await,
        query_text(&source, rows).await
    );
    assert!(
        query_text(&restored, rows)
            .await
            .starts_with("1:636166e9,2:c3a920a9")
    );
    let (a, b) = (
        e2e::decode::schema_dump(&cluster, "latin"),
        e2e::decode::schema_dump(&cluster, "latin_copy"),
    );
    assert_eq!(a, b, "schemas differ:\n{}", e2e::decode::line_diff(&a, &b));
}

/// An EUC_JP database (a multibyte encoding): Japanese names, values and a multi-line
/// function body restore exactly.
#[tokio::test]
async fn an_euc_jp_database_restores_exactly() {
    let cluster = TestCluster::start();
    let admin = cluster.connect("postgres").await;
    admin
        .batch_execute(
            "CREATE DATABASE nihon ENCODING 'EUC_JP' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0",
        )
        .await
        .unwrap();
    let source = cluster.connect("nihon").await;
    let repo = repo_dir(&cluster);
    let repo_s = repo.to_str().unwrap().to_owned();
    run_ok(&cluster, &["init", "-d", "dbname=nihon", "-r", &repo_s]);
    source
        .batch_execute(
            "CREATE TABLE 商品 (番号 int PRIMARY KEY, 名前 text DEFAULT '未定');
             INSERT INTO 商品 VALUES (1, '日本語'), (2, 'ｶﾀｶﾅ'), (3, '①');
             INSERT INTO 商品 (番号) SELECT generate_series(10, 60);
             CREATE FUNCTION 挨拶() RETURNS text LANGUAGE sql AS $f$
               SELECT 'こんにちは、' ||
                 '世界'
             $f$;
             UPDATE 商品 SET 名前 = 名前 || '（改）' WHERE 番号 = 2;",
        )
        .await
        .unwrap();
    run_ok(
        &cluster,
        &["stream", "-d", "dbname=nihon", "-r", &repo_s, "--catch-up"],
    );
    run_ok(
        &cluster,
        &[
            "restore",
            "-r",
            &repo_s,
            "-t",
            "dbname=nihon_copy",
            "--create",
        ],
    );
    let restored = cluster.connect("nihon_copy").await;
    let rows = "SELECT string_agg(番号 || ':' || encode(convert_to(名前, 'EUC_JP'), 'hex'), ',' ORDER BY 番号) FROM 商品";
    assert_eq!(
        query_text(&restored, rows).await,
        query_text(&source, rows).await
    );
    assert_eq!(
        query_text(&restored, "SELECT 挨拶()").await,
        "こんにちは、世界"
    );
    let (a, b) = (
        e2e::decode::schema_dump(&cluster, "nihon"),
        e2e::decode::schema_dump(&cluster, "nihon_copy"),
    );
    assert_eq!(a, b, "schemas differ:\n{}", e2e::decode::line_diff(&a, &b));
}

/// init makes every new session of the database load decoder_sql, so DDL in a DO block that
/// is a session's very first statement is captured and restored.
#[tokio::test]
async fn init_makes_nested_ddl_capturable_in_every_session() {
    let (cluster, source, repo) = initialised("CREATE TABLE t (id int PRIMARY KEY)").await;
    let repo_s = repo.to_str().unwrap().to_owned();
    let preload: String = cluster
        .connect("postgres")
        .await
        .query_one("SELECT current_setting('session_preload_libraries')", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(preload, "decoder_sql");
    let out = cluster
        .client_command("psql")
        .args(["-X", "-v", "ON_ERROR_STOP=1", "-d", "postgres", "-c"])
        .arg("DO $$ BEGIN EXECUTE 'CREATE TABLE made_in_do (id int PRIMARY KEY)'; INSERT INTO made_in_do VALUES (1); END $$")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", describe(&out));
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("WARNING"),
        "{}",
        describe(&out)
    );
    catch_up(&cluster, &repo_s);
    restore_into(&cluster, &repo_s, "dbname=restored", &[]);
    assert_same_database(&cluster, &source, "restored").await;
}

/// Segment files replayed by hand with `psql -f` read every value as written even where the
/// target's defaults differ (standard_conforming_strings, array_nulls, DateStyle): each
/// segment's settings line pins them.
#[tokio::test]
async fn segments_replayed_with_psql_ignore_the_targets_defaults() {
    let (cluster, source, repo) =
        initialised("CREATE TABLE paths (id int PRIMARY KEY, p text, a text[], d date);").await;
    let repo_s = repo.to_str().unwrap().to_owned();
    source
        .batch_execute(
            "INSERT INTO paths VALUES (1, 'C:\\new\\table', ARRAY['x', NULL], '2024-02-03');",
        )
        .await
        .unwrap();
    catch_up(&cluster, &repo_s);
    let admin = cluster.connect("postgres").await;
    admin
        .batch_execute("CREATE DATABASE by_hand")
        .await
        .unwrap();
    admin
        .batch_execute(
            "ALTER DATABASE by_hand SET standard_conforming_strings = off;
             ALTER DATABASE by_hand SET array_nulls = off;
             ALTER DATABASE by_hand SET DateStyle = 'SQL, DMY';",
        )
        .await
        .unwrap();
    let script = r#"set -euo pipefail
zstd -dc bases/*/dump.sql.zst \
  | grep -v -e '^CREATE EXTENSION IF NOT EXISTS decoder_sql ' -e '^COMMENT ON EXTENSION decoder_sql ' \
  | psql -X -q -v ON_ERROR_STOP=1 --single-transaction -d by_hand >/dev/null
{ for f in segments/*.sql.zst; do zstd -dc "$f"; done; cat segments/open.sql 2>/dev/null || true; } \
  | PGOPTIONS='-c session_replication_role=replica' psql -X -q -v ON_ERROR_STOP=1 -d by_hand >/dev/null
"#;
    let out = run_by_hand(&cluster, &repo, script);
    assert!(out.status.success(), "{}", describe(&out));
    let q = "SELECT p || ' | ' || array_to_string(a, ',', '<null>') || ' | ' || to_char(d, 'YYYY-MM-DD') FROM paths WHERE id = 1";
    let want: String = source.query_one(q, &[]).await.unwrap().get(0);
    let got: String = cluster
        .connect("by_hand")
        .await
        .query_one(q, &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(got, want);
    assert_eq!(want, "C:\\new\\table | x,<null> | 2024-02-03");
}

/// DDL captured from a session with standard_conforming_strings = off streams, verifies and
/// restores with its literals intact.
#[tokio::test]
async fn ddl_from_a_backslash_strings_session_restores() {
    let (cluster, source, repo) = initialised("CREATE TABLE t (id int PRIMARY KEY)").await;
    let repo_s = repo.to_str().unwrap().to_owned();
    let session = cluster.connect("postgres").await;
    session
        .batch_execute("SET standard_conforming_strings = off")
        .await
        .unwrap();
    session
        .batch_execute("COMMENT ON TABLE t IS 'it\\'s C:\\\\new\\nBEGIN;\\nCOMMIT;'")
        .await
        .unwrap();
    source
        .batch_execute("INSERT INTO t VALUES (1)")
        .await
        .unwrap();
    catch_up(&cluster, &repo_s);
    run_ok(&cluster, &["verify", "-r", &repo_s]);
    restore_into(&cluster, &repo_s, "dbname=restored", &[]);
    assert_same_database(&cluster, &source, "restored").await;
    let comment: String = cluster
        .connect("restored")
        .await
        .query_one("SELECT obj_description('t'::regclass, 'pg_class')", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(comment, "it's C:\\new\nBEGIN;\nCOMMIT;");
}
