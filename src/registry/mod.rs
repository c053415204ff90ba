//! The registry client behind `archctl inspect`: image references, registry settings
//! and credentials (Docker's and podman's files), the token/Basic auth flow, an HTTP
//! client with retries and digest verification, an on-disk cache, and the inspection
//! itself (which platforms an image offers).

pub mod auth;
pub mod cache;
pub mod client;
pub mod credentials;
pub mod inspect;
pub mod layers;
pub mod reference;
pub mod settings;
pub mod transport;
pub mod truth;

use std::{
    sync::{Mutex, MutexGuard},
    time::Duration,
};

/// Largest manifest (or config) archctl accepts.
pub const MAX_MANIFEST_BYTES: usize = 4 * 1024 * 1024;
/// Most entries an image index may list (platforms and attestations; real ones list
/// a few dozen): `--verify-platforms` fetches two documents per entry.
pub const MAX_INDEX_ENTRIES: usize = 1024;
/// Largest token endpoint reply archctl accepts (Docker Hub's are about 4 KiB).
pub const MAX_TOKEN_BYTES: usize = 1024 * 1024;
/// How much of an error reply's body archctl reads (for the registry's error code and
/// message); the rest is never read.
pub const MAX_ERROR_BODY_BYTES: usize = 64 * 1024;

pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_SCHEMA1: &str = "application/vnd.docker.distribution.manifest.v1+json";
pub const DOCKER_SCHEMA1_SIGNED: &str = "application/vnd.docker.distribution.manifest.v1+prettyjws";

/// What went wrong talking to a registry: one line a user can act on.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum RegistryError {
    #[error("invalid image reference \"{input}\": {why}")]
    BadReference { input: String, why: String },
    #[error("{registry}: repository {repository} not found")]
    UnknownRepository {
        registry: String,
        repository: String,
    },
    #[error("{image}: manifest unknown (no such tag or digest)")]
    UnknownManifest { image: String },
    #[error("{registry}: unauthorized{}", if *.with_credentials { " (the credentials were refused)" } else { " (no credentials for this registry)" })]
    Unauthorized {
        registry: String,
        with_credentials: bool,
    },
    #[error("{registry}: TLS failure: {why}")]
    Tls { registry: String, why: String },
    #[error("{registry}: connection refused")]
    ConnectionRefused { registry: String },
    #[error("{registry}: timed out after {secs} s")]
    Timeout { registry: String, secs: u64 },
    #[error("{registry}: {why}")]
    Http { registry: String, why: String },
    #[error("{registry}: auth server: {why}")]
    AuthServer { registry: String, why: String },
    #[error("{what} {digest}: content does not match its digest (got {actual})")]
    DigestMismatch {
        what: &'static str,
        digest: String,
        actual: String,
    },
    #[error("{what} is {size} bytes, more than the {limit} bytes archctl accepts")]
    TooLarge {
        what: String,
        size: usize,
        limit: usize,
    },
    #[error("{what} lists {count} entries, more than the {limit} archctl accepts")]
    TooMany {
        what: String,
        count: usize,
        limit: usize,
    },
    #[error("unsupported manifest: {0}")]
    Unsupported(String),
    #[error("invalid {what}: {why}")]
    Invalid { what: String, why: String },
    #[error(
        "{registry}: redirected from HTTPS to plain HTTP ({location}); archctl sends no credentials in clear text"
    )]
    Downgrade { registry: String, location: String },
    /// `why` never holds anything the helper wrote (it may be a secret).
    #[error("credential helper {helper}: {why}")]
    CredentialHelper {
        helper: String,
        server: String,
        why: String,
    },
    #[error("cannot set up the HTTP client: {0}")]
    Client(String),
    /// No certificate authority to verify TLS with (a minimal system without
    /// ca-certificates, or SSL_CERT_FILE/SSL_CERT_DIR naming nothing).
    #[error("cannot verify TLS: no usable CA certificates on this system ({0})")]
    NoTrustRoots(String),
}

impl RegistryError {
    pub fn hint(&self) -> Option<String> {
        match self {
            RegistryError::Unauthorized { registry, .. } => {
                Some(format!("docker login {registry} (or podman login {registry})"))
            }
            RegistryError::Tls { registry, .. } => Some(format!(
                "for a private registry without a trusted certificate add \"{registry}\" to insecure-registries in /etc/docker/daemon.json, or pass --insecure"
            )),
            RegistryError::ConnectionRefused { .. } => {
                Some("is the registry running, and is the address right?".into())
            }
            RegistryError::Timeout { .. } => Some("retry, or raise --timeout".into()),
            RegistryError::BadReference { .. } => Some(
                "write it as [REGISTRY[:PORT]/]NAME[:TAG][@sha256:DIGEST], lower case, e.g. alpine:3.20".into(),
            ),
            RegistryError::Downgrade { registry, .. } => Some(format!(
                "{registry} builds its redirect URLs with http://: behind a TLS-terminating proxy, make it know its https:// address (e.g. X-Forwarded-Proto)"
            )),
            RegistryError::CredentialHelper { helper, server, .. } => Some(format!(
                "see what it says with: echo {server} | {helper} get; or log in again (docker login {server}), or remove it from credsStore/credHelpers in Docker's config.json"
            )),
            RegistryError::NoTrustRoots(_) => Some(
                "install the CA certificates (apt-get install ca-certificates, apk add ca-certificates), or point SSL_CERT_FILE at a PEM bundle".into(),
            ),
            RegistryError::Unsupported(_) => Some(
                "re-push the image with a current tool (docker buildx, skopeo copy) to get a schema 2 or OCI manifest".into(),
            ),
            _ => None,
        }
    }
}

/// Lock a mutex of the run's shared state; a panic elsewhere does not make it unusable.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

/// Options for registry access.
#[derive(Debug, Clone)]
pub struct Options {
    /// Allow plain HTTP (and unverified TLS) for every registry.
    pub insecure: bool,
    /// Per-request timeout.
    pub timeout: Duration,
    /// Retries for 429/5xx and dropped connections.
    pub retries: u32,
    /// Use the on-disk cache.
    pub cache: bool,
    /// Images inspected at once.
    pub concurrency: usize,
    /// Also fetch each index entry's manifest and config and compare their platform
    /// with the index's label.
    pub verify_platforms: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            insecure: false,
            timeout: Duration::from_secs(30),
            retries: 3,
            cache: true,
            concurrency: 8,
            verify_platforms: false,
        }
    }
}
