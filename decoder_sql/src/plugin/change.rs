//! INSERT / UPDATE / DELETE / TRUNCATE.

use super::{Change, ChangeKind, Output, emit};
use crate::error::{DecoderError, Result};
use crate::pg::relation::{Identity, RelInfo, RelView};
use crate::pg::tuple::DecodedRow;
use crate::state::DecoderState;
use sqlgen::statement::{self, TruncateTable, render_comment};
use sqlgen::{Column, KeyColumn, MissingIdentity, Rendered, RowMatch};

pub fn on_change(
    out: &mut Output,
    state: &mut DecoderState,
    rel: RelView,
    change: &Change,
) -> Result<()> {
    let info = state.relations.get(rel);
    if info.is_materialized_view {
        // CREATE MATERIALIZED VIEW writes its rows to the WAL; replaying the captured
        // CREATE / REFRESH statement recomputes them.
        return Ok(());
    }
    super::triggers::switch_off(out, state, &info);
    state.buf.clear();
    // Which rows this change loaded, for the note on values written as NULL.
    let (mut loaded_old, mut loaded_new) = (false, false);
    let rendered = match change.kind {
        ChangeKind::Insert => {
            let Some(new) = change.new else {
                return Ok(());
            };
            state.new_row.load(&info, rel, new, &info.insert_columns);
            loaded_new = true;
            let cols = columns(&info, &state.new_row, &info.insert_columns);
            statement::render_insert(&mut state.buf, &info.name, cols, info.has_identity_always);
            Ok(Rendered::Statement)
        }
        ChangeKind::Update => {
            let Some(new) = change.new else {
                return Ok(());
            };
            let Some((matching, key_cols, key_from_old)) = row_identity(&info, change) else {
                return missing_identity(out, state, &info, change);
            };
            loaded_new = true;
            loaded_old = key_from_old;
            if key_from_old {
                let old = change
                    .old
                    .expect("invariant: key_from_old implies an old tuple");
                state.old_row.load(&info, rel, old, key_cols);
                state.new_row.load(&info, rel, new, &info.update_columns);
            } else {
                state
                    .new_row
                    .load(&info, rel, new, &info.update_and_key_columns);
            }
            let key_row = if key_from_old {
                &state.old_row
            } else {
                &state.new_row
            };
            let set = columns(&info, &state.new_row, &info.update_columns);
            let key = key_columns(&info, key_row, key_cols);
            statement::render_update(&mut state.buf, &info.name, set, key, matching)
        }
        ChangeKind::Delete => {
            let Some((matching, key_cols, true)) = row_identity(&info, change) else {
                return missing_identity(out, state, &info, change);
            };
            let old = change
                .old
                .expect("invariant: key_from_old implies an old tuple");
            state.old_row.load(&info, rel, old, key_cols);
            loaded_old = true;
            let key = key_columns(&info, &state.old_row, key_cols);
            statement::render_delete(&mut state.buf, &info.name, key, matching)
        }
    };
    match rendered {
        Ok(Rendered::Statement) => {
            if info.has_unreadable {
                note_replaced(out, state, &info, change, loaded_old, loaded_new);
            }
            emit(out, state)
        }
        Ok(Rendered::Nothing) => {}
        Err(source) => {
            return Err(DecoderError::Render {
                relation: info.name_lossy(),
                operation: change.kind.sql_verb(),
                source,
            });
        }
    }
    Ok(())
}

pub fn on_truncate(
    out: &mut Output,
    state: &mut DecoderState,
    rels: &[RelView],
    restart: bool,
    cascade: bool,
) {
    let infos: Vec<_> = rels.iter().map(|&r| state.relations.get(r)).collect();
    for info in &infos {
        super::triggers::switch_off(out, state, info);
    }
    let tables: Vec<TruncateTable> = infos
        .iter()
        .map(|i| TruncateTable {
            name: &i.name,
            partitioned: i.is_partitioned,
        })
        .collect();
    state.buf.clear();
    statement::render_truncate(&mut state.buf, &tables, restart, cascade);
    emit(out, state);
}

/// How to find the changed row: (match kind, key columns, whether they come from the old tuple).
/// `None` when the WAL record carries no way to identify the row.
fn row_identity<'a>(info: &'a RelInfo, change: &Change) -> Option<(RowMatch, &'a [usize], bool)> {
    match (&info.identity, change.old.is_some()) {
        // FULL logs the whole old row for every UPDATE and DELETE.
        (Identity::Full, true) => Some((RowMatch::FullRow, &info.insert_columns, true)),
        // The old key is logged only when it changed (UPDATE) or for DELETE.
        (Identity::Key(key), has_old) => {
            if change.kind == ChangeKind::Delete && !has_old {
                return None;
            }
            Some((RowMatch::Key, key, has_old))
        }
        (Identity::Full, false) | (Identity::Missing, _) => None,
    }
}

/// Before a statement that wrote NULL for values of types without an input function (which
/// nothing could read back), a comment naming those columns, so the loss is visible:
/// `-- decoder_sql: INSERT on public.t at 0/16B3748 wrote NULL for column e (pg_node_tree): the type has no input function`.
/// The statement stays in `state.buf`.
fn note_replaced(
    out: &mut Output,
    state: &mut DecoderState,
    info: &RelInfo,
    change: &Change,
    loaded_old: bool,
    loaded_new: bool,
) {
    let mut replaced: Vec<usize> = Vec::new();
    if loaded_old {
        replaced.extend(state.old_row.replaced());
    }
    if loaded_new {
        replaced.extend(state.new_row.replaced());
    }
    if replaced.is_empty() {
        return;
    }
    replaced.sort_unstable();
    replaced.dedup();
    let columns: Vec<String> = replaced
        .iter()
        .map(|&i| {
            let col = &info.columns[i];
            format!(
                "{} ({})",
                String::from_utf8_lossy(&col.name),
                col.unreadable.as_deref().unwrap_or("?")
            )
        })
        .collect();
    let text = format!(
        "decoder_sql: {} on {} at {} wrote NULL for column{} {}: the type has no input function, \
         the value cannot be read back",
        change.kind.sql_verb(),
        info.name_lossy(),
        change.lsn,
        if columns.len() > 1 { "s" } else { "" },
        columns.join(", ")
    );
    let statement = std::mem::take(&mut state.buf);
    render_comment(&mut state.buf, text.as_bytes());
    emit(out, state);
    state.buf = statement;
}

fn missing_identity(
    out: &mut Output,
    state: &mut DecoderState,
    info: &RelInfo,
    change: &Change,
) -> Result<()> {
    let operation = change.kind.sql_verb();
    match state.options.missing_identity {
        MissingIdentity::Error => Err(DecoderError::MissingIdentity {
            relation: info.name_lossy(),
            operation,
        }),
        MissingIdentity::Skip => {
            let text = format!(
                "decoder_sql: skipped {operation} on {} at {}: no replica identity",
                info.name_lossy(),
                change.lsn
            );
            state.buf.clear();
            render_comment(&mut state.buf, text.as_bytes());
            emit(out, state);
            Ok(())
        }
    }
}

fn columns<'a>(
    info: &'a RelInfo,
    row: &'a DecodedRow,
    which: &'a [usize],
) -> impl Iterator<Item = Column<'a>> + Clone {
    which.iter().map(move |&i| Column {
        name: &info.columns[i].name,
        class: info.columns[i].class,
        cell: row.cell(i),
    })
}

fn key_columns<'a>(
    info: &'a RelInfo,
    row: &'a DecodedRow,
    which: &'a [usize],
) -> impl Iterator<Item = KeyColumn<'a>> + Clone {
    which.iter().map(move |&i| {
        let col = &info.columns[i];
        KeyColumn {
            column: Column {
                name: &col.name,
                class: col.class,
                cell: row.cell(i),
            },
            compare: col.compare,
        }
    })
}
