//! Several databases of one cluster from one configuration file: `init --all-databases`
//! enrols them, `supervise` streams them all at once under load and takes one's scheduled
//! bases and prunes, a database broken mid-run (its slot dropped) does not stop the others,
//! and `status --all` reports each.

mod common;

use common::*;
use e2e::TestCluster;
use e2e::decode::{database_contents, line_diff, schema_dump};
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

const SETUP: &str = "
    CREATE TABLE items (id bigserial PRIMARY KEY, db text NOT NULL, n int NOT NULL);
    CREATE TABLE tally (k text PRIMARY KEY, v int NOT NULL);
    INSERT INTO tally VALUES ('a', 0), ('b', 0);";

const APPS: [&str; 3] = ["app1", "app2", "app3"];

async fn load(cluster: &TestCluster, round: i32) {
    for db in APPS {
        let client = cluster.connect(db).await;
        client
            .batch_execute(&format!(
                "INSERT INTO items (db, n) SELECT current_database(), g FROM generate_series(1, 20) g;
                 UPDATE tally SET v = v + {round} WHERE k = 'a';
                 DELETE FROM items WHERE id % 13 = {round} % 13;"
            ))
            .await
            .unwrap();
    }
}

fn pgincr_with(cluster: &TestCluster, config: &Path, args: &[&str]) -> std::process::Output {
    pgincr(cluster)
        .args(args)
        .env("PGINCR_CONFIG", config)
        .output()
        .unwrap()
}

/// `pgincr supervise`, stopped (SIGTERM: its streams stop too) if the test fails first.
struct Supervisor(std::process::Child);

impl Drop for Supervisor {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(self.0.id() as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
            let _ = self.0.wait();
        }
    }
}

async fn assert_restores_equal(cluster: &TestCluster, repo: &Path, db: &str) {
    let target = format!("{db}_restored");
    restore_into(
        cluster,
        repo.to_str().unwrap(),
        &format!("dbname={target}"),
        &[],
    );
    let (a, b) = (
        database_contents(&cluster.connect(db).await).await,
        database_contents(&cluster.connect(&target).await).await,
    );
    assert_eq!(a, b, "{db}: contents differ:\n{}", line_diff(&a, &b));
    let (a, b) = (schema_dump(cluster, db), schema_dump(cluster, &target));
    assert_eq!(a, b, "{db}: schemas differ:\n{}", line_diff(&a, &b));
}

#[tokio::test]
async fn supervise_streams_every_database_and_one_broken_does_not_stop_the_others() {
    let cluster = TestCluster::start();
    let admin = cluster.connect("postgres").await;
    for db in APPS {
        admin
            .batch_execute(&format!("CREATE DATABASE {db}"))
            .await
            .unwrap();
        cluster
            .connect(db)
            .await
            .batch_execute(SETUP)
            .await
            .unwrap();
    }
    let repos = cluster.scratch_dir("repos");
    let out = run_ok(
        &cluster,
        &[
            "init",
            "-d",
            "dbname=postgres",
            "-r",
            repos.to_str().unwrap(),
            "--all-databases",
        ],
    );
    for db in APPS.iter().chain(&["postgres"]) {
        assert!(out.contains(&format!("[database.\"{db}\"]")), "{out}");
        assert!(
            repos.join(db).join("manifest.json").exists(),
            "{db} not enrolled"
        );
    }
    // The printed sections are the configuration; app3 also gets a base schedule.
    let sections = out
        .split_once("(pgincr supervise, status --all):")
        .unwrap()
        .1
        .replace(
            "[database.\"app3\"]\n",
            "[database.\"app3\"]\nbase_every = \"2s\"\nkeep_bases = 2\n",
        );
    let config = cluster.scratch_dir("etc").join("pgincr.toml");
    std::fs::write(
        &config,
        format!(
            "[defaults]\nfs_warn = 100\nfs_critical = 100\nglobals_interval = \"1s\"\n{sections}"
        ),
    )
    .unwrap();
    let checked = pgincr_with(&cluster, &config, &["config", "check"]);
    assert!(checked.status.success(), "{}", describe(&checked));

    let log_path = cluster.scratch_dir("log").join("supervise.log");
    let mut supervisor = Supervisor(
        pgincr(&cluster)
            .args(["supervise", "--restart-delay", "1s"])
            .env("PGINCR_CONFIG", &config)
            .stderr(std::fs::File::create(&log_path).unwrap())
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );

    for round in 1..=4 {
        load(&cluster, round).await;
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    // A new role: the supervisor dumps the cluster's globals once, for every repository.
    admin
        .batch_execute("CREATE ROLE shared_role")
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let dbs = ["app1", "app2", "app3", "postgres"];
    // (Earlier snapshots come from the inits' own ALTER DATABASE ... SET.)
    let texts = loop {
        let texts: Vec<String> = dbs
            .iter()
            .filter_map(|db| {
                // The newest globals: the last snapshot, or a base taken since (app3's).
                let repo = repos.join(db);
                let m = manifest(&repo);
                let snapshot = m["globals"]
                    .as_array()
                    .and_then(|g| g.last())
                    .map(|g| &g["file"]);
                let base = m["bases"]
                    .as_array()
                    .and_then(|b| b.last())
                    .map(|b| &b["globals"]);
                [snapshot, base]
                    .into_iter()
                    .flatten()
                    .filter_map(|f| std::fs::read_to_string(repo.join(f["path"].as_str()?)).ok())
                    .find(|text| text.contains("shared_role"))
            })
            .filter(|text| text.contains("shared_role"))
            .collect();
        if texts.len() == dbs.len() {
            break texts;
        }
        assert!(
            Instant::now() < deadline,
            "globals not saved everywhere:\n{}",
            std::fs::read_to_string(&log_path).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    assert!(texts[0].contains("CREATE ROLE shared_role"), "{}", texts[0]);
    // (Newer pg_dumpall versions write a random \restrict key into every dump.)
    let without_keys = |t: &String| -> Vec<String> {
        t.lines()
            .filter(|l| !l.starts_with("\\restrict") && !l.starts_with("\\unrestrict"))
            .map(str::to_owned)
            .collect()
    };
    assert!(
        texts
            .iter()
            .all(|t| without_keys(t) == without_keys(&texts[0])),
        "the globals differ between repositories"
    );

    // Break app2: its slot goes (the stream holding it is stopped first, and may come back).
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let dropped = admin
            .batch_execute(
                "SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots
                  WHERE slot_name = 'pgincr_app2' AND active_pid IS NOT NULL;
                 SELECT pg_sleep(0.05);
                 SELECT pg_drop_replication_slot('pgincr_app2');",
            )
            .await;
        if dropped.is_ok() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "could not drop app2's slot: {dropped:?}"
        );
    }
    for round in 5..=8 {
        load(&cluster, round).await;
        tokio::time::sleep(Duration::from_millis(400)).await;
    }

    // app3's scheduled bases, each followed by a prune that keeps two.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let m = manifest(&repos.join("app3"));
        let pruned = m["prune_history"].as_array().is_some_and(|h| {
            h.iter()
                .any(|run| run["bases"].as_array().is_some_and(|b| !b.is_empty()))
        });
        if pruned && m["bases"].as_array().unwrap().len() == 2 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no scheduled base and prune in app3: {m}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(manifest(&repos.join("app1"))["prune_history"].is_null());

    // status --all: app2 is CRITICAL, the others OK; the worst is the exit code.
    let status = pgincr_with(&cluster, &config, &["status", "--all"]);
    let text = String::from_utf8_lossy(&status.stdout).into_owned();
    assert_eq!(status.status.code(), Some(2), "{}", describe(&status));
    assert!(text.contains("== database app2 (CRITICAL)"), "{text}");
    for db in ["app1", "app3", "postgres"] {
        assert!(text.contains(&format!("== database {db} (OK)")), "{text}");
    }
    let prometheus = pgincr_with(
        &cluster,
        &config,
        &["status", "--all", "--format", "prometheus"],
    );
    let metrics = String::from_utf8_lossy(&prometheus.stdout).into_owned();
    assert!(
        metrics.contains("pgincr_status{database=\"app2\",slot=\"pgincr_app2\"} 2")
            && metrics.contains("pgincr_status{database=\"app1\",slot=\"pgincr_app1\"} 0")
            && metrics.matches("# TYPE pgincr_status gauge").count() == 1,
        "{metrics}"
    );

    // A clean stop; then every stream once more to the end: app2's fails and is named.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(supervisor.0.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let stopped = supervisor.0.wait().unwrap();
    let log = std::fs::read_to_string(&log_path).unwrap();
    assert!(stopped.success(), "supervise: {stopped}\n{log}");
    assert!(
        log.contains("[app2]") && log.contains("restarting it in"),
        "app2's failure is not in the log:\n{log}"
    );
    assert!(log.contains("[app3] scheduled prune done"), "{log}");
    // One pg_dumpall served several repositories (all four, or three when app3's scheduled
    // base had already recorded the new role).
    assert!(
        log.contains("globals changed: one pg_dumpall for 4 repositories")
            || log.contains("globals changed: one pg_dumpall for 3 repositories"),
        "{log}"
    );
    let caught_up = pgincr_with(&cluster, &config, &["supervise", "--catch-up"]);
    assert!(!caught_up.status.success(), "{}", describe(&caught_up));
    assert!(
        describe(&caught_up).contains("the stream of app2 did not catch up"),
        "{}",
        describe(&caught_up)
    );

    for db in ["app1", "app3"] {
        assert_restores_equal(&cluster, &repos.join(db), db).await;
    }
}
