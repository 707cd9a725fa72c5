//! Text in a server encoding other than UTF-8, carried through this crate's string functions.
//! A database need not be UTF-8 (LATIN1, EUC_JP, SQL_ASCII …) while Rust strings are: text
//! that is not valid UTF-8 is read with each byte as the character of the same number, and
//! turned back into exactly those bytes afterwards. The functions that rewrite statements only
//! add or remove ASCII, and every server encoding is ASCII-safe (each byte of a multibyte
//! character is 0x80 or above), so nothing else changes.

/// How bytes were read into a string.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Spelling {
    /// Valid UTF-8: the string holds the bytes themselves.
    Utf8,
    /// Each byte as the character U+0000–U+00FF of the same number.
    ByteChars,
}

/// `bytes` as a string that [`to_bytes`] turns back into the same bytes.
pub fn from_bytes(bytes: &[u8]) -> (String, Spelling) {
    match std::str::from_utf8(bytes) {
        Ok(text) => (text.to_owned(), Spelling::Utf8),
        Err(_) => (
            bytes.iter().map(|&b| char::from(b)).collect(),
            Spelling::ByteChars,
        ),
    }
}

/// The bytes of `text`, read by [`from_bytes`] with `spelling`. (A character above U+00FF
/// cannot come from `from_bytes`; it would be written as `?`.)
pub fn to_bytes(text: String, spelling: Spelling) -> Vec<u8> {
    match spelling {
        Spelling::Utf8 => text.into_bytes(),
        Spelling::ByteChars => text
            .chars()
            .map(|c| u8::try_from(u32::from(c)).unwrap_or(b'?'))
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_survive_rewriting() {
        for bytes in [
            &b"CREATE TABLE stra\xdfe (c text DEFAULT 'na\xefve')"[..],
            b"\xa4\xb3\xa4\xf3 EUC-JP",
            "ünï".as_bytes(),
            b"plain",
        ] {
            let (text, spelling) = from_bytes(bytes);
            let rewritten = format!(
                "{};",
                text.replace("CREATE TABLE", "CREATE TABLE IF NOT EXISTS")
            );
            let mut want = match bytes.strip_prefix(b"CREATE TABLE") {
                Some(rest) => [&b"CREATE TABLE IF NOT EXISTS"[..], rest].concat(),
                None => bytes.to_vec(),
            };
            want.push(b';');
            assert_eq!(to_bytes(rewritten, spelling), want);
        }
    }

    #[test]
    fn utf8_is_kept_as_it_is() {
        assert_eq!(from_bytes("é".as_bytes()), ("é".to_owned(), Spelling::Utf8));
        assert_eq!(from_bytes(b"\xe9").1, Spelling::ByteChars);
    }
}
