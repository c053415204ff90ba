//! On-disk cache: manifests and configs by digest (immutable, verified on every read),
//! and tag → digest for a short time, so repeated look-ups cost ~no network.
//! `$ARCHCTL_CACHE_DIR`, else `/var/cache/archctl` as root, else
//! `$XDG_CACHE_HOME/archctl` (`~/.cache/archctl`). Holds no secrets.

use std::{
    path::{Path, PathBuf},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// How long a tag → digest answer is reused (`ARCHCTL_TAG_TTL` seconds overrides).
pub const DEFAULT_TAG_TTL: Duration = Duration::from_secs(60);

#[derive(Debug, Clone)]
pub struct Cache {
    dir: PathBuf,
    tag_ttl: Duration,
}

/// A remembered tag resolution.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct TagEntry {
    pub key: String,
    pub digest: String,
    pub media_type: String,
    /// Unix seconds when fetched.
    pub time: u64,
}

/// `sha256:<hex>` of some bytes.
pub fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", crate::arch::hex(&Sha256::digest(bytes)))
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl Cache {
    pub fn new(dir: PathBuf, tag_ttl: Duration) -> Cache {
        Cache { dir, tag_ttl }
    }

    /// The cache directory for this user, if one can be named.
    pub fn locate() -> Option<Cache> {
        let dir = match std::env::var_os("ARCHCTL_CACHE_DIR") {
            Some(d) => PathBuf::from(d),
            None if nix::unistd::geteuid().is_root() => PathBuf::from("/var/cache/archctl"),
            None => match std::env::var_os("XDG_CACHE_HOME") {
                Some(d) => PathBuf::from(d).join("archctl"),
                None => PathBuf::from(std::env::var_os("HOME")?).join(".cache/archctl"),
            },
        };
        let ttl = std::env::var("ARCHCTL_TAG_TTL")
            .ok()
            .and_then(|s| s.parse().ok())
            .map(Duration::from_secs)
            .unwrap_or(DEFAULT_TAG_TTL);
        Some(Cache::new(dir, ttl))
    }

    fn blob_path(&self, digest: &str) -> Option<PathBuf> {
        let hex = digest.strip_prefix("sha256:")?;
        (hex.len() == 64 && hex.bytes().all(|c| c.is_ascii_hexdigit()))
            .then(|| self.dir.join("blobs/sha256").join(hex))
    }

    /// A blob by digest with its media type; None when absent, corrupt, or when the
    /// media type does not fit the bytes (a reply's Content-Type is the registry's word,
    /// not part of the digest: one registry's wrong header must not decide how another
    /// image's manifest of the same digest is read). The media type is kept in the same
    /// file as the bytes (its first line), so the two are written and replaced together.
    pub fn get_blob(&self, digest: &str) -> Option<(Vec<u8>, String)> {
        let p = self.blob_path(digest)?;
        let file = std::fs::read(&p).ok()?;
        let ok = file.iter().position(|&b| b == b'\n').and_then(|nl| {
            let mt = std::str::from_utf8(&file[..nl]).ok()?.to_string();
            let bytes = file[nl + 1..].to_vec();
            (sha256_digest(&bytes) == digest && media_type_fits(&bytes, &mt)).then_some((bytes, mt))
        });
        if ok.is_none() {
            // Corrupt, of the earlier two-file layout, or a media type that does not fit.
            let _ = std::fs::remove_file(&p);
        }
        ok
    }

    /// Store verified bytes under their digest, with a media type that fits them (best
    /// effort: anything else is not stored).
    pub fn put_blob(&self, digest: &str, bytes: &[u8], media_type: &str) {
        let Some(p) = self.blob_path(digest) else {
            return;
        };
        if sha256_digest(bytes) != digest
            || media_type.contains('\n')
            || !media_type_fits(bytes, media_type)
        {
            return;
        }
        let mut file = Vec::with_capacity(media_type.len() + 1 + bytes.len());
        file.extend_from_slice(media_type.as_bytes());
        file.push(b'\n');
        file.extend_from_slice(bytes);
        write_atomic(&p, &file);
    }

    fn tag_path(&self, key: &str) -> PathBuf {
        let h = sha256_digest(key.as_bytes());
        self.dir.join("tags").join(&h[7..])
    }

    /// A tag resolution younger than the TTL. One dated in the future (a clock that
    /// ran ahead when it was written) counts as expired.
    pub fn get_tag(&self, key: &str) -> Option<TagEntry> {
        let text = std::fs::read(self.tag_path(key)).ok()?;
        let e: TagEntry = serde_json::from_slice(&text).ok()?;
        let t = now();
        let fresh = e.time <= t && t - e.time < self.tag_ttl.as_secs();
        (e.key == key && fresh).then_some(e)
    }

    pub fn put_tag(&self, key: &str, digest: &str, media_type: &str) {
        let e = TagEntry {
            key: key.to_string(),
            digest: digest.to_string(),
            media_type: media_type.to_string(),
            time: now(),
        };
        if let Ok(json) = serde_json::to_vec(&e) {
            write_atomic(&self.tag_path(key), &json);
        }
    }
}

/// Does a media type fit the bytes? Configs are stored as `application/octet-stream`
/// (they are read only as configs). A manifest that declares its `mediaType` must be
/// stored under that one; one that does not (allowed for OCI) must be of the shape its
/// type says: an index lists `manifests`, an image manifest has `config`/`layers`.
fn media_type_fits(bytes: &[u8], media_type: &str) -> bool {
    use super::{
        DOCKER_LIST, DOCKER_MANIFEST, DOCKER_SCHEMA1, DOCKER_SCHEMA1_SIGNED, OCI_INDEX,
        OCI_MANIFEST,
    };
    if media_type == "application/octet-stream" {
        return true;
    }
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(bytes) else {
        return false;
    };
    if let Some(declared) = v.get("mediaType").and_then(|m| m.as_str()) {
        return declared == media_type;
    }
    match media_type {
        OCI_INDEX | DOCKER_LIST => v.get("manifests").is_some_and(|m| m.is_array()),
        OCI_MANIFEST | DOCKER_MANIFEST => v.get("layers").is_some() || v.get("config").is_some(),
        DOCKER_SCHEMA1 | DOCKER_SCHEMA1_SIGNED => v.get("fsLayers").is_some(),
        _ => false,
    }
}

impl Cache {
    fn host_path(&self, host: &str) -> PathBuf {
        let h = sha256_digest(host.as_bytes());
        self.dir.join("hosts").join(&h[7..])
    }

    /// The scheme (`http`/`https`) that worked for an insecure-allowed host.
    pub fn get_scheme(&self, host: &str) -> Option<String> {
        let s = std::fs::read_to_string(self.host_path(host)).ok()?;
        let (h, scheme) = s.split_once(' ')?;
        (h == host).then(|| scheme.trim().to_string())
    }

    pub fn put_scheme(&self, host: &str, scheme: &str) {
        if self.get_scheme(host).as_deref() != Some(scheme) {
            write_atomic(
                &self.host_path(host),
                format!("{host} {scheme}\n").as_bytes(),
            );
        }
    }
}

/// A derived result stored under a key (`kind/<sha256 of key>`, the key kept inside
/// and compared on read, so a hash collision or a stray file is never believed).
#[derive(Serialize, Deserialize)]
struct Keyed<T> {
    key: String,
    value: T,
}

impl Cache {
    fn keyed_path(&self, kind: &str, key: &str) -> PathBuf {
        let h = sha256_digest(key.as_bytes());
        self.dir.join(kind).join(&h[7..])
    }

    /// A result stored by [`Cache::put_json`] under `kind` and `key`.
    pub fn get_json<T: serde::de::DeserializeOwned>(&self, kind: &str, key: &str) -> Option<T> {
        let text = std::fs::read(self.keyed_path(kind, key)).ok()?;
        let e: Keyed<T> = serde_json::from_slice(&text).ok()?;
        (e.key == key).then_some(e.value)
    }

    pub fn put_json<T: Serialize>(&self, kind: &str, key: &str, value: &T) {
        let e = Keyed {
            key: key.to_string(),
            value,
        };
        if let Ok(json) = serde_json::to_vec(&e) {
            write_atomic(&self.keyed_path(kind, key), &json);
        }
    }
}

/// Write via a temporary file and rename, so readers never see half a file. Failures
/// are ignored: a cache that cannot be written only costs the next run a fetch.
fn write_atomic(path: &Path, bytes: &[u8]) {
    let Some(dir) = path.parent() else {
        return;
    };
    if std::fs::create_dir_all(dir).is_ok() {
        // 0600: what the temporary file is created with.
        let _ = crate::fsutil::write_atomic(path, bytes, 0o600);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_media_type_that_does_not_fit_the_bytes_is_never_stored_nor_believed() {
        use super::super::{OCI_INDEX, OCI_MANIFEST};
        let dir = tempfile::tempdir().unwrap();
        let c = Cache::new(dir.path().to_path_buf(), Duration::from_secs(60));
        let index = br#"{"schemaVersion":2,"manifests":[]}"#;
        let d = sha256_digest(index);
        // A registry that labels an index as an image manifest is not cached...
        c.put_blob(&d, index, OCI_MANIFEST);
        assert_eq!(c.get_blob(&d), None);
        // ...the right label is.
        c.put_blob(&d, index, OCI_INDEX);
        assert_eq!(
            c.get_blob(&d),
            Some((index.to_vec(), OCI_INDEX.to_string()))
        );
        // A rewritten label (the bytes still match their digest) is not believed, and
        // the file is dropped.
        let p = c.blob_path(&d).unwrap();
        let mut poisoned = format!("{OCI_MANIFEST}\n").into_bytes();
        poisoned.extend_from_slice(index);
        std::fs::write(&p, poisoned).unwrap();
        assert_eq!(c.get_blob(&d), None);
        assert!(!p.exists());
        // A declared mediaType decides.
        let declared = format!(r#"{{"schemaVersion":2,"mediaType":"{OCI_INDEX}","manifests":[]}}"#);
        let d2 = sha256_digest(declared.as_bytes());
        c.put_blob(
            &d2,
            declared.as_bytes(),
            "application/vnd.docker.distribution.manifest.list.v2+json",
        );
        assert_eq!(c.get_blob(&d2), None);
        // The earlier layout (bytes alone, the type beside them) is dropped, not misread.
        std::fs::write(&p, index).unwrap();
        std::fs::write(p.with_extension("type"), OCI_MANIFEST).unwrap();
        assert_eq!(c.get_blob(&d), None);
    }

    #[test]
    fn blobs_are_verified_and_tags_expire() {
        let dir = tempfile::tempdir().unwrap();
        let c = Cache::new(dir.path().to_path_buf(), Duration::from_secs(60));
        let d = sha256_digest(b"{}");
        c.put_blob(&d, b"{}", "application/octet-stream");
        assert_eq!(
            c.get_blob(&d),
            Some((b"{}".to_vec(), "application/octet-stream".into()))
        );
        // Wrong bytes for a digest are never stored...
        let other = sha256_digest(b"x");
        c.put_blob(&other, b"y", "t");
        assert_eq!(c.get_blob(&other), None);
        // ...and a corrupted file is dropped.
        std::fs::write(c.blob_path(&d).unwrap(), b"{ }").unwrap();
        assert_eq!(c.get_blob(&d), None);
        assert!(!c.blob_path(&d).unwrap().exists());

        let d = sha256_digest(b"{}");
        c.put_blob(&d, b"{}", "application/octet-stream");
        c.put_tag("r/x:latest", &d, "t");
        assert_eq!(c.get_tag("r/x:latest").unwrap().digest, d);
        assert!(c.get_tag("r/x:other").is_none());
        let expired = Cache::new(dir.path().to_path_buf(), Duration::from_secs(0));
        assert!(expired.get_tag("r/x:latest").is_none());
        // A tag entry from the future (a clock that ran ahead) is expired.
        let future = TagEntry {
            key: "r/x:future".into(),
            digest: d.clone(),
            media_type: "t".into(),
            time: now() + 3600,
        };
        std::fs::write(
            c.tag_path("r/x:future"),
            serde_json::to_vec(&future).unwrap(),
        )
        .unwrap();
        assert!(c.get_tag("r/x:future").is_none());
        assert_eq!(
            sha256_digest(b""),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
