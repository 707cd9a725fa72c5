//! Loading a base backup into the target: globals (roles, tablespaces), then the dump.
//!
//! The dump is all or nothing. psql gets `BEGIN`, the dump, the creation of the restore's
//! replication origin and a final `COMMIT` that is written only once the whole dump was read.
//! If pgincr dies on the way, psql reaches the end of its input inside the open transaction
//! and the server rolls it back: the target stays empty and a new run starts over. (psql's
//! `--single-transaction` would commit at end of input, leaving half a dump behind.)
//!
//! A directory-format base is loaded by `pg_restore --jobs N`, whose workers cannot share
//! one transaction. It goes into the target that was just found empty, and the origin is
//! created (with the clean-up of decoder_sql's schema, in one transaction) only after
//! pg_restore succeeded: the origin exists exactly when the whole base is in. A restore
//! interrupted before that leaves a target holding part of the base and no origin, which
//! the next restore refuses as not empty; the target must be dropped and created again.

use super::{origin, session};
use crate::pg::{Endpoint, compat};
use crate::repo::{self, Base, DumpFormat, Repo};
use crate::{Error, Result, progress};
use sqlgen::ident::quote_ident;
use std::io::{BufRead, BufReader, Write};
use std::process::Stdio;
use tokio::io::AsyncWriteExt;
use tokio_postgres::Client;

/// Globals with the lines that would change roles in `leave_alone` left out (their CREATE
/// ROLE, every ALTER ROLE and COMMENT ON ROLE of them, and grants of membership *in* them,
/// which would hand their rights to roles of the backup), the CREATE ROLE lines of roles in
/// `present` left out (and the `\restrict` guards for a psql that predates them). Returns the
/// lines kept and the roles of `leave_alone` met.
pub fn filter_globals(
    sql: &str,
    leave_alone: &[String],
    present: &[String],
    psql_knows_restrict: bool,
) -> (String, Vec<String>) {
    let mut kept = String::with_capacity(sql.len());
    let mut skipped = Vec::new();
    // The role named at the start of `rest`, if it is one of `roles` and followed by one of
    // `next`.
    let named = |rest: &str, roles: &[String], next: &[&str]| -> Option<String> {
        roles
            .iter()
            .find(|r| {
                let q = quote_ident(r);
                rest.strip_prefix(q.as_str())
                    .is_some_and(|after| next.iter().any(|n| after.starts_with(n)))
            })
            .cloned()
    };
    let names = |rest: &str, roles: &[String]| named(rest, roles, &[";", " WITH "]);
    for line in sql.lines() {
        if is_restrict_guard(line) && !psql_knows_restrict {
            continue;
        }
        let create = line.strip_prefix("CREATE ROLE ");
        let role_line = create.or_else(|| line.strip_prefix("ALTER ROLE "));
        // `ALTER ROLE r SET …`, `ALTER ROLE r IN DATABASE …`, `COMMENT ON ROLE r IS …`,
        // `GRANT r TO member …` (a membership grant names no object with ON).
        let other_change = line
            .strip_prefix("ALTER ROLE ")
            .and_then(|rest| named(rest, leave_alone, &[" "]))
            .or_else(|| {
                line.strip_prefix("COMMENT ON ROLE ")
                    .and_then(|rest| named(rest, leave_alone, &[" IS "]))
            })
            .or_else(|| {
                line.strip_prefix("GRANT ")
                    .and_then(|rest| named(rest, leave_alone, &[" TO "]))
            });
        if let Some(r) = role_line
            .and_then(|rest| names(rest, leave_alone))
            .or(other_change)
        {
            if !skipped.contains(&r) {
                skipped.push(r);
            }
            continue;
        }
        if create.and_then(|rest| names(rest, present)).is_some() {
            continue;
        }
        kept.push_str(line);
        kept.push('\n');
    }
    (kept, skipped)
}

/// pg_dumpall's `CREATE TABLESPACE name OWNER role LOCATION '/dir';` lines with a location
/// at or under a mapped OLD directory moved under its NEW one (the first match applies).
pub fn map_tablespace_locations(sql: &str, map: &[(String, String)]) -> String {
    if map.is_empty() {
        return sql.to_owned();
    }
    let mut out = String::with_capacity(sql.len());
    for line in sql.lines() {
        out.push_str(&map_location(line, map).unwrap_or_else(|| line.to_owned()));
        out.push('\n');
    }
    out
}

fn map_location(line: &str, map: &[(String, String)]) -> Option<String> {
    if !line.starts_with("CREATE TABLESPACE ") {
        return None;
    }
    let at = line.find(" LOCATION '")? + " LOCATION '".len();
    // The literal ends at the first quote that is not doubled.
    let rest = &line[at..];
    let mut end = None;
    let mut chars = rest.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        if c == '\'' {
            if chars.peek().is_some_and(|&(_, n)| n == '\'') {
                chars.next();
            } else {
                end = Some(i);
                break;
            }
        }
    }
    let end = end?;
    let location = rest[..end].replace("''", "'");
    let moved = map.iter().find_map(|(old, new)| {
        let under = location.strip_prefix(old.as_str())?;
        (under.is_empty() || under.starts_with('/')).then(|| format!("{new}{under}"))
    })?;
    Some(format!(
        "{}{}{}",
        &line[..at],
        moved.replace('\'', "''"),
        &rest[end..]
    ))
}

async fn role_names(client: &Client) -> Result<Vec<String>> {
    names(client, "SELECT rolname::text FROM pg_catalog.pg_roles").await
}

async fn tablespace_names(client: &Client) -> Result<Vec<String>> {
    names(client, "SELECT spcname::text FROM pg_catalog.pg_tablespace").await
}

/// The one text column of `query`'s rows.
async fn names(client: &Client, query: &str) -> Result<Vec<String>> {
    Ok(client
        .query(query, &[])
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect())
}

/// Applies `files` (globals dumps, oldest first: the base's, then the stream's later
/// snapshots) to the target's cluster. Roles the target had before (`leave_alone`) are left
/// unchanged; roles an earlier file created get the later files' attributes and memberships.
/// Roles are never dropped, and a tablespace the target has is not created again. Returns the
/// roles of the files that were left unchanged.
pub async fn restore_globals(
    repo: &Repo,
    files: &[&repo::FileEntry],
    leave_alone: &[String],
    tablespace_map: &[(String, String)],
    target: &Endpoint,
    client: &Client,
    server_version_num: i32,
) -> Result<Vec<String>> {
    let psql_version = target.tools.version("psql").await?;
    let mut left_alone: Vec<String> = Vec::new();
    for file in files {
        let mut sql = String::new();
        std::io::Read::read_to_string(&mut repo.open_sql(&file.path)?, &mut sql)
            .map_err(Error::io(format!("reading {}", file.path)))?;
        let present = role_names(client).await?;
        let sql = map_tablespace_locations(&sql, tablespace_map);
        let sql = without_tablespaces(&sql, &tablespace_names(client).await?);
        let (sql, skipped) = filter_globals(
            &sql,
            leave_alone,
            &present,
            compat::psql_understands_restrict(psql_version),
        );
        for r in skipped {
            if !left_alone.contains(&r) {
                left_alone.push(r);
            }
        }
        apply_globals(target, &sql, server_version_num).await?;
    }
    Ok(left_alone)
}

/// Prints the roles [`restore_globals`] left unchanged.
pub fn report_left_alone(roles: &[String]) {
    if !roles.is_empty() {
        println!(
            "roles that already exist were left unchanged: {}",
            roles.join(", ")
        );
    }
}

/// pg_dumpall's text without the `CREATE TABLESPACE` lines of tablespaces in `present` (the
/// lines after one, on its owner, options and privileges, may run again).
pub fn without_tablespaces(sql: &str, present: &[String]) -> String {
    let mut out = String::with_capacity(sql.len());
    for line in sql.lines() {
        let exists = line.strip_prefix("CREATE TABLESPACE ").is_some_and(|rest| {
            present.iter().any(|t| {
                rest.strip_prefix(quote_ident(t).as_str())
                    .is_some_and(|after| after.starts_with(' '))
            })
        });
        if !exists {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// The roles of the target's cluster before the restore touches it.
pub async fn existing_roles(client: &Client) -> Result<Vec<String>> {
    role_names(client).await
}

async fn apply_globals(target: &Endpoint, sql: &str, server_version_num: i32) -> Result<()> {
    let mut file = tempfile::NamedTempFile::new()?;
    file.write_all(session::base_settings(server_version_num).as_bytes())?;
    file.write_all(sql.as_bytes())?;
    // Not ON_ERROR_STOP: a tablespace directory or role setting the target cannot take
    // is reported, and the restore goes on.
    let out = target
        .tools
        .command("psql")
        .args(["-X", "-q", "-v", "ON_ERROR_STOP=0", "-d"])
        .arg(&target.public_dsn)
        .arg("-f")
        .arg(file.path())
        .stdout(Stdio::null())
        .spawn()?;
    let output = out.child.wait_with_output().await?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    for line in stderr.lines().filter(|l| l.contains("ERROR")) {
        tracing::warn!("globals: {line}");
    }
    Ok(())
}

/// Lines of a base dump that must not run on the target: decoder_sql's own extension, and
/// the `\restrict`/`\unrestrict` guards when the target's psql predates them (they only
/// restrict psql meta-commands, which an older psql reads as errors).
pub fn keep_dump_line(line: &str, psql_knows_restrict: bool) -> bool {
    !(is_decoder_sql_extension(line)
        || line.starts_with("COMMENT ON EXTENSION decoder_sql ")
        || (is_restrict_guard(line) && !psql_knows_restrict))
}

fn is_decoder_sql_extension(line: &str) -> bool {
    line.starts_with("CREATE EXTENSION IF NOT EXISTS decoder_sql ")
}

/// pg_dump's and pg_dumpall's `\restrict KEY` / `\unrestrict KEY` lines.
fn is_restrict_guard(line: &str) -> bool {
    line.starts_with("\\restrict ") || line.starts_with("\\unrestrict ")
}

/// Follows a plain dump line by line to keep it inside the restore's one transaction:
/// pg_dump writes large objects' data between its own `BEGIN;` and `COMMIT;`, which would
/// commit the half loaded so far. Those two lines are dropped; COPY data is never looked at.
#[derive(Debug, Default)]
pub struct DumpFilter {
    in_copy_data: bool,
    in_large_objects: bool,
    /// The dump created decoder_sql's extension in its own schema, left behind empty.
    pub saw_decoder_sql: bool,
}

impl DumpFilter {
    /// Whether `line` (with its newline) goes to psql.
    pub fn keep(&mut self, line: &str, psql_knows_restrict: bool) -> bool {
        let text = line.trim_end_matches(['\n', '\r']);
        if self.in_copy_data {
            self.in_copy_data = text != "\\.";
            return true;
        }
        if text.starts_with("COPY ") && text.ends_with(" FROM stdin;") {
            self.in_copy_data = true;
            return true;
        }
        if text.starts_with("-- Name: ") || text.starts_with("-- Data for Name: ") {
            self.in_large_objects = text.starts_with("-- Data for Name: ")
                && (text.contains("; Type: BLOB") || text.contains("; Type: LARGE OBJECT"));
        }
        if self.in_large_objects && (text == "BEGIN;" || text == "COMMIT;") {
            return false;
        }
        if is_decoder_sql_extension(text) && text.contains(" WITH SCHEMA decoder_sql;") {
            self.saw_decoder_sql = true;
        }
        keep_dump_line(text, psql_knows_restrict)
    }
}

/// Drops the schema decoder_sql's extension lived in, unless something else lives there.
const DROP_DECODER_SQL_SCHEMA: &str = "DO $pgincr$ BEGIN
  DROP SCHEMA decoder_sql;
EXCEPTION WHEN dependent_objects_still_exist OR invalid_schema_name THEN NULL;
END $pgincr$;
";

/// Loads the base dump; a directory-format base with `jobs` parallel pg_restore workers.
pub async fn restore_dump(
    repo: &Repo,
    base: &Base,
    target: &Endpoint,
    server_version_num: i32,
    origin_name: &str,
    jobs: u32,
) -> Result<()> {
    let jobs = jobs.max(1);
    match base.format {
        DumpFormat::Directory => {
            return restore_directory(repo, base, target, server_version_num, origin_name, jobs)
                .await;
        }
        DumpFormat::Plain if jobs > 1 => println!(
            "--jobs {jobs} is ignored: base {} is a plain dump, loaded by one psql in one transaction",
            base.id
        ),
        DumpFormat::Plain => {}
    }
    let psql_version = target.tools.version("psql").await?;
    let psql_knows_restrict = compat::psql_understands_restrict(psql_version);
    let mut psql = target
        .tools
        .command("psql")
        .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-d"])
        .arg(&target.public_dsn)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()?;
    let mut stdin = psql.child.stdin.take().expect("piped stdin");
    let bar = progress::bytes_bar(base.dump.sql_bytes);
    bar.set_message("base dump");
    let mut reader = BufReader::with_capacity(1 << 16, repo.open_sql(&base.dump.path)?);
    let mut filter = DumpFilter::default();
    let mut line = Vec::new();
    let mut chunk = Vec::with_capacity(1 << 18);
    chunk.extend_from_slice(b"BEGIN;\n");
    chunk.extend_from_slice(session::base_settings(server_version_num).as_bytes());
    let mut write_failed = false;
    loop {
        line.clear();
        let n = tokio::task::block_in_place(|| reader.read_until(b'\n', &mut line))
            .map_err(Error::io(format!("reading {}", base.dump.path)))?;
        // The filter looks at the starts and ends of lines only; a long COPY row is cut
        // short for it.
        if n > 0 && filter.keep(&lossy_head_and_tail(&line), psql_knows_restrict) {
            chunk.extend_from_slice(&line);
        }
        if n == 0 {
            // Everything was read: now, and only now, the transaction may commit.
            if filter.saw_decoder_sql {
                chunk.extend_from_slice(DROP_DECODER_SQL_SCHEMA.as_bytes());
            }
            chunk.extend_from_slice(origin::create_statement(origin_name).as_bytes());
            chunk.extend_from_slice(b"COMMIT;\n");
        }
        if chunk.len() >= 1 << 18 || (n == 0 && !chunk.is_empty()) {
            if stdin.write_all(&chunk).await.is_err() {
                // psql stopped (ON_ERROR_STOP); its stderr says why.
                write_failed = true;
                break;
            }
            bar.inc(chunk.len() as u64);
            chunk.clear();
        }
        if n == 0 {
            break;
        }
    }
    drop(stdin);
    let result = psql.wait().await;
    bar.finish_and_clear();
    result.map_err(|e| match e {
        Error::Tool {
            program,
            status,
            stderr_tail,
        } => Error::Tool {
            program,
            status,
            stderr_tail: format!(
                "{stderr_tail}\n(restoring {}; the target was left unchanged)",
                base.dump.path
            ),
        },
        other => other,
    })?;
    if write_failed {
        return Err(Error::Invalid("psql stopped reading the base dump".into()));
    }
    Ok(())
}

/// Entries of a directory-format dump's table of contents (`pg_restore --list`) that must
/// not run on the target: decoder_sql's extension and its comment. Returns the list to give
/// `pg_restore --use-list` and whether the extension was in it.
pub fn filter_toc_list(list: &str) -> (String, bool) {
    let mut kept = String::with_capacity(list.len());
    let mut saw_decoder_sql = false;
    for line in list.lines() {
        // "<dump id>; <catalog oid> <oid> <type> <schema> <name> <owner>"
        let entry = line
            .split_once("; ")
            .filter(|(id, _)| !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|(_, rest)| rest.splitn(3, ' ').nth(2));
        let is = |prefix: &str| {
            entry.is_some_and(|e| {
                e.strip_prefix(prefix)
                    .is_some_and(|after| after.is_empty() || after.starts_with(' '))
            })
        };
        if is("EXTENSION - decoder_sql") {
            saw_decoder_sql = true;
            continue;
        }
        if is("COMMENT - EXTENSION decoder_sql") {
            continue;
        }
        kept.push_str(line);
        kept.push('\n');
    }
    (kept, saw_decoder_sql)
}

/// Loads a directory-format base with `pg_restore --jobs`, then creates the origin.
async fn restore_directory(
    repo: &Repo,
    base: &Base,
    target: &Endpoint,
    server_version_num: i32,
    origin_name: &str,
    jobs: u32,
) -> Result<()> {
    let dir = repo.path(&base.dump.path);
    let dir = dir.parent().expect("toc.dat lies in the dump's directory");
    let list = target
        .tools
        .command("pg_restore")
        .arg("--list")
        .arg(dir)
        .output()
        .await?;
    let (list, saw_decoder_sql) = filter_toc_list(&String::from_utf8_lossy(&list));
    let mut list_file = tempfile::NamedTempFile::new()?;
    list_file.write_all(list.as_bytes())?;
    list_file.flush()?;
    let bar = progress::bytes_spinner(&format!("base dump (pg_restore, {jobs} job(s))"));
    let restored = target
        .tools
        .command("pg_restore")
        .args(["--no-password", "--exit-on-error"])
        .arg(format!("--jobs={jobs}"))
        .arg("--use-list")
        .arg(list_file.path())
        .arg("-d")
        .arg(&target.public_dsn)
        .arg(dir)
        .env("PGOPTIONS", session::base_pgoptions(server_version_num))
        .stdout(Stdio::null())
        .output()
        .await;
    bar.finish_and_clear();
    let partial = |detail: String| {
        format!(
            "{detail}\n(restoring the directory-format base {}: the target now holds part of \
             it and no restore origin, so a new restore refuses it; drop the target database, \
             create it again (or use --create) and run the restore again)",
            base.id
        )
    };
    restored.map_err(|e| match e {
        Error::Tool {
            program,
            status,
            stderr_tail,
        } => Error::Tool {
            program,
            status,
            stderr_tail: partial(stderr_tail),
        },
        other => Error::Invalid(partial(other.to_string())),
    })?;
    let mut finish = String::from("BEGIN;\n");
    if saw_decoder_sql {
        finish.push_str(DROP_DECODER_SQL_SCHEMA);
    }
    finish.push_str(&origin::create_statement(origin_name));
    finish.push_str("COMMIT;\n");
    target.connect().await?.batch_execute(&finish).await?;
    Ok(())
}

/// The first and last bytes of a line as text: enough for [`DumpFilter`], which looks at
/// prefixes and at whole short lines.
fn lossy_head_and_tail(line: &[u8]) -> String {
    const KEEP: usize = 256;
    if line.len() <= 2 * KEEP {
        return String::from_utf8_lossy(line).into_owned();
    }
    let mut s = String::from_utf8_lossy(&line[..KEEP]).into_owned();
    s.push_str(&String::from_utf8_lossy(&line[line.len() - KEEP..]));
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globals_of_existing_roles_are_left_out() {
        let sql = "\\restrict k\nCREATE ROLE postgres;\nALTER ROLE postgres WITH SUPERUSER LOGIN;\nCREATE ROLE app;\nALTER ROLE app WITH LOGIN;\nCREATE ROLE \"Mixed\";\nCREATE ROLE postgres_ro;\nGRANT app TO postgres;\n\\unrestrict k\n";
        let roles = ["postgres".into(), "Mixed".into()];
        let (kept, skipped) = filter_globals(sql, &roles, &roles, false);
        assert_eq!(
            kept,
            "CREATE ROLE app;\nALTER ROLE app WITH LOGIN;\nCREATE ROLE postgres_ro;\nGRANT app TO postgres;\n"
        );
        assert_eq!(skipped, ["postgres", "Mixed"]);
        let (kept, _) = filter_globals(sql, &roles, &roles, true);
        assert!(kept.starts_with("\\restrict k\n") && kept.ends_with("\\unrestrict k\n"));
        // A later snapshot: app was created by an earlier one, so only its CREATE is left out.
        let present: Vec<String> = ["postgres".into(), "Mixed".into(), "app".into()].into();
        let (kept, skipped) = filter_globals(sql, &roles, &present, false);
        assert_eq!(
            kept,
            "ALTER ROLE app WITH LOGIN;\nCREATE ROLE postgres_ro;\nGRANT app TO postgres;\n"
        );
        assert_eq!(skipped, ["postgres", "Mixed"]);
    }

    /// A backup's role must not become a member of a role the target already had (a superuser,
    /// say), nor change that role's settings or comment.
    #[test]
    fn existing_roles_gain_no_members_settings_or_comments() {
        let sql = "CREATE ROLE mallory;\nALTER ROLE mallory WITH LOGIN;\nGRANT ops_admin TO mallory GRANTED BY postgres;\n\
                   GRANT \"Ops\" TO mallory WITH INHERIT TRUE GRANTED BY postgres;\n\
                   ALTER ROLE ops_admin SET search_path TO 'evil';\nALTER ROLE ops_admin IN DATABASE db SET x TO '1';\n\
                   COMMENT ON ROLE ops_admin IS 'x';\nGRANT mallory TO ops_admin GRANTED BY postgres;\n\
                   GRANT ops_admin_x TO mallory;\nGRANT ALL ON TABLESPACE ops_admin TO mallory;\n";
        let roles: Vec<String> = ["ops_admin".into(), "Ops".into()].into();
        let (kept, skipped) = filter_globals(sql, &roles, &roles, true);
        assert_eq!(
            kept,
            "CREATE ROLE mallory;\nALTER ROLE mallory WITH LOGIN;\nGRANT mallory TO ops_admin GRANTED BY postgres;\n\
             GRANT ops_admin_x TO mallory;\nGRANT ALL ON TABLESPACE ops_admin TO mallory;\n"
        );
        assert_eq!(skipped, ["ops_admin", "Ops"]);
    }

    #[test]
    fn tablespace_locations_move_under_the_mapped_directory() {
        let map = vec![
            ("/srv/ts".to_owned(), "/mnt/new".to_owned()),
            ("/data".to_owned(), "/other".to_owned()),
        ];
        let sql = "CREATE TABLESPACE a OWNER postgres LOCATION '/srv/ts';\n\
                   CREATE TABLESPACE b OWNER app LOCATION '/srv/ts/b''s dir';\n\
                   CREATE TABLESPACE c OWNER postgres LOCATION '/srv/tsx';\n\
                   ALTER TABLESPACE a OWNER TO app;\n\
                   CREATE TABLESPACE d OWNER postgres LOCATION '/data/d' WITH (seq_page_cost=2);\n";
        assert_eq!(
            map_tablespace_locations(sql, &map),
            "CREATE TABLESPACE a OWNER postgres LOCATION '/mnt/new';\n\
             CREATE TABLESPACE b OWNER app LOCATION '/mnt/new/b''s dir';\n\
             CREATE TABLESPACE c OWNER postgres LOCATION '/srv/tsx';\n\
             ALTER TABLESPACE a OWNER TO app;\n\
             CREATE TABLESPACE d OWNER postgres LOCATION '/other/d' WITH (seq_page_cost=2);\n"
        );
        assert_eq!(map_tablespace_locations(sql, &[]), sql);
    }

    #[test]
    fn tablespaces_the_target_has_are_not_created_again() {
        let sql = "CREATE TABLESPACE a OWNER postgres LOCATION '/srv/a';\n\
                   CREATE TABLESPACE ab OWNER postgres LOCATION '/srv/ab';\n\
                   CREATE TABLESPACE \"A b\" OWNER postgres LOCATION '/srv/x';\n\
                   ALTER TABLESPACE a OWNER TO app;\n\
                   GRANT CREATE ON TABLESPACE a TO app;\n";
        assert_eq!(
            without_tablespaces(sql, &["a".to_owned(), "A b".to_owned()]),
            "CREATE TABLESPACE ab OWNER postgres LOCATION '/srv/ab';\n\
             ALTER TABLESPACE a OWNER TO app;\n\
             GRANT CREATE ON TABLESPACE a TO app;\n"
        );
        assert_eq!(without_tablespaces(sql, &[]), sql);
    }

    #[test]
    fn decoder_sql_is_left_out_of_the_dump() {
        for knows_restrict in [false, true] {
            assert!(!keep_dump_line(
                "CREATE EXTENSION IF NOT EXISTS decoder_sql WITH SCHEMA decoder_sql;\n",
                knows_restrict
            ));
            assert!(!keep_dump_line(
                "COMMENT ON EXTENSION decoder_sql IS 'x';\n",
                knows_restrict
            ));
            assert!(keep_dump_line(
                "CREATE EXTENSION IF NOT EXISTS hstore WITH SCHEMA public;\n",
                knows_restrict
            ));
            assert!(keep_dump_line(
                "INSERT INTO decoder_sql_notes VALUES (1);\n",
                knows_restrict
            ));
        }
        let mut f = DumpFilter::default();
        assert!(!f.keep(
            "CREATE EXTENSION IF NOT EXISTS decoder_sql WITH SCHEMA decoder_sql;\n",
            true
        ));
        assert!(f.saw_decoder_sql);
    }

    #[test]
    fn decoder_sql_is_left_out_of_a_directory_dump() {
        let list = ";\n; Archive created at 2026-12-01 22:00:00 UTC\n;\n\
            6; 2615 16384 SCHEMA - decoder_sql postgres\n\
            2; 3079 16385 EXTENSION - decoder_sql \n\
            3380; 0 0 COMMENT - EXTENSION decoder_sql \n\
            3; 3079 16400 EXTENSION - decoder_sql_other \n\
            215; 1259 16390 TABLE public decoder_sql postgres\n";
        let (kept, saw) = filter_toc_list(list);
        assert!(saw);
        assert_eq!(
            kept,
            ";\n; Archive created at 2026-12-01 22:00:00 UTC\n;\n\
            6; 2615 16384 SCHEMA - decoder_sql postgres\n\
            3; 3079 16400 EXTENSION - decoder_sql_other \n\
            215; 1259 16390 TABLE public decoder_sql postgres\n"
        );
        assert!(!filter_toc_list("215; 1259 16390 TABLE public t postgres\n").1);
    }

    #[test]
    fn restrict_guards_only_reach_a_psql_that_knows_them() {
        for line in ["\\restrict abc123\n", "\\unrestrict abc123\n"] {
            assert!(keep_dump_line(line, true), "{line}");
            assert!(!keep_dump_line(line, false), "{line}");
        }
        assert!(keep_dump_line("\\connect app\n", false));
    }

    #[test]
    fn large_objects_stay_inside_the_restore_transaction() {
        let dump = "COPY public.t (a) FROM stdin;\nBEGIN;\nCOMMIT;\n\\.\n\
            --\n-- Data for Name: BLOBS; Type: BLOBS; Schema: -; Owner: -\n--\n\nBEGIN;\n\n\
            SELECT pg_catalog.lo_open('16385', 131072);\nCOMMIT;\n\n\
            --\n-- Name: f(); Type: PROCEDURE; Schema: public; Owner: postgres\n--\n\n\
            CREATE PROCEDURE public.f() LANGUAGE plpgsql AS $$\nBEGIN\nCOMMIT;\nEND $$;\n";
        let mut f = DumpFilter::default();
        let kept: String = dump
            .split_inclusive('\n')
            .filter(|l| f.keep(l, true))
            .collect();
        assert_eq!(
            kept,
            "COPY public.t (a) FROM stdin;\nBEGIN;\nCOMMIT;\n\\.\n\
            --\n-- Data for Name: BLOBS; Type: BLOBS; Schema: -; Owner: -\n--\n\n\n\
            SELECT pg_catalog.lo_open('16385', 131072);\n\n\
            --\n-- Name: f(); Type: PROCEDURE; Schema: public; Owner: postgres\n--\n\n\
            CREATE PROCEDURE public.f() LANGUAGE plpgsql AS $$\nBEGIN\nCOMMIT;\nEND $$;\n"
        );
    }
}
