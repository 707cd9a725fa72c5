//! Decode-time benchmark: the same WAL decoded by decoder_sql, test_decoding, wal2json and
//! pgoutput in one run, on one throwaway cluster. Prints per-plugin times and ratios.
//!
//!     cargo bench -p e2e --bench decode              # default: 100k rows
//!     BENCH_ROWS=500000 cargo bench -p e2e --bench decode
//!     BENCH_IDENTITY=full cargo bench -p e2e --bench decode   # orders has REPLICA IDENTITY FULL
//!     DECODER_SQL_BASELINE_LIB=/path/libdecoder_sql.so cargo bench -p e2e --bench decode
//!
//! With `DECODER_SQL_BASELINE_LIB`, a second decoder_sql build (for example an older commit's)
//! is loaded as the output plugin `decoder_sql_base` and decodes the same WAL in the same
//! rounds. Every plugin decodes on its own connection, so the two builds never share a backend.
//!
//! Each plugin decodes the identical WAL range through pg_logical_slot_peek_(binary_)changes,
//! so WAL reading, reorder buffering and result materialisation are the same for all; rounds
//! interleave the plugins and the best round counts.

use e2e::TestCluster;
use std::time::{Duration, Instant};

#[derive(Clone)]
struct Plugin {
    name: &'static str,
    slot: &'static str,
    /// SQL-interface decode of the whole range (not consuming it).
    query: &'static str,
    /// The same options for pg_recvlogical.
    stream_options: &'static [&'static str],
}

const BASELINE: Plugin = Plugin {
    name: "decoder_sql_base",
    slot: "b_decoder_sql_base",
    query: "SELECT count(*), sum(octet_length(data))::bigint FROM pg_logical_slot_peek_changes('b_decoder_sql_base', NULL, NULL, 'include_transaction', 'on')",
    stream_options: &["include_transaction=on"],
};

const PLUGINS: &[Plugin] = &[
    Plugin {
        name: "decoder_sql",
        slot: "b_decoder_sql",
        query: "SELECT count(*), sum(octet_length(data))::bigint FROM pg_logical_slot_peek_changes('b_decoder_sql', NULL, NULL, 'include_transaction', 'on')",
        stream_options: &["include_transaction=on"],
    },
    Plugin {
        name: "test_decoding",
        slot: "b_test_decoding",
        query: "SELECT count(*), sum(octet_length(data))::bigint FROM pg_logical_slot_peek_changes('b_test_decoding', NULL, NULL)",
        stream_options: &[],
    },
    Plugin {
        name: "wal2json",
        slot: "b_wal2json",
        query: "SELECT count(*), sum(octet_length(data))::bigint FROM pg_logical_slot_peek_changes('b_wal2json', NULL, NULL, 'format-version', '2')",
        stream_options: &["format-version=2"],
    },
    Plugin {
        name: "pgoutput",
        slot: "b_pgoutput",
        query: "SELECT count(*), sum(octet_length(data))::bigint FROM pg_logical_slot_peek_binary_changes('b_pgoutput', NULL, NULL, 'proto_version', '1', 'publication_names', 'bench')",
        stream_options: &["proto_version=1", "publication_names=bench"],
    },
];

const ROUNDS: usize = 5;
/// Streaming consumes a slot, so each streaming round needs its own slot per plugin.
const STREAM_ROUNDS: usize = 3;

#[tokio::main]
async fn main() {
    let rows: i64 = std::env::var("BENCH_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let baseline = std::env::var_os("DECODER_SQL_BASELINE_LIB");
    let full_identity = std::env::var("BENCH_IDENTITY").is_ok_and(|v| v == "full");
    let mut plugins: Vec<Plugin> = PLUGINS.to_vec();
    let mut conf = vec![
        "shared_buffers = 256MB".to_owned(),
        "logical_decoding_work_mem = 256MB".to_owned(),
        // A slot per plugin plus one per plugin and streaming round.
        "max_replication_slots = 32".to_owned(),
    ];
    if baseline.is_some() {
        plugins.insert(1, BASELINE);
        if e2e::cluster::restricts_output_plugins(&e2e::cluster::pg_bindir()) {
            conf.push(
                "output_plugin_libraries = 'pgoutput, test_decoding, wal2json, decoder_sql, decoder_sql_base'"
                    .to_owned(),
            );
        }
    }
    let conf: Vec<&str> = conf.iter().map(String::as_str).collect();
    let cluster = TestCluster::start_with(&conf);
    if let Some(lib) = &baseline {
        // Next to the fresh library, on the cluster's dynamic_library_path.
        let dir = cluster.data_dir().parent().unwrap().join("lib");
        std::fs::copy(lib, dir.join("decoder_sql_base.so")).expect("copy the baseline library");
    }
    let db = cluster.connect("postgres").await;
    db.batch_execute(
        "CREATE TABLE orders (id bigint PRIMARY KEY, customer int NOT NULL, name text, amount numeric(12,2),
                              created timestamptz, paid boolean, tags text[], payload jsonb);
         CREATE PUBLICATION bench FOR ALL TABLES;",
    )
    .await
    .unwrap();
    if full_identity {
        db.batch_execute("ALTER TABLE orders REPLICA IDENTITY FULL")
            .await
            .unwrap();
    }
    // One connection per plugin: two decoder_sql builds must not load into one backend.
    let mut conns = Vec::new();
    for _ in &plugins {
        conns.push(cluster.connect("postgres").await);
    }
    for (p, db) in plugins.iter().zip(&conns) {
        db.execute(
            "SELECT 'init' FROM pg_create_logical_replication_slot($1, $2)",
            &[&p.slot, &p.name],
        )
        .await
        .unwrap_or_else(|e| panic!("create {} slot: {e}", p.name));
        for round in 0..STREAM_ROUNDS {
            let slot = format!("{}_{round}", p.slot);
            db.execute(
                "SELECT 'init' FROM pg_create_logical_replication_slot($1, $2)",
                &[&slot, &p.name],
            )
            .await
            .unwrap();
        }
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
        "decoding {changes} changes ({rows} inserts, {} updates, {} deletes; replica identity {}), best of {ROUNDS} rounds",
        rows / 2,
        rows / 4,
        if full_identity { "FULL" } else { "primary key" }
    );
    let mut best = vec![Duration::MAX; plugins.len()];
    let mut sizes = vec![(0i64, 0i64); plugins.len()];
    for _ in 0..ROUNDS {
        for (i, p) in plugins.iter().enumerate() {
            let t = Instant::now();
            let row = conns[i]
                .query_one(p.query, &[])
                .await
                .unwrap_or_else(|e| panic!("{}: {e}", p.name));
            let elapsed = t.elapsed();
            best[i] = best[i].min(elapsed);
            let bytes: Option<i64> = row.get(1);
            sizes[i] = (row.get(0), bytes.unwrap_or(0));
        }
    }
    let end_lsn: String = db
        .query_one("SELECT pg_current_wal_flush_lsn()::text", &[])
        .await
        .unwrap()
        .get(0);
    let out_file = cluster.scratch_dir("bench").join("stream.out");
    let mut streamed = vec![Duration::MAX; plugins.len()];
    let mut streamed_bytes = vec![0u64; plugins.len()];
    // Slots are released by their connections' sessions before pg_recvlogical uses them.
    drop(conns);
    for round in 0..STREAM_ROUNDS {
        for (i, p) in plugins.iter().enumerate() {
            let slot = format!("{}_{round}", p.slot);
            let _ = std::fs::remove_file(&out_file);
            let mut cmd = cluster.client_command("pg_recvlogical");
            cmd.args([
                "-d",
                "postgres",
                "-S",
                &slot,
                "--start",
                "--no-loop",
                "-F",
                "0",
                "-E",
                &end_lsn,
                "-f",
            ])
            .arg(&out_file);
            for o in p.stream_options {
                cmd.args(["-o", o]);
            }
            let t = Instant::now();
            let out = cmd.output().unwrap();
            let elapsed = t.elapsed();
            assert!(
                out.status.success(),
                "{}: {}",
                p.name,
                String::from_utf8_lossy(&out.stderr)
            );
            streamed[i] = streamed[i].min(elapsed);
            streamed_bytes[i] = std::fs::metadata(&out_file).map(|m| m.len()).unwrap_or(0);
        }
    }

    println!("\nSQL interface: pg_logical_slot_peek_(binary_)changes, best of {ROUNDS}");
    print_table(
        &plugins,
        &best,
        &sizes.iter().map(|s| s.1 as u64).collect::<Vec<_>>(),
    );
    println!("\nstreaming: pg_recvlogical --start -E <end> to a file, best of {STREAM_ROUNDS}");
    print_table(&plugins, &streamed, &streamed_bytes);
}

fn print_table(plugins: &[Plugin], times: &[Duration], bytes: &[u64]) {
    let by_name = |n: &str| plugins.iter().position(|p| p.name == n).unwrap();
    let pgoutput = times[by_name("pgoutput")].as_secs_f64();
    let test_decoding = times[by_name("test_decoding")].as_secs_f64();
    println!(
        "{:<14} {:>10} {:>12} {:>12} {:>17}",
        "plugin", "ms", "output MB", "vs pgoutput", "vs test_decoding"
    );
    for (i, p) in plugins.iter().enumerate() {
        let s = times[i].as_secs_f64();
        println!(
            "{:<14} {:>10.1} {:>12.1} {:>11.2}x {:>16.2}x",
            p.name,
            s * 1000.0,
            bytes[i] as f64 / 1e6,
            s / pgoutput,
            s / test_decoding
        );
    }
}
