//! Registry test support: real `docker-registry` processes (Debian's distribution 2.8), a
//! Docker token server, a fault-injecting HTTP proxy, and OCI/Docker image fixtures made
//! from the test programs in `test-images/bin`, pushed through the registry HTTP API.
//!
//! Every socket is on 127.0.0.1, and every wait, connection and read is bounded in time.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::{
    collections::{HashMap, HashSet},
    io::{self, BufRead, BufReader, Read, Write},
    net::{Shutdown, SocketAddr, TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    str::FromStr,
    sync::{
        Arc, Mutex, OnceLock,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use oci_spec::image::{
    Arch, Descriptor, DescriptorBuilder, Digest, ImageIndexBuilder, ImageManifestBuilder,
    MediaType, Os, Platform, PlatformBuilder,
};
use serde_json::{Value, json};

/// Connect timeout for every support-side connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Read/write timeout for every support-side socket.
const IO_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a registry may take to answer `GET /v2/` after start.
const READY_TIMEOUT: Duration = Duration::from_secs(10);

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
pub const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
pub const IN_TOTO: &str = "application/vnd.in-toto+json";

/// The `service` every token-auth registry and the token server agree on.
pub const TOKEN_SERVICE: &str = "archctl-test-registry";
/// The `iss` of every token the token server signs.
pub const TOKEN_ISSUER: &str = "archctl-test-token-server";

/// Platforms of the standard multi-arch fixture index (fixture kind (a)).
pub const INDEX_PLATFORMS: &[&str] = &[
    "linux/amd64",
    "linux/arm64/v8",
    "linux/arm/v7",
    "linux/arm/v6",
    "linux/ppc64le",
    "linux/s390x",
    "linux/riscv64",
    "linux/386",
];

// ---------------------------------------------------------------------------------------
// Small helpers
// ---------------------------------------------------------------------------------------

/// Lowercase hex sha256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::{Digest as _, Sha256};
    let mut s = String::with_capacity(64);
    for b in Sha256::digest(bytes) {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

/// `sha256:<hex>` digest of `bytes`.
pub fn digest_of(bytes: &[u8]) -> String {
    format!("sha256:{}", sha256_hex(bytes))
}

fn hex_part(digest: &str) -> &str {
    digest.strip_prefix("sha256:").unwrap_or(digest)
}

fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// RFC 3339 UTC time for a Unix timestamp.
fn rfc3339(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Panic unless `addr` is a 127.0.0.1 socket address (all test traffic stays local).
fn local_addr(addr: &str) -> SocketAddr {
    let sa: SocketAddr = addr
        .parse()
        .unwrap_or_else(|e| panic!("bad address {addr:?}: {e}"));
    assert!(
        sa.ip().is_loopback(),
        "test traffic must stay on loopback, not {addr}"
    );
    sa
}

/// A free 127.0.0.1 port (bound, then released; the caller retries on a lost race).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => {
                let hex = std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(v) => {
                        out.push(v);
                        i += 3;
                        continue;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// All values of `key` in the query string of `target` (percent-decoded).
fn query_values(target: &str, key: &str) -> Vec<String> {
    let Some((_, q)) = target.split_once('?') else {
        return vec![];
    };
    q.split('&')
        .filter_map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (percent_decode(k) == key).then(|| percent_decode(v))
        })
        .collect()
}

// ---------------------------------------------------------------------------------------
// Minimal HTTP/1.1 (client and server), used by the pusher, token server and proxy
// ---------------------------------------------------------------------------------------

/// An HTTP response: status, headers (in order) and the decoded body.
#[derive(Debug, Clone, Default)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// First header called `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        find_header(&self.headers, name)
    }

    /// The body as (lossy) UTF-8.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body parsed as JSON (panics when it is not).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }
}

#[derive(Debug, Clone)]
pub struct HttpRequest {
    pub method: String,
    pub target: String,
    pub version: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpRequest {
    fn header(&self, name: &str) -> Option<&str> {
        find_header(&self.headers, name)
    }

    fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or("")
    }
}

fn find_header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

fn invalid(msg: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.to_string())
}

/// A message's start line and headers.
type Head = (String, Vec<(String, String)>);

/// Start line and headers of one message; None on a clean EOF before it.
fn read_head<R: BufRead>(r: &mut R) -> io::Result<Option<Head>> {
    let mut start = String::new();
    loop {
        start.clear();
        if r.read_line(&mut start)? == 0 {
            return Ok(None);
        }
        if !start.trim().is_empty() {
            break;
        }
    }
    let mut headers = Vec::new();
    let mut total = start.len();
    loop {
        let mut line = String::new();
        let n = r.read_line(&mut line)?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        total += n;
        if total > 256 * 1024 {
            return Err(invalid("header section too large"));
        }
        let line = line.trim_end_matches(['\r', '\n']);
        if line.is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    Ok(Some((start.trim_end().to_string(), headers)))
}

/// A message body framed by chunked encoding, Content-Length, or (responses) EOF.
fn read_body<R: BufRead>(
    r: &mut R,
    headers: &[(String, String)],
    until_eof: bool,
) -> io::Result<Vec<u8>> {
    let chunked = find_header(headers, "transfer-encoding")
        .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
    if chunked {
        let mut body = Vec::new();
        loop {
            let mut line = String::new();
            if r.read_line(&mut line)? == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            let size = line.trim().split(';').next().unwrap_or("").trim();
            let size = usize::from_str_radix(size, 16).map_err(invalid)?;
            if size == 0 {
                loop {
                    let mut t = String::new();
                    if r.read_line(&mut t)? == 0 || t.trim().is_empty() {
                        return Ok(body);
                    }
                }
            }
            let at = body.len();
            body.resize(at + size, 0);
            r.read_exact(&mut body[at..])?;
            let mut crlf = [0u8; 2];
            r.read_exact(&mut crlf)?;
        }
    }
    if let Some(len) = find_header(headers, "content-length") {
        let len: usize = len.trim().parse().map_err(invalid)?;
        let mut body = vec![0; len];
        r.read_exact(&mut body)?;
        return Ok(body);
    }
    let mut body = Vec::new();
    if until_eof {
        r.read_to_end(&mut body)?;
    }
    Ok(body)
}

const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "content-length",
    "expect",
    "upgrade",
    "te",
];

/// One HTTP/1.1 exchange with `addr` ("127.0.0.1:PORT") on a fresh connection with
/// `Connection: close` (2 s connect, 10 s read/write timeouts). `Host` defaults to `addr`.
pub fn http_exchange(
    addr: &str,
    method: &str,
    target: &str,
    headers: &[(String, String)],
    body: &[u8],
) -> io::Result<HttpResponse> {
    let sa = local_addr(addr);
    let mut s = TcpStream::connect_timeout(&sa, CONNECT_TIMEOUT)?;
    s.set_read_timeout(Some(IO_TIMEOUT))?;
    s.set_write_timeout(Some(IO_TIMEOUT))?;
    s.set_nodelay(true)?;
    let mut head = format!("{method} {target} HTTP/1.1\r\n");
    if find_header(headers, "host").is_none() {
        head.push_str(&format!("Host: {addr}\r\n"));
    }
    for (k, v) in headers {
        if HOP_BY_HOP.contains(&k.to_ascii_lowercase().as_str()) {
            continue;
        }
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("Connection: close\r\n");
    if !body.is_empty() || matches!(method, "POST" | "PUT" | "PATCH") {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes())?;
    s.write_all(body)?;
    s.flush()?;
    let mut r = BufReader::new(s);
    loop {
        let (start, headers) = read_head(&mut r)?
            .ok_or_else(|| io::Error::new(io::ErrorKind::UnexpectedEof, "no response"))?;
        let status: u16 = start
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .ok_or_else(|| invalid(format!("bad status line {start:?}")))?;
        if (100..200).contains(&status) {
            continue;
        }
        let body = if method == "HEAD" || status == 204 || status == 304 {
            Vec::new()
        } else {
            read_body(&mut r, &headers, true)?
        };
        return Ok(HttpResponse {
            status,
            headers,
            body,
        });
    }
}

/// Split `http://127.0.0.1:PORT/path?q` into ("127.0.0.1:PORT", "/path?q").
fn split_url(url: &str) -> (String, String) {
    let rest = url
        .strip_prefix("http://")
        .unwrap_or_else(|| panic!("only http:// URLs on 127.0.0.1: {url}"));
    let (addr, target) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    local_addr(addr);
    (addr.to_string(), target.to_string())
}

/// [`http_exchange`] on a full `http://127.0.0.1:PORT/...` URL.
pub fn http_request(
    method: &str,
    url: &str,
    headers: &[(String, String)],
    body: &[u8],
) -> io::Result<HttpResponse> {
    let (addr, target) = split_url(url);
    http_exchange(&addr, method, &target, headers, body)
}

/// `GET url` (panics on a transport error, not on an HTTP error status).
pub fn http_get(url: &str) -> HttpResponse {
    http_request("GET", url, &[], &[]).unwrap_or_else(|e| panic!("GET {url}: {e}"))
}

fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        206 => "Partial Content",
        301 => "Moved Permanently",
        302 => "Found",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        416 => "Range Not Satisfiable",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Status",
    }
}

/// What a server handler wants done with one request.
pub enum Reply {
    Send(HttpResponse),
    /// Close the connection without answering.
    Reset,
    /// Send the head (with the full Content-Length) and only the first `n` body bytes,
    /// then close.
    Truncate(HttpResponse, usize),
}

pub type Handler = Arc<dyn Fn(&HttpRequest) -> Reply + Send + Sync>;

/// A thread-per-connection HTTP/1.1 server on 127.0.0.1 (keep-alive supported): the
/// one server behind the token server, the fault proxy and `support::FakeServer`.
pub struct Server {
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
    conns: Arc<Mutex<HashMap<u64, TcpStream>>>,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    pub fn start(handler: Handler) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let conns: Arc<Mutex<HashMap<u64, TcpStream>>> = Arc::default();
        let thread = {
            let (stop, conns) = (stop.clone(), conns.clone());
            std::thread::spawn(move || {
                let mut next_id = 0u64;
                for conn in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(stream) = conn else {
                        std::thread::sleep(Duration::from_millis(5));
                        continue;
                    };
                    next_id += 1;
                    let id = next_id;
                    if let Ok(c) = stream.try_clone() {
                        conns.lock().unwrap().insert(id, c);
                    }
                    let (handler, stop, conns) = (handler.clone(), stop.clone(), conns.clone());
                    std::thread::spawn(move || {
                        serve_conn(stream, &handler, &stop);
                        conns.lock().unwrap().remove(&id);
                    });
                }
            })
        };
        Server {
            addr,
            stop,
            conns,
            thread: Some(thread),
        }
    }

    /// Stop accepting, close the listener and every open connection.
    fn shutdown(&mut self) {
        if let Some(t) = self.thread.take() {
            self.stop.store(true, Ordering::SeqCst);
            // Wake the blocking accept so the loop sees the flag and drops the listener.
            let _ = TcpStream::connect_timeout(&self.addr, CONNECT_TIMEOUT);
            let _ = t.join();
            for (_, c) in self.conns.lock().unwrap().drain() {
                let _ = c.shutdown(Shutdown::Both);
            }
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn serve_conn(stream: TcpStream, handler: &Handler, stop: &AtomicBool) {
    let _ = stream.set_read_timeout(Some(IO_TIMEOUT));
    let _ = stream.set_write_timeout(Some(IO_TIMEOUT));
    let _ = stream.set_nodelay(true);
    let Ok(read_half) = stream.try_clone() else {
        return;
    };
    let mut r = BufReader::new(read_half);
    let mut w = stream;
    loop {
        let req = match read_request(&mut r, &mut w) {
            Ok(Some(req)) => req,
            _ => return,
        };
        if stop.load(Ordering::SeqCst) {
            let _ = w.shutdown(Shutdown::Both);
            return;
        }
        let close = req.version == "HTTP/1.0"
            || req
                .header("connection")
                .is_some_and(|v| v.eq_ignore_ascii_case("close"));
        match handler(&req) {
            Reply::Reset => {
                let _ = w.shutdown(Shutdown::Both);
                return;
            }
            Reply::Send(resp) => {
                if write_response(&mut w, &req.method, &resp, close, None).is_err() || close {
                    let _ = w.shutdown(Shutdown::Both);
                    return;
                }
            }
            Reply::Truncate(resp, n) => {
                let _ = write_response(&mut w, &req.method, &resp, true, Some(n));
                let _ = w.shutdown(Shutdown::Both);
                return;
            }
        }
    }
}

fn read_request<R: BufRead>(r: &mut R, w: &mut TcpStream) -> io::Result<Option<HttpRequest>> {
    let Some((start, headers)) = read_head(r)? else {
        return Ok(None);
    };
    let mut parts = start.split_whitespace();
    let (Some(method), Some(target), version) = (parts.next(), parts.next(), parts.next()) else {
        return Err(invalid(format!("bad request line {start:?}")));
    };
    if find_header(&headers, "expect").is_some_and(|v| v.eq_ignore_ascii_case("100-continue")) {
        w.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
    }
    let body = read_body(r, &headers, false)?;
    Ok(Some(HttpRequest {
        method: method.to_string(),
        target: target.to_string(),
        version: version.unwrap_or("HTTP/1.1").to_string(),
        headers,
        body,
    }))
}

/// Write a response; `body_limit` sends only that many body bytes (a truncated answer).
fn write_response(
    w: &mut impl Write,
    method: &str,
    resp: &HttpResponse,
    close: bool,
    body_limit: Option<usize>,
) -> io::Result<()> {
    let is_head = method == "HEAD";
    let no_body = is_head || resp.status == 204 || resp.status == 304 || resp.status < 200;
    let mut head = format!("HTTP/1.1 {} {}\r\n", resp.status, reason(resp.status));
    for (k, v) in &resp.headers {
        let lk = k.to_ascii_lowercase();
        if matches!(
            lk.as_str(),
            "connection" | "keep-alive" | "transfer-encoding"
        ) || (lk == "content-length" && !is_head)
        {
            continue;
        }
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    if !no_body {
        head.push_str(&format!("Content-Length: {}\r\n", resp.body.len()));
    }
    if close {
        head.push_str("Connection: close\r\n");
    }
    head.push_str("\r\n");
    w.write_all(head.as_bytes())?;
    if !no_body {
        let n = body_limit.unwrap_or(resp.body.len()).min(resp.body.len());
        w.write_all(&resp.body[..n])?;
    }
    w.flush()
}

fn json_response(status: u16, body: &Value, extra: Vec<(String, String)>) -> HttpResponse {
    let mut headers = vec![("Content-Type".to_string(), "application/json".to_string())];
    headers.extend(extra);
    HttpResponse {
        status,
        headers,
        body: serde_json::to_vec(body).unwrap(),
    }
}

// ---------------------------------------------------------------------------------------
// Token server
// ---------------------------------------------------------------------------------------

/// One request the token server saw.
#[derive(Debug, Clone)]
pub struct TokenRequest {
    pub method: String,
    /// Path without the query.
    pub path: String,
    /// The full request target (path and query).
    pub target: String,
    pub had_auth_header: bool,
    /// The user of valid Basic credentials.
    pub user: Option<String>,
    /// Requested scopes, e.g. `repository:public/app:pull`.
    pub scopes: Vec<String>,
    /// Granted access, e.g. `repository:public/app:pull` (empty when nothing was granted).
    pub granted: Vec<String>,
    pub status: u16,
}

struct TokenState {
    users: Vec<(String, String)>,
    anonymous_pull: Vec<String>,
    key: ring::signature::RsaKeyPair,
    x5c: String,
    expires_in: u64,
    fail: Option<(usize, u16)>,
    next_jti: u64,
    log: Vec<TokenRequest>,
}

/// A Docker token-auth server (`GET /token?service=..&scope=..`) signing RS256 JWTs whose
/// `x5c` header carries its self-signed certificate (what distribution 2.8 verifies).
pub struct TokenServer {
    server: Server,
    state: Arc<Mutex<TokenState>>,
    cert: PathBuf,
    _dir: tempfile::TempDir,
}

impl TokenServer {
    /// Start with these `(user, password)` accounts; anonymous clients may pull repositories
    /// whose name starts with one of `anonymous_pull` (e.g. `"public/"`).
    pub fn start(users: &[(&str, &str)], anonymous_pull: &[&str]) -> TokenServer {
        let dir = tempfile::Builder::new()
            .prefix("archctl-token-")
            .tempdir()
            .unwrap();
        let key = dir.path().join("key.pem");
        let cert = dir.path().join("cert.pem");
        run_ok(
            Command::new("openssl")
                .args(["genrsa", "-traditional", "-out"])
                .arg(&key)
                .arg("2048"),
        );
        run_ok(
            Command::new("openssl")
                .args(["req", "-x509", "-new", "-sha256", "-days", "3650", "-key"])
                .arg(&key)
                .args(["-subj", "/CN=archctl-test-token-server", "-out"])
                .arg(&cert),
        );
        // x5c[0] is the standard base64 of the DER certificate: the PEM body.
        let x5c = pem_body(&std::fs::read_to_string(&cert).unwrap());
        // `genrsa -traditional` writes PKCS#1; its PEM body is the base64 of the DER.
        let key_pem = std::fs::read_to_string(&key).unwrap();
        let key = ring::signature::RsaKeyPair::from_der(&pem_der(&key_pem))
            .expect("RSA key for JWT signing");
        let state = Arc::new(Mutex::new(TokenState {
            users: users
                .iter()
                .map(|(u, p)| (u.to_string(), p.to_string()))
                .collect(),
            anonymous_pull: anonymous_pull.iter().map(|s| s.to_string()).collect(),
            key,
            x5c,
            expires_in: 300,
            fail: None,
            next_jti: 0,
            log: Vec::new(),
        }));
        let handler_state = state.clone();
        let server = Server::start(Arc::new(move |req: &HttpRequest| {
            Reply::Send(token_reply(&handler_state, req))
        }));
        TokenServer {
            server,
            state,
            cert,
            _dir: dir,
        }
    }

    /// "127.0.0.1:PORT".
    pub fn addr(&self) -> String {
        self.server.addr.to_string()
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr())
    }

    /// The token endpoint, as registries put it in `WWW-Authenticate: Bearer realm=...`.
    pub fn realm(&self) -> String {
        format!("{}/token", self.url())
    }

    /// The PEM certificate registries trust (`rootcertbundle`).
    pub fn cert_path(&self) -> &Path {
        &self.cert
    }

    /// How many requests it answered (or refused) so far.
    pub fn requests(&self) -> usize {
        self.state.lock().unwrap().log.len()
    }

    /// Every request so far, oldest first.
    pub fn log(&self) -> Vec<TokenRequest> {
        self.state.lock().unwrap().log.clone()
    }

    /// How many requests had this path (e.g. "/token").
    pub fn count_path(&self, path: &str) -> usize {
        self.state
            .lock()
            .unwrap()
            .log
            .iter()
            .filter(|r| r.path == path)
            .count()
    }

    /// Forget the request log.
    pub fn clear_log(&self) {
        self.state.lock().unwrap().log.clear();
    }

    /// Lifetime (`expires_in` and `exp - iat`) of tokens issued from now on (default 300 s).
    pub fn set_expires_in(&self, secs: u64) {
        self.state.lock().unwrap().expires_in = secs;
    }

    /// Answer the next `n` token requests with `status` (and a JSON error body).
    pub fn fail_next(&self, n: usize, status: u16) {
        self.state.lock().unwrap().fail = Some((n, status));
    }

    /// Stop listening and close open connections ("token server down").
    pub fn stop(&mut self) {
        self.server.shutdown();
    }
}

fn token_reply(state: &Mutex<TokenState>, req: &HttpRequest) -> HttpResponse {
    let mut st = state.lock().unwrap();
    let scopes: Vec<String> = query_values(&req.target, "scope")
        .iter()
        .flat_map(|s| s.split(' ').map(str::to_string).collect::<Vec<_>>())
        .filter(|s| !s.is_empty())
        .collect();
    let mut entry = TokenRequest {
        method: req.method.clone(),
        path: req.path().to_string(),
        target: req.target.clone(),
        had_auth_header: req.header("authorization").is_some(),
        user: None,
        scopes: scopes.clone(),
        granted: Vec::new(),
        status: 200,
    };
    let finish = |st: &mut TokenState, mut entry: TokenRequest, resp: HttpResponse| {
        entry.status = resp.status;
        st.log.push(entry);
        resp
    };
    let error = |status: u16, code: &str, msg: &str| {
        json_response(
            status,
            &json!({"errors": [{"code": code, "message": msg}]}),
            Vec::new(),
        )
    };
    if let Some((n, status)) = st.fail {
        st.fail = (n > 1).then_some((n - 1, status));
        return finish(&mut st, entry, error(status, "UNAVAILABLE", "injected"));
    }
    if req.method != "GET" || req.path() != "/token" {
        return finish(&mut st, entry, error(404, "NOT_FOUND", "only GET /token"));
    }
    // Credentials: valid Basic -> that user; bad Basic -> 401; none (or Bearer) -> anonymous.
    let mut user = None;
    if let Some(basic) = req.header("authorization").and_then(|v| {
        v.strip_prefix("Basic ")
            .or_else(|| v.strip_prefix("basic "))
    }) {
        use base64::Engine;
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(basic.trim())
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .unwrap_or_default();
        let (u, p) = decoded.split_once(':').unwrap_or((&decoded, ""));
        if st.users.iter().any(|(uu, pp)| uu == u && pp == p) {
            user = Some(u.to_string());
        } else {
            let mut resp = error(401, "UNAUTHORIZED", "invalid username or password");
            resp.headers.push((
                "WWW-Authenticate".to_string(),
                "Basic realm=\"archctl-test-token\"".to_string(),
            ));
            return finish(&mut st, entry, resp);
        }
    }
    entry.user = user.clone();
    let mut access = Vec::new();
    for scope in &scopes {
        let Some((typ, rest)) = scope.split_once(':') else {
            continue;
        };
        let Some((name, actions)) = rest.rsplit_once(':') else {
            continue;
        };
        let wanted: Vec<&str> = actions.split(',').filter(|a| !a.is_empty()).collect();
        let allowed: Vec<&str> = if user.is_some() {
            wanted
        } else if typ == "repository" && st.anonymous_pull.iter().any(|p| name.starts_with(p)) {
            wanted.into_iter().filter(|a| *a == "pull").collect()
        } else {
            Vec::new()
        };
        if allowed.is_empty() {
            continue;
        }
        entry
            .granted
            .push(format!("{typ}:{name}:{}", allowed.join(",")));
        access.push(json!({"type": typ, "name": name, "actions": allowed}));
    }
    let service = query_values(&req.target, "service")
        .into_iter()
        .next()
        .unwrap_or_else(|| TOKEN_SERVICE.to_string());
    let now = now_unix();
    st.next_jti += 1;
    let claims = json!({
        "iss": TOKEN_ISSUER,
        "sub": user.clone().unwrap_or_default(),
        "aud": service,
        "exp": now + st.expires_in,
        "nbf": now.saturating_sub(10),
        "iat": now,
        "jti": format!("archctl-test-{}-{}", std::process::id(), st.next_jti),
        "access": access,
    });
    let token = sign_jwt(&st.key, &st.x5c, &claims);
    let body = json!({
        "token": token,
        "access_token": token,
        "expires_in": st.expires_in,
        "issued_at": rfc3339(now),
    });
    finish(&mut st, entry, json_response(200, &body, Vec::new()))
}

/// The base64 body of a PEM file (one object).
fn pem_body(pem: &str) -> String {
    pem.lines()
        .filter(|l| !l.starts_with("-----"))
        .map(str::trim)
        .collect()
}

/// The DER bytes of a PEM file (one object).
fn pem_der(pem: &str) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(pem_body(pem))
        .expect("PEM body is base64")
}

/// An RS256 JWT with header `{"alg":"RS256","typ":"JWT","x5c":[x5c]}`.
fn sign_jwt(key: &ring::signature::RsaKeyPair, x5c: &str, claims: &Value) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let header = json!({"alg": "RS256", "typ": "JWT", "x5c": [x5c]});
    let input = format!(
        "{}.{}",
        b64.encode(serde_json::to_vec(&header).unwrap()),
        b64.encode(serde_json::to_vec(claims).unwrap())
    );
    let mut sig = vec![0; key.public().modulus_len()];
    key.sign(
        &ring::signature::RSA_PKCS1_SHA256,
        &ring::rand::SystemRandom::new(),
        input.as_bytes(),
        &mut sig,
    )
    .expect("RS256 signature");
    format!("{input}.{}", b64.encode(sig))
}

/// Decode the claims of a JWT without checking its signature.
pub fn jwt_claims(token: &str) -> Value {
    use base64::Engine;
    let payload = token.split('.').nth(1).expect("JWT has a payload");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .expect("JWT payload is base64url");
    serde_json::from_slice(&bytes).expect("JWT payload is JSON")
}

fn run_ok(cmd: &mut Command) -> Output {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

// ---------------------------------------------------------------------------------------
// Real registries
// ---------------------------------------------------------------------------------------

/// How a [`Registry`] authenticates clients.
pub enum RegistryAuth<'a> {
    /// Anyone may pull and push.
    None,
    /// HTTP Basic against a bcrypt htpasswd file with one account (works over plain HTTP).
    Htpasswd { user: &'a str, password: &'a str },
    /// Docker token auth against this token server.
    Token(&'a TokenServer),
}

#[derive(Clone)]
enum AuthSetup {
    None,
    Htpasswd {
        user: String,
        password: String,
        file: PathBuf,
    },
    Token {
        realm: String,
        cert: PathBuf,
    },
}

/// A running `docker-registry serve` (distribution 2.8) on 127.0.0.1 with filesystem
/// storage in a temp dir, deletes enabled, no blob-descriptor cache. Killed on drop.
///
/// Distribution 2.8 content negotiation (seen here): an OCI index or manifest is a 404
/// `MANIFEST_UNKNOWN` ("... accept header does not support OCI ...") unless `Accept` lists
/// its media type, even by digest; a Docker manifest list requested by a client that does
/// not accept lists is answered with its linux/amd64 schema2 manifest, and a schema2
/// manifest requested without `Accept: ...manifest.v2+json` is converted to a signed
/// schema1 (`...manifest.v1+prettyjws`, another digest). Blobs are served from disk
/// without re-checking their digest (see [`Registry::corrupt_blob`]).
pub struct Registry {
    child: Option<Child>,
    port: u16,
    root: PathBuf,
    config: PathBuf,
    log: PathBuf,
    auth: AuthSetup,
    /// Unauthenticated twin on the same storage, for pushing fixtures (auth registries).
    pusher: Mutex<Option<Box<Registry>>>,
    tmp: tempfile::TempDir,
}

impl Registry {
    /// Start a registry with its own empty storage; waits (≤ 10 s) until `GET /v2/` answers.
    pub fn start(auth: RegistryAuth) -> Registry {
        let tmp = tempfile::Builder::new()
            .prefix("archctl-registry-")
            .tempdir()
            .unwrap();
        let root = tmp.path().join("storage");
        std::fs::create_dir_all(&root).unwrap();
        let auth = match auth {
            RegistryAuth::None => AuthSetup::None,
            RegistryAuth::Htpasswd { user, password } => {
                let out = run_ok(Command::new("htpasswd").args(["-Bbn", user, password]));
                let file = tmp.path().join("htpasswd");
                std::fs::write(&file, &out.stdout).unwrap();
                AuthSetup::Htpasswd {
                    user: user.to_string(),
                    password: password.to_string(),
                    file,
                }
            }
            RegistryAuth::Token(ts) => {
                let cert = tmp.path().join("token-cert.pem");
                std::fs::copy(ts.cert_path(), &cert).unwrap();
                AuthSetup::Token {
                    realm: ts.realm(),
                    cert,
                }
            }
        };
        Registry::launch(tmp, root, auth)
    }

    fn launch(tmp: tempfile::TempDir, root: PathBuf, auth: AuthSetup) -> Registry {
        let mut reg = Registry {
            child: None,
            port: 0,
            config: tmp.path().join("config.yml"),
            log: tmp.path().join("registry.log"),
            root,
            auth,
            pusher: Mutex::new(None),
            tmp,
        };
        for attempt in 1..=5 {
            reg.port = free_port();
            reg.write_config();
            match reg.spawn_and_wait() {
                Ok(()) => return reg,
                Err(e) if e.contains("address already in use") && attempt < 5 => continue,
                Err(e) => panic!(
                    "docker-registry did not start: {e}\nlog:\n{}",
                    reg.log_text()
                ),
            }
        }
        unreachable!()
    }

    fn write_config(&self) {
        let auth = match &self.auth {
            AuthSetup::None => String::new(),
            AuthSetup::Htpasswd { file, .. } => format!(
                "auth:\n  htpasswd:\n    realm: archctl-test\n    path: \"{}\"\n",
                file.display()
            ),
            AuthSetup::Token { realm, cert } => format!(
                "auth:\n  token:\n    realm: \"{realm}\"\n    service: \"{TOKEN_SERVICE}\"\n    \
                 issuer: \"{TOKEN_ISSUER}\"\n    rootcertbundle: \"{}\"\n",
                cert.display()
            ),
        };
        // No `storage.cache`: every blob stat/read goes to the files (corruption is seen).
        let config = format!(
            "version: 0.1\n\
             log:\n  level: error\n  formatter: text\n\
             storage:\n  filesystem:\n    rootdirectory: \"{root}\"\n  delete:\n    enabled: true\n  \
             maintenance:\n    uploadpurging:\n      enabled: false\n\
             http:\n  addr: 127.0.0.1:{port}\n  secret: archctl-test-secret\n\
             {auth}",
            root = self.root.display(),
            port = self.port,
        );
        std::fs::write(&self.config, config).unwrap();
    }

    fn spawn_and_wait(&mut self) -> Result<(), String> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&self.config)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("spawn docker-registry: {e}"))?;
        self.child = Some(child);
        let deadline = Instant::now() + READY_TIMEOUT;
        let sa = local_addr(&self.addr());
        loop {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                self.child = None;
                return Err(format!("exited with {status}: {}", self.log_text()));
            }
            if let Ok(mut s) = TcpStream::connect_timeout(&sa, Duration::from_millis(200)) {
                let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
                let _ = s.write_all(
                    format!("GET /v2/ HTTP/1.0\r\nHost: {}\r\n\r\n", self.addr()).as_bytes(),
                );
                let mut buf = [0u8; 12];
                if s.read_exact(&mut buf).is_ok() && buf.starts_with(b"HTTP/1.") {
                    return Ok(());
                }
            }
            if Instant::now() > deadline {
                self.kill();
                return Err(format!("no answer to GET /v2/ within {READY_TIMEOUT:?}"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// "127.0.0.1:PORT".
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr())
    }

    /// `127.0.0.1:PORT/repo:tag`, or `127.0.0.1:PORT/repo@sha256:...` for a digest.
    pub fn reference(&self, repo: &str, tag_or_digest: &str) -> String {
        let sep = if tag_or_digest.contains(':') {
            '@'
        } else {
            ':'
        };
        format!("{}/{repo}{sep}{tag_or_digest}", self.addr())
    }

    /// The storage root directory (`storage.filesystem.rootdirectory`).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The registry's stdout/stderr so far (error-level log plus access log).
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The htpasswd account, for Htpasswd registries.
    pub fn credentials(&self) -> Option<(String, String)> {
        match &self.auth {
            AuthSetup::Htpasswd { user, password, .. } => Some((user.clone(), password.clone())),
            _ => None,
        }
    }

    /// Whether the process is running (not stopped, not exited).
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => c.try_wait().unwrap().is_none(),
            None => false,
        }
    }

    /// Kill the registry process (port then refuses connections); storage stays.
    pub fn stop(&mut self) {
        self.kill();
    }

    /// Start it again on the same port and storage (after [`Registry::stop`]).
    pub fn restart(&mut self) {
        self.kill();
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            match self.spawn_and_wait() {
                Ok(()) => return,
                Err(e) if e.contains("address already in use") && Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(e) => panic!("docker-registry did not restart: {e}"),
            }
        }
    }

    /// Where distribution keeps the data of blob `digest` (with or without `sha256:`).
    pub fn blob_path(&self, digest: &str) -> PathBuf {
        let hex = hex_part(digest);
        self.root
            .join("docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }

    /// Overwrite the stored blob with different bytes of the same length.
    pub fn corrupt_blob(&self, digest: &str) {
        let path = self.blob_path(digest);
        let mut data =
            std::fs::read(&path).unwrap_or_else(|e| panic!("blob {}: {e}", path.display()));
        for b in &mut data {
            *b ^= 0x5a;
        }
        std::fs::write(&path, data).unwrap();
    }

    /// Delete the stored blob data file (the registry's metadata still links it).
    pub fn remove_blob_data(&self, digest: &str) {
        std::fs::remove_file(self.blob_path(digest)).unwrap();
    }

    /// An address that accepts pushes without credentials: this registry when it has no
    /// auth, else an unauthenticated second process on the same storage (started once).
    pub fn push_addr(&self) -> String {
        if matches!(self.auth, AuthSetup::None) {
            return self.addr();
        }
        let mut pusher = self.pusher.lock().unwrap();
        if pusher.is_none() {
            let tmp = tempfile::Builder::new()
                .prefix("archctl-registry-pusher-")
                .tempdir()
                .unwrap();
            *pusher = Some(Box::new(Registry::launch(
                tmp,
                self.root.clone(),
                AuthSetup::None,
            )));
        }
        pusher.as_ref().unwrap().addr()
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        if let Ok(mut p) = self.pusher.lock() {
            p.take();
        }
        self.kill();
        if std::thread::panicking() {
            let log = self.log_text();
            if !log.trim().is_empty() {
                let tail: Vec<&str> = log.lines().rev().take(40).collect();
                eprintln!("--- docker-registry {} log (last lines) ---", self.addr());
                for l in tail.iter().rev() {
                    eprintln!("{l}");
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Fault proxy
// ---------------------------------------------------------------------------------------

/// One request the proxy saw: `status` is what the client got (None: connection closed).
#[derive(Debug, Clone)]
pub struct ProxyEntry {
    pub method: String,
    /// Path and query.
    pub target: String,
    pub status: Option<u16>,
    /// Whether the proxy made the answer up (fail/reset/truncate) instead of forwarding.
    pub injected: bool,
}

#[derive(Clone)]
enum Fault {
    Status(u16, Option<u64>),
    Reset,
    Truncate,
}

struct Rule {
    path_contains: Option<String>,
    remaining: usize,
    fault: Fault,
}

#[derive(Default)]
struct ProxyState {
    rules: Vec<Rule>,
    delay: Duration,
    log: Vec<ProxyEntry>,
}

/// An HTTP reverse proxy on 127.0.0.1 in front of a registry, injecting faults on demand.
/// Forwards method, target, headers (Host, Authorization...) and body; rewrites the
/// upstream address to its own in `Location` and `WWW-Authenticate`.
pub struct FaultProxy {
    server: Server,
    upstream: String,
    state: Arc<Mutex<ProxyState>>,
}

impl FaultProxy {
    /// Start a proxy for `upstream_addr` ("127.0.0.1:PORT").
    pub fn start(upstream_addr: &str) -> FaultProxy {
        local_addr(upstream_addr);
        let state: Arc<Mutex<ProxyState>> = Arc::default();
        let upstream = upstream_addr.to_string();
        let own: Arc<OnceLock<String>> = Arc::default();
        let server = {
            let (state, upstream, own) = (state.clone(), upstream.clone(), own.clone());
            Server::start(Arc::new(move |req: &HttpRequest| {
                proxy_reply(&state, &upstream, own.get().map_or("", |s| s), req)
            }))
        };
        own.set(server.addr.to_string()).unwrap();
        FaultProxy {
            server,
            upstream,
            state,
        }
    }

    /// "127.0.0.1:PORT" of the proxy.
    pub fn addr(&self) -> String {
        self.server.addr.to_string()
    }

    /// `http://127.0.0.1:PORT` of the proxy.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr())
    }

    /// The proxied address.
    pub fn upstream(&self) -> &str {
        &self.upstream
    }

    fn add_rule(&self, path_contains: Option<&str>, n: usize, fault: Fault) {
        self.state.lock().unwrap().rules.push(Rule {
            path_contains: path_contains.map(str::to_string),
            remaining: n,
            fault,
        });
    }

    /// Answer the next `n` requests with `status` (JSON error body, optional Retry-After).
    pub fn fail_next(&self, n: usize, status: u16, retry_after: Option<u64>) {
        self.add_rule(None, n, Fault::Status(status, retry_after));
    }

    /// Like [`FaultProxy::fail_next`], only for requests whose target contains `needle`.
    pub fn fail_next_matching(
        &self,
        needle: &str,
        n: usize,
        status: u16,
        retry_after: Option<u64>,
    ) {
        self.add_rule(Some(needle), n, Fault::Status(status, retry_after));
    }

    /// Close the connection without answering the next `n` requests.
    pub fn reset_next(&self, n: usize) {
        self.add_rule(None, n, Fault::Reset);
    }

    /// Like [`FaultProxy::reset_next`], only for requests whose target contains `needle`.
    pub fn reset_next_matching(&self, needle: &str, n: usize) {
        self.add_rule(Some(needle), n, Fault::Reset);
    }

    /// For the next `n` requests whose target contains `needle`: forward, then send the
    /// head with the full Content-Length but only half the body, and close.
    pub fn truncate_next_matching(&self, needle: &str, n: usize) {
        self.add_rule(Some(needle), n, Fault::Truncate);
    }

    /// Sleep this long before answering every request (zero to turn off).
    pub fn delay(&self, d: Duration) {
        self.state.lock().unwrap().delay = d;
    }

    /// Drop all pending faults and the delay.
    pub fn clear_faults(&self) {
        let mut st = self.state.lock().unwrap();
        st.rules.clear();
        st.delay = Duration::ZERO;
    }

    /// How many requests reached the proxy.
    pub fn requests(&self) -> usize {
        self.state.lock().unwrap().log.len()
    }

    /// Every request so far, oldest first.
    pub fn log(&self) -> Vec<ProxyEntry> {
        self.state.lock().unwrap().log.clone()
    }

    /// `(method, target)` of every request so far.
    pub fn requests_log(&self) -> Vec<(String, String)> {
        self.log()
            .into_iter()
            .map(|e| (e.method, e.target))
            .collect()
    }

    /// How many requests had a target containing `needle`.
    pub fn count_matching(&self, needle: &str) -> usize {
        self.log()
            .iter()
            .filter(|e| e.target.contains(needle))
            .count()
    }

    /// Forget the request log.
    pub fn clear_log(&self) {
        self.state.lock().unwrap().log.clear();
    }

    /// Stop listening and close open connections.
    pub fn stop(&mut self) {
        self.server.shutdown();
    }
}

fn proxy_reply(state: &Mutex<ProxyState>, upstream: &str, own: &str, req: &HttpRequest) -> Reply {
    let (delay, fault) = {
        let mut st = state.lock().unwrap();
        let fault = st
            .rules
            .iter_mut()
            .find(|r| {
                r.remaining > 0
                    && r.path_contains
                        .as_deref()
                        .is_none_or(|n| req.target.contains(n))
            })
            .map(|r| {
                r.remaining -= 1;
                r.fault.clone()
            });
        st.rules.retain(|r| r.remaining > 0);
        (st.delay, fault)
    };
    if !delay.is_zero() {
        std::thread::sleep(delay);
    }
    let log = |status: Option<u16>, injected: bool| {
        state.lock().unwrap().log.push(ProxyEntry {
            method: req.method.clone(),
            target: req.target.clone(),
            status,
            injected,
        });
    };
    match fault {
        Some(Fault::Status(status, retry_after)) => {
            log(Some(status), true);
            let code = match status {
                429 => "TOOMANYREQUESTS",
                401 => "UNAUTHORIZED",
                404 => "NOT_FOUND",
                _ => "UNAVAILABLE",
            };
            let extra = retry_after
                .map(|s| vec![("Retry-After".to_string(), s.to_string())])
                .unwrap_or_default();
            return Reply::Send(json_response(
                status,
                &json!({"errors": [{"code": code, "message": "injected by FaultProxy"}]}),
                extra,
            ));
        }
        Some(Fault::Reset) => {
            log(None, true);
            return Reply::Reset;
        }
        _ => {}
    }
    let resp = match http_exchange(upstream, &req.method, &req.target, &req.headers, &req.body) {
        Ok(mut resp) => {
            for (k, v) in &mut resp.headers {
                if (k.eq_ignore_ascii_case("location")
                    || k.eq_ignore_ascii_case("www-authenticate"))
                    && !own.is_empty()
                {
                    *v = v.replace(upstream, own);
                }
            }
            resp
        }
        Err(e) => json_response(
            502,
            &json!({"errors": [{"code": "UNAVAILABLE", "message": format!("upstream: {e}")}]}),
            Vec::new(),
        ),
    };
    if matches!(fault, Some(Fault::Truncate)) && req.method != "HEAD" {
        log(Some(resp.status), true);
        let half = resp.body.len() / 2;
        return Reply::Truncate(resp, half);
    }
    log(Some(resp.status), false);
    Reply::Send(resp)
}

// ---------------------------------------------------------------------------------------
// Fixtures: layers, configs, manifests, indexes
// ---------------------------------------------------------------------------------------

/// The qemu target whose test program belongs in an image for `platform` ("os/arch[/v]").
pub fn test_program_target(platform: &str) -> Option<&'static str> {
    let mut p = platform.split('/');
    let (os, arch) = (p.next()?, p.next()?);
    if os != "linux" {
        return None;
    }
    Some(match arch {
        "amd64" => "x86_64",
        "386" => "i386",
        "arm64" => "aarch64",
        "arm" => "arm",
        "ppc64le" => "ppc64le",
        "ppc64" => "ppc64",
        "s390x" => "s390x",
        "riscv64" => "riscv64",
        "mips64le" => "mips64el",
        "mips64" => "mips64",
        "mipsle" => "mipsel",
        "mips" => "mips",
        "loong64" => "loongarch64",
        _ => return None,
    })
}

/// The bytes of `test-images/bin/<target>`.
pub fn test_program(target: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("test-images/bin")
        .join(target);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A tar with the single file `archctl-test` (mode 0755, uid/gid 0, mtime 0).
pub fn layer_tar(program: &[u8]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_ustar();
    h.set_path("archctl-test").unwrap();
    h.set_size(program.len() as u64);
    h.set_mode(0o755);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h.set_entry_type(tar::EntryType::Regular);
    h.set_cksum();
    b.append(&h, program).unwrap();
    b.into_inner().unwrap()
}

/// Deterministic gzip (no name, mtime 0).
pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::GzBuilder::new()
        .mtime(0)
        .write(Vec::new(), flate2::Compression::default());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

/// Gunzip (for checking pulled layers).
pub fn gunzip(bytes: &[u8]) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(bytes).read_to_end(&mut out)?;
    Ok(out)
}

/// One image layer: the tar, its gzip, `diff_id` (sha256 of the tar) and digest (of the gzip).
#[derive(Debug)]
pub struct Layer {
    pub tar: Vec<u8>,
    pub gz: Vec<u8>,
    pub diff_id: String,
    pub digest: String,
    /// The test program inside, when there is one for the platform.
    pub target: Option<&'static str>,
}

/// The (cached) layer for `platform`: its test program, or a small text placeholder.
pub fn program_layer(platform: &str) -> Arc<Layer> {
    static CACHE: OnceLock<Mutex<HashMap<String, Arc<Layer>>>> = OnceLock::new();
    let target = test_program_target(platform);
    let key = target.map_or_else(|| format!("placeholder:{platform}"), str::to_string);
    let cache = CACHE.get_or_init(Mutex::default);
    if let Some(l) = cache.lock().unwrap().get(&key) {
        return l.clone();
    }
    let content = match target {
        Some(t) => test_program(t),
        None => format!("archctl-test placeholder for {platform}\n").into_bytes(),
    };
    let tar = layer_tar(&content);
    let gz = gzip(&tar);
    let layer = Arc::new(Layer {
        diff_id: digest_of(&tar),
        digest: digest_of(&gz),
        tar,
        gz,
        target,
    });
    cache.lock().unwrap().insert(key, layer.clone());
    layer
}

/// oci-spec Platform for "os/arch[/variant]".
pub fn oci_platform(platform: &str) -> Platform {
    let mut p = platform.split('/');
    let os = p.next().unwrap_or("linux");
    let arch = p.next().unwrap_or("amd64");
    let mut b = PlatformBuilder::default()
        .architecture(Arch::from(arch))
        .os(Os::from(os));
    if let Some(v) = p.next() {
        b = b.variant(v.to_string());
    }
    b.build().unwrap()
}

fn descriptor(media_type: &str, bytes: &[u8]) -> DescriptorBuilder {
    DescriptorBuilder::default()
        .media_type(MediaType::from(media_type))
        .digest(Digest::from_str(&digest_of(bytes)).unwrap())
        .size(bytes.len() as u64)
}

/// Canonical JSON bytes (keys sorted, so the digest is stable).
fn to_json<T: serde::Serialize>(v: &T) -> Vec<u8> {
    serde_json::to_vec(&serde_json::to_value(v).unwrap()).unwrap()
}

/// Image config JSON for `platform`, one layer with `diff_id`, entrypoint `/archctl-test`.
pub fn image_config(platform: &str, diff_id: &str, labels: &[(String, String)]) -> Vec<u8> {
    let mut p = platform.split('/');
    let os = p.next().unwrap_or("linux");
    let arch = p.next().unwrap_or("amd64");
    let mut config = json!({
        "Entrypoint": ["/archctl-test"],
        "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
    });
    if !labels.is_empty() {
        let l: serde_json::Map<String, Value> = labels
            .iter()
            .map(|(k, v)| (k.clone(), Value::from(v.clone())))
            .collect();
        config["Labels"] = Value::Object(l);
    }
    let mut v = json!({
        "architecture": arch,
        "os": os,
        "created": "1970-01-01T00:00:00Z",
        "config": config,
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [{"created": "1970-01-01T00:00:00Z", "created_by": "archctl test fixture"}],
    });
    if let Some(variant) = p.next() {
        v["variant"] = Value::from(variant);
    }
    to_json(&v)
}

/// Manifest/config/layer format family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Oci,
    Docker,
}

impl Format {
    fn manifest(self) -> &'static str {
        match self {
            Format::Oci => OCI_MANIFEST,
            Format::Docker => DOCKER_MANIFEST,
        }
    }
    fn index(self) -> &'static str {
        match self {
            Format::Oci => OCI_INDEX,
            Format::Docker => DOCKER_LIST,
        }
    }
    fn config(self) -> &'static str {
        match self {
            Format::Oci => OCI_CONFIG,
            Format::Docker => DOCKER_CONFIG,
        }
    }
    fn layer(self) -> &'static str {
        match self {
            Format::Oci => OCI_LAYER_GZIP,
            Format::Docker => DOCKER_LAYER_GZIP,
        }
    }
}

#[derive(Debug, Clone)]
struct Entry {
    /// What the index descriptor says.
    platform: String,
    /// What the image config says (and which test program is inside).
    config_platform: String,
}

/// What to build and push: a single manifest or an index/list, OCI or Docker.
#[derive(Debug, Clone)]
pub struct ImageSpec {
    format: Format,
    index: bool,
    entries: Vec<Entry>,
    attestations: bool,
    labels: Vec<(String, String)>,
}

impl ImageSpec {
    fn new(format: Format, index: bool, platforms: &[&str]) -> ImageSpec {
        ImageSpec {
            format,
            index,
            entries: platforms
                .iter()
                .map(|p| Entry {
                    platform: p.to_string(),
                    config_platform: p.to_string(),
                })
                .collect(),
            attestations: false,
            labels: Vec::new(),
        }
    }

    /// (a) An OCI image index over `platforms` (e.g. [`INDEX_PLATFORMS`]).
    pub fn oci_index(platforms: &[&str]) -> ImageSpec {
        ImageSpec::new(Format::Oci, true, platforms)
    }

    /// (b) A Docker manifest list over `platforms`.
    pub fn docker_list(platforms: &[&str]) -> ImageSpec {
        ImageSpec::new(Format::Docker, true, platforms)
    }

    /// (c) A single Docker schema2 manifest (no index).
    pub fn docker(platform: &str) -> ImageSpec {
        ImageSpec::new(Format::Docker, false, &[platform])
    }

    /// (d) A single OCI image manifest (no index).
    pub fn oci(platform: &str) -> ImageSpec {
        ImageSpec::new(Format::Oci, false, &[platform])
    }

    /// (e) Add a BuildKit-style attestation manifest (`unknown/unknown`) per image.
    pub fn with_attestations(mut self) -> ImageSpec {
        assert!(self.index, "attestations need an index");
        self.attestations = true;
        self
    }

    /// (f) An OCI index with one entry whose descriptor says linux/arm64 but whose
    /// config (and test program) is linux/amd64.
    pub fn mismatched() -> ImageSpec {
        ImageSpec::oci_index(&[]).entry("linux/arm64", "linux/amd64")
    }

    /// Add an index entry: descriptor `platform`, image config (and program) `config_platform`.
    pub fn entry(mut self, platform: &str, config_platform: &str) -> ImageSpec {
        assert!(self.index, "entries need an index");
        self.entries.push(Entry {
            platform: platform.to_string(),
            config_platform: config_platform.to_string(),
        });
        self
    }

    /// Add a config label to every image (makes config and manifest digests unique).
    pub fn label(mut self, key: &str, value: &str) -> ImageSpec {
        self.labels.push((key.to_string(), value.to_string()));
        self
    }
}

/// One pushed image manifest.
#[derive(Debug, Clone)]
pub struct PushedImage {
    /// Platform in the index descriptor (for single manifests: the config's).
    pub platform: String,
    /// Platform in the image config.
    pub config_platform: String,
    pub digest: String,
    pub media_type: String,
    pub manifest: Vec<u8>,
    pub config_digest: String,
    pub config: Vec<u8>,
    pub layer: Arc<Layer>,
}

/// One pushed BuildKit attestation manifest.
#[derive(Debug, Clone)]
pub struct PushedAttestation {
    pub digest: String,
    /// Digest of the image manifest it attests (`vnd.docker.reference.digest`).
    pub attests: String,
    pub manifest: Vec<u8>,
    pub statement_digest: String,
}

/// What [`push_image`] pushed.
#[derive(Debug, Clone)]
pub struct Pushed {
    pub repo: String,
    pub tag: String,
    /// Digest of the top-level manifest (index/list or single manifest).
    pub digest: String,
    pub media_type: String,
    /// The exact top-level manifest bytes pushed.
    pub raw: Vec<u8>,
    /// (descriptor platform, manifest digest) of each image manifest, in index order
    /// (attestation manifests excluded); one entry for a single manifest.
    pub manifests: Vec<(String, String)>,
    pub images: Vec<PushedImage>,
    pub attestations: Vec<PushedAttestation>,
}

impl Pushed {
    /// The image whose descriptor platform is `platform`.
    pub fn image(&self, platform: &str) -> &PushedImage {
        self.images
            .iter()
            .find(|i| i.platform == platform)
            .unwrap_or_else(|| panic!("no image for {platform} in {}", self.repo))
    }

    /// Manifest digest for descriptor platform `platform`.
    pub fn digest_for(&self, platform: &str) -> &str {
        &self.image(platform).digest
    }

    /// `ADDR/repo:tag`.
    pub fn reference(&self, addr: &str) -> String {
        format!("{addr}/{}:{}", self.repo, self.tag)
    }
}

/// Pushes blobs and manifests to one unauthenticated endpoint, remembering what is there.
pub struct Pusher {
    addr: String,
    present: HashSet<(String, String)>,
    source: HashMap<String, String>,
    /// Skip the HEAD probe for blobs not seen before (when the caller knows they are new).
    pub assume_new: bool,
}

impl Pusher {
    /// A pusher for `addr` ("127.0.0.1:PORT"; a registry without auth, or a proxy to one).
    pub fn new(addr: &str) -> Pusher {
        local_addr(addr);
        Pusher {
            addr: addr.to_string(),
            present: HashSet::new(),
            source: HashMap::new(),
            assume_new: false,
        }
    }

    fn req(
        &self,
        method: &str,
        target: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> HttpResponse {
        let h: Vec<(String, String)> = headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        http_exchange(&self.addr, method, target, &h, body)
            .unwrap_or_else(|e| panic!("{method} {} {target}: {e}", self.addr))
    }

    /// Upload `bytes` as a blob of `repo` unless already there (cross-repo mount when
    /// another repo pushed through this pusher has it; else HEAD, POST + monolithic PUT).
    pub fn blob(&mut self, repo: &str, bytes: &[u8]) -> String {
        let digest = digest_of(bytes);
        let key = (repo.to_string(), digest.clone());
        if self.present.contains(&key) {
            return digest;
        }
        let mut location = None;
        if let Some(from) = self.source.get(&digest).filter(|f| *f != repo) {
            let r = self.req(
                "POST",
                &format!("/v2/{repo}/blobs/uploads/?mount={digest}&from={from}"),
                &[],
                &[],
            );
            match r.status {
                201 => {
                    self.present.insert(key);
                    return digest;
                }
                202 => location = r.header("location").map(str::to_string),
                s => panic!("mount {digest} into {repo}: {s} {}", r.text()),
            }
        }
        if location.is_none() {
            let r = self.req("HEAD", &format!("/v2/{repo}/blobs/{digest}"), &[], &[]);
            if r.status == 200 {
                self.present.insert(key);
                self.source
                    .entry(digest.clone())
                    .or_insert(repo.to_string());
                return digest;
            }
            let r = self.req("POST", &format!("/v2/{repo}/blobs/uploads/"), &[], &[]);
            assert_eq!(r.status, 202, "start upload to {repo}: {}", r.text());
            location = r.header("location").map(str::to_string);
        }
        let location = location.expect("upload Location");
        let target = if let Some(rest) = location.strip_prefix("http://") {
            rest.find('/')
                .map_or("/".to_string(), |i| rest[i..].to_string())
        } else {
            location
        };
        let sep = if target.contains('?') { '&' } else { '?' };
        let len = bytes.len().to_string();
        let r = self.req(
            "PUT",
            &format!("{target}{sep}digest={digest}"),
            &[
                ("Content-Type", "application/octet-stream"),
                ("Content-Length", &len),
            ],
            bytes,
        );
        assert_eq!(r.status, 201, "upload {digest} to {repo}: {}", r.text());
        self.present.insert(key);
        self.source
            .entry(digest.clone())
            .or_insert(repo.to_string());
        digest
    }

    /// PUT a manifest as `repo:reference` (tag or digest); returns its digest, checked
    /// against the registry's `Docker-Content-Digest`.
    pub fn manifest(&self, repo: &str, reference: &str, media_type: &str, bytes: &[u8]) -> String {
        let digest = digest_of(bytes);
        let r = self.req(
            "PUT",
            &format!("/v2/{repo}/manifests/{reference}"),
            &[("Content-Type", media_type)],
            bytes,
        );
        assert_eq!(
            r.status,
            201,
            "PUT manifest {repo}:{reference} ({media_type}): {}",
            r.text()
        );
        if let Some(d) = r.header("docker-content-digest") {
            assert_eq!(d, digest, "registry computed another digest");
        }
        digest
    }

    /// Build `spec` and push it as `repo:tag` (children by digest first, then the tag).
    pub fn push(&mut self, repo: &str, tag: &str, spec: &ImageSpec) -> Pushed {
        let f = spec.format;
        let mut images = Vec::new();
        for e in &spec.entries {
            let layer = program_layer(&e.config_platform);
            let mut labels = spec.labels.clone();
            if e.platform != e.config_platform {
                labels.push((
                    "org.archctl.test.declared-platform".to_string(),
                    e.platform.clone(),
                ));
            }
            let config = image_config(&e.config_platform, &layer.diff_id, &labels);
            self.blob(repo, &layer.gz);
            let config_digest = self.blob(repo, &config);
            let manifest = ImageManifestBuilder::default()
                .schema_version(2u32)
                .media_type(MediaType::from(f.manifest()))
                .config(descriptor(f.config(), &config).build().unwrap())
                .layers(vec![descriptor(f.layer(), &layer.gz).build().unwrap()])
                .build()
                .unwrap();
            let manifest = to_json(&manifest);
            let digest = digest_of(&manifest);
            let reference = if spec.index {
                digest.clone()
            } else {
                tag.to_string()
            };
            self.manifest(repo, &reference, f.manifest(), &manifest);
            images.push(PushedImage {
                platform: e.platform.clone(),
                config_platform: e.config_platform.clone(),
                digest,
                media_type: f.manifest().to_string(),
                manifest,
                config_digest,
                config,
                layer,
            });
        }
        let manifests = images
            .iter()
            .map(|i| (i.platform.clone(), i.digest.clone()))
            .collect();
        if !spec.index {
            let img = images[0].clone();
            return Pushed {
                repo: repo.to_string(),
                tag: tag.to_string(),
                digest: img.digest.clone(),
                media_type: img.media_type.clone(),
                raw: img.manifest.clone(),
                manifests,
                images,
                attestations: Vec::new(),
            };
        }
        let mut descriptors: Vec<Descriptor> = images
            .iter()
            .map(|i| {
                descriptor(f.manifest(), &i.manifest)
                    .platform(oci_platform(&i.platform))
                    .build()
                    .unwrap()
            })
            .collect();
        let mut attestations = Vec::new();
        if spec.attestations {
            for img in &images {
                let (att, desc) = self.push_attestation(repo, img);
                attestations.push(att);
                descriptors.push(desc);
            }
        }
        let index = ImageIndexBuilder::default()
            .schema_version(2u32)
            .media_type(MediaType::from(f.index()))
            .manifests(descriptors)
            .build()
            .unwrap();
        let raw = to_json(&index);
        let digest = self.manifest(repo, tag, f.index(), &raw);
        Pushed {
            repo: repo.to_string(),
            tag: tag.to_string(),
            digest,
            media_type: f.index().to_string(),
            raw,
            manifests,
            images,
            attestations,
        }
    }

    fn push_attestation(
        &mut self,
        repo: &str,
        img: &PushedImage,
    ) -> (PushedAttestation, Descriptor) {
        let statement = to_json(&json!({
            "_type": "https://in-toto.io/Statement/v0.1",
            "predicateType": "https://slsa.dev/provenance/v0.2",
            "subject": [{
                "name": format!("pkg:docker/archctl-test?platform={}", img.platform.replace('/', "%2F")),
                "digest": {"sha256": hex_part(&img.digest)},
            }],
            "predicate": {"builder": {"id": "https://archctl.invalid/test-fixture"}, "buildType": "archctl-test"},
        }));
        let statement_digest = self.blob(repo, &statement);
        let config = to_json(&json!({
            "architecture": "unknown",
            "os": "unknown",
            "config": {},
            "rootfs": {"type": "layers", "diff_ids": [statement_digest]},
        }));
        self.blob(repo, &config);
        let layer = descriptor(IN_TOTO, &statement)
            .annotations(HashMap::from([(
                "in-toto.io/predicate-type".to_string(),
                "https://slsa.dev/provenance/v0.2".to_string(),
            )]))
            .build()
            .unwrap();
        let manifest = ImageManifestBuilder::default()
            .schema_version(2u32)
            .media_type(MediaType::ImageManifest)
            .config(descriptor(OCI_CONFIG, &config).build().unwrap())
            .layers(vec![layer])
            .build()
            .unwrap();
        let manifest = to_json(&manifest);
        let digest = digest_of(&manifest);
        self.manifest(repo, &digest, OCI_MANIFEST, &manifest);
        let desc = descriptor(OCI_MANIFEST, &manifest)
            .platform(oci_platform("unknown/unknown"))
            .annotations(HashMap::from([
                (
                    "vnd.docker.reference.digest".to_string(),
                    img.digest.clone(),
                ),
                (
                    "vnd.docker.reference.type".to_string(),
                    "attestation-manifest".to_string(),
                ),
            ]))
            .build()
            .unwrap();
        (
            PushedAttestation {
                digest,
                attests: img.digest.clone(),
                manifest,
                statement_digest,
            },
            desc,
        )
    }
}

/// Build `spec` and push it to `reg` as `repo:tag` (through [`Registry::push_addr`]).
pub fn push_image(reg: &Registry, repo: &str, tag: &str, spec: ImageSpec) -> Pushed {
    push_image_to(&reg.push_addr(), repo, tag, spec)
}

/// Build `spec` and push it to the unauthenticated endpoint `addr` (registry or proxy).
pub fn push_image_to(addr: &str, repo: &str, tag: &str, spec: ImageSpec) -> Pushed {
    Pusher::new(addr).push(repo, tag, &spec)
}

/// Every fixture kind, pushed by [`push_fixtures`].
#[derive(Debug, Clone)]
pub struct Fixtures {
    /// (a) `fixtures/oci-index:v1`: OCI index over [`INDEX_PLATFORMS`].
    pub oci_index: Pushed,
    /// (b) `fixtures/docker-list:v1`: Docker manifest list (amd64, arm64/v8, arm/v7, s390x).
    pub docker_list: Pushed,
    /// (c) `fixtures/docker-single:v1`: one Docker schema2 manifest, linux/arm64.
    pub docker_single: Pushed,
    /// (d) `fixtures/oci-single:v1`: one OCI manifest, linux/riscv64.
    pub oci_single: Pushed,
    /// (e) `fixtures/attested:v1`: OCI index (amd64, arm64) + attestation manifests.
    pub attested: Pushed,
    /// (f) `fixtures/mismatched:v1`: descriptor linux/arm64, config linux/amd64.
    pub mismatched: Pushed,
}

/// Push every fixture kind (a)–(f) into `reg` under `fixtures/*:v1`.
pub fn push_fixtures(reg: &Registry) -> Fixtures {
    let mut p = Pusher::new(&reg.push_addr());
    Fixtures {
        oci_index: p.push(
            "fixtures/oci-index",
            "v1",
            &ImageSpec::oci_index(INDEX_PLATFORMS),
        ),
        docker_list: p.push(
            "fixtures/docker-list",
            "v1",
            &ImageSpec::docker_list(&[
                "linux/amd64",
                "linux/arm64/v8",
                "linux/arm/v7",
                "linux/s390x",
            ]),
        ),
        docker_single: p.push(
            "fixtures/docker-single",
            "v1",
            &ImageSpec::docker("linux/arm64"),
        ),
        oci_single: p.push(
            "fixtures/oci-single",
            "v1",
            &ImageSpec::oci("linux/riscv64"),
        ),
        attested: p.push(
            "fixtures/attested",
            "v1",
            &ImageSpec::oci_index(&["linux/amd64", "linux/arm64"]).with_attestations(),
        ),
        mismatched: p.push("fixtures/mismatched", "v1", &ImageSpec::mismatched()),
    }
}

/// Push `n` small repos `many/rNNNN:latest` (even: single OCI linux/amd64 manifest; odd:
/// OCI index linux/amd64 + linux/arm64), each with a unique config, layers mounted from
/// `many/base`; 4 threads. For benchmarks.
pub fn push_many(reg: &Registry, n: usize) -> Vec<Pushed> {
    let addr = reg.push_addr();
    let mut seed = Pusher::new(&addr);
    seed.push(
        "many/base",
        "seed",
        &ImageSpec::oci_index(&["linux/amd64", "linux/arm64"]),
    );
    let threads = 4.min(n.max(1));
    let results: Vec<Vec<(usize, Pushed)>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let addr = addr.clone();
                let source = seed.source.clone();
                s.spawn(move || {
                    let mut p = Pusher::new(&addr);
                    // Layers are mounted from many/base; configs are unique (labelled).
                    p.source = source;
                    p.assume_new = true;
                    (t..n)
                        .step_by(threads)
                        .map(|i| {
                            let repo = format!("many/r{i:04}");
                            let spec = if i % 2 == 0 {
                                ImageSpec::oci("linux/amd64")
                            } else {
                                ImageSpec::oci_index(&["linux/amd64", "linux/arm64"])
                            }
                            .label("org.archctl.test.repo", &repo);
                            (i, p.push(&repo, "latest", &spec))
                        })
                        .collect()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut all: Vec<(usize, Pushed)> = results.into_iter().flatten().collect();
    all.sort_by_key(|(i, _)| *i);
    all.into_iter().map(|(_, p)| p).collect()
}

// ---------------------------------------------------------------------------------------
// skopeo
// ---------------------------------------------------------------------------------------

/// Run `skopeo` with a 30 s command timeout, no policy check and an empty auth file (so
/// no stored credentials leak in). Callers pass `--tls-verify=false` etc. themselves.
pub fn skopeo(args: &[&str]) -> Output {
    let dir = tempfile::tempdir().unwrap();
    let auth = dir.path().join("auth.json");
    std::fs::write(&auth, "{}").unwrap();
    Command::new("skopeo")
        .args(["--command-timeout", "30s", "--insecure-policy"])
        .args(args)
        .env("REGISTRY_AUTH_FILE", &auth)
        .env("XDG_RUNTIME_DIR", dir.path())
        .env("HOME", dir.path())
        .env_remove("HTTP_PROXY")
        .env_remove("HTTPS_PROXY")
        .env_remove("http_proxy")
        .env_remove("https_proxy")
        .stdin(Stdio::null())
        .output()
        .expect("run skopeo")
}

// ---------------------------------------------------------------------------------------
// Hostile servers
// ---------------------------------------------------------------------------------------

/// How long a hostile server keeps any one connection busy at most: every test against
/// one ends well before.
const HOSTILE_LIMIT: Duration = Duration::from_secs(90);

/// What a [`HostileServer`] sends after a response head.
#[derive(Clone, Debug)]
pub enum Hostile {
    /// A whole response: status line and headers as given, then `body`.
    Answer(String, Vec<u8>),
    /// The head, then `fill` repeated as fast as the client takes it, never ending
    /// (until the client hangs up or [`HOSTILE_LIMIT`] passes).
    Endless(String, Vec<u8>),
    /// The head, then `fill` one byte at a time, one every `every`.
    Trickle(String, Vec<u8>, Duration),
    /// The head, then `chunk` every `every`, forever: fast enough never to stall, too
    /// slow ever to end.
    Drip(String, Vec<u8>, Duration),
}

/// A raw HTTP/1.1 server on 127.0.0.1 for what a well-behaved server never does: each
/// request's target is passed to `plan`, and the answer written as it says, one
/// connection per request (`Connection: close`). Every connection is bounded by
/// [`HOSTILE_LIMIT`] and socket timeouts; dropping the server stops the writers.
pub struct HostileServer {
    pub addr: String,
    pub requests: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
}

/// Listen on 127.0.0.1 (returning "127.0.0.1:PORT") and serve each connection with
/// `serve` on a thread of its own, until `stop` is set or [`HOSTILE_LIMIT`] passes.
fn accept_loop(stop: Arc<AtomicBool>, serve: impl Fn(TcpStream) + Send + Sync + 'static) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    listener.set_nonblocking(true).unwrap();
    let serve = Arc::new(serve);
    std::thread::spawn(move || {
        let started = Instant::now();
        while !stop.load(Ordering::SeqCst) && started.elapsed() < HOSTILE_LIMIT {
            let Ok((stream, _)) = listener.accept() else {
                std::thread::sleep(Duration::from_millis(5));
                continue;
            };
            let serve = serve.clone();
            std::thread::spawn(move || serve(stream));
        }
    });
    addr
}

impl HostileServer {
    pub fn start(plan: impl Fn(&str) -> Hostile + Send + Sync + 'static) -> HostileServer {
        let stop = Arc::new(AtomicBool::new(false));
        let requests: Arc<Mutex<Vec<String>>> = Arc::default();
        let plan = Arc::new(plan);
        let addr = {
            let (stop, requests) = (stop.clone(), requests.clone());
            accept_loop(stop.clone(), move |stream| {
                let _ = hostile_conn(stream, &*plan, &stop, &requests);
            })
        };
        HostileServer {
            addr,
            requests,
            stop,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

impl Drop for HostileServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

fn hostile_conn(
    stream: TcpStream,
    plan: &(dyn Fn(&str) -> Hostile + Send + Sync),
    stop: &AtomicBool,
    requests: &Mutex<Vec<String>>,
) -> io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    let mut r = BufReader::new(stream.try_clone()?);
    let Some((start, _headers)) = read_head(&mut r)? else {
        return Ok(());
    };
    let target = start.split_whitespace().nth(1).unwrap_or("/").to_string();
    requests.lock().unwrap().push(target.clone());
    let mut w = stream;
    let started = Instant::now();
    let going = || !stop.load(Ordering::SeqCst) && started.elapsed() < HOSTILE_LIMIT;
    let head = |h: &str| format!("{}\r\nConnection: close\r\n\r\n", h.trim_end());
    match plan(&target) {
        Hostile::Answer(h, body) => {
            w.write_all(head(&h).as_bytes())?;
            w.write_all(&body)?;
        }
        Hostile::Endless(h, fill) => {
            w.write_all(head(&h).as_bytes())?;
            let block = fill.repeat((64 * 1024 / fill.len().max(1)).max(1));
            while going() {
                w.write_all(&block)?;
            }
        }
        Hostile::Trickle(h, fill, every) => {
            w.write_all(head(&h).as_bytes())?;
            for b in fill.iter().cycle() {
                if !going() {
                    break;
                }
                w.write_all(&[*b])?;
                w.flush()?;
                std::thread::sleep(every);
            }
        }
        Hostile::Drip(h, chunk, every) => {
            w.write_all(head(&h).as_bytes())?;
            while going() {
                w.write_all(&chunk)?;
                w.flush()?;
                std::thread::sleep(every);
            }
        }
    }
    let _ = w.shutdown(Shutdown::Both);
    Ok(())
}

// ---------------------------------------------------------------------------------------
// TLS and plain HTTP on one port
// ---------------------------------------------------------------------------------------

/// A request a [`DualServer`] saw: over TLS or plain HTTP, its target and headers (names
/// lower-cased).
#[derive(Debug, Clone)]
pub struct DualSeen {
    pub tls: bool,
    pub target: String,
    pub headers: Vec<(String, String)>,
}

impl DualSeen {
    /// The `Authorization` header, if one came.
    pub fn authorization(&self) -> Option<&str> {
        find_header(&self.headers, "authorization")
    }
}

/// One 127.0.0.1 port that speaks TLS (a self-signed certificate made with openssl) and
/// plain HTTP, told apart by the first byte of each connection (0x16 opens a TLS
/// handshake): for what a registry reached over HTTPS makes a client send in clear text
/// to its own `host:port`. Each connection carries one request (`Connection: close`),
/// answered by `handler` and recorded in `seen`, plain HTTP ones too. Bounded like
/// [`HostileServer`]; dropping the server stops it.
pub struct DualServer {
    pub addr: String,
    pub seen: Arc<Mutex<Vec<DualSeen>>>,
    stop: Arc<AtomicBool>,
    _dir: tempfile::TempDir,
}

impl DualServer {
    pub fn start(
        handler: impl Fn(&DualSeen) -> HttpResponse + Send + Sync + 'static,
    ) -> DualServer {
        let dir = tempfile::Builder::new()
            .prefix("archctl-dual-")
            .tempdir()
            .unwrap();
        let (key, cert) = (dir.path().join("key.pem"), dir.path().join("cert.pem"));
        run_ok(
            Command::new("openssl")
                .args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
                .args(["ec_paramgen_curve:prime256v1", "-nodes", "-days", "2"])
                .args(["-subj", "/CN=127.0.0.1", "-keyout"])
                .arg(&key)
                .arg("-out")
                .arg(&cert),
        );
        use rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
        let certs = CertificateDer::pem_file_iter(&cert)
            .unwrap()
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        let key = PrivateKeyDer::from_pem_file(&key).unwrap();
        let config = Arc::new(
            rustls::ServerConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .unwrap(),
        );
        let stop = Arc::new(AtomicBool::new(false));
        let seen: Arc<Mutex<Vec<DualSeen>>> = Arc::default();
        let handler = Arc::new(handler);
        let addr = {
            let seen = seen.clone();
            accept_loop(stop.clone(), move |stream| {
                let _ = dual_conn(stream, &config, &*handler, &seen);
            })
        };
        DualServer {
            addr,
            seen,
            stop,
            _dir: dir,
        }
    }

    /// "127.0.0.1:PORT".
    pub fn addr(&self) -> String {
        self.addr.clone()
    }

    pub fn seen(&self) -> Vec<DualSeen> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for DualServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

fn dual_conn(
    stream: TcpStream,
    config: &Arc<rustls::ServerConfig>,
    handler: &(dyn Fn(&DualSeen) -> HttpResponse + Send + Sync),
    seen: &Mutex<Vec<DualSeen>>,
) -> io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    let mut first = [0u8; 1];
    if stream.peek(&mut first)? == 0 {
        return Ok(());
    }
    let tls = first[0] == 0x16;
    let conn: Box<dyn ReadWrite> = if tls {
        let server = rustls::ServerConnection::new(config.clone()).map_err(invalid)?;
        Box::new(rustls::StreamOwned::new(server, stream))
    } else {
        Box::new(stream)
    };
    let mut r = BufReader::new(conn);
    let Some((start, headers)) = read_head(&mut r)? else {
        return Ok(());
    };
    let _ = read_body(&mut r, &headers, false)?;
    let mut parts = start.split_whitespace();
    let method = parts.next().unwrap_or("GET").to_string();
    let req = DualSeen {
        tls,
        target: parts.next().unwrap_or("/").to_string(),
        headers: headers
            .into_iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v))
            .collect(),
    };
    seen.lock().unwrap().push(req.clone());
    let resp = handler(&req);
    write_response(r.get_mut(), &method, &resp, true, None)
}

/// A TLS or a plain stream.
trait ReadWrite: Read + Write + Send {}
impl<T: Read + Write + Send> ReadWrite for T {}
