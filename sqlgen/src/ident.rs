//! Identifier quoting. Pure: no catalog access, no server keyword table.
//!
//! A name stays bare only when it is plain lower-case ASCII (`[a-z_][a-z0-9_$]*`) and no keyword
//! of any category; everything else is double-quoted with `"` doubled. Quoting a little more
//! than the running server would keeps the text valid for later servers with more keywords.
//!
//! A name holding a control character (line break, tab, ...) is written as a Unicode-escape
//! identifier, `U&"a\000Ab"`, so that every statement stays on one line: the control
//! character becomes `\XXXX` (four hex digits), a backslash is doubled, `"` is doubled.
//! PostgreSQL reads it back as exactly the same name, whatever `standard_conforming_strings`.

use crate::keywords::KEYWORDS;

/// True when `name` can be written without double quotes.
pub fn is_bare_identifier(name: &[u8]) -> bool {
    let Some((&first, rest)) = name.split_first() else {
        return false;
    };
    let first_ok = first.is_ascii_lowercase() || first == b'_';
    let rest_ok = rest
        .iter()
        .all(|&b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'$');
    first_ok && rest_ok && !is_keyword(name)
}

fn is_keyword(name: &[u8]) -> bool {
    KEYWORDS
        .binary_search_by(|kw| kw.as_bytes().cmp(name))
        .is_ok()
}

fn is_control(b: u8) -> bool {
    b < 0x20 || b == 0x7f
}

/// Appends `name` as an SQL identifier, quoted when needed.
pub fn push_ident(out: &mut Vec<u8>, name: &[u8]) {
    if is_bare_identifier(name) {
        out.extend_from_slice(name);
        return;
    }
    if name.iter().any(|&b| is_control(b)) {
        push_unicode_escaped(out, name);
        return;
    }
    out.push(b'"');
    for &b in name {
        if b == b'"' {
            out.push(b'"');
        }
        out.push(b);
    }
    out.push(b'"');
}

/// `U&"..."`: control characters as `\XXXX`, `\` doubled, `"` doubled; everything else
/// (UTF-8 included) as is.
fn push_unicode_escaped(out: &mut Vec<u8>, name: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    out.extend_from_slice(b"U&\"");
    for &b in name {
        match b {
            b'"' => out.extend_from_slice(b"\"\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b if is_control(b) => {
                out.extend_from_slice(b"\\00");
                out.push(HEX[usize::from(b >> 4)]);
                out.push(HEX[usize::from(b & 0xf)]);
            }
            b => out.push(b),
        }
    }
    out.push(b'"');
}

/// Appends `schema.name`, each part quoted when needed.
pub fn push_qualified(out: &mut Vec<u8>, schema: &[u8], name: &[u8]) {
    push_ident(out, schema);
    out.push(b'.');
    push_ident(out, name);
}

/// `name` as an owned, quoted-when-needed identifier.
pub fn quote_ident(name: &str) -> String {
    let mut out = Vec::with_capacity(name.len() + 2);
    push_ident(&mut out, name.as_bytes());
    String::from_utf8(out).expect("invariant: quoting adds only ASCII to valid UTF-8")
}

/// `schema.name` as an owned string, each part quoted when needed.
pub fn quote_qualified(schema: &str, name: &str) -> String {
    format!("{}.{}", quote_ident(schema), quote_ident(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyword_table_is_sorted_for_binary_search() {
        assert!(KEYWORDS.windows(2).all(|w| w[0] < w[1]));
    }

    macro_rules! ident_cases {
        ($($name:ident: $input:literal => $want:literal;)*) => {$(
            #[test]
            fn $name() {
                assert_eq!(quote_ident($input), $want);
            }
        )*};
    }

    ident_cases! {
        plain_lower:        "orders"       => "orders";
        underscore_digits:  "_t1_2"        => "_t1_2";
        dollar_inside:      "a$b"          => "a$b";
        upper_case:         "Orders"       => "\"Orders\"";
        leading_digit:      "1abc"         => "\"1abc\"";
        reserved_keyword:   "select"       => "\"select\"";
        unreserved_keyword: "name"         => "\"name\"";
        newer_keyword:      "json_table"   => "\"json_table\"";
        space:              "my table"     => "\"my table\"";
        double_quote:       "a\"b"         => "\"a\"\"b\"";
        empty:              ""             => "\"\"";
        unicode:            "caf\u{e9}"    => "\"caf\u{e9}\"";
        dollar_first:       "$1"           => "\"$1\"";
        newline:            "a\nb"         => r#"U&"a\000Ab""#;
        crlf_tab:           "\r\n\t"       => r#"U&"\000D\000A\0009""#;
        control_backslash:  "a\\b\n"       => r#"U&"a\\b\000A""#;
        control_quote:      "x\"y\u{1}"    => r#"U&"x""y\0001""#;
        control_delete:     "\u{7f}"       => r#"U&"\007F""#;
        control_unicode:    "\u{e9}\n"     => "U&\"\u{e9}\\000A\"";
        backslash_only:     "a\\b"         => r#""a\b""#;
    }

    #[test]
    fn no_identifier_spans_lines() {
        for b in 0u8..=0x7f {
            let name = [b'x', b, b'y'];
            let mut out = Vec::new();
            push_ident(&mut out, &name);
            assert!(
                !out.iter().any(|&c| is_control(c)),
                "byte {b:#x}: {}",
                String::from_utf8_lossy(&out)
            );
        }
    }

    #[test]
    fn qualified_quotes_each_part() {
        assert_eq!(quote_qualified("public", "User"), "public.\"User\"");
        assert_eq!(quote_qualified("my.schema", "t"), "\"my.schema\".t");
    }
}
