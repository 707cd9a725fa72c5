//! Logical messages: DDL captured by the extension's event triggers arrives as transactional
//! messages whose prefix is the DDL prefix with the capture channel's tag
//! (`sqlgen::channel`), and is emitted verbatim, in commit order with the DML. A message
//! with the DDL prefix but no valid tag was not written by the capture (anyone may call
//! `pg_logical_emit_message`): it becomes an inert comment.

use super::{Message, Output, emit};
use crate::pg::channel;
use crate::state::DecoderState;
use sqlgen::channel::Authenticity;
use sqlgen::lexer::{Ending, StatementProblem, check_verbatim};
use sqlgen::statement::render_comment;

/// The start of the comment that replaces a forged DDL message (pgincr verify counts them).
pub const FORGED: &str = "decoder_sql: refused unauthenticated";

pub fn on_message(out: &mut Output, state: &mut DecoderState, msg: &Message<'_>) {
    let authenticity = {
        let ddl_prefix = state.options.ddl_prefix.as_str();
        let tagged =
            msg.prefix.len() > ddl_prefix.len() && msg.prefix.starts_with(ddl_prefix.as_bytes());
        // A tagged message cannot be checked without the key: stop rather than turn the
        // capture's DDL into comments.
        let key = match channel::key() {
            Ok(key) => Some(key),
            Err(e) if tagged => pgrx::error!("decoder_sql: cannot check a DDL message: {e}"),
            Err(_) => None,
        };
        sqlgen::channel::check(key, ddl_prefix, msg.prefix, msg.xid, msg.content)
    };
    if !msg.transactional && authenticity == Authenticity::Authentic {
        outside_transactions(out, state, msg);
        return;
    }
    state.buf.clear();
    if authenticity == Authenticity::Forged {
        let text = format!(
            "{FORGED} {} message at {}: not written by decoder_sql's DDL capture; not executed: {}",
            state.options.ddl_prefix,
            msg.lsn,
            String::from_utf8_lossy(msg.content.trim_ascii_end())
        );
        render_comment(&mut state.buf, text.as_bytes());
    } else if authenticity == Authenticity::Authentic {
        // DDL may change the triggers: they are as the source had them when it runs.
        if !state.txn.triggers_off.is_empty() {
            super::triggers::switch_back_on(out, state);
        }
        let sql = msg.content.trim_ascii_end();
        if sql.is_empty() {
            return;
        }
        // Verbatim text must end where a statement may end and hold no transaction control:
        // otherwise it could swallow or forge the stream's own BEGIN/COMMIT lines.
        match check_verbatim(sql) {
            Ok(ending) => {
                state.buf.extend_from_slice(sql);
                match ending {
                    Ending::Complete => {}
                    Ending::NeedsSemicolon => state.buf.push(b';'),
                    // After a trailing `-- comment` the `;` needs a line of its own.
                    Ending::NeedsSemicolonOnNewLine => state.buf.extend_from_slice(b"\n;"),
                }
            }
            Err(problem) => {
                let why = match problem {
                    StatementProblem::Unterminated => "leaves a quote or comment open".to_owned(),
                    StatementProblem::TransactionControl(word) => {
                        format!("contains transaction control ({word})")
                    }
                };
                refuse(state, msg, &format!("it {why}"), sql);
            }
        }
    } else if state.options.include_messages {
        let text = format!(
            "message prefix={} transactional={} lsn={}: {}",
            String::from_utf8_lossy(msg.prefix),
            msg.transactional,
            msg.lsn,
            String::from_utf8_lossy(msg.content)
        );
        render_comment(&mut state.buf, text.as_bytes());
    } else {
        return;
    }
    if msg.transactional {
        emit(out, state);
    } else {
        // Outside any transaction: no BEGIN, and not part of the transaction being decoded.
        out.write(&state.buf);
    }
}

/// An authentic message written outside transactions: one statement that cannot run inside
/// one, on a line of its own marked with its LSN (`sqlgen::txn::render_outside`).
fn outside_transactions(out: &mut Output, state: &mut DecoderState, msg: &Message<'_>) {
    state.buf.clear();
    let sql = msg.content.trim_ascii();
    let one_line_statement =
        !sql.contains(&b'\n') && sql.ends_with(b";") && check_verbatim(sql) == Ok(Ending::Complete);
    if one_line_statement {
        let statement = sql[..sql.len() - 1].trim_ascii_end();
        sqlgen::txn::render_outside(&mut state.buf, statement, msg.lsn);
    } else {
        refuse(state, msg, "not one statement on one line", sql);
    }
    out.write(&state.buf);
}

/// An authentic message that cannot be written as it is: one inert comment saying why.
fn refuse(state: &mut DecoderState, msg: &Message<'_>, why: &str, sql: &[u8]) {
    let text = format!(
        "decoder_sql: refused {} message at {}: {why}; not executed: {}",
        state.options.ddl_prefix,
        msg.lsn,
        String::from_utf8_lossy(sql)
    );
    render_comment(&mut state.buf, text.as_bytes());
}
