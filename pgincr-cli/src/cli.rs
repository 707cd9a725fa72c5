//! Command-line definitions. Doc comments here are the `--help` text.

use crate::units::{parse_duration, parse_size};
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Parser)]
#[command(
    name = "pgincr",
    version,
    about = "Incremental plain-SQL backups of PostgreSQL through logical decoding",
    long_about = "Incremental plain-SQL backups of PostgreSQL through logical decoding.\n\n\
        Typical use: `pgincr check`, `pgincr init` (slot + first base backup), `pgincr stream` \
        (runs continuously), `pgincr base` now and then, `pgincr status` from monitoring, \
        `pgincr verify`, `pgincr prune`, and `pgincr restore` when it matters."
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// More log output (-v: debug, -vv: trace). Also PGINCR_LOG=<filter>.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Only errors.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
    /// Directory of pg_dump, pg_dumpall, psql and pg_recvlogical (default: found on PATH).
    #[arg(long, global = true, env = "PGINCR_PG_BINDIR", value_name = "DIR")]
    pub pg_bindir: Option<PathBuf>,
    /// Configuration file (default: /etc/pgincr/pgincr.toml when it exists); its settings
    /// apply where neither an option nor a PGINCR_* variable sets them.
    #[arg(long, global = true, env = "PGINCR_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// zstd level of the segments and base dumps written (1 fast ... 19 small).
    #[arg(long, global = true, env = "PGINCR_COMPRESSION_LEVEL", default_value = "3",
          value_parser = clap::value_parser!(i32).range(1..=19), value_name = "N")]
    pub compression_level: i32,
    /// The configuration file's [database.NAME] section to use.
    #[arg(long, global = true, env = "PGINCR_DATABASE", value_name = "NAME")]
    pub database: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check that a server is ready for pgincr backups (with --fix, apply the safe fixes).
    Check(CheckArgs),
    /// Create the repository, the replication slot and the first base backup aligned with it.
    Init(InitArgs),
    /// Take a new base backup aligned with the change stream (safe while `stream` runs).
    Base(BaseArgs),
    /// Receive changes continuously into compressed, checksummed segment files.
    Stream(StreamArgs),
    /// Run `stream` for every database of the configuration file, restarting any that
    /// fails, and their scheduled base backups and prunes (base_every or base_at).
    Supervise(SuperviseArgs),
    /// Report slot lag and backup freshness with Nagios exit codes (0 ok, 1 warning, 2 critical).
    Status(StatusArgs),
    /// Restore into a new, empty database: latest state or a point in time.
    Restore(RestoreCommand),
    /// Check checksums, segment continuity and readability of a repository.
    Verify(VerifyArgs),
    /// Delete old base backups and the segments only they needed.
    Prune(PruneArgs),
    /// List the replication origins restores left in a target cluster; drop those of
    /// databases that no longer exist.
    Origins(OriginsArgs),
    /// The configuration file.
    #[command(subcommand)]
    Config(ConfigCommand),
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Check the configuration file (line and column of any mistake) and print the effective
    /// settings of each database, passwords masked.
    Check,
}

#[derive(Debug, Args)]
pub struct OriginsArgs {
    /// Connection string of any database of the target cluster.
    #[arg(long, short = 't', env = "PGINCR_TARGET", default_value = "")]
    pub target: String,
    /// Drop the origins of restores into databases that no longer exist.
    #[arg(long)]
    pub drop_orphaned: bool,
}

/// How to reach the source database. Follows libpq: a conninfo string or URI, and PG*
/// environment variables for whatever it leaves out. Passwords belong in ~/.pgpass or
/// PGPASSWORD; one given in the connection string is passed to child programs through
/// PGPASSWORD, never on their command lines.
#[derive(Debug, Args, Clone)]
pub struct ConnArgs {
    /// Connection string or URI of the database to back up (e.g. "host=/run/postgresql dbname=app").
    #[arg(long, short = 'd', env = "PGINCR_DSN", default_value = "")]
    pub dsn: String,
}

#[derive(Debug, Args, Clone)]
pub struct RepoArgs {
    /// Backup repository: a directory, or s3://bucket/prefix on S3-compatible object storage
    /// (credentials from the AWS environment variables or ~/.aws).
    #[arg(long, short = 'r', env = "PGINCR_REPO", value_name = "DIR|URL")]
    pub repo: PathBuf,
    /// Local spool of an object-storage repository: files are written and fsync'd here
    /// before they are uploaded (default: ~/.cache/pgincr/spool/BUCKET/PREFIX).
    #[arg(long, env = "PGINCR_SPOOL", value_name = "DIR")]
    pub spool: Option<PathBuf>,
}

impl RepoArgs {
    pub fn open(&self) -> crate::Result<crate::repo::Repo> {
        crate::repo::Repo::open(&self.repo, self.spool.as_deref())
    }
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    #[command(flatten)]
    pub conn: ConnArgs,
    /// Offer the safe fixes (create the extension; give tables without a usable replica
    /// identity one: USING INDEX of a suitable unique index, else FULL).
    #[arg(long)]
    pub fix: bool,
    /// Apply the fixes without asking (needed when stdin is not a terminal).
    #[arg(long, requires = "fix")]
    pub yes: bool,
}

#[derive(Debug, Args, Clone)]
pub struct InitArgs {
    #[command(flatten)]
    pub conn: ConnArgs,
    #[command(flatten)]
    pub repo: RepoArgs,
    /// Name of the logical replication slot to create.
    #[arg(long, env = "PGINCR_SLOT", default_value = "pgincr")]
    pub slot: String,
    /// Start over: empty an existing repository directory and recreate the slot.
    #[arg(long)]
    pub force: bool,
    #[command(flatten)]
    pub dump: DumpArgs,
    /// Tables without a primary key or replica identity index: full gives new ones
    /// REPLICA IDENTITY FULL as they are created, so every change is backed up; skip leaves
    /// them as they are and skips their UPDATEs and DELETEs, counted in `status`.
    #[arg(long, value_enum, default_value = "full")]
    pub missing_identity: crate::repo::MissingIdentity,
    /// Encrypt every file of the repository to this age recipient (`age1…`, from
    /// `age-keygen`; repeatable). Only the public key is needed here; restore and
    /// verify --content take the private one with --identity. Chosen once, at init.
    #[arg(
        long = "encrypt-to",
        env = "PGINCR_ENCRYPT_TO",
        value_name = "RECIPIENT",
        value_delimiter = ','
    )]
    pub encrypt_to: Vec<String>,
    /// Enrol every database of the server that is not a template: each into its own
    /// repository REPO/<name> with its own slot <slot>_<name>; prints the configuration
    /// file sections for `pgincr supervise`. A database that fails does not stop the others.
    #[arg(long)]
    pub all_databases: bool,
}

#[derive(Debug, Args)]
pub struct BaseArgs {
    #[command(flatten)]
    pub conn: ConnArgs,
    #[command(flatten)]
    pub repo: RepoArgs,
    #[command(flatten)]
    pub dump: DumpArgs,
}

/// How a base backup dumps the database.
#[derive(Debug, Args, Clone, Copy)]
pub struct DumpArgs {
    /// plain: one SQL script, zstd-compressed, readable with `zstd -dc` and restored in one
    /// transaction. directory: pg_dump's directory format (one gzip-compressed file per
    /// table), dumped and restored by --jobs parallel workers.
    #[arg(long, value_enum, default_value = "plain")]
    pub format: crate::repo::DumpFormat,
    /// Parallel pg_dump workers (directory format only).
    #[arg(long, default_value = "1", value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub jobs: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Compression {
    Zstd,
    None,
}

#[derive(Debug, Args)]
pub struct StreamArgs {
    #[command(flatten)]
    pub conn: ConnArgs,
    #[command(flatten)]
    pub repo: RepoArgs,
    /// Close the open segment when it reaches this size.
    #[arg(long, env = "PGINCR_SEGMENT_SIZE", default_value = "64MB", value_parser = parse_size)]
    pub segment_size: u64,
    /// Close the open segment when it is this old and not empty.
    #[arg(long, env = "PGINCR_SEGMENT_AGE", default_value = "1h", value_parser = parse_duration)]
    pub segment_age: Duration,
    /// Compression of closed segments (zstd files open with the standard `zstd` tool).
    #[arg(long, value_enum, default_value = "zstd")]
    pub compression: Compression,
    /// How often pg_recvlogical reports its position to the server.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub status_interval: Duration,
    /// How often received changes are fsynced (and then confirmed to the server).
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub fsync_interval: Duration,
    /// How often the current values of all sequences are written into the stream (0 = never).
    #[arg(long, env = "PGINCR_SEQUENCE_INTERVAL", default_value = "5m", value_parser = parse_duration)]
    pub sequence_interval: Duration,
    /// How often roles, memberships, role settings and tablespaces are compared with the
    /// newest copy in the repository, which gets a new `pg_dumpall --globals-only` when they
    /// changed (0 = never).
    #[arg(long, env = "PGINCR_GLOBALS_INTERVAL", default_value = "1m", value_parser = parse_duration)]
    pub globals_interval: Duration,
    /// Longest wait between restarts of pg_recvlogical after failures.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub max_backoff: Duration,
    /// Receive everything committed up to now, close the segment and exit (for cron jobs).
    #[arg(long)]
    pub catch_up: bool,
    /// When the server may let go of received changes: `spool`, once fsync'd in the local
    /// spool; `store`, once uploaded to the object store (a second slot, SLOT_stored, keeps
    /// the WAL since the last upload, so changes of a lost spool are received again).
    /// Unset: as the repository's last stream did.
    #[arg(long, env = "PGINCR_CONFIRM_AFTER", value_enum)]
    pub confirm_after: Option<ConfirmAfter>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ConfirmAfter {
    Spool,
    Store,
}

#[derive(Debug, Args)]
pub struct SuperviseArgs {
    /// Stream every database once until it has caught up with its server, then exit
    /// (non-zero, naming them, if any failed).
    #[arg(long)]
    pub catch_up: bool,
    /// Wait this long before restarting a failed stream, doubling after each failure (up to
    /// 5 min).
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub restart_delay: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StatusFormat {
    Text,
    Json,
    Prometheus,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub conn: ConnArgs,
    /// Repository to report on (segment age and size); without it only the slot is checked.
    #[arg(long, short = 'r', env = "PGINCR_REPO", value_name = "DIR|URL")]
    pub repo: Option<PathBuf>,
    /// Local spool of an object-storage repository (see `stream --spool`).
    #[arg(long, env = "PGINCR_SPOOL", value_name = "DIR")]
    pub spool: Option<PathBuf>,
    /// Slot name (default: the repository's, else "pgincr").
    #[arg(long, env = "PGINCR_SLOT")]
    pub slot: Option<String>,
    /// WARNING when the slot holds back this much WAL.
    #[arg(long, env = "PGINCR_WARN_LAG", default_value = "1GB", value_parser = parse_size)]
    pub warn_lag: u64,
    /// CRITICAL when the slot holds back this much WAL.
    #[arg(long, env = "PGINCR_CRITICAL_LAG", default_value = "10GB", value_parser = parse_size)]
    pub critical_lag: u64,
    /// CRITICAL when no change has reached the repository for this long while the slot is
    /// inactive or lagging.
    #[arg(long, env = "PGINCR_CRITICAL_AGE", default_value = "24h", value_parser = parse_duration)]
    pub critical_age: Duration,
    /// WARNING when the repository's filesystem is this full (percent).
    #[arg(long, env = "PGINCR_FS_WARN", default_value_t = 80.0, value_parser = parse_percent)]
    pub fs_warn: f64,
    /// CRITICAL when the repository's filesystem is this full (percent).
    #[arg(long, env = "PGINCR_FS_CRITICAL", default_value_t = 95.0, value_parser = parse_percent)]
    pub fs_critical: f64,
    /// Object storage: WARNING when a closed segment has waited this long for its upload.
    #[arg(long, env = "PGINCR_UPLOAD_WARN", default_value = "10m", value_parser = parse_duration)]
    pub upload_warn: Duration,
    /// Object storage: CRITICAL when a closed segment has waited this long for its upload.
    #[arg(long, env = "PGINCR_UPLOAD_CRITICAL", default_value = "1h", value_parser = parse_duration)]
    pub upload_critical: Duration,
    /// WARNING when the newest base backup is older than this (the base schedule has
    /// stopped).
    #[arg(long, env = "PGINCR_BASE_MAX_AGE", default_value = "8d", value_parser = parse_duration)]
    pub base_max_age: Duration,
    /// WARNING when `pgincr prune` last ran longer ago than this (or never, in a repository
    /// older than this).
    #[arg(long, env = "PGINCR_PRUNE_MAX_AGE", default_value = "8d", value_parser = parse_duration)]
    pub prune_max_age: Duration,
    #[arg(long, value_enum, default_value = "text")]
    pub format: StatusFormat,
    /// Every database of the configuration file, each with its own section's settings;
    /// the exit code is the worst of them.
    #[arg(long)]
    pub all: bool,
}

/// A percentage between 0 and 100 (`80` or `80%`).
pub fn parse_percent(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .trim()
        .trim_end_matches('%')
        .parse()
        .map_err(|_| format!("{s:?} is not a percentage (e.g. 80 or 80%)"))?;
    if (0.0..=100.0).contains(&v) {
        Ok(v)
    } else {
        Err(format!("{s:?} is not between 0 and 100"))
    }
}

#[derive(Debug, Args)]
pub struct RestoreArgs {
    #[command(flatten)]
    pub repo: RepoArgs,
    /// age identity file (written by age-keygen) that reads an encrypted repository.
    #[arg(long, env = "PGINCR_IDENTITY", value_name = "FILE")]
    pub identity: Option<PathBuf>,
    /// Connection string of the target database: new and empty, or one this restore
    /// already started (it then resumes).
    #[arg(long, short = 't', env = "PGINCR_TARGET", default_value = "")]
    pub target: String,
    /// Create the target database first (with the source's encoding and locale).
    #[arg(long)]
    pub create: bool,
    /// Stop before the first transaction that committed after this time
    /// (any PostgreSQL timestamptz input, e.g. "2026-11-22 14:05:00+01").
    #[arg(long, conflicts_with = "to_lsn")]
    pub to_time: Option<String>,
    /// Stop before the first transaction whose commit LSN is past this one.
    #[arg(long)]
    pub to_lsn: Option<String>,
    /// Use this base backup (id under bases/) instead of the newest suitable one.
    #[arg(long)]
    pub base: Option<String>,
    /// Do not restore roles and tablespaces from the globals dumps.
    #[arg(long)]
    pub no_globals: bool,
    /// Create the globals' tablespaces under NEW where the source had them under OLD
    /// (repeatable; the first matching OLD applies).
    #[arg(long = "tablespace-map", value_name = "OLD=NEW", value_parser = parse_tablespace_map)]
    pub tablespace_map: Vec<(String, String)>,
    /// List what would be restored and change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Largest batch of transactions sent in one round trip.
    #[arg(long, default_value = "1MB", value_parser = parse_size)]
    pub batch_size: u64,
    /// Load a run of at least this many INSERTs into one table with COPY (0: never). Rows
    /// are stored exactly as the INSERTs would store them; tables with triggers or rules
    /// that fire during a restore, or with row security, always get the INSERTs.
    #[arg(long, default_value_t = 32)]
    pub copy_min_rows: u64,
    /// Parallel pg_restore workers for a directory-format base (a plain base is loaded by
    /// one psql in one transaction; this is then ignored).
    #[arg(long, default_value = "1", value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub jobs: u32,
}

/// `pgincr restore`: what to restore and where ([`RestoreArgs`]), and how to treat
/// transactions that cannot be applied and the restore's bookkeeping ([`RestoreControl`]).
#[derive(Debug, Args)]
pub struct RestoreCommand {
    #[command(flatten)]
    pub args: RestoreArgs,
    #[command(flatten)]
    pub control: RestoreControl,
}

impl From<RestoreArgs> for RestoreCommand {
    fn from(args: RestoreArgs) -> Self {
        RestoreCommand {
            args,
            control: RestoreControl::default(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum OnError {
    /// Stop at the failing transaction; fix the target and run the restore again to resume.
    #[default]
    Stop,
    /// Write the failing transaction to the reject file and go on with the next one.
    Skip,
}

#[derive(Debug, Args, Default)]
pub struct RestoreControl {
    /// Leave out this transaction (its xid, or its end LSN as in "end_lsn=0/1A2B3C"); the
    /// restore moves past it. Repeatable.
    #[arg(long, value_name = "XID|END_LSN", value_parser = parse_skip_request)]
    pub skip_transaction: Vec<crate::commands::restore::plan::SkipRequest>,
    /// What to do when a transaction fails on the target.
    #[arg(long, value_enum, default_value = "stop")]
    pub on_error: OnError,
    /// File that receives every transaction left out (appended: its SQL, preceded by the
    /// error as comments). Required with --on-error=skip.
    #[arg(long, value_name = "FILE", required_if_eq("on_error", "skip"))]
    pub reject_file: Option<PathBuf>,
    /// Keep the restore resumable after it applied everything: a later run applies what the
    /// backup received since. Without it a complete restore drops its replication origin.
    #[arg(long)]
    pub keep_origin: bool,
}

fn parse_tablespace_map(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((old, new)) if old.starts_with('/') && new.starts_with('/') => Ok((
            old.trim_end_matches('/').to_owned(),
            new.trim_end_matches('/').to_owned(),
        )),
        _ => Err(format!(
            "{s:?}: expected OLD=NEW with two absolute directories, e.g. /srv/ts=/mnt/ts"
        )),
    }
}

fn parse_skip_request(s: &str) -> Result<crate::commands::restore::plan::SkipRequest, String> {
    crate::commands::restore::plan::SkipRequest::parse(s)
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    #[command(flatten)]
    pub repo: RepoArgs,
    /// age identity file (written by age-keygen) that reads an encrypted repository.
    #[arg(long, env = "PGINCR_IDENTITY", value_name = "FILE")]
    pub identity: Option<PathBuf>,
    /// Also restore into this (new, empty) database to prove the backup loads.
    #[arg(long, value_name = "CONNINFO")]
    pub restore_test: Option<String>,
    /// Read and check in full only this share of the files, picked at random (every file's
    /// presence and size is still checked): a cheaper regular check of a large repository,
    /// on object storage above all. 100 (the default) reads everything.
    #[arg(long, value_name = "PERCENT", default_value_t = 100.0, value_parser = parse_percent)]
    pub sample: f64,
}

#[derive(Debug, Args)]
pub struct PruneArgs {
    #[command(flatten)]
    pub repo: RepoArgs,
    /// Keep this many newest base backups.
    #[arg(long, env = "PGINCR_KEEP_BASES")]
    pub keep_bases: Option<usize>,
    /// Keep base backups younger than this (e.g. "30d"); the newest base is always kept.
    #[arg(long, env = "PGINCR_KEEP_AGE", value_parser = parse_duration)]
    pub keep_age: Option<Duration>,
    /// Also keep the newest base backup of each of the last N calendar months (UTC) that have
    /// one: grandfather-father-son retention with --keep-age.
    #[arg(long, env = "PGINCR_KEEP_MONTHLY", value_name = "N")]
    pub keep_monthly: Option<usize>,
    /// Keep change segments closed within this time even if no kept base needs them (e.g.
    /// "7d"), so that recent points in time stay restorable from a base that is kept.
    #[arg(long, env = "PGINCR_KEEP_SEGMENTS_AGE", value_parser = parse_duration)]
    pub keep_segments_age: Option<Duration>,
    /// Object storage: also delete objects under bases/, segments/ and globals/ that the
    /// manifest does not name (left by a killed base or upload) once they are this old; the
    /// grace keeps the objects of a base still being written.
    #[arg(long, default_value = "1d", value_parser = parse_duration)]
    pub orphans_older_than: Duration,
    /// Show what would be deleted and why each base is kept or deleted.
    #[arg(long)]
    pub dry_run: bool,
}
