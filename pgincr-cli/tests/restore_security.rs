//! What a restore trusts: a role that can only run its own DDL must not gain anything when a
//! superuser restores the backup.

mod common;

use common::*;

/// A role sets `search_path = myschema, pg_catalog` for its DDL and defines `myschema.=` for
/// `bigint = integer` (what a decoded `WHERE id = 2` on a bigint key compares), which makes
/// whoever calls it a superuser. Another role's `UPDATE … WHERE id = 2`
/// later in the stream must still compare with the built-in `=`: decoder_sql's DML runs with
/// search_path `pg_catalog`, whatever path the DDL before it captured.
#[tokio::test(flavor = "multi_thread")]
async fn a_captured_search_path_does_not_reach_other_roles_changes() {
    let (cluster, source, repo) = initialised(
        "CREATE ROLE intruder LOGIN;
         CREATE SCHEMA myschema AUTHORIZATION intruder;
         CREATE TABLE accounts (id bigint PRIMARY KEY, owner text);
         INSERT INTO accounts VALUES (1, 'a'), (2, 'b');",
    )
    .await;
    let intruder = cluster.connect_as("postgres", "intruder").await;
    intruder
        .batch_execute(
            "SET search_path = myschema, pg_catalog;
             CREATE FUNCTION myschema.grab(bigint, int) RETURNS bool LANGUAGE plpgsql AS $f$
             BEGIN
               EXECUTE 'ALTER ROLE intruder SUPERUSER';
               RETURN $1 OPERATOR(pg_catalog.=) $2;
             END $f$;
             CREATE OPERATOR myschema.= (LEFTARG = bigint, RIGHTARG = int, FUNCTION = myschema.grab);
             CREATE TABLE myschema.notes (n int);",
        )
        .await
        .unwrap();
    source
        .batch_execute("UPDATE accounts SET owner = 'changed' WHERE id = 2")
        .await
        .unwrap();
    let is_superuser = "SELECT rolsuper::text FROM pg_catalog.pg_roles WHERE rolname = 'intruder'";
    assert_eq!(query_text(&source, is_superuser).await, "false");
    let repo = repo.to_str().unwrap();
    catch_up(&cluster, repo);
    restore_into(&cluster, repo, "dbname=restored", &[]);
    assert_eq!(
        query_text(&source, is_superuser).await,
        "false",
        "the restore ran the intruder's operator as a superuser"
    );
    assert_same_database(&cluster, &source, "restored").await;
}

/// The capture's event triggers fire in the session of whoever runs DDL, superusers included,
/// under that session's search_path. They resolve nothing through it: a superuser's DDL under
/// a path that puts another role's schema (with its own `=` for integers and text) first
/// captures normally and runs none of that role's code, and the role's own DDL too.
#[tokio::test(flavor = "multi_thread")]
async fn the_capture_resolves_nothing_through_the_statements_search_path() {
    let (cluster, source, repo) = initialised(
        "CREATE ROLE intruder LOGIN;
         CREATE SCHEMA myschema AUTHORIZATION intruder;",
    )
    .await;
    let intruder = cluster.connect_as("postgres", "intruder").await;
    intruder
        .batch_execute(
            "CREATE FUNCTION myschema.grab(int, int) RETURNS bool LANGUAGE plpgsql AS $f$
             BEGIN
               EXECUTE 'ALTER ROLE intruder SUPERUSER';
               RETURN $1 OPERATOR(pg_catalog.=) $2;
             END $f$;
             CREATE FUNCTION myschema.grab(text, text) RETURNS bool LANGUAGE plpgsql AS $f$
             BEGIN
               EXECUTE 'ALTER ROLE intruder SUPERUSER';
               RETURN $1 OPERATOR(pg_catalog.=) $2;
             END $f$;
             CREATE OPERATOR myschema.= (LEFTARG = int, RIGHTARG = int, FUNCTION = myschema.grab);
             CREATE OPERATOR myschema.= (LEFTARG = text, RIGHTARG = text, FUNCTION = myschema.grab);
             SET search_path = myschema, pg_catalog;
             CREATE TABLE myschema.own (n int PRIMARY KEY);
             RESET search_path;",
        )
        .await
        .unwrap();
    source
        .batch_execute(
            "SET search_path = myschema, pg_catalog;
             CREATE TABLE public.audit (id int PRIMARY KEY);
             DROP TABLE public.audit;
             CREATE TABLE public.kept (id int PRIMARY KEY, v text);
             CREATE TABLE public.loose (v text);
             RESET search_path;
             INSERT INTO public.kept VALUES (1, 'one');",
        )
        .await
        .unwrap();
    let is_superuser = "SELECT rolsuper::text FROM pg_catalog.pg_roles WHERE rolname = 'intruder'";
    assert_eq!(
        query_text(&source, is_superuser).await,
        "false",
        "the DDL capture ran the intruder's operator as a superuser"
    );
    let repo = repo.to_str().unwrap();
    catch_up(&cluster, repo);
    restore_into(&cluster, repo, "dbname=restored", &[]);
    assert_eq!(query_text(&source, is_superuser).await, "false");
    assert_same_database(&cluster, &source, "restored").await;
}

/// The capture channel: an unprivileged role tries every way it has to put SQL into the
/// stream that a restore would run as superuser, or to keep its DDL out of the stream. None
/// of it works; its own DDL is captured and restored as usual, and verify counts the forged
/// messages.
#[tokio::test(flavor = "multi_thread")]
async fn no_role_can_write_into_the_capture_channel() {
    let (cluster, source, repo) = initialised(
        "CREATE ROLE intruder LOGIN;
         CREATE SCHEMA mine AUTHORIZATION intruder;",
    )
    .await;
    let repo_s = repo.to_str().unwrap();
    let check = run_ok(&cluster, &["check", "-d", "dbname=postgres"]);
    assert!(
        check.contains("ok   DDL capture writes authenticated messages"),
        "{check}"
    );
    assert!(!check.contains("pg_logical_emit_message"), "{check}");
    let intruder = cluster.connect_as("postgres", "intruder").await;
    let attempts = [
        // A DDL message of its own.
        "SELECT pg_logical_emit_message(true, 'ddl', 'ALTER ROLE intruder SUPERUSER')",
        // One that looks tagged.
        "SELECT pg_logical_emit_message(true, 'ddl:00', 'ALTER ROLE intruder SUPERUSER')",
        // The functions that compute the capture's messages: they return them, write nothing.
        "SELECT decoder_sql.capture_ddl_command_end_of('DROP TABLE', 'public', false, \
             'mine.x; ALTER ROLE intruder SUPERUSER')",
        "SELECT decoder_sql.statement_messages('ALTER ROLE intruder SUPERUSER;', 'public')",
        // Settings the capture once read.
        "SET decoder_sql.dropped_permanent = 'mine.x; ALTER ROLE intruder SUPERUSER'; \
         SET decoder_sql.dropped_temp_only = 'off'; DROP TABLE IF EXISTS mine.nothing_here",
        // Sequences' state is read by the function itself.
        "SELECT decoder_sql.snapshot_sequences()",
    ];
    for sql in attempts {
        // Outside an event trigger, capture_ddl_command_end_of fails on
        // pg_event_trigger_ddl_commands(); either way it writes nothing.
        if let Err(e) = intruder.batch_execute(sql).await {
            assert!(sql.contains("capture_ddl_command_end_of"), "{sql}: {e:?}");
        }
    }
    // The event triggers' C functions run only for the event-trigger machinery.
    let err = intruder
        .batch_execute("SELECT decoder_sql.capture_ddl_command_end()")
        .await
        .unwrap_err();
    assert!(
        err.as_db_error().is_some_and(|e| e
            .message()
            .contains("can only be called by an event trigger")),
        "{err:?}"
    );
    // A setting that once kept the capture away from its DDL.
    intruder
        .batch_execute(
            "SET decoder_sql.fixing_identity = 'on';
             CREATE TABLE mine.kept (id int PRIMARY KEY, v text);
             INSERT INTO mine.kept VALUES (1, 'x');",
        )
        .await
        .unwrap();
    catch_up(&cluster, repo_s);

    let verified = run_ok(&cluster, &["verify", "-r", repo_s]);
    assert!(
        verified.contains("WARN 2 DDL message(s) refused by decoder_sql"),
        "{verified}"
    );
    restore_into(&cluster, repo_s, "dbname=restored", &[]);
    let superuser = is_superuser(&source, "intruder").await;
    assert!(!superuser, "a forged message ran at restore");
    assert_same_database(&cluster, &source, "restored").await;
}

/// A role that owns a table enables a trigger ALWAYS: it would fire during the restore's
/// apply (which runs as a superuser under `session_replication_role = replica`) and make its
/// owner a superuser there. The stream switches such triggers off around the changes, so it
/// never fires, and the restored trigger is enabled ALWAYS as on the source.
#[tokio::test(flavor = "multi_thread")]
async fn a_trigger_enabled_always_does_not_fire_at_restore() {
    let (cluster, source, repo) = initialised(
        "CREATE ROLE intruder LOGIN;
         CREATE SCHEMA mine AUTHORIZATION intruder;",
    )
    .await;
    let repo_s = repo.to_str().unwrap();
    let intruder = cluster.connect_as("postgres", "intruder").await;
    intruder
        .batch_execute(
            "CREATE TABLE mine.bait (id int PRIMARY KEY);
             CREATE TABLE mine.hits (n int PRIMARY KEY);
             CREATE FUNCTION mine.grab() RETURNS trigger LANGUAGE plpgsql AS $f$
             BEGIN
               INSERT INTO mine.hits VALUES (NEW.id);
               BEGIN
                 EXECUTE 'ALTER ROLE intruder SUPERUSER';
               EXCEPTION WHEN insufficient_privilege THEN NULL;
               END;
               RETURN NEW;
             END $f$;
             CREATE TRIGGER grab AFTER INSERT ON mine.bait FOR EACH ROW EXECUTE FUNCTION mine.grab();
             ALTER TABLE mine.bait ENABLE ALWAYS TRIGGER grab;
             INSERT INTO mine.bait VALUES (1), (2);",
        )
        .await
        .unwrap();
    catch_up(&cluster, repo_s);
    restore_into(&cluster, repo_s, "dbname=restored", &[]);
    assert!(
        !is_superuser(&source, "intruder").await,
        "the ALWAYS trigger ran at restore"
    );
    // Equal, hits included (once each), and the trigger enabled ALWAYS again.
    assert_same_database(&cluster, &source, "restored").await;
    let restored = cluster.connect("restored").await;
    let state = query_text(
        &restored,
        "SELECT tgenabled::text FROM pg_trigger WHERE tgname = 'grab'",
    )
    .await;
    assert_eq!(state, "A");
}

/// A role with CREATEROLE creates, on the source, roles named like roles the restore target
/// already has, and grants them to itself. Statements on roles replay as their author: on the
/// target the author cannot alter or join the target's own superuser, so nothing changes
/// there (the transactions are reported as left out), and the role of that name is not
/// created again.
#[tokio::test(flavor = "multi_thread")]
async fn a_role_that_creates_roles_cannot_take_the_targets_roles() {
    let (cluster, _source, repo) = initialised("CREATE ROLE mallory LOGIN CREATEROLE;").await;
    let repo_s = repo.to_str().unwrap();
    let mallory = cluster.connect_as("postgres", "mallory").await;
    mallory
        .batch_execute(
            "CREATE ROLE ops_admin NOLOGIN;
             GRANT ops_admin TO mallory;
             ALTER ROLE ops_admin LOGIN CONNECTION LIMIT 3;",
        )
        .await
        .unwrap();
    catch_up(&cluster, repo_s);

    let target = e2e::TestCluster::start();
    let admin = target.connect("postgres").await;
    admin
        .batch_execute("CREATE ROLE ops_admin SUPERUSER NOLOGIN")
        .await
        .unwrap();
    let out = pgincr(&target)
        .args(["restore", "-r", repo_s, "-t", "dbname=restored", "--create"])
        .args(["--on-error=skip", "--reject-file"])
        .arg(target.scratch_dir("rejects").join("rejects.sql"))
        .output()
        .unwrap();
    assert!(out.status.success(), "restore: {}", describe(&out));
    let state = query_text(
        &admin,
        "SELECT format('super=%s login=%s limit=%s members=%s', r.rolsuper, r.rolcanlogin,
                r.rolconnlimit, (SELECT count(*) FROM pg_auth_members m WHERE m.roleid = r.oid))
           FROM pg_roles r WHERE r.rolname = 'ops_admin'",
    )
    .await;
    assert_eq!(state, "super=t login=f limit=-1 members=0");
    assert!(!is_superuser(&admin, "mallory").await);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("failed and were not applied"),
        "{}",
        describe(&out)
    );
}
