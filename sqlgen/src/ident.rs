//! Identifier quoting. Pure: no catalog access, no server keyword table.
//!
//! A name stays bare only when it is plain lower-case ASCII (`[a-z_][a-z0-9_$]*`) and no keyword
//! of any category; everything else is double-quoted with `"` doubled. Quoting a little more
//! than the running server would keeps the text valid for later servers with more keywords.

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

/// Appends `name` as an SQL identifier, quoted when needed.
pub fn push_ident(out: &mut Vec<u8>, name: &[u8]) {
    if is_bare_identifier(name) {
        out.extend_from_slice(name);
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
    }

    #[test]
    fn qualified_quotes_each_part() {
        assert_eq!(quote_qualified("public", "User"), "public.\"User\"");
        assert_eq!(quote_qualified("my.schema", "t"), "\"my.schema\".t");
    }
}
