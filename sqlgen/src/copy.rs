//! Turning decoder_sql's INSERT lines into COPY rows, so that a restore can load a run of
//! rows at the speed of `COPY` while the stream itself stays plain, readable SQL.
//!
//! Only the exact shapes decoder_sql writes are accepted (docs/format.md):
//! `INSERT INTO s.t (a, b) [OVERRIDING SYSTEM VALUE] VALUES (<literal>, …);` where every
//! literal is `null`, `true`, `false`, a bare number, `'…'`, `E'…'` or `B'…'`. Anything
//! else returns `None` and the caller sends the statement as it is. A literal and its COPY
//! field reach the same type input function of the column, so the stored value is the same.

/// An INSERT split at its values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Insert<'a> {
    /// Everything up to and including `VALUES (`: two rows belong to one COPY exactly when
    /// their heads are equal.
    pub head: &'a str,
    /// The values between the parentheses, followed by `);`.
    pub values: &'a str,
}

const INSERT_INTO: &str = "INSERT INTO ";
const VALUES: &str = " VALUES (";
const OVERRIDING: &str = " OVERRIDING SYSTEM VALUE";

/// Splits a one-line INSERT (without its newline). `None` for any other statement.
pub fn split_insert(line: &str) -> Option<Insert<'_>> {
    let rest = line.strip_prefix(INSERT_INTO)?;
    let bytes = rest.as_bytes();
    let mut quoted = false;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'"' => quoted = !quoted, // `""` inside a name toggles twice
            b' ' if !quoted && rest[i..].starts_with(VALUES) => {
                let head_end = INSERT_INTO.len() + i + VALUES.len();
                let target = &rest[..i];
                let target = target.strip_suffix(OVERRIDING).unwrap_or(target);
                // The column list: a table name and a parenthesised list, nothing else.
                if !target.ends_with(')') || !target.contains(" (") {
                    return None;
                }
                return Some(Insert {
                    head: &line[..head_end],
                    values: &line[head_end..],
                });
            }
            b'\'' | b'\n' | b';' if !quoted => return None,
            _ => {}
        }
        i += 1;
    }
    None
}

/// The COPY statement that loads the rows of INSERTs with this head:
/// `INSERT INTO s.t (a, b) VALUES (` gives `COPY s.t (a, b) FROM STDIN`. (COPY always
/// stores the given values of identity columns, as `OVERRIDING SYSTEM VALUE` does.)
pub fn copy_statement(head: &str) -> Option<String> {
    let target = head.strip_prefix(INSERT_INTO)?.strip_suffix(VALUES)?;
    let target = target.strip_suffix(OVERRIDING).unwrap_or(target);
    Some(format!("COPY {target} FROM STDIN"))
}

/// The table of an INSERT head, as written (`s.t`, `"S"."T"`).
pub fn head_table(head: &str) -> Option<&str> {
    let target = head.strip_prefix(INSERT_INTO)?;
    let bytes = target.as_bytes();
    let mut quoted = false;
    for (i, &b) in bytes.iter().enumerate() {
        match b {
            b'"' => quoted = !quoted,
            b' ' if !quoted => return Some(&target[..i]),
            _ => {}
        }
    }
    None
}

/// Appends the values of an INSERT (the text after `VALUES (`) as one COPY text-format row
/// ending in a newline. On `None` nothing usable was appended: the caller truncates `out`
/// back and sends the INSERT instead.
pub fn push_copy_row(out: &mut Vec<u8>, values: &str) -> Option<()> {
    let v = values.as_bytes();
    let mut i = 0;
    let mut first = true;
    loop {
        if !first {
            out.push(b'\t');
        }
        first = false;
        i = push_field(out, v, i)?;
        match v.get(i..)? {
            [b',', b' ', ..] => i += 2,
            b");" => {
                out.push(b'\n');
                return Some(());
            }
            _ => return None,
        }
    }
}

/// One literal at `v[i..]` as a COPY field; returns the index just past it.
fn push_field(out: &mut Vec<u8>, v: &[u8], i: usize) -> Option<usize> {
    let rest = &v[i..];
    if rest.starts_with(b"null") {
        out.extend_from_slice(b"\\N");
        return Some(i + 4);
    }
    if rest.starts_with(b"true") {
        out.push(b't');
        return Some(i + 4);
    }
    if rest.starts_with(b"false") {
        out.push(b'f');
        return Some(i + 5);
    }
    match rest.first()? {
        b'\'' => push_string(out, v, i + 1, false),
        b'E' if rest.get(1) == Some(&b'\'') => push_string(out, v, i + 2, true),
        b'B' if rest.get(1) == Some(&b'\'') => {
            // bit input takes a leading `b` as "binary digits follow"
            out.push(b'b');
            let end = push_string(out, v, i + 2, false)?;
            Some(end)
        }
        b'-' | b'.' | b'0'..=b'9' => {
            let len = rest
                .iter()
                .position(|b| !matches!(b, b'0'..=b'9' | b'.' | b'-' | b'+' | b'e' | b'E'))
                .unwrap_or(rest.len());
            out.extend_from_slice(&rest[..len]);
            Some(i + len)
        }
        _ => None,
    }
}

/// The body of a string literal from `v[i]` on: `''` is a quote; with `escapes` (`E'…'`) a
/// backslash starts one of the escapes decoder_sql writes (`\\ \n \r \t \b \f \xHH`),
/// without it (standard conforming `'…'`) it is a character.
fn push_string(out: &mut Vec<u8>, v: &[u8], mut i: usize, escapes: bool) -> Option<usize> {
    loop {
        let b = *v.get(i)?;
        match b {
            b'\'' if v.get(i + 1) == Some(&b'\'') => {
                out.push(b'\'');
                i += 2;
            }
            b'\'' => return Some(i + 1),
            b'\\' if escapes => {
                let (decoded, len) = match *v.get(i + 1)? {
                    b'\\' => (b'\\', 2),
                    b'n' => (b'\n', 2),
                    b'r' => (b'\r', 2),
                    b't' => (b'\t', 2),
                    b'b' => (0x08, 2),
                    b'f' => (0x0c, 2),
                    b'x' => {
                        let hex = std::str::from_utf8(v.get(i + 2..i + 4)?).ok()?;
                        let byte = u8::from_str_radix(hex, 16).ok()?;
                        // Only control characters are written this way; anything else
                        // (or a NUL) is not decoder_sql's.
                        if byte == 0 || (byte >= 0x20 && byte != 0x7f) {
                            return None;
                        }
                        (byte, 4)
                    }
                    _ => return None,
                };
                push_copy_byte(out, decoded);
                i += len;
            }
            b => {
                push_copy_byte(out, b);
                i += 1;
            }
        }
    }
}

/// A data byte in COPY text format: backslash, newline, carriage return and tab escaped.
fn push_copy_byte(out: &mut Vec<u8>, b: u8) {
    match b {
        b'\\' => out.extend_from_slice(b"\\\\"),
        b'\n' => out.extend_from_slice(b"\\n"),
        b'\r' => out.extend_from_slice(b"\\r"),
        b'\t' => out.extend_from_slice(b"\\t"),
        b => out.push(b),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(line: &str) -> Option<String> {
        let insert = split_insert(line)?;
        let mut out = Vec::new();
        push_copy_row(&mut out, insert.values)?;
        Some(String::from_utf8(out).unwrap())
    }

    #[test]
    fn splits_the_head_from_the_values() {
        let line = "INSERT INTO public.t (id, \"a VALUES (b\") VALUES (1, 'x');";
        let insert = split_insert(line).unwrap();
        assert_eq!(
            insert.head,
            "INSERT INTO public.t (id, \"a VALUES (b\") VALUES ("
        );
        assert_eq!(insert.values, "1, 'x');");
        assert_eq!(
            copy_statement(insert.head).unwrap(),
            "COPY public.t (id, \"a VALUES (b\") FROM STDIN"
        );
        assert_eq!(head_table(insert.head), Some("public.t"));
        let quoted = split_insert("INSERT INTO \"s p\".\"T\"\"x\" (a) VALUES (1);").unwrap();
        assert_eq!(head_table(quoted.head), Some("\"s p\".\"T\"\"x\""));
    }

    #[test]
    fn overriding_system_value_is_implied_by_copy() {
        let line = "INSERT INTO s.t (id, a) OVERRIDING SYSTEM VALUE VALUES (5, 1);";
        let insert = split_insert(line).unwrap();
        assert_eq!(
            copy_statement(insert.head).unwrap(),
            "COPY s.t (id, a) FROM STDIN"
        );
        assert_eq!(row(line).unwrap(), "5\t1\n");
    }

    #[test]
    fn other_statements_are_not_inserts() {
        for line in [
            "INSERT INTO s.t DEFAULT VALUES;",
            "INSERT INTO s.t VALUES (1);",
            "UPDATE ONLY s.t SET a = 1 WHERE id = 1;",
            "INSERT INTO s.t (a) SELECT 1;",
            "INSERT INTO s.t (a) VALUES (1), (2);",
            "INSERT INTO s.t (a) VALUES (now());",
            "INSERT INTO s.t (a) VALUES ('1'::int);",
            "INSERT INTO s.t (a) VALUES (DEFAULT);",
            "INSERT INTO s.t (a) VALUES (1); DROP TABLE s.t;",
            "INSERT INTO s.t (a) VALUES ('x')",
            "INSERT INTO s.t (a) VALUES (E'\\u0041');",
            "INSERT INTO s.t (a) VALUES (E'\\x41');",
            "INSERT INTO s.t (a) VALUES ('unterminated);",
        ] {
            assert_eq!(row(line), None, "{line}");
        }
    }

    #[test]
    fn literals_become_copy_fields() {
        let line = "INSERT INTO s.t (a, b, c, d, e, f, g, h, i) VALUES \
                    (null, true, false, -1.5e+10, 'it''s a\\b', E'l1\\nl2\\t\\\\\\x01''', B'0101', '', 'null');";
        assert_eq!(
            row(line).unwrap(),
            "\\N\tt\tf\t-1.5e+10\tit's a\\\\b\tl1\\nl2\\t\\\\\u{1}'\tb0101\t\tnull\n"
        );
    }

    #[test]
    fn a_value_spelled_like_the_copy_null_marker_stays_text() {
        assert_eq!(
            row("INSERT INTO s.t (a) VALUES ('\\N');").unwrap(),
            "\\\\N\n"
        );
    }

    #[test]
    fn text_keeps_multibyte_characters() {
        assert_eq!(
            row("INSERT INTO s.t (a) VALUES ('żółw ☃');").unwrap(),
            "żółw ☃\n"
        );
    }
}
