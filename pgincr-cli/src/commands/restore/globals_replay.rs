//! Roles and tablespaces in step with the replay.
//!
//! Before the replay, every globals snapshot the stream took after the base is applied, so
//! that each role the stream's statements name exists, also one created where the capture
//! cannot see (in another database). During the replay:
//!
//! * each snapshot is applied again where the stream took it, before the first transaction
//!   that ended after it, so a role's attributes, memberships and settings follow the
//!   source's timeline instead of being the newest snapshot's from the start;
//! * where the stream creates a role that this restore made earlier from a later snapshot,
//!   the stream's `CREATE ROLE` (written to run only where the role is missing) is skipped on
//!   the target, so the role is given back the attributes of that `CREATE` (a role created
//!   as a superuser, given an object only a superuser may own, then made an ordinary role).
//!
//! Roles the target had before the restore are never touched, as in the base's globals.

use super::base;
use crate::globals::GlobalsSnapshot;
use crate::pg::Endpoint;
use crate::repo::Repo;
use crate::{Error, Result};
use sqlgen::lsn::Lsn;
use sqlgen::role::{CreateRoleBlock, alter_role_to, create_role_block, created_role_attributes};
use std::collections::VecDeque;
use tokio_postgres::Client;

pub struct GlobalsReplay {
    repo: Repo,
    pending: VecDeque<GlobalsSnapshot>,
    /// Roles the target had before the restore.
    leave_alone: Vec<String>,
    tablespace_map: Vec<(String, String)>,
    target: Endpoint,
    server_version_num: i32,
    /// A connection of its own: the replay's session may be inside a transaction, as another
    /// role, when a role is reset.
    side: Option<Client>,
    /// The `CREATE ROLE` block being read, and its statement so far.
    block: Option<(CreateRoleBlock, String)>,
    /// Snapshots applied again during the replay.
    pub replayed: usize,
    /// Roles given back the attributes of their `CREATE ROLE`.
    pub reset: Vec<String>,
}

impl GlobalsReplay {
    pub fn new(
        repo: Repo,
        snapshots: Vec<GlobalsSnapshot>,
        leave_alone: Vec<String>,
        tablespace_map: Vec<(String, String)>,
        target: Endpoint,
        server_version_num: i32,
    ) -> Self {
        GlobalsReplay {
            repo,
            pending: snapshots.into(),
            leave_alone,
            tablespace_map,
            target,
            server_version_num,
            side: None,
            block: None,
            replayed: 0,
            reset: Vec::new(),
        }
    }

    /// Whether a snapshot was taken before the transaction ending at `end_lsn` committed.
    /// Its position was read before it was dumped: a transaction ending after it may be in
    /// it too, and applying that one again after the snapshot changes nothing.
    pub fn due_before(&self, end_lsn: Lsn) -> bool {
        self.pending.front().is_some_and(|s| s.lsn < end_lsn)
    }

    /// Applies the snapshots taken before `end_lsn`, or all that are left with `None`.
    /// Everything replayed before must be committed.
    pub async fn apply_due(&mut self, end_lsn: Option<Lsn>) -> Result<()> {
        while let Some(snapshot) = self
            .pending
            .front()
            .filter(|s| end_lsn.is_none_or(|end| s.lsn < end))
            .cloned()
        {
            self.pending.pop_front();
            self.connect_side().await?;
            let side = self.side.as_ref().expect("connected");
            base::restore_globals(
                &self.repo,
                &[&snapshot.file],
                &self.leave_alone,
                &self.tablespace_map,
                &self.target,
                side,
                self.server_version_num,
            )
            .await?;
            tracing::info!(
                "roles and tablespaces as of {} ({}) applied again at their place in the stream",
                snapshot.lsn,
                snapshot.taken
            );
            self.replayed += 1;
        }
        Ok(())
    }

    /// A transaction begins: a block left unfinished by the one before (left out when it
    /// failed) is forgotten.
    pub fn transaction_begins(&mut self) {
        self.block = None;
    }

    /// Follows a line of a transaction being applied, before it is sent. At the end of the
    /// stream's `CREATE ROLE` of a role this restore made, the role gets the attributes of
    /// that statement (the statement itself finds the role there and does nothing).
    pub async fn watch_line(&mut self, line: &str, starts_statement: bool) -> Result<()> {
        match &mut self.block {
            None => {
                if starts_statement
                    && let Some(block) = create_role_block(line)
                    && !self.leave_alone.contains(&block.role)
                {
                    self.block = Some((block, String::new()));
                }
                Ok(())
            }
            Some((block, text)) if line != block.end_line => {
                text.push_str(line);
                text.push('\n');
                Ok(())
            }
            Some(_) => {
                let (block, text) = self.block.take().expect("matched");
                self.reset_role(&block.role, &text).await
            }
        }
    }

    async fn reset_role(&mut self, role: &str, statement: &str) -> Result<()> {
        self.connect_side().await?;
        let side = self.side.as_ref().expect("connected");
        let exists = side
            .query_opt(
                "SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = $1",
                &[&role],
            )
            .await?
            .is_some();
        if !exists {
            return Ok(()); // the stream's statement creates it as it was created
        }
        let Some(attrs) = created_role_attributes(statement.trim_end(), role) else {
            tracing::warn!(
                "role \"{role}\" exists already (from a later globals snapshot) where the stream \
                 creates it, and the attributes of its CREATE ROLE could not be read; it keeps \
                 the snapshot's until the stream or a snapshot changes them: {}",
                statement.trim_end()
            );
            return Ok(());
        };
        match side.batch_execute(&alter_role_to(role, &attrs)).await {
            Ok(()) => {
                tracing::info!(
                    "role \"{role}\" (made from a later globals snapshot) given the attributes of \
                     its CREATE ROLE in the stream"
                );
                self.reset.push(role.to_owned());
            }
            Err(e) => tracing::warn!(
                "role \"{role}\" could not be given the attributes of its CREATE ROLE in the \
                 stream; it keeps those of a later globals snapshot: {}",
                crate::error::describe_pg_error(&e)
            ),
        }
        Ok(())
    }

    async fn connect_side(&mut self) -> Result<()> {
        if self.side.is_none() {
            let client = self.target.connect().await?;
            // The replay's open transaction may hold a lock on the role; never wait forever.
            client
                .batch_execute("SET lock_timeout = '10s'")
                .await
                .map_err(Error::from)?;
            self.side = Some(client);
        }
        Ok(())
    }
}
