//! `pgincr config check`: reads the configuration file as every command would, reports any
//! mistake with its line and column, and prints the effective settings of each database with
//! passwords masked.

use crate::config::{self, DEFAULT_PATH};
use crate::{Error, Result};
use std::path::{Path, PathBuf};

pub fn check(path: Option<PathBuf>) -> Result<()> {
    let path = path.unwrap_or_else(|| PathBuf::from(DEFAULT_PATH));
    let config = config::load(&path).map_err(Error::Invalid)?;
    println!("{}: OK", path.display());
    let names: Vec<Option<&str>> = if config.database.is_empty() {
        vec![None]
    } else {
        config.database.keys().map(|k| Some(k.as_str())).collect()
    };
    for name in names {
        let settings = config.effective(name).map_err(Error::Invalid)?;
        println!();
        println!(
            "[{}]",
            name.map_or("defaults".to_owned(), |n| format!("database.{n}"))
        );
        for (var, value) in settings.variables() {
            let key = var.trim_start_matches("PGINCR_").to_ascii_lowercase();
            let value = if key == "dsn" {
                config::masked_dsn(&value)
            } else {
                value
            };
            println!("{key} = {value}");
        }
        if settings.dsn.is_none() {
            println!("# no dsn: libpq's PG* variables and defaults apply");
        }
        if let Some(repo) = &settings.repo
            && !Path::new(repo).is_absolute()
            && !crate::storage::is_object_url(repo)
        {
            println!(
                "# repo {} is relative to the directory pgincr runs in",
                repo.display()
            );
        }
    }
    Ok(())
}
