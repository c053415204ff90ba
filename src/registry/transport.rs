//! How archctl reaches a registry: the transports (TLS, unverified TLS, plain HTTP),
//! which one worked for each host, the run's HTTP clients (one connection pool each),
//! and what a failed request means to a user.

use std::{
    collections::HashMap,
    error::Error as _,
    sync::{Mutex, OnceLock},
    time::Duration,
};

use super::{RegistryError, lock, reference::is_loopback_host};

/// How to reach a registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    Https,
    /// TLS without certificate verification (insecure registries only).
    HttpsUnverified,
    Http,
}

impl Transport {
    pub fn scheme(self) -> &'static str {
        match self {
            Transport::Http => "http",
            _ => "https",
        }
    }
}

/// host → the transport that worked, for the run.
#[derive(Default)]
pub struct Transports {
    known: Mutex<HashMap<String, Transport>>,
}

impl Transports {
    /// Transports to try for `host`, in order: the one that worked before first.
    /// `insecure_allowed`: plain HTTP and unverified TLS may be used.
    pub fn candidates(&self, host: &str, insecure_allowed: bool) -> Vec<Transport> {
        let mut v = if is_loopback_host(host) {
            // A registry on this machine is most often plain HTTP (docker-registry's
            // default); TLS is tried next.
            vec![Transport::Http, Transport::HttpsUnverified]
        } else if insecure_allowed {
            // Docker's order for insecure registries: TLS first, then plain HTTP.
            vec![Transport::HttpsUnverified, Transport::Http]
        } else {
            vec![Transport::Https]
        };
        if let Some(t) = self.get(host)
            && let Some(i) = v.iter().position(|x| *x == t)
        {
            v[..=i].rotate_right(1);
        }
        v
    }

    /// Remember a transport that worked.
    pub fn set(&self, host: &str, t: Transport) {
        lock(&self.known).insert(host.to_string(), t);
    }

    pub fn get(&self, host: &str) -> Option<Transport> {
        lock(&self.known).get(host).copied()
    }
}

/// The run's HTTP clients, built on first use: one verifying certificates, one not.
pub struct HttpClients {
    timeout: Duration,
    verified: OnceLock<reqwest::Client>,
    unverified: OnceLock<reqwest::Client>,
}

impl HttpClients {
    pub fn new(timeout: Duration) -> HttpClients {
        HttpClients {
            timeout,
            verified: OnceLock::new(),
            unverified: OnceLock::new(),
        }
    }

    pub fn get(&self, verify: bool) -> Result<&reqwest::Client, RegistryError> {
        let cell = if verify {
            &self.verified
        } else {
            &self.unverified
        };
        if let Some(c) = cell.get() {
            return Ok(c);
        }
        // ring rather than aws-lc-rs: aws-lc seeds its jitter entropy source on first
        // use, ~40 ms of CPU on every run that speaks TLS.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let c = reqwest::Client::builder()
            .user_agent(concat!("archctl/", env!("CARGO_PKG_VERSION")))
            .redirect(reqwest::redirect::Policy::none())
            .timeout(self.timeout)
            .connect_timeout(self.timeout.min(Duration::from_secs(10)))
            .pool_idle_timeout(Duration::from_secs(30))
            .tls_danger_accept_invalid_certs(!verify)
            .build()
            .map_err(|e| RegistryError::Client(e.to_string()))?;
        Ok(cell.get_or_init(|| c))
    }
}

fn io_kinds(e: &reqwest::Error) -> Vec<std::io::ErrorKind> {
    let mut kinds = Vec::new();
    let mut src = e.source();
    while let Some(s) = src {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            kinds.push(io.kind());
        }
        src = s.source();
    }
    kinds
}

/// A connection dropped by the peer: worth another try.
pub fn is_reset(e: &reqwest::Error) -> bool {
    if e.is_timeout()
        || e.is_connect() && io_kinds(e).contains(&std::io::ErrorKind::ConnectionRefused)
    {
        return false;
    }
    let kinds = io_kinds(e);
    kinds.iter().any(|k| {
        matches!(
            k,
            std::io::ErrorKind::ConnectionReset
                | std::io::ErrorKind::ConnectionAborted
                | std::io::ErrorKind::BrokenPipe
                | std::io::ErrorKind::UnexpectedEof
        )
    }) || chain_text(e).contains("connection closed before message completed")
}

fn chain_text(e: &reqwest::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(x) = src {
        s.push_str(": ");
        s.push_str(&x.to_string());
        src = x.source();
    }
    s
}

/// Turn a transport error into one a user can act on.
pub fn classify(e: &reqwest::Error, registry: &str, timeout: Duration) -> RegistryError {
    let registry = registry.to_string();
    if e.is_timeout() {
        return RegistryError::Timeout {
            registry,
            secs: timeout.as_secs(),
        };
    }
    let kinds = io_kinds(e);
    if kinds.contains(&std::io::ErrorKind::ConnectionRefused) {
        return RegistryError::ConnectionRefused { registry };
    }
    let text = chain_text(e);
    let lower = text.to_ascii_lowercase();
    if lower.contains("certificate")
        || lower.contains("tls")
        || lower.contains("handshake")
        || lower.contains("invalid peer")
        || lower.contains("unknownissuer")
    {
        return RegistryError::Tls {
            registry,
            why: text,
        };
    }
    RegistryError::Http {
        registry,
        why: text,
    }
}
