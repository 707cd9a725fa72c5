//! pgincr's own connections behave like libpq's: TLS with every sslmode against a server
//! with a certificate made here (openssl CLI), passwords from a password file, services from
//! a service file, connect_timeout, several hosts, and failures that name the server and
//! the cause. A full restore goes over TLS too, its child programs getting the same string.

mod common;

use common::*;
use e2e::TestCluster;
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const SETUP: &str = "CREATE TABLE t (id int PRIMARY KEY, v text);
                     INSERT INTO t SELECT g, 'v' || g FROM generate_series(1, 100) g;";

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run openssl (scripts/setup installs it)");
    assert!(out.status.success(), "openssl {args:?}: {}", describe(&out));
}

/// A CA, a server certificate it signed for 127.0.0.1 and localhost, and an unrelated CA.
fn make_certificates(dir: &Path) {
    for ca in ["ca", "other_ca"] {
        openssl(
            dir,
            &[
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "2",
                "-subj",
                &format!("/CN=pgincr test {ca}"),
                "-keyout",
                &format!("{ca}.key"),
                "-out",
                &format!("{ca}.crt"),
            ],
        );
    }
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=localhost",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
        ],
    );
    std::fs::write(
        dir.join("san.ext"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n",
    )
    .unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "san.ext",
            "-out",
            "server.crt",
        ],
    );
    // The server reads its key only when nobody else can.
    let key = dir.join("server.key");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    if nix::unistd::Uid::effective().is_root() {
        let pg = nix::unistd::User::from_name("postgres").unwrap().unwrap();
        for f in ["server.key", "server.crt"] {
            nix::unistd::chown(&dir.join(f), Some(pg.uid), Some(pg.gid)).unwrap();
        }
    }
}

/// The cluster listens on 127.0.0.1 with TLS; TCP connections need TLS and a password.
async fn tls_cluster() -> (TestCluster, tokio_postgres::Client, PathBuf, PathBuf) {
    let (cluster, source, repo) = initialised(SETUP).await;
    let tls = cluster.scratch_dir("tls");
    std::fs::set_permissions(&tls, std::fs::Permissions::from_mode(0o755)).unwrap();
    make_certificates(&tls);
    std::fs::write(
        cluster.data_dir().join("pg_hba.conf"),
        "local all all trust\n\
         hostssl all all 127.0.0.1/32 scram-sha-256\n\
         hostnossl all all 127.0.0.1/32 reject\n",
    )
    .unwrap();
    for statement in [
        "ALTER SYSTEM SET listen_addresses = '127.0.0.1'".to_owned(),
        "ALTER SYSTEM SET ssl = on".to_owned(),
        format!(
            "ALTER SYSTEM SET ssl_cert_file = '{}'",
            tls.join("server.crt").display()
        ),
        format!(
            "ALTER SYSTEM SET ssl_key_file = '{}'",
            tls.join("server.key").display()
        ),
        // 13 stores md5 passwords by default.
        "SET password_encryption = 'scram-sha-256'".to_owned(),
        "ALTER ROLE postgres PASSWORD 'sekrit'".to_owned(),
    ] {
        source.batch_execute(&statement).await.unwrap();
    }
    // listen_addresses needs a restart.
    let mut cluster = cluster;
    cluster.stop("fast");
    cluster.restart();
    let source = cluster.connect("postgres").await;
    (cluster, source, repo, tls)
}

fn write_private(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

/// `pgincr restore --dry-run --to-time now` against `target`: it only opens pgincr's own
/// connection (to read the time), so it succeeds exactly when that connection works.
fn dry_run(
    cluster: &TestCluster,
    repo: &Path,
    target: &str,
    env: &[(&str, &str)],
) -> std::process::Output {
    pgincr_output(
        cluster,
        &[
            "restore",
            "-r",
            repo.to_str().unwrap(),
            "-t",
            target,
            "--dry-run",
            "--to-time",
            "now",
        ],
        env,
    )
}

fn assert_connects(cluster: &TestCluster, repo: &Path, target: &str, env: &[(&str, &str)]) {
    let out = dry_run(cluster, repo, target, env);
    assert!(
        out.status.success(),
        "{target} with {env:?}: {}",
        describe(&out)
    );
}

fn assert_refused(
    cluster: &TestCluster,
    repo: &Path,
    target: &str,
    env: &[(&str, &str)],
    expected: &[&str],
) {
    let out = dry_run(cluster, repo, target, env);
    let text = describe(&out);
    assert!(!out.status.success(), "{target} should fail: {text}");
    for e in expected {
        assert!(text.contains(e), "{target}: expected {e:?} in {text}");
    }
}

#[tokio::test]
async fn tls_modes_password_and_service_files_work_like_libpq() {
    let (cluster, source, repo, tls) = tls_cluster().await;
    let port = cluster.port();
    let ca = tls.join("ca.crt");
    let other_ca = tls.join("other_ca.crt");
    let tcp = format!("host=127.0.0.1 port={port} user=postgres dbname=postgres");
    let with_pw = format!("{tcp} password=sekrit");
    let home = cluster.scratch_dir("home");
    let home_s = home.to_str().unwrap();
    let no_home = [("HOME", home_s)];

    // TLS: every mode that uses it reaches a server that rejects plain connections.
    for mode in ["prefer", "require"] {
        assert_connects(
            &cluster,
            &repo,
            &format!("{with_pw} sslmode={mode}"),
            &no_home,
        );
    }
    assert_connects(&cluster, &repo, &with_pw, &no_home);
    assert_connects(
        &cluster,
        &repo,
        &format!("{with_pw} sslmode=verify-full sslrootcert={}", ca.display()),
        &no_home,
    );
    assert_connects(
        &cluster,
        &repo,
        &with_pw,
        &[
            ("HOME", home_s),
            ("PGSSLMODE", "verify-ca"),
            ("PGSSLROOTCERT", ca.to_str().unwrap()),
        ],
    );
    assert_refused(
        &cluster,
        &repo,
        &format!("{with_pw} sslmode=disable"),
        &no_home,
        &["pg_hba.conf rejects connection"],
    );
    assert_refused(
        &cluster,
        &repo,
        &format!(
            "{with_pw} sslmode=verify-full sslrootcert={}",
            other_ca.display()
        ),
        &no_home,
        &["127.0.0.1:", "certificate verify failed"],
    );
    // verify-full checks the name: the certificate is not for wrong.example.
    assert_refused(
        &cluster,
        &repo,
        &format!(
            "host=wrong.example hostaddr=127.0.0.1 port={port} user=postgres dbname=postgres \
             password=sekrit sslmode=verify-full sslrootcert={}",
            ca.display()
        ),
        &no_home,
        &["certificate verify failed"],
    );
    // require checks nothing without a root certificate, but uses one that is there.
    std::fs::create_dir_all(home.join(".postgresql")).unwrap();
    std::fs::copy(&other_ca, home.join(".postgresql/root.crt")).unwrap();
    assert_refused(
        &cluster,
        &repo,
        &format!("{with_pw} sslmode=require"),
        &no_home,
        &["certificate verify failed"],
    );
    std::fs::remove_file(home.join(".postgresql/root.crt")).unwrap();

    // Passwords: passfile=, PGPASSFILE, ~/.pgpass; a file others can read is ignored.
    let passfile = home.join("pw");
    write_private(
        &passfile,
        &format!("127.0.0.1:{port}:*:postgres:sekrit\nlocalhost:{port}:*:postgres:sekrit\n"),
    );
    assert_connects(
        &cluster,
        &repo,
        &format!("{tcp} passfile={}", passfile.display()),
        &no_home,
    );
    assert_connects(
        &cluster,
        &repo,
        &tcp,
        &[("HOME", home_s), ("PGPASSFILE", passfile.to_str().unwrap())],
    );
    write_private(&home.join(".pgpass"), &format!("*:{port}:*:*:sekrit\n"));
    assert_connects(&cluster, &repo, &tcp, &no_home);
    std::fs::set_permissions(home.join(".pgpass"), std::fs::Permissions::from_mode(0o644)).unwrap();
    assert_refused(&cluster, &repo, &tcp, &no_home, &["password"]);

    // A service from PGSERVICEFILE; the connection string wins over it.
    let services = home.join("services.conf");
    std::fs::write(
        &services,
        format!(
            "[backup]\nhost=127.0.0.1\nport={port}\nuser=postgres\ndbname=nonexistent\n\
             sslmode=verify-full\nsslrootcert={}\n",
            ca.display()
        ),
    )
    .unwrap();
    let service_env = [
        ("HOME", home_s),
        ("PGSERVICEFILE", services.to_str().unwrap()),
        ("PGPASSFILE", passfile.to_str().unwrap()),
    ];
    assert_connects(
        &cluster,
        &repo,
        "service=backup dbname=postgres",
        &service_env,
    );
    assert_refused(
        &cluster,
        &repo,
        "service=missing",
        &service_env,
        &["definition of service \"missing\" not found"],
    );

    // Several hosts: the first refuses, the second answers.
    let closed = TcpListener::bind("127.0.0.1:0").unwrap();
    let closed_port = closed.local_addr().unwrap().port();
    drop(closed);
    assert_connects(
        &cluster,
        &repo,
        &format!(
            "host=127.0.0.1,127.0.0.1 port={closed_port},{port} user=postgres dbname=postgres password=sekrit target_session_attrs=read-write"
        ),
        &no_home,
    );

    // A whole restore over verify-full TLS with the password from a file: psql gets the
    // same connection string and finds the same file. By host name: psql 16.15's libpq was
    // seen refusing the certificate's IP entry for host=127.0.0.1, which pgincr's own
    // connections (checked above) accept.
    let target = format!(
        "host=localhost port={port} user=postgres dbname=over_tls sslmode=verify-full sslrootcert={}",
        ca.display()
    );
    succeeds(
        &cluster,
        &[
            "restore",
            "-r",
            repo.to_str().unwrap(),
            "-t",
            &target,
            "--create",
        ],
        &[("HOME", home_s), ("PGPASSFILE", passfile.to_str().unwrap())],
    );
    assert_same_database(&cluster, &source, "over_tls").await;
}

#[tokio::test]
async fn failures_name_the_server_and_connect_timeout_is_honoured() {
    let (cluster, _source, repo) = initialised(SETUP).await;
    let closed = TcpListener::bind("127.0.0.1:0").unwrap();
    let closed_port = closed.local_addr().unwrap().port();
    drop(closed);
    assert_refused(
        &cluster,
        &repo,
        &format!("host=127.0.0.1 port={closed_port} dbname=x"),
        &[],
        &[&format!("127.0.0.1:{closed_port}"), "refused"],
    );

    // A server that accepts connections and never answers.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_port = silent.local_addr().unwrap().port();
    let _holder = std::thread::spawn(move || {
        let mut held = Vec::new();
        for conn in silent.incoming() {
            held.push(conn);
        }
    });
    let started = Instant::now();
    let mut child = pgincr_under_test(&cluster)
        .args([
            "restore",
            "-r",
            repo.to_str().unwrap(),
            "-t",
            &format!("host=127.0.0.1 port={silent_port} dbname=x connect_timeout=2"),
            "--dry-run",
            "--to-time",
            "now",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if started.elapsed() > Duration::from_secs(20) {
            child.kill().unwrap();
            panic!("connect_timeout=2 was not honoured: still connecting after 20 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = child.wait_with_output().unwrap();
    let text = describe(&out);
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains(&format!("127.0.0.1:{silent_port}")) && text.contains("timeout"),
        "{text}"
    );
}
