//! Every common type decodes to a literal that restores the exact value, whatever the
//! decoding session's DateStyle, IntervalStyle, extra_float_digits, bytea_output or TimeZone.

use e2e::TestCluster;
use e2e::decode::{create_slot, database_contents, get_changes, replay};

const ZOO: &str = include_str!("../../sql/type_zoo.sql");

const ROWS: &str = include_str!("../../sql/type_zoo_rows.sql");

#[tokio::test]
async fn type_zoo_survives_decode_and_replay_under_odd_session_settings() {
    let cluster = TestCluster::start();
    let src = cluster.connect("postgres").await;
    src.batch_execute(ZOO).await.unwrap();
    src.batch_execute("CREATE DATABASE restored").await.unwrap();
    let dst = cluster.connect("restored").await;
    dst.batch_execute(ZOO).await.unwrap();

    create_slot(&src, "s").await;
    src.batch_execute(ROWS).await.unwrap();
    // Insert the row 3 back so the final comparison covers it too.
    src.batch_execute(&ROWS.replace("UPDATE zoo SET txt = txt || '!' WHERE id IN (1, 2);\nDELETE FROM zoo WHERE id = 3;", "").replace("(1, -32768", "(11, -32768").replace("(2, 0, -1", "(12, 0, -1").replace("(3, NULL", "(13, NULL"))
        .await
        .unwrap();

    // A decoding session whose settings would change every value's text if not pinned.
    let decoder = cluster.connect("postgres").await;
    decoder
        .batch_execute(
            "SET DateStyle = 'SQL, DMY'; SET IntervalStyle = 'sql_standard'; SET extra_float_digits = -3;
             SET bytea_output = 'escape'; SET TimeZone = 'America/St_Johns'; SET lc_monetary = 'C';",
        )
        .await
        .unwrap();
    let lines = get_changes(&decoder, "s", &[("include_transaction", "on")]).await;
    for line in &lines {
        assert!(!line.contains('\n'), "statement spans lines: {line}");
    }
    // Spot checks of the literal spelling.
    let first = &lines[1];
    for expected in [
        "VALUES (1, -32768, 9223372036854775807, '1.1', 0.1, 123456789012345678901234567890.123456789, 3.142, true, B'1010', B'101', ",
        r#"'it''s a "test" \ with backslash'"#,
        r"'\x00ff10'",
        "'2024-02-29 13:14:15.123456'",
        "'2024-02-29 07:44:15.123456+00'",
        "'1 year 2 mons 3 days 04:05:06.789'",
        "'$12.34'",
    ] {
        assert!(first.contains(expected), "{expected}\n  not in\n{first}");
    }
    let second = &lines[2];
    for expected in [
        "'NaN', 'Infinity', 'NaN'",
        r"E'line1\nline2\ttab\r\x01 end'",
        "B''",
    ] {
        assert!(second.contains(expected), "{expected}\n  not in\n{second}");
    }

    let out = replay(&cluster, "restored", &lines);
    assert!(
        out.status.success(),
        "replay failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    let (a, b) = (database_contents(&src).await, database_contents(&dst).await);
    assert!(a.contains("public.zoo: 5 rows"), "{a}");
    assert_eq!(a, b);
}
