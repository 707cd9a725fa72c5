//! Helpers shared by the end-to-end tests of the `pgincr` binary.
#![allow(dead_code)]

use e2e::TestCluster;
use e2e::decode::{database_contents, line_diff, schema_dump};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};
use tokio_postgres::Client;

pub fn pgincr(cluster: &TestCluster) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_pgincr"));
    cmd.env("PGINCR_PG_BINDIR", cluster.bindir())
        .env("PGHOST", cluster.socket_dir())
        .env("PGPORT", cluster.port().to_string())
        .env("PGUSER", "postgres")
        .env_remove("PGINCR_DSN")
        .env_remove("PGINCR_REPO")
        .env_remove("PGDATABASE")
        // Not the machine's /etc/pgincr/pgincr.toml.
        .env("PGINCR_CONFIG", "/dev/null")
        .env_remove("PGINCR_DATABASE")
        .env_remove("PGINCR_ENCRYPT_TO")
        .env_remove("PGINCR_IDENTITY")
        .env_remove("PGINCR_SLOT")
        .env_remove("PGINCR_COMPRESSION_LEVEL")
        .env("RUST_BACKTRACE", "0")
        .stdin(Stdio::null());
    cmd
}

pub fn run_ok(cluster: &TestCluster, args: &[&str]) -> String {
    let out = pgincr(cluster).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "pgincr {args:?} failed: {}",
        describe(&out)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn run_err(cluster: &TestCluster, args: &[&str]) -> (Option<i32>, String) {
    let out = pgincr(cluster).args(args).output().unwrap();
    assert!(
        !out.status.success(),
        "pgincr {args:?} should fail: {}",
        describe(&out)
    );
    (out.status.code(), describe(&out))
}

pub fn describe(out: &Output) -> String {
    format!(
        "{}\n--- stdout\n{}--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

pub fn repo_dir(cluster: &TestCluster) -> PathBuf {
    cluster.scratch_dir("repo").join("r")
}

/// The cluster's pgbench, its progress output discarded.
pub fn pgbench(cluster: &TestCluster, args: &[&str]) -> Command {
    let mut cmd = cluster.client_command("pgbench");
    cmd.args(args).stdout(Stdio::null()).stderr(Stdio::piped());
    cmd
}

/// `pgbench -i -s <scale>` in database postgres.
pub fn pgbench_init(cluster: &TestCluster, scale: u32) {
    let out = pgbench(cluster, &["-q", "-i", "-s", &scale.to_string(), "postgres"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", describe(&out));
}

/// `pgincr stream` in the background with small segments and quick confirmations.
pub fn start_stream(cluster: &TestCluster, repo: &Path) -> Child {
    pgincr(cluster)
        .args(["stream", "-d", "dbname=postgres", "-r"])
        .arg(repo)
        .args([
            "--segment-size",
            "4kB",
            "--fsync-interval",
            "1s",
            "--status-interval",
            "1s",
        ])
        // Restarts after the crashes tests cause come within 2 s, not the default 60 s.
        .args(["--sequence-interval", "2s", "--max-backoff", "2s"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Waits until the slot has confirmed everything written so far, then stops the stream
/// with SIGTERM and returns its log.
pub async fn stop_stream_when_caught_up(client: &Client, child: Child) -> String {
    let lsn: String = client
        .query_one("SELECT pg_current_wal_lsn()::text", &[])
        .await
        .unwrap()
        .get(0);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        // No row while the stream makes the slot again (from its store slot, say).
        let done: bool = client
            .query_opt(
                "SELECT coalesce(confirmed_flush_lsn >= $1::text::pg_lsn, false) FROM pg_replication_slots WHERE slot_name = 'pgincr'",
                &[&lsn],
            )
            .await
            .unwrap()
            .is_some_and(|r| r.get(0));
        if done {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "stream did not catch up to {lsn}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let out = child.wait_with_output().unwrap();
    let log = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "stream failed:\n{log}");
    log
}

pub async fn assert_same_database(cluster: &TestCluster, source: &Client, restored: &str) {
    let target = cluster.connect(restored).await;
    let (a, b) = (
        database_contents(source).await,
        database_contents(&target).await,
    );
    assert_eq!(a, b, "contents differ:\n{}", line_diff(&a, &b));
    let (a, b) = (
        schema_dump(cluster, "postgres"),
        schema_dump(cluster, restored),
    );
    assert_eq!(a, b, "schemas differ:\n{}", line_diff(&a, &b));
}

/// `pgincr restore -r <repo> -t <target> --create <extra>`, which must succeed.
pub fn restore_into(cluster: &TestCluster, repo: &str, target: &str, extra: &[&str]) -> String {
    let mut args = vec!["restore", "-r", repo, "-t", target, "--create"];
    args.extend_from_slice(extra);
    run_ok(cluster, &args)
}

/// A cluster with `setup` run in database postgres and a repository initialised for it.
pub async fn initialised(setup: &str) -> (TestCluster, Client, PathBuf) {
    let cluster = TestCluster::start();
    let source = cluster.connect("postgres").await;
    source.batch_execute(setup).await.unwrap();
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

/// `pgincr stream --catch-up`: everything committed so far into the repository.
pub fn catch_up(cluster: &TestCluster, repo: &str) {
    catch_up_log(cluster, repo);
}

/// [`catch_up`], returning its log (stderr).
pub fn catch_up_log(cluster: &TestCluster, repo: &str) -> String {
    let out = pgincr(cluster)
        .args(["stream", "-d", "dbname=postgres", "-r", repo, "--catch-up"])
        .output()
        .unwrap();
    assert!(out.status.success(), "catch-up failed: {}", describe(&out));
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Runs a bash `script` in the repository directory with only PostgreSQL's client programs
/// (of the cluster's installation) and zstd: the manual restore procedure of
/// docs/repository.md.
pub fn run_by_hand(cluster: &TestCluster, repo: &Path, script: &str) -> Output {
    Command::new("bash")
        .args(["-c", script])
        .current_dir(repo)
        .env(
            "PATH",
            format!(
                "{}:{}",
                cluster.bindir().display(),
                std::env::var("PATH").unwrap()
            ),
        )
        .env("PGHOST", cluster.socket_dir())
        .env("PGPORT", cluster.port().to_string())
        .env("PGUSER", "postgres")
        .output()
        .unwrap()
}

/// `pgincr` as [`pgincr`] sets it up, but the binary named by `$PGINCR_TEST_BIN` when set
/// (another build, to see a test fail without the change it covers).
pub fn pgincr_under_test(cluster: &TestCluster) -> Command {
    let ours = pgincr(cluster);
    let Some(bin) = std::env::var_os("PGINCR_TEST_BIN") else {
        return ours;
    };
    let mut cmd = Command::new(bin);
    for (key, value) in ours.get_envs() {
        match value {
            Some(v) => cmd.env(key, v),
            None => cmd.env_remove(key),
        };
    }
    cmd.stdin(Stdio::null());
    cmd
}

/// `pgincr <args>` (see [`pgincr_under_test`]) with extra environment, whatever its exit status.
pub fn pgincr_output(cluster: &TestCluster, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = pgincr_under_test(cluster);
    cmd.args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

/// [`pgincr_output`] that must succeed; returns stdout.
pub fn succeeds(cluster: &TestCluster, args: &[&str], env: &[(&str, &str)]) -> String {
    let out = pgincr_output(cluster, args, env);
    assert!(
        out.status.success(),
        "pgincr {args:?} failed: {}",
        describe(&out)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// [`pgincr_output`] that must fail; returns stdout and stderr.
pub fn fails(cluster: &TestCluster, args: &[&str], env: &[(&str, &str)]) -> String {
    let out = pgincr_output(cluster, args, env);
    assert!(
        !out.status.success(),
        "pgincr {args:?} should fail: {}",
        describe(&out)
    );
    describe(&out)
}

/// The first value of a one-row query.
pub async fn query_text(client: &Client, sql: &str) -> String {
    client.query_one(sql, &[]).await.unwrap().get(0)
}

/// Waits until a restore is loading table data into `db` (a COPY running there).
pub async fn wait_for_copy(cluster: &TestCluster, db: &str) {
    let probe = cluster.connect("postgres").await;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let copying: i64 = probe
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND query LIKE 'COPY %'",
                &[&db],
            )
            .await
            .unwrap()
            .get(0);
        if copying > 0 {
            return;
        }
        assert!(Instant::now() < deadline, "the dump never started loading");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Waits until no session is connected to `db`.
pub async fn wait_until_idle(cluster: &TestCluster, db: &str) {
    let probe = cluster.connect("postgres").await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let sessions: i64 = probe
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = $1",
                &[&db],
            )
            .await
            .unwrap()
            .get(0);
        if sessions == 0 {
            return;
        }
        assert!(Instant::now() < deadline, "sessions stay connected to {db}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The segment and line of "restore stopped at segments/<file>:<line> (…".
pub fn reported_location(err: &str) -> (String, usize) {
    let rest = err
        .split("restore stopped at segments/")
        .nth(1)
        .unwrap_or_else(|| panic!("no location in {err}"));
    let (file, rest) = rest.split_once(':').unwrap();
    let line = rest.split(' ').next().unwrap().parse().unwrap();
    (file.to_owned(), line)
}

/// The repository's manifest.json.
pub fn manifest(repo: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(repo.join("manifest.json")).unwrap()).unwrap()
}

/// Whether `role` is a superuser (as the cluster of `client` sees it now).
pub async fn is_superuser(client: &Client, role: &str) -> bool {
    client
        .query_one("SELECT rolsuper FROM pg_roles WHERE rolname = $1", &[&role])
        .await
        .unwrap()
        .get(0)
}
