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
            .map_err(|e| {
                // The builder loads the system's CA certificates when it verifies: that
                // is what fails it there (an unverified client needs none).
                let why = std::iter::once(e.to_string())
                    .chain(sources(&e).map(ToString::to_string))
                    .collect::<Vec<_>>()
                    .join(": ");
                if verify {
                    RegistryError::NoTrustRoots(why)
                } else {
                    RegistryError::Client(why)
                }
            })?;
        Ok(cell.get_or_init(|| c))
    }
}

/// The errors under `e`, outermost first.
fn sources<'a>(
    e: &'a reqwest::Error,
) -> impl Iterator<Item = &'a (dyn std::error::Error + 'static)> {
    std::iter::successors(e.source(), |&s| s.source())
}

fn io_kinds(e: &reqwest::Error) -> Vec<std::io::ErrorKind> {
    sources(e)
        .filter_map(|s| s.downcast_ref::<std::io::Error>())
        .map(std::io::Error::kind)
        .collect()
}

/// `s`, and the errors an `io::Error` wraps, which its `source()` skips: hyper-rustls
/// and tokio-rustls hand rustls' errors (and the handshake's EOF) on inside them.
fn unwrapped<'a>(
    s: &'a (dyn std::error::Error + 'static),
) -> impl Iterator<Item = &'a (dyn std::error::Error + 'static)> {
    std::iter::successors(Some(s), |&s| {
        let inner = s.downcast_ref::<std::io::Error>()?.get_ref()?;
        Some(inner as &(dyn std::error::Error + 'static))
    })
}

/// A TLS failure: rustls refused the peer (its certificate, an alert, no common
/// ground), or the peer hung up while connecting, which over TCP can only be during
/// the handshake. A reply that is not TLS at all (rustls' `InvalidMessage`: a plain
/// HTTP server) is a protocol mismatch instead.
fn is_tls_failure(e: &reqwest::Error) -> bool {
    sources(e).flat_map(unwrapped).any(|s| {
        if let Some(r) = s.downcast_ref::<rustls::Error>() {
            return !matches!(r, rustls::Error::InvalidMessage(_));
        }
        e.is_connect()
            && s.downcast_ref::<std::io::Error>()
                .is_some_and(|io| io.kind() == std::io::ErrorKind::UnexpectedEof)
    })
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

/// The error and its sources, `: `-joined.
pub fn chain_text(e: &reqwest::Error) -> String {
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
    let why = chain_text(e);
    if is_tls_failure(e) {
        return RegistryError::Tls { registry, why };
    }
    RegistryError::Http { registry, why }
}

#[cfg(test)]
mod tests {
    use std::{
        io::{Read, Write},
        net::TcpListener,
    };

    use super::*;

    /// A server on loopback that answers each connection with `reply` (and closes),
    /// after the client's first bytes (a ClientHello, a request) have arrived: closing
    /// before them races the client's write and can end in a reset instead.
    fn server(reply: &'static [u8]) -> String {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap().to_string();
        std::thread::spawn(move || {
            for mut c in l.incoming().flatten() {
                let _ = c.read(&mut [0u8; 4096]);
                let _ = c.write_all(reply);
            }
        });
        addr
    }

    fn classify_get(url: String) -> RegistryError {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let http = HttpClients::new(Duration::from_secs(5));
        let e = rt
            .block_on(async { http.get(true).unwrap().get(url).send().await })
            .unwrap_err();
        classify(&e, "reg", Duration::from_secs(5))
    }

    #[test]
    fn tls_failures_are_told_by_error_type() {
        // Hung up during the handshake.
        let closes = server(b"");
        let e = classify_get(format!("https://{closes}/v2/"));
        assert!(matches!(e, RegistryError::Tls { .. }), "{e}");
        // Hung up on a plain HTTP request: not a TLS failure.
        let e = classify_get(format!("http://{closes}/v2/"));
        assert!(matches!(e, RegistryError::Http { .. }), "{e}");
        // Not TLS at all where TLS was expected: a protocol mismatch.
        let plain = server(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n");
        let e = classify_get(format!("https://{plain}/v2/"));
        assert!(matches!(e, RegistryError::Http { .. }), "{e}");
    }

    #[test]
    fn transports_try_the_one_that_worked_first() {
        let t = Transports::default();
        assert_eq!(t.candidates("ghcr.io", false), [Transport::Https]);
        assert_eq!(
            t.candidates("lab.example:5000", true),
            [Transport::HttpsUnverified, Transport::Http]
        );
        assert_eq!(
            t.candidates("127.0.0.1:5000", false),
            [Transport::Http, Transport::HttpsUnverified]
        );
        t.set("lab.example:5000", Transport::Http);
        assert_eq!(
            t.candidates("lab.example:5000", true),
            [Transport::Http, Transport::HttpsUnverified]
        );
    }
}
