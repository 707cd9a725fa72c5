//! The plugin loads both through the SQL interface and through pg_recvlogical.

use e2e::TestCluster;
use e2e::decode::{create_slot, get_changes, recvlogical};
use std::fs;

#[tokio::test]
async fn sql_interface_decodes_an_insert() {
    let cluster = TestCluster::start();
    let db = cluster.connect("postgres").await;
    db.batch_execute("CREATE TABLE t (id int PRIMARY KEY, v text)")
        .await
        .unwrap();
    create_slot(&db, "s").await;
    db.batch_execute("INSERT INTO t VALUES (1, 'one')")
        .await
        .unwrap();
    let out = get_changes(&db, "s", &[]).await;
    assert_eq!(out, ["INSERT INTO public.t (id, v) VALUES (1, 'one');"]);
}

#[tokio::test]
async fn pg_recvlogical_streams_to_a_file() {
    let cluster = TestCluster::start();
    let db = cluster.connect("postgres").await;
    db.batch_execute("CREATE TABLE t (id int PRIMARY KEY)")
        .await
        .unwrap();
    recvlogical(
        &cluster,
        "postgres",
        &["-S", "rl", "-P", "decoder_sql", "--create-slot"],
    );
    db.batch_execute("INSERT INTO t VALUES (1), (2)")
        .await
        .unwrap();
    let end: String = db
        .query_one("SELECT pg_current_wal_lsn()::text", &[])
        .await
        .unwrap()
        .get(0);
    let file = cluster.scratch_dir("out").join("stream.sql");
    let file_arg = file.to_str().unwrap();
    recvlogical(
        &cluster,
        "postgres",
        &[
            "-S",
            "rl",
            "--start",
            "--no-loop",
            "-o",
            "include_transaction",
            "-E",
            &end,
            "-f",
            file_arg,
        ],
    );
    assert_eq!(
        fs::read_to_string(&file).unwrap(),
        "BEGIN;\nINSERT INTO public.t (id) VALUES (1);\nINSERT INTO public.t (id) VALUES (2);\nCOMMIT;\n"
    );
}
