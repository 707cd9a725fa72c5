//! The whole product against real clusters: `pgincr init`, `stream`, `base`, `restore`,
//! `verify`, `prune` and `status`. Every restore is compared with the source by table
//! contents and by `pg_dump --schema-only`.

mod common;

use common::*;
use e2e::TestCluster;
use e2e::decode::{database_contents, line_diff};
use std::process::Command;
use std::time::Duration;
use tokio_postgres::Client;

const SETUP: &str = "
    CREATE TABLE accounts (id serial PRIMARY KEY, owner text NOT NULL, balance numeric(12,2));
    CREATE TABLE events (at timestamptz, what text);            -- no key: FULL identity
    ALTER TABLE events REPLICA IDENTITY FULL;
    CREATE TABLE codes (code text NOT NULL, note text);
    CREATE UNIQUE INDEX codes_code ON codes (code);
    ALTER TABLE codes REPLICA IDENTITY USING INDEX codes_code;
    INSERT INTO accounts (owner, balance) SELECT 'owner ' || g, g FROM generate_series(1, 500) g;
    INSERT INTO events VALUES ('2026-01-01 00:00+00', 'same'), ('2026-01-01 00:00+00', 'same');
    INSERT INTO codes VALUES ('a', 'first');";

/// A round of changes of every kind, DDL included; `round` makes each one different.
async fn workload(client: &Client, round: i32) {
    client
        .batch_execute(&format!(
            "INSERT INTO accounts (owner, balance) SELECT 'r{round} ' || g, g * 1.5 FROM generate_series(1, 50) g;
             UPDATE accounts SET balance = balance + {round} WHERE id % 7 = {round} % 7;
             DELETE FROM accounts WHERE id % 11 = {round} % 11 AND id > 400;
             INSERT INTO events VALUES ('2026-01-01 00:00+00', 'same'), (now(), 'round {round}');
             DELETE FROM events WHERE ctid = (SELECT ctid FROM events WHERE what = 'same' LIMIT 1);
             INSERT INTO codes VALUES ('c{round}', 'n') ON CONFLICT (code) DO UPDATE SET note = 'again';
             UPDATE codes SET code = code || 'x' WHERE code = 'a';"
        ))
        .await
        .unwrap();
    client
        .batch_execute(&format!(
            "CREATE TABLE round_{round} (id int PRIMARY KEY, payload text);
             INSERT INTO round_{round} SELECT g, repeat('p', 3000) FROM generate_series(1, 20) g;
             ALTER TABLE round_{round} ADD COLUMN extra int DEFAULT {round};"
        ))
        .await
        .unwrap();
}

#[tokio::test]
async fn init_stream_base_restore_equal_the_source() {
    let cluster = TestCluster::start();
    let source = cluster.connect("postgres").await;
    source.batch_execute(SETUP).await.unwrap();
    let repo = repo_dir(&cluster);
    let repo_s = repo.to_str().unwrap();
    let out = run_ok(&cluster, &["init", "-d", "dbname=postgres", "-r", repo_s]);
    assert!(out.contains("created extension decoder_sql"), "{out}");
    // Re-running is safe.
    let again = run_ok(&cluster, &["init", "-d", "dbname=postgres", "-r", repo_s]);
    assert!(again.contains("nothing to do"), "{again}");

    let stream = start_stream(&cluster, &repo);
    for round in 1..=3 {
        workload(&source, round).await;
    }
    let out = run_ok(&cluster, &["base", "-d", "dbname=postgres", "-r", repo_s]);
    assert!(out.contains("base backup"), "{out}");
    for round in 4..=6 {
        workload(&source, round).await;
        tokio::time::sleep(Duration::from_millis(700)).await;
    }
    source
        .batch_execute("TRUNCATE events; ALTER TABLE accounts RENAME COLUMN owner TO holder;")
        .await
        .unwrap();
    let log = stop_stream_when_caught_up(&source, stream).await;
    assert!(
        log.matches("closed segment").count() >= 3,
        "too few rotations:\n{log}"
    );

    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(repo.join("manifest.json")).unwrap())
            .unwrap();
    let bases = manifest["bases"].as_array().unwrap();
    assert_eq!(bases.len(), 2);
    let first_base = bases[0]["id"].as_str().unwrap();

    let out = run_ok(&cluster, &["verify", "-r", repo_s]);
    assert!(out.contains("all good"), "{out}");

    // From the newest base and from the first one.
    let out = restore_into(&cluster, repo_s, "dbname=latest", &[]);
    assert!(out.contains("already in the base"), "{out}");
    assert_same_database(&cluster, &source, "latest").await;
    restore_into(&cluster, repo_s, "dbname=first", &["--base", first_base]);
    assert_same_database(&cluster, &source, "first").await;

    // Sequences continue after the restored rows.
    let restored = cluster.connect("latest").await;
    let (a, b): (i32, i32) = (
        source
            .query_one("SELECT max(id) FROM accounts", &[])
            .await
            .unwrap()
            .get(0),
        restored
            .query_one("SELECT nextval('accounts_id_seq')::int", &[])
            .await
            .unwrap()
            .get(0),
    );
    assert!(b > a, "sequence at {b}, max id {a}");

    // Restoring again into a non-empty database is refused.
    let (_, err) = run_err(
        &cluster,
        &["restore", "-r", repo_s, "-t", "dbname=postgres"],
    );
    assert!(err.contains("is not empty"), "{err}");

    // Onto another server, where decoder_sql was never created; verify's restore test too.
    let other = TestCluster::start_without_plugin(&[]);
    let target = format!(
        "host={} port={} dbname=elsewhere",
        other.socket_dir().display(),
        other.port()
    );
    let out = run_ok(
        &cluster,
        &["verify", "-r", repo_s, "--restore-test", &target],
    );
    assert!(out.contains("restore test passed"), "{out}");
    let elsewhere = other.connect("elsewhere").await;
    let (a, b) = (
        database_contents(&source).await,
        database_contents(&elsewhere).await,
    );
    assert_eq!(a, b, "contents differ:\n{}", line_diff(&a, &b));
    let extensions: i64 = elsewhere
        .query_one(
            "SELECT count(*) FROM pg_extension WHERE extname = 'decoder_sql'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(extensions, 0);

    // Prune keeps the newest base and what it needs.
    let out = run_ok(&cluster, &["prune", "-r", repo_s, "--keep-bases", "1"]);
    assert!(out.contains("deleted 1 base backup(s)"), "{out}");
    assert!(!repo.join("bases").join(first_base).exists());
    run_ok(&cluster, &["verify", "-r", repo_s]);
    restore_into(&cluster, repo_s, "dbname=after_prune", &[]);
    assert_same_database(&cluster, &source, "after_prune").await;
}

#[tokio::test]
async fn stream_survives_killed_receiver_and_crashed_server() {
    let mut cluster = TestCluster::start();
    let source = cluster.connect("postgres").await;
    source.batch_execute(SETUP).await.unwrap();
    let repo = repo_dir(&cluster);
    let repo_s = repo.to_str().unwrap().to_owned();
    run_ok(&cluster, &["init", "-d", "dbname=postgres", "-r", &repo_s]);
    let stream = start_stream(&cluster, &repo);
    workload(&source, 1).await;
    tokio::time::sleep(Duration::from_secs(2)).await;

    // Kill pg_recvlogical while it writes a large transaction: its BEGIN is on disk, its
    // COMMIT is not.
    source
        .batch_execute(
            "INSERT INTO accounts (owner) SELECT 'bulk ' || g FROM generate_series(1, 100000) g",
        )
        .await
        .unwrap();
    let open = repo.join("segments").join("open.sql");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let text = std::fs::read_to_string(&open).unwrap_or_default();
        if text.contains("'bulk ")
            && !text
                .trim_end()
                .lines()
                .last()
                .unwrap_or("")
                .starts_with("COMMIT;")
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the large transaction never streamed"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let killed = Command::new("pkill")
        .args(["-KILL", "-f", &format!("pg_recvlogical.*{repo_s}")])
        .status()
        .unwrap();
    assert!(killed.success(), "no pg_recvlogical to kill");
    workload(&source, 2).await;

    // Crash the server twice.
    for round in [3, 4] {
        cluster.stop("immediate");
        cluster.restart();
        let c = cluster.connect("postgres").await;
        workload(&c, round).await;
    }
    let source = cluster.connect("postgres").await;
    let log = stop_stream_when_caught_up(&source, stream).await;
    assert!(log.contains("restarting pg_recvlogical"), "{log}");
    assert!(
        log.contains("of an incomplete transaction at the end of open.sql"),
        "{log}"
    );

    let out = restore_into(&cluster, &repo_s, "dbname=restored", &[]);
    assert!(out.contains("applied"), "{out}");
    assert_same_database(&cluster, &source, "restored").await;
}

#[tokio::test]
async fn point_in_time_and_resumed_restores() {
    let (cluster, source, repo) = initialised(SETUP).await;
    let repo_s = repo.to_str().unwrap();

    // Three moments, each with a copy of the source's contents.
    let mut moments = Vec::new();
    for round in 1..=3 {
        workload(&source, round).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let at: String = source
            .query_one("SELECT clock_timestamp()::text", &[])
            .await
            .unwrap()
            .get(0);
        let lsn: String = source
            .query_one("SELECT pg_current_wal_lsn()::text", &[])
            .await
            .unwrap()
            .get(0);
        moments.push((at, lsn, database_contents(&source).await));
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    workload(&source, 4).await;
    catch_up(&cluster, repo_s);

    for (i, (at, _, expected)) in moments.iter().enumerate() {
        let db = format!("pitr_{i}");
        let dry = restore_into(
            &cluster,
            repo_s,
            &format!("dbname={db}"),
            &["--to-time", at, "--dry-run"],
        );
        assert!(dry.contains("would be applied"), "{dry}");
        restore_into(
            &cluster,
            repo_s,
            &format!("dbname={db}"),
            &["--to-time", at],
        );
        let got = database_contents(&cluster.connect(&db).await).await;
        assert_eq!(
            expected,
            &got,
            "restore to {at}:\n{}",
            line_diff(expected, &got)
        );
    }

    // The documented manual procedure with psql and zstd only (docs/repository.md).
    let script = r#"set -euo pipefail
createdb -T template0 manual
psql -X -q -d manual -f bases/*/globals.sql >/dev/null 2>&1
zstd -dc bases/*/dump.sql.zst \
  | grep -v -e '^CREATE EXTENSION IF NOT EXISTS decoder_sql ' -e '^COMMENT ON EXTENSION decoder_sql ' \
  | psql -X -q -v ON_ERROR_STOP=1 --single-transaction -d manual >/dev/null
{ for f in segments/*.sql.zst; do zstd -dc "$f"; done; cat segments/open.sql 2>/dev/null || true; } \
  | PGOPTIONS='-c session_replication_role=replica' psql -X -q -v ON_ERROR_STOP=1 -d manual >/dev/null
"#;
    let out = run_by_hand(&cluster, &repo, script);
    assert!(out.status.success(), "manual restore: {}", describe(&out));
    assert_same_database(&cluster, &source, "manual").await;

    // A restore stopped at an LSN resumes from there and skips what it applied.
    let (_, lsn, expected) = &moments[0];
    restore_into(&cluster, repo_s, "dbname=resumed", &["--to-lsn", lsn]);
    let got = database_contents(&cluster.connect("resumed").await).await;
    assert_eq!(expected, &got);

    // Another session holding the restore's replication origin (a previous run's backend
    // still exiting, or a second restore): the restore waits a moment for it, and names it.
    let origin: String = source
        .query_one(
            "SELECT roname FROM pg_replication_origin WHERE roname LIKE 'pgincr\\_' \
             || (SELECT oid FROM pg_database WHERE datname = 'resumed') || '\\_%'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let holder = cluster.connect("resumed").await;
    holder
        .query_one("SELECT pg_replication_origin_session_setup($1)", &[&origin])
        .await
        .unwrap();
    let (_, err) = run_err(&cluster, &["restore", "-r", repo_s, "-t", "dbname=resumed"]);
    assert!(
        err.contains("another session is applying changes into this target")
            && err.contains("is another pgincr restore of it running?"),
        "{err}"
    );
    let resumed = pgincr(&cluster)
        .args(["restore", "-r", repo_s, "-t", "dbname=resumed"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    holder
        .batch_execute("SELECT pg_replication_origin_session_reset()")
        .await
        .unwrap();
    let done = resumed.wait_with_output().unwrap();
    assert!(done.status.success(), "{}", describe(&done));
    let out = String::from_utf8_lossy(&done.stdout).into_owned();
    assert!(out.contains("resuming the restore"), "{out}");
    assert!(!out.contains(" 0 already applied"), "{out}");
    assert_same_database(&cluster, &source, "resumed").await;
}

#[tokio::test]
async fn damaged_repositories_give_clear_errors() {
    let (cluster, source, repo) = initialised(SETUP).await;
    let repo_s = repo.to_str().unwrap();
    // Existing repository: init refuses another database's backup in it.
    let other = cluster.connect("postgres").await;
    other.batch_execute("CREATE DATABASE other").await.unwrap();
    let (_, err) = run_err(
        &cluster,
        &[
            "init",
            "-d",
            "dbname=other",
            "-r",
            repo_s,
            "--slot",
            "other",
        ],
    );
    assert!(err.contains("already holds a repository"), "{err}");

    let stream = start_stream(&cluster, &repo);
    for round in 1..=4 {
        workload(&source, round).await;
        tokio::time::sleep(Duration::from_millis(1200)).await;
    }
    stop_stream_when_caught_up(&source, stream).await;
    let mut segments: Vec<_> = std::fs::read_dir(repo.join("segments"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".sql.zst"))
        .collect();
    segments.sort();
    assert!(segments.len() >= 3, "{segments:?}");

    let restore_r1 = || {
        run_err(
            &cluster,
            &["restore", "-r", repo_s, "-t", "dbname=r1", "--create"],
        )
    };

    // A flipped byte.
    let victim = &segments[1];
    let mut bytes = std::fs::read(victim).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(victim, &bytes).unwrap();
    let name = victim.file_name().unwrap().to_string_lossy().into_owned();
    let (_, err) = run_err(&cluster, &["verify", "-r", repo_s]);
    assert!(
        err.contains(&format!("FAIL segment 2: segments/{name} is damaged")),
        "{err}"
    );
    let (_, err) = restore_r1();
    assert!(
        err.contains(&format!("segments/{name} is damaged"))
            && err.contains("nothing was restored"),
        "{err}"
    );

    // A missing segment.
    std::fs::remove_file(victim).unwrap();
    let (_, err) = run_err(&cluster, &["verify", "-r", repo_s]);
    assert!(
        err.contains(&format!("segments/{name} is missing")),
        "{err}"
    );
    let (_, err) = restore_r1();
    assert!(err.contains("is missing"), "{err}");
    let probe = cluster.connect("postgres").await;
    let created = probe
        .query_opt("SELECT 1 FROM pg_database WHERE datname = 'r1'", &[])
        .await
        .unwrap();
    assert!(
        created.is_none(),
        "a failed check must not create the target"
    );
}

#[tokio::test]
async fn failing_statement_is_reported_with_file_line_and_lsn() {
    let (cluster, source, repo) = initialised(SETUP).await;
    let repo_s = repo.to_str().unwrap();
    let base_lsn: String = source
        .query_one("SELECT pg_current_wal_lsn()::text", &[])
        .await
        .unwrap()
        .get(0);
    source
        .batch_execute("INSERT INTO codes VALUES ('b', 'second')")
        .await
        .unwrap();
    catch_up(&cluster, repo_s);

    restore_into(&cluster, repo_s, "dbname=broken", &["--to-lsn", &base_lsn]);
    let target = cluster.connect("broken").await;
    target
        .batch_execute("INSERT INTO codes VALUES ('b', 'in the way')")
        .await
        .unwrap();
    let (_, err) = run_err(&cluster, &["restore", "-r", repo_s, "-t", "dbname=broken"]);
    assert!(
        err.contains("restore stopped at segments/00000001_"),
        "{err}"
    );
    // Line 4: after the segment's header and settings lines, and the BEGIN.
    assert!(err.contains(".sql.zst:4 (transaction end_lsn"), "{err}");
    assert!(
        err.contains("duplicate key value violates unique constraint \"codes_code\""),
        "{err}"
    );
    // Fixing the target lets the restore go on.
    target
        .batch_execute("DELETE FROM codes WHERE code = 'b'")
        .await
        .unwrap();
    run_ok(&cluster, &["restore", "-r", repo_s, "-t", "dbname=broken"]);
    assert_same_database(&cluster, &source, "broken").await;
}

#[tokio::test]
async fn status_reports_the_slot_as_the_server_sees_it() {
    let (cluster, source, repo) = initialised(SETUP).await;
    let repo_s = repo.to_str().unwrap();
    workload(&source, 1).await;
    let status = |extra: &[&str]| {
        pgincr(&cluster)
            .args(["status", "-d", "dbname=postgres", "-r", repo_s])
            .args(["--fs-warn", "100", "--fs-critical", "100"])
            .args(extra)
            .output()
            .unwrap()
    };
    let out = status(&["--format", "json"]);
    // Nobody streams: WARNING.
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let st: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let row = source
        .query_one(
            "SELECT restart_lsn::text, confirmed_flush_lsn::text, wal_status FROM pg_replication_slots WHERE slot_name = 'pgincr'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(st["restart_lsn"], row.get::<_, String>(0));
    assert_eq!(st["confirmed_flush_lsn"], row.get::<_, String>(1));
    assert_eq!(st["wal_status"], row.get::<_, String>(2));
    assert_eq!(st["slot_active"], false);
    assert!(st["restart_lag_bytes"].as_i64().unwrap() > 0);

    // Thresholds: a tiny critical lag makes it CRITICAL; Prometheus output carries it.
    let out = status(&[
        "--warn-lag",
        "1",
        "--critical-lag",
        "2",
        "--format",
        "prometheus",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("pgincr_status{slot=\"pgincr\"} 2"), "{text}");

    // A missing slot is CRITICAL, and stream refuses to start.
    source
        .execute("SELECT pg_drop_replication_slot('pgincr')", &[])
        .await
        .unwrap();
    let out = status(&[]);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("slot pgincr does not exist"));
    let (_, err) = run_err(
        &cluster,
        &[
            "stream",
            "-d",
            "dbname=postgres",
            "-r",
            repo_s,
            "--catch-up",
        ],
    );
    assert!(
        err.contains("replication slot pgincr does not exist"),
        "{err}"
    );
}
