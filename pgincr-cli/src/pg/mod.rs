//! Connections to PostgreSQL with libpq's conventions: the same parameters, environment
//! variables, service and password files, TLS modes and timeouts as psql and pg_dump, so that
//! one connection string means the same server and the same security for pgincr's own
//! connections and for the programs it runs (which get the string unchanged).

pub mod compat;
pub mod replication;
pub mod tls;

use crate::conninfo;
use crate::tool::Tools;
use crate::{Error, Result};
use std::path::PathBuf;
use std::time::Duration;
use tokio_postgres::{Client, Config};

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

/// How to reach a server: tokio-postgres' config plus what pgincr handles itself.
pub struct Settings {
    pub config: Config,
    pub tls: tls::TlsSettings,
    /// libpq's connect_timeout: per host, for the whole connection set-up.
    pub timeout: Option<Duration>,
}

/// Builds a connection config from a conninfo string or URI as libpq would: a `service` from
/// the connection service file fills what the string leaves out, then the PG* environment
/// variables (PGHOST, PGPORT, PGUSER, PGDATABASE, PGPASSWORD, PGOPTIONS, PGAPPNAME,
/// PGCONNECT_TIMEOUT, PGTARGETSESSIONATTRS, PGSERVICE, PGSSLMODE, PGSSLROOTCERT, PGSSLCERT,
/// PGSSLKEY), then the password file (`passfile`, PGPASSFILE, ~/.pgpass).
pub fn settings(dsn: &str) -> Result<Settings> {
    let (rest, mut ours) = conninfo::split_libpq_only(dsn).map_err(Error::Invalid)?;
    let mut config: Config = if rest.trim().is_empty() {
        Config::new()
    } else {
        rest.parse().map_err(Error::Connect)?
    };
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let given = |ours: &[conninfo::Pair], k: &str| {
        ours.iter()
            .rev()
            .find(|p| p.key == k)
            .map(|p| p.value.clone())
    };
    if let Some(service) = given(&ours, "service").or_else(|| env("PGSERVICE")) {
        for p in service_parameters(&service)? {
            if conninfo::READ_BY_PGINCR.contains(&p.key.as_str()) {
                if given(&ours, &p.key).is_none() {
                    ours.push(p);
                }
            } else {
                fill_missing(&mut config, &p.key, &p.value)?;
            }
        }
    }
    for (var, key) in [
        ("PGHOST", "host"),
        ("PGPORT", "port"),
        ("PGUSER", "user"),
        ("PGDATABASE", "dbname"),
        ("PGPASSWORD", "password"),
        ("PGOPTIONS", "options"),
        ("PGAPPNAME", "application_name"),
        ("PGCONNECT_TIMEOUT", "connect_timeout"),
        ("PGTARGETSESSIONATTRS", "target_session_attrs"),
    ] {
        if let Some(v) = env(var) {
            fill_missing(&mut config, key, &v)?;
        }
    }
    if config.get_hosts().is_empty() {
        fill_missing(&mut config, "host", "/var/run/postgresql")?;
    }
    if config.get_user().is_none() {
        let user = env("USER").unwrap_or_else(|| "postgres".to_owned());
        config.user(&user);
    }
    if config.get_dbname().is_none() {
        let db = config.get_user().unwrap_or("postgres").to_owned();
        config.dbname(&db);
    }
    if config.get_application_name().is_none() {
        config.application_name("pgincr");
    }
    let setting = |key: &str, var: &str| given(&ours, key).or_else(|| env(var));
    if config.get_password().is_none() {
        let file = setting("passfile", "PGPASSFILE")
            .map(PathBuf::from)
            .or_else(|| home().map(|h| h.join(".pgpass")));
        if let Some(file) = file
            && let Some(pw) = password_from(&file, &config)
        {
            config.password(pw);
        }
    }
    let tls = tls::TlsSettings::new(
        setting("sslmode", "PGSSLMODE").as_deref(),
        setting("sslrootcert", "PGSSLROOTCERT"),
        setting("sslcert", "PGSSLCERT"),
        setting("sslkey", "PGSSLKEY"),
    )?;
    // Like libpq, no TLS over Unix-domain sockets, whatever sslmode says.
    let all_unix = config
        .get_hosts()
        .iter()
        .all(|h| matches!(h, tokio_postgres::config::Host::Unix(_)));
    config.ssl_mode(if all_unix {
        tokio_postgres::config::SslMode::Disable
    } else {
        tls.tokio_mode()
    });
    // libpq waits at least 2 seconds; 0 means forever.
    let timeout = config
        .get_connect_timeout()
        .copied()
        .filter(|t| !t.is_zero())
        .map(|t| t.max(Duration::from_secs(2)));
    Ok(Settings {
        config,
        tls,
        timeout,
    })
}

/// The connection config alone (see [`settings`]).
pub fn config(dsn: &str) -> Result<Config> {
    Ok(settings(dsn)?.config)
}

fn home() -> Option<PathBuf> {
    std::env::var_os("HOME").map(PathBuf::from)
}

/// Sets `key` unless the config has it already.
fn fill_missing(config: &mut Config, key: &str, value: &str) -> Result<()> {
    let parsed: Config = conninfo::render_pairs(&[conninfo::Pair {
        key: key.to_owned(),
        value: value.to_owned(),
    }])
    .parse()
    .map_err(|e| Error::Invalid(format!("{key}={value:?}: {e}")))?;
    match key {
        "host" if config.get_hosts().is_empty() => {
            for h in value.split(',') {
                if h.starts_with('/') {
                    config.host_path(h);
                } else {
                    config.host(h);
                }
            }
        }
        "port" if config.get_ports().is_empty() => {
            for p in parsed.get_ports() {
                config.port(*p);
            }
        }
        "user" if config.get_user().is_none() => {
            config.user(value);
        }
        "dbname" if config.get_dbname().is_none() => {
            config.dbname(value);
        }
        "password" if config.get_password().is_none() => {
            config.password(value);
        }
        "options" if config.get_options().is_none() => {
            config.options(value);
        }
        "application_name" if config.get_application_name().is_none() => {
            config.application_name(value);
        }
        "connect_timeout" if config.get_connect_timeout().is_none() => {
            if let Some(t) = parsed.get_connect_timeout() {
                config.connect_timeout(*t);
            }
        }
        "target_session_attrs"
            if config.get_target_session_attrs()
                == tokio_postgres::config::TargetSessionAttrs::Any =>
        {
            config.target_session_attrs(parsed.get_target_session_attrs());
        }
        _ => {}
    }
    Ok(())
}

/// The parameters of a connection service: PGSERVICEFILE or ~/.pg_service.conf first, then
/// pg_service.conf in PGSYSCONFDIR (default /etc/postgresql-common, then /etc).
fn service_parameters(service: &str) -> Result<Vec<conninfo::Pair>> {
    let mut files: Vec<PathBuf> = Vec::new();
    match std::env::var_os("PGSERVICEFILE") {
        Some(f) => files.push(f.into()),
        None => files.extend(home().map(|h| h.join(".pg_service.conf"))),
    }
    match std::env::var_os("PGSYSCONFDIR") {
        Some(d) => files.push(PathBuf::from(d).join("pg_service.conf")),
        None => files.extend(
            [
                "/etc/postgresql-common/pg_service.conf",
                "/etc/pg_service.conf",
            ]
            .map(PathBuf::from),
        ),
    }
    for file in &files {
        let Ok(text) = std::fs::read_to_string(file) else {
            continue;
        };
        if let Some(params) = conninfo::service_from_file(&text, service) {
            return Ok(params);
        }
    }
    Err(Error::Invalid(format!(
        "definition of service \"{service}\" not found (looked in {})",
        files
            .iter()
            .map(|f| f.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    )))
}

/// The password for the config's first host from a password file. Like libpq, a file that
/// group or others can read is ignored with a warning.
fn password_from(file: &std::path::Path, config: &Config) -> Option<String> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(file).ok()?;
    if meta.permissions().mode() & 0o077 != 0 {
        tracing::warn!(
            "password file {} has group or world access; permissions should be u=rw (0600) or less",
            file.display()
        );
        return None;
    }
    let text = std::fs::read_to_string(file).ok()?;
    let host = match config.get_hosts().first()? {
        tokio_postgres::config::Host::Tcp(h) => h.clone(),
        tokio_postgres::config::Host::Unix(p) => p.display().to_string(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    conninfo::password_from_file(
        &text,
        &host,
        port,
        config.get_dbname().unwrap_or_default(),
        config.get_user().unwrap_or_default(),
    )
}

/// "host:port" of every host the config tries, for messages.
fn servers(config: &Config) -> String {
    let ports = config.get_ports();
    config
        .get_hosts()
        .iter()
        .enumerate()
        .map(|(i, h)| {
            let port = ports
                .get(i)
                .or_else(|| ports.first())
                .copied()
                .unwrap_or(5432);
            match h {
                tokio_postgres::config::Host::Tcp(h) => format!("{h}:{port}"),
                tokio_postgres::config::Host::Unix(p) => {
                    format!("{}/.s.PGSQL.{port}", p.display())
                }
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Connects and drives the connection on a background task.
pub async fn connect(dsn: &str) -> Result<Client> {
    let s = settings(dsn)?;
    let server = servers(&s.config);
    let attempt = s.config.connect(s.tls.connector()?);
    let result = match s.timeout {
        Some(t) => {
            let hosts = s.config.get_hosts().len().max(1) as u32;
            tokio::time::timeout(t * hosts, attempt)
                .await
                .map_err(|_| Error::ConnectTo {
                    server: server.clone(),
                    reason: format!(
                        "timeout expired after {}s (connect_timeout)",
                        t.as_secs() * u64::from(hosts)
                    ),
                })?
        }
        None => attempt.await,
    };
    let (client, conn) = result.map_err(|e| match e.as_db_error() {
        // The server answered: its own words say what is wrong (and callers look at the
        // SQLSTATE, e.g. for a database that does not exist).
        Some(_) => Error::Connect(e),
        None => Error::ConnectTo {
            server,
            reason: crate::error::describe_error_chain(&e),
        },
    })?;
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
