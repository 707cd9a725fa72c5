//! SQL literal spelling. Pure: it takes a value's text output (bytes in the server encoding,
//! which is always ASCII-safe) and never a Datum.
//!
//! Every literal is valid with `standard_conforming_strings = on` and fits on one line: a value
//! holding a control character (newline, tab, ...) is written as an `E'...'` escape string.

/// How a value of a column type is spelled; the decoder chooses it from the type OID.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TypeClass {
    /// int2, int4, int8: bare digits.
    Integer,
    /// float8, numeric: bare, except `'NaN'`, `'Infinity'`, `'-Infinity'` and negative zero
    /// (`'-0'`: a bare `-0` is the integer 0), which are quoted.
    /// (float4 is `Quoted`: a bare `1.1` is numeric, and `real_col = 1.1` compares as float8.)
    Number,
    /// bool: `true` / `false`.
    Bool,
    /// bit, varbit: `B'0101'`.
    Bit,
    /// Everything else: a quoted string literal the server casts to the column type.
    Quoted,
}

/// One column value as the decoder sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cell<'a> {
    Null,
    /// A TOASTed value the change did not modify: its contents are not in the WAL record.
    UnchangedToast,
    /// The type output function's text.
    Text(&'a [u8]),
}

/// Appends the literal for `text` (a non-NULL value of class `class`).
pub fn push_literal(out: &mut Vec<u8>, class: TypeClass, text: &[u8]) {
    match class {
        TypeClass::Integer => out.extend_from_slice(text),
        TypeClass::Number if is_special_number(text) => push_quoted(out, text),
        TypeClass::Number => out.extend_from_slice(text),
        TypeClass::Bool => out.extend_from_slice(if text.first() == Some(&b't') {
            b"true"
        } else {
            b"false"
        }),
        TypeClass::Bit => {
            out.push(b'B');
            push_quoted(out, text);
        }
        TypeClass::Quoted => push_quoted(out, text),
    }
}

/// Appends `null` or the literal of a cell. `UnchangedToast` has no literal; callers leave
/// such columns out and this writes `DEFAULT` only to make a misuse visible, not silent.
pub fn push_cell(out: &mut Vec<u8>, class: TypeClass, cell: Cell<'_>) {
    match cell {
        Cell::Null => out.extend_from_slice(b"null"),
        Cell::Text(text) => push_literal(out, class, text),
        Cell::UnchangedToast => out.extend_from_slice(b"DEFAULT"),
    }
}

/// Values a bare numeric constant cannot spell: NaN, the infinities and negative zero (float8
/// `-0`, `-0e+00` ...; a bare `-0` is the integer 0, which loses the sign).
fn is_special_number(text: &[u8]) -> bool {
    if matches!(text, b"NaN" | b"Infinity" | b"-Infinity") {
        return true;
    }
    let Some(unsigned) = text.strip_prefix(b"-") else {
        return false;
    };
    let mantissa = unsigned
        .split(|&b| b == b'e' || b == b'E')
        .next()
        .unwrap_or_default();
    mantissa.iter().all(|&b| b == b'0' || b == b'.')
}

fn needs_escape_string(text: &[u8]) -> bool {
    text.iter().any(|&b| b < 0x20 || b == 0x7f)
}

/// Appends `text` as a single-quoted literal; `E'...'` when it holds control characters.
pub fn push_quoted(out: &mut Vec<u8>, text: &[u8]) {
    if needs_escape_string(text) {
        push_escape_string(out, text);
        return;
    }
    out.reserve(text.len() + 2);
    out.push(b'\'');
    let mut rest = text;
    while let Some(pos) = rest.iter().position(|&b| b == b'\'') {
        out.extend_from_slice(&rest[..=pos]);
        out.push(b'\'');
        rest = &rest[pos + 1..];
    }
    out.extend_from_slice(rest);
    out.push(b'\'');
}

/// `text` as a single-quoted SQL literal (see [`push_quoted`]).
pub fn quote_literal(text: &str) -> String {
    let mut out = Vec::with_capacity(text.len() + 2);
    push_quoted(&mut out, text.as_bytes());
    String::from_utf8(out).expect("invariant: quoting keeps UTF-8 valid")
}

fn push_escape_string(out: &mut Vec<u8>, text: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.extend_from_slice(b"E'");
    for &b in text {
        match b {
            b'\'' => out.extend_from_slice(b"''"),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            0x08 => out.extend_from_slice(b"\\b"),
            0x0c => out.extend_from_slice(b"\\f"),
            // Always two hex digits, so a following hex digit is never read as part of it.
            b if b < 0x20 || b == 0x7f => {
                out.extend_from_slice(b"\\x");
                out.push(HEX[usize::from(b >> 4)]);
                out.push(HEX[usize::from(b & 0xf)]);
            }
            b => out.push(b),
        }
    }
    out.push(b'\'');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn literal(class: TypeClass, input: &str) -> String {
        let mut out = Vec::new();
        push_literal(&mut out, class, input.as_bytes());
        String::from_utf8(out).unwrap()
    }

    macro_rules! literal_cases {
        ($($name:ident: $class:ident, $input:expr => $want:expr;)*) => {$(
            #[test]
            fn $name() {
                assert_eq!(literal(TypeClass::$class, $input), $want);
            }
        )*};
    }

    literal_cases! {
        int_bare:            Integer, "-42"        => "-42";
        number_bare:         Number,  "1.50"       => "1.50";
        number_exponent:     Number,  "1e+300"     => "1e+300";
        number_nan:          Number,  "NaN"        => "'NaN'";
        number_inf:          Number,  "Infinity"   => "'Infinity'";
        number_neg_inf:      Number,  "-Infinity"  => "'-Infinity'";
        number_neg_zero:     Number,  "-0"         => "'-0'";
        number_neg_zero_dot: Number,  "-0.000"     => "'-0.000'";
        number_neg_zero_exp: Number,  "-0e+00"     => "'-0e+00'";
        number_zero:         Number,  "0"          => "0";
        number_negative:     Number,  "-0.5"       => "-0.5";
        number_neg_tiny:     Number,  "-5e-324"    => "-5e-324";
        number_neg_ten:      Number,  "-10"        => "-10";
        quoted_neg_zero:     Quoted,  "-0"         => "'-0'";
        quoted_nan:          Quoted,  "NaN"        => "'NaN'";
        quoted_infinity:     Quoted,  "infinity"   => "'infinity'";
        quoted_bc_date:      Quoted,  "0044-03-15 BC" => "'0044-03-15 BC'";
        bool_true:           Bool,    "t"          => "true";
        bool_false:          Bool,    "f"          => "false";
        bit_prefixed:        Bit,     "1010"       => "B'1010'";
        text_plain:          Quoted,  "abc"        => "'abc'";
        text_empty:          Quoted,  ""           => "''";
        text_quote_doubled:  Quoted,  "it's"       => "'it''s'";
        text_only_quotes:    Quoted,  "''"         => "''''''";
        text_backslash:      Quoted,  r"a\b"       => r"'a\b'";
        bytea_hex:           Quoted,  r"\x00ff"    => r"'\x00ff'";
        text_unicode:        Quoted,  "z\u{fc}rich \u{1f600}" => "'z\u{fc}rich \u{1f600}'";
        text_newline:        Quoted,  "a\nb"       => r"E'a\nb'";
        text_crlf_tab:       Quoted,  "a\r\n\tb"   => r"E'a\r\n\tb'";
        text_escape_both:    Quoted,  "it's\n\\"   => r"E'it''s\n\\'";
        text_control_hex:    Quoted,  "\u{1}f"     => r"E'\x01f'";
        text_delete_char:    Quoted,  "\u{7f}"     => r"E'\x7f'";
        text_bell_form_feed: Quoted,  "\u{8}\u{c}" => r"E'\b\f'";
    }

    #[test]
    fn cells() {
        let mut out = Vec::new();
        push_cell(&mut out, TypeClass::Integer, Cell::Null);
        out.push(b' ');
        push_cell(&mut out, TypeClass::Integer, Cell::Text(b"7"));
        assert_eq!(out, b"null 7");
    }

    #[test]
    fn no_literal_spans_lines() {
        for b in 0u8..=0x7f {
            let mut out = Vec::new();
            push_quoted(&mut out, &[b'x', b, b'y']);
            assert!(
                !out.contains(&b'\n') && !out.contains(&b'\r'),
                "byte {b:#x}"
            );
        }
    }
}
