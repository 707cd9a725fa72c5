//! pgincr: incremental, plain-SQL backups of PostgreSQL through logical decoding with the
//! decoder_sql output plugin.

pub mod cli;
pub mod commands;
pub mod error;
pub mod logging;
pub mod pg;

pub use error::{Error, Result};

/// Runs the parsed command line.
pub fn run(cli: cli::Cli) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        match cli.command {
            cli::Command::Check(args) => commands::check::run(args).await,
        }
    })
}
