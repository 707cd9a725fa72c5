//! Where SQL statements begin and end in a stream of text: quotes (`'…'`, `E'…'` with
//! backslash escapes, `"…"`), dollar quotes (`$tag$…$tag$`), comments (`-- …`, nested
//! `/* … */`) and SQL-standard function bodies (`BEGIN ATOMIC … END`), the way psql splits
//! its input. Every reader of the change stream (stream, verify, status, restore) finds
//! transaction boundaries with it, and decoder_sql checks captured statements with it, so
//! text inside a statement can never be taken for a `BEGIN;`/`COMMIT;` line.
//!
//! Assumes `standard_conforming_strings = on` (the stream's preamble sets it) and a server
//! encoding in which every byte below 0x80 is ASCII (true of all PostgreSQL server encodings).

/// What the lexer is inside of.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Mode {
    /// Plain SQL text.
    Code,
    /// `'…'`; `escapes` for `E'…'`, where a backslash escapes the next byte (`escaped`: the
    /// previous piece ended with that backslash).
    Quote { escapes: bool, escaped: bool },
    /// `"…"`.
    Ident,
    /// `$tag$…$tag$` (tag without the dollars).
    Dollar(Vec<u8>),
    /// `-- …` up to the end of the line.
    LineComment,
    /// `/* … */`, nested to this depth.
    BlockComment(u32),
}

/// Statement boundaries, fed text a piece (usually a line) at a time.
#[derive(Debug, Clone)]
pub struct Lexer {
    mode: Mode,
    /// Whether anything but white space and comments came since the last top-level `;`.
    in_statement: bool,
    /// The statement's first word, upper-cased (up to 16 bytes), once complete.
    first_word: Vec<u8>,
    first_word_done: bool,
    /// The word being read in `Code` mode (upper-cased, capped), for `BEGIN`/`CASE`/`END`.
    word: Vec<u8>,
    /// Length of the word that ended last (capped), to recognise `E'…'`.
    last_word_len: usize,
    /// Open `BEGIN ATOMIC`/`CASE` blocks inside a CREATE FUNCTION/PROCEDURE statement.
    block_depth: u32,
    /// The byte before the current one in `Code` mode (identifier continuation checks).
    prev: u8,
    /// Bytes of a possible dollar-quote opening tag (`$abc`), while it is being read.
    pending_dollar: Option<Vec<u8>>,
    /// Bytes of a possible closing tag being matched inside a dollar quote.
    dollar_match: usize,
    /// A `-` or `/` waiting for its second byte in `Code` mode, or `*`/`/` in a comment.
    pending: u8,
    /// `standard_conforming_strings = off`: plain `'…'` strings take backslash escapes too.
    backslash_strings: bool,
    /// Statements ended so far, empty ones (`;;`) not counted, as the server counts them.
    statements_ended: u64,
}

impl Default for Lexer {
    fn default() -> Self {
        Lexer::new()
    }
}

fn is_ident_start(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'_' || b >= 0x80
}

fn is_ident_byte(b: u8) -> bool {
    is_ident_start(b) || b.is_ascii_digit() || b == b'$'
}

const WORD_CAP: usize = 16;

impl Lexer {
    pub fn new() -> Self {
        Lexer {
            mode: Mode::Code,
            in_statement: false,
            first_word: Vec::new(),
            first_word_done: false,
            word: Vec::new(),
            last_word_len: 0,
            block_depth: 0,
            prev: b'\n',
            pending_dollar: None,
            dollar_match: 0,
            pending: 0,
            backslash_strings: false,
            statements_ended: 0,
        }
    }

    /// How many non-empty statements have ended (at a top-level `;`) in the text so far: the
    /// server answers each with one CommandComplete, so a failure's statement can be found
    /// from how many completed.
    pub fn statements_ended(&self) -> u64 {
        self.statements_ended
    }

    /// Reads text written for `standard_conforming_strings = off` (plain literals take
    /// backslash escapes).
    pub fn set_standard_conforming_strings(&mut self, on: bool) {
        self.backslash_strings = !on;
    }

    /// Whether the text so far ends between statements: outside every quote and comment
    /// (a `--` comment counts as ended only after its newline), with nothing but white space
    /// and comments since the last top-level `;`.
    pub fn at_statement_boundary(&self) -> bool {
        self.mode == Mode::Code
            && !self.in_statement
            && self.pending == 0
            && self.pending_dollar.is_none()
    }

    /// Whether the text so far ends outside every quote and comment and outside an open
    /// `BEGIN ATOMIC` body (a statement may still be unfinished).
    pub fn at_top_level(&self) -> bool {
        self.mode == Mode::Code && self.block_depth == 0 && self.pending_dollar.is_none()
    }

    /// Feeds the next piece of text; calls `on_statement_end(first_word)` at every top-level
    /// `;`, with the ended statement's first word upper-cased.
    pub fn feed_with(&mut self, text: &[u8], mut on_statement_end: impl FnMut(&[u8])) {
        let mut i = 0;
        while i < text.len() {
            let b = text[i];
            match &mut self.mode {
                Mode::Code => {
                    if let Some(tag) = &mut self.pending_dollar {
                        if b == b'$' {
                            let tag = std::mem::take(tag);
                            self.pending_dollar = None;
                            self.mode = Mode::Dollar(tag);
                            self.dollar_match = 0;
                            self.prev = b'$';
                            i += 1;
                            continue;
                        }
                        if is_ident_byte(b) && b != b'$' && !(tag.is_empty() && b.is_ascii_digit())
                        {
                            tag.push(b);
                            i += 1;
                            continue;
                        }
                        // `$1` or `$abc` not closed: an ordinary token after all.
                        self.pending_dollar = None;
                    }
                    if self.pending != 0 {
                        let first = std::mem::take(&mut self.pending);
                        match (first, b) {
                            (b'-', b'-') => {
                                self.end_word();
                                self.mode = Mode::LineComment;
                                i += 1;
                                continue;
                            }
                            (b'/', b'*') => {
                                self.end_word();
                                self.mode = Mode::BlockComment(1);
                                i += 1;
                                continue;
                            }
                            _ => self.code_byte(first, &mut on_statement_end),
                        }
                    }
                    if b == b'-' || b == b'/' {
                        self.pending = b;
                    } else {
                        self.code_byte(b, &mut on_statement_end);
                    }
                }
                Mode::Quote { escapes, escaped } => {
                    if *escaped {
                        *escaped = false; // the escaped byte, whatever it is
                        i += 1;
                        continue;
                    }
                    if *escapes && b == b'\\' {
                        *escaped = true;
                        i += 1;
                        continue;
                    }
                    if b == b'\'' {
                        // A doubled quote stays inside; the lookahead may cross a piece
                        // boundary, where `''` then reads as close + reopen: same result.
                        if text.get(i + 1) == Some(&b'\'') {
                            i += 2;
                            continue;
                        }
                        self.mode = Mode::Code;
                        self.prev = b'\'';
                    }
                }
                Mode::Ident => {
                    if b == b'"' {
                        self.mode = Mode::Code;
                        self.prev = b'"';
                    }
                }
                Mode::Dollar(tag) => {
                    // Match `$tag$`, tracking how much of it the text so far ends with.
                    let want = |k: usize| -> u8 {
                        if k == 0 || k == tag.len() + 1 {
                            b'$'
                        } else {
                            tag[k - 1]
                        }
                    };
                    if b == want(self.dollar_match) {
                        self.dollar_match += 1;
                        if self.dollar_match == tag.len() + 2 {
                            self.mode = Mode::Code;
                            self.dollar_match = 0;
                            self.prev = b'$';
                        }
                    } else {
                        self.dollar_match = usize::from(b == b'$');
                    }
                }
                Mode::LineComment => {
                    if b == b'\n' {
                        self.mode = Mode::Code;
                        self.prev = b'\n';
                    }
                }
                Mode::BlockComment(depth) => {
                    let first = std::mem::take(&mut self.pending);
                    match (first, b) {
                        (b'*', b'/') => {
                            *depth -= 1;
                            if *depth == 0 {
                                self.mode = Mode::Code;
                                self.prev = b' ';
                            }
                        }
                        (b'/', b'*') => *depth += 1,
                        _ => {
                            if b == b'*' || b == b'/' {
                                self.pending = b;
                            }
                        }
                    }
                }
            }
            i += 1;
        }
    }

    /// Feeds the next piece of text.
    pub fn feed(&mut self, text: &[u8]) {
        self.feed_with(text, |_| {});
    }

    fn code_byte(&mut self, b: u8, on_statement_end: &mut impl FnMut(&[u8])) {
        let prev = self.prev;
        self.prev = b;
        if is_ident_byte(b) && (is_ident_byte(prev) || is_ident_start(b)) {
            if !is_ident_byte(prev) {
                self.word.clear();
            }
            if self.word.len() < WORD_CAP {
                self.word.push(b.to_ascii_uppercase());
            }
            if !self.in_statement {
                self.in_statement = true;
            }
            return;
        }
        self.end_word();
        if b.is_ascii_whitespace() {
            return;
        }
        let had_text = self.in_statement;
        self.in_statement = true;
        match b {
            b'\'' => {
                // E'…' (and e'…') take backslash escapes; a preceding E that is part of a
                // longer word (`DATE'…'` is not a thing, but `somee'…'` is two tokens) does not.
                let escapes = self.backslash_strings
                    || (matches!(prev, b'E' | b'e') && self.word_was_single_e());
                self.mode = Mode::Quote {
                    escapes,
                    escaped: false,
                };
            }
            b'"' => self.mode = Mode::Ident,
            b'$' if !is_ident_byte(prev) => self.pending_dollar = Some(Vec::new()),
            b';' if self.block_depth == 0 => {
                on_statement_end(&self.first_word);
                if had_text {
                    self.statements_ended += 1;
                }
                self.in_statement = false;
                self.first_word.clear();
                self.first_word_done = false;
            }
            _ => {}
        }
    }

    /// Whether the word just before the current quote was exactly `E`.
    fn word_was_single_e(&self) -> bool {
        self.last_word_len == 1
    }

    /// A word ended: note the statement's first word and `BEGIN ATOMIC`/`CASE`/`END` nesting.
    fn end_word(&mut self) {
        if self.word.is_empty() {
            self.last_word_len = 0;
            return;
        }
        let word = std::mem::take(&mut self.word);
        self.last_word_len = word.len();
        if !self.first_word_done {
            self.first_word = word.clone();
            self.first_word_done = true;
        }
        // psql's rule: inside CREATE [OR REPLACE] FUNCTION/PROCEDURE, BEGIN opens a body
        // that ends with END, CASE … END nests in it, and `;` inside does not end the
        // statement.
        if self.first_word == b"CREATE" {
            match word.as_slice() {
                b"BEGIN" => self.block_depth += 1,
                b"CASE" if self.block_depth > 0 => self.block_depth += 1,
                b"END" if self.block_depth > 0 => self.block_depth -= 1,
                _ => {}
            }
        }
        self.word = word;
        self.word.clear();
    }
}

/// Byte offsets where `keyword` (ASCII, any case) stands as a whole word outside quotes and
/// comments.
pub fn keyword_positions(text: &[u8], keyword: &str) -> Vec<usize> {
    keyword_positions_with_depth(text, keyword)
        .into_iter()
        .map(|(at, _)| at)
        .collect()
}

/// Like [`keyword_positions`], with the parenthesis depth at each place.
pub fn keyword_positions_with_depth(text: &[u8], keyword: &str) -> Vec<(usize, u32)> {
    let word = keyword.as_bytes();
    let mut lexer = Lexer::new();
    let mut found = Vec::new();
    let mut depth = 0u32;
    for (i, &b) in text.iter().enumerate() {
        let in_code =
            lexer.mode == Mode::Code && lexer.pending == 0 && lexer.pending_dollar.is_none();
        if in_code && b == b'(' {
            depth += 1;
        } else if in_code && b == b')' {
            depth = depth.saturating_sub(1);
        }
        let starts_word = lexer.mode == Mode::Code
            && lexer.pending == 0
            && lexer.pending_dollar.is_none()
            && !is_ident_byte(lexer.prev)
            && text.len() - i >= word.len()
            && text[i..i + word.len()].eq_ignore_ascii_case(word)
            && text.get(i + word.len()).is_none_or(|&n| !is_ident_byte(n));
        if starts_word {
            found.push((i, depth));
        }
        lexer.feed(&[b]);
    }
    found
}

/// The end of a (possibly qualified, possibly quoted) name starting at `at`: the offset just
/// past it, skipping white space around dots.
pub fn name_end(text: &[u8], mut at: usize) -> Option<usize> {
    let skip_space = |mut i: usize| {
        while i < text.len() && text[i].is_ascii_whitespace() {
            i += 1;
        }
        i
    };
    loop {
        at = skip_space(at);
        if text.get(at) == Some(&b'"') {
            at += 1;
            loop {
                match text.get(at) {
                    None => return None,
                    Some(b'"') if text.get(at + 1) == Some(&b'"') => at += 2,
                    Some(b'"') => {
                        at += 1;
                        break;
                    }
                    Some(_) => at += 1,
                }
            }
        } else if text.get(at).is_some_and(|&b| is_ident_start(b)) {
            while text.get(at).is_some_and(|&b| is_ident_byte(b)) {
                at += 1;
            }
        } else {
            return None;
        }
        let next = skip_space(at);
        if text.get(next) == Some(&b'.') {
            at = next + 1;
        } else {
            return Some(at);
        }
    }
}

/// The end of the string constant starting at `at` (`'…'`, `E'…'`, `U&'…'`, `$tag$…$tag$`):
/// the offset just past it. None when no string constant starts there or it does not end.
pub fn string_constant_end(text: &[u8], at: usize) -> Option<usize> {
    let rest = text.get(at..)?;
    let prefix = match rest {
        [b'E' | b'e', b'\'', ..] => 1,
        [b'U' | b'u', b'&', b'\'', ..] => 2,
        [b'\'' | b'$', ..] => 0,
        _ => return None,
    };
    let mut lexer = Lexer::new();
    let mut opened = false;
    for (i, &b) in rest.iter().enumerate() {
        lexer.feed(&[b]);
        let inside = lexer.mode != Mode::Code || lexer.pending_dollar.is_some();
        if inside {
            opened = true;
        } else if opened {
            // `'it''s'` is one constant: a quote right after the closing one continues it.
            let quoted = rest[prefix] == b'\'';
            if !(quoted && rest.get(i + 1) == Some(&b'\'')) {
                return Some(at + i + 1);
            }
        } else if i >= prefix {
            return None;
        }
    }
    None
}

/// `text` with each parameter reference (`$1`, `$2`, … outside quotes and comments) replaced
/// by `replacement(n)`. None when a parameter has no replacement.
pub fn replace_parameters(
    text: &str,
    replacement: impl Fn(usize) -> Option<String>,
) -> Option<String> {
    let bytes = text.as_bytes();
    let mut lexer = Lexer::new();
    let mut out = String::with_capacity(text.len());
    let mut copied = 0;
    let mut i = 0;
    while i < bytes.len() {
        let at_parameter = bytes[i] == b'$'
            && lexer.mode == Mode::Code
            && lexer.pending == 0
            && lexer.pending_dollar.is_none()
            && !is_ident_byte(lexer.prev)
            && bytes.get(i + 1).is_some_and(u8::is_ascii_digit);
        if at_parameter {
            let end = (i + 1..bytes.len())
                .find(|&j| !bytes[j].is_ascii_digit())
                .unwrap_or(bytes.len());
            let n: usize = text[i + 1..end].parse().ok()?;
            out.push_str(&text[copied..i]);
            out.push_str(&replacement(n)?);
            copied = end;
            // The lexer sees a harmless stand-in of the same shape.
            lexer.feed(b"0");
            i = end;
            continue;
        }
        lexer.feed(&bytes[i..=i]);
        i += 1;
    }
    out.push_str(&text[copied..]);
    Some(out)
}

/// The `)` that closes the `(` at `open`, outside quotes and comments.
pub fn matching_paren(text: &[u8], open: usize) -> Option<usize> {
    let mut lexer = Lexer::new();
    let mut depth = 0u32;
    for (i, &b) in text.iter().enumerate().skip(open) {
        let in_code =
            lexer.mode == Mode::Code && lexer.pending == 0 && lexer.pending_dollar.is_none();
        if in_code && b == b'(' {
            depth += 1;
        } else if in_code && b == b')' {
            depth = depth.checked_sub(1)?;
            if depth == 0 {
                return Some(i);
            }
        }
        lexer.feed(&[b]);
    }
    None
}

/// Text written for `standard_conforming_strings = off` in the form that means the same with
/// it on: every plain `'…'` literal (where a backslash escapes) becomes `E'…'`. Literals that
/// already have a prefix (`E`, `B`, `X`, `N`, `U&`), quoted identifiers, dollar quotes and
/// comments are left as they are.
pub fn with_standard_strings(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut lexer = Lexer::new();
    lexer.set_standard_conforming_strings(false);
    let mut out = String::with_capacity(text.len() + 8);
    let mut copied = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let opens_literal = b == b'\''
            && lexer.mode == Mode::Code
            && lexer.pending == 0
            && lexer.pending_dollar.is_none();
        if opens_literal {
            let prefixed = is_ident_byte(lexer.prev) && {
                // The word right before the quote: a literal prefix, or a keyword that
                // touches the quote (`DEFAULT'x'`).
                let start = bytes[..i]
                    .iter()
                    .rposition(|&c| !is_ident_byte(c))
                    .map_or(0, |p| p + 1);
                matches!(
                    &bytes[start..i],
                    b"E" | b"e" | b"B" | b"b" | b"X" | b"x" | b"N" | b"n"
                )
            };
            let unicode = lexer.prev == b'&';
            if !prefixed && !unicode {
                out.push_str(&text[copied..i]);
                if is_ident_byte(lexer.prev) {
                    out.push(' ');
                }
                out.push('E');
                copied = i;
            }
        }
        lexer.feed(&[b]);
    }
    out.push_str(&text[copied..]);
    out
}

/// Why a captured statement cannot be written into the stream as it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StatementProblem {
    /// It leaves a quote, comment or body open: whatever follows would be read as part of it.
    Unterminated,
    /// A statement in it is transaction control (`BEGIN`, `COMMIT`, …), which could be taken
    /// for the stream's own framing.
    TransactionControl(String),
}

/// How verbatim text ends, when it passes [`check_verbatim`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// Between statements (possibly in a trailing `--` comment): write it as it is.
    Complete,
    /// Inside its last statement: append `;`.
    NeedsSemicolon,
    /// Inside a `--` comment after an unfinished statement: append a newline and `;`.
    NeedsSemicolonOnNewLine,
}

/// Checks text that is to be written into the stream verbatim (captured DDL): it must end
/// outside every quote, block comment and body, and contain no transaction-control statement.
pub fn check_verbatim(text: &[u8]) -> Result<Ending, StatementProblem> {
    check_with(Lexer::new(), text)
}

fn check_with(mut lexer: Lexer, text: &[u8]) -> Result<Ending, StatementProblem> {
    let mut problem = None;
    lexer.feed_with(text, |first| {
        if problem.is_none() && is_transaction_control(first) {
            problem = Some(StatementProblem::TransactionControl(
                String::from_utf8_lossy(first).into_owned(),
            ));
        }
    });
    if let Some(p) = problem {
        return Err(p);
    }
    lexer.end_word();
    let in_comment = match lexer.mode {
        Mode::Code if lexer.block_depth == 0 && lexer.pending_dollar.is_none() => false,
        Mode::LineComment if lexer.block_depth == 0 => true,
        _ => return Err(StatementProblem::Unterminated),
    };
    if !lexer.in_statement {
        return Ok(Ending::Complete);
    }
    // The unfinished last statement gets its `;` here, so it is checked too.
    if is_transaction_control(&lexer.first_word) {
        return Err(StatementProblem::TransactionControl(
            String::from_utf8_lossy(&lexer.first_word).into_owned(),
        ));
    }
    Ok(if in_comment {
        Ending::NeedsSemicolonOnNewLine
    } else {
        Ending::NeedsSemicolon
    })
}

/// Statements that begin, end or shape a transaction.
fn is_transaction_control(first_word: &[u8]) -> bool {
    matches!(
        first_word,
        b"BEGIN"
            | b"COMMIT"
            | b"END"
            | b"ROLLBACK"
            | b"ABORT"
            | b"START"
            | b"SAVEPOINT"
            | b"RELEASE"
            | b"PREPARE"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `text` line by line; returns, for each line, whether it starts at a statement
    /// boundary, and the first words of the statements that ended.
    fn lines(text: &str) -> (Vec<bool>, Vec<String>) {
        let mut lexer = Lexer::new();
        let mut starts = Vec::new();
        let mut ended = Vec::new();
        for line in text.split_inclusive('\n') {
            starts.push(lexer.at_statement_boundary());
            lexer.feed_with(line.as_bytes(), |w| {
                ended.push(String::from_utf8_lossy(w).into_owned())
            });
        }
        (starts, ended)
    }

    #[test]
    fn one_statement_per_line() {
        let (starts, ended) = lines(
            "BEGIN; -- xid=1\nINSERT INTO t VALUES (1, 'a;b');\nCOMMIT; -- xid=1 end_lsn=0/1\n",
        );
        assert_eq!(starts, [true, true, true]);
        assert_eq!(ended, ["BEGIN", "INSERT", "COMMIT"]);
    }

    #[test]
    fn counts_statements_as_the_server_does() {
        let mut lexer = Lexer::new();
        lexer.feed(b"BEGIN;; -- x; y\nSELECT 'a;b'; /* ; */ ;\n");
        assert_eq!(lexer.statements_ended(), 2);
        lexer
            .feed(b"CREATE FUNCTION f() RETURNS int LANGUAGE sql\nBEGIN ATOMIC\nSELECT 1;\nEND;\n");
        assert_eq!(lexer.statements_ended(), 3);
    }

    #[test]
    fn framing_lines_inside_strings_are_not_boundaries() {
        for text in [
            "COMMENT ON TABLE t IS 'Usage:\nBEGIN;\nCOMMIT;\n';\n",
            "COMMENT ON TABLE t IS E'it\\'s\nCOMMIT;\n';\n",
            "CREATE FUNCTION f() RETURNS void LANGUAGE plpgsql AS $body$\nBEGIN\nCOMMIT;\nEND $body$;\n",
            "CREATE FUNCTION f() RETURNS text LANGUAGE sql AS $$\nSELECT 'x';\nCOMMIT;\n$$;\n",
            "CREATE TABLE \"a;\nCOMMIT;\n\" (x int);\n",
            "/* a comment\nCOMMIT;\n/* nested */\nCOMMIT;\n*/ SELECT 1;\n",
            "SELECT 1 -- trailing ; comment\n, 2;\n",
        ] {
            let (starts, ended) = lines(text);
            let n = starts.len();
            assert!(starts[0], "{text:?}");
            assert!(starts[1..].iter().all(|s| !s), "{text:?}: {starts:?}");
            assert_eq!(ended.len(), 1, "{text:?}: {ended:?}");
            assert!(n >= 2);
        }
    }

    #[test]
    fn sql_standard_function_bodies_end_at_their_end() {
        let text = "CREATE FUNCTION f(a int) RETURNS int LANGUAGE sql\nBEGIN ATOMIC\n  SELECT CASE WHEN a > 0 THEN 1 ELSE 0 END;\n  SELECT 2;\nEND;\nCOMMIT; -- xid=3\n";
        let (starts, ended) = lines(text);
        assert_eq!(starts, [true, false, false, false, false, true]);
        assert_eq!(ended, ["CREATE", "COMMIT"]);
    }

    #[test]
    fn dollar_signs_that_are_not_quotes() {
        // $1 parameters and identifiers containing $ open nothing.
        let (starts, ended) = lines("PREPARE p AS SELECT $1;\nSELECT a$b$ FROM t;\nSELECT 1;\n");
        assert_eq!(starts, [true, true, true]);
        assert_eq!(ended.len(), 3);
        // A tagged quote ends only at its own tag.
        let (starts, _) = lines("SELECT $a$ $b$ ;\n$a$;\nSELECT 1;\n");
        assert_eq!(starts, [true, false, true]);
    }

    #[test]
    fn escapes_only_in_e_strings() {
        // Standard string: the backslash is a plain byte, the quote after it closes.
        let (starts, _) = lines("SELECT 'C:\\';\nSELECT 1;\n");
        assert_eq!(starts, [true, true]);
        // E string: the quote after the backslash is escaped.
        let (starts, _) = lines("SELECT E'C:\\';\n';\nSELECT 1;\n");
        assert_eq!(starts, [true, false, true]);
        // A backslash at the end of a piece escapes the first byte of the next one.
        let mut lexer = Lexer::new();
        lexer.feed(b"SELECT E'a\\");
        lexer.feed(b"'b';");
        assert!(lexer.at_statement_boundary());
        // A word ending in E is not an E string.
        let (starts, _) = lines("SELECT some'\\';\nSELECT 1;\n");
        assert_eq!(starts, [true, true]);
    }

    #[test]
    fn keywords_outside_quotes_and_comments() {
        let text = b"ALTER TABLE \"concurrently\" DETACH PARTITION concurrently_p -- concurrently\n CONCURRENTLY";
        assert_eq!(keyword_positions(text, "concurrently"), [text.len() - 12]);
        assert_eq!(
            keyword_positions(b"CREATE INDEX CONCURRENTLY i ON t (x)", "CONCURRENTLY"),
            [13]
        );
        assert!(keyword_positions(b"SELECT 'concurrently'", "concurrently").is_empty());
    }

    #[test]
    fn literals_written_for_backslash_strings() {
        assert_eq!(
            with_standard_strings("COMMENT ON TABLE t IS 'it\\'s C:\\\\new'"),
            "COMMENT ON TABLE t IS E'it\\'s C:\\\\new'"
        );
        assert_eq!(
            with_standard_strings(
                "SELECT DEFAULT'x', E'y', B'1', x'ff', N'z', U&'a', $$'$$, \"'\" -- 'c'"
            ),
            "SELECT DEFAULT E'x', E'y', B'1', x'ff', N'z', U&'a', $$'$$, \"'\" -- 'c'"
        );
        assert_eq!(with_standard_strings("SELECT 1"), "SELECT 1");
    }

    #[test]
    fn captured_text_checks() {
        assert_eq!(
            check_verbatim(b"CREATE TABLE t (a int);"),
            Ok(Ending::Complete)
        );
        assert_eq!(
            check_verbatim(b"CREATE TABLE t (a int)"),
            Ok(Ending::NeedsSemicolon)
        );
        assert_eq!(
            check_verbatim(b"CREATE TABLE t AS SELECT 1 WITH DATA -- note"),
            Ok(Ending::NeedsSemicolonOnNewLine)
        );
        assert_eq!(
            check_verbatim(b"-- decoder_sql: NOT CAPTURED: x"),
            Ok(Ending::Complete)
        );
        assert_eq!(
            check_verbatim(b"SET search_path = a; CREATE TABLE b (x text DEFAULT 'COMMIT;');"),
            Ok(Ending::Complete)
        );
        assert_eq!(
            check_verbatim(b"SELECT 1;\nCOMMIT; -- xid=1 end_lsn=FF/FFFFFF00\nBEGIN; -- xid=2"),
            Err(StatementProblem::TransactionControl("COMMIT".into()))
        );
        assert_eq!(
            check_verbatim(b"ALTER ROLE me SUPERUSER; commit"),
            Err(StatementProblem::TransactionControl("COMMIT".into()))
        );
        assert_eq!(
            check_verbatim(b"SELECT 'unterminated"),
            Err(StatementProblem::Unterminated)
        );
        assert_eq!(
            check_verbatim(b"SELECT $x$ open"),
            Err(StatementProblem::Unterminated)
        );
        assert_eq!(
            check_verbatim(b"SELECT 1 /* open"),
            Err(StatementProblem::Unterminated)
        );
        assert_eq!(
            check_verbatim(b"CREATE PROCEDURE p() LANGUAGE sql BEGIN ATOMIC SELECT 1; END;"),
            Ok(Ending::Complete)
        );
    }
}
