//! Command-line definitions. Doc comments here are the `--help` text.

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "pgincr",
    version,
    about = "Incremental plain-SQL backups of PostgreSQL through logical decoding"
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
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check that a server is ready for pgincr backups; changes nothing.
    Check(CheckArgs),
}

/// How to reach the source database. Follows libpq: a conninfo string or URI, and PG*
/// environment variables for whatever it leaves out. Passwords belong in ~/.pgpass or
/// PGPASSWORD, never on the command line.
#[derive(Debug, Args)]
pub struct ConnArgs {
    /// Connection string or URI of the database to back up (e.g. "host=/run/postgresql dbname=app").
    #[arg(long, short = 'd', env = "PGINCR_DSN", default_value = "")]
    pub dsn: String,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    #[command(flatten)]
    pub conn: ConnArgs,
}
