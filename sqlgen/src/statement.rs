//! One decoded change → one SQL statement on one line, ending in `;`.
//!
//! Identifiers arrive already quoted (the decoder caches them per relation); values arrive as
//! [`Cell`]s and are spelled by [`crate::literal`].

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
    /// The type has no default equality operator (json, point, xml ...): compare its text form.
    pub compare_as_text: bool,
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
    out.extend_from_slice(b"UPDATE ");
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
    out.extend_from_slice(b"DELETE FROM ");
    out.extend_from_slice(table);
    if let Err(err) = push_row_match(out, table, key, matching) {
        out.truncate(start);
        return Err(err);
    }
    out.push(b';');
    Ok(Rendered::Statement)
}

/// `TRUNCATE TABLE ONLY a, b [RESTART IDENTITY] [CASCADE];`. ONLY because the WAL lists every
/// truncated relation itself, inheritance children and partitions included.
pub fn render_truncate(out: &mut Vec<u8>, tables: &[&[u8]], restart_identity: bool, cascade: bool) {
    out.extend_from_slice(b"TRUNCATE TABLE ONLY ");
    for (i, table) in tables.iter().enumerate() {
        if i > 0 {
            out.extend_from_slice(b", ");
        }
        out.extend_from_slice(table);
    }
    if restart_identity {
        out.extend_from_slice(b" RESTART IDENTITY");
    }
    if cascade {
        out.extend_from_slice(b" CASCADE");
    }
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
            push_conditions(out, key)
        }
        RowMatch::FullRow => {
            out.extend_from_slice(b" WHERE ctid = (SELECT ctid FROM ");
            out.extend_from_slice(table);
            out.extend_from_slice(b" WHERE ");
            push_conditions(out, key)?;
            out.extend_from_slice(b" LIMIT 1)");
            Ok(())
        }
    }
}

fn push_conditions<'a>(
    out: &mut Vec<u8>,
    key: impl Iterator<Item = KeyColumn<'a>>,
) -> Result<(), RenderError> {
    for (i, k) in key.enumerate() {
        if i > 0 {
            out.extend_from_slice(b" AND ");
        }
        out.extend_from_slice(k.column.name);
        match k.column.cell {
            Cell::Null => out.extend_from_slice(b" IS NULL"),
            Cell::Text(text) if k.compare_as_text => {
                out.extend_from_slice(b"::text = ");
                push_quoted(out, text);
            }
            Cell::Text(text) => {
                out.extend_from_slice(b" = ");
                push_literal(out, k.column.class, text);
            }
            Cell::UnchangedToast => {
                return Err(RenderError::ToastInKey {
                    column: String::from_utf8_lossy(k.column.name).into_owned(),
                });
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
            compare_as_text: false,
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
            "UPDATE public.t SET a = 2, c = true WHERE k1 = 7 AND k2 IS NULL;"
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
                compare_as_text: true,
            },
        ];
        render_delete(&mut out, b"public.nopk", k, RowMatch::FullRow).unwrap();
        assert_eq!(
            text(out),
            "DELETE FROM public.nopk WHERE ctid = (SELECT ctid FROM public.nopk \
             WHERE a = 1 AND j::text = '{\"x\": 1}' LIMIT 1);"
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
        render_truncate(&mut out, &[b"a.x", b"b.y"], true, true);
        assert_eq!(
            text(out),
            "TRUNCATE TABLE ONLY a.x, b.y RESTART IDENTITY CASCADE;"
        );
        let mut out = Vec::new();
        render_truncate(&mut out, &[b"a.x"], false, false);
        assert_eq!(text(out), "TRUNCATE TABLE ONLY a.x;");
    }

    #[test]
    fn comment_stays_on_one_line() {
        let mut out = Vec::new();
        render_comment(&mut out, b"two\nlines\r");
        assert_eq!(text(out), "-- two lines ");
    }
}
