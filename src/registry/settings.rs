//! What the container engines are configured with, so archctl agrees with them:
//! `/etc/docker/daemon.json` (insecure registries, mirrors) and containers'
//! `registries.conf` (insecure registries, per-registry mirrors).

use std::path::{Path, PathBuf};

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
    /// registries.conf `[[registry.mirror]]` entries.
    pub registry_mirrors: Vec<RegistryMirror>,
}

/// A registries.conf `[[registry.mirror]]` entry, with the registry it mirrors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryMirror {
    /// The mirrored registry (its `prefix`, else its `location`).
    pub registry: String,
    /// The mirror's `host[:port][/namespace]`.
    pub location: String,
    /// Plain HTTP (and unverified TLS) allowed.
    pub insecure: bool,
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
        let Some(text) = read_if_present(path, |p| std::fs::read_to_string(p))? else {
            return Ok(());
        };
        let raw: RawRegistriesConf = toml::from_str(&text)
            .map_err(|e| invalid(path, e.to_string().lines().next().unwrap_or("")))?;
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
                self.registry_mirrors.push(RegistryMirror {
                    registry: name.clone(),
                    location: m.location,
                    insecure: m.insecure,
                });
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
        for m in &self.registry_mirrors {
            if m.registry == registry
                || (registry == "docker.io" && m.registry == "registry-1.docker.io")
            {
                let (host, path) = m.location.split_once('/').unwrap_or((&m.location, ""));
                v.push(Mirror {
                    host: host.to_string(),
                    prefix: Some(path.trim_matches('/').to_string()).filter(|p| !p.is_empty()),
                    plain_http: m.insecure,
                });
            }
        }
        v
    }

    /// Load daemon.json; a missing file is an empty configuration, a broken one an error.
    pub fn load(path: &Path) -> Result<DaemonConfig, RegistryError> {
        let Some(text) = read_if_present(path, |p| std::fs::read(p))? else {
            return Ok(Self::default());
        };
        let raw: RawDaemon =
            serde_json::from_slice(&text).map_err(|e| invalid(path, &e.to_string()))?;
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

/// Read a settings file with `read`; a missing file is `None`, an unreadable one an error.
fn read_if_present<T>(
    path: &Path,
    read: fn(&Path) -> std::io::Result<T>,
) -> Result<Option<T>, RegistryError> {
    match read(path) {
        Ok(t) => Ok(Some(t)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(invalid(path, &e.to_string())),
    }
}

fn invalid(path: &Path, why: &str) -> RegistryError {
    RegistryError::Invalid {
        what: path.display().to_string(),
        why: why.to_string(),
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

#[cfg(test)]
mod tests {
    use super::*;

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
