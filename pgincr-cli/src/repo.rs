//! The backup repository: one directory holding base backups, change segments and
//! `manifest.json`, which lists every file with its checksum. Layout in docs/repository.md.
//!
//! Several commands write the manifest (`init`, `base`, `stream`, `prune`), possibly at the
//! same time, so every update happens under an exclusive lock on `manifest.lock` and
//! replaces the file atomically (write, fsync, rename, fsync directory).

use crate::storage::ObjectStorage;
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sqlgen::lsn::Lsn;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

pub const MANIFEST: &str = "manifest.json";
/// The newest manifest format this pgincr reads. 1: plaintext repositories; 2: encrypted
/// ones (see [`Encryption`]), which an older pgincr must not write plaintext into.
pub const FORMAT: u32 = 2;
/// The format of a repository without encryption.
pub const FORMAT_PLAIN: u32 = 1;
pub const BASES_DIR: &str = "bases";
pub const SEGMENTS_DIR: &str = "segments";
/// The segment pg_recvlogical is writing to.
pub const OPEN_SEGMENT: &str = "open.sql";
/// What `stream` last ran into, for `status` (see [`StreamState`]).
pub const STREAM_STATE: &str = "stream-state.json";
/// Held shared by every restore while it reads the repository, exclusively by prune while it
/// deletes.
pub const READERS_LOCK: &str = "readers.lock";
/// Size the stream state file is padded to: rewritten in place it needs no new disk space,
/// so it can still be written when the disk is full.
const STREAM_STATE_BYTES: usize = 4096;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    pub created: String,
    pub source: Source,
    /// Base backups, oldest first.
    #[serde(default)]
    pub bases: Vec<Base>,
    /// Closed change segments in stream order.
    #[serde(default)]
    pub segments: Vec<Segment>,
    /// Globals (roles, tablespaces ...) as they changed after the bases were taken, oldest
    /// first (see [`crate::globals`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub globals: Vec<crate::globals::GlobalsSnapshot>,
    /// `pgincr prune` runs, oldest first (the newest [`PRUNE_HISTORY`] kept): what each removed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub prune_history: Vec<PruneRun>,
    /// Set at `init` for an encrypted repository: what every stored file is encrypted to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encryption: Option<Encryption>,
}

/// Encryption at rest (see [`crate::crypt`]).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Encryption {
    /// "age".
    pub method: String,
    /// Public age X25519 recipients (`age1…`): any of their identities decrypts.
    pub recipients: Vec<String>,
}

impl Manifest {
    /// The format number a manifest with these contents has.
    pub fn format_for(encryption: &Option<Encryption>) -> u32 {
        if encryption.is_some() {
            FORMAT
        } else {
            FORMAT_PLAIN
        }
    }
}

/// How many prune runs the manifest remembers.
pub const PRUNE_HISTORY: usize = 100;

/// One `pgincr prune` run (not `--dry-run`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PruneRun {
    /// When it ran (RFC 3339).
    pub at: String,
    /// Ids of the base backups it deleted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub bases: Vec<String>,
    /// Segments it deleted: how many, and the LSN range they covered.
    pub segments: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub segments_upto: Option<String>,
    /// Globals snapshots it deleted.
    pub globals: usize,
    pub bytes: u64,
}

/// The database being backed up.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Source {
    pub system_identifier: String,
    pub database: String,
    pub slot: String,
    /// Where the change stream starts: the slot's consistent point.
    #[serde(with = "lsn_text")]
    pub stream_start_lsn: Lsn,
    /// The slot's confirmed position when the stream last stopped cleanly. It may lie past
    /// the last transaction in the repository (pg_recvlogical confirms the end point of
    /// `--catch-up` from a keepalive); a slot confirmed further than this and the
    /// repository's own transactions has lost changes to this repository.
    #[serde(
        default,
        with = "opt_lsn_text",
        skip_serializing_if = "Option::is_none"
    )]
    pub confirmed_clean_lsn: Option<Lsn>,
    /// Chosen at `init`.
    #[serde(default)]
    pub missing_identity: MissingIdentity,
}

/// Facts about the server and database at the time of a base backup.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ServerInfo {
    pub server_version: String,
    pub server_version_num: i32,
    pub encoding: String,
    pub lc_collate: String,
    pub lc_ctype: String,
    pub extensions: Vec<Extension>,
    pub decoder_sql_format_version: i32,
    /// The database's owner, privileges, settings and comment (bases taken before they were
    /// recorded have none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database: Option<crate::database::DatabaseProperties>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Extension {
    pub name: String,
    pub version: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Base {
    /// Directory name under `bases/`, a UTC timestamp.
    pub id: String,
    pub started: String,
    pub finished: String,
    /// Transactions that committed before this point are in the dump; the rest come from
    /// the change stream.
    #[serde(with = "lsn_text")]
    pub consistent_lsn: Lsn,
    /// Server time when the snapshot was taken (RFC 3339).
    pub snapshot_time: String,
    /// The slot whose snapshot the dump used.
    pub snapshot_slot: String,
    pub server: ServerInfo,
    /// `plain`: `dump` is the whole dump as SQL text. `directory`: the dump is pg_dump's
    /// directory format under `bases/<id>/dump/`; `dump` is its `toc.dat` and `dump_files`
    /// every other file of it. Manifests written before the format existed hold plain dumps.
    #[serde(default)]
    pub format: DumpFormat,
    pub dump: FileEntry,
    /// The data files of a directory-format dump (empty for a plain one).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dump_files: Vec<FileEntry>,
    pub globals: FileEntry,
    /// [`crate::globals::FINGERPRINT`] of the globals dumped, so that the stream adds a
    /// globals snapshot only when they change afterwards.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub globals_fingerprint: Option<String>,
}

impl Base {
    /// Every file of the base: the dump's (one or many) and the globals.
    pub fn files(&self) -> impl Iterator<Item = &FileEntry> {
        std::iter::once(&self.dump)
            .chain(&self.dump_files)
            .chain(std::iter::once(&self.globals))
    }

    /// Bytes the base takes in the repository.
    pub fn bytes(&self) -> u64 {
        self.files().map(|f| f.bytes).sum()
    }
}

/// What the backup does about tables without a usable replica identity (no primary key or
/// replica identity index), whose UPDATEs and DELETEs do not say which row they change.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum MissingIdentity {
    /// New such tables get `REPLICA IDENTITY FULL` as they are created (an event trigger of
    /// the extension, with a notice), so every change is backed up.
    #[default]
    Full,
    /// Their UPDATEs and DELETEs are skipped: written as comments, counted, and reported by
    /// `status`. The backup of those tables is then incomplete.
    Skip,
}

/// How a base's dump is stored.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum DumpFormat {
    /// One SQL script (`pg_dump --format=plain`), zstd-compressed: readable with `zstd -dc`,
    /// restored with psql in one transaction.
    #[default]
    Plain,
    /// `pg_dump --format=directory`: one file per table, dumped and restored (`pg_restore`)
    /// by several jobs in parallel.
    Directory,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Segment {
    pub seq: u64,
    pub file: FileEntry,
    /// End of the last complete transaction before this segment.
    #[serde(with = "lsn_text")]
    pub start_lsn: Lsn,
    /// End of the last transaction that commits in this segment (`start_lsn` if none).
    #[serde(with = "lsn_text")]
    pub end_lsn: Lsn,
    pub transactions: u64,
    /// The segment begins inside a transaction whose BEGIN is in the previous segment.
    #[serde(default)]
    pub starts_in_transaction: bool,
    /// Commit time of the last transaction, if any (RFC 3339).
    #[serde(default)]
    pub last_commit_time: Option<String>,
    pub closed: String,
    /// UPDATEs and DELETEs skipped for want of a replica identity (`--missing-identity skip`).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub skipped_changes: u64,
    /// The transaction still open after this segment, recorded when it closed, so that the
    /// stream need not read closed segments again (it cannot, when they are encrypted).
    /// Absent in segments written by older versions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub open_at_end: Option<OpenAtEnd>,
}

/// What the chain leaves open after a segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpenAtEnd {
    /// End LSN of the transaction begun and not yet committed, if any.
    #[serde(with = "opt_lsn_text")]
    pub transaction_end: Option<Lsn>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// What `pgincr stream` last ran into, kept in `stream-state.json` for `pgincr status`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct StreamState {
    /// When the stream last wrote this file (RFC 3339).
    pub updated: String,
    /// The failure that keeps the stream from receiving changes; cleared once it flows again.
    #[serde(default)]
    pub error: Option<StreamError>,
}

/// A failure of the stream that repeats until someone acts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamError {
    /// "disk full" or "receiver" (pg_recvlogical or the server failed).
    pub kind: String,
    /// The last error message, with the server's message when there was one.
    pub message: String,
    /// RFC 3339 times of the first and latest occurrence.
    pub first_seen: String,
    pub last_seen: String,
    /// How many times it happened since it first did.
    pub count: u64,
}

pub const DISK_FULL: &str = "disk full";

/// Whether an error (or a program's message) says the disk is full.
pub fn is_disk_full(error: &Error) -> bool {
    let io_full = |e: &std::io::Error| {
        e.kind() == std::io::ErrorKind::StorageFull || e.raw_os_error() == Some(libc_enospc())
    };
    match error {
        Error::Io(e) | Error::IoAt { source: e, .. } => io_full(e),
        other => other.to_string().contains("No space left on device"),
    }
}

/// ENOSPC without depending on libc directly.
fn libc_enospc() -> i32 {
    nix::errno::Errno::ENOSPC as i32
}

/// A file of the repository with what verify checks.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FileEntry {
    /// Path relative to the repository.
    pub path: String,
    /// Size on disk.
    pub bytes: u64,
    /// SHA-256 of the file as stored (hex).
    pub sha256: String,
    /// Size of the SQL text after decompression.
    pub sql_bytes: u64,
    /// "zstd" or "none".
    pub compression: String,
    /// "age" for an encrypted file (see [`crate::crypt`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encryption: Option<String>,
}

/// Serialises an LSN as PostgreSQL spells it ("16/B374D848").
pub mod lsn_text {
    use serde::{Deserialize, Deserializer, Serializer};
    use sqlgen::lsn::Lsn;

    pub fn serialize<S: Serializer>(lsn: &Lsn, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(lsn)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Lsn, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

pub mod opt_lsn_text {
    use serde::{Deserialize, Deserializer, Serializer};
    use sqlgen::lsn::Lsn;

    pub fn serialize<S: Serializer>(lsn: &Option<Lsn>, s: S) -> Result<S::Ok, S::Error> {
        match lsn {
            Some(l) => s.collect_str(l),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Lsn>, D::Error> {
        Option::<String>::deserialize(d)?
            .map(|t| t.parse().map_err(serde::de::Error::custom))
            .transpose()
    }
}

/// An opened repository: a directory, or objects on an S3-compatible store.
///
/// With object storage, `root` is the local spool: segments are written there first
/// (fsync'd as in a directory repository), then [`upload`](Repo::upload)ed before the
/// manifest on the store names them; bases and globals are uploaded as they are written.
#[derive(Debug, Clone)]
pub struct Repo {
    pub root: PathBuf,
    remote: Option<Arc<ObjectStorage>>,
    /// Version tag of the store's manifest as last read or written, so that an update
    /// replaces only what it read.
    manifest_version: Arc<Mutex<Option<String>>>,
    /// What new files are encrypted to, read from the manifest on first use.
    recipients: Arc<OnceLock<Vec<age::x25519::Recipient>>>,
}

impl Repo {
    /// A repository directory.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Repo {
            root: root.into(),
            remote: None,
            manifest_version: Arc::default(),
            recipients: Arc::default(),
        }
    }

    /// The repository `--repo` names: `s3://bucket/prefix` or a directory. An object-store
    /// repository spools into `spool` (default: under ~/.cache/pgincr/spool).
    pub fn open(location: &Path, spool: Option<&Path>) -> Result<Self> {
        if !crate::storage::is_object_url(location) {
            return Ok(Repo::new(location));
        }
        let url = location.to_string_lossy().into_owned();
        let storage = ObjectStorage::open(&url)?;
        let root = match spool {
            Some(dir) => dir.to_owned(),
            None => {
                let (bucket, prefix) = crate::storage::parse_url(&url)?;
                let cache = std::env::var_os("XDG_CACHE_HOME")
                    .map(PathBuf::from)
                    .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
                    .unwrap_or_else(|| PathBuf::from("/var/cache"));
                cache.join("pgincr/spool").join(bucket).join(prefix)
            }
        };
        let repo = Repo {
            root,
            remote: Some(Arc::new(storage)),
            manifest_version: Arc::default(),
            recipients: Arc::default(),
        };
        repo.create_dirs()?;
        Ok(repo)
    }

    /// The object store, for a repository on one.
    pub fn remote(&self) -> Option<&ObjectStorage> {
        self.remote.as_deref()
    }

    /// Where the repository is, for messages: its URL or its directory.
    pub fn location(&self) -> String {
        match &self.remote {
            Some(r) => r.url().to_owned(),
            None => self.root.display().to_string(),
        }
    }

    /// Sends a finished file from the spool to the store, keeping the spooled copy (nothing
    /// to do for a directory repository).
    pub fn upload(&self, rel: &str) -> Result<()> {
        match &self.remote {
            Some(remote) => remote.upload(&self.path(rel), rel),
            None => Ok(()),
        }
    }

    /// The stored bytes of a repository file, as they are (compressed, encrypted).
    pub fn open_stored(&self, rel: &str) -> Result<Box<dyn Read + Send>> {
        match &self.remote {
            Some(remote) => remote.reader(rel),
            None => {
                let path = self.path(rel);
                let f =
                    File::open(&path).map_err(Error::io(format!("opening {}", path.display())))?;
                Ok(Box::new(f))
            }
        }
    }

    /// A repository file's SQL text, decrypted and decompressed.
    pub fn open_sql(&self, rel: &str) -> Result<Box<dyn Read + Send>> {
        match &self.remote {
            Some(remote) => sql_layers(
                remote.reader(rel)?,
                Path::new(&format!("{}/{rel}", remote.url())),
            ),
            None => open_sql(&self.path(rel)),
        }
    }

    /// Size of a repository file as stored; None when it does not exist.
    pub fn stored_size(&self, rel: &str) -> Result<Option<u64>> {
        match &self.remote {
            Some(remote) => remote.size(rel),
            None => match fs::metadata(self.path(rel)) {
                Ok(m) => Ok(Some(m.len())),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(Error::io(format!("reading {}", self.path(rel).display()))(
                    e,
                )),
            },
        }
    }

    /// Whether a repository file exists.
    pub fn has_stored(&self, rel: &str) -> Result<bool> {
        match &self.remote {
            Some(remote) => Ok(remote.size(rel)?.is_some()),
            None => Ok(self.path(rel).exists()),
        }
    }

    /// Deletes a repository file; one already gone is not an error.
    pub fn remove_stored(&self, rel: &str) -> Result<()> {
        match &self.remote {
            Some(remote) => remote.delete(rel),
            None => match fs::remove_file(self.path(rel)) {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(Error::io(format!("removing {}", self.path(rel).display()))(
                    e,
                )),
            },
        }
    }

    /// The age recipients new files are encrypted to; empty for a plaintext repository.
    pub fn recipients(&self) -> Result<&[age::x25519::Recipient]> {
        if let Some(r) = self.recipients.get() {
            return Ok(r);
        }
        let recipients = match self.load()?.encryption {
            Some(e) => crate::crypt::parse_recipients(&e.recipients)?,
            None => Vec::new(),
        };
        Ok(self.recipients.get_or_init(|| recipients))
    }

    /// Sets what new files are encrypted to, before the manifest that records it exists.
    pub fn encrypt_to(&self, recipients: Vec<age::x25519::Recipient>) {
        let _ = self.recipients.set(recipients);
    }

    /// The name a file written as `rel` is stored under: `.zst` when compressed, `.age` when
    /// the repository is encrypted.
    pub fn stored_rel(&self, rel: &str, compress: bool) -> Result<String> {
        let mut name = rel.to_owned();
        if compress {
            name.push_str(".zst");
        }
        if !self.recipients()?.is_empty() {
            name.push_str(crate::crypt::SUFFIX);
        }
        Ok(name)
    }

    pub fn path(&self, rel: impl AsRef<Path>) -> PathBuf {
        self.root.join(rel)
    }

    pub fn manifest_path(&self) -> PathBuf {
        self.path(MANIFEST)
    }

    pub fn segments_dir(&self) -> PathBuf {
        self.path(SEGMENTS_DIR)
    }

    pub fn open_segment_path(&self) -> PathBuf {
        self.segments_dir().join(OPEN_SEGMENT)
    }

    pub fn exists(&self) -> bool {
        match &self.remote {
            Some(remote) => remote.size(MANIFEST).is_ok_and(|s| s.is_some()),
            None => self.manifest_path().exists(),
        }
    }

    /// Creates the directory tree with owner-only permissions.
    pub fn create_dirs(&self) -> Result<()> {
        for dir in [
            self.root.clone(),
            self.path(BASES_DIR),
            self.path(SEGMENTS_DIR),
        ] {
            create_private_dir(&dir)?;
        }
        Ok(())
    }

    /// Reads the manifest (without locking: a reader sees either the old or the new file).
    pub fn load(&self) -> Result<Manifest> {
        if let Some(remote) = &self.remote {
            let Some((data, version)) = remote.get(MANIFEST)? else {
                // A missing bucket reads as a missing object: say which it is.
                remote.check_access()?;
                return Err(Error::Repository(format!(
                    "{} is not a pgincr repository (no {MANIFEST}); check the address, or \
                     create a repository there with `pgincr init`",
                    remote.url()
                )));
            };
            *self.manifest_version.lock().expect("manifest version") = version;
            let text = String::from_utf8_lossy(&data);
            return parse_manifest(&text, &format!("{}/{MANIFEST}", remote.url()));
        }
        let path = self.manifest_path();
        let text = fs::read_to_string(&path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                Error::Repository(self.missing_manifest_advice())
            } else {
                Error::IoAt {
                    context: format!("reading {}", path.display()),
                    source: e,
                }
            }
        })?;
        parse_manifest(&text, &path.display().to_string())
    }

    /// Why there is no manifest, and what to do that cannot destroy backups.
    pub fn missing_manifest_advice(&self) -> String {
        let holds_backups = [BASES_DIR, SEGMENTS_DIR]
            .iter()
            .any(|d| fs::read_dir(self.path(d)).is_ok_and(|mut entries| entries.next().is_some()));
        if holds_backups {
            format!(
                "{} has no {MANIFEST} but holds {BASES_DIR}/ or {SEGMENTS_DIR}/: a repository whose \
                 manifest is missing. Put {MANIFEST} back from a copy of this repository; do not \
                 initialise over it. A new repository belongs in another, empty directory.",
                self.root.display()
            )
        } else {
            format!(
                "{} is not a pgincr repository (no {MANIFEST}); check the path, or create a \
                 repository there with `pgincr init` (it only initialises an empty directory)",
                self.root.display()
            )
        }
    }

    /// Holds the manifest lock for the duration of `f`, then writes what `f` returned.
    pub fn update<T>(&self, f: impl FnOnce(&mut Manifest) -> Result<T>) -> Result<T> {
        let _lock = self.lock_file("manifest.lock", true)?;
        let mut manifest = self.load()?;
        let out = f(&mut manifest)?;
        self.store(&manifest)?;
        Ok(out)
    }

    /// Writes the manifest atomically; the caller must hold the manifest lock (or be
    /// creating the repository).
    pub fn store(&self, manifest: &Manifest) -> Result<()> {
        let mut text = serde_json::to_string_pretty(manifest).expect("manifest serialises");
        text.push('\n');
        let Some(remote) = &self.remote else {
            return write_atomically(&self.manifest_path(), text.as_bytes());
        };
        // Replaces only the version this process read (or creates the first one): a
        // concurrent writer's update is never lost.
        let mut version = self.manifest_version.lock().expect("manifest version");
        match remote.put(MANIFEST, text.into_bytes(), Some(version.clone()))? {
            crate::storage::Written::Stored(Some(tag)) => *version = Some(tag),
            crate::storage::Written::Stored(None) => {
                *version = remote.get(MANIFEST)?.and_then(|(_, tag)| tag)
            }
            crate::storage::Written::Conflict => {
                return Err(Error::Repository(match version.as_ref() {
                    None => format!(
                        "{} already holds a repository ({MANIFEST} exists); a new repository \
                         belongs under another prefix",
                        remote.url()
                    ),
                    Some(_) => format!(
                        "{}/{MANIFEST} changed while this process updated it: another pgincr \
                         process writes to this repository; nothing was overwritten, try again",
                        remote.url()
                    ),
                }));
            }
        }
        Ok(())
    }

    /// Takes an exclusive lock on a file in the repository root. With `wait = false` a held
    /// lock is an error naming the file.
    pub fn lock_file(&self, name: &str, wait: bool) -> Result<File> {
        let path = self.path(name);
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&path)
            .map_err(Error::io(format!("opening {}", path.display())))?;
        if wait {
            file.lock()
                .map_err(Error::io(format!("locking {}", path.display())))?;
        } else if file.try_lock().is_err() {
            return Err(Error::Repository(format!(
                "{} is locked: another pgincr process is using this repository",
                path.display()
            )));
        }
        Ok(file)
    }

    /// Takes the repository-wide lock `name` for the life of the returned guard: the local
    /// lock file, and for object storage also the lock object `locks/<name>.json` on the
    /// store, which names its owner and expires unless renewed (so that a crashed holder on
    /// another machine does not block forever). A holder with this spool that died is
    /// replaced at once: the local lock proves it gone.
    pub fn lock_exclusive(&self, name: &str) -> Result<RepoLock> {
        let file = self.lock_file(&format!("{name}.lock"), false)?;
        let object = match &self.remote {
            Some(remote) => Some(crate::storage::LockObject::acquire(
                remote.clone(),
                &format!("locks/{name}.json"),
                &format!("{}:{}", hostname(), self.root.display()),
            )?),
            None => None,
        };
        Ok(RepoLock {
            _file: file,
            _object: object,
        })
    }

    /// Takes a shared lock on a file in the repository root, waiting while it is held
    /// exclusively. None when the repository is read-only (nothing can delete from it then).
    pub fn lock_file_shared(&self, name: &str) -> Result<Option<File>> {
        let path = self.path(name);
        let file = match OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&path)
        {
            Ok(f) => f,
            Err(e)
                if e.kind() == std::io::ErrorKind::PermissionDenied
                    || e.kind() == std::io::ErrorKind::ReadOnlyFilesystem =>
            {
                tracing::debug!("{} cannot be opened for writing: {e}", path.display());
                return Ok(None);
            }
            Err(e) => return Err(Error::io(format!("opening {}", path.display()))(e)),
        };
        file.lock_shared()
            .map_err(Error::io(format!("locking {}", path.display())))?;
        Ok(Some(file))
    }

    pub fn stream_state_path(&self) -> PathBuf {
        self.path(STREAM_STATE)
    }

    /// What the stream last recorded; `None` when it never did (or the file is unreadable).
    pub fn load_stream_state(&self) -> Option<StreamState> {
        // A reader can meet an in-place rewrite half done: read again once.
        for _ in 0..2 {
            if let Ok(text) = fs::read_to_string(self.stream_state_path())
                && let Ok(state) = serde_json::from_str(text.trim_end_matches(['\0', ' ', '\n']))
            {
                return Some(state);
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        None
    }

    /// Records the stream's state: atomically when the disk allows, otherwise rewritten in
    /// place (it is padded to a fixed size, so that needs no free space).
    pub fn store_stream_state(&self, state: &StreamState) -> Result<()> {
        let mut text = serde_json::to_string_pretty(state).expect("stream state serialises");
        text.push('\n');
        let mut data = text.into_bytes();
        if data.len() < STREAM_STATE_BYTES {
            data.resize(STREAM_STATE_BYTES, b' ');
        }
        let path = self.stream_state_path();
        match write_atomically(&path, &data) {
            Ok(()) => Ok(()),
            Err(atomic) => {
                let _ = fs::remove_file(path.with_extension("tmp"));
                let in_place = OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .and_then(|mut f| {
                        f.write_all(&data)?;
                        f.set_len(data.len() as u64)?;
                        f.sync_all()
                    });
                in_place.map_err(|_| atomic)
            }
        }
    }

    /// Free space for an unprivileged writer on the repository's file system.
    pub fn free_bytes(&self) -> Option<u64> {
        let st = nix::sys::statvfs::statvfs(&self.root).ok()?;
        Some(st.blocks_available() as u64 * st.fragment_size() as u64)
    }

    /// Total size of all files under the repository.
    pub fn disk_usage(&self) -> u64 {
        if let Some(remote) = &self.remote {
            return remote
                .list("")
                .map_or(0, |objects| objects.iter().map(|o| o.bytes).sum());
        }
        fn walk(dir: &Path) -> u64 {
            let Ok(entries) = fs::read_dir(dir) else {
                return 0;
            };
            entries
                .flatten()
                .map(|e| match e.metadata() {
                    Ok(m) if m.is_dir() => walk(&e.path()),
                    Ok(m) => m.len(),
                    Err(_) => 0,
                })
                .sum()
        }
        walk(&self.root)
    }
}

/// A held repository lock; dropping it releases it.
pub struct RepoLock {
    _file: File,
    _object: Option<crate::storage::LockObject>,
}

fn hostname() -> String {
    fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "unknown-host".into())
}

pub fn create_private_dir(dir: &Path) -> Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(Error::io(format!("creating {}", dir.display())))?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).map_err(Error::io(format!(
        "setting permissions of {}",
        dir.display()
    )))
}

/// Creates (or truncates) a file readable by its owner only.
pub fn create_private_file(path: &Path) -> Result<File> {
    OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(0o600)
        .open(path)
        .map_err(Error::io(format!("creating {}", path.display())))
}

/// Replaces `path` with `data` so that readers and crashes see the old or the new content.
pub fn write_atomically(path: &Path, data: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    let mut f = create_private_file(&tmp)?;
    f.write_all(data)
        .and_then(|_| f.sync_all())
        .map_err(Error::io(format!("writing {}", tmp.display())))?;
    fs::rename(&tmp, path).map_err(Error::io(format!("renaming {}", tmp.display())))?;
    sync_dir(path.parent().unwrap_or(Path::new(".")))
}

pub fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(Error::io(format!("syncing directory {}", dir.display())))
}

/// SHA-256 (hex) and size of a file.
pub fn hash_file(path: &Path) -> Result<(String, u64)> {
    let mut f = File::open(path).map_err(Error::io(format!("opening {}", path.display())))?;
    let mut hashing = HashingWriter::new(std::io::sink());
    std::io::copy(&mut f, &mut hashing)
        .map_err(Error::io(format!("reading {}", path.display())))?;
    let (_, sha256, bytes) = hashing.finish();
    Ok((sha256, bytes))
}

/// How a stored file differs from its manifest entry.
#[derive(Debug)]
pub enum FileProblem {
    Missing,
    /// What the file on disk hashes to.
    Damaged {
        sha256: String,
        bytes: u64,
    },
}

impl Repo {
    /// Compares a file on disk with its manifest entry (size and SHA-256).
    pub fn stored_file_problem(&self, f: &FileEntry) -> Result<Option<FileProblem>> {
        if self.remote.is_some() {
            if !self.has_stored(&f.path)? {
                return Ok(Some(FileProblem::Missing));
            }
            let mut hashing = HashingWriter::new(std::io::sink());
            std::io::copy(&mut self.open_stored(&f.path)?, &mut hashing)
                .map_err(Error::io(format!("reading {}", f.path)))?;
            let (_, sha256, bytes) = hashing.finish();
            return Ok((sha256 != f.sha256 || bytes != f.bytes)
                .then_some(FileProblem::Damaged { sha256, bytes }));
        }
        let path = self.path(&f.path);
        if !path.exists() {
            return Ok(Some(FileProblem::Missing));
        }
        let (sha256, bytes) = hash_file(&path)?;
        Ok((sha256 != f.sha256 || bytes != f.bytes)
            .then_some(FileProblem::Damaged { sha256, bytes }))
    }
}

/// Opens a repository file for reading as SQL text, decrypting (`.age`, see
/// [`crate::crypt::load_identities`]) and decompressing (`.zst`) transparently.
pub fn open_sql(path: &Path) -> Result<Box<dyn Read + Send>> {
    let f = File::open(path).map_err(Error::io(format!("opening {}", path.display())))?;
    sql_layers(Box::new(f), path)
}

/// Stored bytes read as SQL text: decrypted when `path` ends in `.age`, decompressed when
/// (then) in `.zst`.
fn sql_layers(f: Box<dyn Read + Send>, path: &Path) -> Result<Box<dyn Read + Send>> {
    let (stored, name): (Box<dyn Read + Send>, String) = if crate::crypt::is_encrypted(path) {
        let name = path.to_string_lossy();
        let name = name[..name.len() - crate::crypt::SUFFIX.len()].to_owned();
        (crate::crypt::decrypt(f, path)?, name)
    } else {
        (Box::new(f), path.to_string_lossy().into_owned())
    };
    if name.ends_with(".zst") {
        let dec = zstd::stream::read::Decoder::new(stored)
            .map_err(Error::io(format!("reading {}", path.display())))?;
        Ok(Box::new(dec))
    } else {
        Ok(stored)
    }
}

/// A SQL file to read: a local file, or a file of a repository (in its directory or on
/// its object store).
#[derive(Debug, Clone)]
pub enum SqlSource {
    File(PathBuf),
    Stored(Repo, String),
}

impl SqlSource {
    pub fn open(&self) -> Result<Box<dyn Read + Send>> {
        match self {
            SqlSource::File(path) => open_sql(path),
            SqlSource::Stored(repo, rel) => repo.open_sql(rel),
        }
    }

    /// Size as stored (0 when unknown), for progress.
    pub fn stored_len(&self) -> u64 {
        match self {
            SqlSource::File(path) => fs::metadata(path).map_or(0, |m| m.len()),
            SqlSource::Stored(repo, rel) => repo.stored_size(rel).ok().flatten().unwrap_or(0),
        }
    }
}

impl From<PathBuf> for SqlSource {
    fn from(path: PathBuf) -> Self {
        SqlSource::File(path)
    }
}

fn parse_manifest(text: &str, name: &str) -> Result<Manifest> {
    let manifest: Manifest = serde_json::from_str(text)
        .map_err(|e| Error::Repository(format!("{name} is damaged: {e}")))?;
    if manifest.format > FORMAT {
        return Err(Error::Repository(format!(
            "{name} has format {}, newer than this pgincr understands ({FORMAT}); use a newer pgincr",
            manifest.format
        )));
    }
    Ok(manifest)
}

/// Now, as RFC 3339 UTC.
pub fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .expect("formatting now")
}

/// Now, as a directory-name-friendly UTC timestamp (20261122T200543Z).
pub fn now_id() -> String {
    let f = time::macros::format_description!("[year][month][day]T[hour][minute][second]Z");
    time::OffsetDateTime::now_utc()
        .format(&f)
        .expect("formatting now")
}

/// Parses an RFC 3339 timestamp into microseconds since the Unix epoch.
pub fn parse_rfc3339_micros(s: &str) -> Option<i128> {
    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .ok()
        .map(|t| t.unix_timestamp_nanos() / 1000)
}

/// A writer that hashes and counts what passes through it.
pub struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
    pub bytes: u64,
}

impl<W: Write> HashingWriter<W> {
    pub fn new(inner: W) -> Self {
        HashingWriter {
            inner,
            hasher: Sha256::new(),
            bytes: 0,
        }
    }

    /// The inner writer, the hex SHA-256 and the byte count.
    pub fn finish(self) -> (W, String, u64) {
        (self.inner, hex::encode(self.hasher.finalize()), self.bytes)
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Writes SQL text into a repository file, optionally zstd-compressed, encrypted when the
/// repository is, and returns its manifest entry once the file is durable.
pub struct SqlFileWriter {
    path: PathBuf,
    rel: String,
    sink: Sink,
    sql_bytes: u64,
}

enum Sink {
    Plain(Cipher),
    Zstd(zstd::stream::write::Encoder<'static, Cipher>),
}

/// The layer under compression: the file itself, or age encryption into it.
enum Cipher {
    None(HashingWriter<Output>),
    Age(age::stream::StreamWriter<HashingWriter<Output>>),
}

/// Where the stored bytes go: a local file, or an upload to the object store.
enum Output {
    File(File),
    Upload(crate::storage::MultipartUpload),
}

impl Write for Output {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Output::File(f) => f.write(buf),
            Output::Upload(u) => std::io::Write::write(u, buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Output::File(f) => f.flush(),
            Output::Upload(_) => Ok(()),
        }
    }
}

impl Write for Cipher {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Cipher::None(w) => w.write(buf),
            Cipher::Age(w) => w.write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Cipher::None(w) => w.flush(),
            Cipher::Age(w) => w.flush(),
        }
    }
}

impl Cipher {
    fn finish(self) -> std::io::Result<HashingWriter<Output>> {
        match self {
            Cipher::None(w) => Ok(w),
            Cipher::Age(w) => w.finish(),
        }
    }
}

impl Write for SqlFileWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = match &mut self.sink {
            Sink::Plain(w) => w.write(buf),
            Sink::Zstd(w) => w.write(buf),
        }?;
        self.sql_bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match &mut self.sink {
            Sink::Plain(w) => w.flush(),
            Sink::Zstd(w) => w.flush(),
        }
    }
}

/// zstd level for repository files: fast, and about 5-10x smaller for SQL text.
static ZSTD_LEVEL: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(3);

/// The zstd level of files written from now on (`--compression-level`).
pub fn set_compression_level(level: i32) {
    ZSTD_LEVEL.store(level, std::sync::atomic::Ordering::Relaxed);
}

impl SqlFileWriter {
    /// `rel` is the path relative to the repository root, stored as [`Repo::stored_rel`].
    pub fn create(repo: &Repo, rel: &str, compress: bool) -> Result<Self> {
        let path = repo.path(repo.stored_rel(rel, compress)?);
        let output = Output::File(create_private_file(&path)?);
        Self::with_output(repo, rel, compress, output)
    }

    /// Like [`create`](Self::create), but on object storage the file is uploaded in parts
    /// as it is written, not spooled: for files written once, in one go (base dumps,
    /// globals). The object appears only when [`finish`](Self::finish) succeeds.
    pub fn create_direct(repo: &Repo, rel: &str, compress: bool) -> Result<Self> {
        match repo.remote() {
            Some(remote) => {
                let upload = remote.multipart(&repo.stored_rel(rel, compress)?)?;
                Self::with_output(repo, rel, compress, Output::Upload(upload))
            }
            None => Self::create(repo, rel, compress),
        }
    }

    fn with_output(repo: &Repo, rel: &str, compress: bool, output: Output) -> Result<Self> {
        let recipients = repo.recipients()?;
        let rel = repo.stored_rel(rel, compress)?;
        let path = match repo.remote() {
            Some(remote) if matches!(output, Output::Upload(_)) => {
                PathBuf::from(format!("{}/{rel}", remote.url()))
            }
            _ => repo.path(&rel),
        };
        let file = HashingWriter::new(output);
        let file = if recipients.is_empty() {
            Cipher::None(file)
        } else {
            Cipher::Age(crate::crypt::encrypt_to(recipients, file, &path)?)
        };
        let sink = if compress {
            let mut enc = zstd::stream::write::Encoder::new(
                file,
                ZSTD_LEVEL.load(std::sync::atomic::Ordering::Relaxed),
            )
            .map_err(Error::io(format!("compressing {}", path.display())))?;
            // A frame checksum lets the plain `zstd -t` detect damage too.
            enc.include_checksum(true)
                .map_err(Error::io(format!("compressing {}", path.display())))?;
            Sink::Zstd(enc)
        } else {
            Sink::Plain(file)
        };
        Ok(SqlFileWriter {
            path,
            rel,
            sink,
            sql_bytes: 0,
        })
    }

    /// Appends SQL text.
    pub fn append(&mut self, data: &[u8]) -> Result<()> {
        Write::write_all(self, data).map_err(Error::io(format!("writing {}", self.path.display())))
    }

    /// Flushes, fsyncs and describes the file.
    pub fn finish(self) -> Result<FileEntry> {
        let ctx = format!("writing {}", self.path.display());
        let (cipher, compression) = match self.sink {
            Sink::Plain(w) => (w, "none"),
            Sink::Zstd(enc) => (enc.finish().map_err(Error::io(ctx.clone()))?, "zstd"),
        };
        let encryption = matches!(cipher, Cipher::Age(_)).then(|| "age".to_owned());
        let hashing = cipher.finish().map_err(Error::io(ctx.clone()))?;
        let (output, sha256, bytes) = hashing.finish();
        match output {
            Output::File(file) => file.sync_all().map_err(Error::io(ctx))?,
            Output::Upload(upload) => upload.finish()?,
        }
        Ok(FileEntry {
            path: self.rel,
            bytes,
            sha256,
            sql_bytes: self.sql_bytes,
            compression: compression.to_owned(),
            encryption,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_round_trips_and_rejects_newer_formats() {
        let dir = tempfile::tempdir().unwrap();
        let repo = Repo::new(dir.path().join("r"));
        repo.create_dirs().unwrap();
        let mode = fs::metadata(&repo.root).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        let m = Manifest {
            format: FORMAT_PLAIN,
            created: now_rfc3339(),
            source: Source {
                system_identifier: "1".into(),
                database: "app".into(),
                slot: "pgincr".into(),
                stream_start_lsn: "0/16B3748".parse().unwrap(),
                confirmed_clean_lsn: None,
                missing_identity: MissingIdentity::Full,
            },
            bases: vec![],
            segments: vec![],
            globals: vec![],
            prune_history: vec![],
            encryption: None,
        };
        repo.store(&m).unwrap();
        let mode = fs::metadata(repo.manifest_path())
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600);
        let text = fs::read_to_string(repo.manifest_path()).unwrap();
        assert!(
            text.contains("\"stream_start_lsn\": \"0/16B3748\""),
            "{text}"
        );
        repo.update(|m| {
            m.source.database = "other".into();
            Ok(())
        })
        .unwrap();
        assert_eq!(repo.load().unwrap().source.database, "other");

        fs::write(
            repo.manifest_path(),
            text.replace("\"format\": 1", "\"format\": 99"),
        )
        .unwrap();
        let err = repo.load().unwrap_err().to_string();
        assert!(err.contains("newer than this pgincr"), "{err}");
        fs::write(repo.manifest_path(), "{").unwrap();
        assert!(repo.load().unwrap_err().to_string().contains("damaged"));
    }

    #[test]
    fn a_held_lock_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let repo = Repo::new(dir.path());
        let _held = repo.lock_file("stream.lock", false).unwrap();
        let err = repo
            .lock_file("stream.lock", false)
            .unwrap_err()
            .to_string();
        assert!(err.contains("another pgincr process"), "{err}");
    }

    #[test]
    fn stream_state_round_trips_and_is_rewritten_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let repo = Repo::new(dir.path());
        assert!(repo.load_stream_state().is_none());
        let mut state = StreamState {
            updated: now_rfc3339(),
            error: Some(StreamError {
                kind: DISK_FULL.into(),
                message: "No space left on device".into(),
                first_seen: "2026-01-01T00:00:00Z".into(),
                last_seen: "2026-01-01T00:01:00Z".into(),
                count: 3,
            }),
        };
        repo.store_stream_state(&state).unwrap();
        assert_eq!(
            fs::metadata(repo.stream_state_path()).unwrap().len(),
            STREAM_STATE_BYTES as u64
        );
        assert_eq!(repo.load_stream_state().unwrap().error, state.error);
        // Without room for a new file (here: the temporary name is taken by a directory),
        // the file is rewritten where it is.
        fs::create_dir(repo.stream_state_path().with_extension("tmp")).unwrap();
        state.error = None;
        repo.store_stream_state(&state).unwrap();
        assert!(repo.load_stream_state().unwrap().error.is_none());
    }

    #[test]
    fn full_disks_are_recognised() {
        let enospc = std::io::Error::from_raw_os_error(nix::errno::Errno::ENOSPC as i32);
        assert!(is_disk_full(&Error::io("writing x")(enospc)));
        assert!(is_disk_full(&Error::Tool {
            program: "pg_recvlogical".into(),
            status: "exit code 1".into(),
            stderr_tail: "could not write 8 bytes to log file: No space left on device".into(),
        }));
        assert!(!is_disk_full(&Error::Invalid("slot in use".into())));
    }

    #[test]
    fn missing_manifest_advice_depends_on_what_the_directory_holds() {
        let dir = tempfile::tempdir().unwrap();
        let repo = Repo::new(dir.path());
        assert!(repo.missing_manifest_advice().contains("empty directory"));
        repo.create_dirs().unwrap();
        fs::write(repo.path("bases/x"), "").unwrap();
        let advice = repo.missing_manifest_advice();
        assert!(
            advice.contains("Put manifest.json back") && !advice.contains("--force"),
            "{advice}"
        );
    }

    #[test]
    fn zstd_files_read_back_as_text() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.sql.zst");
        fs::write(&p, zstd::encode_all(&b"SELECT 1;\n"[..], 3).unwrap()).unwrap();
        let mut s = String::new();
        open_sql(&p).unwrap().read_to_string(&mut s).unwrap();
        assert_eq!(s, "SELECT 1;\n");
        assert_eq!(
            parse_rfc3339_micros("2000-01-01T00:00:00.000001Z"),
            Some(946_684_800_000_001)
        );
    }
}
