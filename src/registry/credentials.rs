//! Registry credentials, as the container engines store them: Docker's `config.json`
//! (auths, identity tokens, credential stores and helpers) and podman's `auth.json`.

use std::{
    collections::HashMap,
    io::Write,
    path::PathBuf,
    process::{Command, Stdio},
};

use base64::Engine;
use serde::Deserialize;

use super::RegistryError;

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
    files: Vec<AuthFile>,
}

/// One parsed `config.json` or `auth.json`.
struct AuthFile {
    path: PathBuf,
    raw: RawAuthFile,
}

impl std::fmt::Debug for CredentialStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let paths: Vec<_> = self.files.iter().map(|f| &f.path).collect();
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
                Some(AuthFile { path: p, raw })
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
        for AuthFile { raw: f, .. } in &self.files {
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
            files: vec![AuthFile {
                path: PathBuf::from("test"),
                raw: serde_json::from_str(json).unwrap(),
            }],
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
}
