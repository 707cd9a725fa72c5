//! Object storage under a repository: `s3://bucket/prefix` on any S3-compatible store.
//!
//! The objects keep the directory layout's names (`manifest.json`, `bases/…`,
//! `segments/…`, `globals/…`) under the prefix, so `aws s3 cp` or `rclone` plus `zstd`
//! read a backup without pgincr. Credentials, region and endpoint come from the standard
//! AWS variables (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`,
//! `AWS_ENDPOINT_URL`, …) or from the profile `AWS_PROFILE` (default `default`) in
//! `~/.aws/credentials` and `~/.aws/config`; never from the command line. A custom
//! endpoint is addressed path-style (`AWS_VIRTUAL_HOSTED_STYLE_REQUEST=true` to change).
//!
//! The rest of pgincr is synchronous file code; this module gives it blocking calls run on
//! a runtime of their own, so they work from any thread.

use crate::{Error, Result};
use bytes::Bytes;
use futures_util::StreamExt;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path as ObjectPath;
use object_store::{
    ObjectStore, PutMode, PutOptions, PutPayload, RetryConfig, UpdateVersion, WriteMultipart,
};
use std::io::Read;
use std::path::Path;
use std::sync::{Arc, OnceLock, mpsc};
use std::time::Duration;

/// Scheme prefix of an object-storage repository.
pub const S3_SCHEME: &str = "s3://";
/// Objects larger than this are uploaded in parts.
const MULTIPART_THRESHOLD: u64 = 16 << 20;
/// Size of one uploaded part (S3 wants at least 5 MiB for all but the last).
const PART_SIZE: usize = 8 << 20;

/// Whether a `--repo` value names object storage.
pub fn is_object_url(repo: &Path) -> bool {
    repo.to_str().is_some_and(|s| s.starts_with(S3_SCHEME))
}

/// `s3://bucket/prefix` split into bucket and prefix (no leading or trailing slash).
pub fn parse_url(url: &str) -> Result<(String, String)> {
    let rest = url
        .strip_prefix(S3_SCHEME)
        .ok_or_else(|| Error::Invalid(format!("{url} is not an s3:// address")))?;
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    let valid_bucket = (3..=63).contains(&bucket.len())
        && bucket
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.');
    if !valid_bucket {
        return Err(Error::Invalid(format!(
            "{url}: \"{bucket}\" is not a bucket name (3 to 63 lowercase letters, digits, '-', '.')"
        )));
    }
    let prefix = prefix.trim_matches('/');
    if prefix.split('/').any(|p| p == "." || p == "..")
        || prefix.contains("//")
        || prefix.chars().any(char::is_control)
    {
        return Err(Error::Invalid(format!(
            "{url}: the prefix must be plain path segments"
        )));
    }
    Ok((bucket.to_owned(), prefix.to_owned()))
}

/// One stored object as listed.
#[derive(Debug, Clone)]
pub struct Listed {
    /// Name relative to the repository prefix.
    pub rel: String,
    pub bytes: u64,
    /// When the store last wrote it, in seconds since the epoch.
    pub modified: i64,
}

/// How a conditional write went.
#[derive(Debug)]
pub enum Written {
    /// Stored; carries the new version tag.
    Stored(Option<String>),
    /// The precondition did not hold: the object exists (create) or changed (update).
    Conflict,
}

/// A repository's objects on an S3-compatible store.
#[derive(Debug)]
pub struct ObjectStorage {
    store: Arc<AmazonS3>,
    prefix: String,
    url: String,
}

/// The runtime the object-store calls run on, shared by the whole process.
fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("pgincr-storage")
            .enable_all()
            .build()
            .expect("starting the object-storage runtime")
    })
}

/// Runs `f` on the storage runtime and waits for it, from any thread.
fn block<T: Send + 'static>(f: impl Future<Output = T> + Send + 'static) -> T {
    let (tx, rx) = mpsc::sync_channel(1);
    runtime().spawn(async move {
        let _ = tx.send(f.await);
    });
    rx.recv()
        .expect("object-storage task ended without an answer")
}

impl ObjectStorage {
    /// Connects to `s3://bucket/prefix` with credentials from the environment or profile.
    pub fn open(url: &str) -> Result<Self> {
        let (bucket, prefix) = parse_url(url)?;
        let mut builder = AmazonS3Builder::from_env().with_bucket_name(&bucket);
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let mut endpoint = env("AWS_ENDPOINT_URL").or_else(|| env("AWS_ENDPOINT"));
        if env("AWS_ACCESS_KEY_ID").is_none() {
            let profile = env("AWS_PROFILE").unwrap_or_else(|| "default".into());
            let files = aws_profile_files();
            if let Some(creds) = profile_settings(&files.0, &profile) {
                for (key, value) in creds {
                    builder = match key.as_str() {
                        "aws_access_key_id" => builder.with_access_key_id(value),
                        "aws_secret_access_key" => builder.with_secret_access_key(value),
                        "aws_session_token" => builder.with_token(value),
                        _ => builder,
                    };
                }
            }
            let config_section = if profile == "default" {
                profile.clone()
            } else {
                format!("profile {profile}")
            };
            if let Some(conf) = profile_settings(&files.1, &config_section) {
                for (key, value) in conf {
                    builder = match key.as_str() {
                        "region" if env("AWS_REGION").is_none() => builder.with_region(value),
                        "endpoint_url" if endpoint.is_none() => {
                            endpoint = Some(value.clone());
                            builder.with_endpoint(value)
                        }
                        _ => builder,
                    };
                }
            }
        }
        if env("AWS_REGION").is_none() && env("AWS_DEFAULT_REGION").is_some() {
            builder = builder.with_region(env("AWS_DEFAULT_REGION").unwrap_or_default());
        }
        // Each request is retried briefly; callers that must outlast an outage (the stream)
        // retry whole steps with their own backoff.
        let plain_http = endpoint
            .as_deref()
            .is_some_and(|e| e.starts_with("http://"));
        let retry = RetryConfig {
            max_retries: 4,
            retry_timeout: Duration::from_secs(30),
            ..RetryConfig::default()
        };
        let store = builder
            .with_retry(retry)
            .with_client_options(
                object_store::ClientOptions::new()
                    .with_connect_timeout(Duration::from_secs(10))
                    .with_timeout(Duration::from_secs(120))
                    .with_allow_http(plain_http),
            )
            .build()
            .map_err(|e| Error::Invalid(format!("{url}: {e}")))?;
        Ok(ObjectStorage {
            store: Arc::new(store),
            prefix,
            url: url.trim_end_matches('/').to_owned(),
        })
    }

    /// Proves the bucket exists and the credentials may list it, before anything is done.
    pub fn check_access(&self) -> Result<()> {
        let (store, key) = (self.store.clone(), self.key(""));
        block(async move { store.list_with_delimiter(Some(&key)).await })
            .map(|_| ())
            .map_err(|e| Error::Storage(format!("{}: {}", self.url, describe(&e))))
    }

    /// `s3://bucket/prefix`, for messages.
    pub fn url(&self) -> &str {
        &self.url
    }

    fn key(&self, rel: &str) -> ObjectPath {
        if self.prefix.is_empty() {
            ObjectPath::from(rel)
        } else {
            ObjectPath::from(format!("{}/{rel}", self.prefix))
        }
    }

    fn fail(&self, doing: &str, rel: &str, e: object_store::Error) -> Error {
        Error::Storage(format!("{}/{rel}: {doing}: {}", self.url, describe(&e)))
    }

    /// The object's content and version tag; None when it does not exist.
    pub fn get(&self, rel: &str) -> Result<Option<(Bytes, Option<String>)>> {
        let (store, key) = (self.store.clone(), self.key(rel));
        let got = block(async move {
            let r = store.get(&key).await?;
            let etag = r.meta.e_tag.clone();
            Ok::<_, object_store::Error>((r.bytes().await?, etag))
        });
        match got {
            Ok(v) => Ok(Some(v)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.fail("reading", rel, e)),
        }
    }

    /// Size of the object; None when it does not exist.
    pub fn size(&self, rel: &str) -> Result<Option<u64>> {
        let (store, key) = (self.store.clone(), self.key(rel));
        match block(async move { store.head(&key).await }) {
            Ok(meta) => Ok(Some(meta.size)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.fail("looking up", rel, e)),
        }
    }

    /// Writes a small object whole: unconditionally, only if absent (`expected = Some(None)`),
    /// or only if it still has version `expected = Some(Some(tag))`.
    pub fn put(
        &self,
        rel: &str,
        data: Vec<u8>,
        expected: Option<Option<String>>,
    ) -> Result<Written> {
        let mode = match expected {
            None => PutMode::Overwrite,
            Some(None) => PutMode::Create,
            Some(Some(e_tag)) => PutMode::Update(UpdateVersion {
                e_tag: Some(e_tag),
                version: None,
            }),
        };
        let (store, key) = (self.store.clone(), self.key(rel));
        let put = block(async move {
            store
                .put_opts(&key, PutPayload::from(data), PutOptions::from(mode))
                .await
        });
        match put {
            Ok(r) => Ok(Written::Stored(r.e_tag)),
            Err(object_store::Error::AlreadyExists { .. })
            | Err(object_store::Error::Precondition { .. }) => Ok(Written::Conflict),
            Err(e) => Err(self.fail("writing", rel, e)),
        }
    }

    /// Uploads a local file as `rel` (in parts when large) and checks the stored size.
    /// A failed upload leaves no object under `rel`: S3 makes an object visible only when
    /// its upload completes.
    pub fn upload(&self, local: &Path, rel: &str) -> Result<()> {
        let mut file = std::fs::File::open(local)
            .map_err(Error::io(format!("opening {}", local.display())))?;
        let len = file
            .metadata()
            .map_err(Error::io(format!("reading {}", local.display())))?
            .len();
        if len <= MULTIPART_THRESHOLD {
            let mut data = Vec::with_capacity(len as usize);
            file.read_to_end(&mut data)
                .map_err(Error::io(format!("reading {}", local.display())))?;
            self.put(rel, data, None)?;
        } else {
            let mut upload = self.multipart(rel)?;
            let mut buf = vec![0u8; PART_SIZE];
            loop {
                let n = read_full(&mut file, &mut buf)
                    .map_err(Error::io(format!("reading {}", local.display())))?;
                if n == 0 {
                    break;
                }
                upload.write(&buf[..n])?;
            }
            upload.finish()?;
        }
        match self.size(rel)? {
            Some(stored) if stored == len => Ok(()),
            other => Err(Error::Storage(format!(
                "{}/{rel}: stored {} bytes of {len}",
                self.url,
                other.map_or("no".into(), |n| n.to_string())
            ))),
        }
    }

    /// Starts an upload in parts, written as data arrives.
    pub fn multipart(&self, rel: &str) -> Result<MultipartUpload> {
        let (store, key) = (self.store.clone(), self.key(rel));
        let upload = block(async move { store.put_multipart(&key).await })
            .map_err(|e| self.fail("starting an upload of", rel, e))?;
        Ok(MultipartUpload {
            writer: Some(WriteMultipart::new_with_chunk_size(upload, PART_SIZE)),
            rel: rel.to_owned(),
            url: self.url.clone(),
        })
    }

    /// A reader of the object's bytes, fetched as they are read (never staged on disk).
    pub fn reader(&self, rel: &str) -> Result<Box<dyn Read + Send>> {
        let (store, key) = (self.store.clone(), self.key(rel));
        let opened = block(async move { store.get(&key).await });
        let got = opened.map_err(|e| match e {
            object_store::Error::NotFound { .. } => {
                Error::Repository(format!("{}/{rel} is missing", self.url))
            }
            e => self.fail("reading", rel, e),
        })?;
        let (tx, rx) = mpsc::sync_channel::<std::io::Result<Bytes>>(4);
        let context = format!("{}/{rel}", self.url);
        runtime().spawn(async move {
            let mut chunks = got.into_stream();
            while let Some(chunk) = chunks.next().await {
                let chunk = chunk.map_err(|e| {
                    std::io::Error::other(format!("{context}: reading: {}", describe(&e)))
                });
                let failed = chunk.is_err();
                // A reader that went away stops the download.
                if tx.send(chunk).is_err() || failed {
                    return;
                }
            }
        });
        Ok(Box::new(ChannelReader {
            rx,
            current: Bytes::new(),
        }))
    }

    /// Every object under `dir` (relative to the prefix), with sizes.
    pub fn list(&self, dir: &str) -> Result<Vec<Listed>> {
        let (store, key) = (self.store.clone(), self.key(dir));
        let listed = block(async move {
            store
                .list(Some(&key))
                .collect::<Vec<_>>()
                .await
                .into_iter()
                .collect::<std::result::Result<Vec<_>, _>>()
        })
        .map_err(|e| self.fail("listing", dir, e))?;
        let strip = if self.prefix.is_empty() {
            String::new()
        } else {
            format!("{}/", self.prefix)
        };
        Ok(listed
            .into_iter()
            .map(|m| Listed {
                rel: m
                    .location
                    .as_ref()
                    .strip_prefix(&strip)
                    .unwrap_or(m.location.as_ref())
                    .to_owned(),
                bytes: m.size,
                modified: m.last_modified.timestamp(),
            })
            .collect())
    }

    /// Deletes an object; one already gone is not an error.
    pub fn delete(&self, rel: &str) -> Result<()> {
        let (store, key) = (self.store.clone(), self.key(rel));
        match block(async move { store.delete(&key).await }) {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.fail("deleting", rel, e)),
        }
    }
}

/// How long a lock object stays valid without renewal, and how often it is renewed.
const LOCK_TTL: Duration = Duration::from_secs(90);
const LOCK_RENEW: Duration = Duration::from_secs(20);

#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct LockRecord {
    /// host:spool of the holder.
    owner: String,
    pid: u32,
    /// Unix seconds after which the lock counts as abandoned.
    expires: u64,
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A lock object on the store, renewed in the background while held and deleted on drop.
pub struct LockObject {
    stop: Arc<std::sync::atomic::AtomicBool>,
    renewer: Option<std::thread::JoinHandle<()>>,
}

impl LockObject {
    /// Creates `rel` (or takes it over when it expired or is this owner's own, left by a
    /// holder that died); refuses while another live holder has it.
    pub fn acquire(storage: Arc<ObjectStorage>, rel: &str, owner: &str) -> Result<Self> {
        let owned = owner.to_owned();
        let record = move |expires| {
            serde_json::to_vec(&LockRecord {
                owner: owned.clone(),
                pid: std::process::id(),
                expires,
            })
            .expect("lock record serialises")
        };
        let mut tag = None;
        for _ in 0..3 {
            let expected = match storage.get(rel)? {
                None => None,
                Some((data, current)) => {
                    let held: Option<LockRecord> = serde_json::from_slice(&data).ok();
                    if let Some(h) = held.filter(|h| h.owner != owner && h.expires > unix_now()) {
                        return Err(Error::Repository(format!(
                            "{}/{rel}: another pgincr process (pid {} on {}) holds this \
                             repository's lock, renewed until {} s from now; stop it first",
                            storage.url(),
                            h.pid,
                            h.owner,
                            h.expires.saturating_sub(unix_now())
                        )));
                    }
                    current
                }
            };
            match storage.put(rel, record(unix_now() + LOCK_TTL.as_secs()), Some(expected))? {
                Written::Stored(t) => {
                    tag = Some(t);
                    break;
                }
                Written::Conflict => continue,
            }
        }
        let Some(mut tag) = tag else {
            return Err(Error::Repository(format!(
                "{}/{rel}: another process keeps changing this repository's lock",
                storage.url()
            )));
        };
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (rel, flag) = (rel.to_owned(), stop.clone());
        let renewer = std::thread::spawn(move || {
            let mut last = std::time::Instant::now();
            while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(200));
                if last.elapsed() < LOCK_RENEW {
                    continue;
                }
                last = std::time::Instant::now();
                let expected = tag
                    .clone()
                    .or_else(|| storage.get(&rel).ok().flatten().and_then(|g| g.1));
                match storage.put(
                    &rel,
                    record(unix_now() + LOCK_TTL.as_secs()),
                    Some(expected),
                ) {
                    Ok(Written::Stored(t)) => tag = t,
                    Ok(Written::Conflict) => {
                        tracing::error!(
                            "{}/{rel}: the lock was taken over by another process",
                            storage.url()
                        );
                        return;
                    }
                    // The store away: tried again at the next renewal.
                    Err(e) => tracing::warn!("renewing the repository lock: {e}"),
                }
            }
            let _ = storage.delete(&rel);
        });
        Ok(LockObject {
            stop,
            renewer: Some(renewer),
        })
    }
}

impl Drop for LockObject {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.renewer.take() {
            let _ = t.join();
        }
    }
}

/// An upload in parts; dropped unfinished, it is aborted and leaves no object.
pub struct MultipartUpload {
    writer: Option<WriteMultipart>,
    rel: String,
    url: String,
}

impl MultipartUpload {
    fn fail(&self, e: object_store::Error) -> Error {
        Error::Storage(format!(
            "{}/{}: uploading: {}",
            self.url,
            self.rel,
            describe(&e)
        ))
    }

    /// Queues data, sending full parts (at most a few in flight).
    pub fn write(&mut self, data: &[u8]) -> Result<()> {
        let mut writer = self.writer.take().expect("upload in progress");
        let data = data.to_vec();
        let (writer, waited) = block(async move {
            let waited = writer.wait_for_capacity(4).await;
            writer.write(&data);
            (writer, waited)
        });
        self.writer = Some(writer);
        waited.map_err(|e| self.fail(e))
    }

    /// Sends the last part and completes the object.
    pub fn finish(mut self) -> Result<()> {
        let writer = self.writer.take().expect("upload in progress");
        block(async move { writer.finish().await })
            .map(|_| ())
            .map_err(|e| self.fail(e))
    }
}

impl Drop for MultipartUpload {
    fn drop(&mut self) {
        if let Some(writer) = self.writer.take() {
            block(async move {
                let _ = writer.abort().await;
            });
        }
    }
}

impl std::io::Write for MultipartUpload {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        MultipartUpload::write(self, buf).map_err(std::io::Error::other)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Reads what a download task sends.
struct ChannelReader {
    rx: mpsc::Receiver<std::io::Result<Bytes>>,
    current: Bytes,
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.current.is_empty() {
            match self.rx.recv() {
                Ok(chunk) => self.current = chunk?,
                Err(_) => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current[..n]);
        self.current = self.current.slice(n..);
        Ok(n)
    }
}

fn read_full(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match r.read(&mut buf[filled..])? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(filled)
}

/// An object-store error in one line, with advice for the usual causes.
fn describe(e: &object_store::Error) -> String {
    let text = crate::error::describe_error_chain(e);
    let advice = if text.contains("InvalidAccessKeyId")
        || text.contains("SignatureDoesNotMatch")
        || text.contains("403")
    {
        " (access denied: check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY or the AWS_PROFILE credentials)"
    } else if text.contains("NoSuchBucket") {
        " (the bucket does not exist: create it first)"
    } else {
        ""
    };
    format!("{text}{advice}")
}

/// `~/.aws/credentials` and `~/.aws/config` (or where AWS_SHARED_CREDENTIALS_FILE and
/// AWS_CONFIG_FILE say), as text; empty when absent.
fn aws_profile_files() -> (String, String) {
    let home = std::env::var("HOME").unwrap_or_default();
    let read = |var: &str, default: &str| {
        let path = std::env::var(var).unwrap_or_else(|_| format!("{home}/.aws/{default}"));
        std::fs::read_to_string(path).unwrap_or_default()
    };
    (
        read("AWS_SHARED_CREDENTIALS_FILE", "credentials"),
        read("AWS_CONFIG_FILE", "config"),
    )
}

/// The `key = value` lines of `[section]` in an AWS INI file.
fn profile_settings(text: &str, section: &str) -> Option<Vec<(String, String)>> {
    let mut found = None;
    let mut current = false;
    for line in text.lines().map(str::trim) {
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            current = name.trim() == section;
            if current {
                found.get_or_insert_with(Vec::new);
            }
        } else if current
            && !line.starts_with(['#', ';'])
            && let Some((k, v)) = line.split_once('=')
        {
            found
                .get_or_insert_with(Vec::new)
                .push((k.trim().to_ascii_lowercase(), v.trim().to_owned()));
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_split_into_bucket_and_prefix() {
        assert_eq!(
            parse_url("s3://backups/pg/app/").unwrap(),
            ("backups".into(), "pg/app".into())
        );
        assert_eq!(
            parse_url("s3://backups").unwrap(),
            ("backups".into(), "".into())
        );
        for bad in [
            "s3://B",
            "s3://ab/x",
            "s3://bucket/a/../b",
            "s3://bucket/a//b",
            "/x",
        ] {
            assert!(parse_url(bad).is_err(), "{bad}");
        }
        assert!(is_object_url(Path::new("s3://b/p")));
        assert!(!is_object_url(Path::new("/var/backups/s3:/x")));
    }

    #[test]
    fn profiles_are_read_from_ini_sections() {
        let text = "[default]\naws_access_key_id = A\n\n[profile other]\n# note\nregion=eu-west-3\nendpoint_url = http://h:1\n";
        assert_eq!(
            profile_settings(text, "default").unwrap(),
            vec![("aws_access_key_id".to_owned(), "A".to_owned())]
        );
        let other = profile_settings(text, "profile other").unwrap();
        assert_eq!(other.len(), 2);
        assert_eq!(other[1], ("endpoint_url".into(), "http://h:1".into()));
        assert!(profile_settings(text, "missing").is_none());
    }
}
