//! Registry credentials, as the container engines store them: Docker's `config.json`
//! (auths, identity tokens, credential stores and helpers) and podman's `auth.json`.

use std::{
    collections::HashMap,
    io::{Read, Write},
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
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

    /// From Kubernetes pull secrets: each a `.dockerconfigjson` (`{"auths": {...}}`) or
    /// a legacy `.dockercfg` (the `auths` map itself). Only `auths` is taken: a secret
    /// never names a credential helper or store to run. Unparsable ones are skipped, as
    /// the kubelet skips them; returns how many were used.
    pub fn from_pull_secrets(secrets: &[Vec<u8>]) -> (CredentialStore, usize) {
        let mut files = Vec::new();
        for (i, bytes) in secrets.iter().enumerate() {
            let raw = match serde_json::from_slice::<serde_json::Value>(bytes) {
                Ok(serde_json::Value::Object(mut m)) => {
                    let auths = match m.remove("auths") {
                        Some(a) => a,
                        None => serde_json::Value::Object(m),
                    };
                    match serde_json::from_value::<HashMap<String, RawAuth>>(auths) {
                        Ok(auths) => RawAuthFile {
                            auths,
                            ..Default::default()
                        },
                        Err(_) => continue,
                    }
                }
                _ => continue,
            };
            files.push(AuthFile {
                path: PathBuf::from(format!("<pull secret {i}>")),
                raw,
            });
        }
        let n = files.len();
        (CredentialStore { files }, n)
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

/// Most a credential helper may write on stdout, and on stderr (a real reply is well
/// under 1 KiB); a helper writing more is stopped.
pub const MAX_HELPER_OUTPUT: usize = 64 * 1024;

/// How long a credential helper may take, unless `ARCHCTL_CREDENTIAL_HELPER_TIMEOUT`
/// (seconds, 1..=3600; other values are ignored) says otherwise; a helper still
/// running then is killed.
pub const HELPER_TIMEOUT: Duration = Duration::from_secs(30);

fn helper_timeout() -> Duration {
    std::env::var("ARCHCTL_CREDENTIAL_HELPER_TIMEOUT")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .filter(|s| (1..=3600).contains(s))
        .map(Duration::from_secs)
        .unwrap_or(HELPER_TIMEOUT)
}

/// `docker-credential-<name> get`, server URL on stdin, JSON on stdout, within
/// [`MAX_HELPER_OUTPUT`] and [`helper_timeout`]. Nothing the helper writes ever goes
/// into an error: it may be the secret (a helper failing after printing it, a reply
/// that is not JSON).
fn run_helper(name: &str, server: &str) -> Result<Option<Credentials>, RegistryError> {
    let program = format!("docker-credential-{name}");
    let err = |why: String| RegistryError::CredentialHelper {
        helper: program.clone(),
        server: server.to_string(),
        why,
    };
    let timeout = helper_timeout();
    let mut child = Command::new(&program)
        .arg("get")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => err("not found on PATH".into()),
            _ => err(format!("cannot run it: {e}")),
        })?;
    if let Some(stdin) = child.stdin.take() {
        write_stdin(stdin, server);
    }
    let (tx, rx) = mpsc::channel();
    let readers = [
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    ];
    for (i, pipe) in readers.into_iter().enumerate() {
        let Some(pipe) = pipe else { continue };
        let tx = tx.clone();
        // A reader stays blocked only while something holds the pipe open (a child of
        // the helper that outlives it); it is then left behind, never waited for.
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let r = pipe
                .take(MAX_HELPER_OUTPUT as u64 + 1)
                .read_to_end(&mut buf)
                .map(|_| buf);
            let _ = tx.send((i, r));
        });
    }
    drop(tx);
    let deadline = Instant::now() + timeout;
    let timed_out = || {
        err(format!(
            "no answer within {} s, it was stopped (ARCHCTL_CREDENTIAL_HELPER_TIMEOUT sets the limit)",
            timeout.as_secs()
        ))
    };
    let mut outputs: [Option<Vec<u8>>; 2] = [None, None];
    while outputs.iter().any(Option::is_none) {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok((_, Ok(buf))) if buf.len() > MAX_HELPER_OUTPUT => {
                stop(&mut child);
                return Err(err(format!(
                    "wrote more than {} KiB, more than archctl accepts; it was stopped",
                    MAX_HELPER_OUTPUT / 1024
                )));
            }
            Ok((i, Ok(buf))) => outputs[i] = Some(buf),
            Ok((_, Err(e))) => {
                stop(&mut child);
                return Err(err(format!("cannot read its output: {e}")));
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                stop(&mut child);
                return Err(timed_out());
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    // Both pipes are closed: the helper has exited, or is about to.
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break s,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
            Ok(None) => {
                stop(&mut child);
                return Err(timed_out());
            }
            Err(e) => {
                stop(&mut child);
                return Err(err(format!("cannot wait for it: {e}")));
            }
        }
    };
    let [stdout, stderr] = outputs.map(Option::unwrap_or_default);
    if !status.success() {
        // The helper protocol's answer for "nothing stored".
        let said = |b: &[u8]| {
            String::from_utf8_lossy(b)
                .to_ascii_lowercase()
                .contains("credentials not found")
        };
        if said(&stdout) || said(&stderr) {
            return Ok(None);
        }
        return Err(err(format!(
            "failed ({status}); what it wrote is not shown, as it may hold a secret"
        )));
    }
    // serde's message may quote the input: only where it broke is told.
    let r: HelperReply = serde_json::from_slice(&stdout).map_err(|e| {
        err(format!(
            "its reply is not JSON with Username and Secret (at line {}, column {}; not shown, as it may hold a secret)",
            e.line(),
            e.column()
        ))
    })?;
    Ok(Some(if r.username == "<token>" {
        Credentials::IdentityToken(r.secret)
    } else {
        Credentials::Basic {
            username: r.username,
            password: r.secret,
        }
    }))
}

/// Hand the helper its server URL from a thread of its own, SIGPIPE blocked there: a
/// helper that exits without reading it is no error, and must not kill archctl (which
/// takes SIGPIPE's default action for its own output). The signal stays pending on
/// that thread and goes with it.
fn write_stdin(mut stdin: std::process::ChildStdin, server: &str) {
    use nix::sys::signal::{SigSet, SigmaskHow, Signal, pthread_sigmask};
    let server = server.to_string();
    std::thread::spawn(move || {
        let mut set = SigSet::empty();
        set.add(Signal::SIGPIPE);
        if pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&set), None).is_ok() {
            let _ = stdin.write_all(server.as_bytes());
        }
    });
}

/// Kill a helper and reap it.
fn stop(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

#[cfg(test)]
mod tests {
    #[test]
    fn pull_secrets_give_auths_only() {
        let new = br#"{"auths": {"127.0.0.1:5000": {"auth": "dTpw"}},
                       "credHelpers": {"127.0.0.1:5000": "evil"}, "credsStore": "evil"}"#;
        let legacy = br#"{"reg.example:443": {"username": "a", "password": "b"}}"#;
        let (s, n) = CredentialStore::from_pull_secrets(&[
            new.to_vec(),
            b"not json".to_vec(),
            legacy.to_vec(),
        ]);
        assert_eq!(n, 2);
        assert_eq!(
            s.lookup("127.0.0.1:5000").unwrap(),
            Some(Credentials::Basic {
                username: "u".into(),
                password: "p".into()
            })
        );
        assert_eq!(
            s.lookup("reg.example:443").unwrap(),
            Some(Credentials::Basic {
                username: "a".into(),
                password: "b".into()
            })
        );
        // No helper runs for a registry the secrets do not name.
        assert_eq!(s.lookup("other.example").unwrap(), None);
    }

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
