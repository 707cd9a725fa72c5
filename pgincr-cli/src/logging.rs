//! Logging to stderr through `tracing`; data output goes to stdout.

use crate::cli::GlobalArgs;
use tracing_subscriber::EnvFilter;

pub fn init(args: &GlobalArgs) {
    let default = match (args.quiet, args.verbose) {
        (true, _) => "error",
        (false, 0) => "info",
        (false, 1) => "debug",
        (false, _) => "trace",
    };
    // The object-store client reports each retried request; pgincr reports what failed.
    let filter = EnvFilter::try_from_env("PGINCR_LOG").unwrap_or_else(|_| {
        EnvFilter::new(if args.verbose == 0 {
            format!("{default},object_store=warn")
        } else {
            default.to_owned()
        })
    });
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
}
