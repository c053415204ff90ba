//! The small HTTP/1.1 server the agent (health) and the webhook (admission, health,
//! metrics) answer from, over plain TCP or TLS (rustls with ring, as the registry
//! client). Bounded everywhere a peer could hold it: the TLS handshake and the request
//! head have deadlines, a request body has a size limit (413 past it), and at most
//! [`MAX_CONNECTIONS`] connections are served at once (the rest wait in the backlog).

use std::{
    future::Future, io::Read, net::SocketAddr, path::Path, pin::Pin, sync::Arc, time::Duration,
};

use http_body_util::{BodyExt, Full, Limited};
use hyper::{body::Bytes, server::conn::http1, service::service_fn};
use hyper_util::rt::{TokioIo, TokioTimer};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
use tokio::{net::TcpListener, sync::Semaphore};

use super::KubeError;

/// Connections served at once.
pub const MAX_CONNECTIONS: usize = 256;
/// Time for a TLS handshake, and for a request's head.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest certificate or key file read.
const MAX_PEM_BYTES: u64 = 1024 * 1024;

/// One request, body read in full (within the server's limit).
#[derive(Debug)]
pub struct Request {
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    pub body: Vec<u8>,
}

/// One response.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Vec<u8>,
}

impl Response {
    pub fn text(status: u16, body: impl Into<String>) -> Response {
        Response {
            status,
            content_type: "text/plain; charset=utf-8",
            body: body.into().into_bytes(),
        }
    }

    pub fn json(status: u16, body: Vec<u8>) -> Response {
        Response {
            status,
            content_type: "application/json",
            body,
        }
    }
}

/// What answers requests.
pub type Handler =
    Arc<dyn Fn(Request) -> Pin<Box<dyn Future<Output = Response> + Send>> + Send + Sync>;

/// Bind `addr` (`HOST:PORT`; port 0 picks a free one).
pub async fn bind(addr: &str) -> Result<TcpListener, KubeError> {
    let sock: SocketAddr = addr.parse().map_err(|e| KubeError::Listen {
        addr: addr.to_string(),
        why: format!("not an address of the form HOST:PORT ({e})"),
    })?;
    TcpListener::bind(sock)
        .await
        .map_err(|e| KubeError::Listen {
            addr: addr.to_string(),
            why: e.to_string(),
        })
}

fn read_pem(what: &'static str, path: &Path) -> Result<Vec<u8>, KubeError> {
    let err = |why: String| KubeError::Tls {
        what,
        path: path.display().to_string(),
        why,
    };
    let f = std::fs::File::open(path).map_err(|e| err(e.to_string()))?;
    if !f.metadata().map_err(|e| err(e.to_string()))?.is_file() {
        return Err(err("not a regular file".into()));
    }
    let mut bytes = Vec::new();
    f.take(MAX_PEM_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| err(e.to_string()))?;
    if bytes.len() as u64 > MAX_PEM_BYTES {
        return Err(err(format!("larger than {MAX_PEM_BYTES} bytes")));
    }
    Ok(bytes)
}

/// A TLS server configuration from a PEM certificate chain and its PEM private key.
pub fn tls_config(cert: &Path, key: &Path) -> Result<Arc<rustls::ServerConfig>, KubeError> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let chain = CertificateDer::pem_slice_iter(&read_pem("certificate", cert)?)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| KubeError::Tls {
            what: "certificate",
            path: cert.display().to_string(),
            why: e.to_string(),
        })?;
    if chain.is_empty() {
        return Err(KubeError::Tls {
            what: "certificate",
            path: cert.display().to_string(),
            why: "no PEM CERTIFICATE in it".into(),
        });
    }
    let key_der =
        PrivateKeyDer::from_pem_slice(&read_pem("key", key)?).map_err(|e| KubeError::Tls {
            what: "key",
            path: key.display().to_string(),
            why: e.to_string(),
        })?;
    let mut config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(chain, key_der)
        .map_err(|e| KubeError::Tls {
            what: "key",
            path: key.display().to_string(),
            why: format!("does not go with the certificate {}: {e}", cert.display()),
        })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Serve `listener` until `shutdown` completes: each connection in a task of its own,
/// bodies up to `max_body` bytes.
pub async fn serve(
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    max_body: usize,
    handler: Handler,
    shutdown: impl Future<Output = ()>,
) {
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            _ = &mut shutdown => return,
            p = slots.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => return },
        };
        let stream = tokio::select! {
            _ = &mut shutdown => return,
            a = listener.accept() => match a {
                Ok((s, _)) => s,
                // EMFILE and the like: back off instead of spinning.
                Err(_) => { tokio::time::sleep(Duration::from_millis(50)).await; continue }
            },
        };
        let handler = handler.clone();
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            let _permit = permit;
            match acceptor {
                Some(a) => {
                    if let Ok(Ok(s)) =
                        tokio::time::timeout(HANDSHAKE_TIMEOUT, a.accept(stream)).await
                    {
                        connection(TokioIo::new(s), max_body, handler).await;
                    }
                }
                None => connection(TokioIo::new(stream), max_body, handler).await,
            }
        });
    }
}

async fn connection<I>(io: I, max_body: usize, handler: Handler)
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let service = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
        let handler = handler.clone();
        async move {
            let (parts, body) = req.into_parts();
            let response = match Limited::new(body, max_body).collect().await {
                Ok(b) => {
                    handler(Request {
                        method: parts.method.to_string(),
                        path: parts.uri.path().to_string(),
                        query: parts.uri.query().map(str::to_string),
                        body: b.to_bytes().to_vec(),
                    })
                    .await
                }
                Err(e)
                    if e.downcast_ref::<http_body_util::LengthLimitError>()
                        .is_some() =>
                {
                    Response::text(413, format!("request body larger than {max_body} bytes\n"))
                }
                Err(e) => Response::text(400, format!("reading the request body: {e}\n")),
            };
            let mut r = hyper::Response::new(Full::new(Bytes::from(response.body)));
            *r.status_mut() = hyper::StatusCode::from_u16(response.status)
                .unwrap_or(hyper::StatusCode::INTERNAL_SERVER_ERROR);
            r.headers_mut().insert(
                hyper::header::CONTENT_TYPE,
                hyper::header::HeaderValue::from_static(response.content_type),
            );
            Ok::<_, std::convert::Infallible>(r)
        }
    });
    let _ = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HANDSHAKE_TIMEOUT)
        .serve_connection(io, service)
        .await;
}
