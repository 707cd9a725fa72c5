//! Restore of large transactions: runs of INSERTs loaded with COPY store exactly what the
//! INSERTs would, a failing COPY row is named by its line, and a transaction far larger than
//! the restore's memory, cut short in the stream and sent again in full, restores in
//! constant memory.

mod common;

use common::*;
use e2e::TestCluster;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// Every literal form decoder_sql writes, in names and values that look like COPY's own
/// syntax (tabs, newlines, backslashes, `\N`, `\.`), into a table with identity, generated
/// and domain columns, and a partitioned table.
const TYPES_SETUP: &str = r#"
    CREATE DOMAIN posint AS int CHECK (VALUE > 0);
    CREATE SCHEMA "we ird";
    CREATE TABLE "we ird"."T VALUES (x" (
        id int GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        "col, line 1" text, t2 text, f8 float8, f4 real, n numeric, b bool, bits bit(4),
        vb varbit, ba bytea, j jsonb, arr text[], ts timestamptz, iv interval, d posint,
        g int GENERATED ALWAYS AS (d * 2) STORED, c char(3), u uuid);
    CREATE TABLE measures (k int PRIMARY KEY, v text) PARTITION BY RANGE (k);
    CREATE TABLE measures_low PARTITION OF measures FOR VALUES FROM (0) TO (500);
    CREATE TABLE measures_high PARTITION OF measures FOR VALUES FROM (500) TO (100000);"#;

const TYPES_ROWS: &str = r#"
    INSERT INTO "we ird"."T VALUES (x" ("col, line 1", t2, f8, f4, n, b, bits, vb, ba, j, arr, ts, iv, d, c, u)
    SELECT CASE WHEN g % 7 = 0 THEN NULL
                ELSE 'row ' || g || E'\n\t\\ '' "x" \\N ' || chr(1 + g % 30) END,
           CASE g % 5 WHEN 0 THEN 'NULL' WHEN 1 THEN '\N' WHEN 2 THEN '' WHEN 3 THEN E'\\.'
                ELSE 'ünï ☃' END,
           CASE g % 6 WHEN 0 THEN 'NaN'::float8 WHEN 1 THEN 'Infinity' WHEN 2 THEN '-0'
                WHEN 3 THEN 1e300 ELSE g / 3.0 END,
           (g / 7.0)::real,
           CASE WHEN g % 4 = 0 THEN 'NaN'::numeric ELSE g * 1.000100 END,
           g % 2 = 0, (g % 16)::bit(4), g::bit(10)::varbit, decode(md5(g::text), 'hex'),
           jsonb_build_object('k', g, 's', E'a\nb'), ARRAY['a', NULL, E'q"u\\o,te', g::text],
           '2026-01-01 00:00:00+00'::timestamptz + g * interval '1 minute', g * interval '1 second',
           g, 'ab', md5(g::text)::uuid
      FROM generate_series(1, 1500) g;
    INSERT INTO measures SELECT g, 'm' || g FROM generate_series(1, 1000) g;"#;

#[tokio::test(flavor = "multi_thread")]
async fn runs_of_inserts_loaded_with_copy_restore_exactly() {
    let (cluster, source, repo) = initialised(TYPES_SETUP).await;
    source.batch_execute(TYPES_ROWS).await.unwrap();
    // Runs broken up by other statements, and rows changed after they were copied.
    source
        .batch_execute(
            r#"BEGIN;
               INSERT INTO measures SELECT g, 'again' FROM generate_series(1001, 1100) g;
               UPDATE "we ird"."T VALUES (x" SET t2 = 'changed' WHERE id % 10 = 0;
               INSERT INTO measures SELECT g, E'x\ty' FROM generate_series(1101, 1150) g;
               DELETE FROM measures WHERE k % 3 = 0;
               COMMIT;"#,
        )
        .await
        .unwrap();
    let repo = repo.to_str().unwrap();
    catch_up(&cluster, repo);
    for (db, copy_min_rows) in [("by_copy", "1"), ("by_default", "32"), ("by_insert", "0")] {
        let out = restore_into(
            &cluster,
            repo,
            &format!("dbname={db}"),
            &["--copy-min-rows", copy_min_rows],
        );
        assert_same_database(&cluster, &source, db).await;
        let copied = copied_rows(&out);
        match copy_min_rows {
            "0" => assert_eq!(copied, 0, "{out}"),
            // 1500 + 1000 rows, then runs of 100 and 50 (the 50 under the default 32 too)
            _ => assert_eq!(copied, 2650, "{out}"),
        }
    }
}

fn copied_rows(restore_output: &str) -> u64 {
    restore_output
        .lines()
        .find_map(|l| {
            l.strip_suffix(" row(s) of runs of INSERTs into one table were loaded with COPY")
        })
        .map_or(0, |n| n.parse().unwrap())
}

/// A table with a trigger enabled ALWAYS: the stream switches it off around the
/// transaction's changes (so it fires neither per row nor per COPY), its INSERTs load with COPY
/// like any other table's, and the trigger is enabled ALWAYS again afterwards. (Where such a
/// trigger is still enabled when the rows arrive, in streams written before the switch, the
/// catalog check keeps the INSERTs: COPY would fire statement triggers once instead of once per
/// row, and skips rules.)
#[tokio::test(flavor = "multi_thread")]
async fn tables_with_always_triggers_load_with_copy_while_switched_off() {
    let (cluster, source, repo) = initialised(
        "CREATE TABLE plain_rows (k int PRIMARY KEY);
         CREATE TABLE watched (k int PRIMARY KEY);
         CREATE FUNCTION noop() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NULL; END $$;
         CREATE TRIGGER watch AFTER INSERT ON watched FOR EACH STATEMENT EXECUTE FUNCTION noop();
         ALTER TABLE watched ENABLE ALWAYS TRIGGER watch;
         CREATE TABLE guarded (k int PRIMARY KEY);
         ALTER TABLE guarded ENABLE ROW LEVEL SECURITY;",
    )
    .await;
    source
        .batch_execute(
            "INSERT INTO plain_rows SELECT generate_series(1, 100);
             INSERT INTO watched SELECT generate_series(1, 100);
             INSERT INTO guarded SELECT generate_series(1, 100);",
        )
        .await
        .unwrap();
    let repo = repo.to_str().unwrap();
    catch_up(&cluster, repo);
    let out = pgincr(&cluster)
        .args([
            "-v",
            "restore",
            "-r",
            repo,
            "-t",
            "dbname=restored",
            "--create",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", describe(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let log = String::from_utf8_lossy(&out.stderr);
    assert_eq!(copied_rows(&stdout), 200, "{stdout}");
    assert!(
        !log.contains("public.watched: INSERTs, not COPY"),
        "the switched-off trigger still kept COPY away:\n{log}"
    );
    // A table with row security keeps its INSERTs: the catalog check refuses COPY there.
    assert!(
        log.contains("public.guarded: INSERTs, not COPY"),
        "no COPY refusal for the table with row security:\n{log}"
    );
    assert_same_database(&cluster, &source, "restored").await;
    let restored = cluster.connect("restored").await;
    let state = query_text(
        &restored,
        "SELECT tgenabled::text FROM pg_trigger WHERE tgname = 'watch'",
    )
    .await;
    assert_eq!(state, "A");
}

/// A row that fails inside a COPY stops the restore at its own line; with
/// `--on-error=skip` its transaction goes to the reject file whole and the rest applies.
#[tokio::test(flavor = "multi_thread")]
async fn a_failing_copied_row_is_named_by_its_line() {
    let (cluster, source, repo) =
        initialised("CREATE TABLE codes (code int PRIMARY KEY, note text);").await;
    let base_lsn = query_text(&source, "SELECT pg_current_wal_lsn()::text").await;
    for statement in [
        "INSERT INTO codes SELECT g, 'note ' || g FROM generate_series(1, 200) g",
        "INSERT INTO codes VALUES (1000, 'after')",
    ] {
        source.batch_execute(statement).await.unwrap();
    }
    let repo_s = repo.to_str().unwrap();
    catch_up(&cluster, repo_s);
    restore_into(&cluster, repo_s, "dbname=target", &["--to-lsn", &base_lsn]);
    let target = cluster.connect("target").await;
    target
        .batch_execute("INSERT INTO codes VALUES (150, 'in the way')")
        .await
        .unwrap();

    let (_, err) = run_err(&cluster, &["restore", "-r", repo_s, "-t", "dbname=target"]);
    let (file, line) = reported_location(&err);
    let text = segment_text(&repo.join("segments").join(&file));
    let failing = text.lines().nth(line - 1).unwrap_or_default();
    assert!(
        failing.starts_with("INSERT INTO public.codes (code, note) VALUES (150, "),
        "the error names {file}:{line}, which is {failing:?}:\n{err}"
    );

    let rejects = cluster.scratch_dir("rejects").join("codes.sql");
    let out = run_ok(
        &cluster,
        &[
            "restore",
            "-r",
            repo_s,
            "-t",
            "dbname=target",
            "--on-error=skip",
            "--reject-file",
            rejects.to_str().unwrap(),
        ],
    );
    assert!(out.contains("1 transaction(s) failed"), "{out}");
    let rejected = std::fs::read_to_string(&rejects).unwrap();
    assert_eq!(
        rejected.matches("INSERT INTO public.codes").count(),
        200,
        "the whole failed transaction is in the reject file:\n{rejected}"
    );
    assert!(rejected.contains("duplicate key"), "{rejected}");
    let notes = query_text(
        &target,
        "SELECT string_agg(code || '=' || note, ',' ORDER BY code) FROM codes",
    )
    .await;
    assert_eq!(notes, "150=in the way,1000=after");
}

/// A statement spanning lines is sent whole even where a round trip's batch fills up in the
/// middle of it.
#[tokio::test(flavor = "multi_thread")]
async fn statements_spanning_lines_are_never_split_between_round_trips() {
    let (cluster, source, repo) = initialised("CREATE TABLE t (id int PRIMARY KEY, v text);").await;
    let body: String = (0..200)
        .map(|i| format!("    x := x + {i}; -- line {i} of a long body\n"))
        .collect();
    source
        .batch_execute(&format!(
            "BEGIN;
             INSERT INTO t SELECT g, 'before ' || g FROM generate_series(1, 20) g;
             CREATE FUNCTION long_body() RETURNS int LANGUAGE plpgsql AS $f$
             DECLARE x int := 0;
             BEGIN
             {body}    RETURN x;
             END $f$;
             COMMENT ON FUNCTION long_body() IS 'a comment
             over three
             lines';
             INSERT INTO t VALUES (21, 'after');
             COMMIT;"
        ))
        .await
        .unwrap();
    let repo = repo.to_str().unwrap();
    catch_up(&cluster, repo);
    restore_into(&cluster, repo, "dbname=restored", &["--batch-size", "1kB"]);
    assert_same_database(&cluster, &source, "restored").await;
}

fn segment_text(path: &Path) -> String {
    let out = Command::new("zstd")
        .args(["-dcf", "--"])
        .arg(path)
        .output()
        .unwrap();
    assert!(out.status.success(), "zstd -dc {}", path.display());
    String::from_utf8(out.stdout).unwrap()
}

/// A transaction of some 90 MB of SQL, cut short in the stream (pg_recvlogical killed while
/// writing it, after a segment holding its first part was closed) and then sent again in
/// full, restores in memory far below its size, and equal to the source.
#[tokio::test(flavor = "multi_thread")]
async fn a_giant_transaction_cut_short_and_sent_again_restores_in_constant_memory() {
    let cluster = TestCluster::start();
    let source = cluster.connect("postgres").await;
    source
        .batch_execute("CREATE TABLE big (id bigint PRIMARY KEY, pad text, n numeric)")
        .await
        .unwrap();
    let repo = repo_dir(&cluster);
    let repo_s = repo.to_str().unwrap().to_owned();
    run_ok(&cluster, &["init", "-d", "dbname=postgres", "-r", &repo_s]);
    let stream = start_stream(&cluster, &repo);
    source
        .batch_execute(
            "INSERT INTO big SELECT g, repeat(md5(g::text), 8), g / 7.0
               FROM generate_series(1, 300000) g",
        )
        .await
        .unwrap();
    let xid = query_text(&source, "SELECT xmin::text FROM big WHERE id = 1").await;
    // Wait until the transaction's beginning is in a closed segment and pg_recvlogical is
    // writing the rest of it into the open one, then kill pg_recvlogical.
    let open = repo.join("segments").join("open.sql");
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        assert!(
            Instant::now() < deadline,
            "the transaction never spanned segments"
        );
        let size = std::fs::metadata(&open).map_or(0, |m| m.len());
        if (4 << 20..40 << 20).contains(&size) && open_segment_continues(&open, &xid) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let killed = Command::new("pkill")
        .args(["-9", "-f", &format!("pg_recvlogical.*{}", repo.display())])
        .status()
        .unwrap();
    assert!(killed.success(), "no pg_recvlogical to kill");
    let mut stream = stream;
    wait_confirmed(&source, &mut stream, Duration::from_secs(600)).await;
    stop_stream_when_caught_up(&source, stream).await;
    let begins = count_begins(&repo, &xid);
    assert!(
        begins >= 2,
        "transaction {xid} was not sent again ({begins} BEGIN line(s))"
    );

    let out = restore_into(&cluster, &repo_s, "dbname=restored", &[]);
    assert_same_database(&cluster, &source, "restored").await;
    let peak_mib: u64 = out
        .lines()
        .find_map(|l| l.strip_prefix("peak memory: "))
        .and_then(|l| l.strip_suffix(" MiB"))
        .unwrap_or_else(|| panic!("no peak memory in:\n{out}"))
        .parse()
        .unwrap();
    let sql_mib = out
        .lines()
        .find(|l| l.starts_with("applied "))
        .unwrap_or_default()
        .to_owned();
    assert!(
        peak_mib < 64,
        "restore held {peak_mib} MiB for a transaction of ~90 MiB ({sql_mib}):\n{out}"
    );
}

/// Whether the open segment begins inside transaction `xid` (its first lines are rows of it,
/// its BEGIN is in a closed segment).
fn open_segment_continues(open: &Path, xid: &str) -> bool {
    use std::io::Read;
    let mut head = [0u8; 4096];
    let Ok(n) = std::fs::File::open(open).and_then(|mut f| f.read(&mut head)) else {
        return false;
    };
    let begin = format!("BEGIN; -- xid={xid} ");
    let lines: Vec<&[u8]> = head[..n].split(|&b| b == b'\n').take(4).collect();
    !lines.iter().any(|l| l.starts_with(begin.as_bytes()))
        && lines
            .iter()
            .any(|l| l.starts_with(b"INSERT INTO public.big (id, pad, n) VALUES ("))
}

/// Waits until the slot confirmed everything written so far (decoding a transaction this
/// large twice takes a while with a debug build).
async fn wait_confirmed(
    client: &tokio_postgres::Client,
    stream: &mut std::process::Child,
    limit: Duration,
) {
    let lsn = query_text(client, "SELECT pg_current_wal_lsn()::text").await;
    let deadline = Instant::now() + limit;
    loop {
        let done = query_text(
            client,
            &format!(
                "SELECT coalesce(confirmed_flush_lsn >= '{lsn}', false)::text
                   FROM pg_replication_slots WHERE slot_name = 'pgincr'"
            ),
        )
        .await;
        if done == "true" {
            return;
        }
        if let Some(status) = stream.try_wait().unwrap() {
            let mut log = String::new();
            std::io::Read::read_to_string(stream.stderr.as_mut().unwrap(), &mut log).unwrap();
            panic!("the stream exited ({status}) before catching up to {lsn}:\n{log}");
        }
        assert!(
            Instant::now() < deadline,
            "stream did not catch up to {lsn}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn closed_segments(repo: &Path) -> Vec<std::path::PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(repo.join("segments"))
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.file_name().is_some_and(|n| n != "open.sql"))
        .collect();
    files.sort();
    files
}

fn count_begins(repo: &Path, xid: &str) -> usize {
    let head = format!("BEGIN; -- xid={xid} ");
    closed_segments(repo)
        .iter()
        .map(|p| segment_text_lossy(p).matches(&head).count())
        .sum()
}

fn segment_text_lossy(path: &Path) -> String {
    Command::new("zstd")
        .args(["-dcf", "--"])
        .arg(path)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}
