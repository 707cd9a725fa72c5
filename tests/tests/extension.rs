//! `CREATE EXTENSION decoder_sql` works with the installed control/SQL files (scripts/setup)
//! and the freshly built library.

use e2e::TestCluster;

#[tokio::test]
async fn create_and_drop_extension() {
    let cluster = TestCluster::start();
    let db = cluster.connect("postgres").await;
    let available: i64 = db
        .query_one(
            "SELECT count(*) FROM pg_available_extensions WHERE name = 'decoder_sql'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        available, 1,
        "decoder_sql is not installed in this PostgreSQL: run scripts/setup first"
    );
    db.batch_execute("CREATE EXTENSION decoder_sql")
        .await
        .unwrap();
    let version: i32 = db
        .query_one("SELECT decoder_sql.format_version()", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(version, 4);
    db.batch_execute("DROP EXTENSION decoder_sql")
        .await
        .unwrap();
    let schemas: i64 = db
        .query_one(
            "SELECT count(*) FROM pg_proc WHERE proname = 'format_version'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(schemas, 0);
}
