//! Logical messages: DDL captured by the extension's event trigger arrives as transactional
//! messages with the DDL prefix and is emitted verbatim, in commit order with the DML.

use super::{Message, Output, emit};
use crate::state::DecoderState;
use sqlgen::lexer::{Ending, StatementProblem, check_verbatim};
use sqlgen::statement::render_comment;

pub fn on_message(out: &mut Output, state: &mut DecoderState, msg: &Message<'_>) {
    let is_ddl = msg.transactional && msg.prefix == state.options.ddl_prefix.as_bytes();
    state.buf.clear();
    if is_ddl {
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
                let text = format!(
                    "decoder_sql: refused {} message at {}: it {why}; not executed: {}",
                    state.options.ddl_prefix,
                    msg.lsn,
                    String::from_utf8_lossy(sql)
                );
                render_comment(&mut state.buf, text.as_bytes());
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
