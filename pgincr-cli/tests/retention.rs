//! `pgincr prune`: the default grandfather-father-son policy when no option is given, the
//! reason for every base in `--dry-run`, segments kept for their age, and no deletion while a
//! restore reads the repository; the default policy over bases spread across months (their
//! times moved into the past in the manifest), with restores from what it keeps.

mod common;

use common::*;
use e2e::TestCluster;
use e2e::decode::{database_contents, line_diff, schema_dump_with};
use std::fs::File;
use time::format_description::well_known::Rfc3339;
use time::{Date, Duration as TimeDuration, Month, OffsetDateTime};
use tokio_postgres::Client;

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

/// Owned and granted objects, an identity column, a bigserial, a sequence of its own and a
/// foreign key: what a restore must give back exactly.
const GFS_SETUP: &str = "
    CREATE ROLE gfs_owner;
    CREATE ROLE gfs_reader;
    CREATE SCHEMA shop AUTHORIZATION gfs_owner;
    CREATE SEQUENCE shop.ticket START 500;
    CREATE TABLE shop.items (id int GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
                             name text NOT NULL, qty int);
    CREATE TABLE shop.orders (id bigserial PRIMARY KEY, item int REFERENCES shop.items,
                              placed timestamptz, note text);
    ALTER TABLE shop.items OWNER TO gfs_owner;
    ALTER TABLE shop.orders OWNER TO gfs_owner;
    GRANT USAGE ON SCHEMA shop TO gfs_reader;
    GRANT SELECT ON shop.items, shop.orders TO gfs_reader;
    INSERT INTO shop.items (name, qty) SELECT 'item ' || g, g % 17 FROM generate_series(1, 300) g;
    INSERT INTO shop.orders (item, placed, note)
        SELECT 1 + g % 300, '2026-01-01 00:00+00'::timestamptz + g * interval '1 hour',
               CASE WHEN g % 4 = 0 THEN E'line\\nbreak' END
          FROM generate_series(1, 600) g;
    SELECT nextval('shop.ticket') FROM generate_series(1, 3);";

/// One round of changes between two bases: rows inserted, updated and deleted, a sequence
/// advanced, a new table with a grant and a later column.
async fn gfs_round(client: &Client, round: u32) {
    client
        .batch_execute(&format!(
            "INSERT INTO shop.items (name, qty) SELECT 'round {round} item ' || g, g FROM generate_series(1, 40) g;
             UPDATE shop.items SET qty = qty + {round} WHERE id % 5 = {round} % 5;
             INSERT INTO shop.orders (item, placed, note)
                 SELECT id, now(), 'round {round}' FROM shop.items WHERE id % 9 = {round} % 9;
             DELETE FROM shop.orders WHERE id % 13 = {round};
             UPDATE shop.orders SET note = 'changed in round {round}' WHERE id % 11 = {round};
             SELECT nextval('shop.ticket') FROM generate_series(1, {round});"
        ))
        .await
        .unwrap();
    client
        .batch_execute(&format!(
            "CREATE TABLE shop.round_{round} (id int PRIMARY KEY, v text);
             INSERT INTO shop.round_{round} SELECT g, 'r{round}-' || g FROM generate_series(1, 25) g;
             GRANT SELECT ON shop.round_{round} TO gfs_reader;
             ALTER TABLE shop.round_{round} ADD COLUMN extra int DEFAULT {round};"
        ))
        .await
        .unwrap();
}

/// Every sequence's last value.
async fn sequence_values(client: &Client) -> String {
    query_text(
        client,
        "SELECT coalesce(string_agg(schemaname || '.' || sequencename || ' ' || \
         coalesce(last_value::text, 'null'), E'\\n' ORDER BY schemaname, sequencename), '') \
         FROM pg_sequences WHERE schemaname <> 'decoder_sql'",
    )
    .await
}

/// Database `restored` equals the source: rows, schema with owners and privileges, sequences.
async fn assert_restored_like_source(cluster: &TestCluster, source: &Client, restored: &str) {
    assert_same_database(cluster, source, restored).await;
    let (a, b) = (
        schema_dump_with(cluster.bindir(), cluster, "postgres", &[]),
        schema_dump_with(cluster.bindir(), cluster, restored, &[]),
    );
    assert_eq!(a, b, "owners or privileges differ:\n{}", line_diff(&a, &b));
    let target = cluster.connect(restored).await;
    let (a, b) = (
        sequence_values(source).await,
        sequence_values(&target).await,
    );
    assert_eq!(a, b, "sequences differ:\n{}", line_diff(&a, &b));
}

/// An LSN as PostgreSQL spells it ("16/B374D848"), as a number.
fn lsn(text: &str) -> u64 {
    let (hi, lo) = text.split_once('/').expect("an LSN");
    (u64::from_str_radix(hi, 16).unwrap() << 32) | u64::from_str_radix(lo, 16).unwrap()
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap()
}

/// Noon (UTC) of `day` in the calendar month `back` months before that of `now`.
fn noon_months_back(now: OffsetDateTime, back: i32, day: u8) -> OffsetDateTime {
    let months = now.year() * 12 + i32::from(u8::from(now.month())) - 1 - back;
    let month = Month::try_from(u8::try_from(months.rem_euclid(12) + 1).unwrap()).unwrap();
    Date::from_calendar_date(months.div_euclid(12), month, day)
        .unwrap()
        .with_hms(12, 0, 0)
        .unwrap()
        .assume_utc()
}

/// "YYYY-MM" of a time, as prune names the month.
fn year_month(t: OffsetDateTime) -> String {
    format!("{}-{:02}", t.year(), u8::from(t.month()))
}

/// Six real bases whose times are moved into the past in the manifest (with the segments
/// between them): the default policy keeps the newest, those of the last 30 days and the
/// newest of each month; the others, the segments and the globals snapshot only they needed
/// go, and the rest is one chain that restores to the source, to the newest point and to the
/// oldest kept base's.
#[tokio::test]
async fn default_policy_keeps_grandfather_father_son_over_simulated_months() {
    let (cluster, source, repo) = initialised(GFS_SETUP).await;
    let repo_s = repo.to_str().unwrap();
    let take_base = || {
        run_ok(&cluster, &["base", "-d", "dbname=postgres", "-r", repo_s]);
    };
    // Base 0 is init's. Two segments after it, and a role made after it: a globals snapshot
    // only base 0 needs.
    gfs_round(&source, 1).await;
    catch_up(&cluster, repo_s);
    source
        .batch_execute("CREATE ROLE gfs_auditor; GRANT SELECT ON shop.orders TO gfs_auditor;")
        .await
        .unwrap();
    catch_up(&cluster, repo_s);
    assert_eq!(
        manifest(&repo)["globals"].as_array().map_or(0, Vec::len),
        1,
        "a globals snapshot for the new role: {:#}",
        manifest(&repo)
    );
    take_base(); // base 1
    // The source as base 1 has it, for a restore to that point.
    let at_base1 = (
        database_contents(&source).await,
        schema_dump_with(cluster.bindir(), &cluster, "postgres", &[]),
    );
    for round in 2..=5 {
        gfs_round(&source, round).await;
        catch_up(&cluster, repo_s);
        take_base(); // bases 2 to 5
    }
    // Changes after the newest base, in segments of their own.
    gfs_round(&source, 6).await;
    source
        .batch_execute("DELETE FROM shop.orders WHERE id % 7 = 0; SELECT nextval('shop.ticket');")
        .await
        .unwrap();
    catch_up(&cluster, repo_s);

    // Times in the past, relative to the current UTC month so that the months are certain
    // whatever today is: bases 0 and 1 in the month 4 months back, 2 and 3 in the month 2
    // months back (each pair: only the newer is the month's newest), base 4 within 10 days
    // but in the current month, base 5 now (as it is, give or take seconds; set all the same
    // so that its month is the one the others are counted from).
    let now = OffsetDateTime::now_utc();
    let month_start = Date::from_calendar_date(now.year(), now.month(), 1)
        .unwrap()
        .midnight()
        .assume_utc();
    let times = [
        noon_months_back(now, 4, 8),
        noon_months_back(now, 4, 22),
        noon_months_back(now, 2, 10),
        noon_months_back(now, 2, 20),
        (now - TimeDuration::days(10)).max(month_start),
        now,
    ];
    let mut m = manifest(&repo);
    let ids: Vec<String> = m["bases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids.len(), 6, "{m:#}");
    let cps: Vec<u64> = m["bases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| lsn(b["consistent_lsn"].as_str().unwrap()))
        .collect();
    assert!(cps.windows(2).all(|w| w[0] < w[1]), "{cps:?}");
    for (base, &t) in m["bases"].as_array_mut().unwrap().iter_mut().zip(&times) {
        base["started"] = rfc3339(t - TimeDuration::minutes(5)).into();
        base["finished"] = rfc3339(t).into();
    }
    // A segment closed shortly before the first base taken after it; those after the newest
    // base keep their real (recent) times.
    for (j, segment) in m["segments"].as_array_mut().unwrap().iter_mut().enumerate() {
        let end = lsn(segment["end_lsn"].as_str().unwrap());
        if let Some(k) = cps.iter().position(|&cp| cp >= end) {
            let closed = times[k] - TimeDuration::hours(1) + TimeDuration::seconds(j as i64);
            segment["closed"] = rfc3339(closed).into();
        }
    }
    std::fs::write(
        repo.join("manifest.json"),
        serde_json::to_string_pretty(&m).unwrap(),
    )
    .unwrap();
    let forged = manifest(&repo);
    let finished = |i: usize| forged["bases"][i]["finished"].as_str().unwrap().to_owned();
    let segments = forged["segments"].as_array().unwrap().clone();
    // What base 1 (the oldest kept) does not need: the segments that end at or before its
    // consistent point; they are all older than the 7 days segments are kept anyway.
    let (gone_segments, kept_segments): (Vec<_>, Vec<_>) = segments
        .iter()
        .partition(|s| lsn(s["end_lsn"].as_str().unwrap()) <= cps[1]);
    assert!(
        gone_segments.len() >= 2 && kept_segments.len() >= 5,
        "{forged:#}"
    );
    let path = |s: &serde_json::Value| s["file"]["path"].as_str().unwrap().to_owned();
    let gone_paths: Vec<String> = gone_segments.iter().map(|s| path(s)).collect();
    let kept_seqs: Vec<u64> = kept_segments
        .iter()
        .map(|s| s["seq"].as_u64().unwrap())
        .collect();
    let globals_path = forged["globals"][0]["file"]["path"]
        .as_str()
        .unwrap()
        .to_owned();

    let base_lines = |out: &str| -> Vec<String> {
        out.lines()
            .filter(|l| l.starts_with("keep base backup ") || l.starts_with("would delete base"))
            .map(str::to_owned)
            .collect()
    };
    let keep = |i: usize, why: &str| format!("keep base backup {} ({why})", ids[i]);
    let delete = |i: usize| {
        format!(
            "would delete base backup {} (finished {}: kept by no rule)",
            ids[i],
            finished(i)
        )
    };
    let newest_of = |t: OffsetDateTime, months: usize| {
        format!(
            "the newest of {}, one of the last {months} months",
            year_month(t)
        )
    };

    // The default policy, dry: bases 0 and 2 are not their month's newest and older than
    // 30 days; the segments and globals only base 0 needed go with them.
    let out = run_ok(&cluster, &["prune", "-r", repo_s, "--dry-run"]);
    assert_eq!(
        base_lines(&out),
        [
            delete(0),
            keep(1, &newest_of(times[1], 12)),
            delete(2),
            keep(3, &newest_of(times[3], 12)),
            keep(4, "younger than 30days"),
            keep(5, "the newest base"),
        ],
        "{out}"
    );
    let listed: Vec<String> = out
        .lines()
        .filter_map(|l| l.strip_prefix("would delete segment "))
        .map(|l| l.split(' ').next().unwrap().to_owned())
        .collect();
    assert_eq!(listed, gone_paths, "{out}");
    assert!(
        out.contains(&format!("would delete globals {globals_path} (taken at ")),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "2 base backup(s), {} segment(s), ",
            gone_paths.len()
        )),
        "{out}"
    );

    // Fewer months (and no segment age): base 1's month is the third newest with a base.
    let out = run_ok(
        &cluster,
        &[
            "prune",
            "-r",
            repo_s,
            "--keep-age",
            "30d",
            "--keep-monthly",
            "2",
            "--dry-run",
        ],
    );
    assert_eq!(
        base_lines(&out),
        [
            delete(0),
            delete(1),
            delete(2),
            keep(3, &newest_of(times[3], 2)),
            keep(4, "younger than 30days"),
            keep(5, "the newest base"),
        ],
        "{out}"
    );
    assert!(out.contains("3 base backup(s), "), "{out}");
    assert_eq!(manifest(&repo), forged, "a dry run changed the manifest");

    // The default policy for real.
    let out = run_ok(&cluster, &["prune", "-r", repo_s]);
    assert!(
        out.contains(&format!(
            "deleted 2 base backup(s) and {} segment(s)",
            gone_paths.len()
        )),
        "{out}"
    );
    let after = manifest(&repo);
    let remaining: Vec<&str> = after["bases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["id"].as_str().unwrap())
        .collect();
    assert_eq!(remaining, [&ids[1], &ids[3], &ids[4], &ids[5]], "{after:#}");
    for (i, id) in ids.iter().enumerate() {
        assert_eq!(
            repo.join("bases").join(id).exists(),
            ![0, 2].contains(&i),
            "bases/{id}"
        );
    }
    // One unbroken chain from base 1 on.
    let chain = after["segments"].as_array().unwrap();
    let seqs: Vec<u64> = chain.iter().map(|s| s["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, kept_seqs, "{after:#}");
    for pair in chain.windows(2) {
        assert_eq!(
            pair[1]["seq"].as_u64(),
            pair[0]["seq"].as_u64().map(|s| s + 1)
        );
        assert_eq!(pair[1]["start_lsn"], pair[0]["end_lsn"], "{after:#}");
    }
    assert!(
        lsn(chain[0]["start_lsn"].as_str().unwrap()) <= cps[1],
        "the chain starts after base 1: {after:#}"
    );
    for p in &gone_paths {
        assert!(!repo.join(p).exists(), "{p} is still there");
    }
    assert!(chain.iter().all(|s| repo.join(path(s)).exists()));
    assert_eq!(
        after["globals"].as_array().map_or(0, Vec::len),
        0,
        "{after:#}"
    );
    assert!(!repo.join(&globals_path).exists());
    // The run is on record with what it removed.
    let history = after["prune_history"].as_array().unwrap();
    assert_eq!(history.len(), 1, "{after:#}");
    assert_eq!(history[0]["bases"], serde_json::json!([ids[0], ids[2]]));
    assert_eq!(history[0]["segments"], gone_paths.len());
    assert_eq!(history[0]["globals"], 1);
    assert_eq!(
        history[0]["segments_upto"],
        gone_segments.last().unwrap()["end_lsn"]
    );
    // Nothing more to do, and the repository is sound.
    let out = run_ok(&cluster, &["prune", "-r", repo_s, "--dry-run"]);
    assert!(out.contains("0 base backup(s), 0 segment(s)"), "{out}");
    let out = run_ok(&cluster, &["verify", "-r", repo_s]);
    assert!(out.contains("all good"), "{out}");

    // Restores: the newest state from the newest base and from the oldest kept one, and the
    // oldest kept base's own point in time.
    let out = restore_into(&cluster, repo_s, "dbname=gfs_latest", &[]);
    assert!(
        out.contains(&format!("base backup {} restored", ids[5])),
        "{out}"
    );
    assert_restored_like_source(&cluster, &source, "gfs_latest").await;
    let out = restore_into(&cluster, repo_s, "dbname=gfs_oldest", &["--base", &ids[1]]);
    assert!(
        out.contains(&format!("base backup {} restored", ids[1])),
        "{out}"
    );
    assert_restored_like_source(&cluster, &source, "gfs_oldest").await;
    let cp1 = forged["bases"][1]["consistent_lsn"].as_str().unwrap();
    let out = restore_into(&cluster, repo_s, "dbname=gfs_at_base1", &["--to-lsn", cp1]);
    assert!(
        out.contains(&format!("base backup {} restored", ids[1])),
        "{out}"
    );
    let restored = cluster.connect("gfs_at_base1").await;
    let contents = database_contents(&restored).await;
    assert_eq!(
        at_base1.0,
        contents,
        "contents differ:\n{}",
        line_diff(&at_base1.0, &contents)
    );
    let schema = schema_dump_with(cluster.bindir(), &cluster, "gfs_at_base1", &[]);
    assert_eq!(
        at_base1.1,
        schema,
        "schemas differ:\n{}",
        line_diff(&at_base1.1, &schema)
    );
}
