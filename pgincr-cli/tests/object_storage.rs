//! Repositories on S3-compatible object storage, tested on SeaweedFS (a distributed object
//! store with an S3 gateway) with signed requests: every command on `s3://`, an outage of
//! the store in the middle of a stream under pgbench load, a second writer, a killed stream,
//! bad credentials and a missing bucket, and a restore by hand with rclone, zstd and psql.

mod common;

use common::*;
use e2e::TestCluster;
use e2e::decode::{database_contents, line_diff};
use e2e::object_store::{ACCESS_KEY, SECRET_KEY, SeaweedFs};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BUCKET: &str = "backups";
const REPO: &str = "s3://backups/pg/app";

/// `pgincr` pointed at `store` (credentials in the environment only) with `spool`.
fn pgincr_s3(cluster: &TestCluster, store: &SeaweedFs, spool: &Path) -> Command {
    let mut cmd = pgincr(cluster);
    for (k, v) in store.env() {
        cmd.env(k, v);
    }
    cmd.env("PGINCR_SPOOL", spool);
    cmd
}

fn s3_ok(cluster: &TestCluster, store: &SeaweedFs, spool: &Path, args: &[&str]) -> String {
    let out = pgincr_s3(cluster, store, spool)
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "pgincr {args:?}: {}", describe(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn s3_err(cluster: &TestCluster, store: &SeaweedFs, spool: &Path, args: &[&str]) -> String {
    let out = pgincr_s3(cluster, store, spool)
        .args(args)
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "pgincr {args:?} should fail: {}",
        describe(&out)
    );
    describe(&out)
}

/// `pgincr init` of REPO from database postgres; returns its output.
fn s3_init(cluster: &TestCluster, store: &SeaweedFs, spool: &Path) -> String {
    s3_ok(
        cluster,
        store,
        spool,
        &["init", "-d", "dbname=postgres", "-r", REPO],
    )
}

/// `pgincr restore -r REPO -t dbname=<db> --create <extra>` from the store, which must succeed.
fn s3_restore(cluster: &TestCluster, store: &SeaweedFs, spool: &Path, db: &str, extra: &[&str]) {
    let target = format!("dbname={db}");
    let mut args = vec!["restore", "-r", REPO, "-t", &target, "--create"];
    args.extend_from_slice(extra);
    s3_ok(cluster, store, spool, &args);
}

fn start_s3_stream(cluster: &TestCluster, store: &SeaweedFs, spool: &Path) -> Child {
    start_s3_stream_with(cluster, store, spool, &[])
}

fn start_s3_stream_with(
    cluster: &TestCluster,
    store: &SeaweedFs,
    spool: &Path,
    extra: &[&str],
) -> Child {
    pgincr_s3(cluster, store, spool)
        .args(["stream", "-d", "dbname=postgres", "-r", REPO])
        .args(extra)
        .args(["--segment-size", "64kB", "--segment-age", "2s"])
        .args(["--fsync-interval", "1s", "--status-interval", "1s"])
        .args(["--sequence-interval", "2s", "--max-backoff", "2s"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// The store's manifest, read with rclone.
fn stored_manifest(store: &SeaweedFs) -> serde_json::Value {
    let out = store.rclone(&["cat", &format!("s3:{BUCKET}/pg/app/manifest.json")]);
    assert!(out.status.success(), "{}", describe(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn status_json(cluster: &TestCluster, store: &SeaweedFs, spool: &Path) -> (i32, serde_json::Value) {
    let out = pgincr_s3(cluster, store, spool)
        .args([
            "status",
            "-d",
            "dbname=postgres",
            "-r",
            REPO,
            "--format",
            "json",
        ])
        .args(["--upload-warn", "5s", "--upload-critical", "10m"])
        .output()
        .unwrap();
    let json = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("status JSON: {e}: {}", describe(&out)));
    (out.status.code().unwrap_or(-1), json)
}

#[tokio::test]
async fn object_storage_round_trip_through_an_outage_under_load() {
    let mut store = SeaweedFs::start(BUCKET);
    let cluster = TestCluster::start();
    pgbench_init(&cluster, 1);
    let source = cluster.connect("postgres").await;
    source
        .batch_execute(
            "CREATE TABLE notes (id bigserial PRIMARY KEY, body text NOT NULL);
             INSERT INTO notes (body) SELECT 'note ' || g FROM generate_series(1, 500) g;",
        )
        .await
        .unwrap();
    let spool = cluster.scratch_dir("spool");

    let out = s3_init(&cluster, &store, &spool);
    assert!(out.contains(&format!("initialised {REPO}")), "{out}");
    // The documented layout, under the prefix; nothing of it stays in the spool.
    let objects = store.list(BUCKET, "pg/app");
    assert!(objects.contains(&"manifest.json".to_owned()), "{objects:?}");
    assert!(
        objects
            .iter()
            .any(|o| o.starts_with("bases/") && o.ends_with("/dump.sql.zst"))
            && objects.iter().any(|o| o.ends_with("/globals.sql")),
        "{objects:?}"
    );
    assert!(
        std::fs::read_dir(spool.join("bases"))
            .unwrap()
            .next()
            .is_none(),
        "the base stayed in the spool"
    );
    // The store's manifest names what the store holds.
    let m = stored_manifest(&store);
    assert_eq!(m["bases"].as_array().unwrap().len(), 1, "{m}");
    // A second init of the same prefix is refused by the manifest on the store.
    let err = s3_err(
        &cluster,
        &store,
        &cluster.scratch_dir("other-spool"),
        &[
            "init",
            "-d",
            "dbname=postgres",
            "-r",
            REPO,
            "--slot",
            "other",
        ],
    );
    assert!(err.contains("already holds a repository"), "{err}");

    let stream = start_s3_stream(&cluster, &store, &spool);
    let mut load = pgbench(
        &cluster,
        &["-n", "-c", "2", "-j", "2", "-T", "90", "postgres"],
    )
    .spawn()
    .unwrap();
    // Segments reach the store while pgbench runs.
    let deadline = Instant::now() + Duration::from_secs(60);
    while stored_manifest(&store)["segments"]
        .as_array()
        .unwrap()
        .len()
        < 2
    {
        assert!(Instant::now() < deadline, "no segment was uploaded");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // A second stream, with its own spool (another machine): refused by the lock object.
    let err = s3_err(
        &cluster,
        &store,
        &cluster.scratch_dir("second-spool"),
        &["stream", "-d", "dbname=postgres", "-r", REPO, "--catch-up"],
    );
    assert!(
        err.contains("holds this repository's lock") && err.contains("stop it first"),
        "{err}"
    );

    // The store goes away for 60 s while changes go on.
    store.pause();
    let outage = Instant::now();
    let mut warned = None;
    while outage.elapsed() < Duration::from_secs(60) {
        source
            .batch_execute("INSERT INTO notes (body) SELECT 'during the outage ' || g FROM generate_series(1, 50) g")
            .await
            .unwrap();
        if warned.is_none() && outage.elapsed() > Duration::from_secs(20) {
            // status: CRITICAL, the store unreadable, and the spool's backlog shown.
            let (code, json) = status_json(&cluster, &store, &spool);
            assert_eq!(code, 2, "{json}");
            let problems = json["problems"].to_string();
            assert!(
                problems.contains("the repository cannot be read")
                    && problems.contains("wait for their upload"),
                "{json}"
            );
            assert!(
                json["oldest_unuploaded_seconds"].as_u64().unwrap() >= 5,
                "{json}"
            );
            warned = json["upload_backlog_files"].as_u64();
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(
        warned.is_some_and(|n| n > 0),
        "nothing waited for upload: {warned:?}"
    );
    // The store comes back, and the backlog drains.
    store.resume();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (_, json) = status_json(&cluster, &store, &spool);
        if json["upload_backlog_files"] == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the backlog did not drain: {json}"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let status = load.wait().unwrap();
    assert!(status.success(), "pgbench failed");

    // A moment to restore to later.
    let lsn: String = source
        .query_one("SELECT pg_current_wal_lsn()::text", &[])
        .await
        .unwrap()
        .get(0);
    let at_lsn = database_contents(&source).await;
    source
        .batch_execute(
            "UPDATE notes SET body = body || ' later' WHERE id % 7 = 0;
             DELETE FROM notes WHERE id % 11 = 0;
             CREATE TABLE after_the_moment AS SELECT 1 AS one;",
        )
        .await
        .unwrap();
    let log = stop_stream_when_caught_up(&source, stream).await;
    assert!(
        log.contains("object storage"),
        "no upload failure logged:\n{log}"
    );
    assert!(
        !log.contains(SECRET_KEY),
        "the secret key appeared in the log"
    );

    // Nothing is left in the spool but the open segment and local state.
    let left: Vec<String> = std::fs::read_dir(spool.join("segments"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n != "open.sql")
        .collect();
    assert!(left.is_empty(), "left in the spool: {left:?}");

    let out = s3_ok(&cluster, &store, &spool, &["verify", "-r", REPO]);
    assert!(out.contains("all good"), "{out}");
    let first_base = stored_manifest(&store)["bases"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let out = s3_ok(
        &cluster,
        &store,
        &spool,
        &["base", "-d", "dbname=postgres", "-r", REPO],
    );
    assert!(out.contains("base backup"), "{out}");
    assert_eq!(
        stored_manifest(&store)["bases"].as_array().unwrap().len(),
        2
    );

    // Restores stream from the store: the latest state, and a point in time.
    let restore_spool = cluster.scratch_dir("restore-spool");
    let from_first = ["--base", first_base.as_str()];
    s3_restore(&cluster, &store, &restore_spool, "restored", &from_first);
    assert_same_database(&cluster, &source, "restored").await;
    s3_restore(
        &cluster,
        &store,
        &restore_spool,
        "at_lsn",
        &[&from_first[..], &["--to-lsn", &lsn]].concat(),
    );
    let got = database_contents(&cluster.connect("at_lsn").await).await;
    assert_eq!(
        at_lsn,
        got,
        "restore to {lsn}:\n{}",
        line_diff(&at_lsn, &got)
    );

    // Objects a killed base or upload left behind, named by no manifest entry.
    let stray = cluster.scratch_dir("stray").join("object");
    std::fs::write(&stray, b"left by a killed upload").unwrap();
    let strays = [
        "segments/000999-0_DEADBEEF.sql.zst",
        "bases/20200101T000000Z/dump.sql.zst",
    ];
    for name in strays {
        let out = store.rclone(&[
            "copyto",
            stray.to_str().unwrap(),
            &format!("s3:{BUCKET}/pg/app/{name}"),
        ]);
        assert!(out.status.success(), "{}", describe(&out));
    }
    // Prune keeps the newest base and deletes the objects the manifest no longer names;
    // orphans only once older than the grace (a base may still be writing them).
    let before = store.list(BUCKET, "pg/app");
    s3_ok(
        &cluster,
        &store,
        &spool,
        &["prune", "-r", REPO, "--keep-bases", "1"],
    );
    let after = store.list(BUCKET, "pg/app");
    for name in strays {
        assert!(
            after.contains(&name.to_owned()),
            "{name} went within its grace"
        );
    }
    let out = s3_ok(
        &cluster,
        &store,
        &spool,
        &[
            "prune",
            "-r",
            REPO,
            "--orphans-older-than",
            "0s",
            "--dry-run",
        ],
    );
    for name in strays {
        assert!(out.contains(&format!("would delete {name}")), "{out}");
    }
    let out = s3_ok(
        &cluster,
        &store,
        &spool,
        &[
            "prune",
            "-r",
            REPO,
            "--keep-bases",
            "1",
            "--orphans-older-than",
            "0s",
        ],
    );
    assert!(out.contains("deleted 2 orphaned object(s)"), "{out}");
    let after = store.list(BUCKET, "pg/app");
    let m = stored_manifest(&store);
    assert_eq!(m["bases"].as_array().unwrap().len(), 1, "{m}");
    assert!(after.len() < before.len(), "{before:?}\n{after:?}");
    for segment in m["segments"].as_array().unwrap() {
        let path = segment["file"]["path"].as_str().unwrap();
        assert!(after.contains(&path.to_owned()), "{path} named but missing");
    }
    for object in after
        .iter()
        .filter(|o| o.starts_with("segments/") || o.starts_with("bases/"))
    {
        let named = m["segments"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["file"]["path"] == object.as_str())
            || m["bases"].as_array().unwrap().iter().any(|b| {
                b["dump"]["path"] == object.as_str() || b["globals"]["path"] == object.as_str()
            });
        assert!(named, "{object} is on the store but not in the manifest");
    }
    let restore_spool = cluster.scratch_dir("restore-spool-2");
    s3_restore(&cluster, &store, &restore_spool, "after_prune", &[]);
    assert_same_database(&cluster, &source, "after_prune").await;

    // By hand: rclone, zstd and psql, nothing of pgincr.
    let copy = cluster.scratch_dir("copy");
    let out = store.rclone(&[
        "copy",
        &format!("s3:{BUCKET}/pg/app"),
        copy.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", describe(&out));
    let script = r#"set -euo pipefail
createdb -T template0 manual
psql -X -q -d manual -f bases/*/globals.sql >/dev/null 2>&1
zstd -dc bases/*/dump.sql.zst \
  | grep -v -e '^CREATE EXTENSION IF NOT EXISTS decoder_sql ' -e '^COMMENT ON EXTENSION decoder_sql ' \
  | psql -X -q -v ON_ERROR_STOP=1 --single-transaction -d manual >/dev/null
for f in $(ls segments/*.sql.zst | sort); do zstd -dc "$f"; done \
  | PGOPTIONS='-c session_replication_role=replica' psql -X -q -v ON_ERROR_STOP=1 -d manual >/dev/null
"#;
    let out = run_by_hand(&cluster, &copy, script);
    assert!(out.status.success(), "manual restore: {}", describe(&out));
    assert_same_database(&cluster, &source, "manual").await;
}

#[tokio::test]
async fn object_storage_refuses_bad_credentials_a_missing_bucket_and_survives_kill_9() {
    let store = SeaweedFs::start(BUCKET);
    let cluster = TestCluster::start();
    let source = cluster.connect("postgres").await;
    source
        .batch_execute(
            "CREATE TABLE t (id int PRIMARY KEY, v text);
             INSERT INTO t SELECT g, 'v' || g FROM generate_series(1, 1000) g;",
        )
        .await
        .unwrap();
    let spool = cluster.scratch_dir("spool");
    let slots = || async {
        cluster
            .connect("postgres")
            .await
            .query_one("SELECT count(*)::int FROM pg_replication_slots", &[])
            .await
            .unwrap()
            .get::<_, i32>(0)
    };

    // A wrong secret: refused before anything is created, and the secret is never shown.
    let out = pgincr_s3(&cluster, &store, &spool)
        .env("AWS_SECRET_ACCESS_KEY", "wrong-secret-value-123")
        .args(["init", "-d", "dbname=postgres", "-r", REPO])
        .output()
        .unwrap();
    let text = describe(&out);
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("access denied"), "{text}");
    assert!(
        !text.contains("wrong-secret-value-123") && !text.contains(SECRET_KEY),
        "{text}"
    );
    assert!(store.list(BUCKET, "").is_empty(), "something was written");
    assert_eq!(slots().await, 0, "a slot was created");

    // A bucket that does not exist.
    let err = s3_err(
        &cluster,
        &store,
        &spool,
        &[
            "init",
            "-d",
            "dbname=postgres",
            "-r",
            "s3://no-such-bucket/x",
        ],
    );
    assert!(err.contains("bucket does not exist"), "{err}");
    assert_eq!(slots().await, 0, "a slot was created");
    // An address that is not one.
    let err = s3_err(
        &cluster,
        &store,
        &spool,
        &["verify", "-r", "s3://Bad_Bucket/x"],
    );
    assert!(err.contains("is not a bucket name"), "{err}");
    // A prefix with no repository.
    let err = s3_err(
        &cluster,
        &store,
        &spool,
        &["verify", "-r", "s3://backups/nothing"],
    );
    assert!(err.contains("is not a pgincr repository"), "{err}");

    s3_init(&cluster, &store, &spool);
    // Credentials, region and endpoint from a profile of the shared AWS files, none in the
    // environment.
    let aws = cluster.scratch_dir("aws");
    std::fs::write(
        aws.join("credentials"),
        format!(
            "[default]\naws_access_key_id = nobody\naws_secret_access_key = nothing\n\n\
             [backup]\naws_access_key_id = {ACCESS_KEY}\naws_secret_access_key = {SECRET_KEY}\n"
        ),
    )
    .unwrap();
    std::fs::write(
        aws.join("config"),
        format!(
            "[default]\nregion = us-east-1\nendpoint_url = {0}\n\n\
             [profile backup]\nregion = us-east-1\nendpoint_url = {0}\n",
            store.endpoint()
        ),
    )
    .unwrap();
    let with_profile = |profile: &str| {
        pgincr(&cluster)
            .env("PGINCR_SPOOL", &spool)
            .env("AWS_SHARED_CREDENTIALS_FILE", aws.join("credentials"))
            .env("AWS_CONFIG_FILE", aws.join("config"))
            .env("AWS_PROFILE", profile)
            .args(["verify", "-r", REPO])
            .output()
            .unwrap()
    };
    let out = with_profile("backup");
    assert!(
        out.status.success() && describe(&out).contains("all good"),
        "{}",
        describe(&out)
    );
    // The default profile's keys are refused.
    assert!(!with_profile("default").status.success());
    // kill -9 of the stream while it uploads segments under load; the next run goes on.
    let mut stream = start_s3_stream(&cluster, &store, &spool);
    for round in 0..20 {
        source
            .batch_execute(&format!(
                "INSERT INTO t SELECT g, repeat('x', 500) FROM generate_series({0} * 1000 + 2000, {0} * 1000 + 2999) g",
                round
            ))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    stream.kill().unwrap();
    stream.wait().unwrap();
    // pg_recvlogical, its child, may outlive it for a moment; the next run stops it.
    source
        .batch_execute("UPDATE t SET v = 'after the kill' WHERE id < 100")
        .await
        .unwrap();
    let stream = start_s3_stream(&cluster, &store, &spool);
    stop_stream_when_caught_up(&source, stream).await;
    let out = s3_ok(&cluster, &store, &spool, &["verify", "-r", REPO]);
    assert!(out.contains("all good"), "{out}");
    let out = s3_ok(
        &cluster,
        &store,
        &spool,
        &["verify", "-r", REPO, "--sample", "50"],
    );
    assert!(
        out.contains("all good") && out.contains("NOTE --sample 50"),
        "{out}"
    );
    let restore_spool = cluster.scratch_dir("restore-spool");
    s3_restore(&cluster, &store, &restore_spool, "restored", &[]);
    assert_same_database(&cluster, &source, "restored").await;
    // A stored segment damaged on the store: verify names it and restore refuses it.
    let m = stored_manifest(&store);
    let victim = m["segments"][0]["file"]["path"]
        .as_str()
        .unwrap()
        .to_owned();
    let damaged = cluster.scratch_dir("damaged").join("seg");
    std::fs::write(&damaged, b"not the segment").unwrap();
    let out = store.rclone(&[
        "copyto",
        damaged.to_str().unwrap(),
        &format!("s3:{BUCKET}/pg/app/{victim}"),
    ]);
    assert!(out.status.success(), "{}", describe(&out));
    let err = s3_err(&cluster, &store, &spool, &["verify", "-r", REPO]);
    assert!(err.contains(&format!("{victim} is damaged")), "{err}");
    // A sample that reads nothing in full still finds it by its size.
    let err = s3_err(
        &cluster,
        &store,
        &spool,
        &["verify", "-r", REPO, "--sample", "0"],
    );
    assert!(
        err.contains(&format!("{victim} is damaged")) && err.contains("NOTE --sample 0: 0 file(s)"),
        "{err}"
    );
    let err = s3_err(
        &cluster,
        &store,
        &restore_spool,
        &["restore", "-r", REPO, "-t", "dbname=never", "--create"],
    );
    assert!(err.contains("is damaged"), "{err}");
}

/// `stream --confirm-after store`: the spool is lost (with its host) after pg_recvlogical
/// confirmed changes it held, while the store was away; the next run receives them again
/// from the store slot and the restore is complete.
#[tokio::test]
async fn a_lost_spool_is_received_again_from_the_store_slot() {
    let mut store = SeaweedFs::start(BUCKET);
    let cluster = TestCluster::start();
    let source = cluster.connect("postgres").await;
    source
        .batch_execute(
            "CREATE TABLE t (id bigserial PRIMARY KEY, v text NOT NULL);
             INSERT INTO t (v) SELECT 'before ' || g FROM generate_series(1, 100) g;",
        )
        .await
        .unwrap();
    let spool = cluster.scratch_dir("spool");
    s3_init(&cluster, &store, &spool);
    let confirmed = |slot: &'static str| {
        let cluster = &cluster;
        async move {
            cluster
                .connect("postgres")
                .await
                .query_opt(
                    "SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = $1",
                    &[&slot],
                )
                .await
                .unwrap()
                // NULL while the slot is being created (a copy gets its position last).
                .and_then(|r| r.get::<_, Option<String>>(0))
        }
    };
    let lsn_gt = |a: String, b: String| {
        let source = &source;
        async move {
            source
                .query_one("SELECT $1::text::pg_lsn > $2::text::pg_lsn", &[&a, &b])
                .await
                .unwrap()
                .get::<_, bool>(0)
        }
    };
    let stored_end = |store: &SeaweedFs| {
        let m = stored_manifest(store);
        m["segments"]
            .as_array()
            .and_then(|s| s.last())
            .map(|s| s["end_lsn"].as_str().unwrap().to_owned())
    };

    let mut stream = start_s3_stream_with(&cluster, &store, &spool, &["--confirm-after", "store"]);
    source
        .batch_execute("INSERT INTO t (v) SELECT 'uploaded ' || g FROM generate_series(1, 2000) g")
        .await
        .unwrap();
    // The store slot follows the uploads: it reaches the end of the last stored segment.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let (Some(end), Some(at)) = (stored_end(&store), confirmed("pgincr_stored").await)
            && end == at
            && lsn_gt(at.clone(), "0/0".into()).await
        {
            break;
        }
        if Instant::now() > deadline || stream.try_wait().unwrap().is_some() {
            stream.kill().unwrap();
            let out = stream.wait_with_output().unwrap();
            panic!(
                "the store slot did not follow the uploads: {:?} vs {:?}\n{}",
                stored_end(&store),
                confirmed("pgincr_stored").await,
                describe(&out)
            );
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    // The store goes away; changes are spooled and pg_recvlogical confirms them.
    store.pause();
    for round in 0..10 {
        source
            .batch_execute(&format!(
                "INSERT INTO t (v) SELECT 'spooled {round} ' || g FROM generate_series(1, 300) g;
                 UPDATE t SET v = v || ' updated' WHERE id % 10 = {round}"
            ))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while !lsn_gt(
        confirmed("pgincr").await.unwrap(),
        confirmed("pgincr_stored").await.unwrap(),
    )
    .await
    {
        assert!(
            Instant::now() < deadline,
            "pg_recvlogical confirmed nothing"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    // The host dies with its spool: the stream and its pg_recvlogical are killed and the
    // spool's disk is replaced by an empty one.
    stream.kill().unwrap();
    stream.wait().unwrap();
    // pg_recvlogical follows its parent (SIGTERM on the parent's death); should it linger,
    // it goes the host's way too.
    let _ = Command::new("pkill")
        .args(["-9", "-f", &format!("pg_recvlogical.*{}", spool.display())])
        .status();
    std::fs::remove_dir_all(&spool).unwrap();
    std::fs::create_dir(&spool).unwrap();
    store.resume();
    // Without the store slot this is a gap: the main slot confirmed what the store lacks.
    let held = stored_end(&store).unwrap();
    assert!(lsn_gt(confirmed("pgincr").await.unwrap(), held.clone()).await);
    assert!(!lsn_gt(confirmed("pgincr_stored").await.unwrap(), held.clone()).await);
    source
        .batch_execute("INSERT INTO t (v) SELECT 'after ' || g FROM generate_series(1, 100) g")
        .await
        .unwrap();

    // The next run (the store slot's existence keeps the setting) receives them again.
    let stream = start_s3_stream(&cluster, &store, &spool);
    let log = stop_stream_when_caught_up(&source, stream).await;
    assert!(
        log.contains("was the spool lost?") && log.contains("receiving them again"),
        "{log}"
    );
    let restore_spool = cluster.scratch_dir("restore-spool");
    s3_restore(&cluster, &store, &restore_spool, "restored", &[]);
    assert_same_database(&cluster, &source, "restored").await;
    assert_eq!(
        confirmed("pgincr_stored").await,
        stored_end(&store),
        "the store slot stops at the last upload"
    );

    // `--confirm-after spool` drops the store slot; on a local repository it is refused.
    s3_ok(
        &cluster,
        &store,
        &spool,
        &[
            "stream",
            "-d",
            "dbname=postgres",
            "-r",
            REPO,
            "--catch-up",
            "--confirm-after",
            "spool",
        ],
    );
    let store_slots = query_text(
        &source,
        "SELECT count(*)::text FROM pg_replication_slots WHERE slot_name = 'pgincr_stored'",
    )
    .await;
    assert_eq!(
        store_slots, "0",
        "--confirm-after spool drops the store slot"
    );
    let local = cluster.scratch_dir("local-repo");
    let local = local.to_str().unwrap();
    let out = pgincr(&cluster)
        .args([
            "init",
            "-d",
            "dbname=postgres",
            "-r",
            local,
            "--slot",
            "local",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", describe(&out));
    let out = pgincr(&cluster)
        .args(["stream", "-d", "dbname=postgres", "-r", local, "--catch-up"])
        .args(["--confirm-after", "store"])
        .output()
        .unwrap();
    assert!(
        !out.status.success() && describe(&out).contains("applies to object-storage repositories"),
        "{}",
        describe(&out)
    );
}
