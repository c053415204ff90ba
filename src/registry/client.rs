//! HTTP access to registries: the request flow over the run's transports and
//! connection pools (`transport`), the auth handshake with the run's token cache
//! (`auth`), plain HTTP only where allowed, bounded retries with backoff (honouring
//! `Retry-After`), redirects followed without credentials to other hosts, and size caps.
//!
//! Where credentials go: they are those of the host actually contacted (a mirror gets
//! its own, never the mirrored registry's), and are sent only to that host, and never
//! over plain HTTP when it was reached over HTTPS (a redirect from HTTPS to plain HTTP
//! on the same host is refused; a `realm` over plain HTTP gets none). A token `realm`
//! on another host does get them over HTTPS, as Docker does: the registry names its
//! auth server.

use std::{collections::HashMap, sync::Mutex, time::Duration};

use reqwest::{StatusCode, header};

use super::{
    MAX_ERROR_BODY_BYTES, MAX_TOKEN_BYTES, Options, RegistryError,
    auth::{Challenge, TokenCache, TokenReply, parse_challenge},
    credentials::{CredentialStore, Credentials},
    lock,
    reference::is_loopback_host,
    settings::DaemonConfig,
    transport::{HttpClients, Transport, Transports, chain_text, classify, is_reset},
};

/// One GET against a registry's API.
#[derive(Debug, Clone, Copy)]
pub struct Get<'a> {
    /// Registry name (`docker.io`), for messages.
    pub registry: &'a str,
    /// Host serving it (`registry-1.docker.io`, a mirror): the credentials sent are
    /// this host's own (see [`credential_name`]).
    pub host: &'a str,
    /// Repository, for the token scope.
    pub repo: &'a str,
    /// `/v2/...`
    pub path: &'a str,
    pub accept: &'a str,
    /// Largest body accepted.
    pub limit: usize,
    /// What is fetched, for messages.
    pub what: &'a str,
}

/// A response with its body read (within the cap).
#[derive(Debug)]
pub struct Fetched {
    pub status: StatusCode,
    pub headers: header::HeaderMap,
    pub body: Vec<u8>,
}

/// A GET's answer: read (an error status, or what [`Client::get`] asked for), or a
/// success whose body is left to the caller to stream ([`Client::get_stream`]).
#[derive(Debug)]
pub enum Reply {
    Read(Fetched),
    Stream(reqwest::Response),
}

/// The registry client for one run: picks the transport, authenticates (with the
/// run's token cache), sends, retries, follows redirects and reads within the caps.
pub struct Client {
    opts: Options,
    daemon: DaemonConfig,
    creds: CredentialStore,
    http: HttpClients,
    tokens: TokenCache,
    transports: Transports,
    /// host → credentials, or why there are none (looked up once per run: helpers are
    /// slow, and one that fails or times out is not asked again).
    credentials: Mutex<HashMap<String, Result<Option<Credentials>, RegistryError>>>,
}

impl Client {
    pub fn new(opts: Options, daemon: DaemonConfig, creds: CredentialStore) -> Client {
        Client {
            http: HttpClients::new(opts.timeout),
            opts,
            daemon,
            creds,
            tokens: TokenCache::default(),
            transports: Transports::default(),
            credentials: Mutex::new(HashMap::new()),
        }
    }

    pub fn options(&self) -> &Options {
        &self.opts
    }

    pub fn daemon(&self) -> &DaemonConfig {
        &self.daemon
    }

    /// May this registry be reached over plain HTTP or unverified TLS?
    pub fn allows_insecure(&self, registry: &str) -> bool {
        self.opts.insecure || is_loopback_host(registry) || self.daemon.is_insecure(registry)
    }

    /// Remember a transport that worked (e.g. from the on-disk cache).
    pub fn set_transport(&self, host: &str, t: Transport) {
        self.transports.set(host, t);
    }

    pub fn transport(&self, host: &str) -> Option<Transport> {
        self.transports.get(host)
    }

    /// The credentials stored for `name` (a [`credential_name`]).
    fn credentials(&self, name: &str) -> Result<Option<Credentials>, RegistryError> {
        if let Some(c) = lock(&self.credentials).get(name) {
            return c.clone();
        }
        let c = self.creds.lookup(name);
        lock(&self.credentials).insert(name.to_string(), c.clone());
        c
    }

    /// GET with the auth handshake, retries and redirects, over the first transport
    /// that speaks the protocol.
    pub async fn get(&self, g: Get<'_>) -> Result<Fetched, RegistryError> {
        match self.get_reply(g, false).await? {
            Reply::Read(f) => Ok(f),
            // Never answered when not asked for.
            Reply::Stream(r) => self.read(r, g.registry, g.limit, g.what).await,
        }
    }

    /// [`Client::get`], but a successful answer's body is not read: the caller streams
    /// it (layer blobs, read only as far as needed). Error answers are read as by `get`.
    pub async fn get_stream(&self, g: Get<'_>) -> Result<Reply, RegistryError> {
        self.get_reply(g, true).await
    }

    async fn get_reply(&self, g: Get<'_>, stream: bool) -> Result<Reply, RegistryError> {
        let transports = self
            .transports
            .candidates(g.host, self.allows_insecure(g.host));
        let mut last_err = None;
        for (i, t) in transports.iter().enumerate() {
            match self.get_via(*t, g, stream).await {
                Ok(f) => {
                    self.transports.set(g.host, *t);
                    return Ok(f);
                }
                // Only a failure to speak the protocol moves on to the next transport.
                Err(e @ (RegistryError::Tls { .. } | RegistryError::Http { .. }))
                    if i + 1 < transports.len() =>
                {
                    last_err = Some(e)
                }
                Err(e) => return Err(e),
            }
        }
        Err(last_err.unwrap_or_else(|| RegistryError::Http {
            registry: g.registry.to_string(),
            why: "no transport".into(),
        }))
    }

    async fn get_via(
        &self,
        t: Transport,
        g: Get<'_>,
        stream: bool,
    ) -> Result<Reply, RegistryError> {
        let Get {
            registry,
            host,
            repo,
            path,
            accept,
            limit,
            what,
        } = g;
        let url = format!("{}://{host}{path}", t.scheme());
        let scope = format!("repository:{repo}:pull");
        // The host contacted, not the registry it serves: a mirror is not trusted with
        // the mirrored registry's credentials.
        let cred_name = credential_name(host);
        let creds = self.credentials(cred_name)?;
        let unauthorized = || RegistryError::Unauthorized {
            registry: cred_name.to_string(),
            with_credentials: creds.is_some(),
        };
        // Once a host has said how it authenticates, authenticate up front.
        let known = self.tokens.challenge(host);
        let mut auth = match &known {
            Some(c) => Some(
                self.authorization(t, cred_name, host, &scope, c, creds.as_ref())
                    .await?,
            ),
            None => None,
        };
        let mut authenticated = auth.is_some();
        loop {
            let resp = self
                .send_following(t, registry, host, &url, accept, auth.as_deref())
                .await?;
            if resp.status() != StatusCode::UNAUTHORIZED {
                if stream && resp.status().is_success() {
                    return Ok(Reply::Stream(resp));
                }
                return self
                    .read(resp, registry, limit, what)
                    .await
                    .map(Reply::Read);
            }
            if authenticated {
                return Err(unauthorized());
            }
            let challenge = resp
                .headers()
                .get(header::WWW_AUTHENTICATE)
                .and_then(|v| v.to_str().ok())
                .and_then(parse_challenge)
                .ok_or_else(unauthorized)?;
            self.tokens.set_challenge(host, challenge.clone());
            auth = Some(
                self.authorization(t, cred_name, host, &scope, &challenge, creds.as_ref())
                    .await?,
            );
            authenticated = true;
        }
    }

    /// The Authorization header for a challenge: a Bearer token for the scope (one
    /// fetch per host and scope, however many requests wait for it), or Basic.
    /// `t`: how the registry is reached (a realm over plain HTTP gets no credentials
    /// when it is reached over HTTPS).
    async fn authorization(
        &self,
        t: Transport,
        registry: &str,
        host: &str,
        scope: &str,
        challenge: &Challenge,
        creds: Option<&Credentials>,
    ) -> Result<String, RegistryError> {
        match challenge {
            Challenge::Bearer { realm, service, .. } => {
                let tok = self
                    .tokens
                    .token(host, scope, || {
                        self.fetch_token(t, registry, realm, service.as_deref(), scope, creds)
                    })
                    .await?;
                Ok(format!("Bearer {tok}"))
            }
            Challenge::Basic => match creds {
                Some(Credentials::Basic { username, password }) => {
                    use base64::Engine;
                    let b = base64::engine::general_purpose::STANDARD
                        .encode(format!("{username}:{password}"));
                    Ok(format!("Basic {b}"))
                }
                _ => Err(RegistryError::Unauthorized {
                    registry: registry.to_string(),
                    with_credentials: false,
                }),
            },
        }
    }

    /// The token flow: GET realm?service=..&scope=.. (Basic credentials when there are
    /// some), or a POST with the refresh token for identity tokens.
    ///
    /// The realm may be on another host (Docker Hub's is auth.docker.io): it gets the
    /// credentials, as Docker's clients send them, since the registry named it — but
    /// only over HTTPS. A realm over plain HTTP must be loopback or insecure-listed, and
    /// gets credentials only when the registry itself is reached over plain HTTP; for
    /// a registry reached over HTTPS it may hand out anonymous tokens, and having
    /// credentials to send it is an error, never a leak.
    async fn fetch_token(
        &self,
        t: Transport,
        registry: &str,
        realm: &str,
        service: Option<&str>,
        scope: &str,
        creds: Option<&Credentials>,
    ) -> Result<(String, Duration), RegistryError> {
        let auth_err = |why: String| RegistryError::AuthServer {
            registry: registry.to_string(),
            why,
        };
        let realm_url =
            reqwest::Url::parse(realm).map_err(|e| auth_err(format!("realm {realm}: {e}")))?;
        let realm_hostport = url_hostport(&realm_url);
        // Credentials travel over TLS, or to a loopback/insecure-listed auth server of
        // a registry that is itself reached over plain HTTP.
        let plain_ok = self.allows_insecure(&realm_hostport);
        if realm_url.scheme() != "https" {
            if !plain_ok {
                return Err(auth_err(format!(
                    "refusing to send credentials to {realm} over plain HTTP"
                )));
            }
            if creds.is_some() && t != Transport::Http {
                return Err(auth_err(format!(
                    "refusing to send credentials to {realm} over plain HTTP: the registry is reached over HTTPS"
                )));
            }
        }
        let http = self.http.get(!plain_ok)?;
        let mut req = match creds {
            Some(Credentials::IdentityToken(refresh)) => {
                let mut form = vec![
                    ("grant_type", "refresh_token".to_string()),
                    ("refresh_token", refresh.clone()),
                    ("client_id", "archctl".to_string()),
                    ("scope", scope.to_string()),
                ];
                if let Some(s) = service {
                    form.push(("service", s.to_string()));
                }
                http.post(realm_url.clone()).form(&form)
            }
            _ => {
                let mut q: Vec<(&str, &str)> = vec![("scope", scope)];
                if let Some(s) = service {
                    q.push(("service", s));
                }
                let mut r = http.get(realm_url.clone()).query(&q);
                if let Some(Credentials::Basic { username, password }) = creds {
                    r = r.basic_auth(username, Some(password));
                }
                r
            }
        };
        req = req.header(header::ACCEPT, "application/json");
        let resp =
            req.send()
                .await
                .map_err(|e| match classify(&e, registry, self.opts.timeout) {
                    RegistryError::ConnectionRefused { .. } => {
                        auth_err(format!("{realm}: connection refused"))
                    }
                    RegistryError::Timeout { .. } => auth_err(format!("{realm}: timed out")),
                    other => auth_err(other.to_string()),
                })?;
        match resp.status() {
            s if s.is_success() => {}
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                return Err(RegistryError::Unauthorized {
                    registry: registry.to_string(),
                    with_credentials: creds.is_some(),
                });
            }
            s => return Err(auth_err(format!("{realm} answered {s}"))),
        }
        let body = match read_capped(resp, MAX_TOKEN_BYTES).await {
            Ok(Body::Whole(b)) => b,
            Ok(Body::Cut(_)) => {
                return Err(auth_err(format!(
                    "{realm}: token reply larger than {} KiB, more than archctl accepts",
                    MAX_TOKEN_BYTES / 1024
                )));
            }
            Err(e) => return Err(auth_err(format!("{realm}: {}", chain_text(&e)))),
        };
        let reply: TokenReply =
            serde_json::from_slice(&body).map_err(|e| auth_err(format!("bad token reply: {e}")))?;
        let tok = reply
            .bearer()
            .ok_or_else(|| auth_err("token reply without a token".into()))?
            .to_string();
        Ok((tok, reply.lifetime()))
    }

    /// Send with retries, following redirects; Authorization goes to `host` only, and
    /// never over plain HTTP when `t` is TLS: a redirect to another host is followed
    /// without it, one from HTTPS to plain HTTP on `host` itself is refused.
    async fn send_following(
        &self,
        t: Transport,
        registry: &str,
        host: &str,
        url: &str,
        accept: &str,
        auth: Option<&str>,
    ) -> Result<reqwest::Response, RegistryError> {
        let mut url = reqwest::Url::parse(url).map_err(|e| RegistryError::Http {
            registry: registry.to_string(),
            why: e.to_string(),
        })?;
        for _ in 0..6 {
            let same_host = url_hostport(&url) == host;
            // Compared with the transport, not the URL before: a chain https → other
            // host → http back to `host` is a downgrade too.
            let downgraded = t != Transport::Http && url.scheme() != "https";
            if same_host && downgraded && auth.is_some() {
                return Err(RegistryError::Downgrade {
                    registry: registry.to_string(),
                    // Without the query: it may carry a signature.
                    location: format!("{}://{}{}", url.scheme(), url_hostport(&url), url.path()),
                });
            }
            let verify = t == Transport::Https || !same_host;
            let auth = auth.filter(|_| same_host && !downgraded);
            let resp = self
                .send_retrying(registry, verify, &url, accept, auth)
                .await?;
            if !resp.status().is_redirection() {
                return Ok(resp);
            }
            let loc = resp
                .headers()
                .get(header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .ok_or_else(|| RegistryError::Http {
                    registry: registry.to_string(),
                    why: format!("{} without Location", resp.status()),
                })?;
            url = url.join(loc).map_err(|e| RegistryError::Http {
                registry: registry.to_string(),
                why: format!("bad redirect {loc}: {e}"),
            })?;
        }
        Err(RegistryError::Http {
            registry: registry.to_string(),
            why: "too many redirects".into(),
        })
    }

    async fn send_retrying(
        &self,
        registry: &str,
        verify: bool,
        url: &reqwest::Url,
        accept: &str,
        auth: Option<&str>,
    ) -> Result<reqwest::Response, RegistryError> {
        let http = self.http.get(verify)?;
        let mut attempt = 0u32;
        loop {
            let mut req = http.get(url.clone()).header(header::ACCEPT, accept);
            if let Some(a) = auth {
                req = req.header(header::AUTHORIZATION, a);
            }
            let result = req.send().await;
            let retry_after = match &result {
                Ok(r) if retryable_status(r.status()) => Some(
                    r.headers()
                        .get(header::RETRY_AFTER)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|s| s.trim().parse::<u64>().ok())
                        .map(|s| Duration::from_secs(s.min(10))),
                ),
                Err(e) if is_reset(e) => Some(None),
                _ => None,
            };
            match (retry_after, result) {
                (Some(wait), result) if attempt < self.opts.retries => {
                    let backoff = Duration::from_millis(100 << attempt.min(5));
                    tokio::time::sleep(wait.unwrap_or(backoff)).await;
                    attempt += 1;
                    drop(result);
                }
                (_, Ok(r)) => return Ok(r),
                (_, Err(e)) => return Err(classify(&e, registry, self.opts.timeout)),
            }
        }
    }

    /// Read the body within `limit`, mapping error statuses.
    async fn read(
        &self,
        mut resp: reqwest::Response,
        registry: &str,
        limit: usize,
        what: &str,
    ) -> Result<Fetched, RegistryError> {
        let status = resp.status();
        if status == StatusCode::BAD_REQUEST && resp.url().scheme() == "http" {
            // Go's TLS servers answer plain HTTP with this 400: try the next transport.
            let headers = resp.headers().clone();
            let body = read_capped(resp, MAX_ERROR_BODY_BYTES)
                .await
                .map(Body::into_bytes)
                .unwrap_or_default();
            if String::from_utf8_lossy(&body).contains("HTTP request to an HTTPS server") {
                return Err(RegistryError::Http {
                    registry: registry.to_string(),
                    why: "plain HTTP sent to a TLS server".into(),
                });
            }
            return Ok(Fetched {
                status,
                headers,
                body,
            });
        }
        if !status.is_success() {
            // An error reply: only its first bytes matter (the error code and message);
            // a body cut short simply does not parse, and the status speaks.
            let headers = resp.headers().clone();
            let body = read_capped(resp, MAX_ERROR_BODY_BYTES)
                .await
                .map(Body::into_bytes)
                .map_err(|e| classify(&e, registry, self.opts.timeout))?;
            return Ok(Fetched {
                status,
                headers,
                body,
            });
        }
        if let Some(len) = resp.content_length()
            && len as usize > limit
        {
            return Err(RegistryError::TooLarge {
                what: what.to_string(),
                size: len as usize,
                limit,
            });
        }
        let headers = resp.headers().clone();
        let mut body = Vec::new();
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|e| classify(&e, registry, self.opts.timeout))?
        {
            if body.len() + chunk.len() > limit {
                return Err(RegistryError::TooLarge {
                    what: what.to_string(),
                    size: body.len() + chunk.len(),
                    limit,
                });
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Fetched {
            status,
            headers,
            body,
        })
    }
}

/// A body read up to a cap: all of it, or the first `cap` bytes of a longer one (the
/// rest is never read: the connection is dropped).
enum Body {
    Whole(Vec<u8>),
    Cut(Vec<u8>),
}

impl Body {
    fn into_bytes(self) -> Vec<u8> {
        match self {
            Body::Whole(b) | Body::Cut(b) => b,
        }
    }
}

/// Read at most `cap` bytes of `resp`'s body; a declared length over the cap is not
/// read at all.
async fn read_capped(mut resp: reqwest::Response, cap: usize) -> Result<Body, reqwest::Error> {
    if resp.content_length().is_some_and(|l| l > cap as u64) {
        return Ok(Body::Cut(Vec::new()));
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await? {
        let room = cap - body.len();
        if chunk.len() > room {
            body.extend_from_slice(&chunk[..room]);
            return Ok(Body::Cut(body));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Body::Whole(body))
}

/// The name a host's credentials are stored under: Docker Hub's API host is known by
/// `docker.io`; any other host (a registry, a mirror) by its own `host[:port]`.
pub fn credential_name(host: &str) -> &str {
    if host == "registry-1.docker.io" {
        "docker.io"
    } else {
        host
    }
}

fn url_hostport(u: &reqwest::Url) -> String {
    let h = u.host_str().unwrap_or_default();
    match u.port() {
        Some(p) => format!("{h}:{p}"),
        None => h.to_string(),
    }
}

fn retryable_status(s: StatusCode) -> bool {
    matches!(s.as_u16(), 429 | 500 | 502 | 503 | 504)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_those_of_the_host_contacted() {
        assert_eq!(credential_name("registry-1.docker.io"), "docker.io");
        assert_eq!(credential_name("mirror.lan:5000"), "mirror.lan:5000");
        assert_eq!(credential_name("ghcr.io"), "ghcr.io");
    }
}
