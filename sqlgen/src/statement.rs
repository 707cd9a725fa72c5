//! One decoded change → one SQL statement on one line, ending in `;`.
//!
//! Identifiers arrive already quoted (the decoder caches them per relation); values arrive as
//! [`Cell`]s and are spelled by [`crate::literal`].
//!
//! UPDATE and DELETE always name their target with `ONLY`: a row decoded from an inheritance
//! parent lives in that table itself, never in a child. (Partitioned tables never hold rows:
//! changes arrive as the leaf partition, a plain table.)

use crate::literal::{Cell, TypeClass, push_cell, push_literal, push_quoted};

/// A column and its value in an INSERT list or UPDATE SET list.
#[derive(Debug, Clone, Copy)]
pub struct Column<'a> {
    /// Quoted column name.
    pub name: &'a [u8],
    pub class: TypeClass,
    pub cell: Cell<'a>,
}

/// A column of the row-matching condition of an UPDATE or DELETE.
#[derive(Debug, Clone, Copy)]
pub struct KeyColumn<'a> {
    pub column: Column<'a>,
    pub compare: Compare,
}

/// How a column of the row match is compared with its old value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compare {
    /// The type's `=`, which is identity for it (integers, text under a deterministic
    /// collation, timestamps ...): `c = 1`.
    Equal,
    /// REPLICA IDENTITY FULL: the text form, which tells apart values that `=` does not
    /// (numeric `1.0`/`1.00`, float `-0`/`0`, interval `'1 mon'`/`'30 days'`, citext, jsonb
    /// ...) and works for types without `=` (json, point, xml, composites):
    /// `pg_catalog.concat(c) = '1.00'`. With a unique key, `=` is enough and is used instead
    /// for a type that has it.
    Text {
        /// The type has an equality operator.
        has_equality: bool,
        /// An index has the column: `c = 1.00 AND pg_catalog.concat(c) = '1.00'`, so the
        /// planner can still use it.
        indexed: bool,
        /// The column's collation is nondeterministic: the text comparison is made under
        /// `"C"`, since it would otherwise inherit the column's collation.
        binary_collation: bool,
    },
}

/// A relation of a TRUNCATE.
#[derive(Debug, Clone, Copy)]
pub struct TruncateTable<'a> {
    /// Schema-qualified, quoted name.
    pub name: &'a [u8],
    /// A partitioned table (relkind `p`): written without `ONLY`, which it does not accept.
    pub partitioned: bool,
}

/// How the WHERE clause picks the row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowMatch {
    /// The key is unique (primary key or replica identity index): `WHERE k = v`.
    Key,
    /// All old columns (REPLICA IDENTITY FULL), which may match several identical rows: change
    /// exactly one of them, as the source did, through `ctid = (SELECT ctid ... LIMIT 1)`.
    FullRow,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RenderError {
    #[error(
        "replica identity column {column} holds an unchanged TOASTed value that is not in the WAL"
    )]
    ToastInKey { column: String },
    #[error("the replica identity provides no columns to find the row")]
    EmptyKey,
}

/// What a render call produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rendered {
    Statement,
    /// The change has no visible effect (an UPDATE whose columns are all unchanged TOAST).
    Nothing,
}

/// `INSERT INTO t (a, b) [OVERRIDING SYSTEM VALUE] VALUES (1, 'x');`
pub fn render_insert<'a, I>(
    out: &mut Vec<u8>,
    table: &[u8],
    columns: I,
    overriding_system_value: bool,
) where
    I: IntoIterator<Item = Column<'a>>,
    I::IntoIter: Clone,
{
    let columns = columns.into_iter();
    out.extend_from_slice(b"INSERT INTO ");
    out.extend_from_slice(table);
    if columns.clone().next().is_none() {
        out.extend_from_slice(b" DEFAULT VALUES;");
        return;
    }
    out.extend_from_slice(b" (");
    for (i, col) in columns.clone().enumerate() {
        if i > 0 {
            out.extend_from_slice(b", ");
        }
        out.extend_from_slice(col.name);
    }
    out.push(b')');
    if overriding_system_value {
        out.extend_from_slice(b" OVERRIDING SYSTEM VALUE");
    }
    out.extend_from_slice(b" VALUES (");
    for (i, col) in columns.enumerate() {
        if i > 0 {
            out.extend_from_slice(b", ");
        }
        push_cell(out, col.class, col.cell);
    }
    out.extend_from_slice(b");");
}

/// `UPDATE t SET a = 1 WHERE k = 2;`. Unchanged TOAST values are left out of SET.
pub fn render_update<'a, S, K>(
    out: &mut Vec<u8>,
    table: &[u8],
    set: S,
    key: K,
    matching: RowMatch,
) -> Result<Rendered, RenderError>
where
    S: IntoIterator<Item = Column<'a>>,
    K: IntoIterator<Item = KeyColumn<'a>>,
    K::IntoIter: Clone,
{
    let start = out.len();
    out.extend_from_slice(b"UPDATE ONLY ");
    out.extend_from_slice(table);
    out.extend_from_slice(b" SET ");
    let mut any = false;
    for col in set.into_iter().filter(|c| c.cell != Cell::UnchangedToast) {
        if any {
            out.extend_from_slice(b", ");
        }
        any = true;
        out.extend_from_slice(col.name);
        out.extend_from_slice(b" = ");
        push_cell(out, col.class, col.cell);
    }
    if !any {
        out.truncate(start);
        return Ok(Rendered::Nothing);
    }
    if let Err(err) = push_row_match(out, table, key, matching) {
        out.truncate(start);
        return Err(err);
    }
    out.push(b';');
    Ok(Rendered::Statement)
}

/// `DELETE FROM t WHERE k = 2;`
pub fn render_delete<'a, K>(
    out: &mut Vec<u8>,
    table: &[u8],
    key: K,
    matching: RowMatch,
) -> Result<Rendered, RenderError>
where
    K: IntoIterator<Item = KeyColumn<'a>>,
    K::IntoIter: Clone,
{
    let start = out.len();
    out.extend_from_slice(b"DELETE FROM ONLY ");
    out.extend_from_slice(table);
    if let Err(err) = push_row_match(out, table, key, matching) {
        out.truncate(start);
        return Err(err);
    }
    out.push(b';');
    Ok(Rendered::Statement)
}

/// `TRUNCATE TABLE ONLY a, ONLY b, p [RESTART IDENTITY] [CASCADE];`. `ONLY` applies to each
/// name on its own; every plain table gets it because the WAL lists every truncated relation
/// itself (inheritance children included), so an inheritance child that was not truncated is
/// left alone. A partitioned table does not accept `ONLY`; without it, it truncates its
/// partitions, which the source truncated too (a partition cannot be left out).
pub fn render_truncate(
    out: &mut Vec<u8>,
    tables: &[TruncateTable<'_>],
    restart_identity: bool,
    cascade: bool,
) {
    out.extend_from_slice(b"TRUNCATE TABLE ");
    for (i, table) in tables.iter().enumerate() {
        if i > 0 {
            out.extend_from_slice(b", ");
        }
        if !table.partitioned {
            out.extend_from_slice(b"ONLY ");
        }
        out.extend_from_slice(table.name);
    }
    if restart_identity {
        out.extend_from_slice(b" RESTART IDENTITY");
    }
    if cascade {
        out.extend_from_slice(b" CASCADE");
    }
    out.push(b';');
}

/// When a trigger or rule fires although replay runs with `session_replication_role = replica`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FiresOnReplay {
    /// `ENABLE ALWAYS`.
    Always,
    /// `ENABLE REPLICA`.
    Replica,
}

/// What fires: a trigger or a rule of the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Firing {
    Trigger,
    Rule,
}

impl Firing {
    fn keyword(self) -> &'static [u8] {
        match self {
            Firing::Trigger => b"TRIGGER ",
            Firing::Rule => b"RULE ",
        }
    }
}

/// `ALTER TABLE ONLY t DISABLE TRIGGER tg;` (or `RULE`): a trigger or rule that would fire on
/// replay is switched off for the transaction's changes to its table (their effects are in
/// the stream already, and it would run as the replaying role).
pub fn render_disable(out: &mut Vec<u8>, table: &[u8], firing: Firing, name: &[u8]) {
    out.extend_from_slice(b"ALTER TABLE ONLY ");
    out.extend_from_slice(table);
    out.extend_from_slice(b" DISABLE ");
    out.extend_from_slice(firing.keyword());
    out.extend_from_slice(name);
    out.push(b';');
}

/// `ALTER TABLE ONLY t ENABLE ALWAYS TRIGGER tg;` (or `REPLICA`, or `RULE`): back as it was,
/// before the transaction commits.
pub fn render_enable(
    out: &mut Vec<u8>,
    table: &[u8],
    firing: Firing,
    name: &[u8],
    fires: FiresOnReplay,
) {
    out.extend_from_slice(b"ALTER TABLE ONLY ");
    out.extend_from_slice(table);
    out.extend_from_slice(match fires {
        FiresOnReplay::Always => b" ENABLE ALWAYS ",
        FiresOnReplay::Replica => b" ENABLE REPLICA ",
    });
    out.extend_from_slice(firing.keyword());
    out.extend_from_slice(name);
    out.push(b';');
}

/// `-- <text>` on one line: line breaks in `text` become spaces.
pub fn render_comment(out: &mut Vec<u8>, text: &[u8]) {
    out.extend_from_slice(b"-- ");
    out.extend(
        text.iter()
            .map(|&b| if b == b'\n' || b == b'\r' { b' ' } else { b }),
    );
}

fn push_row_match<'a, K>(
    out: &mut Vec<u8>,
    table: &[u8],
    key: K,
    matching: RowMatch,
) -> Result<(), RenderError>
where
    K: IntoIterator<Item = KeyColumn<'a>>,
    K::IntoIter: Clone,
{
    let key = key.into_iter();
    if key.clone().next().is_none() {
        return Err(RenderError::EmptyKey);
    }
    match matching {
        RowMatch::Key => {
            out.extend_from_slice(b" WHERE ");
            push_conditions(out, key, false)
        }
        RowMatch::FullRow => {
            out.extend_from_slice(b" WHERE ctid = (SELECT ctid FROM ONLY ");
            out.extend_from_slice(table);
            out.extend_from_slice(b" WHERE ");
            push_conditions(out, key, true)?;
            out.extend_from_slice(b" LIMIT 1)");
            Ok(())
        }
    }
}

/// The conditions, joined by AND. `full` (REPLICA IDENTITY FULL) compares [`Compare::Text`]
/// columns on their text form: `pg_catalog.concat` prints a value with its type's output
/// function, under the settings every stream reader pins (docs/format.md), and runs no cast a
/// user could have defined.
fn push_conditions<'a>(
    out: &mut Vec<u8>,
    key: impl Iterator<Item = KeyColumn<'a>>,
    full: bool,
) -> Result<(), RenderError> {
    for (i, k) in key.enumerate() {
        if i > 0 {
            out.extend_from_slice(b" AND ");
        }
        let name = k.column.name;
        let text = match k.column.cell {
            Cell::Null => {
                out.extend_from_slice(name);
                out.extend_from_slice(b" IS NULL");
                continue;
            }
            Cell::Text(text) => text,
            Cell::UnchangedToast => {
                return Err(RenderError::ToastInKey {
                    column: String::from_utf8_lossy(name).into_owned(),
                });
            }
        };
        let (equal, by_text, binary_collation) = match k.compare {
            Compare::Equal => (true, false, false),
            Compare::Text {
                has_equality,
                indexed,
                binary_collation,
            } => {
                if full {
                    (has_equality && indexed, true, binary_collation)
                } else {
                    (has_equality, !has_equality, binary_collation)
                }
            }
        };
        if equal {
            out.extend_from_slice(name);
            out.extend_from_slice(b" = ");
            push_literal(out, k.column.class, text);
        }
        if by_text {
            if equal {
                out.extend_from_slice(b" AND ");
            }
            out.extend_from_slice(b"pg_catalog.concat(");
            out.extend_from_slice(name);
            out.extend_from_slice(b") = ");
            push_quoted(out, text);
            if binary_collation {
                out.extend_from_slice(b" COLLATE pg_catalog.\"C\"");
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn col<'a>(name: &'a str, class: TypeClass, cell: Cell<'a>) -> Column<'a> {
        Column {
            name: name.as_bytes(),
            class,
            cell,
        }
    }

    fn key<'a>(name: &'a str, class: TypeClass, cell: Cell<'a>) -> KeyColumn<'a> {
        KeyColumn {
            column: col(name, class, cell),
            compare: Compare::Equal,
        }
    }

    fn by_text(has_equality: bool, indexed: bool, binary_collation: bool) -> Compare {
        Compare::Text {
            has_equality,
            indexed,
            binary_collation,
        }
    }

    fn text(out: Vec<u8>) -> String {
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn insert_basic() {
        let mut out = Vec::new();
        let cols = [
            col("id", TypeClass::Integer, Cell::Text(b"1")),
            col("\"Name\"", TypeClass::Quoted, Cell::Text(b"O'Brien")),
            col("note", TypeClass::Quoted, Cell::Null),
        ];
        render_insert(&mut out, b"public.t", cols, false);
        assert_eq!(
            text(out),
            "INSERT INTO public.t (id, \"Name\", note) VALUES (1, 'O''Brien', null);"
        );
    }

    #[test]
    fn insert_overriding_identity() {
        let mut out = Vec::new();
        render_insert(
            &mut out,
            b"s.t",
            [col("id", TypeClass::Integer, Cell::Text(b"5"))],
            true,
        );
        assert_eq!(
            text(out),
            "INSERT INTO s.t (id) OVERRIDING SYSTEM VALUE VALUES (5);"
        );
    }

    #[test]
    fn insert_without_columns_uses_default_values() {
        let mut out = Vec::new();
        render_insert(&mut out, b"s.t", [], false);
        assert_eq!(text(out), "INSERT INTO s.t DEFAULT VALUES;");
    }

    #[test]
    fn update_skips_unchanged_toast_and_uses_is_null() {
        let mut out = Vec::new();
        let set = [
            col("a", TypeClass::Integer, Cell::Text(b"2")),
            col("big", TypeClass::Quoted, Cell::UnchangedToast),
            col("c", TypeClass::Bool, Cell::Text(b"t")),
        ];
        let k = [
            key("k1", TypeClass::Integer, Cell::Text(b"7")),
            key("k2", TypeClass::Quoted, Cell::Null),
        ];
        let r = render_update(&mut out, b"public.t", set, k, RowMatch::Key).unwrap();
        assert_eq!(r, Rendered::Statement);
        assert_eq!(
            text(out),
            "UPDATE ONLY public.t SET a = 2, c = true WHERE k1 = 7 AND k2 IS NULL;"
        );
    }

    #[test]
    fn update_of_only_unchanged_toast_renders_nothing() {
        let mut out = b"keep".to_vec();
        let set = [col("big", TypeClass::Quoted, Cell::UnchangedToast)];
        let k = [key("id", TypeClass::Integer, Cell::Text(b"1"))];
        let r = render_update(&mut out, b"t", set, k, RowMatch::Key).unwrap();
        assert_eq!(r, Rendered::Nothing);
        assert_eq!(out, b"keep");
    }

    #[test]
    fn full_row_match_changes_one_row() {
        let mut out = Vec::new();
        let k = [
            key("a", TypeClass::Integer, Cell::Text(b"1")),
            KeyColumn {
                column: col("j", TypeClass::Quoted, Cell::Text(b"{\"x\": 1}")),
                compare: by_text(false, false, false),
            },
        ];
        render_delete(&mut out, b"public.nopk", k, RowMatch::FullRow).unwrap();
        assert_eq!(
            text(out),
            "DELETE FROM ONLY public.nopk WHERE ctid = (SELECT ctid FROM ONLY public.nopk \
             WHERE a = 1 AND pg_catalog.concat(j) = '{\"x\": 1}' LIMIT 1);"
        );
    }

    /// (class, compare, cell) => condition, for REPLICA IDENTITY FULL and a unique key.
    #[test]
    fn conditions_per_column_kind() {
        type Case<'a> = (TypeClass, Compare, Cell<'a>, &'a str, &'a str);
        let cases: &[Case] = &[
            // Equality is identity: plain `=` in both modes.
            (
                TypeClass::Integer,
                Compare::Equal,
                Cell::Text(b"7"),
                "c = 7",
                "c = 7",
            ),
            // Equality is not identity: the text form under FULL, `=` with a unique key.
            (
                TypeClass::Number,
                by_text(true, false, false),
                Cell::Text(b"1.00"),
                "pg_catalog.concat(c) = '1.00'",
                "c = 1.00",
            ),
            (
                TypeClass::Number,
                by_text(true, false, false),
                Cell::Text(b"-0"),
                "pg_catalog.concat(c) = '-0'",
                "c = '-0'",
            ),
            // Indexed: `=` as well, so the index stays usable.
            (
                TypeClass::Number,
                by_text(true, true, false),
                Cell::Text(b"1.00"),
                "c = 1.00 AND pg_catalog.concat(c) = '1.00'",
                "c = 1.00",
            ),
            // A nondeterministic collation: the text comparison under "C".
            (
                TypeClass::Quoted,
                by_text(true, false, true),
                Cell::Text(b"it's\n"),
                r#"pg_catalog.concat(c) = E'it''s\n' COLLATE pg_catalog."C""#,
                r"c = E'it''s\n'",
            ),
            // No equality operator: the text form in both modes.
            (
                TypeClass::Quoted,
                by_text(false, true, false),
                Cell::Text(b"(1,2)"),
                "pg_catalog.concat(c) = '(1,2)'",
                "pg_catalog.concat(c) = '(1,2)'",
            ),
            (
                TypeClass::Number,
                by_text(true, true, false),
                Cell::Null,
                "c IS NULL",
                "c IS NULL",
            ),
        ];
        for &(class, compare, cell, full, by_key) in cases {
            for (matching, want) in [(RowMatch::FullRow, full), (RowMatch::Key, by_key)] {
                let k = KeyColumn {
                    column: col("c", class, cell),
                    compare,
                };
                let mut out = Vec::new();
                render_delete(&mut out, b"t", [k], matching).unwrap();
                let want = match matching {
                    RowMatch::Key => format!("DELETE FROM ONLY t WHERE {want};"),
                    RowMatch::FullRow => format!(
                        "DELETE FROM ONLY t WHERE ctid = (SELECT ctid FROM ONLY t WHERE {want} LIMIT 1);"
                    ),
                };
                assert_eq!(text(out), want);
            }
        }
    }

    #[test]
    fn full_row_update_names_only_the_table_in_both_places() {
        let mut out = Vec::new();
        let set = [col("v", TypeClass::Number, Cell::Text(b"-0"))];
        let k = [KeyColumn {
            column: col("v", TypeClass::Number, Cell::Text(b"1.00")),
            compare: by_text(true, false, false),
        }];
        render_update(&mut out, b"U&\"a\\000Ab\"", set, k, RowMatch::FullRow).unwrap();
        assert_eq!(
            text(out),
            "UPDATE ONLY U&\"a\\000Ab\" SET v = '-0' WHERE ctid = (SELECT ctid FROM ONLY U&\"a\\000Ab\" \
             WHERE pg_catalog.concat(v) = '1.00' LIMIT 1);"
        );
    }

    #[test]
    fn toast_in_key_is_an_error_and_writes_nothing() {
        let mut out = Vec::new();
        let k = [key("k", TypeClass::Quoted, Cell::UnchangedToast)];
        let err = render_delete(&mut out, b"t", k, RowMatch::Key).unwrap_err();
        assert_eq!(err, RenderError::ToastInKey { column: "k".into() });
        assert!(out.is_empty());
    }

    #[test]
    fn empty_key_is_an_error() {
        let mut out = Vec::new();
        let err = render_delete(&mut out, b"t", [], RowMatch::Key).unwrap_err();
        assert_eq!(err, RenderError::EmptyKey);
    }

    #[test]
    fn truncate_variants() {
        let mut out = Vec::new();
        let t = |name: &'static str, partitioned| TruncateTable {
            name: name.as_bytes(),
            partitioned,
        };
        render_truncate(&mut out, &[t("a.x", false), t("b.y", false)], true, true);
        assert_eq!(
            text(out),
            "TRUNCATE TABLE ONLY a.x, ONLY b.y RESTART IDENTITY CASCADE;"
        );
        let mut out = Vec::new();
        render_truncate(&mut out, &[t("a.x", false)], false, false);
        assert_eq!(text(out), "TRUNCATE TABLE ONLY a.x;");
        let mut out = Vec::new();
        render_truncate(
            &mut out,
            &[t("s.p", true), t("s.p1", false), t("s.sub", true)],
            false,
            false,
        );
        assert_eq!(text(out), "TRUNCATE TABLE s.p, ONLY s.p1, s.sub;");
    }

    #[test]
    fn triggers_and_rules_that_fire_on_replay_are_switched_off_and_back() {
        let mut out = Vec::new();
        render_disable(&mut out, b"s.t", Firing::Trigger, b"\"Audit\"");
        assert_eq!(text(out), "ALTER TABLE ONLY s.t DISABLE TRIGGER \"Audit\";");
        let mut out = Vec::new();
        render_disable(&mut out, b"s.t", Firing::Rule, b"r");
        assert_eq!(text(out), "ALTER TABLE ONLY s.t DISABLE RULE r;");
        for (firing, fires, want) in [
            (
                Firing::Trigger,
                FiresOnReplay::Always,
                "ALTER TABLE ONLY s.t ENABLE ALWAYS TRIGGER x;",
            ),
            (
                Firing::Trigger,
                FiresOnReplay::Replica,
                "ALTER TABLE ONLY s.t ENABLE REPLICA TRIGGER x;",
            ),
            (
                Firing::Rule,
                FiresOnReplay::Always,
                "ALTER TABLE ONLY s.t ENABLE ALWAYS RULE x;",
            ),
            (
                Firing::Rule,
                FiresOnReplay::Replica,
                "ALTER TABLE ONLY s.t ENABLE REPLICA RULE x;",
            ),
        ] {
            let mut out = Vec::new();
            render_enable(&mut out, b"s.t", firing, b"x", fires);
            assert_eq!(text(out), want);
        }
    }

    #[test]
    fn comment_stays_on_one_line() {
        let mut out = Vec::new();
        render_comment(&mut out, b"two\nlines\r");
        assert_eq!(text(out), "-- two lines ");
    }
}
