use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
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
