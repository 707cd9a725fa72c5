//! The one wrapper around external PostgreSQL programs (pg_dump, pg_dumpall, psql,
//! pg_recvlogical). Every failure names the program, its exit status and the tail of its
//! stderr; the password travels in `PGPASSWORD`, never in arguments.

use crate::{Error, Result};
use std::collections::VecDeque;
use std::ffi::OsStr;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// How many stderr lines a failure report keeps.
const STDERR_TAIL_LINES: usize = 20;

/// Where the programs live and how they connect.
#[derive(Debug, Clone, Default)]
pub struct Tools {
    /// Directory of the PostgreSQL client programs; `None` searches `PATH`.
    pub bindir: Option<PathBuf>,
    /// Password taken out of the connection string, passed as `PGPASSWORD`.
    pub password: Option<String>,
}

impl Tools {
    /// A command for `program`, with stdin closed and both output streams captured.
    pub fn command(&self, program: &'static str) -> Tool {
        let path = match &self.bindir {
            Some(dir) => dir.join(program),
            None => PathBuf::from(program),
        };
        let mut cmd = Command::new(path);
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        if let Some(pw) = &self.password {
            cmd.env("PGPASSWORD", pw);
        }
        die_with_parent(&mut cmd);
        Tool { program, cmd }
    }

    /// The version of `program` as a number like `server_version_num` (`psql --version`).
    pub async fn version(&self, program: &'static str) -> Result<i32> {
        let out = self.command(program).arg("--version").output().await?;
        let line = String::from_utf8_lossy(&out);
        crate::pg::compat::parse_client_version(&line).ok_or_else(|| {
            Error::Invalid(format!(
                "cannot read the version of {program} from {:?}",
                line.trim()
            ))
        })
    }
}

/// Makes the child get SIGTERM when pgincr dies, however it dies (kill -9 included): a
/// pg_recvlogical left running would go on confirming changes to the server into a file the
/// next run no longer reads.
fn die_with_parent(cmd: &mut Command) {
    let parent = nix::unistd::getpid();
    // SAFETY: the closure runs in the forked child before exec and only makes the
    // async-signal-safe prctl and getppid system calls.
    unsafe {
        cmd.pre_exec(move || {
            nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGTERM)?;
            // The parent may have died between fork and prctl.
            if nix::unistd::getppid() != parent {
                return Err(std::io::Error::other(
                    "pgincr exited before its child started",
                ));
            }
            Ok(())
        });
    }
}

/// One external program about to run.
pub struct Tool {
    program: &'static str,
    cmd: Command,
}

impl Tool {
    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Self {
        self.cmd.arg(arg);
        self
    }

    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.cmd.args(args);
        self
    }

    pub fn env(mut self, key: &str, value: impl AsRef<OsStr>) -> Self {
        self.cmd.env(key, value);
        self
    }

    pub fn stdin(mut self, cfg: Stdio) -> Self {
        self.cmd.stdin(cfg);
        self
    }

    pub fn stdout(mut self, cfg: Stdio) -> Self {
        self.cmd.stdout(cfg);
        self
    }

    /// Runs to completion; returns stdout, or an error with the stderr tail.
    pub async fn output(mut self) -> Result<Vec<u8>> {
        tracing::debug!("running {}", self.program);
        let out = self.cmd.output().await.map_err(|e| Error::Spawn {
            program: self.program.to_owned(),
            source: e,
        })?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        if !out.status.success() {
            return Err(tool_failed(self.program, out.status, &tail_of(&stderr)));
        }
        for line in stderr.lines() {
            tracing::debug!("{}: {line}", self.program);
        }
        Ok(out.stdout)
    }

    /// Starts the program; stderr is collected in the background (kept tail, debug log).
    pub fn spawn(mut self) -> Result<Running> {
        tracing::debug!("starting {}", self.program);
        let mut child = self.cmd.spawn().map_err(|e| Error::Spawn {
            program: self.program.to_owned(),
            source: e,
        })?;
        let tail = Arc::new(Mutex::new(VecDeque::new()));
        let stderr_reader = child.stderr.take().map(|stderr| {
            let tail = Arc::clone(&tail);
            let program = self.program;
            tokio::spawn(async move {
                let mut lines = BufReader::new(stderr).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    tracing::debug!("{program}: {line}");
                    let mut t = tail.lock().expect("stderr tail lock");
                    if t.len() == STDERR_TAIL_LINES {
                        t.pop_front();
                    }
                    t.push_back(line);
                }
            })
        });
        Ok(Running {
            program: self.program,
            child,
            stderr_tail: tail,
            stderr_reader,
        })
    }
}

/// A started program.
pub struct Running {
    pub program: &'static str,
    pub child: Child,
    stderr_tail: Arc<Mutex<VecDeque<String>>>,
    /// Ends when the program's stderr closes, i.e. when it exits.
    stderr_reader: Option<tokio::task::JoinHandle<()>>,
}

impl Running {
    /// The last lines the program wrote to stderr.
    fn stderr_tail(&self) -> String {
        let t = self.stderr_tail.lock().expect("stderr tail lock");
        t.iter().cloned().collect::<Vec<_>>().join("\n")
    }

    /// Waits for exit; a non-zero status is an error carrying the stderr tail.
    pub async fn wait(&mut self) -> Result<()> {
        let status = self.child.wait().await?;
        self.check(status).await
    }

    /// Turns an exit status into a result; a failure carries the complete stderr tail.
    pub async fn check(&mut self, status: ExitStatus) -> Result<()> {
        if status.success() {
            return Ok(());
        }
        // The reader may still be draining the pipe; it ends at end of file. A bounded
        // wait, in case a grandchild keeps the pipe open.
        if let Some(reader) = self.stderr_reader.take() {
            let _ = tokio::time::timeout(std::time::Duration::from_secs(5), reader).await;
        }
        Err(tool_failed(self.program, status, &self.stderr_tail()))
    }

    /// Sends a signal (SIGINT for a clean stop, SIGHUP to reopen the output file).
    pub fn signal(&self, signal: nix::sys::signal::Signal) {
        if let Some(pid) = self.child.id() {
            let pid = nix::unistd::Pid::from_raw(pid as i32);
            if let Err(e) = nix::sys::signal::kill(pid, signal) {
                tracing::debug!("could not signal {}: {e}", self.program);
            }
        }
    }
}

fn tail_of(stderr: &str) -> String {
    let lines: Vec<&str> = stderr.lines().collect();
    lines[lines.len().saturating_sub(STDERR_TAIL_LINES)..].join("\n")
}

fn tool_failed(program: &str, status: ExitStatus, stderr_tail: &str) -> Error {
    Error::Tool {
        program: program.to_owned(),
        status: describe_status(status),
        stderr_tail: stderr_tail.to_owned(),
    }
}

/// "exit code 1" or "signal 9".
fn describe_status(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit code {code}"),
        (None, Some(sig)) => format!("signal {sig}"),
        _ => status.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn failure_reports_program_status_and_stderr_tail() {
        let tools = Tools {
            bindir: Some("/bin".into()),
            password: None,
        };
        let err = tools
            .command("sh")
            .args([
                "-c",
                "for i in $(seq 1 30); do echo line$i >&2; done; exit 4",
            ])
            .output()
            .await
            .unwrap_err();
        let text = err.to_string();
        assert!(text.contains("sh failed (exit code 4)"), "{text}");
        assert!(text.contains("line30") && text.contains("line11"), "{text}");
        assert!(!text.contains("line10\n"), "{text}");
    }

    #[tokio::test]
    async fn missing_program_is_named() {
        let tools = Tools {
            bindir: Some("/nonexistent".into()),
            password: None,
        };
        let err = tools.command("pg_dump").output().await.unwrap_err();
        assert!(err.to_string().contains("pg_dump"), "{err}");
    }

    #[tokio::test]
    async fn password_goes_to_the_environment() {
        let tools = Tools {
            bindir: Some("/bin".into()),
            password: Some("hunter2".into()),
        };
        let out = tools
            .command("sh")
            .args(["-c", "echo $PGPASSWORD"])
            .output()
            .await
            .unwrap();
        assert_eq!(out, b"hunter2\n");
    }
}
