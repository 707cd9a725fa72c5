//! A throwaway SeaweedFS (a distributed object store with an S3 gateway) for the tests of
//! object-storage repositories: started with access keys, so that requests are signed and
//! checked, and stoppable and restartable on the same data to simulate outages.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tempfile::TempDir;

pub const ACCESS_KEY: &str = "pgincr-test-access";
pub const SECRET_KEY: &str = "pgincr-test-secret-9f8e7d6c5b4a";
const ADMIN_KEY: &str = "pgincr-test-admin";
const ADMIN_SECRET: &str = "pgincr-test-admin-secret-1a2b3c";

/// The `weed` binary: $WEED_BIN, else on PATH (scripts/setup installs it).
pub fn weed_binary() -> PathBuf {
    std::env::var_os("WEED_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("weed"))
}

pub struct SeaweedFs {
    dir: TempDir,
    /// HTTP ports of master, volume, filer and S3; each gRPC port is its HTTP port + 10000.
    ports: [u16; 4],
    child: Option<Child>,
}

/// Four consecutive free ports (and their gRPC twins), below 55535.
fn free_ports() -> [u16; 4] {
    let seed = std::process::id() as u64
        ^ std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos() as u64;
    for i in 0..200u64 {
        let base = 20000 + ((seed.wrapping_mul(7919) + i * 37) % 25000) as u16;
        let ports = [base, base + 1, base + 2, base + 3];
        let free = ports.iter().all(|p| {
            TcpListener::bind(("127.0.0.1", *p)).is_ok()
                && TcpListener::bind(("127.0.0.1", *p + 10000)).is_ok()
        });
        if free {
            return ports;
        }
    }
    panic!("no free ports for SeaweedFS");
}

impl SeaweedFs {
    /// Starts a store and creates `bucket`.
    pub fn start(bucket: &str) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("pgincr-seaweedfs-")
            .tempdir()
            .unwrap();
        std::fs::create_dir_all(dir.path().join("data")).unwrap();
        // pgincr's identity may read and write but not administer (so no bucket appears by
        // writing into it); another creates the buckets.
        let keys = format!(
            r#"{{"identities":[{{"name":"pgincr","credentials":[{{"accessKey":"{ACCESS_KEY}","secretKey":"{SECRET_KEY}"}}],"actions":["Read","Write","List","Tagging"]}},{{"name":"admin","credentials":[{{"accessKey":"{ADMIN_KEY}","secretKey":"{ADMIN_SECRET}"}}],"actions":["Admin","Read","Write","List","Tagging"]}}]}}"#
        );
        std::fs::write(dir.path().join("keys.json"), keys).unwrap();
        let mut store = SeaweedFs {
            dir,
            ports: free_ports(),
            child: None,
        };
        store.resume();
        store.create_bucket(bucket);
        store
    }

    /// `http://127.0.0.1:PORT`, the S3 endpoint.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.ports[3])
    }

    /// The environment that points pgincr (or the aws CLI, rclone) at this store.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT_URL", self.endpoint()),
            ("AWS_ACCESS_KEY_ID", ACCESS_KEY.into()),
            ("AWS_SECRET_ACCESS_KEY", SECRET_KEY.into()),
            ("AWS_REGION", "us-east-1".into()),
        ]
    }

    pub fn data_dir(&self) -> &Path {
        self.dir.path()
    }

    /// Starts (again) on the same data and waits until it takes writes. A start whose
    /// master never becomes leader (seen on a loaded machine right after a restart) is
    /// stopped and tried again.
    pub fn resume(&mut self) {
        assert!(self.child.is_none(), "SeaweedFS is running already");
        const ATTEMPTS: u32 = 3;
        for attempt in 1..=ATTEMPTS {
            self.spawn();
            match self.wait_until_writable(Duration::from_secs(60)) {
                Ok(()) => return,
                Err(last) if attempt == ATTEMPTS => {
                    let log = self.log();
                    panic!(
                        "SeaweedFS did not start: {last}\n…{}",
                        &log[log.len().saturating_sub(4000)..]
                    );
                }
                Err(_) => self.pause(),
            }
        }
    }

    fn spawn(&mut self) {
        let [master, volume, filer, s3] = self.ports;
        // Appended to, so that the log of every start is kept.
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("weed.log"))
            .unwrap();
        let child = Command::new(weed_binary())
            .arg("server")
            .arg(format!("-dir={}", self.dir.path().join("data").display()))
            .args(["-ip=127.0.0.1", "-ip.bind=127.0.0.1"])
            .arg(format!("-master.port={master}"))
            .arg(format!("-volume.port={volume}"))
            .arg(format!("-filer.port={filer}"))
            .arg("-s3")
            .arg(format!("-s3.port={s3}"))
            .arg(format!(
                "-s3.config={}",
                self.dir.path().join("keys.json").display()
            ))
            .arg("-master.volumeSizeLimitMB=64")
            // Its other listeners have fixed ports: off, so that stores run side by side.
            .args([
                "-s3.port.iceberg=0",
                "-s3.port.lance=0",
                "-master.telemetry=false",
            ])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("starting weed (SeaweedFS, installed by scripts/setup)");
        self.child = Some(child);
    }

    /// Ready when a signed write of a probe object succeeds (S3 answering is not enough:
    /// writes wait for a master leader and a volume server). Err holds the last answer.
    fn wait_until_writable(&self, within: Duration) -> Result<(), String> {
        let deadline = Instant::now() + within;
        let probe = format!("{}/pgincr-probe", self.endpoint());
        loop {
            let bucket = self.curl(&["-X", "PUT", &probe]);
            // curl signs a body only as UNSIGNED-PAYLOAD.
            let object = self.curl(&[
                "-X",
                "PUT",
                "-H",
                "Content-Type: application/octet-stream",
                "-H",
                "x-amz-content-sha256: UNSIGNED-PAYLOAD",
                "--data-binary",
                "ready",
                &format!("{probe}/ready"),
            ]);
            if (bucket.ends_with("200") || bucket.contains("BucketAlready"))
                && object.ends_with("200")
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!("{bucket} / {object}"));
            }
            std::thread::sleep(Duration::from_millis(300));
        }
    }

    /// Stops the store (SIGTERM, then SIGKILL), keeping its data.
    pub fn pause(&mut self) {
        if let Some(mut child) = self.child.take() {
            let pid = nix::unistd::Pid::from_raw(child.id() as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(10);
            while child.try_wait().unwrap().is_none() {
                if Instant::now() > deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            // The ports must be free before a restart.
            let deadline = Instant::now() + Duration::from_secs(20);
            while self
                .ports
                .iter()
                .any(|p| TcpListener::bind(("127.0.0.1", *p)).is_err())
                && Instant::now() < deadline
            {
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("weed.log")).unwrap_or_default()
    }

    /// A signed request with curl; returns the body and the status code.
    fn curl(&self, args: &[&str]) -> String {
        let out = Command::new("curl")
            .args([
                "-s",
                "-w",
                "\n%{http_code}",
                "--aws-sigv4",
                "aws:amz:us-east-1:s3",
            ])
            .arg("--user")
            .arg(format!("{ADMIN_KEY}:{ADMIN_SECRET}"))
            .args(args)
            .output()
            .expect("curl runs");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn create_bucket(&self, bucket: &str) {
        let out = self.curl(&["-X", "PUT", &format!("{}/{bucket}", self.endpoint())]);
        assert!(out.ends_with("200"), "creating bucket {bucket}: {out}");
    }

    /// Names of the objects under `prefix` in `bucket`, with `rclone`.
    pub fn list(&self, bucket: &str, prefix: &str) -> Vec<String> {
        let out = self.rclone(&[
            "lsf",
            "-R",
            "--files-only",
            &format!("s3:{bucket}/{prefix}"),
        ]);
        assert!(
            out.status.success(),
            "rclone lsf: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut names: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_owned)
            .collect();
        names.sort();
        names
    }

    /// `rclone` with a remote `s3:` that is this store (configured by environment only).
    pub fn rclone(&self, args: &[&str]) -> std::process::Output {
        Command::new("rclone")
            .args(args)
            .env("RCLONE_CONFIG", "/dev/null")
            // The store speaks plain HTTP; a CA bundle of the machine's would only be refused.
            .env_remove("AWS_CA_BUNDLE")
            .env("RCLONE_CONFIG_S3_TYPE", "s3")
            .env("RCLONE_CONFIG_S3_PROVIDER", "SeaweedFS")
            .env("RCLONE_CONFIG_S3_ENDPOINT", self.endpoint())
            .env("RCLONE_CONFIG_S3_ACCESS_KEY_ID", ACCESS_KEY)
            .env("RCLONE_CONFIG_S3_SECRET_ACCESS_KEY", SECRET_KEY)
            .env("RCLONE_CONFIG_S3_REGION", "us-east-1")
            // Creating a bucket is the admin's; pgincr's identity may only write into one.
            .env("RCLONE_CONFIG_S3_NO_CHECK_BUCKET", "true")
            .output()
            .expect("rclone runs")
    }
}

impl Drop for SeaweedFs {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
