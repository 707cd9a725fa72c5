//! Connections to PostgreSQL with libpq's conventions.

pub mod compat;
pub mod replication;

use crate::conninfo;
use crate::tool::Tools;
use crate::{Error, Result};
use std::path::PathBuf;
use tokio_postgres::{Client, Config, NoTls};

/// A database to talk to, both through our own connections and through PostgreSQL's
/// client programs.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// The connection string as given (may contain a password; never logged or passed on).
    dsn: String,
    /// The connection string without its password, for child programs.
    pub public_dsn: String,
    pub tools: Tools,
}

impl Endpoint {
    pub fn new(dsn: &str, bindir: Option<PathBuf>) -> Result<Self> {
        let (public_dsn, password) = conninfo::split_password(dsn).map_err(Error::Invalid)?;
        let password = password.or_else(|| std::env::var("PGPASSWORD").ok());
        Ok(Endpoint {
            dsn: dsn.to_owned(),
            public_dsn,
            tools: Tools { bindir, password },
        })
    }

    pub async fn connect(&self) -> Result<Client> {
        connect(&self.dsn).await
    }

    /// The same server, another database.
    pub fn with_dbname(&self, dbname: &str) -> Result<Endpoint> {
        Ok(Endpoint {
            dsn: conninfo::with_param(&self.dsn, "dbname", dbname).map_err(Error::Invalid)?,
            public_dsn: conninfo::with_param(&self.public_dsn, "dbname", dbname)
                .map_err(Error::Invalid)?,
            tools: self.tools.clone(),
        })
    }

    /// The database this endpoint connects to.
    pub fn dbname(&self) -> Result<String> {
        let c = config(&self.dsn)?;
        Ok(c.get_dbname().unwrap_or("postgres").to_owned())
    }
}

/// Builds a connection config from a conninfo string or URI, filling what it leaves out from
/// the PG* environment variables as libpq does (PGHOST, PGPORT, PGUSER, PGDATABASE, PGPASSWORD,
/// PGOPTIONS).
pub fn config(dsn: &str) -> Result<Config> {
    let mut config: Config = if dsn.trim().is_empty() {
        Config::new()
    } else {
        dsn.parse().map_err(Error::Connect)?
    };
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    if config.get_hosts().is_empty() {
        let hosts = env("PGHOST").unwrap_or_else(|| "/var/run/postgresql".to_owned());
        for h in hosts.split(',') {
            if h.starts_with('/') {
                config.host_path(h);
            } else {
                config.host(h);
            }
        }
    }
    if config.get_ports().is_empty()
        && let Some(port) = env("PGPORT").and_then(|p| p.parse().ok())
    {
        config.port(port);
    }
    if config.get_user().is_none() {
        let user = env("PGUSER")
            .or_else(|| env("USER"))
            .unwrap_or_else(|| "postgres".to_owned());
        config.user(&user);
    }
    if config.get_dbname().is_none() {
        let db =
            env("PGDATABASE").unwrap_or_else(|| config.get_user().unwrap_or("postgres").to_owned());
        config.dbname(&db);
    }
    if config.get_password().is_none()
        && let Some(pw) = env("PGPASSWORD")
    {
        config.password(pw);
    }
    if config.get_options().is_none()
        && let Some(options) = env("PGOPTIONS")
    {
        config.options(&options);
    }
    config.application_name("pgincr");
    Ok(config)
}

/// Connects and drives the connection on a background task.
pub async fn connect(dsn: &str) -> Result<Client> {
    let (client, conn) = config(dsn)?.connect(NoTls).await.map_err(Error::Connect)?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!("connection closed: {e}");
        }
    });
    Ok(client)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dsn_values_win_over_defaults() {
        let c = config("host=/tmp/sock port=5499 user=alice dbname=app").unwrap();
        assert_eq!(c.get_ports(), [5499]);
        assert_eq!(c.get_user(), Some("alice"));
        assert_eq!(c.get_dbname(), Some("app"));
    }

    #[test]
    fn uri_is_accepted() {
        let c = config("postgresql://bob@localhost:5433/db").unwrap();
        assert_eq!(c.get_user(), Some("bob"));
        assert_eq!(c.get_dbname(), Some("db"));
    }

    #[test]
    fn garbage_is_a_clear_error() {
        assert!(config("").is_ok());
        assert!(config("nonsense").is_err());
    }
}
