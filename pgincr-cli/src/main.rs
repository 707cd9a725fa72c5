use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    // The configuration file's settings become defaults of the options, before they are read.
    let args: Vec<String> = std::env::args().collect();
    if let Err(e) = pgincr_cli::config::apply_to_environment(&args) {
        eprintln!("pgincr: {e}");
        return ExitCode::from(2);
    }
    let cli = pgincr_cli::cli::Cli::parse();
    pgincr_cli::logging::init(&cli.global);
    match pgincr_cli::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // status has printed its verdict already.
            if !matches!(err, pgincr_cli::Error::Status(_)) {
                tracing::error!("{err:#}");
            }
            ExitCode::from(err.exit_code())
        }
    }
}
