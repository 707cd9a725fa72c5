//! The stream never loses a change: an open segment or a segment file that does not continue
//! the chain is refused, stray files in `segments/` are neither adopted nor deleted, base
//! backups taken at the same time do not share files, an interrupted or failed `init` cleans
//! up after itself, the advice for a missing manifest cannot destroy backups, and a clean stop
//! records the sequences' values.

mod common;

use common::*;
use e2e::TestCluster;
use serde_json::Value;
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};
use tokio_postgres::Client;

fn write_manifest(repo: &Path, m: &Value) {
    std::fs::write(
        repo.join("manifest.json"),
        serde_json::to_string_pretty(m).unwrap(),
    )
    .unwrap();
}

fn segment_count(repo: &Path) -> usize {
    manifest(repo)["segments"].as_array().unwrap().len()
}

/// Waits until `cond` holds, at most 60 s.
async fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Copies a directory tree (files and directories only).
fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap().flatten() {
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            // A file may vanish while the live stream rotates: a copy misses it.
            let _ = std::fs::copy(entry.path(), &target);
        }
    }
}

async fn insert_rows(source: &Client, from: i32, to: i32) {
    source
        .batch_execute(&format!(
            "INSERT INTO t SELECT g, repeat('v', 200) FROM generate_series({from}, {to}) g"
        ))
        .await
        .unwrap();
}

const TABLE: &str = "CREATE TABLE t (id int PRIMARY KEY, v text);";

/// A repository copied file by file while `stream` runs holds a manifest of one moment and
/// an open segment of a later one: the transactions of the segments closed in between are
/// in neither. verify names it instead of passing.
#[tokio::test]
async fn an_open_segment_from_a_later_moment_is_refused() {
    let (cluster, source, repo) = initialised(TABLE).await;
    let stream = start_stream(&cluster, &repo);
    insert_rows(&source, 1, 40).await;
    wait_for("a closed segment", || segment_count(&repo) >= 1).await;
    // The copy's manifest and segments: this moment.
    let copy = cluster.scratch_dir("copy").join("r");
    let at_copy = segment_count(&repo);
    copy_tree(&repo, &copy);
    // The live repository goes on: two more segments close, and the open one gets a change.
    for round in 0..10 {
        insert_rows(&source, 100 + round * 40, 139 + round * 40).await;
        if segment_count(&repo) >= at_copy + 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    wait_for("two more segments", || segment_count(&repo) >= at_copy + 2).await;
    source
        .batch_execute("INSERT INTO t VALUES (100000, 'in the open segment')")
        .await
        .unwrap();
    let open = repo.join("segments/open.sql");
    wait_for("the change in the open segment", || {
        std::fs::read_to_string(&open).is_ok_and(|s| s.contains("in the open segment"))
    })
    .await;
    // ... and the copy takes its open segment from now.
    std::fs::copy(&open, copy.join("segments/open.sql")).unwrap();
    stop_stream_when_caught_up(&source, stream).await;

    let (_, out) = run_err(&cluster, &["verify", "-r", copy.to_str().unwrap()]);
    assert!(
        out.contains("FAIL open segment") && out.contains("does not continue the chain"),
        "{out}"
    );
    // Restore refuses it too, before creating anything, and says how to go on.
    let copy_s = copy.to_str().unwrap();
    let (_, out) = run_err(
        &cluster,
        &[
            "restore",
            "-r",
            copy_s,
            "-t",
            "dbname=from_copy",
            "--create",
        ],
    );
    assert!(
        out.contains("does not continue the chain") && out.contains("move segments/open.sql"),
        "{out}"
    );
    assert!(cluster.connect_checked("from_copy").await.is_err());
    std::fs::rename(
        copy.join("segments/open.sql"),
        cluster.scratch_dir("aside").join("open.sql"),
    )
    .unwrap();
    restore_into(&cluster, copy_s, "dbname=from_copy", &[]);
    // The live repository itself is whole.
    let repo_s = repo.to_str().unwrap();
    run_ok(&cluster, &["verify", "-r", repo_s]);
    restore_into(&cluster, repo_s, "dbname=restored", &[]);
    assert_same_database(&cluster, &source, "restored").await;
}

/// A segment missing from a manifest that was made to look whole again (seq and start LSN
/// renumbered) is found by what the segment files hold.
#[tokio::test]
async fn verify_checks_what_segment_files_hold_against_their_neighbours() {
    let (cluster, source, repo) = initialised(TABLE).await;
    let repo_s = repo.to_str().unwrap().to_owned();
    for round in 0..3 {
        insert_rows(&source, round * 10 + 1, round * 10 + 10).await;
        catch_up(&cluster, &repo_s);
    }
    assert_eq!(segment_count(&repo), 3);
    run_ok(&cluster, &["verify", "-r", &repo_s]);

    let mut m = manifest(&repo);
    let segments = m["segments"].as_array_mut().unwrap();
    let removed = segments.remove(1);
    segments[1]["seq"] = Value::from(2);
    segments[1]["start_lsn"] = removed["start_lsn"].clone();
    write_manifest(&repo, &m);
    let (_, out) = run_err(&cluster, &["verify", "-r", &repo_s]);
    assert!(
        out.contains("FAIL segment 2") && out.contains("is segment 3 following segment 2"),
        "{out}"
    );
}

/// Files in `segments/` that are not the chain's next segment are left where they are (and
/// reported), not adopted into the chain nor deleted.
#[tokio::test]
async fn stray_files_in_segments_are_left_alone() {
    let (cluster, source, repo) = initialised(TABLE).await;
    let repo_s = repo.to_str().unwrap().to_owned();
    insert_rows(&source, 1, 10).await;
    catch_up(&cluster, &repo_s);
    let segments = repo.join("segments");
    let first = manifest(&repo)["segments"][0]["file"]["path"]
        .as_str()
        .unwrap()
        .to_owned();
    // A copy of a segment under a name of another position, an old compressed file, a note.
    let strays = [
        ("00000007_0000000000000100.sql", "BEGIN; -- xid=1 commit_lsn=0/1 end_lsn=FF/0 commit_time=2026-01-01T00:00:00.000000Z\nCOMMIT; -- xid=1 end_lsn=FF/0\n".to_owned()),
        ("notes.txt", "kept by hand\n".to_owned()),
    ];
    for (name, text) in &strays {
        std::fs::write(segments.join(name), text).unwrap();
    }
    std::fs::copy(repo.join(&first), segments.join("old-copy.sql.zst")).unwrap();
    insert_rows(&source, 11, 20).await;
    let log = catch_up_log(&cluster, &repo_s);
    for (name, text) in &strays {
        assert_eq!(
            std::fs::read_to_string(segments.join(name)).unwrap(),
            *text,
            "{name} changed or went away"
        );
        assert!(log.contains(name), "{name} not reported:\n{log}");
    }
    assert!(segments.join("old-copy.sql.zst").exists());
    let m = manifest(&repo);
    let registered: Vec<&str> = m["segments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["file"]["path"].as_str().unwrap())
        .collect();
    assert_eq!(registered.len(), 2, "{registered:?}");
    assert!(
        registered.iter().all(|p| !p.contains("00000007")),
        "{registered:?}"
    );
    run_ok(&cluster, &["verify", "-r", &repo_s]);
    restore_into(&cluster, &repo_s, "dbname=restored", &[]);
    assert_same_database(&cluster, &source, "restored").await;
}

fn start_base(cluster: &TestCluster, repo: &str) -> Child {
    pgincr(cluster)
        .args(["base", "-d", "dbname=postgres", "-r", repo])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Base backups started at the same moment never write into one directory: each either
/// completes or is refused with a clear message, and the newest restores correctly.
#[tokio::test]
async fn concurrent_bases_do_not_share_files() {
    let (cluster, source, repo) = initialised(TABLE).await;
    let repo_s = repo.to_str().unwrap().to_owned();
    source
        .batch_execute("INSERT INTO t SELECT g, repeat('b', 500) FROM generate_series(1, 3000) g")
        .await
        .unwrap();
    let bases: Vec<Child> = (0..3).map(|_| start_base(&cluster, &repo_s)).collect();
    let mut succeeded = 0;
    for base in bases {
        let out = base.wait_with_output().unwrap();
        if out.status.success() {
            succeeded += 1;
        } else {
            let text = describe(&out);
            assert!(
                text.contains("another base backup"),
                "a base failed without saying why: {text}"
            );
        }
    }
    assert!(succeeded >= 1);
    assert_eq!(
        manifest(&repo)["bases"].as_array().unwrap().len(),
        1 + succeeded
    );
    let leftovers: Vec<_> = std::fs::read_dir(repo.join("bases"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".partial"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    run_ok(&cluster, &["verify", "-r", &repo_s]);
    source
        .batch_execute("UPDATE t SET v = 'after' WHERE id % 7 = 0")
        .await
        .unwrap();
    catch_up(&cluster, &repo_s);
    restore_into(&cluster, &repo_s, "dbname=restored", &[]);
    assert_same_database(&cluster, &source, "restored").await;
}

async fn slot_names(source: &Client) -> Vec<String> {
    source
        .query(
            "SELECT slot_name::text FROM pg_replication_slots ORDER BY 1",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// kill -9 of `init` after it created its permanent slot: the next `init` recognises the
/// remains, drops that slot (it would pin WAL forever) and the partial files, and succeeds
/// without --force.
#[tokio::test]
async fn an_interrupted_init_is_cleaned_up_by_the_next() {
    let cluster = TestCluster::start();
    let source = cluster.connect("postgres").await;
    source
        .batch_execute(&format!("{TABLE} INSERT INTO t VALUES (1, 'one');"))
        .await
        .unwrap();
    let repo = repo_dir(&cluster);
    let repo_s = repo.to_str().unwrap().to_owned();
    // A pg_dump that never finishes catches init between its slot and its manifest.
    let bindir = cluster.scratch_dir("stalling-bin");
    for entry in std::fs::read_dir(cluster.bindir()).unwrap().flatten() {
        if entry.file_name() != "pg_dump" {
            std::os::unix::fs::symlink(entry.path(), bindir.join(entry.file_name())).unwrap();
        }
    }
    let started = bindir.join("pg_dump.started");
    std::fs::write(
        bindir.join("pg_dump"),
        format!("#!/bin/sh\ntouch '{}'\nexec sleep 600\n", started.display()),
    )
    .unwrap();
    std::fs::set_permissions(
        bindir.join("pg_dump"),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let mut init = pgincr(&cluster)
        .args(["init", "-d", "dbname=postgres", "-r", &repo_s])
        .env("PGINCR_PG_BINDIR", &bindir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !started.exists() {
        assert!(Instant::now() < deadline, "init's pg_dump did not start");
        assert!(init.try_wait().unwrap().is_none(), "init ended early");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(slot_names(&source).await.contains(&"pgincr".to_owned()));
    init.kill().unwrap();
    init.wait().unwrap();
    assert!(!repo.join("manifest.json").exists());

    let out = run_ok(&cluster, &["init", "-d", "dbname=postgres", "-r", &repo_s]);
    assert!(
        out.contains("did not finish") && out.contains("dropped the slot pgincr"),
        "{out}"
    );
    assert_eq!(slot_names(&source).await, ["pgincr"]);
    source
        .batch_execute("INSERT INTO t VALUES (2, 'two')")
        .await
        .unwrap();
    catch_up(&cluster, &repo_s);
    restore_into(&cluster, &repo_s, "dbname=restored", &[]);
    assert_same_database(&cluster, &source, "restored").await;
}

/// An init that fails (no free replication slot) leaves neither a slot nor files behind:
/// once a slot is free, `init` succeeds without --force.
#[tokio::test]
async fn a_failed_init_leaves_nothing_behind() {
    let cluster = TestCluster::start();
    let source = cluster.connect("postgres").await;
    source.batch_execute(TABLE).await.unwrap();
    let max: i32 = source
        .query_one("SELECT current_setting('max_replication_slots')::int", &[])
        .await
        .unwrap()
        .get(0);
    for i in 0..max {
        source
            .execute(
                "SELECT pg_create_logical_replication_slot($1, 'decoder_sql')",
                &[&format!("filler_{i}")],
            )
            .await
            .unwrap();
    }
    let repo = repo_dir(&cluster);
    let repo_s = repo.to_str().unwrap().to_owned();
    run_err(&cluster, &["init", "-d", "dbname=postgres", "-r", &repo_s]);
    assert!(
        !repo.exists() || std::fs::read_dir(&repo).unwrap().next().is_none(),
        "a failed init left files: {:?}",
        std::fs::read_dir(&repo).map(|d| d.flatten().map(|e| e.path()).collect::<Vec<_>>())
    );
    assert!(!slot_names(&source).await.contains(&"pgincr".to_owned()));
    source
        .batch_execute("SELECT pg_drop_replication_slot('filler_0')")
        .await
        .unwrap();
    run_ok(&cluster, &["init", "-d", "dbname=postgres", "-r", &repo_s]);
    source
        .batch_execute("INSERT INTO t VALUES (1, 'one')")
        .await
        .unwrap();
    catch_up(&cluster, &repo_s);
    restore_into(&cluster, &repo_s, "dbname=restored", &[]);
    assert_same_database(&cluster, &source, "restored").await;
}

/// A repository whose manifest is missing gets advice that cannot destroy its backups, from
/// every command, and init will not initialise over it.
#[tokio::test]
async fn the_advice_for_a_missing_manifest_cannot_destroy_backups() {
    let (cluster, _source, repo) = initialised(TABLE).await;
    let repo_s = repo.to_str().unwrap().to_owned();
    catch_up(&cluster, &repo_s);
    let saved = std::fs::read(repo.join("manifest.json")).unwrap();
    std::fs::remove_file(repo.join("manifest.json")).unwrap();
    for args in [
        vec!["verify", "-r", &repo_s],
        vec![
            "stream",
            "-d",
            "dbname=postgres",
            "-r",
            &repo_s,
            "--catch-up",
        ],
        vec!["init", "-d", "dbname=postgres", "-r", &repo_s],
    ] {
        let (_, err) = run_err(&cluster, &args);
        assert!(err.contains("Put manifest.json back"), "{args:?}: {err}");
        assert!(
            !err.contains("--force") && !err.contains("create one with"),
            "{args:?}: {err}"
        );
    }
    let (_, err) = run_err(&cluster, &["init", "-d", "dbname=postgres", "-r", &repo_s]);
    assert!(!err.contains("--force"), "{err}");
    assert!(
        std::fs::read_dir(repo.join("bases"))
            .unwrap()
            .next()
            .is_some()
    );
    std::fs::write(repo.join("manifest.json"), saved).unwrap();
    run_ok(&cluster, &["verify", "-r", &repo_s]);
}

/// `pgincr stream` with sequence snapshots only at its start (interval 1h), stopped with
/// SIGTERM: the values at the stop reach the repository, so a standalone sequence and a
/// serial restore at their stopped values.
#[tokio::test]
async fn a_clean_stop_records_the_sequences_values() {
    let (cluster, source, repo) = initialised(
        "CREATE EXTENSION IF NOT EXISTS decoder_sql;
         CREATE SEQUENCE counter;
         CREATE TABLE items (id serial PRIMARY KEY, v text);",
    )
    .await;
    let repo_s = repo.to_str().unwrap().to_owned();
    let stream = pgincr(&cluster)
        .args(["stream", "-d", "dbname=postgres", "-r", &repo_s])
        .args(["--fsync-interval", "1s", "--status-interval", "1s"])
        .args(["--sequence-interval", "1h"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    source
        .batch_execute(
            "SELECT nextval('counter') FROM generate_series(1, 17);
             INSERT INTO items (v) SELECT 'x' FROM generate_series(1, 5);
             DELETE FROM items WHERE id > 3;
             SELECT nextval('items_id_seq') FROM generate_series(1, 4);",
        )
        .await
        .unwrap();
    stop_stream_when_caught_up(&source, stream).await;
    restore_into(&cluster, &repo_s, "dbname=restored", &[]);
    assert_same_database(&cluster, &source, "restored").await;
    let values = "SELECT (SELECT last_value FROM counter)::text || ' ' || (SELECT last_value FROM items_id_seq)::text";
    let restored = cluster.connect("restored").await;
    assert_eq!(
        query_text(&restored, values).await,
        query_text(&source, values).await
    );
    assert_eq!(query_text(&source, values).await, "17 9");
}
