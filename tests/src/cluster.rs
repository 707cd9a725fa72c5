//! Throwaway PostgreSQL clusters for tests: initdb into a temporary directory, unix socket only,
//! `wal_level = logical`, the freshly built decoder_sql library on `dynamic_library_path`.
//! Stopped (`pg_ctl stop -m immediate`) and deleted on drop, also when the test panics.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use tempfile::TempDir;

/// The `pg_config` of the PostgreSQL under test: `$PG_CONFIG`, else Debian's PostgreSQL 15,
/// else the first on `PATH`. `scripts/test --major N` sets it.
pub fn pg_config() -> String {
    std::env::var("PG_CONFIG").unwrap_or_else(|_| {
        let debian = "/usr/lib/postgresql/15/bin/pg_config";
        if Path::new(debian).exists() {
            debian.to_owned()
        } else {
            "pg_config".to_owned()
        }
    })
}

fn pg_config_answer(flag: &str) -> String {
    pg_config_answer_of(&pg_config(), flag)
}

fn pg_config_answer_of(pg_config: &str, flag: &str) -> String {
    let out = Command::new(pg_config)
        .arg(flag)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {pg_config}: {e}"));
    assert!(out.status.success(), "{pg_config} {flag} failed");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Where the server binaries live: `$PG_CONFIG --bindir`.
pub fn pg_bindir() -> PathBuf {
    PathBuf::from(pg_config_answer("--bindir"))
}

/// Major version of the PostgreSQL under test (13, 14, ... 18).
pub fn pg_major() -> u32 {
    major_of(&pg_config_answer("--version"))
}

fn major_of(version: &str) -> u32 {
    // "PostgreSQL 16.15" or "PostgreSQL 13.16 (Debian 13.16-0+deb11u1)"
    version
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.split('.').next())
        .and_then(|m| m.parse().ok())
        .unwrap_or_else(|| panic!("cannot read the major from {version:?}"))
}

/// Whether the server restricts output plugins to `output_plugin_libraries` (15.19+, 16.15+,
/// 17.11+, 18.6+): its `--describe-config` lists the setting.
pub fn restricts_output_plugins(bindir: &Path) -> bool {
    let out = Command::new(bindir.join("postgres"))
        .arg("--describe-config")
        .stdin(Stdio::null())
        .output()
        .expect("run postgres --describe-config");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .any(|l| l.starts_with("output_plugin_libraries\t"))
}

/// The decoder_sql shared library to load: `$DECODER_SQL_LIB` (set by `scripts/test --major N`
/// to the library built for that major), else the one cargo built for this test run (it is a
/// dependency of this crate, built for the default major).
pub fn decoder_library() -> PathBuf {
    if let Ok(p) = std::env::var("DECODER_SQL_LIB") {
        return PathBuf::from(p);
    }
    assert!(
        std::env::var_os("PG_CONFIG").is_none() || pg_major() == 15,
        "PG_CONFIG names PostgreSQL {}: set DECODER_SQL_LIB to the decoder_sql library built \
         for it (scripts/test --major N does)",
        pg_major()
    );
    let exe = std::env::current_exe().expect("current test executable");
    let deps = exe.parent().expect("deps dir");
    let candidates = [
        deps.join("libdecoder_sql.so"),
        deps.parent().unwrap().join("libdecoder_sql.so"),
    ];
    candidates
        .iter()
        .filter_map(|p| Some((fs::metadata(p).ok()?.modified().ok()?, p)))
        .max()
        .map(|(_, p)| p.clone())
        .unwrap_or_else(|| panic!("libdecoder_sql.so not found next to {}", exe.display()))
}

fn is_root() -> bool {
    nix::unistd::Uid::effective().is_root()
}

/// Runs `program` as the `postgres` OS user when we are root (the server refuses root).
fn server_command(program: &Path) -> Command {
    if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

fn check(what: &str, out: Output) -> Output {
    if !out.status.success() {
        panic!(
            "{what} failed ({}):\n{}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    out
}

/// A PostgreSQL installation to start clusters from, with the decoder_sql library built for it.
#[derive(Debug, Clone)]
pub struct Installation {
    pub major: u32,
    pub bindir: PathBuf,
    /// decoder_sql built for this major; None for a server that must not have it.
    pub library: Option<PathBuf>,
}

impl Installation {
    /// The installation under test (`$PG_CONFIG`) with the library from [`decoder_library`].
    pub fn under_test(with_plugin: bool) -> Self {
        Installation {
            major: pg_major(),
            bindir: pg_bindir(),
            library: with_plugin.then(decoder_library),
        }
    }

    /// Another major set up by `scripts/setup --majors N` (`scripts/pg-config N` names its
    /// pg_config), with the decoder_sql library setup installed into it. None when it is not
    /// set up.
    pub fn major(major: u32, with_plugin: bool) -> Option<Self> {
        let pg_config = if major == 15 {
            PathBuf::from("/usr/lib/postgresql/15/bin/pg_config")
        } else {
            let dir = std::env::var("PGINCR_PG_DIR")
                .unwrap_or_else(|_| "/var/cache/pgincr/postgresql".to_owned());
            Path::new(&dir)
                .join(major.to_string())
                .join("bin/pg_config")
        };
        if !pg_config.exists() {
            return None;
        }
        let pg_config = pg_config.to_str().expect("UTF-8 path").to_owned();
        let library =
            PathBuf::from(pg_config_answer_of(&pg_config, "--pkglibdir")).join("decoder_sql.so");
        Some(Installation {
            major: major_of(&pg_config_answer_of(&pg_config, "--version")),
            bindir: PathBuf::from(pg_config_answer_of(&pg_config, "--bindir")),
            library: with_plugin.then_some(library),
        })
    }
}

pub struct TestCluster {
    dir: TempDir,
    bindir: PathBuf,
    port: u16,
    running: bool,
}

impl TestCluster {
    /// Creates and starts a cluster with the default settings.
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// Creates and starts a cluster; `extra_conf` lines are appended to postgresql.conf.
    pub fn start_with(extra_conf: &[&str]) -> Self {
        Self::create(extra_conf, true)
    }

    /// A cluster that does not load a freshly built decoder_sql (for tests of other programs,
    /// which may run before the library is built).
    pub fn start_without_plugin(extra_conf: &[&str]) -> Self {
        Self::create(extra_conf, false)
    }

    /// Creates and starts a cluster. On servers that restrict output plugins, decoder_sql (and
    /// the peers the benchmarks compare with) are added to `output_plugin_libraries` unless
    /// `extra_conf` sets it.
    fn create(extra_conf: &[&str], with_plugin: bool) -> Self {
        Self::start_installation(&Installation::under_test(with_plugin), extra_conf)
    }

    /// Creates and starts a cluster of `installation`.
    pub fn start_installation(installation: &Installation, extra_conf: &[&str]) -> Self {
        let bindir = installation.bindir.clone();
        let dir = tempfile::Builder::new()
            .prefix("pgincr-test-")
            .tempdir()
            .expect("tempdir");
        let root = dir.path();
        for sub in ["lib", "sock"] {
            fs::create_dir(root.join(sub)).unwrap();
        }
        if let Some(library) = &installation.library {
            fs::copy(library, root.join("lib/decoder_sql.so"))
                .unwrap_or_else(|e| panic!("copy {}: {e}", library.display()));
        }
        if is_root() {
            let pg = nix::unistd::User::from_name("postgres")
                .expect("user lookup")
                .expect("a 'postgres' OS user (install postgresql)");
            for p in [root.to_path_buf(), root.join("sock"), root.join("lib")] {
                nix::unistd::chown(&p, Some(pg.uid), Some(pg.gid)).unwrap();
            }
        }
        fs::set_permissions(root, fs::Permissions::from_mode(0o755)).unwrap();
        let port = free_port();
        let data = root.join("data");
        check(
            "initdb",
            server_command(&bindir.join("initdb"))
                .args(["-D"])
                .arg(&data)
                .args([
                    "-U",
                    "postgres",
                    "-A",
                    "trust",
                    "-E",
                    "UTF8",
                    "--locale=C",
                    "-N",
                ])
                .stdin(Stdio::null())
                .output()
                .expect("run initdb"),
        );
        let mut conf = format!(
            "\n# test cluster\nlisten_addresses = ''\nport = {port}\nunix_socket_directories = '{sock}'\n\
             wal_level = logical\nmax_replication_slots = 16\nmax_wal_senders = 16\nfsync = off\n\
             full_page_writes = off\nshared_buffers = 32MB\nmax_connections = 40\n\
             dynamic_library_path = '{lib}:$libdir'\nlog_min_messages = warning\n",
            sock = root.join("sock").display(),
            lib = root.join("lib").display(),
        );
        let sets_plugins = extra_conf
            .iter()
            .any(|l| l.trim_start().starts_with("output_plugin_libraries"));
        if restricts_output_plugins(&bindir) && !sets_plugins {
            conf.push_str(
                "output_plugin_libraries = 'pgoutput, test_decoding, wal2json, decoder_sql'\n",
            );
        }
        for line in extra_conf {
            conf.push_str(line);
            conf.push('\n');
        }
        let conf_path = data.join("postgresql.conf");
        let mut existing = fs::read_to_string(&conf_path).unwrap();
        existing.push_str(&conf);
        fs::write(&conf_path, existing).unwrap();
        let mut cluster = TestCluster {
            dir,
            bindir,
            port,
            running: false,
        };
        cluster.pg_ctl_start();
        cluster
    }

    fn pg_ctl_start(&mut self) {
        let data = self.data_dir();
        let log = self.dir.path().join("server.log");
        let out = server_command(&self.bindir.join("pg_ctl"))
            .args(["-w", "-t", "60", "-D"])
            .arg(&data)
            .arg("-l")
            .arg(&log)
            .arg("start")
            .stdin(Stdio::null())
            .output()
            .expect("run pg_ctl start");
        if !out.status.success() {
            let log = fs::read_to_string(&log).unwrap_or_default();
            panic!(
                "pg_ctl start failed: {}\n{log}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        self.running = true;
    }

    /// Stops the server with `mode` (`fast`, `immediate`), keeping the data directory.
    pub fn stop(&mut self, mode: &str) {
        let out = server_command(&self.bindir.join("pg_ctl"))
            .args(["-w", "-D"])
            .arg(self.data_dir())
            .args(["-m", mode, "stop"])
            .stdin(Stdio::null())
            .output()
            .expect("run pg_ctl stop");
        check("pg_ctl stop", out);
        self.running = false;
    }

    /// Starts the server again after [`stop`](Self::stop).
    pub fn restart(&mut self) {
        self.pg_ctl_start();
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn socket_dir(&self) -> PathBuf {
        self.dir.path().join("sock")
    }

    /// A new empty directory `name` beside the data directory that the server may use (a
    /// tablespace location), removed with the cluster.
    pub fn server_dir(&self, name: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        fs::create_dir(&path).unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
        if is_root() {
            let pg = nix::unistd::User::from_name("postgres")
                .expect("user lookup")
                .expect("a 'postgres' OS user");
            nix::unistd::chown(&path, Some(pg.uid), Some(pg.gid)).unwrap();
        }
        fs::set_permissions(&path, fs::Permissions::from_mode(0o700)).unwrap();
        path
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn bindir(&self) -> &Path {
        &self.bindir
    }

    /// The server log so far, for failure messages.
    pub fn server_log(&self) -> String {
        fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    /// A scratch directory inside the cluster's temporary directory.
    pub fn scratch_dir(&self, name: &str) -> PathBuf {
        let p = self.dir.path().join(name);
        fs::create_dir_all(&p).unwrap();
        p
    }

    /// libpq key/value connection string for `dbname`.
    pub fn conninfo(&self, dbname: &str) -> String {
        format!(
            "host={} port={} user=postgres dbname={dbname}",
            self.socket_dir().display(),
            self.port
        )
    }

    /// A connected tokio-postgres client (its connection task runs on the current runtime).
    pub async fn connect(&self, dbname: &str) -> tokio_postgres::Client {
        let (client, conn) = tokio_postgres::connect(&self.conninfo(dbname), tokio_postgres::NoTls)
            .await
            .unwrap_or_else(|e| panic!("connect to {dbname}: {e}"));
        tokio::spawn(async move {
            let _ = conn.await;
        });
        client
    }

    /// A connected client logged in as `user`.
    pub async fn connect_as(&self, dbname: &str, user: &str) -> tokio_postgres::Client {
        let conninfo = self
            .conninfo(dbname)
            .replace("user=postgres", &format!("user={user}"));
        let (client, conn) = tokio_postgres::connect(&conninfo, tokio_postgres::NoTls)
            .await
            .unwrap_or_else(|e| panic!("connect to {dbname} as {user}: {e}"));
        tokio::spawn(async move {
            let _ = conn.await;
        });
        client
    }

    /// Like [`connect`](Self::connect), but a failure is returned (the database may not exist yet).
    pub async fn connect_checked(
        &self,
        dbname: &str,
    ) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
        let (client, conn) =
            tokio_postgres::connect(&self.conninfo(dbname), tokio_postgres::NoTls).await?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(client)
    }

    /// A client program of the cluster's installation, connected through the environment.
    pub fn client_command(&self, program: &str) -> Command {
        let mut c = Command::new(self.bindir.join(program));
        c.env("PGHOST", self.socket_dir())
            .env("PGPORT", self.port.to_string())
            .env("PGUSER", "postgres")
            .stdin(Stdio::null());
        c
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        if self.running {
            let _ = server_command(&self.bindir.join("pg_ctl"))
                .args(["-w", "-D"])
                .arg(self.data_dir())
                .args(["-m", "immediate", "stop"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

fn free_port() -> u16 {
    // The socket lives in the cluster's own directory, so the port only has to be unused by
    // servers listening on TCP; the kernel's ephemeral pick is good enough.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().unwrap().port()
}
