//! Several databases from one configuration file: every `[database.NAME]` section is a
//! database backed up into its own repository (logical slots are per database). Commands over
//! all of them (`supervise`, `status --all`) run one `pgincr` process per database, with
//! `--database NAME`, so that each reads its own section and one failing database cannot
//! stop or confuse the others.

use crate::config::{self, Config, Settings};
use crate::{Error, Result};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// The configured databases, in name order, with their effective settings.
pub fn databases(named_config: Option<&Path>) -> Result<(PathBuf, Vec<(String, Settings)>)> {
    let Some(path) = config::path_in_use(named_config) else {
        return Err(Error::Invalid(format!(
            "commands over every database need a configuration file with [database.NAME] \
             sections: --config FILE, PGINCR_CONFIG or {}",
            config::DEFAULT_PATH
        )));
    };
    let file: Config = config::load(&path).map_err(Error::Invalid)?;
    if file.database.is_empty() {
        return Err(Error::Invalid(format!(
            "{} has no [database.NAME] section",
            path.display()
        )));
    }
    let mut out = Vec::new();
    for name in file.database.keys() {
        let settings = file.effective(Some(name)).map_err(Error::Invalid)?;
        out.push((name.clone(), settings));
    }
    Ok((path, out))
}

/// What names one database's connection, repository, slot or spool: set in this process's
/// environment it would override every section's own.
const PER_DATABASE_VARIABLES: [&str; 4] =
    ["PGINCR_DSN", "PGINCR_REPO", "PGINCR_SLOT", "PGINCR_SPOOL"];

/// `pgincr <args>` for one database: this executable, its section of `config`, and none of
/// the variables this process took from the file's defaults or that name one database.
pub fn command(config: &Path, database: &str, args: &[&str]) -> Result<Command> {
    let exe = std::env::current_exe().map_err(Error::io("finding the pgincr executable"))?;
    let mut cmd = Command::new(exe);
    for var in config::applied_variables()
        .iter()
        .chain(&PER_DATABASE_VARIABLES)
    {
        cmd.env_remove(var);
    }
    cmd.env("PGINCR_CONFIG", config)
        .env("PGINCR_DATABASE", database)
        .args(args)
        .stdin(Stdio::null());
    Ok(cmd)
}

/// Starts `cmd` with its log lines (stderr) prefixed by `[database]` on ours.
pub fn spawn_logged(mut cmd: Command, database: &str) -> Result<Child> {
    cmd.stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(Error::io(format!(
        "starting pgincr for database {database}"
    )))?;
    if let Some(stderr) = child.stderr.take() {
        let prefix = format!("[{database}]");
        tokio::spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                eprintln!("{prefix} {line}");
            }
        });
    }
    Ok(child)
}

/// The Nagios verdict over several: CRITICAL over WARNING over UNKNOWN (any other failure)
/// over OK.
pub fn worst_exit_code(codes: &[u8]) -> u8 {
    [2, 1, 3]
        .into_iter()
        .find(|c| codes.contains(c))
        .or_else(|| codes.iter().any(|c| *c != 0).then_some(3))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_worst_verdict_wins() {
        assert_eq!(worst_exit_code(&[0, 0]), 0);
        assert_eq!(worst_exit_code(&[0, 1, 3]), 1);
        assert_eq!(worst_exit_code(&[2, 1, 0]), 2);
        assert_eq!(worst_exit_code(&[0, 3]), 3);
        assert_eq!(worst_exit_code(&[0, 101]), 3);
        assert_eq!(worst_exit_code(&[]), 0);
    }
}
