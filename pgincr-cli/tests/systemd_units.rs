//! The systemd units of contrib/systemd: `systemd-analyze verify` accepts them (with this
//! build of pgincr where they expect /usr/local/bin/pgincr), and the settings their
//! environment file gives are ones the commands they run read.

use std::path::Path;
use std::process::Command;

const UNITS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../contrib/systemd");
const EXAMPLE_CONFIG: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../contrib/pgincr.toml");

/// The example configuration file is one `pgincr config check` accepts, with the settings
/// it documents.
#[test]
fn the_example_configuration_checks() {
    let out = Command::new(env!("CARGO_BIN_EXE_pgincr"))
        .args(["config", "check", "--config", EXAMPLE_CONFIG])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for expected in [
        "[database.app]",
        "[database.crm]",
        "base_at",
        "encrypt_to",
        "keep_monthly",
    ] {
        assert!(stdout.contains(expected), "{expected} not in:\n{stdout}");
    }
}

#[test]
fn units_pass_systemd_analyze_verify() {
    let dir = tempfile::tempdir().unwrap();
    let mut instances = Vec::new();
    for unit in [
        "pgincr-stream@.service",
        "pgincr-base@.service",
        "pgincr-base@.timer",
        "pgincr-supervise.service",
    ] {
        let text = std::fs::read_to_string(Path::new(UNITS).join(unit)).unwrap();
        assert!(
            unit.ends_with(".timer") || text.contains("ExecStart=/usr/local/bin/pgincr "),
            "{unit}"
        );
        let text = text.replace("/usr/local/bin/pgincr", env!("CARGO_BIN_EXE_pgincr"));
        let text = text.replace("/etc/pgincr/pgincr.toml", EXAMPLE_CONFIG);
        let instance = unit.replace("@.", "@app.");
        std::fs::write(dir.path().join(&instance), text).unwrap();
        instances.push(instance);
    }
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .args(&instances)
        .current_dir(dir.path())
        .output()
        .expect("systemd-analyze (package systemd; scripts/setup installs it)");
    let stderr = String::from_utf8_lossy(&out.stderr);
    // Complaints about units of the machine itself are not ours.
    let ours: Vec<&str> = stderr.lines().filter(|l| l.contains("pgincr")).collect();
    assert!(out.status.success() && ours.is_empty(), "{stderr}");
}

#[test]
fn the_environment_file_sets_what_the_units_commands_read() {
    let env = std::fs::read_to_string(Path::new(UNITS).join("example.env")).unwrap();
    let vars: Vec<&str> = env
        .lines()
        .filter(|l| !l.starts_with('#') && l.contains('='))
        .map(|l| l.split('=').next().unwrap())
        .collect();
    assert_eq!(vars, ["PGINCR_DSN", "PGINCR_REPO"]);
    for (command, needs) in [
        ("stream", &["PGINCR_DSN", "PGINCR_REPO"][..]),
        ("base", &["PGINCR_DSN", "PGINCR_REPO"][..]),
        ("prune", &["PGINCR_REPO"][..]),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_pgincr"))
            .args([command, "--help"])
            .output()
            .unwrap();
        let help = String::from_utf8_lossy(&out.stdout);
        for var in needs {
            assert!(help.contains(&format!("[env: {var}=")), "{command}: {help}");
        }
    }
}
