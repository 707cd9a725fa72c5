//! `pgincr supervise`: one `pgincr stream` per database of the configuration file, each
//! restarted with backoff when it fails while the others go on, and each database's
//! scheduled base backups (`base_every` or `base_at`), each followed by a prune
//! (`prune_after_base`, on by default). SIGTERM or SIGINT stops every stream cleanly.
//! Globals (roles, tablespaces) belong to the cluster: the supervisor compares them once per
//! cluster and, when they changed, runs one `pg_dumpall --globals-only` for all of that
//! cluster's repositories, instead of each stream doing its own.

use crate::cli::SuperviseArgs;
use crate::config::Settings;
use crate::fleet;
use crate::globals;
use crate::pg::Endpoint;
use crate::repo::Repo;
use crate::units::parse_duration;
use crate::{Error, Result};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;
use tokio::time::Instant;

/// Longest wait between restarts of a failing stream.
const MAX_RESTART_DELAY: Duration = Duration::from_secs(300);
/// A stream that ran this long before failing starts its backoff over.
const HEALTHY_RUN: Duration = Duration::from_secs(600);

pub async fn run(
    args: SuperviseArgs,
    config: Option<PathBuf>,
    bindir: Option<PathBuf>,
) -> Result<()> {
    let (path, databases) = fleet::databases(config.as_deref())?;
    let names: Vec<&str> = databases.iter().map(|(n, _)| n.as_str()).collect();
    tracing::info!(
        "supervising {} database(s): {}",
        names.len(),
        names.join(", ")
    );
    let (stop_tx, stop) = watch::channel(false);
    let mut tasks = tokio::task::JoinSet::new();
    let globals = ClusterGlobals::new(&databases, bindir, args.catch_up).await;
    tasks.spawn(globals.run(stop.clone()));
    for (name, settings) in databases {
        let schedule = Schedule::from_settings(&settings)
            .map_err(|e| Error::Invalid(format!("[database.{name}]: {e}")))?;
        if !args.catch_up
            && let Some(schedule) = schedule
        {
            tasks.spawn(scheduled_bases(
                path.clone(),
                name.clone(),
                schedule,
                stop.clone(),
            ));
        }
        tasks.spawn(supervised_stream(
            path.clone(),
            name,
            args.catch_up,
            args.restart_delay,
            stop.clone(),
        ));
    }
    let mut sigint = signal(SignalKind::interrupt())?;
    let mut sigterm = signal(SignalKind::terminate())?;
    let mut failed = Vec::new();
    loop {
        tokio::select! {
            _ = sigint.recv() => { let _ = stop_tx.send(true); }
            _ = sigterm.recv() => { let _ = stop_tx.send(true); }
            done = tasks.join_next() => match done {
                None => break,
                Some(Ok(Err(database))) => failed.push(database),
                Some(Ok(Ok(()))) => {}
                Some(Err(e)) => return Err(Error::Invalid(format!("a supervising task failed: {e}"))),
            },
        }
    }
    if failed.is_empty() {
        Ok(())
    } else {
        failed.sort();
        Err(Error::Invalid(format!(
            "the stream of {} did not catch up (see its log lines above)",
            failed.join(", ")
        )))
    }
}

/// Runs `pgincr stream` for `database` until told to stop, restarting it after a failure.
/// With `catch_up`, runs it once; `Err(database)` when that failed.
async fn supervised_stream(
    config: PathBuf,
    database: String,
    catch_up: bool,
    first_delay: Duration,
    mut stop: watch::Receiver<bool>,
) -> std::result::Result<(), String> {
    let mut delay = first_delay;
    loop {
        // The supervisor takes the globals (see ClusterGlobals).
        let args: &[&str] = if catch_up {
            &["stream", "--catch-up", "--globals-interval", "0"]
        } else {
            &["stream", "--globals-interval", "0"]
        };
        let started = Instant::now();
        let status = match run_logged(&config, &database, args, &mut stop).await {
            Ok(status) => status,
            Err(e) => {
                tracing::error!("[{database}] {e}");
                None
            }
        };
        if *stop.borrow() {
            return Ok(());
        }
        let ok = status.is_some_and(|s| s.success());
        if catch_up {
            return if ok { Ok(()) } else { Err(database) };
        }
        if started.elapsed() >= HEALTHY_RUN {
            delay = first_delay;
        }
        tracing::error!(
            "[{database}] the stream stopped ({}); restarting it in {}",
            status.map_or("could not run".to_owned(), |s| s.to_string()),
            humantime::format_duration(delay)
        );
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = stop.changed() => return Ok(()),
        }
        delay = (delay * 2).min(MAX_RESTART_DELAY);
    }
}

/// Runs `pgincr <args>` for `database`, its log lines prefixed; on a stop request sends it
/// SIGTERM and waits for it. None when it ended by a signal.
async fn run_logged(
    config: &Path,
    database: &str,
    args: &[&str],
    stop: &mut watch::Receiver<bool>,
) -> Result<Option<std::process::ExitStatus>> {
    let cmd = fleet::command(config, database, args)?;
    let mut child = fleet::spawn_logged(cmd, database)?;
    let status = tokio::select! {
        status = child.wait() => status,
        _ = stop.changed() => {
            if let Some(pid) = child.id() {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid as i32),
                    nix::sys::signal::Signal::SIGTERM,
                );
            }
            child.wait().await
        }
    }
    .map_err(Error::io(format!(
        "waiting for pgincr {} of {database}",
        args[0]
    )))?;
    Ok(status.code().map(|_| status))
}

/// When a database's base backups are due.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Schedule {
    /// Every so often, from the supervisor's start.
    Every { interval: Duration, prune: bool },
    /// Every day at this minute after midnight, UTC.
    DailyAt { minute: u32, prune: bool },
}

impl Schedule {
    fn from_settings(s: &Settings) -> std::result::Result<Option<Schedule>, String> {
        let prune = s.prune_after_base.unwrap_or(true);
        match (&s.base_every, &s.base_at) {
            (Some(_), Some(_)) => Err("set base_every or base_at, not both".into()),
            (Some(every), None) => Ok(Some(Schedule::Every {
                interval: parse_duration(every)?,
                prune,
            })),
            (None, Some(at)) => Ok(Some(Schedule::DailyAt {
                minute: crate::config::parse_time_of_day(at)?,
                prune,
            })),
            (None, None) => Ok(None),
        }
    }

    fn prune(&self) -> bool {
        match *self {
            Schedule::Every { prune, .. } | Schedule::DailyAt { prune, .. } => prune,
        }
    }

    /// How long from `now_utc_seconds` (seconds since the epoch) until the next run.
    fn wait(&self, now_utc_seconds: u64) -> Duration {
        match *self {
            Schedule::Every { interval, .. } => interval,
            Schedule::DailyAt { minute, .. } => {
                let day = 86_400;
                let at = u64::from(minute) * 60;
                let today = now_utc_seconds % day;
                Duration::from_secs(if at > today {
                    at - today
                } else {
                    day - today + at
                })
            }
        }
    }
}

/// Takes `database`'s base backups on `schedule`, each followed by a prune, until stopped.
/// A failure is logged and tried again at the next due time.
async fn scheduled_bases(
    config: PathBuf,
    database: String,
    schedule: Schedule,
    mut stop: watch::Receiver<bool>,
) -> std::result::Result<(), String> {
    loop {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let wait = schedule.wait(now);
        tracing::info!(
            "[{database}] next base backup in {}",
            humantime::format_duration(wait)
        );
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.changed() => return Ok(()),
        }
        let mut steps = vec!["base"];
        if schedule.prune() {
            steps.push("prune");
        }
        for step in steps {
            match run_logged(&config, &database, &[step], &mut stop).await {
                _ if *stop.borrow() => return Ok(()),
                Ok(Some(status)) if status.success() => {
                    tracing::info!("[{database}] scheduled {step} done");
                }
                Ok(status) => {
                    tracing::error!(
                        "[{database}] scheduled {step} failed ({}); next try at the next due time",
                        status.map_or("killed".to_owned(), |s| s.to_string())
                    );
                    break;
                }
                Err(e) => {
                    tracing::error!("[{database}] scheduled {step}: {e}");
                    break;
                }
            }
        }
    }
}

/// Databases of one cluster, with their repositories.
type Members = Vec<(String, Repo)>;

/// The globals of every cluster the configured databases live in, compared once per
/// cluster every `globals_interval` (of the defaults; 1 min when unset) and dumped once for
/// all repositories that lack the current ones.
struct ClusterGlobals {
    /// Per cluster: a connection's endpoint, and the repositories of its databases.
    clusters: Vec<(Endpoint, Members)>,
    every: Duration,
    /// Once, then done (`supervise --catch-up`).
    once: bool,
}

impl ClusterGlobals {
    /// Groups the databases by their server's system identifier. A database that cannot be
    /// reached now is left out (its stream reports it) and joins at the next start.
    async fn new(databases: &[(String, Settings)], bindir: Option<PathBuf>, once: bool) -> Self {
        // (system identifier, a way in, its databases' repositories)
        let mut clusters: Vec<(String, Endpoint, Members)> = Vec::new();
        for (name, settings) in databases {
            let (Some(dsn), Some(repo)) = (&settings.dsn, &settings.repo) else {
                continue;
            };
            let bindir = settings.pg_bindir.clone().or_else(|| bindir.clone());
            let identified = async {
                let endpoint = Endpoint::new(dsn, bindir)?;
                let client = endpoint.connect().await?;
                let row = client
                    .query_one(
                        "SELECT system_identifier::text FROM pg_catalog.pg_control_system()",
                        &[],
                    )
                    .await?;
                Ok::<_, Error>((row.get::<_, String>(0), endpoint))
            };
            match identified.await {
                Ok((system, endpoint)) => {
                    let member = match Repo::open(repo, None) {
                        Ok(r) => (name.clone(), r),
                        Err(e) => {
                            tracing::warn!("[{name}] globals not followed for now: {e}");
                            continue;
                        }
                    };
                    match clusters.iter_mut().find(|(s, _, _)| *s == system) {
                        Some((_, _, members)) => members.push(member),
                        None => clusters.push((system, endpoint, vec![member])),
                    }
                }
                Err(e) => tracing::warn!("[{name}] globals not followed for now: {e}"),
            }
        }
        let every = databases
            .first()
            .and_then(|(_, s)| s.globals_interval.as_deref())
            .and_then(|t| parse_duration(t).ok())
            .unwrap_or(Duration::from_secs(60));
        ClusterGlobals {
            clusters: clusters.into_iter().map(|(_, e, m)| (e, m)).collect(),
            every,
            once,
        }
    }

    async fn run(self, mut stop: watch::Receiver<bool>) -> std::result::Result<(), String> {
        if self.every.is_zero() {
            return Ok(());
        }
        loop {
            for (endpoint, members) in &self.clusters {
                if let Err(e) = Self::compare(endpoint, members).await {
                    tracing::warn!("globals (roles, tablespaces): {e}; trying again");
                }
            }
            if self.once {
                return Ok(());
            }
            tokio::select! {
                _ = tokio::time::sleep(self.every) => {}
                _ = stop.changed() => return Ok(()),
            }
        }
    }

    /// One cluster: its fingerprint read once, one dump for every repository behind it.
    async fn compare(endpoint: &Endpoint, members: &[(String, Repo)]) -> Result<()> {
        let client = endpoint.connect().await?;
        let now = globals::fingerprint(&client).await?;
        let mut behind = Vec::new();
        for (name, repo) in members {
            if globals::newest_fingerprint(&repo.load()?) != Some(now.as_str()) {
                behind.push((name, repo));
            }
        }
        if behind.is_empty() {
            return Ok(());
        }
        let taken = globals::take(endpoint, &client, now).await?;
        for (name, repo) in &behind {
            match globals::record(repo, &taken) {
                Ok(s) => tracing::info!(
                    "[{name}] roles or tablespaces changed: globals saved as {}",
                    s.file.path
                ),
                Err(e) => tracing::warn!("[{name}] could not save the changed globals: {e}"),
            }
        }
        tracing::info!(
            "globals changed: one pg_dumpall for {} repositories",
            behind.len()
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedules_parse_and_wait_until_due() {
        let mut s = Settings {
            base_at: Some("02:30".into()),
            ..Settings::default()
        };
        let daily = Schedule::from_settings(&s).unwrap().unwrap();
        assert_eq!(
            daily,
            Schedule::DailyAt {
                minute: 150,
                prune: true
            }
        );
        // 01:00 UTC: 1h30 to go; 03:00: 23h30.
        assert_eq!(daily.wait(86_400 * 10 + 3600), Duration::from_secs(5400));
        assert_eq!(
            daily.wait(86_400 * 10 + 3 * 3600),
            Duration::from_secs(23 * 3600 + 1800)
        );
        s.base_every = Some("6h".into());
        assert!(Schedule::from_settings(&s).is_err());
        s.base_at = None;
        s.prune_after_base = Some(false);
        assert_eq!(
            Schedule::from_settings(&s).unwrap(),
            Some(Schedule::Every {
                interval: Duration::from_secs(6 * 3600),
                prune: false
            })
        );
        assert_eq!(Schedule::from_settings(&Settings::default()).unwrap(), None);
        s.base_every = Some("soon".into());
        assert!(Schedule::from_settings(&s).is_err());
    }
}
