//! A logical slot created together with an exported snapshot.
//!
//! `pg_recvlogical --create-slot` does not export a snapshot, and the snapshot lives only as
//! long as the replication connection that created it stays open and idle. tokio-postgres
//! has no replication mode, so the replication connection is a `psql` session with
//! `replication=database`, driven over a pipe: one command in, one row out, then it waits on
//! stdin until the base dump that uses the snapshot is done.

use super::Endpoint;
use crate::tool::Running;
use crate::{Error, Result, conninfo};
use sqlgen::ident::quote_ident;
use sqlgen::lsn::Lsn;
use std::process::Stdio;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

/// A slot whose snapshot is held open.
pub struct ExportedSnapshot {
    pub slot: String,
    pub consistent_lsn: Lsn,
    /// Name for `pg_dump --snapshot` / `SET TRANSACTION SNAPSHOT`.
    pub snapshot: String,
    psql: Running,
}

/// The replication command that creates `slot` with an exported snapshot.
pub fn create_slot_command(slot: &str, temporary: bool, server_version_num: i32) -> String {
    super::compat::create_slot_command(&quote_ident(slot), temporary, server_version_num)
}

/// Parses psql's unaligned row: slot_name|consistent_point|snapshot_name|output_plugin.
pub fn parse_slot_row(row: &str) -> Option<(String, Lsn, String)> {
    let mut parts = row.trim_end().split('|');
    let slot = parts.next()?.to_owned();
    let lsn = parts.next()?.parse().ok()?;
    let snapshot = parts.next()?.to_owned();
    (!snapshot.is_empty()).then_some((slot, lsn, snapshot))
}

impl ExportedSnapshot {
    pub async fn create(
        source: &Endpoint,
        slot: &str,
        temporary: bool,
        server_version_num: i32,
    ) -> Result<Self> {
        let dsn = conninfo::with_param(&source.public_dsn, "replication", "database")
            .map_err(Error::Invalid)?;
        let mut psql = source
            .tools
            .command("psql")
            .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d"])
            .arg(&dsn)
            .stdin(Stdio::piped())
            .spawn()?;
        let mut stdin = psql.child.stdin.take().expect("piped stdin");
        let stdout = psql.child.stdout.take().expect("piped stdout");
        let command = create_slot_command(slot, temporary, server_version_num);
        tracing::debug!("replication command: {command}");
        stdin.write_all(format!("{command}\n").as_bytes()).await?;
        stdin.flush().await?;
        let mut row = String::new();
        BufReader::new(stdout).read_line(&mut row).await?;
        let Some((slot, consistent_lsn, snapshot)) = parse_slot_row(&row) else {
            drop(stdin);
            psql.wait().await?;
            return Err(Error::Invalid(format!(
                "creating slot {slot} returned no snapshot: {row:?}"
            )));
        };
        // psql waits for more input as long as its stdin stays open; `release` closes it.
        psql.child.stdin = Some(stdin);
        Ok(ExportedSnapshot {
            slot,
            consistent_lsn,
            snapshot,
            psql,
        })
    }

    /// Ends the replication session: the snapshot goes away; a temporary slot is dropped.
    pub async fn release(mut self) -> Result<()> {
        drop(self.psql.child.stdin.take());
        self.psql.wait().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_per_server_version() {
        assert_eq!(
            create_slot_command("pgincr", false, 150004),
            "CREATE_REPLICATION_SLOT pgincr LOGICAL decoder_sql (SNAPSHOT 'export');"
        );
        assert_eq!(
            create_slot_command("Base 1", true, 140000),
            "CREATE_REPLICATION_SLOT \"Base 1\" TEMPORARY LOGICAL decoder_sql EXPORT_SNAPSHOT;"
        );
    }

    #[test]
    fn slot_row() {
        let (slot, lsn, snap) =
            parse_slot_row("s1|0/1551EA8|00000003-00000004-1|decoder_sql\n").unwrap();
        assert_eq!(
            (slot.as_str(), lsn.to_string().as_str(), snap.as_str()),
            ("s1", "0/1551EA8", "00000003-00000004-1")
        );
        assert!(parse_slot_row("").is_none());
        assert!(parse_slot_row("s1|0/1|").is_none());
    }
}
