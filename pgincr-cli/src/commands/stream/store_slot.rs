//! `stream --confirm-after store`: the server keeps every change the object store does not
//! hold yet, so that losing the spool (and the host it is on) loses nothing.
//!
//! pg_recvlogical confirms what it has fsync'd into the spool, and the server then lets the
//! WAL before it go. A second logical slot, `<slot>_stored`, never streamed from, is advanced
//! (`pg_replication_slot_advance`) only past segments registered in the store's manifest. It
//! holds the WAL from the last upload on. When a run finds the main slot confirmed past what
//! the repository holds (the spool is gone), the main slot is copied again from the store
//! slot (`pg_copy_logical_replication_slot`, which keeps its confirmed position) and the
//! server sends the changes since the last upload once more.

use super::super::init::slot_state;
use crate::cli::ConfirmAfter;
use crate::pg::Endpoint;
use crate::repo::{Manifest, Repo};
use crate::{Error, Result};
use sqlgen::lsn::Lsn;
use std::time::{Duration, Instant};
use tokio_postgres::Client;

/// PostgreSQL's longest name (NAMEDATALEN - 1).
const MAX_SLOT_NAME: usize = 63;
/// After a failed advance (server away), the next try waits this long.
const ADVANCE_RETRY: Duration = Duration::from_secs(10);

/// The store slot's name for a repository's slot.
pub fn store_slot_name(slot: &str) -> String {
    format!("{slot}_stored")
}

/// What a run does about the main slot, given the positions it finds.
#[derive(Debug, PartialEq, Eq)]
pub enum MainSlot {
    /// Nothing is missing from the repository: stream from the main slot as it is.
    Keep,
    /// The main slot confirmed changes the repository lost (or is gone), and the store slot
    /// still has them: make the main slot a copy of the store slot.
    CopyFromStoreSlot,
}

/// Decides from the main slot's confirmed position (None: the slot is gone), the store slot's,
/// and the end of what the repository holds. A store slot ahead of the repository cannot help
/// (its changes were lost too): that stays a gap for the continuity check to report.
pub fn plan(main_confirmed: Option<Lsn>, stored_confirmed: Lsn, held: Lsn) -> MainSlot {
    match main_confirmed {
        None => MainSlot::CopyFromStoreSlot,
        Some(main) if main > held && stored_confirmed <= held => MainSlot::CopyFromStoreSlot,
        Some(_) => MainSlot::Keep,
    }
}

/// The store slot of a running stream.
pub struct StoreSlot {
    source: Endpoint,
    name: String,
    /// Its confirmed position as last set.
    advanced: Lsn,
    retry_at: Option<Instant>,
}

impl StoreSlot {
    /// Run before the main slot is checked: with the store slot in effect, creates it (a copy
    /// of the main slot) or, when the main slot is gone or ahead of what the repository holds,
    /// makes the main slot a copy of it. `held` is the end of the complete transactions in
    /// the repository (spool and store).
    pub async fn prepare(
        source: &Endpoint,
        client: &Client,
        repo: &Repo,
        manifest: &Manifest,
        asked: Option<ConfirmAfter>,
        held: Lsn,
    ) -> Result<Option<StoreSlot>> {
        let slot = &manifest.source.slot;
        let name = store_slot_name(slot);
        let stored = slot_state(client, &name).await?;
        // In effect when asked for, or kept from an earlier run (its existence is the
        // setting); `--confirm-after spool` drops it.
        match (asked, &stored) {
            (Some(ConfirmAfter::Store), _) | (None, Some(_)) => {}
            (None, None) => return Ok(None),
            (Some(ConfirmAfter::Spool), stored) => {
                if stored.is_some() {
                    tracing::info!(
                        "dropping slot {name}: changes are confirmed once spooled \
                         (--confirm-after spool)"
                    );
                    client
                        .execute("SELECT pg_catalog.pg_drop_replication_slot($1)", &[&name])
                        .await?;
                }
                return Ok(None);
            }
        }
        if repo.remote().is_none() {
            return Err(Error::Invalid(
                "--confirm-after store applies to object-storage repositories: a local \
                 repository is its own spool"
                    .into(),
            ));
        }
        if name.len() > MAX_SLOT_NAME {
            return Err(Error::Invalid(format!(
                "slot {slot} is too long for its store slot {name} (at most {MAX_SLOT_NAME} characters)"
            )));
        }
        let main = slot_state(client, slot).await?;
        let stored = match stored {
            Some(s) if !s.is_decoder_sql_in(&manifest.source.database) => {
                return Err(Error::Repository(format!(
                    "slot {name} uses plugin {} on database {}, not decoder_sql on {}: it is \
                     not this repository's store slot; drop or rename it",
                    s.plugin, s.database, manifest.source.database
                )));
            }
            Some(s) => s,
            None => {
                let Some(main) = main else {
                    // Nothing to copy: the main slot's check reports it.
                    return Ok(None);
                };
                copy_slot(client, slot, &name).await?;
                let at = main.confirmed_flush_lsn.unwrap_or(held);
                if at > held {
                    tracing::warn!(
                        "created slot {name} at {at}; changes up to {held} are in the \
                         repository, those in between only in the spool until they are uploaded"
                    );
                } else {
                    tracing::info!(
                        "created slot {name} at {at}: changes are confirmed once uploaded"
                    );
                }
                return Ok(Some(StoreSlot::new(source, name, at)));
            }
        };
        let stored_confirmed = stored
            .confirmed_flush_lsn
            .ok_or_else(|| Error::Repository(format!("slot {name} has no confirmed position")))?;
        let main_position = main.as_ref().map(|m| m.confirmed_flush_lsn.unwrap_or(held));
        if plan(main_position, stored_confirmed, held) == MainSlot::CopyFromStoreSlot {
            match main_position {
                Some(c) => tracing::warn!(
                    "slot {slot} confirmed changes up to {c}, but this repository holds them \
                     only up to {held} (was the spool lost?): receiving them again from \
                     {stored_confirmed}, where slot {name} kept them"
                ),
                None => tracing::warn!(
                    "slot {slot} is gone: creating it again from slot {name} at {stored_confirmed}"
                ),
            }
            if main.is_some() {
                client
                    .execute("SELECT pg_catalog.pg_drop_replication_slot($1)", &[slot])
                    .await?;
            }
            copy_slot(client, &name, slot).await?;
        }
        Ok(Some(StoreSlot::new(source, name, stored_confirmed)))
    }

    fn new(source: &Endpoint, name: String, advanced: Lsn) -> Self {
        StoreSlot {
            source: source.clone(),
            name,
            advanced,
            retry_at: None,
        }
    }

    /// Moves the store slot up to `stored`, the end of the last segment registered in the
    /// store's manifest. A failure (server away) is retried later; until then the server
    /// keeps more WAL, which is the safe side.
    pub async fn advance(&mut self, stored: Lsn) {
        if stored <= self.advanced || self.retry_at.is_some_and(|at| Instant::now() < at) {
            return;
        }
        let advanced = async {
            let client = self.source.connect().await?;
            client
                .execute(
                    "SELECT pg_catalog.pg_replication_slot_advance($1, $2::text::pg_catalog.pg_lsn)",
                    &[&self.name, &stored.to_string()],
                )
                .await?;
            Ok::<_, Error>(())
        }
        .await;
        match advanced {
            Ok(()) => {
                tracing::debug!("slot {} advanced to {stored}", self.name);
                self.advanced = stored;
                self.retry_at = None;
            }
            Err(e) => {
                tracing::warn!("could not advance slot {} to {stored}: {e}", self.name);
                self.retry_at = Some(Instant::now() + ADVANCE_RETRY);
            }
        }
    }
}

/// Creates `target` as a copy of the logical slot `from`, at `from`'s confirmed position.
async fn copy_slot(client: &Client, from: &str, target: &str) -> Result<()> {
    client
        .execute(
            "SELECT pg_catalog.pg_copy_logical_replication_slot($1, $2)",
            &[&from, &target],
        )
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::tests::lsn;
    use super::*;

    #[test]
    fn the_main_slot_is_copied_again_only_when_the_store_slot_can_fill_the_gap() {
        // Confirmed no further than the repository holds: nothing to do.
        assert_eq!(
            plan(Some(lsn("0/500")), lsn("0/300"), lsn("0/500")),
            MainSlot::Keep
        );
        assert_eq!(
            plan(Some(lsn("0/400")), lsn("0/300"), lsn("0/500")),
            MainSlot::Keep
        );
        // The spool is gone with what the main slot confirmed; the store slot is behind.
        assert_eq!(
            plan(Some(lsn("0/900")), lsn("0/300"), lsn("0/500")),
            MainSlot::CopyFromStoreSlot
        );
        assert_eq!(
            plan(Some(lsn("0/900")), lsn("0/500"), lsn("0/500")),
            MainSlot::CopyFromStoreSlot
        );
        // The store slot is ahead of the repository too: it cannot help.
        assert_eq!(
            plan(Some(lsn("0/900")), lsn("0/600"), lsn("0/500")),
            MainSlot::Keep
        );
        // The main slot is gone.
        assert_eq!(
            plan(None, lsn("0/300"), lsn("0/500")),
            MainSlot::CopyFromStoreSlot
        );
    }

    #[test]
    fn store_slots_are_named_after_the_slot() {
        assert_eq!(store_slot_name("pgincr"), "pgincr_stored");
    }
}
