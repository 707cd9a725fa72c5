//! `pgincr prune`: the default grandfather-father-son policy when no option is given, the
//! reason for every base in `--dry-run`, segments kept for their age, and no deletion while a
//! restore reads the repository.

mod common;

use common::*;
use std::fs::File;

const SETUP: &str = "CREATE TABLE t (id int PRIMARY KEY, v text);
                     INSERT INTO t SELECT g, 'v' || g FROM generate_series(1, 100) g;";

#[tokio::test]
async fn prune_explains_itself_and_waits_for_restores() {
    let (cluster, source, repo) = initialised(SETUP).await;
    let repo_s = repo.to_str().unwrap();
    source
        .batch_execute("UPDATE t SET v = v || '!' WHERE id <= 10")
        .await
        .unwrap();
    catch_up(&cluster, repo_s);
    run_ok(&cluster, &["base", "-d", "dbname=postgres", "-r", repo_s]);
    source
        .batch_execute("DELETE FROM t WHERE id > 90")
        .await
        .unwrap();
    catch_up(&cluster, repo_s);
    let manifest = || -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(repo.join("manifest.json")).unwrap()).unwrap()
    };
    let before = manifest();
    let bases: Vec<String> = before["bases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(bases.len(), 2);
    let segments = before["segments"].as_array().unwrap().len();
    assert!(segments >= 2, "{before:#}");

    // The default policy keeps both (30 days), and says why.
    let out = run_ok(&cluster, &["prune", "-r", repo_s, "--dry-run"]);
    assert!(
        out.contains(&format!(
            "keep base backup {} (younger than 30days)",
            bases[0]
        )),
        "{out}"
    );
    assert!(
        out.contains(&format!("keep base backup {} (the newest base)", bases[1])),
        "{out}"
    );
    assert!(out.contains("0 base backup(s), 0 segment(s)"), "{out}");

    // An explicit policy: the first base goes; with --keep-segments-age its segments stay.
    let out = run_ok(
        &cluster,
        &[
            "prune",
            "-r",
            repo_s,
            "--keep-bases",
            "1",
            "--keep-segments-age",
            "1h",
            "--dry-run",
        ],
    );
    assert!(
        out.contains(&format!("would delete base backup {} (finished", bases[0])),
        "{out}"
    );
    assert!(out.contains("1 base backup(s), 0 segment(s)"), "{out}");

    // A restore holds the readers' lock: prune refuses and deletes nothing.
    let lock = File::options()
        .read(true)
        .write(true)
        .open(repo.join("readers.lock"))
        .expect("prune created the readers' lock file");
    lock.lock_shared().unwrap();
    let (_, err) = run_err(&cluster, &["prune", "-r", repo_s, "--keep-bases", "1"]);
    assert!(err.contains("a restore is reading"), "{err}");
    assert_eq!(manifest()["bases"].as_array().unwrap().len(), 2);
    drop(lock);

    // Before any prune ran: a repository "older" than the limit warns about it.
    // The machine's own disk does not count here unless a test asks (--fs-warn).
    let status = |extra: &[&str]| {
        let mut cmd = pgincr(&cluster);
        cmd.args(["status", "-d", "dbname=postgres", "-r", repo_s])
            .args(extra);
        if !extra.contains(&"--fs-warn") {
            cmd.args(["--fs-warn", "100", "--fs-critical", "100"]);
        }
        cmd.output().unwrap()
    };
    // (No stream runs here: status always warns that the slot is inactive.)
    let out = status(&["--prune-max-age", "0s"]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("pgincr prune has never run"),
        "{}",
        describe(&out)
    );
    let out = status(&[]);
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("prune has never run"),
        "{}",
        describe(&out)
    );

    let out = run_ok(&cluster, &["prune", "-r", repo_s, "--keep-bases", "1"]);
    assert!(out.contains("deleted 1 base backup(s)"), "{out}");
    assert!(!repo.join("bases").join(&bases[0]).exists());
    // The manifest remembers what prune removed; status sees when it ran.
    let history = manifest()["prune_history"].clone();
    assert_eq!(history.as_array().map_or(0, Vec::len), 1, "{history:#}");
    assert_eq!(
        history[0]["bases"],
        serde_json::json!([bases[0]]),
        "{history:#}"
    );
    let out = status(&["--format", "json"]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        json["problems"],
        serde_json::json!(["slot is not active: is `pgincr stream` running?"]),
        "{json:#}"
    );
    assert!(
        json["last_prune_age_seconds"]
            .as_u64()
            .is_some_and(|s| s < 600),
        "{json:#}"
    );
    assert!(
        json["newest_base_age_seconds"].as_u64().is_some(),
        "{json:#}"
    );
    let used = json["filesystem_used_percent"]
        .as_f64()
        .expect("filesystem usage");
    assert!((0.0..=100.0).contains(&used), "{json:#}");
    // Thresholds below what is there: warnings, with Nagios' exit code.
    let out = status(&[
        "--fs-warn",
        "0",
        "--base-max-age",
        "0s",
        "--format",
        "prometheus",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let prom = String::from_utf8_lossy(&out.stdout);
    assert!(
        prom.contains("pgincr_status{slot=\"pgincr\"} 1\n"),
        "{prom}"
    );
    assert!(prom.contains("pgincr_filesystem_used_ratio{"), "{prom}");
    let out = status(&["--fs-warn", "0", "--base-max-age", "0s"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("filesystem is") && text.contains("the newest base backup is"),
        "{text}"
    );
    run_ok(&cluster, &["verify", "-r", repo_s]);
    restore_into(&cluster, repo_s, "dbname=after_prune", &[]);
    assert_same_database(&cluster, &source, "after_prune").await;
}
