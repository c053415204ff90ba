//! What the container engines are configured with, so archctl agrees with them:
//! `/etc/docker/daemon.json` (insecure registries, mirrors) and credentials from
//! Docker's `config.json` (auths, identity tokens, credential stores and helpers) and
//! podman's `auth.json`.

use std::{
    collections::HashMap,
    io::Write,
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use base64::Engine;
use serde::Deserialize;

use super::{RegistryError, reference::split_host};

/// Registry settings the engines use: `/etc/docker/daemon.json` (path overridable with
/// `ARCHCTL_DOCKER_DAEMON_JSON`) and containers' `registries.conf` (podman, buildah,
/// skopeo; `ARCHCTL_REGISTRIES_CONF` overrides the path), merged: a registry is
/// insecure if either says so, and both kinds of mirror are tried.
#[derive(Debug, Clone, Default)]
pub struct DaemonConfig {
    /// `insecure-registries`: `host[:port]` names or CIDR ranges.
    pub insecure: Vec<String>,
    /// `registry-mirrors` for docker.io, as base URLs.
    pub mirrors: Vec<String>,
    /// registries.conf `[[registry]]` mirrors: (registry, mirror location, insecure).
    pub registry_mirrors: Vec<(String, String, bool)>,
}

/// One mirror to try before a registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mirror {
    /// `host[:port]`.
    pub host: String,
    /// A namespace the mirror serves the registry's repositories under.
    pub prefix: Option<String>,
    /// Plain HTTP allowed (an `http://` URL, or `insecure = true`).
    pub plain_http: bool,
}

#[derive(Deserialize, Default)]
struct RawRegistriesConf {
    #[serde(default)]
    registry: Vec<RawRegistry>,
    /// Version 1 format: `[registries.insecure] registries = [...]`.
    #[serde(default)]
    registries: Option<RawV1>,
}

#[derive(Deserialize, Default)]
struct RawV1 {
    #[serde(default)]
    insecure: Option<RawV1List>,
}

#[derive(Deserialize, Default)]
struct RawV1List {
    #[serde(default)]
    registries: Vec<String>,
}

#[derive(Deserialize, Default)]
struct RawRegistry {
    #[serde(default)]
    prefix: Option<String>,
    #[serde(default)]
    location: Option<String>,
    #[serde(default)]
    insecure: bool,
    #[serde(default)]
    mirror: Vec<RawMirror>,
}

#[derive(Deserialize, Default)]
struct RawMirror {
    location: String,
    #[serde(default)]
    insecure: bool,
}

#[derive(Deserialize, Default)]
struct RawDaemon {
    #[serde(default, rename = "insecure-registries")]
    insecure: Vec<String>,
    #[serde(default, rename = "registry-mirrors")]
    mirrors: Vec<String>,
}

impl DaemonConfig {
    pub fn default_path() -> PathBuf {
        std::env::var_os("ARCHCTL_DOCKER_DAEMON_JSON")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/etc/docker/daemon.json"))
    }

    /// Both files at their default places.
    pub fn load_default() -> Result<DaemonConfig, RegistryError> {
        let mut d = Self::load(&Self::default_path())?;
        let conf = match std::env::var_os("ARCHCTL_REGISTRIES_CONF") {
            Some(p) => Some(PathBuf::from(p)),
            None => std::env::var_os("HOME")
                .map(|h| PathBuf::from(h).join(".config/containers/registries.conf"))
                .filter(|p| p.exists())
                .or_else(|| Some(PathBuf::from("/etc/containers/registries.conf"))),
        };
        if let Some(p) = conf {
            d.merge_registries_conf(&p)?;
        }
        Ok(d)
    }

    /// Add containers' `registries.conf` (v1 or v2): insecure registries and mirrors.
    pub fn merge_registries_conf(&mut self, path: &Path) -> Result<(), RegistryError> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => {
                return Err(RegistryError::Invalid {
                    what: path.display().to_string(),
                    why: e.to_string(),
                });
            }
        };
        let raw: RawRegistriesConf = toml::from_str(&text).map_err(|e| RegistryError::Invalid {
            what: path.display().to_string(),
            why: e.to_string().lines().next().unwrap_or("").to_string(),
        })?;
        if let Some(v1) = raw.registries.and_then(|r| r.insecure) {
            self.insecure.extend(v1.registries);
        }
        for r in raw.registry {
            let Some(name) = r.prefix.clone().or(r.location.clone()) else {
                continue;
            };
            if r.insecure {
                self.insecure
                    .push(r.location.clone().unwrap_or(name.clone()));
            }
            for m in r.mirror {
                self.registry_mirrors
                    .push((name.clone(), m.location, m.insecure));
            }
        }
        Ok(())
    }

    /// Mirrors to try before `registry`, in order: Docker's (docker.io only), then
    /// registries.conf's.
    pub fn mirrors_for(&self, registry: &str) -> Vec<Mirror> {
        let mut v = Vec::new();
        if registry == "docker.io" {
            for m in &self.mirrors {
                let Some((scheme, rest)) = m.split_once("://") else {
                    continue;
                };
                let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
                v.push(Mirror {
                    host: host.to_string(),
                    prefix: Some(path.trim_matches('/').to_string()).filter(|p| !p.is_empty()),
                    plain_http: scheme == "http",
                });
            }
        }
        for (reg, loc, insecure) in &self.registry_mirrors {
            if reg == registry || (registry == "docker.io" && reg == "registry-1.docker.io") {
                let (host, path) = loc.split_once('/').unwrap_or((loc, ""));
                v.push(Mirror {
                    host: host.to_string(),
                    prefix: Some(path.trim_matches('/').to_string()).filter(|p| !p.is_empty()),
                    plain_http: *insecure,
                });
            }
        }
        v
    }

    /// Load daemon.json; a missing file is an empty configuration, a broken one an error.
    pub fn load(path: &Path) -> Result<DaemonConfig, RegistryError> {
        let text = match std::fs::read(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(e) => {
                return Err(RegistryError::Invalid {
                    what: path.display().to_string(),
                    why: e.to_string(),
                });
            }
        };
        let raw: RawDaemon = serde_json::from_slice(&text).map_err(|e| RegistryError::Invalid {
            what: path.display().to_string(),
            why: e.to_string(),
        })?;
        Ok(DaemonConfig {
            insecure: raw.insecure,
            registry_mirrors: Vec::new(),
            mirrors: raw
                .mirrors
                .into_iter()
                .map(|m| m.trim_end_matches('/').to_string())
                .collect(),
        })
    }

    /// Is `registry` (`host[:port]`) listed as insecure, by name or CIDR range?
    pub fn is_insecure(&self, registry: &str) -> bool {
        let host = split_host(registry);
        let ip: Option<std::net::IpAddr> = host.parse().ok();
        self.insecure.iter().any(|entry| {
            let entry = entry
                .trim_start_matches("http://")
                .trim_start_matches("https://")
                .trim_end_matches('/');
            if entry == registry || entry == host {
                return true;
            }
            match (entry.split_once('/'), ip) {
                (Some((net, bits)), Some(ip)) => cidr_contains(net, bits, ip),
                _ => false,
            }
        })
    }
}

fn cidr_contains(net: &str, bits: &str, ip: std::net::IpAddr) -> bool {
    use std::net::IpAddr;
    let (Ok(net), Ok(bits)) = (net.parse::<IpAddr>(), bits.parse::<u32>()) else {
        return false;
    };
    match (net, ip) {
        (IpAddr::V4(n), IpAddr::V4(i)) if bits <= 32 => {
            let mask = if bits == 0 {
                0
            } else {
                u32::MAX << (32 - bits)
            };
            u32::from(n) & mask == u32::from(i) & mask
        }
        (IpAddr::V6(n), IpAddr::V6(i)) if bits <= 128 => {
            let mask = if bits == 0 {
                0
            } else {
                u128::MAX << (128 - bits)
            };
            u128::from(n) & mask == u128::from(i) & mask
        }
        _ => false,
    }
}

/// Credentials for one registry. Never printed (Debug is redacted).
#[derive(Clone, PartialEq, Eq)]
pub enum Credentials {
    Basic {
        username: String,
        password: String,
    },
    /// An OAuth2 refresh token (`identitytoken`), exchanged at the token endpoint.
    IdentityToken(String),
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credentials::Basic { username, .. } => write!(f, "Basic({username}, <redacted>)"),
            Credentials::IdentityToken(_) => write!(f, "IdentityToken(<redacted>)"),
        }
    }
}

#[derive(Deserialize, Default)]
struct RawAuthFile {
    #[serde(default)]
    auths: HashMap<String, RawAuth>,
    #[serde(default, rename = "credsStore")]
    creds_store: Option<String>,
    #[serde(default, rename = "credHelpers")]
    cred_helpers: HashMap<String, String>,
}

#[derive(Deserialize, Default, Clone)]
struct RawAuth {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    identitytoken: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
}

/// The credential sources, in the order they are asked.
#[derive(Default)]
pub struct CredentialStore {
    files: Vec<(PathBuf, RawAuthFile)>,
}

impl std::fmt::Debug for CredentialStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let paths: Vec<_> = self.files.iter().map(|(p, _)| p).collect();
        write!(f, "CredentialStore({paths:?})")
    }
}

impl CredentialStore {
    /// Docker's `$DOCKER_CONFIG/config.json` (else `~/.docker/config.json`), then
    /// podman's `$REGISTRY_AUTH_FILE` (else `$XDG_RUNTIME_DIR/containers/auth.json`).
    /// Unreadable or broken files are skipped: they must not stop a public pull.
    pub fn load_default() -> CredentialStore {
        let mut paths = Vec::new();
        match std::env::var_os("DOCKER_CONFIG") {
            Some(d) => paths.push(PathBuf::from(d).join("config.json")),
            None => {
                if let Some(h) = std::env::var_os("HOME") {
                    paths.push(PathBuf::from(h).join(".docker/config.json"));
                }
            }
        }
        match std::env::var_os("REGISTRY_AUTH_FILE") {
            Some(f) => paths.push(PathBuf::from(f)),
            None => {
                if let Some(d) = std::env::var_os("XDG_RUNTIME_DIR") {
                    paths.push(PathBuf::from(d).join("containers/auth.json"));
                }
            }
        }
        let files = paths
            .into_iter()
            .filter_map(|p| {
                let text = std::fs::read(&p).ok()?;
                let raw = serde_json::from_slice(&text).ok()?;
                Some((p, raw))
            })
            .collect();
        CredentialStore { files }
    }

    /// Keys a registry may be stored under (Docker Hub has its legacy URL).
    fn keys(registry: &str) -> Vec<String> {
        let mut k = vec![
            registry.to_string(),
            format!("https://{registry}"),
            format!("http://{registry}"),
            format!("https://{registry}/v1/"),
            format!("https://{registry}/v2/"),
        ];
        if registry == "docker.io" {
            k.splice(
                0..0,
                [
                    "https://index.docker.io/v1/".to_string(),
                    "index.docker.io".into(),
                    "registry-1.docker.io".into(),
                ],
            );
        }
        k
    }

    /// The server URL credential helpers know a registry by.
    fn helper_server(registry: &str) -> String {
        if registry == "docker.io" {
            "https://index.docker.io/v1/".into()
        } else {
            registry.to_string()
        }
    }

    /// Credentials for `registry` (`docker.io`, `host:port`), if any source has them.
    pub fn lookup(&self, registry: &str) -> Result<Option<Credentials>, RegistryError> {
        let keys = Self::keys(registry);
        for (_, f) in &self.files {
            if let Some(helper) = keys.iter().find_map(|k| f.cred_helpers.get(k)) {
                return run_helper(helper, &Self::helper_server(registry));
            }
            if let Some(c) = keys
                .iter()
                .find_map(|k| f.auths.get(k))
                .and_then(decode_auth)
            {
                return Ok(Some(c));
            }
            if let Some(store) = &f.creds_store
                && let Some(c) = run_helper(store, &Self::helper_server(registry))?
            {
                return Ok(Some(c));
            }
        }
        Ok(None)
    }
}

fn decode_auth(a: &RawAuth) -> Option<Credentials> {
    if let Some(t) = a.identitytoken.as_deref().filter(|t| !t.is_empty()) {
        return Some(Credentials::IdentityToken(t.to_string()));
    }
    if let (Some(u), Some(p)) = (&a.username, &a.password) {
        return Some(Credentials::Basic {
            username: u.clone(),
            password: p.clone(),
        });
    }
    let raw = base64::engine::general_purpose::STANDARD
        .decode(a.auth.as_deref()?.trim())
        .ok()?;
    let text = String::from_utf8(raw).ok()?;
    let (u, p) = text.split_once(':')?;
    Some(Credentials::Basic {
        username: u.to_string(),
        password: p.to_string(),
    })
}

#[derive(Deserialize)]
struct HelperReply {
    #[serde(rename = "Username")]
    username: String,
    #[serde(rename = "Secret")]
    secret: String,
}

/// `docker-credential-<name> get`, server URL on stdin, JSON on stdout.
fn run_helper(name: &str, server: &str) -> Result<Option<Credentials>, RegistryError> {
    let program = format!("docker-credential-{name}");
    let err = |why: String| RegistryError::CredentialHelper {
        helper: program.clone(),
        why,
    };
    let mut child = Command::new(&program)
        .arg("get")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| err(e.to_string()))?;
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(server.as_bytes());
    }
    let out = child.wait_with_output().map_err(|e| err(e.to_string()))?;
    if !out.status.success() {
        let msg = String::from_utf8_lossy(&out.stdout).to_string()
            + &String::from_utf8_lossy(&out.stderr);
        // The helper protocol's answer for "nothing stored".
        if msg.to_ascii_lowercase().contains("credentials not found") {
            return Ok(None);
        }
        return Err(err(msg
            .lines()
            .next()
            .unwrap_or("failed")
            .trim()
            .to_string()));
    }
    let r: HelperReply =
        serde_json::from_slice(&out.stdout).map_err(|e| err(format!("bad reply: {e}")))?;
    Ok(Some(if r.username == "<token>" {
        Credentials::IdentityToken(r.secret)
    } else {
        Credentials::Basic {
            username: r.username,
            password: r.secret,
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(json: &str) -> CredentialStore {
        CredentialStore {
            files: vec![(PathBuf::from("test"), serde_json::from_str(json).unwrap())],
        }
    }

    #[test]
    fn finds_auths_by_every_spelling() {
        let s = store(
            r#"{"auths": {"https://index.docker.io/v1/": {"auth": "dXNlcjpwYTpzcw=="},
                          "127.0.0.1:5000": {"identitytoken": "tok"},
                          "ghcr.io": {"username": "u", "password": "p"}}}"#,
        );
        assert_eq!(
            s.lookup("docker.io").unwrap(),
            Some(Credentials::Basic {
                username: "user".into(),
                password: "pa:ss".into()
            })
        );
        assert_eq!(
            s.lookup("127.0.0.1:5000").unwrap(),
            Some(Credentials::IdentityToken("tok".into()))
        );
        assert!(matches!(
            s.lookup("ghcr.io").unwrap(),
            Some(Credentials::Basic { .. })
        ));
        assert_eq!(s.lookup("quay.io").unwrap(), None);
        // Secrets never show in Debug output.
        let dbg = format!("{:?}", s.lookup("docker.io").unwrap());
        assert!(!dbg.contains("pa:ss"), "{dbg}");
    }

    #[test]
    fn missing_helper_is_a_clear_error() {
        let s = store(r#"{"credHelpers": {"ghcr.io": "archctl-no-such-helper"}}"#);
        let e = s.lookup("ghcr.io").unwrap_err().to_string();
        assert!(
            e.contains("docker-credential-archctl-no-such-helper"),
            "{e}"
        );
    }

    #[test]
    fn insecure_registries_by_name_and_cidr() {
        let d = DaemonConfig {
            insecure: vec![
                "myreg:5000".into(),
                "10.0.0.0/8".into(),
                "http://other.lan".into(),
            ],
            mirrors: vec![],
            registry_mirrors: vec![],
        };
        assert!(d.is_insecure("myreg:5000"));
        assert!(d.is_insecure("10.1.2.3:5000"));
        assert!(d.is_insecure("other.lan"));
        assert!(!d.is_insecure("myreg:6000"));
        assert!(!d.is_insecure("11.0.0.1"));
        assert!(!d.is_insecure("ghcr.io"));
    }

    #[test]
    fn registries_conf_v1_and_v2() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("registries.conf");
        std::fs::write(
            &p,
            r#"
unqualified-search-registries = ["docker.io"]
[[registry]]
location = "lab.example:5000"
insecure = true
[[registry]]
prefix = "docker.io"
location = "docker.io"
[[registry.mirror]]
location = "mirror.lan:5000/hub"
insecure = true
[registries.insecure]
registries = ["old.example"]
"#,
        )
        .unwrap();
        let mut d = DaemonConfig {
            mirrors: vec!["https://dm.example".into()],
            ..Default::default()
        };
        d.merge_registries_conf(&p).unwrap();
        assert!(d.is_insecure("lab.example:5000") && d.is_insecure("old.example"));
        assert!(!d.is_insecure("docker.io"));
        assert_eq!(
            d.mirrors_for("docker.io"),
            vec![
                Mirror {
                    host: "dm.example".into(),
                    prefix: None,
                    plain_http: false
                },
                Mirror {
                    host: "mirror.lan:5000".into(),
                    prefix: Some("hub".into()),
                    plain_http: true
                },
            ]
        );
        assert!(d.mirrors_for("ghcr.io").is_empty());
        std::fs::write(&p, "[[registry]\n").unwrap();
        assert!(
            d.merge_registries_conf(&p)
                .unwrap_err()
                .to_string()
                .contains("registries.conf")
        );
    }

    #[test]
    fn daemon_json_missing_is_empty_broken_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("daemon.json");
        assert!(DaemonConfig::load(&p).unwrap().insecure.is_empty());
        std::fs::write(
            &p,
            r#"{"insecure-registries": ["a:1"], "registry-mirrors": ["https://m.example/"]}"#,
        )
        .unwrap();
        let d = DaemonConfig::load(&p).unwrap();
        assert_eq!(d.insecure, ["a:1"]);
        assert_eq!(d.mirrors, ["https://m.example"]);
        std::fs::write(&p, "{").unwrap();
        assert!(
            DaemonConfig::load(&p)
                .unwrap_err()
                .to_string()
                .contains("daemon.json")
        );
    }
}
