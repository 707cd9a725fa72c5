//! Encryption at rest with age (X25519 recipients).
//!
//! An encrypted repository stores every segment, base dump and globals file as an age file
//! (`….sql.zst.age`): SQL text, zstd-compressed, then encrypted. A person with the private
//! key reads one with `age -d -i key.txt FILE | zstd -d`. The manifest, which holds no row
//! data, stays readable, and its checksums cover the stored (encrypted) bytes, so `verify`
//! checks a repository without the key.
//!
//! Writers need only the public recipients, recorded in the manifest at `init`. Readers of
//! contents (`restore`, `verify --content`) load the private identities once per process
//! with [`load_identities`].

use crate::error::{Error, Result};
use age::x25519;
use std::io::{BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// Suffix of an age-encrypted repository file.
pub const SUFFIX: &str = ".age";

/// Whether a repository file is encrypted, by its name.
pub fn is_encrypted(path: &Path) -> bool {
    path.to_string_lossy().ends_with(SUFFIX)
}

/// Parses age X25519 recipients (`age1…`), as given to `init --encrypt-to`.
pub fn parse_recipients(texts: &[String]) -> Result<Vec<x25519::Recipient>> {
    texts
        .iter()
        .map(|t| {
            t.trim().parse::<x25519::Recipient>().map_err(|e| {
                Error::Invalid(format!(
                    "{t:?} is not an age X25519 recipient (age1…, as printed by age-keygen): {e}"
                ))
            })
        })
        .collect()
}

/// The private identities of this process, with the file they came from.
struct Keyring {
    file: PathBuf,
    identities: Vec<x25519::Identity>,
}

static KEYRING: OnceLock<Keyring> = OnceLock::new();

/// Reads an age identity file (age-keygen's format: `AGE-SECRET-KEY-1…` lines, `#` comments)
/// for the rest of the process. The key itself never reaches an error message or a log.
pub fn load_identities(file: &Path) -> Result<()> {
    let text = std::fs::read_to_string(file).map_err(Error::io(format!(
        "reading the identity file {}",
        file.display()
    )))?;
    let identities = parse_identities(&text).map_err(|line| {
        Error::Invalid(format!(
            "line {line} of {} is not an age X25519 identity (AGE-SECRET-KEY-1…, as \
                 written by age-keygen)",
            file.display()
        ))
    })?;
    if identities.is_empty() {
        return Err(Error::Invalid(format!(
            "{} holds no age identity (AGE-SECRET-KEY-1…)",
            file.display()
        )));
    }
    let _ = KEYRING.set(Keyring {
        file: file.to_owned(),
        identities,
    });
    Ok(())
}

/// The identities in an identity file's text, or the number of the first line that is not one.
fn parse_identities(text: &str) -> std::result::Result<Vec<x25519::Identity>, usize> {
    let mut identities = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        identities.push(line.parse::<x25519::Identity>().map_err(|_| i + 1)?);
    }
    Ok(identities)
}

/// Wraps `output` so that what is written to it is encrypted to `recipients`; the returned
/// writer must be finished with [`age::stream::StreamWriter::finish`].
pub fn encrypt_to<W: Write>(
    recipients: &[x25519::Recipient],
    output: W,
    path: &Path,
) -> Result<age::stream::StreamWriter<W>> {
    let encryptor =
        age::Encryptor::with_recipients(recipients.iter().map(|r| r as &dyn age::Recipient))
            .map_err(|e| Error::Repository(format!("encrypting {}: {e}", path.display())))?;
    encryptor
        .wrap_output(output)
        .map_err(Error::io(format!("encrypting {}", path.display())))
}

/// Opens an encrypted repository file for reading its plaintext.
pub fn decrypt(file: impl Read + Send + 'static, path: &Path) -> Result<Box<dyn Read + Send>> {
    let Some(keyring) = KEYRING.get() else {
        return Err(Error::Invalid(format!(
            "{} is encrypted: give the age identity file that can read it with --identity FILE",
            path.display()
        )));
    };
    let decryptor = age::Decryptor::new_buffered(BufReader::new(file)).map_err(|e| {
        Error::Repository(format!(
            "{} is not a readable age file: {e}",
            path.display()
        ))
    })?;
    let identities = keyring.identities.iter().map(|i| i as &dyn age::Identity);
    match decryptor.decrypt(identities) {
        Ok(reader) => Ok(Box::new(reader)),
        Err(age::DecryptError::NoMatchingKeys) => Err(Error::Invalid(format!(
            "no identity in {} can decrypt {}: it was encrypted to other recipients",
            keyring.file.display(),
            path.display()
        ))),
        Err(e) => Err(Error::Repository(format!(
            "decrypting {} with {}: {e}",
            path.display(),
            keyring.file.display()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use age::secrecy::ExposeSecret;

    #[test]
    fn identities_and_recipients_parse_and_round_trip() {
        let identity = x25519::Identity::generate();
        let secret = identity.to_string().expose_secret().to_owned();
        let text = format!(
            "# created: today\n# public key: {}\n\n{secret}\n",
            identity.to_public()
        );
        let parsed = parse_identities(&text).unwrap();
        assert_eq!(parsed.len(), 1);
        assert_eq!(
            parse_identities("# c\nAGE-SECRET-KEY-1NOTAKEY\n").err(),
            Some(2)
        );
        assert!(parse_recipients(&["age1nope".into()]).is_err());
        let recipients = parse_recipients(&[identity.to_public().to_string()]).unwrap();

        let mut stored = Vec::new();
        let mut w = encrypt_to(&recipients, &mut stored, Path::new("x")).unwrap();
        w.write_all(b"INSERT INTO t VALUES (1);\n").unwrap();
        w.finish().unwrap();
        assert!(!stored.windows(6).any(|w| w == b"INSERT"));
        let decryptor = age::Decryptor::new_buffered(&stored[..]).unwrap();
        let mut plain = String::new();
        decryptor
            .decrypt(parsed.iter().map(|i| i as &dyn age::Identity))
            .unwrap()
            .read_to_string(&mut plain)
            .unwrap();
        assert_eq!(plain, "INSERT INTO t VALUES (1);\n");
    }
}
