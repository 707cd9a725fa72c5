//! A mixed workload decoded with pg_recvlogical and replayed with psql into an empty copy of
//! the schema gives exactly the source's table contents.

use e2e::TestCluster;
use e2e::decode::{database_contents, recvlogical, replay_file};

const SCHEMA: &str = "
CREATE SCHEMA app;
CREATE TABLE app.accounts (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, owner text NOT NULL, balance numeric(14,2) NOT NULL DEFAULT 0);
CREATE TABLE app.transfers (id serial PRIMARY KEY, src bigint REFERENCES app.accounts, dst bigint REFERENCES app.accounts, amount numeric(14,2), at timestamptz DEFAULT now());
CREATE TABLE app.events (kind text, payload jsonb, n int);
ALTER TABLE app.events REPLICA IDENTITY FULL;
CREATE TABLE app.audit (id int PRIMARY KEY, note text);
CREATE FUNCTION app.audit_trigger() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN INSERT INTO app.audit VALUES ((SELECT coalesce(max(id), 0) + 1 FROM app.audit), TG_OP || ' ' || NEW.id); RETURN NEW; END $$;
CREATE TRIGGER accounts_audit AFTER INSERT OR UPDATE ON app.accounts FOR EACH ROW EXECUTE FUNCTION app.audit_trigger();
";

const WORKLOAD: &str = "
INSERT INTO app.accounts (owner, balance) SELECT 'owner ' || g, g * 10 FROM generate_series(1, 200) g;
INSERT INTO app.events SELECT 'k' || (g % 3), jsonb_build_object('g', g), g % 5 FROM generate_series(1, 100) g;
BEGIN;
  UPDATE app.accounts SET balance = balance - 5 WHERE id % 7 = 0;
  SAVEPOINT a;
  DELETE FROM app.accounts WHERE id = 3;
  ROLLBACK TO SAVEPOINT a;
  INSERT INTO app.transfers (src, dst, amount) SELECT id, id + 1, 5 FROM app.accounts WHERE id % 7 = 0 AND id < 200;
COMMIT;
BEGIN; DELETE FROM app.events; ROLLBACK;
DELETE FROM app.events WHERE n = 0;
UPDATE app.events SET payload = payload || '{\"x\": true}' WHERE kind = 'k1';
UPDATE app.accounts SET owner = owner || ' (closed)' WHERE id > 190;
DELETE FROM app.transfers WHERE id % 2 = 0;
TRUNCATE app.audit;
INSERT INTO app.audit VALUES (1000, E'multi\\nline note');
";

#[tokio::test]
async fn workload_replays_to_identical_contents() {
    let cluster = TestCluster::start();
    let src = cluster.connect("postgres").await;
    src.batch_execute(SCHEMA).await.unwrap();
    src.batch_execute("CREATE DATABASE restored").await.unwrap();
    let dst = cluster.connect("restored").await;
    dst.batch_execute(SCHEMA).await.unwrap();

    recvlogical(
        &cluster,
        "postgres",
        &["-S", "backup", "-P", "decoder_sql", "--create-slot"],
    );
    src.batch_execute(WORKLOAD).await.unwrap();
    let end: String = src
        .query_one("SELECT pg_current_wal_flush_lsn()::text", &[])
        .await
        .unwrap()
        .get(0);

    let file = cluster.scratch_dir("stream").join("changes.sql");
    let file_arg = file.to_str().unwrap();
    recvlogical(
        &cluster,
        "postgres",
        &[
            "-S",
            "backup",
            "--start",
            "--no-loop",
            "-E",
            &end,
            "-o",
            "include_annotations",
            "-o",
            "skip_empty_xacts",
            "-f",
            file_arg,
        ],
    );

    // Applied as logical replication applies: triggers already produced their rows at the source.
    let out = replay_file(&cluster, "restored", &file);
    assert!(
        out.status.success(),
        "replay: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    let (a, b) = (database_contents(&src).await, database_contents(&dst).await);
    assert!(a.contains("app.accounts: 200 rows"), "{a}");
    assert_eq!(a, b);
}
