//! pgincr: incremental, plain-SQL backups of PostgreSQL through logical decoding with the
//! decoder_sql output plugin.

pub mod chain;
pub mod cli;
pub mod commands;
pub mod config;
pub mod conninfo;
pub mod crypt;
pub mod database;
pub mod error;
pub mod fleet;
pub mod globals;
pub mod logging;
pub mod pg;
pub mod progress;
pub mod repo;
pub mod segment;
pub mod storage;
pub mod tool;
pub mod units;

pub use error::{Error, Result};

/// Runs the parsed command line.
pub fn run(cli: cli::Cli) -> Result<()> {
    if let cli::Command::Config(cli::ConfigCommand::Check) = cli.command {
        return commands::config::check(cli.global.config);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    progress::set_quiet(cli.global.quiet);
    repo::set_compression_level(cli.global.compression_level);
    let bindir = cli.global.pg_bindir;
    let config = cli.global.config;
    runtime.block_on(async move {
        use cli::Command;
        match cli.command {
            Command::Check(args) => commands::check::run(args).await,
            Command::Init(args) => commands::init::run(args, bindir).await,
            Command::Base(args) => commands::base::run(args, bindir).await,
            Command::Stream(args) => commands::stream::run(args, bindir).await,
            Command::Supervise(args) => commands::supervise::run(args, config, bindir).await,
            Command::Restore(args) => commands::restore::run(args, bindir).await,
            Command::Status(args) if args.all => commands::status::run_all(args, config).await,
            Command::Status(args) => commands::status::run(args, bindir).await,
            Command::Verify(args) => commands::verify::run(args, bindir).await,
            Command::Prune(args) => commands::prune::run(args).await,
            Command::Origins(args) => commands::origins::run(args, bindir).await,
            Command::Config(_) => unreachable!("handled above"),
        }
    })
}
