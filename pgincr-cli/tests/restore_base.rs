//! The base phase of a restore is all or nothing and belongs to one restore at a time:
//! pgincr killed while psql loads the dump leaves an empty target that the same command
//! then restores, and a second restore into a target being restored is refused by name.

mod common;

use common::*;
use e2e::TestCluster;
use std::process::{Child, Stdio};

const SETUP: &str = "
    CREATE TABLE big (id int PRIMARY KEY, payload text);
    INSERT INTO big SELECT g, md5(g::text) || repeat('x', 100) FROM generate_series(1, 400000) g;
    CREATE INDEX big_payload ON big (payload);";

fn start_restore(cluster: &TestCluster, repo: &str, db: &str) -> Child {
    pgincr_under_test(cluster)
        .args([
            "restore",
            "-r",
            repo,
            "-t",
            &format!("dbname={db}"),
            "--create",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// A process stopped with SIGSTOP until this is dropped (also when an assertion fails, so
/// that no stopped process outlives the test).
struct Stopped(nix::unistd::Pid);

impl Stopped {
    fn new(child: &Child) -> Self {
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGSTOP).unwrap();
        Stopped(pid)
    }
}

impl Drop for Stopped {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(self.0, nix::sys::signal::Signal::SIGCONT);
    }
}

#[tokio::test]
async fn a_restore_killed_in_the_base_leaves_nothing_behind_and_runs_again() {
    let (cluster, source, repo) = initialised(SETUP).await;
    let repo_s = repo.to_str().unwrap();
    let mut restore = start_restore(&cluster, repo_s, "killed");
    wait_for_copy(&cluster, "killed").await;
    restore.kill().unwrap(); // SIGKILL
    restore.wait().unwrap();
    wait_until_idle(&cluster, "killed").await;

    let target = cluster.connect("killed").await;
    let tables = query_text(
        &target,
        "SELECT count(*)::text FROM pg_class WHERE relnamespace = 'public'::regnamespace",
    )
    .await;
    assert_eq!(tables, "0", "a killed restore left part of its base behind");
    drop(target);
    let out = succeeds(
        &cluster,
        &["restore", "-r", repo_s, "-t", "dbname=killed", "--create"],
        &[],
    );
    assert!(out.contains("base backup"), "{out}");
    assert_same_database(&cluster, &source, "killed").await;
}

#[tokio::test]
async fn a_second_restore_into_the_same_target_is_refused_by_name() {
    let (cluster, source, repo) = initialised(SETUP).await;
    let repo_s = repo.to_str().unwrap();
    let first = start_restore(&cluster, repo_s, "twice");
    wait_for_copy(&cluster, "twice").await;
    // The first restore holds its claim from before the COPY. Stopped, it keeps holding it
    // however long the refused restores take to start (its psql may finish the load meanwhile).
    let stopped = Stopped::new(&first);
    for extra in [&["--create"][..], &[]] {
        let mut args = vec!["restore", "-r", repo_s, "-t", "dbname=twice"];
        args.extend_from_slice(extra);
        let err = fails(&cluster, &args, &[]);
        assert!(
            err.contains("another pgincr restore is running into database \"twice\"")
                && err.contains("backend PID"),
            "{err}"
        );
    }
    drop(stopped);
    let done = first.wait_with_output().unwrap();
    assert!(done.status.success(), "{}", describe(&done));
    assert_same_database(&cluster, &source, "twice").await;
}
