//! Shared objects in time: roles, memberships, role and database settings, tablespaces.
//! They belong to the cluster, not to the database, so neither logical decoding nor the DDL
//! capture sees them change. A base holds them as they were at its snapshot
//! (`pg_dumpall --globals-only`); `pgincr stream` notices later changes by a fingerprint of
//! the shared catalogs and adds a new `pg_dumpall --globals-only` to the repository whenever
//! it changed (`globals/`, listed in the manifest with the WAL position it was taken at), and
//! `pgincr restore` creates from those what the target lacks before applying the stream.

use crate::Result;
use crate::pg::Endpoint;
use crate::repo::{self, FileEntry, Repo, SqlFileWriter};
use serde::{Deserialize, Serialize};
use sqlgen::lsn::Lsn;
use tokio_postgres::Client;

pub const GLOBALS_DIR: &str = "globals";

/// One `pg_dumpall --globals-only` taken by the stream.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GlobalsSnapshot {
    /// The server's WAL position when it was taken: the changes it holds were committed
    /// before it.
    #[serde(with = "repo::lsn_text")]
    pub lsn: Lsn,
    /// The server's time then, RFC 3339 UTC.
    pub taken: String,
    /// [`FINGERPRINT`] of what it holds.
    pub fingerprint: String,
    pub file: FileEntry,
}

/// An md5 over what `pg_dumpall --globals-only` writes, read from the shared catalogs (which
/// any role may read). Password changes do not show (pg_roles hides passwords); they are
/// taken along with the next other change.
pub const FINGERPRINT: &str = "SELECT pg_catalog.md5(coalesce(pg_catalog.string_agg(x, E'\\n' ORDER BY x), '')) FROM (
    SELECT pg_catalog.format('role %s %s %s %s %s %s %s %s %s %s %s', oid, rolname, rolsuper,
               rolinherit, rolcreaterole, rolcreatedb, rolcanlogin, rolreplication,
               rolbypassrls, rolconnlimit, rolvaliduntil) AS x
      FROM pg_catalog.pg_roles
    UNION ALL
    SELECT pg_catalog.format('member %s %s %s', roleid, member, admin_option)
      FROM pg_catalog.pg_auth_members
    UNION ALL
    SELECT pg_catalog.format('tablespace %s %s %s %s %s', oid, spcname, spcowner, spcacl, spcoptions)
      FROM pg_catalog.pg_tablespace
    UNION ALL
    SELECT pg_catalog.format('setting %s %s %s', setdatabase, setrole, setconfig)
      FROM pg_catalog.pg_db_role_setting
    UNION ALL
    SELECT pg_catalog.format('comment %s %s %s', objoid, classoid, description)
      FROM pg_catalog.pg_shdescription
) s";

pub async fn fingerprint(client: &Client) -> std::result::Result<String, tokio_postgres::Error> {
    Ok(client.query_one(FINGERPRINT, &[]).await?.get(0))
}

/// `pg_dumpall --globals-only` of `source` into `rel` (relative to the repository root).
pub async fn dump(repo: &Repo, source: &Endpoint, rel: &str) -> Result<FileEntry> {
    write(repo, rel, &dump_text(source).await?)
}

/// The text of `pg_dumpall --globals-only` of `source`.
async fn dump_text(source: &Endpoint) -> Result<Vec<u8>> {
    source
        .tools
        .command("pg_dumpall")
        .args(["--globals-only", "--no-password", "-d"])
        .arg(&source.public_dsn)
        .output()
        .await
}

fn write(repo: &Repo, rel: &str, sql: &[u8]) -> Result<FileEntry> {
    let mut out = SqlFileWriter::create_direct(repo, rel, false)?;
    out.append(sql)?;
    out.finish()
}

/// The fingerprint of the newest globals in the repository: the newest snapshot's, or the
/// newest base's when that is newer.
pub fn newest_fingerprint(manifest: &repo::Manifest) -> Option<&str> {
    let snapshot = manifest
        .globals
        .last()
        .map(|g| (g.lsn, g.fingerprint.as_str()));
    let base = manifest
        .bases
        .last()
        .and_then(|b| Some((b.consistent_lsn, b.globals_fingerprint.as_deref()?)));
    match (snapshot, base) {
        (Some(s), Some(b)) => Some(if b.0 > s.0 { b.1 } else { s.1 }),
        (s, b) => s.or(b).map(|(_, f)| f),
    }
}

/// Dumps the globals now and records them in the manifest, unless the newest globals in the
/// repository have the same fingerprint. Returns the snapshot taken.
pub async fn snapshot_if_changed(
    repo: &Repo,
    source: &Endpoint,
    client: &Client,
) -> Result<Option<GlobalsSnapshot>> {
    let now = fingerprint(client).await?;
    if newest_fingerprint(&repo.load()?) == Some(now.as_str()) {
        return Ok(None);
    }
    let taken = take(source, client, now).await?;
    Ok(Some(record(repo, &taken)?))
}

/// The globals as they are now, for one or more repositories of the cluster.
pub struct Taken {
    lsn: Lsn,
    taken: String,
    fingerprint: String,
    sql: Vec<u8>,
}

/// Dumps the globals, whose fingerprint the caller read just before.
pub async fn take(source: &Endpoint, client: &Client, fingerprint: String) -> Result<Taken> {
    let row = client
        .query_one(
            "SELECT pg_catalog.pg_current_wal_lsn()::text,
                    pg_catalog.to_char(pg_catalog.now() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')",
            &[],
        )
        .await?;
    let lsn: Lsn = row
        .get::<_, String>(0)
        .parse()
        .map_err(|e| crate::Error::Invalid(format!("pg_current_wal_lsn(): {e}")))?;
    Ok(Taken {
        lsn,
        taken: row.get(1),
        fingerprint,
        sql: dump_text(source).await?,
    })
}

/// Stores `taken` in `repo` (encrypted when it is) and lists it in the manifest.
pub fn record(repo: &Repo, taken: &Taken) -> Result<GlobalsSnapshot> {
    repo::create_private_dir(&repo.path(GLOBALS_DIR))?;
    let rel = format!(
        "{GLOBALS_DIR}/{}-{}.sql",
        repo::now_id(),
        taken.lsn.to_string().replace('/', "-")
    );
    let snapshot = GlobalsSnapshot {
        lsn: taken.lsn,
        taken: taken.taken.clone(),
        fingerprint: taken.fingerprint.clone(),
        file: write(repo, &rel, &taken.sql)?,
    };
    let recorded = snapshot.clone();
    repo.update(move |m| {
        m.globals.push(recorded);
        Ok(())
    })?;
    Ok(snapshot)
}
