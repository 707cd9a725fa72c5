//! The configuration file (TOML, `--config FILE`, `PGINCR_CONFIG`, or
//! `/etc/pgincr/pgincr.toml` when it exists): defaults for every database, and one section
//! per backed-up database, chosen with `--database NAME` (`PGINCR_DATABASE`; unneeded when
//! the file has only one). Its settings become the `PGINCR_*` environment variables the
//! options read, where the environment does not set them already: a command-line option
//! overrides the environment, which overrides the file.
//!
//! ```toml
//! [defaults]
//! pg_bindir = "/usr/lib/postgresql/17/bin"
//! keep_age = "30d"
//!
//! [database.app]
//! dsn = "host=/var/run/postgresql dbname=app"
//! repo = "/var/backups/pgincr/app"
//! ```

use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Where the file is looked for when none is named.
pub const DEFAULT_PATH: &str = "/etc/pgincr/pgincr.toml";

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub defaults: Settings,
    #[serde(default)]
    pub database: BTreeMap<String, Settings>,
}

/// What a section may set; each is the option of the same name (with `-` for `_`).
#[derive(Debug, Default, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub dsn: Option<String>,
    pub repo: Option<PathBuf>,
    /// Local spool of an object-storage repository.
    pub spool: Option<PathBuf>,
    /// The replication slot (`init`, `status`).
    pub slot: Option<String>,
    /// zstd level of segments and base dumps.
    pub compression_level: Option<u32>,
    pub pg_bindir: Option<PathBuf>,
    pub segment_size: Option<String>,
    pub segment_age: Option<String>,
    pub sequence_interval: Option<String>,
    pub globals_interval: Option<String>,
    pub keep_bases: Option<u32>,
    pub keep_age: Option<String>,
    pub keep_monthly: Option<u32>,
    pub keep_segments_age: Option<String>,
    pub warn_lag: Option<String>,
    pub critical_lag: Option<String>,
    pub critical_age: Option<String>,
    pub fs_warn: Option<f64>,
    pub fs_critical: Option<f64>,
    pub base_max_age: Option<String>,
    pub prune_max_age: Option<String>,
    /// `status` thresholds on the age of the oldest segment waiting for its upload.
    pub upload_warn: Option<String>,
    pub upload_critical: Option<String>,
    /// `stream`: confirm changes once `spool`ed or once uploaded to the `store`.
    pub confirm_after: Option<String>,
    /// age recipients (`age1…`) an `init` encrypts the repository to.
    pub encrypt_to: Option<Vec<String>>,
    /// age identity file `restore` and `verify --content` decrypt with.
    pub identity: Option<PathBuf>,
    /// `pgincr supervise`: take a base backup this often (e.g. "1d")...
    pub base_every: Option<String>,
    /// ... or every day at this UTC time ("HH:MM").
    pub base_at: Option<String>,
    /// `pgincr supervise`: prune after each scheduled base (default true).
    pub prune_after_base: Option<bool>,
}

impl Settings {
    /// `self` with every setting `other` leaves unset taken from `other`.
    fn or(&self, other: &Settings) -> Settings {
        macro_rules! pick {
            ($($f:ident),*) => { Settings { $($f: self.$f.clone().or_else(|| other.$f.clone()),)* } };
        }
        pick!(
            dsn,
            repo,
            spool,
            slot,
            compression_level,
            pg_bindir,
            segment_size,
            segment_age,
            sequence_interval,
            globals_interval,
            keep_bases,
            keep_age,
            keep_monthly,
            keep_segments_age,
            warn_lag,
            critical_lag,
            critical_age,
            fs_warn,
            fs_critical,
            base_max_age,
            prune_max_age,
            upload_warn,
            upload_critical,
            confirm_after,
            encrypt_to,
            identity,
            base_every,
            base_at,
            prune_after_base
        )
    }

    /// (environment variable, value) of every setting made.
    pub fn variables(&self) -> Vec<(&'static str, String)> {
        let text = |v: &Option<String>| v.clone();
        let path = |v: &Option<PathBuf>| v.as_ref().map(|p| p.display().to_string());
        let num = |v: Option<u32>| v.map(|n| n.to_string());
        let real = |v: Option<f64>| v.map(|n| n.to_string());
        [
            ("PGINCR_DSN", text(&self.dsn)),
            ("PGINCR_REPO", path(&self.repo)),
            ("PGINCR_SPOOL", path(&self.spool)),
            ("PGINCR_SLOT", text(&self.slot)),
            ("PGINCR_COMPRESSION_LEVEL", num(self.compression_level)),
            ("PGINCR_PG_BINDIR", path(&self.pg_bindir)),
            ("PGINCR_SEGMENT_SIZE", text(&self.segment_size)),
            ("PGINCR_SEGMENT_AGE", text(&self.segment_age)),
            ("PGINCR_SEQUENCE_INTERVAL", text(&self.sequence_interval)),
            ("PGINCR_GLOBALS_INTERVAL", text(&self.globals_interval)),
            ("PGINCR_KEEP_BASES", num(self.keep_bases)),
            ("PGINCR_KEEP_AGE", text(&self.keep_age)),
            ("PGINCR_KEEP_MONTHLY", num(self.keep_monthly)),
            ("PGINCR_KEEP_SEGMENTS_AGE", text(&self.keep_segments_age)),
            ("PGINCR_WARN_LAG", text(&self.warn_lag)),
            ("PGINCR_CRITICAL_LAG", text(&self.critical_lag)),
            ("PGINCR_CRITICAL_AGE", text(&self.critical_age)),
            ("PGINCR_FS_WARN", real(self.fs_warn)),
            ("PGINCR_FS_CRITICAL", real(self.fs_critical)),
            ("PGINCR_BASE_MAX_AGE", text(&self.base_max_age)),
            ("PGINCR_PRUNE_MAX_AGE", text(&self.prune_max_age)),
            ("PGINCR_UPLOAD_WARN", text(&self.upload_warn)),
            ("PGINCR_UPLOAD_CRITICAL", text(&self.upload_critical)),
            ("PGINCR_CONFIRM_AFTER", text(&self.confirm_after)),
            (
                "PGINCR_ENCRYPT_TO",
                self.encrypt_to.as_ref().map(|r| r.join(",")),
            ),
            ("PGINCR_IDENTITY", path(&self.identity)),
            // Read by `supervise` from the file itself; as variables only to be checked.
            ("PGINCR_BASE_EVERY", text(&self.base_every)),
            ("PGINCR_BASE_AT", text(&self.base_at)),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.map(|v| (k, v)))
        .collect()
    }
}

/// Reads and checks a configuration file. Errors name the file, line and column.
pub fn load(path: &Path) -> Result<Config, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read the configuration file {}: {e}", path.display()))?;
    let config: Config = toml::from_str(&text)
        .map_err(|e| format!("{}: {}", path.display(), e.to_string().trim()))?;
    // Values are checked as the options check them, so that a typo shows now, not at 2 a.m.
    for (name, settings) in std::iter::once(("defaults", &config.defaults))
        .chain(config.database.iter().map(|(n, s)| (n.as_str(), s)))
    {
        for (var, value) in settings.variables() {
            check_value(var, &value).map_err(|e| {
                format!(
                    "{}: [{}] {}: {e}",
                    path.display(),
                    if name == "defaults" {
                        "defaults".to_owned()
                    } else {
                        format!("database.{name}")
                    },
                    var.trim_start_matches("PGINCR_").to_ascii_lowercase()
                )
            })?;
        }
    }
    Ok(config)
}

fn check_value(var: &str, value: &str) -> Result<(), String> {
    use crate::units::{parse_duration, parse_size};
    match var {
        "PGINCR_SEGMENT_SIZE" | "PGINCR_WARN_LAG" | "PGINCR_CRITICAL_LAG" => {
            parse_size(value).map(drop)
        }
        "PGINCR_SEGMENT_AGE"
        | "PGINCR_SEQUENCE_INTERVAL"
        | "PGINCR_GLOBALS_INTERVAL"
        | "PGINCR_KEEP_AGE"
        | "PGINCR_KEEP_SEGMENTS_AGE"
        | "PGINCR_CRITICAL_AGE"
        | "PGINCR_BASE_MAX_AGE"
        | "PGINCR_PRUNE_MAX_AGE"
        | "PGINCR_UPLOAD_WARN"
        | "PGINCR_UPLOAD_CRITICAL"
        | "PGINCR_BASE_EVERY" => parse_duration(value).map(drop),
        "PGINCR_BASE_AT" => parse_time_of_day(value).map(drop),
        "PGINCR_FS_WARN" | "PGINCR_FS_CRITICAL" => crate::cli::parse_percent(value).map(drop),
        "PGINCR_COMPRESSION_LEVEL" => match value.parse::<u32>() {
            Ok(1..=19) => Ok(()),
            _ => Err(format!("{value} is not a zstd level from 1 to 19")),
        },
        "PGINCR_ENCRYPT_TO" => {
            let list: Vec<String> = value.split(',').map(str::to_owned).collect();
            crate::crypt::parse_recipients(&list)
                .map(drop)
                .map_err(|e| e.to_string())
        }
        _ => Ok(()),
    }
}

/// "HH:MM" as minutes after midnight.
pub fn parse_time_of_day(text: &str) -> Result<u32, String> {
    let bad = || format!("{text:?} is not a time of day (HH:MM, UTC)");
    let (h, m) = text.trim().split_once(':').ok_or_else(bad)?;
    let (h, m): (u32, u32) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
    if h < 24 && m < 60 {
        Ok(h * 60 + m)
    } else {
        Err(bad())
    }
}

impl Config {
    /// The settings for `database` (None: the only section there is, if one), over the
    /// defaults.
    pub fn effective(&self, database: Option<&str>) -> Result<Settings, String> {
        let section = match database {
            Some(name) => self.database.get(name).ok_or_else(|| {
                format!(
                    "no [database.{name}] in the configuration file (it has: {})",
                    self.names()
                )
            })?,
            None if self.database.len() <= 1 => match self.database.values().next() {
                Some(only) => only,
                None => return Ok(self.defaults.clone()),
            },
            None => {
                return Err(format!(
                    "the configuration file has several databases: choose one with --database \
                     (one of: {})",
                    self.names()
                ));
            }
        };
        Ok(section.or(&self.defaults))
    }

    fn names(&self) -> String {
        self.database.keys().cloned().collect::<Vec<_>>().join(", ")
    }
}

/// A connection string with any password replaced by `***`.
pub fn masked_dsn(dsn: &str) -> String {
    // URI: postgresql://user:secret@host/db
    if let Some(scheme_end) = dsn.find("://") {
        let rest = &dsn[scheme_end + 3..];
        let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
        if let Some(at) = rest[..authority_end].rfind('@')
            && let Some(colon) = rest[..at].find(':')
        {
            return format!(
                "{}{}:***{}",
                &dsn[..scheme_end + 3],
                &rest[..colon],
                &rest[at..]
            );
        }
        return dsn.to_owned();
    }
    // key=value pairs; a value may be quoted with '' and \ escapes.
    let mut out = String::new();
    let mut rest = dsn;
    while let Some(eq) = rest.find('=') {
        let key = rest[..eq].trim();
        out.push_str(&rest[..=eq]);
        let value = rest[eq + 1..].trim_start();
        out.push_str(&rest[eq + 1..rest.len() - value.len()]);
        let end = if value.starts_with('\'') {
            let mut i = 1;
            let bytes = value.as_bytes();
            while i < bytes.len() && bytes[i] != b'\'' {
                i += if bytes[i] == b'\\' { 2 } else { 1 };
            }
            (i + 1).min(value.len())
        } else {
            value.find(char::is_whitespace).unwrap_or(value.len())
        };
        if key.eq_ignore_ascii_case("password") {
            out.push_str("***");
        } else {
            out.push_str(&value[..end]);
        }
        rest = &value[end..];
    }
    out.push_str(rest);
    out
}

/// Finds `--config`/`--database` (or `PGINCR_CONFIG`/`PGINCR_DATABASE`, or the default file)
/// before the command line is parsed, and sets the `PGINCR_*` variables the chosen section
/// gives that the environment does not set. Must run before any other thread starts.
pub fn apply_to_environment(args: &[String]) -> Result<(), String> {
    let option = |name: &str| {
        let long = format!("--{name}");
        let with_eq = format!("--{name}=");
        args.iter().enumerate().find_map(|(i, a)| {
            if a == &long {
                args.get(i + 1).cloned()
            } else {
                a.strip_prefix(&with_eq).map(str::to_owned)
            }
        })
    };
    let named = option("config").or_else(|| std::env::var("PGINCR_CONFIG").ok());
    let path = match named {
        Some(p) => PathBuf::from(p),
        None if Path::new(DEFAULT_PATH).exists() => PathBuf::from(DEFAULT_PATH),
        None => return Ok(()),
    };
    // `pgincr config check` reads the file itself, and reports every problem.
    if args.windows(2).any(|w| w[0] == "config" && w[1] == "check") {
        return Ok(());
    }
    let config = load(&path)?;
    // Commands over every configured database take only the defaults; each database's own
    // process (see crate::fleet) reads its section.
    let settings = if is_fleet_command(args) {
        config.defaults.clone()
    } else {
        let database = option("database").or_else(|| std::env::var("PGINCR_DATABASE").ok());
        config
            .effective(database.as_deref())
            .map_err(|e| format!("{}: {e}", path.display()))?
    };
    let mut applied = Vec::new();
    for (var, value) in settings.variables() {
        if std::env::var_os(var).is_none() {
            // SAFETY: called from main before the runtime or any other thread starts.
            unsafe { std::env::set_var(var, value) };
            applied.push(var);
        }
    }
    let _ = APPLIED.set(applied);
    Ok(())
}

/// The variables [`apply_to_environment`] set from the file: a child process for one
/// database must not inherit them, or they would hide its own section's settings.
pub fn applied_variables() -> &'static [&'static str] {
    APPLIED.get().map_or(&[], Vec::as_slice)
}

static APPLIED: std::sync::OnceLock<Vec<&'static str>> = std::sync::OnceLock::new();

/// `supervise`, `status --all`, `init --all-databases`: commands over every database.
fn is_fleet_command(args: &[String]) -> bool {
    args.iter()
        .skip(1)
        .any(|a| a == "supervise" || a == "--all" || a == "--all-databases")
}

/// The configuration file in use: `--config`, `PGINCR_CONFIG`, or the default path if present.
pub fn path_in_use(named: Option<&Path>) -> Option<PathBuf> {
    match named {
        Some(p) => Some(p.to_owned()),
        None => Path::new(DEFAULT_PATH)
            .exists()
            .then(|| PathBuf::from(DEFAULT_PATH)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, String> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pgincr.toml");
        std::fs::write(&path, text).unwrap();
        load(&path).map_err(|e| e.replace(&path.display().to_string(), "FILE"))
    }

    #[test]
    fn sections_override_defaults() {
        let c = parse(
            "[defaults]\nkeep_age = \"30d\"\nrepo = \"/b/default\"\n\n\
             [database.app]\ndsn = \"dbname=app\"\nrepo = \"/b/app\"\nfs_warn = 70\n\n\
             [database.crm]\ndsn = \"dbname=crm\"\n",
        )
        .unwrap();
        let app = c.effective(Some("app")).unwrap();
        assert_eq!(app.repo.as_deref(), Some(Path::new("/b/app")));
        assert_eq!(app.keep_age.as_deref(), Some("30d"));
        assert!(
            app.variables()
                .contains(&("PGINCR_FS_WARN", "70".to_owned()))
        );
        let crm = c.effective(Some("crm")).unwrap();
        assert_eq!(crm.repo.as_deref(), Some(Path::new("/b/default")));
        assert!(c.effective(None).unwrap_err().contains("one of: app, crm"));
        assert!(
            c.effective(Some("hr"))
                .unwrap_err()
                .contains("no [database.hr]")
        );
    }

    #[test]
    fn mistakes_are_errors_with_their_place() {
        let e = parse("[database.app]\ndsn = \"dbname=app\"\nrepository = \"/x\"\n").unwrap_err();
        assert!(
            e.starts_with("FILE: TOML parse error at line 3, column 1"),
            "{e}"
        );
        assert!(e.contains("unknown field `repository`"), "{e}");
        let e = parse("[database.app]\nkeep_age = \"a month\"\n").unwrap_err();
        assert!(e.starts_with("FILE: [database.app] keep_age: "), "{e}");
        let e = parse("[database.app]\nfs_warn = 120\n").unwrap_err();
        assert!(e.contains("fs_warn"), "{e}");
    }

    #[test]
    fn schedule_encryption_and_level_are_checked() {
        let ok = parse(
            "[database.app]\nbase_at = \"02:00\"\ncompression_level = 9\nslot = \"s\"\n\
             encrypt_to = [\"age1qyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqs3290gq\"]\n",
        );
        let settings = ok.unwrap().effective(None).unwrap();
        assert!(
            settings
                .variables()
                .contains(&("PGINCR_COMPRESSION_LEVEL", "9".into()))
        );
        for (text, error) in [
            ("base_at = \"25:00\"", "not a time of day"),
            ("base_every = \"often\"", "base_every"),
            ("compression_level = 22", "not a zstd level"),
            (
                "encrypt_to = [\"ssh-rsa AAAA\"]",
                "not an age X25519 recipient",
            ),
        ] {
            let e = parse(&format!("[database.app]\n{text}\n")).unwrap_err();
            assert!(e.contains(error), "{text}: {e}");
        }
    }

    #[test]
    fn passwords_are_masked() {
        assert_eq!(
            masked_dsn("host=db password='s3 cr\\'et' dbname=app"),
            "host=db password=*** dbname=app"
        );
        assert_eq!(masked_dsn("host=db password=plain"), "host=db password=***");
        assert_eq!(
            masked_dsn("postgresql://app:secret@db:5432/app?sslmode=require"),
            "postgresql://app:***@db:5432/app?sslmode=require"
        );
        assert_eq!(masked_dsn("dbname=app"), "dbname=app");
    }
}
