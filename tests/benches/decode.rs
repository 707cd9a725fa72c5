//! Decode-time benchmark: the same WAL decoded by decoder_sql, test_decoding, wal2json and
//! pgoutput in one run, on one throwaway cluster. Prints per-plugin times and ratios.
//!
//!     cargo bench -p e2e --bench decode              # default: 100k rows
//!     BENCH_ROWS=500000 cargo bench -p e2e --bench decode
//!
//! Each plugin decodes the identical WAL range through pg_logical_slot_peek_(binary_)changes,
//! so WAL reading, reorder buffering and result materialisation are the same for all; rounds
//! interleave the plugins and the best round counts.

use e2e::TestCluster;
use std::time::{Duration, Instant};

struct Plugin {
    name: &'static str,
    slot: &'static str,
    query: &'static str,
}

const PLUGINS: &[Plugin] = &[
    Plugin {
        name: "decoder_sql",
        slot: "b_decoder_sql",
        query: "SELECT count(*), sum(octet_length(data))::bigint FROM pg_logical_slot_peek_changes('b_decoder_sql', NULL, NULL, 'include_transaction', 'on')",
    },
    Plugin {
        name: "test_decoding",
        slot: "b_test_decoding",
        query: "SELECT count(*), sum(octet_length(data))::bigint FROM pg_logical_slot_peek_changes('b_test_decoding', NULL, NULL)",
    },
    Plugin {
        name: "wal2json",
        slot: "b_wal2json",
        query: "SELECT count(*), sum(octet_length(data))::bigint FROM pg_logical_slot_peek_changes('b_wal2json', NULL, NULL, 'format-version', '2')",
    },
    Plugin {
        name: "pgoutput",
        slot: "b_pgoutput",
        query: "SELECT count(*), sum(octet_length(data))::bigint FROM pg_logical_slot_peek_binary_changes('b_pgoutput', NULL, NULL, 'proto_version', '1', 'publication_names', 'bench')",
    },
];

const ROUNDS: usize = 5;

#[tokio::main]
async fn main() {
    let rows: i64 = std::env::var("BENCH_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let cluster = TestCluster::start_with(&[
        "shared_buffers = 256MB",
        "logical_decoding_work_mem = 256MB",
    ]);
    let db = cluster.connect("postgres").await;
    db.batch_execute(
        "CREATE TABLE orders (id bigint PRIMARY KEY, customer int NOT NULL, name text, amount numeric(12,2),
                              created timestamptz, paid boolean, tags text[], payload jsonb);
         CREATE PUBLICATION bench FOR ALL TABLES;",
    )
    .await
    .unwrap();
    for p in PLUGINS {
        db.execute(
            "SELECT 'init' FROM pg_create_logical_replication_slot($1, $2)",
            &[&p.slot, &p.name],
        )
        .await
        .unwrap_or_else(|e| panic!("create {} slot: {e}", p.name));
    }
    let batch = 10_000i64;
    let mut start = 1;
    while start <= rows {
        let end = (start + batch - 1).min(rows);
        db.execute(
            "INSERT INTO orders SELECT g, g % 1000, 'customer ' || g, g * 1.25, '2024-01-01'::timestamptz + g * interval '1 second',
                    g % 2 = 0, ARRAY['a', 'b' || g], jsonb_build_object('g', g, 'k', 'v')
             FROM generate_series($1::bigint, $2::bigint) g",
            &[&start, &end],
        )
        .await
        .unwrap();
        start = end + 1;
    }
    db.execute(
        "UPDATE orders SET amount = amount + 1, paid = NOT paid WHERE id % 2 = 0",
        &[],
    )
    .await
    .unwrap();
    db.execute("DELETE FROM orders WHERE id % 4 = 0", &[])
        .await
        .unwrap();
    let changes = rows + rows / 2 + rows / 4;

    println!(
        "decoding {changes} changes ({rows} inserts, {} updates, {} deletes), best of {ROUNDS} rounds",
        rows / 2,
        rows / 4
    );
    let mut best = vec![Duration::MAX; PLUGINS.len()];
    let mut sizes = vec![(0i64, 0i64); PLUGINS.len()];
    for _ in 0..ROUNDS {
        for (i, p) in PLUGINS.iter().enumerate() {
            let t = Instant::now();
            let row = db
                .query_one(p.query, &[])
                .await
                .unwrap_or_else(|e| panic!("{}: {e}", p.name));
            let elapsed = t.elapsed();
            best[i] = best[i].min(elapsed);
            let bytes: Option<i64> = row.get(1);
            sizes[i] = (row.get(0), bytes.unwrap_or(0));
        }
    }
    let by_name = |n: &str| PLUGINS.iter().position(|p| p.name == n).unwrap();
    let pgoutput = best[by_name("pgoutput")].as_secs_f64();
    let test_decoding = best[by_name("test_decoding")].as_secs_f64();
    println!(
        "{:<14} {:>10} {:>10} {:>12} {:>12} {:>14}",
        "plugin", "ms", "messages", "output MB", "vs pgoutput", "vs test_decoding"
    );
    for (i, p) in PLUGINS.iter().enumerate() {
        let s = best[i].as_secs_f64();
        println!(
            "{:<14} {:>10.1} {:>10} {:>12.1} {:>11.2}x {:>13.2}x",
            p.name,
            s * 1000.0,
            sizes[i].0,
            sizes[i].1 as f64 / 1e6,
            s / pgoutput,
            s / test_decoding
        );
    }
}
