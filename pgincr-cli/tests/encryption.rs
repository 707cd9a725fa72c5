//! Encryption at rest: a repository encrypted to an age recipient at `init` holds no
//! plaintext, verifies without the key, restores with it (by pgincr, and by hand with
//! Debian's `age` and `zstd`), and refuses a missing or wrong key before touching the target.

mod common;

use common::*;
use e2e::TestCluster;
use std::path::{Path, PathBuf};
use std::process::Command;

const SETUP: &str = "
    CREATE TABLE secrets (id serial PRIMARY KEY, note text NOT NULL, amount numeric(12,2));
    INSERT INTO secrets (note, amount)
        SELECT 'plaintext-marker ' || g, g FROM generate_series(1, 300) g;
    CREATE SEQUENCE counter;
    SELECT setval('counter', 42);";

/// A new age key pair from Debian's age-keygen: (identity file, public recipient).
fn keygen(dir: &Path, name: &str) -> (PathBuf, String) {
    let file = dir.join(name);
    let out = Command::new("age-keygen")
        .arg("-o")
        .arg(&file)
        .output()
        .expect("age-keygen (Debian package age) runs");
    assert!(out.status.success(), "age-keygen: {}", describe(&out));
    let text = std::fs::read_to_string(&file).unwrap();
    let public = text
        .lines()
        .find_map(|l| l.strip_prefix("# public key: "))
        .expect("age-keygen writes the public key")
        .to_owned();
    (file, public)
}

/// Every file under `dir`, recursively.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(files_under(&path));
        } else {
            out.push(path);
        }
    }
    out
}

fn database_exists_query(name: &str) -> String {
    format!("SELECT count(*)::int FROM pg_database WHERE datname = '{name}'")
}

#[tokio::test]
async fn encrypted_repository_round_trip_with_pgincr_and_by_hand() {
    let cluster = TestCluster::start();
    let source = cluster.connect("postgres").await;
    source.batch_execute(SETUP).await.unwrap();
    let keys = cluster.scratch_dir("keys");
    let (key, recipient) = keygen(&keys, "key.txt");
    let (other_key, _) = keygen(&keys, "other.txt");
    let repo = repo_dir(&cluster);
    let repo_s = repo.to_str().unwrap();

    let out = run_ok(
        &cluster,
        &[
            "init",
            "-d",
            "dbname=postgres",
            "-r",
            repo_s,
            "--encrypt-to",
            &recipient,
        ],
    );
    assert!(
        out.contains("encrypting the repository to 1 age recipient"),
        "{out}"
    );
    // Parallel dumps are written by pg_dump itself, unencrypted: refused.
    let (_, err) = run_err(
        &cluster,
        &[
            "base",
            "-d",
            "dbname=postgres",
            "-r",
            repo_s,
            "--format",
            "directory",
            "--jobs",
            "2",
        ],
    );
    assert!(
        err.contains("encrypted repository takes plain base dumps only"),
        "{err}"
    );

    // Changes of every kind, a role among them, so that globals are written too.
    source
        .batch_execute(
            "INSERT INTO secrets (note, amount) SELECT 'plaintext-marker late ' || g, g
               FROM generate_series(1, 50) g;
             UPDATE secrets SET amount = amount * 2 WHERE id % 3 = 0;
             DELETE FROM secrets WHERE id % 10 = 0;
             CREATE TABLE more_secrets AS SELECT 'plaintext-marker ctas'::text AS note;
             SELECT nextval('counter');
             CREATE ROLE plaintext_marker_role;",
        )
        .await
        .unwrap();
    catch_up(&cluster, repo_s);
    // Later runs, one with small segments: the stream continues the chain from what the
    // manifest records, without the key to read closed segments.
    source
        .batch_execute(
            "INSERT INTO secrets (note, amount)
               SELECT 'plaintext-marker big ' || repeat('x', 200) || g, g
               FROM generate_series(1, 20000) g;",
        )
        .await
        .unwrap();
    let out = pgincr(&cluster)
        .args([
            "stream",
            "-d",
            "dbname=postgres",
            "-r",
            repo_s,
            "--catch-up",
        ])
        .args(["--segment-size", "1MB"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", describe(&out));
    source
        .batch_execute("UPDATE secrets SET note = note || ' again' WHERE id < 5;")
        .await
        .unwrap();
    catch_up(&cluster, repo_s);

    let m = manifest(&repo);
    for segment in m["segments"].as_array().unwrap() {
        assert!(segment["open_at_end"].is_object(), "{segment}");
    }
    assert_eq!(m["format"], 2, "{m}");
    assert_eq!(m["encryption"]["recipients"][0], recipient.as_str(), "{m}");
    // No file but the manifest and the lock and state files holds any text of the source.
    let mut encrypted = 0;
    for file in files_under(&repo) {
        let name = file
            .strip_prefix(&repo)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let bytes = std::fs::read(&file).unwrap();
        let text = String::from_utf8_lossy(&bytes);
        assert!(
            !text.contains("plaintext-marker") && !text.contains("plaintext_marker_role"),
            "{name} holds plaintext of the source"
        );
        if name.starts_with("bases/")
            || name.starts_with("segments/")
            || name.starts_with("globals/")
        {
            assert!(
                name.ends_with(".age") || name.ends_with(".lock"),
                "{name} is not encrypted"
            );
            encrypted += name.ends_with(".age") as usize;
        }
    }
    assert!(encrypted >= 3, "too few encrypted files: {encrypted}");
    assert!(
        files_under(&repo)
            .iter()
            .any(|f| f.to_string_lossy().contains("/globals/")),
        "the new role was not recorded in globals"
    );

    // Verify checks sizes and checksums without the key, and contents with it.
    let out = run_ok(&cluster, &["verify", "-r", repo_s]);
    assert!(
        out.contains("NOTE the repository is encrypted") && out.contains("all good"),
        "{out}"
    );
    let out = run_ok(
        &cluster,
        &["verify", "-r", repo_s, "--identity", key.to_str().unwrap()],
    );
    assert!(out.contains("all good") && !out.contains("NOTE"), "{out}");
    let (_, err) = run_err(
        &cluster,
        &[
            "verify",
            "-r",
            repo_s,
            "--identity",
            other_key.to_str().unwrap(),
        ],
    );
    assert!(
        err.contains(&format!(
            "no identity in {} can decrypt",
            other_key.display()
        )),
        "{err}"
    );

    // Restore without a key, or with the wrong one: a clear error, and no target created.
    let (_, err) = run_err(
        &cluster,
        &["restore", "-r", repo_s, "-t", "dbname=nokey", "--create"],
    );
    assert!(
        err.contains("is encrypted") && err.contains("--identity FILE"),
        "{err}"
    );
    let (_, err) = run_err(
        &cluster,
        &[
            "restore",
            "-r",
            repo_s,
            "-t",
            "dbname=wrongkey",
            "--create",
            "--identity",
            other_key.to_str().unwrap(),
        ],
    );
    assert!(
        err.contains(&format!(
            "no identity in {} can decrypt",
            other_key.display()
        )),
        "{err}"
    );
    assert!(
        !err.contains("AGE-SECRET-KEY"),
        "a key in the output: {err}"
    );
    for db in ["nokey", "wrongkey"] {
        let n: i32 = source
            .query_one(&database_exists_query(db), &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(n, 0, "{db} was created");
    }

    // With the key (here from the environment, as a config file would set it).
    let out = pgincr(&cluster)
        .args(["restore", "-r", repo_s, "-t", "dbname=restored", "--create"])
        .env("PGINCR_IDENTITY", &key)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", describe(&out));
    assert!(!describe(&out).contains("AGE-SECRET-KEY"));
    assert_same_database(&cluster, &source, "restored").await;

    // By hand, with Debian's age and zstd and psql only (docs/repository.md).
    let script = r#"set -euo pipefail
createdb -T template0 manual
age -d -i "$KEY" bases/*/globals.sql.age | psql -X -q -d manual >/dev/null 2>&1
age -d -i "$KEY" bases/*/dump.sql.zst.age | zstd -d \
  | grep -v -e '^CREATE EXTENSION IF NOT EXISTS decoder_sql ' -e '^COMMENT ON EXTENSION decoder_sql ' \
  | psql -X -q -v ON_ERROR_STOP=1 --single-transaction -d manual >/dev/null
for f in segments/*.sql.zst.age; do age -d -i "$KEY" "$f" | zstd -d; done \
  | PGOPTIONS='-c session_replication_role=replica' psql -X -q -v ON_ERROR_STOP=1 -d manual >/dev/null
"#;
    let script = script.replace("\"$KEY\"", &format!("'{}'", key.display()));
    let out = run_by_hand(&cluster, &repo, &script);
    assert!(out.status.success(), "manual restore: {}", describe(&out));
    assert_same_database(&cluster, &source, "manual").await;
}
