//! `pgincr origins`: the replication origins that restores keep in a target cluster (one per
//! restore still resumable, named `pgincr_<database oid>_<base id>`), and the clean-up of
//! those whose database is gone. Origins are cluster-wide and limited by
//! `max_replication_slots`, so leftovers eventually block new restores.

use super::restore::origin;
use crate::Result;
use crate::cli::OriginsArgs;
use crate::pg::Endpoint;
use std::path::PathBuf;

pub async fn run(args: OriginsArgs, bindir: Option<PathBuf>) -> Result<()> {
    let client = Endpoint::new(&args.target, bindir)?.connect().await?;
    if args.drop_orphaned {
        for name in origin::drop_orphaned(&client).await? {
            println!("dropped {name} (its database no longer exists)");
        }
    }
    let rows = client
        .query(
            "SELECT o.roname,
                    coalesce(d.datname::text, '(database dropped)'),
                    coalesce(pg_catalog.pg_replication_origin_progress(o.roname, false)::text, '-')
               FROM pg_catalog.pg_replication_origin o
               LEFT JOIN pg_catalog.pg_database d
                      ON d.oid = substring(o.roname from '^pgincr_([0-9]+)_')::oid
              WHERE o.roname ~ '^pgincr_[0-9]+_'
              ORDER BY 1",
            &[],
        )
        .await?;
    if rows.is_empty() {
        println!("no restore origins in this cluster");
    }
    for row in rows {
        let (name, database, progress): (String, String, String) =
            (row.get(0), row.get(1), row.get(2));
        println!("{name}  database {database}  applied up to {progress}");
    }
    Ok(())
}
