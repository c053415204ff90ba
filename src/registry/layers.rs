//! Finding a file in an image's layers without unpacking them: the layers are streamed
//! top-down (gzip, zstd or plain tar, told by their magic bytes), each entry indexed as
//! it passes (path, type, mode, link target, and the first [`HEAD_BYTES`] of executable
//! ELF files and scripts), and the search stops as soon as the answer is known.
//!
//! The search follows what a container runtime does: argv[0] of Entrypoint + Cmd, looked
//! up in PATH (from the config's Env, else [`DEFAULT_PATH`]) in PATH order when it has no
//! `/`; symlinks (absolute or relative, in the file itself or in a directory above it)
//! followed across layers, at most [`MAX_SYMLINK_HOPS`]; hard links within their layer;
//! `.wh.NAME` and opaque (`.wh..wh..opq`) whiteouts hiding lower layers; a `#!` script's
//! interpreter (and `/usr/bin/env NAME`'s NAME) looked up in turn.
//!
//! Bounded: at most [`Limits::compressed`] bytes are read from the registry and
//! [`Limits::unpacked`] bytes decompressed per image (a decompression bomb stops at the
//! cap), at most [`MAX_ENTRIES`] entries indexed. A layer read to its end has its digest
//! verified (a mismatch is an error); a layer left early (the answer was found in it)
//! cannot be, and the report says how many were.
//!
//! This module is synchronous and knows nothing of HTTP: the bytes come from a
//! [`LayerSource`] (the registry's streamed blobs, or memory in tests).

use std::{
    collections::{HashMap, HashSet},
    io::{self, Read},
    sync::Arc,
};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256, Sha512};

/// Compressed bytes read from the registry per image, at most: 256 MiB
/// (`ARCHCTL_TRUTH_MAX_BYTES` overrides).
pub const MAX_COMPRESSED_BYTES: u64 = 256 * 1024 * 1024;
/// Bytes decompressed per image, at most: 1 GiB (`ARCHCTL_TRUTH_MAX_UNPACKED_BYTES`
/// overrides).
pub const MAX_UNPACKED_BYTES: u64 = 1024 * 1024 * 1024;
/// The bytes kept from the start of an executable file: its ELF header and program
/// headers (or a script's `#!` line).
pub const HEAD_BYTES: usize = 4096;
/// Entries indexed per image, at most.
pub const MAX_ENTRIES: usize = 262_144;
/// Bytes of file heads kept per image, at most (beyond, files are indexed without one).
const HEAD_BUDGET: usize = 32 * 1024 * 1024;
/// Symlinks followed for one path, at most (Linux's limit).
pub const MAX_SYMLINK_HOPS: usize = 40;
/// `#!` interpreters followed, at most (Linux's limit is 4).
const MAX_SCRIPT_DEPTH: usize = 4;
/// PATH when the config's Env has none (Docker's default).
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The caps of one image's search.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub compressed: u64,
    pub unpacked: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            compressed: MAX_COMPRESSED_BYTES,
            unpacked: MAX_UNPACKED_BYTES,
        }
    }
}

impl Limits {
    /// The defaults, or `ARCHCTL_TRUTH_MAX_BYTES` / `ARCHCTL_TRUTH_MAX_UNPACKED_BYTES`.
    pub fn from_env() -> Limits {
        let var = |k: &str, d: u64| {
            std::env::var(k)
                .ok()
                .and_then(|s| s.trim().parse().ok())
                .unwrap_or(d)
        };
        Limits {
            compressed: var("ARCHCTL_TRUTH_MAX_BYTES", MAX_COMPRESSED_BYTES),
            unpacked: var("ARCHCTL_TRUTH_MAX_UNPACKED_BYTES", MAX_UNPACKED_BYTES),
        }
    }
}

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum LayerError {
    #[error(
        "stopped after {limit} compressed bytes of layers (the cap per image, ARCHCTL_TRUTH_MAX_BYTES) without finding {what}"
    )]
    CompressedCap { limit: u64, what: String },
    #[error(
        "stopped after {limit} unpacked bytes of layers (the cap per image, ARCHCTL_TRUTH_MAX_UNPACKED_BYTES; a decompression bomb?) without finding {what}"
    )]
    UnpackedCap { limit: u64, what: String },
    #[error("more than {limit} entries in the layers before {what} was found")]
    TooManyEntries { limit: usize, what: String },
    #[error("layer {digest}: {why}")]
    Bad { digest: String, why: String },
    #[error("layer {digest}: content does not match its digest (got {actual})")]
    DigestMismatch { digest: String, actual: String },
    /// Fetching the layer failed.
    #[error(transparent)]
    Fetch(#[from] super::RegistryError),
}

/// Where layer bytes come from: layer `i` (0 = the bottom layer, as in the manifest)
/// as a stream of its compressed bytes.
pub trait LayerSource {
    fn open(&mut self, layer: usize) -> Result<Box<dyn Read + '_>, LayerError>;
}

/// What to look for: the program a container of the image starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    /// argv[0].
    pub program: String,
    /// PATH, split.
    pub path: Vec<String>,
    /// WorkingDir (`/` when unset).
    pub workdir: String,
}

impl Query {
    /// From an image config's Entrypoint, Cmd, Env and WorkingDir: None when neither
    /// Entrypoint nor Cmd names a program.
    pub fn from_config(
        entrypoint: Option<&[String]>,
        cmd: Option<&[String]>,
        env: Option<&[String]>,
        workdir: Option<&str>,
    ) -> Option<Query> {
        let program = entrypoint
            .filter(|e| !e.is_empty())
            .or(cmd)
            .and_then(|v| v.first())
            .filter(|p| !p.is_empty())?
            .clone();
        let path = env
            .unwrap_or_default()
            .iter()
            .rev()
            .find_map(|e| e.strip_prefix("PATH="))
            .unwrap_or(DEFAULT_PATH);
        Some(Query {
            program,
            path: path.split(':').map(str::to_string).collect(),
            workdir: workdir
                .filter(|w| w.starts_with('/'))
                .unwrap_or("/")
                .to_string(),
        })
    }

    /// The cache key part of the query.
    pub fn key(&self) -> String {
        format!(
            "{}\n{}\n{}",
            self.program,
            self.path.join(":"),
            self.workdir
        )
    }
}

/// The file that runs, as found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// The path as looked up, each symlink's path, the path found; for a script also
    /// its interpreter's.
    pub chain: Vec<String>,
    /// Where the file is.
    pub path: String,
    /// Its layer (0 = bottom).
    pub layer: usize,
    /// Its first bytes (at most [`HEAD_BYTES`]).
    pub head: Arc<Vec<u8>>,
    /// The scripts passed through on the way (`#!` lines), outermost first.
    pub scripts: Vec<String>,
}

/// The search's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// An ELF file (its head starts with the ELF magic).
    Elf(Found),
    /// The file that runs is neither ELF nor a script (or a script whose interpreter is
    /// missing): why, in words.
    NoBinary { chain: Vec<String>, why: String },
}

/// What reading the layers cost.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    /// Compressed bytes read from the registry.
    pub compressed_bytes: u64,
    /// Bytes decompressed.
    pub unpacked_bytes: u64,
    /// Layers opened.
    pub layers_read: usize,
    /// Layers read to their end, their digest verified.
    pub layers_verified: usize,
    /// Layers not verified: left before their end (the answer was in them), or with a
    /// digest algorithm other than sha256/sha512.
    pub layers_partial: usize,
}

#[derive(Debug, Clone)]
enum Head {
    Kept(Arc<Vec<u8>>),
    /// Its first bytes are neither ELF nor `#!` (these are they, at most 16).
    Other(Vec<u8>),
    /// Not kept: the head budget was spent.
    NotKept,
}

#[derive(Debug, Clone)]
enum Node {
    File {
        mode: u32,
        head: Head,
    },
    Symlink(String),
    /// A hard link: the normalised path of its target in the same layer.
    Hardlink(String),
    /// A directory (an entry of its own, or implied by an entry below it).
    Dir,
    /// A device, FIFO...
    Other,
}

#[derive(Debug, Default)]
struct Index {
    nodes: HashMap<String, Node>,
    whiteouts: HashSet<String>,
    opaque: HashSet<String>,
    complete: bool,
}

/// One step of the search: decided, or waiting for more of a layer.
enum Step<T> {
    Done(T),
    /// Waiting for the topmost layer not yet read to its end to say whether it has
    /// `path` (or, for a directory above the file, what it is).
    Blocked {
        path: String,
    },
}

use Step::{Blocked, Done};

macro_rules! step {
    ($e:expr) => {
        match $e {
            Done(v) => v,
            Blocked { path } => return Blocked { path },
        }
    };
}

/// A resolved file.
struct Resolved {
    path: String,
    layer: usize,
    mode: u32,
    head: Head,
    chain: Vec<String>,
}

/// Why a path does not resolve to a file.
enum Miss {
    Absent(String),
    NotDir(String),
    NotFile(String),
    Loop(String),
    BrokenHardlink(String),
}

impl Miss {
    fn text(&self) -> String {
        match self {
            Miss::Absent(p) => format!("{p} is not in the layers"),
            Miss::NotDir(p) => format!("{p} is a file, not a directory"),
            Miss::NotFile(p) => format!("{p} is not a regular file"),
            Miss::Loop(p) => format!("{p}: more than {MAX_SYMLINK_HOPS} symlinks"),
            Miss::BrokenHardlink(p) => format!("{p} is a hard link to nothing in its layer"),
        }
    }
}

/// The search over one image's layers.
pub struct Search {
    /// Layer digests, bottom first (manifest order).
    digests: Vec<String>,
    /// Indexes, top first.
    indexes: Vec<Index>,
    limits: Limits,
    stats: Stats,
    entries: usize,
    head_bytes: usize,
}

/// Normalise a path: absolute, no `.`, no empty components, no trailing `/`; `..` is
/// kept as it is only for symlink targets (see [`Search::resolve`]), so here it makes
/// the path invalid (None), as in a layer's own entries.
fn normalize_entry(p: &str) -> Option<String> {
    let mut out = String::new();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => return None,
            c => {
                out.push('/');
                out.push_str(c);
            }
        }
    }
    Some(if out.is_empty() { "/".into() } else { out })
}

fn components(p: &str) -> Vec<String> {
    p.split('/')
        .filter(|c| !c.is_empty())
        .map(str::to_string)
        .collect()
}

/// `/a/b/c` → `/a/b`, `/a`, `/`.
fn ancestors(p: &str) -> impl Iterator<Item = &str> {
    let mut cur = Some(p);
    std::iter::from_fn(move || {
        let p = cur?;
        let parent = match p.rfind('/') {
            Some(0) if p.len() > 1 => "/",
            Some(0) | None => {
                cur = None;
                return None;
            }
            Some(i) => &p[..i],
        };
        cur = Some(parent);
        Some(parent)
    })
}

fn join(dir: &str, name: &str) -> String {
    if name.starts_with('/') {
        name.to_string()
    } else if dir.ends_with('/') {
        format!("{dir}{name}")
    } else {
        format!("{dir}/{name}")
    }
}

impl Search {
    /// A search over layers given bottom first (as the manifest lists them).
    pub fn new(digests: Vec<String>, limits: Limits) -> Search {
        let indexes = digests.iter().map(|_| Index::default()).collect();
        Search {
            digests,
            indexes,
            limits,
            stats: Stats::default(),
            entries: 0,
            head_bytes: 0,
        }
    }

    /// Find the program `q` names, reading layers from `src` only as far as needed.
    pub fn run(
        mut self,
        q: &Query,
        src: &mut dyn LayerSource,
    ) -> (Result<Outcome, LayerError>, Stats) {
        let r = self.run_inner(q, src);
        (r, self.stats)
    }

    fn run_inner(&mut self, q: &Query, src: &mut dyn LayerSource) -> Result<Outcome, LayerError> {
        loop {
            match self.decide(q) {
                Done(o) => return Ok(o),
                Blocked { .. } => {
                    let Some(top) = self.indexes.iter().position(|i| !i.complete) else {
                        // Cannot happen: complete indexes always decide.
                        return Err(LayerError::Bad {
                            digest: String::new(),
                            why: "search did not end".into(),
                        });
                    };
                    if self.read_layer(top, q, src)? {
                        return match self.decide(q) {
                            Done(o) => Ok(o),
                            Blocked { .. } => continue,
                        };
                    }
                }
            }
        }
    }

    /// The digest of layer `top` (top-down index).
    fn digest(&self, top: usize) -> &str {
        let n = self.digests.len();
        &self.digests[n - 1 - top]
    }

    /// Read layer `top` (top-down index), indexing its entries, until the search is
    /// decided (true: the layer is left where it is) or the layer ends (false: read to
    /// its end and verified).
    fn read_layer(
        &mut self,
        top: usize,
        q: &Query,
        src: &mut dyn LayerSource,
    ) -> Result<bool, LayerError> {
        let n = self.digests.len();
        let digest = self.digest(top).to_string();
        let what = q.program.clone();
        let bad = |why: String| LayerError::Bad {
            digest: digest.clone(),
            why,
        };
        let limits = self.limits;
        self.stats.layers_read += 1;
        let stream = src.open(n - 1 - top)?;
        let budget = Budget {
            compressed: self.stats.compressed_bytes,
            unpacked: self.stats.unpacked_bytes,
            limits,
            hit: None,
        };
        let budget = std::cell::RefCell::new(budget);
        let mut raw = Counted {
            inner: stream,
            hasher: Hasher::for_digest(&digest),
            budget: &budget,
        };
        let cap_error = |b: &Budget, e: io::Error| match b.hit {
            Some(Cap::Compressed) => LayerError::CompressedCap {
                limit: limits.compressed,
                what: what.clone(),
            },
            Some(Cap::Unpacked) => LayerError::UnpackedCap {
                limit: limits.unpacked,
                what: what.clone(),
            },
            None => bad(e.to_string()),
        };
        let decided = {
            let mut magic = Vec::with_capacity(4);
            (&mut raw)
                .take(4)
                .read_to_end(&mut magic)
                .map_err(|e| cap_error(&budget.borrow(), e))?;
            let chained = io::Cursor::new(magic.clone()).chain(&mut raw);
            let dec: Box<dyn Read + '_> = if magic.starts_with(&[0x1f, 0x8b]) {
                Box::new(flate2::read::MultiGzDecoder::new(chained))
            } else if magic.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
                Box::new(Zstd::new(chained))
            } else {
                Box::new(chained)
            };
            let mut unpacked = Unpacked {
                inner: dec,
                budget: &budget,
            };
            let decided = self
                .index_entries(top, q, &mut unpacked)
                .map_err(|e| match e {
                    IndexError::Io(e) => cap_error(&budget.borrow(), e),
                    IndexError::Layer(e) => e,
                })?;
            if !decided {
                // The rest of the stream (tar padding, the compressor's trailer) so the
                // digest covers every byte.
                io::copy(&mut unpacked, &mut io::sink())
                    .map_err(|e| cap_error(&budget.borrow(), e))?;
            }
            decided
        };
        if !decided {
            io::copy(&mut raw, &mut io::sink()).map_err(|e| cap_error(&budget.borrow(), e))?;
        }
        let hasher = std::mem::replace(&mut raw.hasher, Hasher::None);
        drop(raw);
        let b = budget.into_inner();
        self.stats.compressed_bytes = b.compressed;
        self.stats.unpacked_bytes = b.unpacked;
        if decided {
            self.stats.layers_partial += 1;
            return Ok(true);
        }
        match hasher.finish() {
            Some(actual) if actual != digest => {
                return Err(LayerError::DigestMismatch { digest, actual });
            }
            Some(_) => self.stats.layers_verified += 1,
            // An algorithm archctl does not know: read, but not verified.
            None => self.stats.layers_partial += 1,
        }
        self.indexes[top].complete = true;
        Ok(false)
    }

    /// Index the tar entries of layer `top`; true as soon as the search is decided.
    fn index_entries(
        &mut self,
        top: usize,
        q: &Query,
        r: &mut dyn Read,
    ) -> Result<bool, IndexError> {
        let mut ar = tar::Archive::new(r);
        let mut waiting = match self.decide(q) {
            Done(_) => return Ok(true),
            Blocked { path } => path,
        };
        for e in ar.entries().map_err(IndexError::Io)? {
            let mut e = e.map_err(IndexError::Io)?;
            self.entries += 1;
            if self.entries > MAX_ENTRIES {
                return Err(IndexError::Layer(LayerError::TooManyEntries {
                    limit: MAX_ENTRIES,
                    what: q.program.clone(),
                }));
            }
            let raw_path = String::from_utf8_lossy(&e.path_bytes()).into_owned();
            let Some(path) = normalize_entry(&raw_path) else {
                continue;
            };
            let (dir, name) = match path.rfind('/') {
                Some(i) => (&path[..i.max(1)], &path[i + 1..]),
                None => ("/", path.as_str()),
            };
            let idx = &mut self.indexes[top];
            // Every entry says its directories are directories in this layer.
            let mut relevant = path == waiting;
            for a in ancestors(&path) {
                if idx.nodes.contains_key(a) {
                    break;
                }
                relevant |= a == waiting;
                idx.nodes.insert(a.to_string(), Node::Dir);
            }
            if name == ".wh..wh..opq" {
                idx.opaque.insert(dir.to_string());
            } else if let Some(hidden) = name.strip_prefix(".wh.") {
                if !hidden.starts_with(".wh.") {
                    idx.whiteouts.insert(join(dir, hidden));
                }
            } else {
                let node = self.node(&mut e)?;
                // The first entry of a path wins: the search stops at it, so a later
                // duplicate in the same tar (which extraction would let win) is not seen.
                self.indexes[top].nodes.entry(path).or_insert(node);
            }
            if relevant {
                match self.decide(q) {
                    Done(_) => return Ok(true),
                    Blocked { path } => waiting = path,
                }
            }
        }
        Ok(false)
    }

    /// The index node of a tar entry (reading the head of an executable file).
    fn node<R: Read>(&mut self, e: &mut tar::Entry<'_, R>) -> Result<Node, IndexError> {
        {
            let kind = e.header().entry_type();
            let mode = e.header().mode().unwrap_or(0);
            let node = match kind {
                tar::EntryType::Directory => Node::Dir,
                tar::EntryType::Symlink => {
                    let t = e
                        .link_name_bytes()
                        .map(|b| String::from_utf8_lossy(&b).into_owned())
                        .unwrap_or_default();
                    Node::Symlink(t)
                }
                tar::EntryType::Link => {
                    let t = e
                        .link_name_bytes()
                        .map(|b| String::from_utf8_lossy(&b).into_owned())
                        .and_then(|t| normalize_entry(&t));
                    match t {
                        Some(t) => Node::Hardlink(t),
                        None => Node::Other,
                    }
                }
                tar::EntryType::Regular | tar::EntryType::Continuous => {
                    let head = if mode & 0o111 == 0 {
                        Head::Other(Vec::new())
                    } else if self.head_bytes >= HEAD_BUDGET {
                        Head::NotKept
                    } else {
                        let mut buf = Vec::new();
                        Read::take(&mut *e, HEAD_BYTES as u64)
                            .read_to_end(&mut buf)
                            .map_err(IndexError::Io)?;
                        if buf.starts_with(b"\x7fELF") || buf.starts_with(b"#!") {
                            self.head_bytes += buf.len();
                            Head::Kept(Arc::new(buf))
                        } else {
                            buf.truncate(16);
                            Head::Other(buf)
                        }
                    };
                    Node::File { mode, head }
                }
                _ => Node::Other,
            };
            Ok(node)
        }
    }

    /// Look `path` (normalised) up in the union of the layers, top-down.
    fn lookup(&self, path: &str) -> Step<Option<(usize, &Node)>> {
        for (i, l) in self.indexes.iter().enumerate() {
            if let Some(n) = l.nodes.get(path) {
                let n = match n {
                    Node::Hardlink(t) => match l.nodes.get(t) {
                        Some(Node::Hardlink(_)) | None => return Done(None),
                        Some(n) => n,
                    },
                    n => n,
                };
                return Done(Some((i, n)));
            }
            if !l.complete {
                return Blocked {
                    path: path.to_string(),
                };
            }
            let hidden = l.whiteouts.contains(path)
                || ancestors(path).any(|a| l.whiteouts.contains(a) || l.opaque.contains(a));
            if hidden {
                return Done(None);
            }
        }
        Done(None)
    }

    /// Resolve `path` to a file, following symlinks (in the file and the directories
    /// above it) across layers.
    fn resolve(&self, path: &str) -> Step<Result<Resolved, Miss>> {
        let mut comps: Vec<String> = components(path);
        comps.reverse();
        let mut cur = String::new();
        let mut chain = vec![path.to_string()];
        let mut hops = 0;
        while let Some(c) = comps.pop() {
            match c.as_str() {
                "." => continue,
                ".." => {
                    match cur.rfind('/') {
                        Some(i) => cur.truncate(i),
                        None => cur.clear(),
                    }
                    continue;
                }
                _ => {}
            }
            let next = format!("{cur}/{c}");
            match step!(self.lookup(&next)) {
                None if comps.is_empty() => return Done(Err(Miss::Absent(next))),
                None => cur = next,
                Some((_, Node::Symlink(target))) => {
                    hops += 1;
                    if hops > MAX_SYMLINK_HOPS {
                        return Done(Err(Miss::Loop(path.to_string())));
                    }
                    if target.starts_with('/') {
                        cur.clear();
                    }
                    let mut t = components(target);
                    t.reverse();
                    // Pushed after the rest so they are taken first.
                    comps.extend(t);
                    let mut shown: Vec<&str> = comps.iter().rev().map(String::as_str).collect();
                    shown.insert(0, cur.as_str());
                    let full = normalize_display(&shown.join("/"));
                    if chain.last() != Some(&full) {
                        chain.push(full);
                    }
                }
                Some((i, Node::File { mode, head })) if comps.is_empty() => {
                    if chain.last() != Some(&next) {
                        chain.push(next.clone());
                    }
                    return Done(Ok(Resolved {
                        path: next,
                        layer: i,
                        mode: *mode,
                        head: head.clone(),
                        chain,
                    }));
                }
                Some((_, Node::File { .. })) => return Done(Err(Miss::NotDir(next))),
                Some((_, Node::Hardlink(_))) => return Done(Err(Miss::BrokenHardlink(next))),
                Some((_, Node::Dir | Node::Other)) if comps.is_empty() => {
                    return Done(Err(Miss::NotFile(next)));
                }
                Some((_, Node::Dir | Node::Other)) => cur = next,
            }
        }
        Done(Err(Miss::NotFile(if cur.is_empty() {
            "/".into()
        } else {
            cur
        })))
    }

    /// The program `name` as execvp finds it: a path when it has a `/`, else the first
    /// executable file of that name in PATH order.
    fn find_program(
        &self,
        name: &str,
        path: &[String],
        workdir: &str,
    ) -> Step<Result<Resolved, String>> {
        if name.contains('/') {
            let p = join(workdir, name);
            return Done(match step!(self.resolve(&p)) {
                Ok(r) if r.mode & 0o111 != 0 => Ok(r),
                Ok(r) => Err(format!("{} is not executable", r.path)),
                Err(m) => Err(m.text()),
            });
        }
        for dir in path {
            let dir = if dir.is_empty() { "." } else { dir.as_str() };
            let p = join(&join(workdir, dir), name);
            if let Ok(r) = step!(self.resolve(&p))
                && r.mode & 0o111 != 0
            {
                return Done(Ok(r));
            }
        }
        Done(Err(format!(
            "no executable {name} in PATH ({})",
            path.join(":")
        )))
    }

    /// The whole answer from what the indexes know so far.
    fn decide(&self, q: &Query) -> Step<Outcome> {
        let mut r = match step!(self.find_program(&q.program, &q.path, &q.workdir)) {
            Ok(r) => r,
            Err(why) => {
                return Done(Outcome::NoBinary {
                    chain: vec![q.program.clone()],
                    why,
                });
            }
        };
        let mut chain = Vec::new();
        let mut scripts = Vec::new();
        for _ in 0..=MAX_SCRIPT_DEPTH {
            chain.extend(r.chain.iter().cloned());
            let head = match &r.head {
                Head::Kept(h) => h.clone(),
                Head::Other(b) => {
                    return Done(Outcome::NoBinary {
                        chain,
                        why: format!(
                            "{} is not an ELF file{}",
                            r.path,
                            if b.is_empty() {
                                String::new()
                            } else {
                                format!(" (it starts with {})", escape(b))
                            }
                        ),
                    });
                }
                Head::NotKept => {
                    return Done(Outcome::NoBinary {
                        chain,
                        why: format!(
                            "{}: its header was not kept (more than {} MiB of executables' headers in the layers)",
                            r.path,
                            HEAD_BUDGET >> 20
                        ),
                    });
                }
            };
            if head.starts_with(b"\x7fELF") {
                return Done(Outcome::Elf(Found {
                    chain,
                    path: r.path,
                    layer: self.digests.len() - 1 - r.layer,
                    head,
                    scripts,
                }));
            }
            // A script: its interpreter runs.
            let line = head.split(|&b| b == b'\n').next().unwrap_or_default();
            let line = String::from_utf8_lossy(&line[2..]).trim().to_string();
            scripts.push(format!("{}: #!{line}", r.path));
            let mut words = line.split_whitespace();
            let Some(interp) = words.next() else {
                return Done(Outcome::NoBinary {
                    chain,
                    why: format!("{} is a script without an interpreter", r.path),
                });
            };
            let arg = words.next();
            let found = match arg {
                Some(a) if interp.rsplit('/').next() == Some("env") && !a.starts_with('-') => {
                    step!(self.find_program(a, &q.path, &q.workdir))
                }
                _ => step!(self.find_program(interp, &[], &q.workdir)),
            };
            r = match found {
                Ok(next) => next,
                Err(why) => {
                    return Done(Outcome::NoBinary {
                        chain,
                        why: format!("{}'s interpreter: {why}", r.path),
                    });
                }
            };
        }
        Done(Outcome::NoBinary {
            chain,
            why: format!("more than {MAX_SCRIPT_DEPTH} nested #! interpreters"),
        })
    }
}

fn normalize_display(p: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            c => out.push(c),
        }
    }
    format!("/{}", out.join("/"))
}

fn escape(b: &[u8]) -> String {
    let mut s = String::from("\"");
    for &c in b {
        if c.is_ascii_graphic() || c == b' ' {
            s.push(char::from(c));
        } else {
            s.push_str(&format!("\\x{c:02x}"));
        }
    }
    s.push('"');
    s
}

enum IndexError {
    Io(io::Error),
    Layer(LayerError),
}

#[derive(Debug, Clone, Copy)]
enum Cap {
    Compressed,
    Unpacked,
}

struct Budget {
    compressed: u64,
    unpacked: u64,
    limits: Limits,
    hit: Option<Cap>,
}

/// The compressed stream: counted against the cap and hashed.
struct Counted<'a, R> {
    inner: R,
    hasher: Hasher,
    budget: &'a std::cell::RefCell<Budget>,
}

impl<R: Read> Read for Counted<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        let mut b = self.budget.borrow_mut();
        b.compressed += n as u64;
        if b.compressed > b.limits.compressed {
            b.hit = Some(Cap::Compressed);
            return Err(io::Error::other("compressed byte cap"));
        }
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// The digest of a layer's bytes, in the algorithm its digest names.
enum Hasher {
    Sha256(Sha256),
    Sha512(Sha512),
    None,
}

impl Hasher {
    fn for_digest(digest: &str) -> Hasher {
        match digest.split_once(':').map(|(a, _)| a) {
            Some("sha256") => Hasher::Sha256(Sha256::new()),
            Some("sha512") => Hasher::Sha512(Sha512::new()),
            _ => Hasher::None,
        }
    }

    fn update(&mut self, b: &[u8]) {
        match self {
            Hasher::Sha256(h) => h.update(b),
            Hasher::Sha512(h) => h.update(b),
            Hasher::None => {}
        }
    }

    /// `algorithm:hex`, None for an unknown algorithm.
    fn finish(self) -> Option<String> {
        match self {
            Hasher::Sha256(h) => Some(format!("sha256:{}", crate::arch::hex(&h.finalize()))),
            Hasher::Sha512(h) => Some(format!("sha512:{}", crate::arch::hex(&h.finalize()))),
            Hasher::None => None,
        }
    }
}

/// The decompressed stream: counted against the cap.
struct Unpacked<'a, R> {
    inner: R,
    budget: &'a std::cell::RefCell<Budget>,
}

impl<R: Read> Read for Unpacked<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        let mut b = self.budget.borrow_mut();
        b.unpacked += n as u64;
        if b.unpacked > b.limits.unpacked {
            b.hit = Some(Cap::Unpacked);
            return Err(io::Error::other("unpacked byte cap"));
        }
        Ok(n)
    }
}

/// A zstd stream of one or more frames (skippable frames skipped), pure Rust.
struct Zstd<R> {
    src: Peek<R>,
    dec: ruzstd::decoding::FrameDecoder,
    in_frame: bool,
}

impl<R: Read> Zstd<R> {
    fn new(src: R) -> Zstd<R> {
        Zstd {
            src: Peek {
                inner: src,
                peeked: None,
            },
            dec: ruzstd::decoding::FrameDecoder::new(),
            in_frame: false,
        }
    }
}

impl<R: Read> Read for Zstd<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        use ruzstd::decoding::{
            BlockDecodingStrategy,
            errors::{FrameDecoderError, ReadFrameHeaderError},
        };
        loop {
            if !self.in_frame {
                if self.src.at_eof()? {
                    return Ok(0);
                }
                match self.dec.reset(&mut self.src) {
                    Ok(()) => self.in_frame = true,
                    Err(FrameDecoderError::ReadFrameHeaderError(
                        ReadFrameHeaderError::SkipFrame { length, .. },
                    )) => {
                        io::copy(
                            &mut (&mut self.src).take(u64::from(length)),
                            &mut io::sink(),
                        )?;
                        continue;
                    }
                    Err(e) => return Err(io::Error::other(format!("zstd: {e}"))),
                }
            }
            if self.dec.can_collect() > 0 {
                return self.dec.read(buf);
            }
            if self.dec.is_finished() {
                self.in_frame = false;
                continue;
            }
            self.dec
                .decode_blocks(&mut self.src, BlockDecodingStrategy::UptoBlocks(1))
                .map_err(|e| io::Error::other(format!("zstd: {e}")))?;
        }
    }
}

/// A reader that can tell whether it is at its end.
struct Peek<R> {
    inner: R,
    peeked: Option<u8>,
}

impl<R: Read> Peek<R> {
    fn at_eof(&mut self) -> io::Result<bool> {
        if self.peeked.is_some() {
            return Ok(false);
        }
        let mut b = [0u8; 1];
        loop {
            match self.inner.read(&mut b) {
                Ok(0) => return Ok(true),
                Ok(_) => {
                    self.peeked = Some(b[0]);
                    return Ok(false);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }
}

impl<R: Read> Read for Peek<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        if let Some(b) = self.peeked.take() {
            buf[0] = b;
            return Ok(1);
        }
        self.inner.read(buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ancestors_and_normalisation() {
        assert_eq!(
            ancestors("/a/b/c").collect::<Vec<_>>(),
            vec!["/a/b", "/a", "/"]
        );
        assert_eq!(ancestors("/a").collect::<Vec<_>>(), vec!["/"]);
        assert_eq!(normalize_entry("./bin/sh").as_deref(), Some("/bin/sh"));
        assert_eq!(normalize_entry("usr/bin/").as_deref(), Some("/usr/bin"));
        assert_eq!(normalize_entry("../etc/passwd"), None);
        assert_eq!(normalize_display("/bin/../usr/./bin/sh"), "/usr/bin/sh");
    }

    #[test]
    fn query_from_config() {
        let q = Query::from_config(
            None,
            Some(&["sh".to_string(), "-c".to_string()]),
            Some(&["A=1".to_string(), "PATH=/x:/y".to_string()]),
            None,
        )
        .unwrap();
        assert_eq!(q.program, "sh");
        assert_eq!(q.path, vec!["/x", "/y"]);
        assert_eq!(q.workdir, "/");
        let q =
            Query::from_config(Some(&["/e".to_string()]), Some(&["a".into()]), None, None).unwrap();
        assert_eq!(q.program, "/e");
        assert_eq!(q.path.len(), 6);
        assert!(Query::from_config(Some(&[]), None, None, None).is_none());
    }

    struct Mem(Vec<Vec<u8>>, Vec<usize>);
    impl LayerSource for Mem {
        fn open(&mut self, layer: usize) -> Result<Box<dyn Read + '_>, LayerError> {
            self.1.push(layer);
            Ok(Box::new(io::Cursor::new(self.0[layer].clone())))
        }
    }

    fn tar(entries: &[(&str, tar::EntryType, &str, &[u8])]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (path, kind, link, data) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(*kind);
            h.set_mode(0o755);
            h.set_size(data.len() as u64);
            if !link.is_empty() {
                h.set_link_name(link).unwrap();
            }
            b.append_data(&mut h, path, *data).unwrap();
        }
        b.into_inner().unwrap()
    }

    fn search(layers: Vec<Vec<u8>>, program: &str) -> (Outcome, Stats, Vec<usize>) {
        let digests = layers
            .iter()
            .map(|l| crate::registry::cache::sha256_digest(l))
            .collect();
        let mut src = Mem(layers, Vec::new());
        let q = Query::from_config(Some(&[program.to_string()]), None, None, None).unwrap();
        let (r, stats) = Search::new(digests, Limits::default()).run(&q, &mut src);
        (r.unwrap(), stats, src.1)
    }

    const ELF: &[u8] = b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0";

    #[test]
    fn path_order_hardlinks_symlinks_whiteouts_and_scripts() {
        use tar::EntryType::{Link, Regular, Symlink};
        // busybox style: /bin/sh a hard link to /bin/busybox in the same layer.
        let base = tar(&[
            ("bin/busybox", Regular, "", ELF),
            ("bin/sh", Link, "bin/busybox", b""),
            ("usr/bin/env", Link, "bin/busybox", b""),
        ]);
        let (o, s, opened) = search(vec![base.clone()], "sh");
        let Outcome::Elf(f) = o else { panic!("{o:?}") };
        assert_eq!(f.path, "/bin/sh");
        assert_eq!(opened, vec![0]);
        // PATH order: /usr/local/sbin... /bin: every earlier candidate must be proven
        // absent, so the layer is read to its end and verified.
        assert_eq!(s.layers_verified, 1);
        // An absolute entrypoint stops at the file.
        let (o, s, _) = search(vec![base.clone()], "/bin/busybox");
        assert!(matches!(o, Outcome::Elf(_)));
        assert_eq!((s.layers_partial, s.layers_verified), (1, 0));
        // A symlink in the upper layer to a file in the lower one.
        let top = tar(&[("entry", Symlink, "bin/busybox", b"")]);
        let (o, _, opened) = search(vec![base.clone(), top.clone()], "/entry");
        let Outcome::Elf(f) = o else { panic!("{o:?}") };
        assert_eq!(f.path, "/bin/busybox");
        assert_eq!(f.layer, 0);
        assert_eq!(f.chain, vec!["/entry", "/bin/busybox"]);
        assert_eq!(opened, vec![1, 0]);
        // A directory symlink (merged /usr) in the lower layer.
        let merged = tar(&[
            ("bin", Symlink, "usr/bin", b""),
            ("usr/bin/app", Regular, "", ELF),
        ]);
        let (o, _, _) = search(vec![merged], "/bin/app");
        let Outcome::Elf(f) = o else { panic!("{o:?}") };
        assert_eq!(f.path, "/usr/bin/app");
        // A whiteout hides the lower layer's file.
        let wh = tar(&[("bin/.wh.busybox", Regular, "", b"")]);
        let (o, _, _) = search(vec![base.clone(), wh], "/bin/busybox");
        assert!(
            matches!(&o, Outcome::NoBinary { why, .. } if why.contains("not in the layers")),
            "{o:?}"
        );
        let opq = tar(&[("bin/.wh..wh..opq", Regular, "", b"")]);
        let (o, _, _) = search(vec![base.clone(), opq], "/bin/busybox");
        assert!(matches!(o, Outcome::NoBinary { .. }), "{o:?}");
        // A script: its interpreter is checked.
        let script = tar(&[("run.sh", Regular, "", b"#!/bin/sh\necho hi\n")]);
        let (o, _, _) = search(vec![base.clone(), script], "/run.sh");
        let Outcome::Elf(f) = o else { panic!("{o:?}") };
        assert_eq!(f.path, "/bin/sh");
        assert_eq!(f.scripts, vec!["/run.sh: #!/bin/sh"]);
        // Not an ELF.
        let text = tar(&[("app", Regular, "", b"hello")]);
        let (o, _, _) = search(vec![text], "/app");
        assert!(
            matches!(&o, Outcome::NoBinary { why, .. } if why.contains("not an ELF")),
            "{o:?}"
        );
        // A loop.
        let lp = tar(&[("a", Symlink, "b", b""), ("b", Symlink, "a", b"")]);
        let (o, _, _) = search(vec![lp], "/a");
        assert!(
            matches!(&o, Outcome::NoBinary { why, .. } if why.contains("symlinks")),
            "{o:?}"
        );
    }

    #[test]
    fn zstd_frames_and_caps() {
        use tar::EntryType::Regular;
        let layer = tar(&[("app", Regular, "", ELF)]);
        let mut z = ruzstd::encoding::compress_to_vec(
            &layer[..layer.len() / 2],
            ruzstd::encoding::CompressionLevel::Fastest,
        );
        z.extend(ruzstd::encoding::compress_to_vec(
            &layer[layer.len() / 2..],
            ruzstd::encoding::CompressionLevel::Fastest,
        ));
        let (o, _, _) = search(vec![z], "/app");
        assert!(matches!(o, Outcome::Elf(_)), "{o:?}");
        // The unpacked cap.
        let big = tar(&[
            ("big", Regular, "", &vec![0u8; 1 << 20]),
            ("app", Regular, "", ELF),
        ]);
        let gz = {
            use std::io::Write;
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            e.write_all(&big).unwrap();
            e.finish().unwrap()
        };
        let digests = vec![crate::registry::cache::sha256_digest(&gz)];
        let q = Query::from_config(Some(&["/app".to_string()]), None, None, None).unwrap();
        let limits = Limits {
            compressed: u64::MAX,
            unpacked: 512 * 1024,
        };
        let (r, _) =
            Search::new(digests.clone(), limits).run(&q, &mut Mem(vec![gz.clone()], vec![]));
        assert!(matches!(r, Err(LayerError::UnpackedCap { .. })), "{r:?}");
        let limits = Limits {
            compressed: 100,
            unpacked: u64::MAX,
        };
        let (r, _) = Search::new(digests, limits).run(&q, &mut Mem(vec![gz.clone()], vec![]));
        assert!(matches!(r, Err(LayerError::CompressedCap { .. })), "{r:?}");
        // A digest that does not match a layer read to its end.
        let q = Query::from_config(Some(&["/nothing".to_string()]), None, None, None).unwrap();
        let (r, _) = Search::new(
            vec![format!("sha256:{}", "0".repeat(64))],
            Limits::default(),
        )
        .run(&q, &mut Mem(vec![gz], vec![]));
        assert!(matches!(r, Err(LayerError::DigestMismatch { .. })), "{r:?}");
    }
}
