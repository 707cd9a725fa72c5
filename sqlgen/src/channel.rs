//! The capture channel: DDL captured by the decoder_sql extension reaches the stream as
//! transactional logical messages whose prefix carries an HMAC of the message, keyed by a secret only the
//! server's own processes can read (decoder_sql's `pg::channel`). Anyone may call
//! `pg_logical_emit_message()`, but only the capture can write a message the plugin executes:
//! a message with the DDL prefix and no valid tag is written as an inert comment.
//!
//! The tag binds the message to its transaction (the top-level xid), so a message seen once
//! cannot be replayed in another transaction. Prefix: `<ddl_prefix>:<64 hex digits>`.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Length of the secret key, in bytes.
pub const KEY_LEN: usize = 32;

/// Separates the DDL prefix from the tag.
const TAG_SEPARATOR: u8 = b':';

/// Distinguishes these tags from any other use of the key.
const DOMAIN: &[u8] = b"decoder_sql capture channel v1\0";

fn mac(key: &[u8; KEY_LEN], xid: u32, content: &[u8]) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(DOMAIN);
    mac.update(&xid.to_be_bytes());
    mac.update(content);
    mac
}

/// The prefix under which the capture writes `content` in transaction `xid`.
pub fn signed_prefix(key: &[u8; KEY_LEN], ddl_prefix: &str, xid: u32, content: &[u8]) -> String {
    let tag = mac(key, xid, content).finalize().into_bytes();
    format!("{ddl_prefix}{}{}", TAG_SEPARATOR as char, hex::encode(tag))
}

/// What a message's prefix says about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Authenticity {
    /// Not a DDL message at all.
    Other,
    /// The DDL prefix without a tag, or with one that does not match: not the capture's.
    Forged,
    /// Written by the capture for this transaction.
    Authentic,
}

/// Checks a message's prefix against its content and transaction.
pub fn check(
    key: Option<&[u8; KEY_LEN]>,
    ddl_prefix: &str,
    prefix: &[u8],
    xid: u32,
    content: &[u8],
) -> Authenticity {
    let Some(rest) = prefix.strip_prefix(ddl_prefix.as_bytes()) else {
        return Authenticity::Other;
    };
    let tag = match rest.split_first() {
        None => return Authenticity::Forged, // the bare DDL prefix
        Some((&TAG_SEPARATOR, tag)) => tag,
        Some(_) => return Authenticity::Other, // a longer, unrelated prefix
    };
    let (Some(key), Ok(tag)) = (key, hex::decode(tag)) else {
        return Authenticity::Forged;
    };
    // verify_slice compares in constant time.
    if mac(key, xid, content).verify_slice(&tag).is_ok() {
        Authenticity::Authentic
    } else {
        Authenticity::Forged
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: [u8; KEY_LEN] = [7; KEY_LEN];

    #[test]
    fn only_the_tag_of_this_content_and_transaction_is_authentic() {
        let p = signed_prefix(&KEY, "ddl", 42, b"CREATE TABLE t ();");
        assert!(p.starts_with("ddl:") && p.len() == 4 + 64, "{p}");
        let check = |prefix: &[u8], xid, content: &[u8]| {
            super::check(Some(&KEY), "ddl", prefix, xid, content)
        };
        assert_eq!(
            check(p.as_bytes(), 42, b"CREATE TABLE t ();"),
            Authenticity::Authentic
        );
        assert_eq!(
            check(p.as_bytes(), 43, b"CREATE TABLE t ();"),
            Authenticity::Forged
        );
        assert_eq!(
            check(p.as_bytes(), 42, b"CREATE TABLE u ();"),
            Authenticity::Forged
        );
        assert_eq!(
            check(b"ddl", 42, b"ALTER ROLE me SUPERUSER"),
            Authenticity::Forged
        );
        assert_eq!(check(b"ddl:zz", 42, b"x"), Authenticity::Forged);
        assert_eq!(check(b"ddl:", 42, b"x"), Authenticity::Forged);
        assert_eq!(check(b"other", 42, b"x"), Authenticity::Other);
        assert_eq!(check(b"ddlx", 42, b"x"), Authenticity::Other);
        let other_key = signed_prefix(&[8; KEY_LEN], "ddl", 42, b"CREATE TABLE t ();");
        assert_eq!(
            check(other_key.as_bytes(), 42, b"CREATE TABLE t ();"),
            Authenticity::Forged
        );
        assert_eq!(
            super::check(None, "ddl", p.as_bytes(), 42, b"CREATE TABLE t ();"),
            Authenticity::Forged
        );
    }
}
