//! `pgincr base`: a full base backup aligned exactly with the change stream.
//!
//! A temporary slot with an exported snapshot marks the point: `pg_dump --snapshot` sees
//! every transaction that committed before the slot's consistent point and none after, and
//! the permanent slot's stream has every transaction after it. Restore uses the consistent
//! point to skip what the dump already holds. Safe while `stream` runs.

use crate::cli::{BaseArgs, DumpArgs};
use crate::pg::Endpoint;
use crate::pg::replication::ExportedSnapshot;
use crate::repo::{self, Base, DumpFormat, Extension, Repo, ServerInfo, SqlFileWriter};
use crate::units::human_bytes;
use crate::{Error, Result, progress};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::PathBuf;
use tokio::io::AsyncReadExt;
use tokio_postgres::Client;

pub async fn run(args: BaseArgs, bindir: Option<PathBuf>) -> Result<()> {
    let repo = args.repo.open()?;
    let manifest = repo.load()?;
    let source = Endpoint::new(&args.conn.dsn, bindir)?;
    let client = source.connect().await?;
    let (system_identifier, database) = source_identity(&client).await?;
    if system_identifier != manifest.source.system_identifier
        || database != manifest.source.database
    {
        return Err(Error::Invalid(format!(
            "this repository backs up database \"{}\" of system {}, but the connection goes to \"{database}\" of system {system_identifier}",
            manifest.source.database, manifest.source.system_identifier
        )));
    }
    check_dump_args(
        &args.dump,
        manifest.encryption.is_some(),
        repo.remote().is_some(),
    )?;
    let slot = format!("pgincr_base_{}", std::process::id());
    let base = take_base(&repo, &source, &client, &slot, true, args.dump).await?;
    repo.update(|m| {
        m.bases.push(base.clone());
        Ok(())
    })?;
    report(&base);
    Ok(())
}

pub fn report(base: &Base) {
    match base.format {
        DumpFormat::Plain => println!(
            "base backup {} taken: consistent point {}, dump {} ({} of SQL)",
            base.id,
            base.consistent_lsn,
            human_bytes(base.dump.bytes),
            human_bytes(base.dump.sql_bytes)
        ),
        DumpFormat::Directory => println!(
            "base backup {} taken: consistent point {}, directory-format dump {} in {} file(s)",
            base.id,
            base.consistent_lsn,
            human_bytes(base.dump.bytes + base.dump_files.iter().map(|f| f.bytes).sum::<u64>()),
            base.dump_files.len() + 1
        ),
    }
}

/// Refuses option combinations pg_dump would refuse later, after the slot was made.
pub fn check_dump_args(args: &DumpArgs, encrypted: bool, remote: bool) -> Result<()> {
    if encrypted && args.format == DumpFormat::Directory {
        return Err(Error::Invalid(
            "an encrypted repository takes plain base dumps only: pg_dump writes the files of \
             --format directory itself, unencrypted"
                .into(),
        ));
    }
    if remote && args.format == DumpFormat::Directory {
        return Err(Error::Invalid(
            "an object-storage repository takes plain base dumps only: pg_dump writes the \
             files of --format directory into a local directory"
                .into(),
        ));
    }
    if args.jobs > 1 && args.format != DumpFormat::Directory {
        return Err(Error::Invalid(
            "--jobs needs --format directory: a plain dump is one SQL script written by one \
             pg_dump worker"
                .into(),
        ));
    }
    Ok(())
}

/// The system identifier and the database name: which database a repository backs up.
pub async fn source_identity(client: &Client) -> Result<(String, String)> {
    let row = client
        .query_one(
            "SELECT (SELECT system_identifier::text FROM pg_catalog.pg_control_system()),
                    current_database()::text",
            &[],
        )
        .await?;
    Ok((row.get(0), row.get(1)))
}

/// Server facts for a base backup's manifest entry.
pub async fn server_info(client: &Client) -> Result<ServerInfo> {
    let row = client
        .query_one(
            "SELECT current_setting('server_version'),
                    current_setting('server_version_num')::int,
                    pg_catalog.pg_encoding_to_char(d.encoding)::text,
                    d.datcollate::text, d.datctype::text
               FROM pg_catalog.pg_database d WHERE d.datname = current_database()",
            &[],
        )
        .await?;
    let extensions = client
        .query(
            "SELECT extname::text, extversion FROM pg_catalog.pg_extension ORDER BY 1",
            &[],
        )
        .await?
        .iter()
        .map(|r| Extension {
            name: r.get(0),
            version: r.get(1),
        })
        .collect::<Vec<_>>();
    let decoder_sql_format_version = if extensions.iter().any(|e| e.name == "decoder_sql") {
        client
            .query_one("SELECT decoder_sql.format_version()", &[])
            .await?
            .get(0)
    } else {
        0
    };
    Ok(ServerInfo {
        server_version: row.get(0),
        server_version_num: row.get(1),
        encoding: row.get(2),
        lc_collate: row.get(3),
        lc_ctype: row.get(4),
        extensions,
        decoder_sql_format_version,
        database: Some(crate::database::read(client).await?),
    })
}

/// Lock file held while a base backup is being taken.
pub const BASE_LOCK: &str = "base.lock";

/// Takes the lock that lets one base backup at a time write into `bases/`, then removes
/// the working directories of bases that were interrupted (no other base runs now).
pub fn lock_bases(repo: &Repo) -> Result<std::fs::File> {
    let lock = repo.lock_file(BASE_LOCK, false).map_err(|_| {
        Error::Invalid(format!(
            "another base backup (`pgincr base` or `pgincr init`) is being taken into {}; \
             run this one when it has finished",
            repo.location()
        ))
    })?;
    for name in partial_bases(repo) {
        let dir = repo.path(repo::BASES_DIR).join(&name);
        tracing::info!(
            "removing {}, left by an interrupted base backup",
            dir.display()
        );
        std::fs::remove_dir_all(&dir).map_err(Error::io(format!("removing {}", dir.display())))?;
    }
    Ok(lock)
}

/// Working directories of base backups that did not finish (`bases/<id>.partial`).
pub fn partial_bases(repo: &Repo) -> Vec<String> {
    std::fs::read_dir(repo.path(repo::BASES_DIR))
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.ends_with(PARTIAL_SUFFIX))
                .collect()
        })
        .unwrap_or_default()
}

const PARTIAL_SUFFIX: &str = ".partial";

/// Creates a working directory `bases/<id>.partial` no other base uses, for a new id.
fn create_working_dir(repo: &Repo) -> Result<String> {
    let mut id = repo::now_id();
    loop {
        let dir = repo
            .path(repo::BASES_DIR)
            .join(format!("{id}{PARTIAL_SUFFIX}"));
        if !repo.path(repo::BASES_DIR).join(&id).exists() {
            // create_dir fails when the directory exists: two bases never share one.
            match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
                Ok(()) => return Ok(id),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => {
                    return Err(Error::IoAt {
                        context: format!("creating {}", dir.display()),
                        source: e,
                    });
                }
            }
        }
        id.push('x');
    }
}

/// Creates `slot` with an exported snapshot, dumps the database and the globals under it,
/// and returns the manifest entry (the caller records it). Holds the base lock throughout;
/// on failure nothing of it stays in `bases/`.
pub async fn take_base(
    repo: &Repo,
    source: &Endpoint,
    client: &Client,
    slot: &str,
    temporary: bool,
    options: DumpArgs,
) -> Result<Base> {
    let _lock = lock_bases(repo)?;
    let server = server_info(client).await?;
    let started = repo::now_rfc3339();
    let id = create_working_dir(repo)?;
    let partial = format!("{}/{id}{PARTIAL_SUFFIX}", repo::BASES_DIR);
    let final_rel = format!("{}/{id}", repo::BASES_DIR);
    // On object storage the files go straight to their final names, uploaded as pg_dump
    // writes them: no manifest names them until the base is complete, and an unfinished
    // upload leaves no object.
    let write_dir = if repo.remote().is_some() {
        final_rel.clone()
    } else {
        partial.clone()
    };

    let snap =
        match ExportedSnapshot::create(source, slot, temporary, server.server_version_num).await {
            Ok(snap) => snap,
            Err(e) => {
                let _ = std::fs::remove_dir_all(repo.path(&partial));
                return Err(e);
            }
        };
    tracing::info!(
        "slot {} created; consistent point {}, snapshot {}",
        snap.slot,
        snap.consistent_lsn,
        snap.snapshot
    );
    let files = async {
        // Every transaction in the snapshot committed before this moment.
        let snapshot_time: String = client
            .query_one(
                "SELECT to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')",
                &[],
            )
            .await?
            .get(0);
        let dump = match options.format {
            DumpFormat::Plain => (
                dump(repo, source, &write_dir, &snap.snapshot).await?,
                vec![],
            ),
            DumpFormat::Directory => {
                dump_directory(repo, source, &partial, &snap.snapshot, options.jobs).await?
            }
        };
        let fingerprint = crate::globals::fingerprint(client).await?;
        let globals = dump_globals(repo, source, &write_dir).await?;
        Ok::<_, Error>((snapshot_time, dump, (globals, fingerprint)))
    }
    .await;
    let consistent_lsn = snap.consistent_lsn;
    let released = snap.release().await;
    let (snapshot_time, (dump, dump_files), (globals, globals_fingerprint)) =
        match (files, released) {
            (Ok(files), Ok(())) => files,
            (Err(e), _) | (_, Err(e)) => {
                let _ = std::fs::remove_dir_all(repo.path(&partial));
                if let Some(remote) = repo.remote() {
                    for object in remote.list(&write_dir).unwrap_or_default() {
                        let _ = remote.delete(&object.rel);
                    }
                }
                return Err(e);
            }
        };

    if repo.remote().is_some() {
        let _ = std::fs::remove_dir_all(repo.path(&partial));
    } else if let Err(e) = std::fs::rename(repo.path(&partial), repo.path(&final_rel)) {
        let _ = std::fs::remove_dir_all(repo.path(&partial));
        return Err(Error::IoAt {
            context: format!("renaming {partial}"),
            source: e,
        });
    }
    if repo.remote().is_none() {
        repo::sync_dir(&repo.path(repo::BASES_DIR))?;
    }
    let moved = |mut f: repo::FileEntry| {
        f.path = f.path.replacen(&partial, &final_rel, 1);
        f
    };
    let base = Base {
        id,
        started,
        finished: repo::now_rfc3339(),
        consistent_lsn,
        snapshot_time,
        snapshot_slot: slot.to_owned(),
        server,
        format: options.format,
        dump: moved(dump),
        dump_files: dump_files.into_iter().map(moved).collect(),
        globals: moved(globals),
        globals_fingerprint: Some(globals_fingerprint),
    };
    Ok(base)
}

/// `pg_dump` of the database under the exported snapshot, zstd-compressed as it arrives.
async fn dump(
    repo: &Repo,
    source: &Endpoint,
    dir: &str,
    snapshot: &str,
) -> Result<repo::FileEntry> {
    let mut pg_dump = source
        .tools
        .command("pg_dump")
        .args(["--format=plain", "--no-password"])
        .arg(format!("--snapshot={snapshot}"))
        .arg("-d")
        .arg(&source.public_dsn)
        .spawn()?;
    let mut stdout = pg_dump.child.stdout.take().expect("piped stdout");
    let mut out = SqlFileWriter::create_direct(repo, &format!("{dir}/dump.sql"), true)?;
    let bar = progress::bytes_spinner("base dump");
    let mut buf = vec![0u8; 1 << 18];
    loop {
        let n = stdout.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        tokio::task::block_in_place(|| out.append(&buf[..n]))?;
        bar.inc(n as u64);
    }
    pg_dump.wait().await?;
    bar.finish_and_clear();
    tokio::task::block_in_place(|| out.finish())
}

/// Directory of a directory-format dump inside its base's folder.
pub const DUMP_DIR: &str = "dump";

/// `pg_dump --format=directory --jobs N` under the exported snapshot (every worker imports
/// it; the slot that exported it stays open until all have finished). pg_dump compresses
/// each table's data file itself (gzip, its default for this format). Returns `toc.dat`'s
/// entry and those of the other files, each with its size and SHA-256 as stored.
async fn dump_directory(
    repo: &Repo,
    source: &Endpoint,
    dir: &str,
    snapshot: &str,
    jobs: u32,
) -> Result<(repo::FileEntry, Vec<repo::FileEntry>)> {
    let rel = format!("{dir}/{DUMP_DIR}");
    let out_dir = repo.path(&rel);
    let bar = progress::bytes_spinner("base dump");
    source
        .tools
        .command("pg_dump")
        .args(["--format=directory", "--no-password"])
        .arg(format!("--jobs={jobs}"))
        .arg(format!("--snapshot={snapshot}"))
        .arg("--file")
        .arg(&out_dir)
        .arg("-d")
        .arg(&source.public_dsn)
        .stdout(std::process::Stdio::null())
        .output()
        .await?;
    bar.finish_and_clear();
    tokio::task::block_in_place(|| describe_dump_dir(repo, &rel))
}

/// Makes every file of a directory-format dump private and durable, and describes it.
fn describe_dump_dir(repo: &Repo, rel: &str) -> Result<(repo::FileEntry, Vec<repo::FileEntry>)> {
    let dir = repo.path(rel);
    let ctx = || format!("reading {}", dir.display());
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))
        .map_err(Error::io(ctx()))?;
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .map_err(Error::io(ctx()))?
        .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect::<std::io::Result<_>>()
        .map_err(Error::io(ctx()))?;
    names.sort();
    let mut toc = None;
    let mut files = Vec::new();
    for name in names {
        let path = dir.join(&name);
        let file_ctx = format!("writing {}", path.display());
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
            .map_err(Error::io(file_ctx.clone()))?;
        std::fs::File::open(&path)
            .and_then(|f| f.sync_all())
            .map_err(Error::io(file_ctx))?;
        let (sha256, bytes) = repo::hash_file(&path)?;
        let entry = repo::FileEntry {
            path: format!("{rel}/{name}"),
            bytes,
            sha256,
            // pg_dump's own format, not SQL text: the size as stored.
            sql_bytes: bytes,
            compression: if name.ends_with(".gz") {
                "gzip"
            } else {
                "none"
            }
            .to_owned(),
            encryption: None,
        };
        if name == "toc.dat" {
            toc = Some(entry);
        } else {
            files.push(entry);
        }
    }
    repo::sync_dir(&dir)?;
    let toc = toc.ok_or_else(|| {
        Error::Invalid(format!("pg_dump wrote no toc.dat into {}", dir.display()))
    })?;
    Ok((toc, files))
}

/// Roles, memberships and tablespaces: `pg_dumpall --globals-only`.
async fn dump_globals(repo: &Repo, source: &Endpoint, dir: &str) -> Result<repo::FileEntry> {
    crate::globals::dump(repo, source, &format!("{dir}/globals.sql")).await
}
