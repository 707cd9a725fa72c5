//! Sequence values after a restore.

use crate::Result;
use tokio_postgres::Client;

/// Sequences owned by a column end up at least at the column's maximum, whatever the
/// stream's snapshots said.
pub async fn sync_owned_sequences(client: &Client) -> Result<()> {
    client
        .batch_execute(
            r#"DO $sync$
DECLARE r record; m bigint; cur bigint;
BEGIN
  FOR r IN
    SELECT s.oid::regclass AS seq, d.refobjid::regclass AS tbl, a.attname
      FROM pg_catalog.pg_class s
      JOIN pg_catalog.pg_sequence ps ON ps.seqrelid = s.oid
      JOIN pg_catalog.pg_depend d ON d.classid = 'pg_catalog.pg_class'::regclass AND d.objid = s.oid
       AND d.refclassid = 'pg_catalog.pg_class'::regclass AND d.deptype IN ('a', 'i')
      JOIN pg_catalog.pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
     WHERE s.relkind = 'S' AND ps.seqincrement > 0
  LOOP
    BEGIN
      EXECUTE pg_catalog.format('SELECT max(%I)::bigint FROM %s', r.attname, r.tbl) INTO m;
      EXECUTE pg_catalog.format('SELECT last_value FROM %s', r.seq) INTO cur;
      IF m IS NOT NULL AND m >= cur THEN
        PERFORM pg_catalog.setval(r.seq, m, true);
      END IF;
    EXCEPTION WHEN others THEN
      RAISE WARNING 'could not sync sequence %: %', r.seq, SQLERRM;
    END;
  END LOOP;
END
$sync$;"#,
        )
        .await?;
    Ok(())
}
