//! Which platforms an image offers: resolve the reference to a manifest (index or single
//! manifest), verify digests, read platforms from the index (or from the config blob of
//! a single manifest), and set BuildKit attestations apart.

use futures_util::{StreamExt, stream};
use oci_spec::image::{ImageConfiguration, ImageIndex, ImageManifest};
use reqwest::StatusCode;
use serde::Serialize;

use super::{
    DOCKER_LIST, DOCKER_MANIFEST, DOCKER_SCHEMA1, DOCKER_SCHEMA1_SIGNED, MAX_INDEX_ENTRIES,
    MAX_MANIFEST_BYTES, OCI_INDEX, OCI_MANIFEST, Options, RegistryError,
    cache::{Cache, sha256_digest},
    client::{Client, Fetched, Get},
    credentials::CredentialStore,
    reference::ImageRef,
    settings::DaemonConfig,
    transport::Transport,
    truth::{IndexBudget, TruthReport},
};

/// Accept header for manifests: every type archctl understands.
const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json";

/// `archctl inspect --json`. Field names are the contract.
#[derive(Debug, Clone, Serialize)]
pub struct InspectReport {
    pub images: Vec<ImageReport>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ImageReport {
    /// The resolved reference (`docker.io/library/alpine:3.20`), or the input when it
    /// did not parse.
    pub reference: String,
    /// Digest of what the tag points to.
    pub digest: Option<String>,
    pub media_type: Option<String>,
    /// Platforms, in the registry's order.
    pub platforms: Vec<PlatformEntry>,
    /// BuildKit attestation manifests (not platforms).
    pub attestations: Vec<Attestation>,
    pub error: Option<String>,
    #[serde(skip)]
    pub hint: Option<String>,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct PlatformEntry {
    pub os: String,
    pub architecture: String,
    pub variant: Option<String>,
    pub os_version: Option<String>,
    pub os_features: Option<Vec<String>>,
    /// Digest of this platform's manifest.
    pub digest: String,
    /// `--verify-platforms`: the platform the image's own config declares.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub config_platform: Option<String>,
    /// `--verify-platforms`: the config contradicts the index's label.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mismatch: Option<bool>,
    /// `--verify-platforms`: the truth check (`elf`, `label_matches`, `truth` in JSON):
    /// does the program the image starts run on the label's platform?
    #[serde(flatten)]
    pub truth: Option<TruthReport>,
}

impl PlatformEntry {
    /// `linux/arm64/v8`.
    pub fn platform(&self) -> String {
        match &self.variant {
            Some(v) => format!("{}/{}/{v}", self.os, self.architecture),
            None => format!("{}/{}", self.os, self.architecture),
        }
    }
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Attestation {
    pub digest: String,
    /// The manifest it attests (`vnd.docker.reference.digest`).
    pub reference: Option<String>,
}

/// One run's registry access: the client (one connection pool) and the cache.
pub struct Inspector {
    pub(super) client: Client,
    pub(super) cache: Option<Cache>,
}

impl Inspector {
    pub fn new(opts: Options) -> Result<Inspector, RegistryError> {
        Inspector::with_credentials(opts, CredentialStore::load_default())
    }

    /// An inspector with these credentials (`new`: the engines' own; the webhook: a
    /// pod's pull secrets only, with `opts.cache` false).
    pub fn with_credentials(
        opts: Options,
        creds: CredentialStore,
    ) -> Result<Inspector, RegistryError> {
        let daemon = DaemonConfig::load_default()?;
        let cache = if opts.cache { Cache::locate() } else { None };
        Ok(Inspector {
            client: Client::new(opts, daemon, creds),
            cache,
        })
    }

    /// Inspect several images concurrently; results in input order.
    pub async fn inspect_all(&self, inputs: &[String]) -> InspectReport {
        let n = self.client.options().concurrency.max(1);
        let images = stream::iter(inputs)
            .map(|i| self.inspect(i))
            .buffered(n)
            .collect()
            .await;
        InspectReport { images }
    }

    /// Inspect one image; failures are reported in the result, never panics.
    pub async fn inspect(&self, input: &str) -> ImageReport {
        let mut report = ImageReport {
            reference: input.to_string(),
            digest: None,
            media_type: None,
            platforms: Vec::new(),
            attestations: Vec::new(),
            error: None,
            hint: None,
        };
        let r = match ImageRef::parse(input) {
            Ok(r) => r,
            Err(e) => {
                report.hint = e.hint();
                report.error = Some(e.to_string());
                return report;
            }
        };
        report.reference = r.to_string();
        match self.resolve(&r).await {
            Ok(res) => {
                report.digest = Some(res.digest);
                report.media_type = Some(res.media_type);
                report.platforms = res.platforms;
                report.attestations = res.attestations;
            }
            Err(e) => {
                report.hint = e.hint();
                report.error = Some(e.to_string());
            }
        }
        report
    }

    /// Where to ask for an image: its mirrors first (daemon.json's for docker.io,
    /// registries.conf's for any registry), then the registry. Each with the reference
    /// as that endpoint knows it (a mirror may serve under a namespace).
    pub(super) fn endpoints(&self, r: &ImageRef) -> Vec<(String, ImageRef)> {
        let mut v = Vec::new();
        for m in self.client.daemon().mirrors_for(&r.registry) {
            if m.plain_http {
                self.client.set_transport(&m.host, Transport::Http);
            }
            let mut at = r.clone();
            if let Some(p) = &m.prefix {
                at.repository = format!("{p}/{}", r.repository);
            }
            v.push((m.host, at));
        }
        v.push((r.endpoint().to_string(), r.clone()));
        v
    }

    pub(super) async fn resolve(&self, r: &ImageRef) -> Result<Resolved, RegistryError> {
        let endpoints = self.endpoints(r);
        let mut last = None;
        for (i, (host, at)) in endpoints.iter().enumerate() {
            match self.resolve_at(at, host).await {
                Ok(x) => return Ok(x),
                // A mirror that fails is skipped; the registry's answer is final.
                Err(e) if i + 1 < endpoints.len() => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| RegistryError::Http {
            registry: r.registry.clone(),
            why: "no endpoint".into(),
        }))
    }

    async fn resolve_at(&self, r: &ImageRef, host: &str) -> Result<Resolved, RegistryError> {
        if let Some(c) = &self.cache
            && let Some(s) = c.get_scheme(host)
        {
            let t = if s == "http" {
                Transport::Http
            } else if self.client.allows_insecure(host) {
                Transport::HttpsUnverified
            } else {
                Transport::Https
            };
            if self.client.transport(host).is_none() {
                self.client.set_transport(host, t);
            }
        }
        let (bytes, media_type, digest) = self.manifest(r, host).await?;
        let res = self.platforms(r, host, &bytes, &media_type, &digest).await;
        if let (Some(c), Some(t)) = (&self.cache, self.client.transport(host)) {
            c.put_scheme(
                host,
                if t == Transport::Http {
                    "http"
                } else {
                    "https"
                },
            );
        }
        res
    }

    /// The manifest the reference names: (bytes, media type, digest), verified.
    pub(super) async fn manifest(
        &self,
        r: &ImageRef,
        host: &str,
    ) -> Result<(Vec<u8>, String, String), RegistryError> {
        let tag_key = format!("{}/{}:{}", r.registry, r.repository, r.reference());
        if let Some(c) = &self.cache {
            let digest = match &r.digest {
                Some(d) => Some(d.clone()),
                None => c.get_tag(&tag_key).map(|e| e.digest),
            };
            if let Some(d) = digest
                && let Some((bytes, mt)) = c.get_blob(&d)
            {
                return Ok((bytes, mt, d));
            }
        }
        let path = format!("/v2/{}/manifests/{}", r.repository, r.reference());
        let f = self
            .get(
                r,
                host,
                &path,
                MANIFEST_ACCEPT,
                MAX_MANIFEST_BYTES,
                "manifest",
            )
            .await?;
        let f = match check_status(f, r) {
            Err(RegistryError::UnknownManifest { .. }) => {
                return Err(self.unknown_repository_or_manifest(r, host).await);
            }
            other => other?,
        };
        let actual = sha256_digest(&f.body);
        if let Some(want) = &r.digest
            && *want != actual
        {
            return Err(RegistryError::DigestMismatch {
                what: "manifest",
                digest: want.clone(),
                actual,
            });
        }
        if let Some(claimed) = f
            .headers
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .filter(|d| d.starts_with("sha256:"))
            && claimed != actual
        {
            return Err(RegistryError::DigestMismatch {
                what: "manifest",
                digest: claimed.to_string(),
                actual,
            });
        }
        let media_type = media_type_of(&f);
        if let Some(c) = &self.cache {
            c.put_blob(&actual, &f.body, &media_type);
            if r.digest.is_none() {
                c.put_tag(&tag_key, &actual, &media_type);
            }
        }
        Ok((f.body, media_type, actual))
    }

    /// GET a path of the image's repository.
    async fn get(
        &self,
        r: &ImageRef,
        host: &str,
        path: &str,
        accept: &str,
        limit: usize,
        what: &str,
    ) -> Result<Fetched, RegistryError> {
        self.client
            .get(Get {
                registry: &r.registry,
                host,
                repo: &r.repository,
                path,
                accept,
                limit,
                what,
            })
            .await
    }

    /// After a 404 for a manifest: is the repository unknown, or only the tag/digest?
    /// (Registries answer MANIFEST_UNKNOWN for both; the tag list tells them apart.)
    async fn unknown_repository_or_manifest(&self, r: &ImageRef, host: &str) -> RegistryError {
        let path = format!("/v2/{}/tags/list?n=1", r.repository);
        let tags = self
            .get(r, host, &path, "application/json", 64 * 1024, "tag list")
            .await;
        match tags {
            Ok(f) if f.status == StatusCode::NOT_FOUND => RegistryError::UnknownRepository {
                registry: r.registry.clone(),
                repository: r.repository.clone(),
            },
            _ => RegistryError::UnknownManifest {
                image: r.to_string(),
            },
        }
    }

    /// A blob by digest (configs), verified, from the cache when possible.
    pub(super) async fn blob(
        &self,
        r: &ImageRef,
        host: &str,
        digest: &str,
    ) -> Result<Vec<u8>, RegistryError> {
        if let Some((b, _)) = self.cache.as_ref().and_then(|c| c.get_blob(digest)) {
            return Ok(b);
        }
        let path = format!("/v2/{}/blobs/{digest}", r.repository);
        let f = self
            .get(r, host, &path, "*/*", MAX_MANIFEST_BYTES, "config blob")
            .await?;
        let f = check_status(f, r)?;
        let actual = sha256_digest(&f.body);
        if actual != digest {
            return Err(RegistryError::DigestMismatch {
                what: "blob",
                digest: digest.to_string(),
                actual,
            });
        }
        if let Some(c) = &self.cache {
            c.put_blob(digest, &f.body, "application/octet-stream");
        }
        Ok(f.body)
    }

    async fn platforms(
        &self,
        r: &ImageRef,
        host: &str,
        bytes: &[u8],
        media_type: &str,
        digest: &str,
    ) -> Result<Resolved, RegistryError> {
        let mut res = Resolved {
            digest: digest.to_string(),
            media_type: media_type.to_string(),
            platforms: Vec::new(),
            attestations: Vec::new(),
        };
        match media_type {
            OCI_INDEX | DOCKER_LIST => {
                let idx: ImageIndex = parse_json(bytes, "image index")?;
                if idx.manifests().len() > MAX_INDEX_ENTRIES {
                    return Err(RegistryError::TooMany {
                        what: format!("image index {r}"),
                        count: idx.manifests().len(),
                        limit: MAX_INDEX_ENTRIES,
                    });
                }
                for d in idx.manifests() {
                    let ann = d.annotations().as_ref();
                    let kind = ann.and_then(|a| a.get("vnd.docker.reference.type"));
                    if kind.map(String::as_str) == Some("attestation-manifest") {
                        res.attestations.push(Attestation {
                            digest: d.digest().to_string(),
                            reference: ann
                                .and_then(|a| a.get("vnd.docker.reference.digest"))
                                .cloned(),
                        });
                        continue;
                    }
                    let entry = match d.platform() {
                        Some(p) => PlatformEntry {
                            os: p.os().to_string(),
                            architecture: p.architecture().to_string(),
                            variant: p.variant().clone().filter(|v| !v.is_empty()),
                            os_version: p.os_version().clone(),
                            os_features: p.os_features().clone(),
                            digest: d.digest().to_string(),
                            config_platform: None,
                            mismatch: None,
                            truth: None,
                        },
                        None => PlatformEntry {
                            os: "unknown".into(),
                            architecture: "unknown".into(),
                            variant: None,
                            os_version: None,
                            os_features: None,
                            digest: d.digest().to_string(),
                            config_platform: None,
                            mismatch: None,
                            truth: None,
                        },
                    };
                    res.platforms.push(entry);
                }
                if self.client.options().verify_platforms {
                    let mut budget = IndexBudget::new();
                    for e in &mut res.platforms {
                        let child = ImageRef {
                            tag: None,
                            digest: Some(e.digest.clone()),
                            ..r.clone()
                        };
                        let (bytes, mt, digest) = self.manifest(&child, host).await?;
                        if let Some(p) = self
                            .single_platform(&child, host, &bytes, &mt, &digest)
                            .await?
                        {
                            e.mismatch = Some(contradicts(e, &p));
                            e.config_platform = Some(p.platform());
                        }
                        let t = match budget.next() {
                            Some(limits) => self.truth_at(r, host, e, "index", limits).await?,
                            None => budget.spent(e),
                        };
                        budget.spend(&t);
                        e.truth = Some(t);
                    }
                }
            }
            OCI_MANIFEST | DOCKER_MANIFEST => {
                if let Some(mut p) = self
                    .single_platform(r, host, bytes, media_type, digest)
                    .await?
                {
                    if self.client.options().verify_platforms {
                        let t = self
                            .truth_at(r, host, &p, "config", super::layers::Limits::from_env())
                            .await?;
                        p.truth = Some(t);
                    }
                    res.platforms.push(p);
                }
            }
            DOCKER_SCHEMA1 | DOCKER_SCHEMA1_SIGNED => {
                return Err(RegistryError::Unsupported(format!(
                    "{r} is a Docker schema 1 manifest (deprecated, no platform information)"
                )));
            }
            other => {
                return Err(RegistryError::Unsupported(format!(
                    "{r} has media type \"{other}\", not an image index or image manifest"
                )));
            }
        }
        Ok(res)
    }

    /// The platform a single image manifest's config declares (None for other types).
    async fn single_platform(
        &self,
        r: &ImageRef,
        host: &str,
        bytes: &[u8],
        media_type: &str,
        digest: &str,
    ) -> Result<Option<PlatformEntry>, RegistryError> {
        if media_type != OCI_MANIFEST && media_type != DOCKER_MANIFEST {
            return Ok(None);
        }
        let m: ImageManifest = parse_json(bytes, "image manifest")?;
        let config_digest = m.config().digest().to_string();
        let cfg = self.blob(r, host, &config_digest).await?;
        let c: ImageConfiguration = parse_json(&cfg, "image config")?;
        Ok(Some(PlatformEntry {
            os: c.os().to_string(),
            architecture: c.architecture().to_string(),
            variant: c.variant().clone().filter(|v| !v.is_empty()),
            os_version: c.os_version().clone(),
            os_features: c.os_features().clone(),
            digest: digest.to_string(),
            config_platform: None,
            mismatch: None,
            truth: None,
        }))
    }
}

/// Does a config's platform contradict the index label? A variant the config leaves
/// out is not a contradiction (many builders omit it), nor arm64's implied v8.
fn contradicts(label: &PlatformEntry, config: &PlatformEntry) -> bool {
    let v = |e: &PlatformEntry| {
        e.variant
            .clone()
            .filter(|v| !(e.architecture == "arm64" && v == "v8"))
    };
    label.os != config.os
        || label.architecture != config.architecture
        || matches!((v(label), v(config)), (Some(a), Some(b)) if a != b)
}

pub(super) struct Resolved {
    pub(super) digest: String,
    pub(super) media_type: String,
    pub(super) platforms: Vec<PlatformEntry>,
    pub(super) attestations: Vec<Attestation>,
}

pub(super) fn parse_json<T: serde::de::DeserializeOwned>(
    bytes: &[u8],
    what: &str,
) -> Result<T, RegistryError> {
    serde_json::from_slice(bytes).map_err(|e| RegistryError::Invalid {
        what: what.to_string(),
        why: e.to_string(),
    })
}

/// The media type: Content-Type, else the document's own `mediaType`, else (a schema 2
/// manifest without either) decided by its shape.
fn media_type_of(f: &Fetched) -> String {
    let ct = f
        .headers
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|s| s.split(';').next().unwrap_or("").trim().to_string())
        .unwrap_or_default();
    if !ct.is_empty() && ct != "application/json" && ct != "application/octet-stream" {
        return ct;
    }
    #[derive(serde::Deserialize)]
    struct Probe {
        #[serde(rename = "mediaType")]
        media_type: Option<String>,
        manifests: Option<serde_json::Value>,
        #[serde(rename = "schemaVersion")]
        schema_version: Option<u32>,
    }
    match serde_json::from_slice::<Probe>(&f.body) {
        Ok(Probe {
            media_type: Some(m),
            ..
        }) => m,
        Ok(Probe {
            manifests: Some(_), ..
        }) => OCI_INDEX.to_string(),
        Ok(Probe {
            schema_version: Some(1),
            ..
        }) => DOCKER_SCHEMA1.to_string(),
        _ => OCI_MANIFEST.to_string(),
    }
}

#[derive(serde::Deserialize)]
struct ErrorBody {
    #[serde(default)]
    errors: Vec<ErrorItem>,
}

#[derive(serde::Deserialize)]
struct ErrorItem {
    #[serde(default)]
    code: String,
    #[serde(default)]
    message: String,
}

/// Map a registry's error answer to an error a user can act on.
pub(super) fn check_status(f: Fetched, r: &ImageRef) -> Result<Fetched, RegistryError> {
    if f.status.is_success() {
        return Ok(f);
    }
    let body: Option<ErrorBody> = serde_json::from_slice(&f.body).ok();
    let first = body.as_ref().and_then(|b| b.errors.first());
    let code = first.map(|e| e.code.as_str()).unwrap_or("");
    match (f.status, code) {
        (_, "NAME_UNKNOWN") => Err(RegistryError::UnknownRepository {
            registry: r.registry.clone(),
            repository: r.repository.clone(),
        }),
        (_, "MANIFEST_UNKNOWN") | (StatusCode::NOT_FOUND, _) => {
            Err(RegistryError::UnknownManifest {
                image: r.to_string(),
            })
        }
        (s, _) => Err(RegistryError::Http {
            registry: r.registry.clone(),
            why: match first {
                Some(e) if !e.message.is_empty() => format!("{s}: {} ({})", e.message, e.code),
                _ => s.to_string(),
            },
        }),
    }
}
