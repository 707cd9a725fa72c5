//! The configuration file: a database's section gives the connection, the repository and
//! thresholds; a PGINCR_* variable overrides it and an option overrides both; mistakes are
//! reported with their line and column; `config check` masks passwords.

mod common;

use common::*;

#[tokio::test(flavor = "multi_thread")]
async fn a_section_configures_the_commands() {
    let (cluster, _source, repo) = initialised("CREATE TABLE t (id int PRIMARY KEY)").await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("pgincr.toml");
    std::fs::write(
        &file,
        format!(
            "[defaults]\nprune_max_age = \"0s\"\nfs_warn = 100\nfs_critical = 100\n\n\
             [database.app]\ndsn = \"dbname=postgres password='not shown'\"\nrepo = \"{}\"\n\n\
             [database.other]\ndsn = \"dbname=other\"\nrepo = \"/nonexistent\"\n",
            repo.display()
        ),
    )
    .unwrap();
    let file_s = file.to_str().unwrap();
    let status = |extra: &[&str], env: &[(&str, &str)]| {
        let mut cmd = pgincr(&cluster);
        cmd.args([
            "--config",
            file_s,
            "--database",
            "app",
            "status",
            "--format",
            "json",
        ]);
        cmd.args(extra);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = cmd.output().unwrap();
        let json: serde_json::Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}", describe(&out)));
        json
    };
    // dsn and repo from the section; prune_max_age from the defaults.
    let json = status(&[], &[]);
    assert!(
        json["repository_bytes"].as_u64().is_some_and(|b| b > 0),
        "{json:#}"
    );
    let problems = json["problems"].to_string();
    assert!(problems.contains("pgincr prune has never run"), "{json:#}");
    // The environment overrides the file; an option overrides both.
    let json = status(&[], &[("PGINCR_PRUNE_MAX_AGE", "8d")]);
    assert!(!json["problems"].to_string().contains("prune"), "{json:#}");
    let json = status(
        &["--prune-max-age", "8d"],
        &[("PGINCR_PRUNE_MAX_AGE", "0s")],
    );
    assert!(!json["problems"].to_string().contains("prune"), "{json:#}");

    // Several databases: a command must say which.
    let out = pgincr(&cluster)
        .args(["--config", file_s, "status"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("choose one with --database (one of: app, other)"),
        "{}",
        describe(&out)
    );

    // config check: effective settings, password masked.
    let out = run_ok(&cluster, &["--config", file_s, "config", "check"]);
    assert!(
        out.contains("[database.app]") && out.contains("[database.other]"),
        "{out}"
    );
    assert!(out.contains("dsn = dbname=postgres password=***"), "{out}");
    assert!(!out.contains("not shown"), "{out}");
    assert!(out.contains("prune_max_age = 0s"), "{out}");

    // A mistake: its place, a non-zero exit, and no command runs with it.
    std::fs::write(
        &file,
        "[database.app]\ndsn = \"dbname=postgres\"\nkeep_age = \"a month\"\nrepos = \"/x\"\n",
    )
    .unwrap();
    let (code, err) = run_err(&cluster, &["--config", file_s, "config", "check"]);
    assert_ne!(code, Some(0));
    assert!(
        err.contains("line 4, column 1") && err.contains("unknown field `repos`"),
        "{err}"
    );
    let (code, err) = run_err(
        &cluster,
        &["--config", file_s, "--database", "app", "status"],
    );
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("unknown field `repos`"), "{err}");
}
