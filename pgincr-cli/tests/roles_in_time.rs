//! Owners and roles in time: an application role that owns its schema runs its migrations
//! while the stream runs, using roles and a tablespace created after the base. Restored into a
//! fresh cluster that has only what the base's globals held (the tablespace moved with
//! `--tablespace-map`), the database is equal in `pg_dump` (owners, ACLs, default privileges
//! and tablespaces included) and the roles involved are equal in attributes, memberships and
//! settings.

mod common;

use common::*;
use e2e::TestCluster;
use e2e::decode::{database_contents, line_diff, schema_dump_with};
use tokio_postgres::Client;

const ROLES: &str = "'app_owner', 'late_reader', 'late_writer', 'later_still'";

async fn roles(client: &Client) -> String {
    query_text(
        client,
        &format!(
            "SELECT string_agg(format('%s login=%s createdb=%s connlimit=%s config=%s', rolname,
                    rolcanlogin, rolcreatedb, rolconnlimit, rolconfig), E'\\n' ORDER BY rolname)
               FROM pg_roles WHERE rolname IN ({ROLES})"
        ),
    )
    .await
        + &query_text(
            client,
            &format!(
                "SELECT string_agg(r.rolname || ' in ' || g.rolname, E'\\n' ORDER BY 1)
                   FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.member
                   JOIN pg_roles g ON g.oid = m.roleid WHERE r.rolname IN ({ROLES})"
            ),
        )
        .await
}

#[tokio::test(flavor = "multi_thread")]
async fn an_application_role_migrates_with_roles_made_after_the_base() {
    let (cluster, source, repo) = initialised(
        "CREATE ROLE app_owner LOGIN;
         CREATE SCHEMA shop AUTHORIZATION app_owner;",
    )
    .await;
    let repo_s = repo.to_str().unwrap();
    // After the base: new roles, a membership, a role setting, a tablespace.
    let space = cluster.server_dir("app_space");
    source
        .batch_execute(
            "CREATE ROLE late_reader;
             CREATE ROLE late_writer LOGIN CREATEDB CONNECTION LIMIT 5;
             GRANT late_reader TO late_writer;
             ALTER ROLE late_writer SET work_mem = '8MB';",
        )
        .await
        .unwrap();
    // (A statement of its own: CREATE TABLESPACE cannot run in a transaction block.)
    source
        .batch_execute(&format!(
            "CREATE TABLESPACE app_space OWNER app_owner LOCATION '{}'",
            space.display()
        ))
        .await
        .unwrap();
    catch_up(&cluster, repo_s);
    // The application's migration, as its own role, using those roles.
    let app = cluster.connect_as("postgres", "app_owner").await;
    app.batch_execute(
        "ALTER DEFAULT PRIVILEGES IN SCHEMA shop GRANT SELECT ON TABLES TO late_reader;
         CREATE TABLE shop.items (id int PRIMARY KEY, name text, owner_name text DEFAULT current_user);
         INSERT INTO shop.items (id, name) VALUES (1, 'a'), (2, 'b');
         GRANT INSERT ON shop.items TO late_writer;
         CREATE FUNCTION shop.item_count() RETURNS bigint LANGUAGE sql AS 'SELECT count(*) FROM shop.items';
         CREATE VIEW shop.item_names AS SELECT name FROM shop.items;
         CREATE TABLE shop.archive (id int PRIMARY KEY) TABLESPACE app_space;
         INSERT INTO shop.archive VALUES (7);",
    )
    .await
    .unwrap();
    // A later change to a role made after the base, and one more role.
    source
        .batch_execute(
            "ALTER ROLE late_writer NOCREATEDB;
             CREATE ROLE later_still;",
        )
        .await
        .unwrap();
    catch_up(&cluster, repo_s);
    app.batch_execute(
        "CREATE TABLE shop.more (id int PRIMARY KEY);
         GRANT SELECT ON shop.more TO later_still;",
    )
    .await
    .unwrap();
    catch_up(&cluster, repo_s);
    let manifest = manifest(&repo);
    assert_eq!(
        manifest["globals"].as_array().map_or(0, Vec::len),
        2,
        "one globals snapshot per change: {manifest:#}"
    );

    let (target, moved, log) = restore_moving_tablespace(repo_s, &space);
    assert!(
        log.contains("applied 2 later snapshot(s) of roles and tablespaces"),
        "{log}"
    );
    let (restored, schema) = assert_restored_equal(&cluster, &source, &target).await;
    assert!(
        schema.contains("ALTER TABLE shop.items OWNER TO app_owner;"),
        "{schema}"
    );
    assert_eq!(roles(&source).await, roles(&restored).await);
    let location = query_text(
        &restored,
        "SELECT pg_tablespace_location(oid) FROM pg_tablespace WHERE spcname = 'app_space'",
    )
    .await;
    assert_eq!(location, moved.display().to_string());
}

/// `pgincr restore --create` of the repository into database `restored` of a fresh cluster,
/// with the tablespace directory `space` moved into that cluster's own directory; returns the
/// cluster, the new directory and the restore's output.
fn restore_moving_tablespace(
    repo: &str,
    space: &std::path::Path,
) -> (TestCluster, std::path::PathBuf, String) {
    let target = TestCluster::start();
    let moved = target.server_dir("space_moved");
    let map = format!("{}={}", space.display(), moved.display());
    let out = pgincr(&target)
        .args(["restore", "-r", repo, "-t", "dbname=restored", "--create"])
        .args(["--tablespace-map", &map])
        .output()
        .unwrap();
    assert!(out.status.success(), "restore: {}", describe(&out));
    let log = String::from_utf8_lossy(&out.stdout).into_owned();
    (target, moved, log)
}

/// Asserts that database `restored` of `target` equals `postgres` of `cluster` in schema
/// (owners, ACLs, default privileges) and contents; returns a connection to it and the schema.
async fn assert_restored_equal(
    cluster: &TestCluster,
    source: &Client,
    target: &TestCluster,
) -> (Client, String) {
    let restored = target.connect("restored").await;
    let (a, b) = (
        schema_dump_with(cluster.bindir(), cluster, "postgres", &[]),
        schema_dump_with(cluster.bindir(), target, "restored", &[]),
    );
    assert!(a == b, "schemas differ:\n{}", line_diff(&a, &b));
    let (c, d) = (
        database_contents(source).await,
        database_contents(&restored).await,
    );
    assert!(c == d, "contents differ:\n{}", line_diff(&c, &d));
    (restored, a)
}

/// Owner, privileges, settings (but decoder_sql's preload) and comment of the database.
async fn database_properties(client: &Client) -> String {
    query_text(
        client,
        "SELECT concat_ws(E'\n', pg_get_userbyid(d.datdba), d.datacl::text,
                shobj_description(d.oid, 'pg_database'),
                (SELECT string_agg(coalesce(r.rolname, '*') || ': ' || c, E'\n' ORDER BY 1)
                   FROM pg_db_role_setting s LEFT JOIN pg_roles r ON r.oid = s.setrole,
                        unnest(s.setconfig) c
                  WHERE s.setdatabase = d.oid AND c NOT LIKE '%preload_libraries%'))
           FROM pg_database d WHERE d.datname = current_database()",
    )
    .await
}

/// The whole repository as text: every segment, decompressed, and the base's globals.
fn repository_text(repo: &std::path::Path) -> String {
    let out = std::process::Command::new("bash")
        .args([
            "-c",
            "for f in segments/*.sql.zst globals/* bases/*/*.zst; do \
               [ -e \"$f\" ] && zstd -dcq \"$f\" 2>/dev/null; done; cat segments/open.sql 2>/dev/null; true",
        ])
        .current_dir(repo)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Roles that live only between two globals snapshots replay from the stream, where the
/// utility hook writes every CREATE/ALTER ROLE and GRANT/REVOKE of roles, without passwords;
/// DDL after SET ROLE replays with the same SESSION_USER.
#[tokio::test(flavor = "multi_thread")]
async fn short_lived_roles_and_session_user_replay_from_the_stream() {
    let (cluster, source, repo) = initialised(
        "CREATE ROLE app_owner LOGIN CREATEROLE;
         CREATE SCHEMA shop AUTHORIZATION app_owner;
         GRANT CREATE ON DATABASE postgres TO app_owner;
         ALTER DATABASE postgres SET work_mem = '3MB';
         COMMENT ON DATABASE postgres IS 'the shop''s database';",
    )
    .await;
    let repo_s = repo.to_str().unwrap();
    catch_up(&cluster, repo_s);
    let app = cluster.connect_as("postgres", "app_owner").await;
    // Made, used and dropped again before any snapshot could see them, by the application's
    // own role (CREATEROLE), from a function as well as at top level.
    app.batch_execute(
        "CREATE ROLE mid_owner NOLOGIN PASSWORD 'hunter2-never-written';
         ALTER ROLE mid_owner ENCRYPTED PASSWORD 'hunter3-never-written';
         CREATE ROLE shop_admin;
         GRANT USAGE, CREATE ON SCHEMA shop TO mid_owner, shop_admin;
         GRANT mid_owner, shop_admin TO app_owner;
         DO $$ BEGIN EXECUTE 'CREATE ROLE nested_reader'; END $$;
         GRANT nested_reader TO mid_owner;
         SET ROLE mid_owner;
         CREATE TABLE shop.mid (id int PRIMARY KEY, made_by text DEFAULT current_user);
         INSERT INTO shop.mid (id) VALUES (1), (2);
         GRANT SELECT ON shop.mid TO nested_reader;
         RESET ROLE;
         ALTER TABLE shop.mid OWNER TO app_owner;
         REVOKE SELECT ON shop.mid FROM nested_reader;
         REVOKE USAGE, CREATE ON SCHEMA shop FROM mid_owner;
         REVOKE nested_reader FROM mid_owner;
         DROP ROLE nested_reader;
         REVOKE mid_owner FROM app_owner;
         DROP ROLE mid_owner;",
    )
    .await
    .unwrap();
    // A tablespace that lives between two snapshots: created (outside any transaction),
    // renamed, granted, used and dropped again. (A session begun after init: the capture of
    // statements event triggers never see needs decoder_sql loaded in the session.)
    let admin = cluster.connect("postgres").await;
    let space = cluster.server_dir("mid_space");
    admin
        .batch_execute(&format!(
            "CREATE TABLESPACE mid_space OWNER app_owner LOCATION '{}'",
            space.display()
        ))
        .await
        .unwrap();
    app.batch_execute(
        "ALTER TABLESPACE mid_space RENAME TO mid_space_renamed;
         GRANT CREATE ON TABLESPACE mid_space_renamed TO shop_admin;
         SET ROLE shop_admin;
         CREATE TABLE shop.spaced (id int PRIMARY KEY) TABLESPACE mid_space_renamed;
         INSERT INTO shop.spaced VALUES (1);
         RESET ROLE;
         ALTER TABLE shop.spaced SET TABLESPACE pg_default;
         REVOKE CREATE ON TABLESPACE mid_space_renamed FROM shop_admin;",
    )
    .await
    .unwrap();
    admin
        .batch_execute("DROP TABLESPACE mid_space_renamed")
        .await
        .unwrap();
    // The database's own privileges and settings, naming a role made after the base.
    admin
        .batch_execute(
            "GRANT TEMPORARY ON DATABASE postgres TO shop_admin WITH GRANT OPTION;
             ALTER DATABASE postgres SET statement_timeout = '1h';
             ALTER ROLE shop_admin IN DATABASE postgres SET search_path = shop, public;
             ALTER DATABASE postgres RESET work_mem;",
        )
        .await
        .unwrap();
    // SESSION_USER after SET ROLE: the grant goes to the session's login role.
    app.batch_execute(
        "SET ROLE shop_admin;
         CREATE TABLE shop.by_admin (id int PRIMARY KEY);
         GRANT SELECT ON shop.by_admin TO SESSION_USER;
         RESET ROLE;",
    )
    .await
    .unwrap();
    catch_up(&cluster, repo_s);
    let text = repository_text(&repo);
    assert!(text.contains("CREATE ROLE mid_owner"), "{text}");
    assert!(
        !text.contains("never-written"),
        "a password reached the repository"
    );

    let (target, moved, log) = restore_moving_tablespace(repo_s, &space);
    assert!(
        log.contains("1 tablespace(s) created from the stream"),
        "{log}"
    );
    let (restored, schema) = assert_restored_equal(&cluster, &source, &target).await;
    assert!(
        schema.contains("GRANT SELECT ON TABLE shop.by_admin TO app_owner;"),
        "{schema}"
    );
    assert_eq!(
        database_properties(&source).await,
        database_properties(&restored).await
    );
    // A restore creates roles but never drops them.
    let kept = query_text(
        &restored,
        "SELECT string_agg(rolname, ',' ORDER BY rolname) FROM pg_roles
          WHERE rolname IN ('mid_owner', 'nested_reader', 'shop_admin')",
    )
    .await;
    assert_eq!(kept, "mid_owner,nested_reader,shop_admin");
    let location = query_text(
        &restored,
        "SELECT pg_tablespace_location(oid) FROM pg_tablespace WHERE spcname = 'mid_space_renamed'",
    )
    .await;
    assert_eq!(location, moved.display().to_string());
}

/// Roles keep the source's order of events although the restore makes them from a later
/// globals snapshot before the replay: a role created as a superuser, given a foreign-data
/// wrapper (only a superuser may own one) and then made an ordinary role replays, where the
/// snapshot already has it ordinary; and a change made where the capture cannot see it (in
/// another database), after the stream's own change to the same role, is the one the
/// restore ends with.
#[tokio::test(flavor = "multi_thread")]
async fn roles_follow_the_stream_and_its_snapshots_in_order() {
    let (cluster, source, repo) = initialised("CREATE ROLE limited;").await;
    let repo_s = repo.to_str().unwrap();
    let captured = cluster.connect("postgres").await; // begun after init: decoder_sql loaded
    captured
        .batch_execute(
            "CREATE ROLE wrapper_owner SUPERUSER;
             CREATE FOREIGN DATA WRAPPER wrapped;
             ALTER FOREIGN DATA WRAPPER wrapped OWNER TO wrapper_owner;",
        )
        .await
        .unwrap();
    captured
        .batch_execute(
            "ALTER ROLE wrapper_owner NOSUPERUSER CONNECTION LIMIT 3;
             ALTER ROLE limited CONNECTION LIMIT 5;",
        )
        .await
        .unwrap();
    captured
        .batch_execute("CREATE DATABASE elsewhere")
        .await
        .unwrap();
    let elsewhere = cluster.connect("elsewhere").await;
    elsewhere
        .batch_execute("ALTER ROLE limited CONNECTION LIMIT 10")
        .await
        .unwrap();
    catch_up(&cluster, repo_s);
    assert_eq!(
        manifest(&repo)["globals"].as_array().map_or(0, Vec::len),
        1,
        "one globals snapshot, taken after all of it"
    );
    let text = repository_text(&repo);
    assert!(text.contains("CONNECTION LIMIT 5"), "{text}");
    assert!(
        !text.contains("CONNECTION LIMIT 10"),
        "captured elsewhere: {text}"
    );

    let target = TestCluster::start();
    let log = restore_into(&target, repo_s, "dbname=restored", &[]);
    assert!(
        log.contains("1 role(s) given the attributes of their CREATE ROLE in the stream (they existed already, from a later snapshot): wrapper_owner"),
        "{log}"
    );
    assert!(
        log.contains(
            "1 snapshot(s) of roles and tablespaces applied again at their place in the stream"
        ),
        "{log}"
    );
    let (restored, schema) = assert_restored_equal(&cluster, &source, &target).await;
    assert!(
        schema.contains("ALTER FOREIGN DATA WRAPPER wrapped OWNER TO wrapper_owner;"),
        "{schema}"
    );
    let attributes =
        "SELECT string_agg(format('%s super=%s limit=%s', rolname, rolsuper, rolconnlimit),
                              ', ' ORDER BY rolname)
                         FROM pg_roles WHERE rolname IN ('wrapper_owner', 'limited')";
    let expected = query_text(&source, attributes).await;
    assert_eq!(
        expected,
        "limited super=f limit=10, wrapper_owner super=f limit=3"
    );
    assert_eq!(query_text(&restored, attributes).await, expected);
}
