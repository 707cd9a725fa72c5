//! A restore is exact whatever the target's defaults: settings that change how the stream's
//! SQL reads (standard_conforming_strings, array_nulls, xmloption) set on the target
//! database, on the restoring role, or through PGOPTIONS do not reach the restore. Each
//! restored database is compared with the source.

mod common;

use common::*;
use e2e::decode::{database_contents, line_diff, schema_dump};

const SETUP: &str = r#"
    CREATE TABLE files (id int PRIMARY KEY, path text, tags text[], doc xml);
    CREATE TABLE notes (id int PRIMARY KEY, note text);
    INSERT INTO files VALUES (1, 'C:\new\table', ARRAY['a', NULL, 'NULL'], 'a<b/>c');
    INSERT INTO notes VALUES (1, 'before \ the stream');"#;

/// Changes that reach the target only through the stream: backslashes, array NULLs, an XML
/// fragment, and a value that ends its literal and runs SQL when backslashes escape quotes.
const CHANGES: &str = r#"
    INSERT INTO files VALUES (2, 'D:\temp\new', ARRAY[NULL, 'x'], 'text<i>fragment</i>');
    UPDATE files SET path = path || '\x' WHERE id = 1;
    INSERT INTO notes VALUES (2, $v$\'); CREATE ROLE evil SUPERUSER; --$v$);"#;

const HOSTILE: &str = "-c standard_conforming_strings=off -c array_nulls=off -c xmloption=document";

#[tokio::test]
async fn target_settings_do_not_change_what_is_restored() {
    let (cluster, source, repo) = initialised(SETUP).await;
    let repo_s = repo.to_str().unwrap();
    source.batch_execute(CHANGES).await.unwrap();
    catch_up(&cluster, repo_s);

    // One statement at a time: CREATE DATABASE cannot run in a multi-statement batch.
    for statement in [
        "CREATE DATABASE by_database",
        "ALTER DATABASE by_database SET standard_conforming_strings = off",
        "ALTER DATABASE by_database SET array_nulls = off",
        "ALTER DATABASE by_database SET xmloption = document",
        "CREATE DATABASE by_pgoptions",
        "CREATE DATABASE by_role",
        "CREATE ROLE restorer SUPERUSER LOGIN",
        "ALTER ROLE restorer SET standard_conforming_strings = off",
        "ALTER ROLE restorer SET array_nulls = off",
        "ALTER ROLE restorer SET xmloption = document",
    ] {
        source.batch_execute(statement).await.unwrap();
    }
    let restore = |target: &str, env: &[(&str, &str)]| {
        succeeds(&cluster, &["restore", "-r", repo_s, "-t", target], env)
    };
    restore("dbname=by_database", &[]);
    restore("dbname=by_pgoptions", &[("PGOPTIONS", HOSTILE)]);
    restore("dbname=by_role user=restorer", &[]);

    for db in ["by_database", "by_pgoptions", "by_role"] {
        let restored = cluster.connect(db).await;
        let (a, b) = (
            database_contents(&source).await,
            database_contents(&restored).await,
        );
        assert_eq!(a, b, "{db}: contents differ:\n{}", line_diff(&a, &b));
        // pg_dump's header of SET lines follows the database's standard_conforming_strings.
        let schema = |name: &str| {
            schema_dump(&cluster, name)
                .lines()
                .filter(|l| !l.starts_with("SET "))
                .collect::<Vec<_>>()
                .join("\n")
        };
        let (a, b) = (schema("postgres"), schema(db));
        assert_eq!(a, b, "{db}: schemas differ:\n{}", line_diff(&a, &b));
        let path = query_text(&restored, "SELECT path FROM files WHERE id = 1").await;
        assert_eq!(path, r"C:\new\table\x", "{db}");
    }
    let evil = query_text(
        &source,
        "SELECT count(*)::text FROM pg_roles WHERE rolname = 'evil'",
    )
    .await;
    assert_eq!(evil, "0", "a value of the stream ran as SQL");
}
