//! The server side of the capture channel (`sqlgen::channel`): the secret key, kept in a file
//! of the data directory that only the server's operating-system user can read, and the
//! writing of signed logical messages.
//!
//! The key is made on first use by whichever process needs it first (a backend that captures
//! DDL, or a walsender that decodes), written to a private temporary file and linked into
//! place, so that concurrent first uses agree on one key. A physical copy of the data
//! directory (pg_basebackup, a standby) carries the key along.

use pgrx::pg_sys;
use sqlgen::channel::KEY_LEN;
use std::ffi::CStr;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::sync::OnceLock;

/// The key file's name in the data directory.
const KEY_FILE: &str = "decoder_sql_channel.key";

static KEY: OnceLock<std::result::Result<[u8; KEY_LEN], String>> = OnceLock::new();

fn key_path() -> PathBuf {
    // SAFETY: DataDir is set by the postmaster before any backend or walsender runs and never
    // changes afterwards.
    let dir = unsafe { CStr::from_ptr(pg_sys::DataDir) };
    PathBuf::from(dir.to_string_lossy().into_owned()).join(KEY_FILE)
}

/// The channel's key, made on first use; an error names the file and the cause.
pub fn key() -> std::result::Result<&'static [u8; KEY_LEN], &'static str> {
    KEY.get_or_init(|| load_or_create(&key_path()))
        .as_ref()
        .map_err(|e| e.as_str())
}

fn load_or_create(path: &std::path::Path) -> std::result::Result<[u8; KEY_LEN], String> {
    let read = |path: &std::path::Path| -> std::result::Result<Option<[u8; KEY_LEN]>, String> {
        match std::fs::read(path) {
            Ok(bytes) => bytes.try_into().map(Some).map_err(|b: Vec<u8>| {
                format!(
                    "{} holds {} bytes, not a {KEY_LEN}-byte key",
                    path.display(),
                    b.len()
                )
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(format!("reading {}: {e}", path.display())),
        }
    };
    if let Some(key) = read(path)? {
        return Ok(key);
    }
    let mut key = [0u8; KEY_LEN];
    // SAFETY: fills exactly KEY_LEN bytes of a local buffer.
    if !unsafe { pg_sys::pg_strong_random(key.as_mut_ptr().cast(), KEY_LEN) } {
        return Err("no strong random numbers for the capture channel's key".into());
    }
    let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .and_then(|mut f| {
            f.write_all(&key)?;
            f.sync_all()
        })
        .map_err(|e| format!("writing {}: {e}", tmp.display()));
    // Whoever links first wins; everyone then reads the file in place.
    let linked = written.and_then(|()| match std::fs::hard_link(&tmp, path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(format!("creating {}: {e}", path.display())),
    });
    let _ = std::fs::remove_file(&tmp);
    linked?;
    read(path)?.ok_or_else(|| format!("{} vanished after it was created", path.display()))
}

/// Writes `content` into the WAL as a transactional logical message the plugin executes: its
/// prefix is `ddl_prefix` with the tag of `content` in this transaction.
pub fn emit(ddl_prefix: &str, content: &[u8]) {
    emit_as(ddl_prefix, content, true);
}

/// Like [`emit`], as a message the plugin writes at once, outside any transaction of the
/// stream, for a statement that cannot run inside one. Still tagged for this transaction.
pub fn emit_outside_transactions(ddl_prefix: &str, content: &[u8]) {
    emit_as(ddl_prefix, content, false);
}

fn emit_as(ddl_prefix: &str, content: &[u8], transactional: bool) {
    let key = match key() {
        Ok(key) => key,
        Err(e) => pgrx::error!("decoder_sql: the capture channel has no key: {e}"),
    };
    // SAFETY: called inside a transaction that may write (DDL just ran in it, or the caller is
    // a function that writes); this assigns the top-level xid if there is none yet, which the
    // message would do anyway.
    let xid = unsafe { pg_sys::GetTopTransactionId() };
    let prefix = sqlgen::channel::signed_prefix(key, ddl_prefix, u32::from(xid), content);
    let prefix = std::ffi::CString::new(prefix).expect("hex digits and the DDL prefix");
    // SAFETY: both buffers are valid for the call; the message is copied into the WAL record.
    unsafe { super::compat::log_logical_message(prefix.as_c_str(), content, transactional) };
}
