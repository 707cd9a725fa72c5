//! TLS for pgincr's own connections with libpq's `sslmode` semantics (tokio-postgres knows
//! only disable, prefer and require, and never verifies by itself).
//!
//! | sslmode | TLS | certificate checked |
//! | --- | --- | --- |
//! | disable | never | — |
//! | allow, prefer (default) | when the server offers it | only if a root certificate is present |
//! | require | always | only if a root certificate is present (as libpq) |
//! | verify-ca | always | chain to `sslrootcert` |
//! | verify-full | always | chain, and the host name or IP address |
//!
//! `sslrootcert` defaults to ~/.postgresql/root.crt; `system` uses the system's trust store.
//! `sslcert`/`sslkey` (default ~/.postgresql/postgresql.crt and .key) are sent when present.

use crate::{Error, Result};
use openssl::ssl::{SslConnector, SslFiletype, SslMethod, SslVerifyMode};
use postgres_openssl::MakeTlsConnector;
use std::path::PathBuf;
use tokio_postgres::config::SslMode;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

#[derive(Debug, Clone)]
pub struct TlsSettings {
    pub mode: Mode,
    /// `None`: no root certificate, so no verification (below verify-ca).
    root_cert: Option<RootCert>,
    client_cert: Option<(PathBuf, PathBuf)>,
}

#[derive(Debug, Clone)]
enum RootCert {
    File(PathBuf),
    System,
}

fn postgresql_dir() -> Option<PathBuf> {
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".postgresql"))
}

impl TlsSettings {
    pub fn new(
        sslmode: Option<&str>,
        sslrootcert: Option<String>,
        sslcert: Option<String>,
        sslkey: Option<String>,
    ) -> Result<TlsSettings> {
        let mode = match sslmode.unwrap_or("prefer") {
            "disable" => Mode::Disable,
            "allow" | "prefer" => Mode::Prefer,
            "require" => Mode::Require,
            "verify-ca" => Mode::VerifyCa,
            "verify-full" => Mode::VerifyFull,
            other => {
                return Err(Error::Invalid(format!(
                    "invalid sslmode value: \"{other}\" (disable, allow, prefer, require, verify-ca or verify-full)"
                )));
            }
        };
        let explicit_root = sslrootcert.is_some();
        let root_cert = match sslrootcert.as_deref() {
            Some("system") => Some(RootCert::System),
            Some(path) => Some(RootCert::File(PathBuf::from(path))),
            None => postgresql_dir().map(|d| RootCert::File(d.join("root.crt"))),
        }
        .filter(|r| match r {
            RootCert::System => true,
            RootCert::File(p) => p.exists() || explicit_root,
        });
        if let Some(RootCert::File(p)) = &root_cert
            && !p.exists()
        {
            return Err(Error::Invalid(format!(
                "root certificate file \"{}\" does not exist",
                p.display()
            )));
        }
        if matches!(mode, Mode::VerifyCa | Mode::VerifyFull) && root_cert.is_none() {
            return Err(Error::Invalid(format!(
                "sslmode={} needs a root certificate to check the server's against: give \
                 sslrootcert (or put it in ~/.postgresql/root.crt)",
                if mode == Mode::VerifyCa {
                    "verify-ca"
                } else {
                    "verify-full"
                }
            )));
        }
        let default_client = |name: &str| postgresql_dir().map(|d| d.join(name));
        let cert = sslcert
            .map(PathBuf::from)
            .or_else(|| default_client("postgresql.crt"));
        let key = sslkey
            .map(PathBuf::from)
            .or_else(|| default_client("postgresql.key"));
        let client_cert = match (cert, key) {
            (Some(c), Some(k)) if c.exists() => Some((c, k)),
            _ => None,
        };
        Ok(TlsSettings {
            mode,
            root_cert,
            client_cert,
        })
    }

    /// What tokio-postgres is told: whether to try TLS and whether to insist on it.
    pub fn tokio_mode(&self) -> SslMode {
        match self.mode {
            Mode::Disable => SslMode::Disable,
            Mode::Prefer => SslMode::Prefer,
            Mode::Require | Mode::VerifyCa | Mode::VerifyFull => SslMode::Require,
        }
    }

    /// The TLS connector for these settings.
    pub fn connector(&self) -> Result<MakeTlsConnector> {
        let tls_error = |what: &str, e: openssl::error::ErrorStack| {
            Error::Invalid(format!("TLS set-up: {what}: {e}"))
        };
        let mut builder =
            SslConnector::builder(SslMethod::tls_client()).map_err(|e| tls_error("openssl", e))?;
        match &self.root_cert {
            None => builder.set_verify(SslVerifyMode::NONE),
            Some(RootCert::System) => {
                builder
                    .set_default_verify_paths()
                    .map_err(|e| tls_error("system certificates", e))?;
                builder.set_verify(SslVerifyMode::PEER);
            }
            Some(RootCert::File(p)) => {
                builder
                    .set_ca_file(p)
                    .map_err(|e| tls_error(&format!("root certificate {}", p.display()), e))?;
                builder.set_verify(SslVerifyMode::PEER);
            }
        }
        if let Some((cert, key)) = &self.client_cert {
            builder
                .set_certificate_chain_file(cert)
                .map_err(|e| tls_error(&format!("client certificate {}", cert.display()), e))?;
            builder
                .set_private_key_file(key, SslFiletype::PEM)
                .map_err(|e| tls_error(&format!("client key {}", key.display()), e))?;
        }
        let mut connector = MakeTlsConnector::new(builder.build());
        let check_host = self.mode == Mode::VerifyFull;
        connector.set_callback(move |config, _host| {
            config.set_verify_hostname(check_host);
            Ok(())
        });
        Ok(connector)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sslmodes_follow_libpq() {
        let s = |m: &str| TlsSettings::new(Some(m), None, None, None);
        assert_eq!(s("allow").unwrap().tokio_mode(), SslMode::Prefer);
        assert_eq!(s("require").unwrap().tokio_mode(), SslMode::Require);
        assert_eq!(s("disable").unwrap().tokio_mode(), SslMode::Disable);
        assert!(
            s("bogus")
                .unwrap_err()
                .to_string()
                .contains("invalid sslmode")
        );
        let missing = TlsSettings::new(
            Some("verify-ca"),
            Some("/nonexistent/ca.crt".into()),
            None,
            None,
        );
        assert!(missing.unwrap_err().to_string().contains("does not exist"));
    }
}
