//! The stream never stalls silently: a failure that repeats (a decoding error, a server that
//! is down, a full disk) is recorded in `stream-state.json` and makes `pgincr status`
//! CRITICAL with the message and its duration, in every output format, until the stream
//! flows again. A full disk closes and compresses segments early, loses nothing, and the
//! stream recovers by itself once space is freed.

mod common;

use common::*;
use e2e::TestCluster;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tokio_postgres::Client;

/// `pgincr stream` in the background with quick restarts and confirmations, default segment
/// size.
fn stream(cluster: &TestCluster, repo: &Path) -> Child {
    pgincr(cluster)
        .args(["stream", "-d", "dbname=postgres", "-r"])
        .arg(repo)
        .args(["--fsync-interval", "1s", "--status-interval", "1s"])
        .args(["--max-backoff", "1s"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn stream_error(repo: &Path) -> Option<Value> {
    let text = std::fs::read_to_string(repo.join("stream-state.json")).ok()?;
    let state: Value = serde_json::from_str(text.trim_end()).ok()?;
    Some(state["error"].clone()).filter(|e| !e.is_null())
}

async fn wait_for(what: &str, seconds: u64, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `pgincr status` in the given format: exit code and stdout.
fn status(cluster: &TestCluster, repo: &Path, format: &str) -> (Option<i32>, String) {
    let out = pgincr(cluster)
        .args(["status", "-d", "dbname=postgres", "-r"])
        .arg(repo)
        .args(["--format", format])
        // The machine's own disk does not count here.
        .args(["--fs-warn", "100", "--fs-critical", "100"])
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

fn stop(child: Child) -> String {
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let out = child.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The plugin refuses an UPDATE of a table without replica identity (the database opted out
/// of the automatic fix): every restart fails the same way. status is CRITICAL with the
/// server's message, since when and how often, in text, JSON and Prometheus output.
#[tokio::test]
async fn a_decoding_error_is_critical_in_status() {
    let (cluster, source, repo) = initialised(
        "CREATE EXTENSION IF NOT EXISTS decoder_sql;
         ALTER DATABASE postgres SET decoder_sql.missing_identity = 'error';",
    )
    .await;
    // A new session, with the database's setting: the table keeps no identity.
    let session = cluster.connect("postgres").await;
    session
        .batch_execute(
            "CREATE TABLE keyless (a int, b text);
             INSERT INTO keyless VALUES (1, 'one');
             UPDATE keyless SET b = 'uno';",
        )
        .await
        .unwrap();
    drop(source);
    let child = stream(&cluster, &repo);
    wait_for("the error recorded twice", 60, || {
        stream_error(&repo).is_some_and(|e| e["count"].as_u64() >= Some(2))
    })
    .await;
    let error = stream_error(&repo).unwrap();
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("no usable replica identity"),
        "{error}"
    );
    assert_eq!(error["kind"], "receiver");

    let (code, text) = status(&cluster, &repo, "text");
    assert_eq!(code, Some(2), "{text}");
    assert!(
        text.starts_with("PGINCR CRITICAL")
            && text.contains("pgincr stream has been failing for")
            && text.contains("no usable replica identity"),
        "{text}"
    );
    let (code, json) = status(&cluster, &repo, "json");
    assert_eq!(code, Some(2), "{json}");
    let json: Value = serde_json::from_str(&json).unwrap();
    assert_eq!(json["state"], "CRITICAL");
    assert!(
        json["stream_error"]["message"]
            .as_str()
            .unwrap()
            .contains("no usable replica identity"),
        "{json}"
    );
    assert!(json["stream_error_seconds"].as_u64().is_some(), "{json}");
    let (code, prom) = status(&cluster, &repo, "prometheus");
    assert_eq!(code, Some(2), "{prom}");
    assert!(
        prom.contains("pgincr_status{slot=\"pgincr\"} 2")
            && prom.contains("pgincr_stream_error{slot=\"pgincr\"} 1")
            && prom.contains("pgincr_stream_error_info{")
            && prom.contains("no usable replica identity"),
        "{prom}"
    );
    stop(child);
}

/// A server that is down makes every restart fail: recorded; once the server is back and
/// the stream has flowed for a few seconds the record is cleared and status is OK again.
#[tokio::test]
async fn a_recorded_failure_is_cleared_when_the_stream_flows_again() {
    let (mut cluster, source, repo) =
        initialised("CREATE TABLE t (id int PRIMARY KEY, v text);").await;
    source
        .batch_execute("INSERT INTO t VALUES (1, 'before')")
        .await
        .unwrap();
    drop(source);
    let child = stream(&cluster, &repo);
    tokio::time::sleep(Duration::from_secs(2)).await;
    cluster.stop("fast");
    wait_for("the failure recorded", 60, || {
        stream_error(&repo).is_some_and(|e| e["count"].as_u64() >= Some(2))
    })
    .await;
    cluster.restart();
    wait_for("the failure cleared", 60, || {
        std::fs::read_to_string(repo.join("stream-state.json")).is_ok()
            && stream_error(&repo).is_none()
    })
    .await;
    let (code, text) = status(&cluster, &repo, "text");
    assert_eq!(code, Some(0), "{text}");
    let source = cluster.connect("postgres").await;
    source
        .batch_execute("INSERT INTO t VALUES (2, 'after')")
        .await
        .unwrap();
    stop_stream_when_caught_up(&source, child).await;
    let repo_s = repo.to_str().unwrap();
    restore_into(&cluster, repo_s, "dbname=restored", &[]);
    assert_same_database(&cluster, &source, "restored").await;
}

/// A tmpfs mounted for the test and unmounted when it ends.
struct Tmpfs {
    dir: PathBuf,
}

impl Tmpfs {
    fn mount(dir: PathBuf, size: &str) -> Option<Tmpfs> {
        std::fs::create_dir_all(&dir).unwrap();
        let out = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0755"),
                "tmpfs",
            ])
            .arg(&dir)
            .output()
            .ok()?;
        out.status.success().then_some(Tmpfs { dir })
    }

    fn free(&self) -> u64 {
        let st = nix::sys::statvfs::statvfs(&self.dir).unwrap();
        st.blocks_available() as u64 * st.fragment_size() as u64
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
    }
}

/// Fills the file system of `path` (creating it) until `leave` bytes remain free.
fn fill(path: &Path, disk: &Tmpfs, leave: u64) {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    let chunk = vec![0x5au8; 64 << 10];
    while disk.free() > leave {
        let n = (disk.free() - leave).min(chunk.len() as u64) as usize;
        if f.write_all(&chunk[..n]).is_err() {
            break;
        }
    }
    let _ = f.sync_all();
}

async fn caught_up(client: &Client, seconds: u64) -> bool {
    let lsn: String = client
        .query_one("SELECT pg_current_wal_lsn()::text", &[])
        .await
        .unwrap()
        .get(0);
    let deadline = Instant::now() + Duration::from_secs(seconds);
    while Instant::now() < deadline {
        let done: bool = client
            .query_one(
                "SELECT confirmed_flush_lsn >= $1::text::pg_lsn FROM pg_replication_slots WHERE slot_name = 'pgincr'",
                &[&lsn],
            )
            .await
            .unwrap()
            .get(0);
        if done {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    false
}

/// A repository on a small disk, with the default 64 MB segment size: segments close early
/// as the disk fills, so more changes than the free space fit; a disk that is full makes
/// status CRITICAL (and the newest change's age grows); freeing space lets the stream go on
/// by itself, and the restore is complete.
#[tokio::test]
async fn a_full_disk_is_reported_and_survived() {
    let cluster = TestCluster::start();
    let Some(disk) = Tmpfs::mount(cluster.scratch_dir("disk").join("mnt"), "16m") else {
        eprintln!("skipped: cannot mount a tmpfs here");
        return;
    };
    let source = cluster.connect("postgres").await;
    source
        .batch_execute("CREATE TABLE t (id int PRIMARY KEY, v text);")
        .await
        .unwrap();
    let repo = disk.dir.join("r");
    let repo_s = repo.to_str().unwrap().to_owned();
    run_ok(&cluster, &["init", "-d", "dbname=postgres", "-r", &repo_s]);
    let child = stream(&cluster, &repo);
    let filler = disk.dir.join("filler");
    fill(&filler, &disk, 3 << 20);

    // About 6 MB of changes into 3 MB of free space.
    for round in 0..60 {
        source
            .batch_execute(&format!(
                "INSERT INTO t SELECT g, repeat('change ' || g, 20) FROM generate_series({}, {}) g",
                round * 1000 + 1,
                round * 1000 + 300
            ))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        caught_up(&source, 60).await,
        "the stream did not get everything onto the small disk"
    );

    // Now the disk is full: a change that does not fit.
    fill(&filler, &disk, 0);
    source
        .batch_execute(
            "INSERT INTO t SELECT g, repeat('late ' || g, 40) FROM generate_series(100001, 102000) g",
        )
        .await
        .unwrap();
    wait_for("the full disk recorded", 60, || {
        stream_error(&repo).is_some_and(|e| e["kind"] == "disk full")
    })
    .await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    let (code, json) = status(&cluster, &repo, "json");
    assert_eq!(code, Some(2), "{json}");
    let json: Value = serde_json::from_str(&json).unwrap();
    assert!(
        json["stream_error"]["message"]
            .as_str()
            .unwrap()
            .contains("No space left on device"),
        "{json}"
    );
    assert!(
        json["newest_change_age_seconds"].as_u64() >= Some(4),
        "a stuck stream looks fresh: {json}"
    );

    std::fs::remove_file(&filler).unwrap();
    assert!(
        caught_up(&source, 60).await,
        "the stream did not recover after space was freed"
    );
    wait_for("the failure cleared", 30, || stream_error(&repo).is_none()).await;
    stop(child);
    run_ok(&cluster, &["verify", "-r", &repo_s]);
    restore_into(&cluster, &repo_s, "dbname=restored", &[]);
    assert_same_database(&cluster, &source, "restored").await;
}
