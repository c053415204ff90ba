//! The registry auth handshake: `WWW-Authenticate` challenges (Bearer token flow and
//! Basic), token endpoint replies, and the run's cache of challenges and tokens.

use std::{
    collections::HashMap,
    future::Future,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use super::{RegistryError, lock};

/// A parsed `WWW-Authenticate` challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    Bearer {
        realm: String,
        service: Option<String>,
        scope: Option<String>,
    },
    Basic,
}

/// Parse a `WWW-Authenticate` header value (`Bearer realm="..",service="..",scope=".."`).
pub fn parse_challenge(header: &str) -> Option<Challenge> {
    let header = header.trim();
    let (scheme, rest) = header.split_once(' ').unwrap_or((header, ""));
    let params = parse_params(rest);
    match scheme.to_ascii_lowercase().as_str() {
        "bearer" => Some(Challenge::Bearer {
            realm: params.get("realm")?.clone(),
            service: params.get("service").cloned(),
            scope: params.get("scope").cloned(),
        }),
        "basic" => Some(Challenge::Basic),
        _ => None,
    }
}

/// `key="quoted, value",key2=token` pairs; keys lower-cased.
fn parse_params(s: &str) -> HashMap<String, String> {
    let mut out = HashMap::new();
    let mut chars = s.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
        if key.is_empty() {
            break;
        }
        let mut value = String::new();
        let quoted = chars.peek() == Some(&'"');
        if quoted {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => {
                        if let Some(n) = chars.next() {
                            value.push(n)
                        }
                    }
                    '"' => break,
                    c => value.push(c),
                }
            }
        } else {
            while let Some(c) = chars.peek() {
                if *c == ',' {
                    break;
                }
                value.push(*c);
                chars.next();
            }
        }
        // A quoted-string is taken exactly; a bare token without the spaces around it.
        let value = if quoted {
            value
        } else {
            value.trim().to_string()
        };
        out.insert(key.trim().to_ascii_lowercase(), value);
    }
    out
}

/// A token endpoint's reply.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct TokenReply {
    #[serde(default)]
    pub token: Option<String>,
    #[serde(default)]
    pub access_token: Option<String>,
    /// Seconds; the spec's default is 60.
    #[serde(default)]
    pub expires_in: Option<u64>,
}

impl TokenReply {
    pub fn bearer(&self) -> Option<&str> {
        self.token
            .as_deref()
            .or(self.access_token.as_deref())
            .filter(|t| !t.is_empty())
    }

    /// How long to reuse the token: its lifetime less a safety margin.
    pub fn lifetime(&self) -> std::time::Duration {
        let secs = self.expires_in.unwrap_or(60).max(1);
        std::time::Duration::from_secs(secs.saturating_sub(secs / 10 + 1).max(1))
    }
}

/// Held while a token is fetched, so others asking for the same one wait for it.
type Gate = Arc<tokio::sync::Mutex<()>>;

/// A Bearer token and when to stop using it.
struct CachedToken {
    token: String,
    until: Instant,
}

/// What one run learnt about authenticating: each host's challenge, and Bearer tokens
/// per host and scope (fetched once, however many requests wait for them).
#[derive(Default)]
pub struct TokenCache {
    /// host → how it asked to authenticate.
    challenges: Mutex<HashMap<String, Challenge>>,
    /// (host, scope) → token.
    tokens: Mutex<HashMap<(String, String), CachedToken>>,
    /// (host, scope) → the gate that makes concurrent requests share one token fetch.
    gates: Mutex<HashMap<(String, String), Gate>>,
}

impl TokenCache {
    /// How `host` asked to authenticate, once it has.
    pub fn challenge(&self, host: &str) -> Option<Challenge> {
        lock(&self.challenges).get(host).cloned()
    }

    pub fn set_challenge(&self, host: &str, challenge: Challenge) {
        lock(&self.challenges).insert(host.to_string(), challenge);
    }

    /// The token for `host` and `scope`: a cached one still valid, else the one `fetch`
    /// returns (with its lifetime), cached for that long. Concurrent callers for the
    /// same host and scope wait for the first one's fetch.
    pub async fn token<F, Fut>(
        &self,
        host: &str,
        scope: &str,
        fetch: F,
    ) -> Result<String, RegistryError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<(String, Duration), RegistryError>>,
    {
        let key = (host.to_string(), scope.to_string());
        let gate = lock(&self.gates).entry(key.clone()).or_default().clone();
        let _turn = gate.lock().await;
        if let Some(t) = lock(&self.tokens).get(&key)
            && Instant::now() < t.until
        {
            return Ok(t.token.clone());
        }
        let (token, lifetime) = fetch().await?;
        lock(&self.tokens).insert(
            key,
            CachedToken {
                token: token.clone(),
                until: Instant::now() + lifetime,
            },
        );
        Ok(token)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_challenge_with_quoted_commas() {
        let c = parse_challenge(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/alpine:pull,push""#,
        )
        .unwrap();
        assert_eq!(
            c,
            Challenge::Bearer {
                realm: "https://auth.docker.io/token".into(),
                service: Some("registry.docker.io".into()),
                scope: Some("repository:library/alpine:pull,push".into()),
            }
        );
        assert_eq!(
            parse_challenge(r#"Basic realm="Registry Realm""#),
            Some(Challenge::Basic)
        );
        assert_eq!(parse_challenge("Negotiate"), None);
        assert_eq!(
            parse_challenge("Bearer service=x"),
            None,
            "realm is required"
        );
    }

    #[test]
    fn token_reply_variants() {
        let r: TokenReply =
            serde_json::from_str(r#"{"access_token":"a","expires_in":300}"#).unwrap();
        assert_eq!(r.bearer(), Some("a"));
        assert!(r.lifetime().as_secs() >= 250 && r.lifetime().as_secs() < 300);
        let r: TokenReply = serde_json::from_str(r#"{"token":"t"}"#).unwrap();
        assert_eq!(r.bearer(), Some("t"));
        assert_eq!(r.lifetime().as_secs(), 53);
        let r: TokenReply = serde_json::from_str(r#"{"token":""}"#).unwrap();
        assert_eq!(r.bearer(), None);
    }

    #[test]
    fn token_cache_fetches_once_for_concurrent_requests_and_refetches_when_expired() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let cache = TokenCache::default();
        let fetches = AtomicUsize::new(0);
        let fetch = |lifetime: Duration| {
            let fetches = &fetches;
            move || async move {
                let n = fetches.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(20)).await;
                Ok((format!("t{n}"), lifetime))
            }
        };
        let long = Duration::from_secs(60);
        let (a, b) = rt.block_on(async {
            tokio::join!(
                cache.token("h", "s", fetch(long)),
                cache.token("h", "s", fetch(long))
            )
        });
        assert_eq!((a.unwrap(), b.unwrap()), ("t0".into(), "t0".into()));
        assert_eq!(fetches.load(Ordering::SeqCst), 1);
        // Another scope is another token; an expired one is fetched again.
        let c = rt.block_on(cache.token("h", "other", fetch(Duration::ZERO)));
        assert_eq!(c.unwrap(), "t1");
        let d = rt.block_on(cache.token("h", "other", fetch(long)));
        assert_eq!(d.unwrap(), "t2");
    }
}
