//! The truth check of `inspect --verify-platforms`: not only does the config agree with
//! the index, but does the program the image starts run on the platform its label
//! names? The program is found in the layers ([`super::layers`], streamed from the
//! registry and stopped as soon as it is found), only its ELF header and program
//! headers are read, and its machine, class and endianness are compared with the
//! label's rule in the architecture table (the binfmt magic the label's emulator would
//! be registered with: what the kernel itself would decide). ARM variants (v5/v6/v7)
//! and x86-64 levels cannot be told from an ELF header: only the architecture is
//! compared.
//!
//! Results are cached by the layer digests and the query (argv[0], PATH, WorkingDir),
//! so a second inspect of the image, or of another image with the same layers and
//! entrypoint, downloads nothing.

use std::io::{self, Read};

use oci_spec::image::{ImageConfiguration, ImageManifest};
use serde::{Deserialize, Serialize};

use super::{
    DOCKER_MANIFEST, MAX_ERROR_BODY_BYTES, OCI_MANIFEST, RegistryError,
    client::{Get, Reply},
    inspect::{Inspector, PlatformEntry, check_status, parse_json},
    layers::{LayerError, LayerSource, Limits, Outcome, Query, Search, Stats},
    reference::ImageRef,
};
use crate::{
    arch::{Rule, Table},
    elf::ElfInfo,
    platform::{Platform, qemu_target},
};

/// The cache directory's subdirectory for truth results.
const CACHE_KIND: &str = "truth";
/// Bumped when what is cached changes meaning.
const CACHE_VERSION: &str = "truth-v1";

/// What the program's ELF header says.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ElfSummary {
    /// e_machine as goblin names it (`X86_64`, `AARCH64`...).
    pub machine: String,
    /// `ELF64` or `ELF32`.
    pub class: String,
    /// `little` or `big`.
    pub endianness: String,
    /// No PT_INTERP.
    #[serde(rename = "static")]
    pub is_static: bool,
    /// PT_INTERP, when dynamically linked.
    pub interpreter: Option<String>,
    /// The OCI platform (`os/arch`) of the architecture-table rule whose magic the
    /// header matches; None when no rule with a platform does.
    pub platform: Option<String>,
}

/// The truth check of one platform entry. In `inspect --json` its fields sit in the
/// platform's object: `elf`, `label_matches`, and `truth` (the details).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct TruthReport {
    /// The program's ELF header, when one was found.
    pub elf: Option<ElfSummary>,
    /// Does the program run on the label's platform? None when no program was found
    /// or checked (`truth.why` says why).
    pub label_matches: Option<bool>,
    pub truth: TruthDetail,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct TruthDetail {
    /// The platform compared (`linux/arm64`) and whose word it is (`index`, or
    /// `config` for an image without an index).
    pub label: String,
    pub label_from: String,
    /// argv[0] as Entrypoint/Cmd give it.
    pub program: Option<String>,
    /// The ELF file that runs.
    pub binary: Option<String>,
    /// The way there: the path looked up (in PATH order), each symlink, the file; for
    /// a script, its interpreter's way too.
    pub resolved: Vec<String>,
    /// `#!` lines passed through.
    pub scripts: Vec<String>,
    /// Digest of the layer holding the binary.
    pub layer: Option<String>,
    /// Why there is no `label_matches`.
    pub why: Option<String>,
    /// What reading the layers cost (zero when cached).
    #[serde(flatten)]
    pub stats: Stats,
    /// From the cache, without reading a layer.
    pub cached: bool,
}

/// What is cached: the finding, before it is compared with any label.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Finding {
    binary: Option<String>,
    resolved: Vec<String>,
    scripts: Vec<String>,
    layer: Option<String>,
    elf: Option<ElfSummary>,
    /// Names of the rules whose magic the header matches.
    rules: Vec<String>,
    why: Option<String>,
}

impl TruthReport {
    fn without_program(label: &PlatformEntry, from: &str, why: String) -> TruthReport {
        TruthReport {
            elf: None,
            label_matches: None,
            truth: TruthDetail {
                label: label.platform(),
                label_from: from.to_string(),
                program: None,
                binary: None,
                resolved: Vec::new(),
                scripts: Vec::new(),
                layer: None,
                why: Some(why),
                stats: Stats::default(),
                cached: false,
            },
        }
    }

    /// One line for people: `MISMATCH: index says linux/arm64, /bin/busybox in the
    /// layers is linux/amd64 (ELF64 little-endian X86_64, static)`.
    pub fn summary(&self) -> String {
        let t = &self.truth;
        let bin = t.binary.as_deref().unwrap_or("?");
        let what = self.elf.as_ref().map(|e| {
            format!(
                "{} ({} {}-endian {}, {})",
                e.platform.as_deref().unwrap_or("no known platform"),
                e.class,
                e.endianness,
                e.machine,
                match &e.interpreter {
                    Some(i) => format!("dynamic, {i}"),
                    None => "static".into(),
                }
            )
        });
        match (self.label_matches, what) {
            (Some(true), Some(w)) => format!("ok: {bin} is {w}"),
            (Some(false), Some(w)) => format!(
                "MISMATCH: {} says {}, {bin} in the layers is {w}",
                t.label_from, t.label
            ),
            _ => format!(
                "unchecked: {}",
                t.why.as_deref().unwrap_or("no program found")
            ),
        }
    }
}

/// How many times one platform's caps all the platforms of one index may read
/// together (an index may list 1024 platforms).
pub const INDEX_CAP_FACTOR: u64 = 4;

/// The caps left for the platforms of one index as they are checked in turn.
#[derive(Debug, Clone, Copy)]
pub(super) struct IndexBudget {
    per: Limits,
    compressed: u64,
    unpacked: u64,
}

impl IndexBudget {
    pub(super) fn new() -> IndexBudget {
        IndexBudget::with(Limits::from_env())
    }

    fn with(per: Limits) -> IndexBudget {
        IndexBudget {
            per,
            compressed: per.compressed.saturating_mul(INDEX_CAP_FACTOR),
            unpacked: per.unpacked.saturating_mul(INDEX_CAP_FACTOR),
        }
    }

    /// The caps of the next platform; None when the index's are spent.
    pub(super) fn next(&self) -> Option<Limits> {
        (self.compressed > 0 && self.unpacked > 0).then(|| Limits {
            compressed: self.per.compressed.min(self.compressed),
            unpacked: self.per.unpacked.min(self.unpacked),
        })
    }

    pub(super) fn spend(&mut self, t: &TruthReport) {
        self.compressed = self
            .compressed
            .saturating_sub(t.truth.stats.compressed_bytes);
        self.unpacked = self.unpacked.saturating_sub(t.truth.stats.unpacked_bytes);
    }

    pub(super) fn spent(&self, entry: &PlatformEntry) -> TruthReport {
        TruthReport::without_program(
            entry,
            "index",
            format!(
                "not checked: the index's platforms already read {} compressed / {} unpacked bytes of layers, {INDEX_CAP_FACTOR} times one platform's caps",
                self.per.compressed.saturating_mul(INDEX_CAP_FACTOR) - self.compressed,
                self.per.unpacked.saturating_mul(INDEX_CAP_FACTOR) - self.unpacked,
            ),
        )
    }
}

/// The rule a label names (`linux/arm64/v8`, else `linux/arm64`, else `arm64`).
/// A program found another way than in registry layers (through the engine, for an
/// image only its local store has): what [`report_for`] compares with a label.
#[derive(Debug, Clone, Default)]
pub struct FoundProgram {
    /// argv[0] as Entrypoint/Cmd give it.
    pub program: Option<String>,
    /// The file that runs (after PATH and `#!` interpreters).
    pub binary: Option<String>,
    /// The paths looked up, in order.
    pub resolved: Vec<String>,
    /// `#!` lines passed through.
    pub scripts: Vec<String>,
    /// The binary's first bytes (its ELF header and program headers).
    pub head: Vec<u8>,
    /// Why no binary was found.
    pub why: Option<String>,
}

/// The truth report of `found`, compared with `label`.
pub fn report_for(label: &PlatformEntry, label_from: &str, found: FoundProgram) -> TruthReport {
    let table = Table::builtin();
    let mut t = TruthReport::without_program(label, label_from, found.why.unwrap_or_default());
    t.truth.program = found.program;
    t.truth.resolved = found.resolved;
    t.truth.scripts = found.scripts;
    if found.binary.is_none() {
        return t;
    }
    t.truth.binary = found.binary;
    match ElfInfo::from_bytes(&found.head) {
        Ok(info) => {
            let (summary, rules) = summarize(table, &info);
            t.label_matches = label_rule(table, label).map(|r| rules.contains(&r.name));
            t.truth.why = t
                .label_matches
                .is_none()
                .then(|| format!("no rule in the architecture table for {}", label.platform()));
            t.elf = Some(summary);
        }
        Err(e) => t.truth.why = Some(format!("not an ELF executable: {e}")),
    }
    t
}

fn label_rule<'t>(table: &'t Table, label: &PlatformEntry) -> Option<&'t Rule> {
    let p = Platform::from_entry(label);
    qemu_target(table, &p).or_else(|| table.lookup(&label.architecture).ok())
}

fn summarize(table: &Table, info: &ElfInfo) -> (ElfSummary, Vec<String>) {
    let matching: Vec<&Rule> = table
        .rules()
        .iter()
        .filter(|r| r.matches(&info.header))
        .collect();
    let platform = matching
        .iter()
        .find_map(|r| r.platforms.first())
        .map(|p| p.split('/').take(2).collect::<Vec<_>>().join("/"));
    (
        ElfSummary {
            machine: info.machine.clone(),
            class: format!("ELF{}", info.bits),
            endianness: if info.little_endian { "little" } else { "big" }.into(),
            is_static: info.is_static(),
            interpreter: info.interpreter.clone(),
            platform,
        },
        matching.iter().map(|r| r.name.clone()).collect(),
    )
}

/// A request from the (blocking) search for the stream of a layer.
struct Open {
    layer: usize,
    reply: std::sync::mpsc::SyncSender<Result<Chunks, LayerError>>,
}

type Chunks = tokio::sync::mpsc::Receiver<io::Result<Vec<u8>>>;

/// The search's [`LayerSource`]: asks the async side for a layer's stream.
struct Remote {
    open: tokio::sync::mpsc::Sender<Open>,
}

impl LayerSource for Remote {
    fn open(&mut self, layer: usize) -> Result<Box<dyn Read + '_>, LayerError> {
        let gone = || LayerError::Fetch(RegistryError::Client("layer fetcher stopped".into()));
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.open
            .blocking_send(Open { layer, reply: tx })
            .map_err(|_| gone())?;
        let chunks = rx.recv().map_err(|_| gone())??;
        Ok(Box::new(ChunkReader {
            rx: chunks,
            buf: Vec::new(),
            pos: 0,
        }))
    }
}

/// A blocking reader over the chunks of an HTTP body; dropping it ends the download.
struct ChunkReader {
    rx: Chunks,
    buf: Vec<u8>,
    pos: usize,
}

impl Read for ChunkReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.buf.len() {
            match self.rx.blocking_recv() {
                Some(Ok(b)) => {
                    self.buf = b;
                    self.pos = 0;
                }
                Some(Err(e)) => return Err(e),
                None => return Ok(0),
            }
        }
        let n = out.len().min(self.buf.len() - self.pos);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

impl Inspector {
    /// Every platform of image `input` with its truth check in `truth` (whether or not
    /// the inspector was made with `verify_platforms`): for `doctor IMAGE`. The label
    /// is the index's, or the config's for a single manifest.
    pub async fn truth_of(&self, input: &str) -> Result<Vec<PlatformEntry>, RegistryError> {
        let r = ImageRef::parse(input)?;
        let res = self.resolve(&r).await?;
        let from = if res.media_type == OCI_MANIFEST || res.media_type == DOCKER_MANIFEST {
            "config"
        } else {
            "index"
        };
        let mut out = Vec::with_capacity(res.platforms.len());
        let mut budget = IndexBudget::new();
        for mut e in res.platforms {
            if e.truth.is_none() {
                let t = match budget.next() {
                    Some(limits) => self.truth_with(&r, &e, from, limits).await?,
                    None => budget.spent(&e),
                };
                budget.spend(&t);
                e.truth = Some(t);
            }
            out.push(e);
        }
        Ok(out)
    }

    /// The truth check of one platform of an image (for `doctor IMAGE` and `inspect
    /// --verify-platforms`): `entry` is a platform as [`Inspector::inspect`] reports it
    /// (its `digest` names the platform's manifest, its os/architecture/variant are the
    /// label compared). Mirrors are tried first, as for inspect.
    pub async fn truth(
        &self,
        r: &ImageRef,
        entry: &PlatformEntry,
        label_from: &str,
    ) -> Result<TruthReport, RegistryError> {
        self.truth_with(r, entry, label_from, Limits::from_env())
            .await
    }

    async fn truth_with(
        &self,
        r: &ImageRef,
        entry: &PlatformEntry,
        label_from: &str,
        limits: Limits,
    ) -> Result<TruthReport, RegistryError> {
        let endpoints = self.endpoints(r);
        let mut last = None;
        for (i, (host, at)) in endpoints.iter().enumerate() {
            match self.truth_at(at, host, entry, label_from, limits).await {
                Ok(x) => return Ok(x),
                Err(e) if i + 1 < endpoints.len() => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| RegistryError::Http {
            registry: r.registry.clone(),
            why: "no endpoint".into(),
        }))
    }

    /// [`Inspector::truth`] at one endpoint. A registry failure or a layer that does
    /// not match its digest is an error; a program that cannot be found or checked
    /// (no Entrypoint, not an ELF, a cap reached) is a report with `label_matches`
    /// None and `truth.why`.
    pub(super) async fn truth_at(
        &self,
        r: &ImageRef,
        host: &str,
        entry: &PlatformEntry,
        label_from: &str,
        limits: Limits,
    ) -> Result<TruthReport, RegistryError> {
        let none = |why: String| Ok(TruthReport::without_program(entry, label_from, why));
        if entry.os != "linux" {
            return none(format!("{} is not a Linux platform", entry.platform()));
        }
        let child = ImageRef {
            tag: None,
            digest: Some(entry.digest.clone()),
            ..r.clone()
        };
        let (bytes, mt, _) = self.manifest(&child, host).await?;
        if mt != OCI_MANIFEST && mt != DOCKER_MANIFEST {
            return none(format!("{} is a {mt}, not an image manifest", entry.digest));
        }
        let m: ImageManifest = parse_json(&bytes, "image manifest")?;
        let cfg = self
            .blob(&child, host, m.config().digest().as_ref())
            .await?;
        let c: ImageConfiguration = parse_json(&cfg, "image config")?;
        let conf = c.config().as_ref();
        let q = Query::from_config(
            conf.and_then(|c| c.entrypoint().as_deref()),
            conf.and_then(|c| c.cmd().as_deref()),
            conf.and_then(|c| c.env().as_deref()),
            conf.and_then(|c| c.working_dir().as_deref()),
        );
        let Some(q) = q else {
            return none("the image config names no Entrypoint or Cmd".into());
        };
        let digests: Vec<String> = m.layers().iter().map(|l| l.digest().to_string()).collect();
        if digests.is_empty() {
            let mut t = TruthReport::without_program(entry, label_from, "no layers".into());
            t.truth.program = Some(q.program);
            return Ok(t);
        }
        let key = format!("{CACHE_VERSION}\n{}\n{}", digests.join(","), q.key());
        let cached: Option<Finding> = self
            .cache
            .as_ref()
            .and_then(|c| c.get_json(CACHE_KIND, &key));
        let (finding, stats, was_cached) = match cached {
            Some(f) => (f, Stats::default(), true),
            None => {
                let (result, stats) = self.search(&child, host, &digests, &q, limits).await?;
                let finding = match result {
                    Ok(f) => f,
                    Err(LayerError::Fetch(e)) => return Err(e),
                    Err(LayerError::DigestMismatch { digest, actual }) => {
                        return Err(RegistryError::DigestMismatch {
                            what: "layer blob",
                            digest,
                            actual,
                        });
                    }
                    Err(e) => {
                        let mut t = TruthReport::without_program(entry, label_from, e.to_string());
                        t.truth.program = Some(q.program);
                        t.truth.stats = stats;
                        return Ok(t);
                    }
                };
                if let Some(c) = &self.cache {
                    c.put_json(CACHE_KIND, &key, &finding);
                }
                (finding, stats, false)
            }
        };
        let table = Table::builtin();
        let label_matches = match (&finding.elf, label_rule(table, entry)) {
            (Some(_), Some(rule)) => Some(finding.rules.contains(&rule.name)),
            _ => None,
        };
        let why = match (&finding.elf, label_matches) {
            (_, Some(_)) => None,
            (Some(_), None) => Some(format!(
                "no rule in the architecture table for {}",
                entry.platform()
            )),
            (None, _) => finding.why.clone(),
        };
        Ok(TruthReport {
            elf: finding.elf,
            label_matches,
            truth: TruthDetail {
                label: entry.platform(),
                label_from: label_from.to_string(),
                program: Some(q.program),
                binary: finding.binary,
                resolved: finding.resolved,
                scripts: finding.scripts,
                layer: finding.layer,
                why,
                stats,
                cached: was_cached,
            },
        })
    }

    /// Run the layer search on a blocking thread, serving it the layers' streams.
    async fn search(
        &self,
        r: &ImageRef,
        host: &str,
        digests: &[String],
        q: &Query,
        limits: Limits,
    ) -> Result<(Result<Finding, LayerError>, Stats), RegistryError> {
        let (open_tx, mut open_rx) = tokio::sync::mpsc::channel::<Open>(1);
        let search = Search::new(digests.to_vec(), limits);
        let query = q.clone();
        let walker = tokio::task::spawn_blocking(move || {
            let mut src = Remote { open: open_tx };
            search.run(&query, &mut src)
        });
        while let Some(req) = open_rx.recv().await {
            match digests.get(req.layer) {
                Some(d) => self.serve_layer(r, host, d, req.reply).await,
                None => {
                    let _ = req.reply.send(Err(LayerError::Bad {
                        digest: String::new(),
                        why: format!("no layer {}", req.layer),
                    }));
                }
            }
        }
        let (result, stats) = walker
            .await
            .map_err(|e| RegistryError::Client(format!("layer search: {e}")))?;
        let table = Table::builtin();
        let finding = result.map(|o| match o {
            Outcome::Elf(f) => {
                let layer = digests.get(f.layer).cloned();
                match ElfInfo::from_bytes(&f.head) {
                    Ok(info) => {
                        let (elf, rules) = summarize(table, &info);
                        Finding {
                            binary: Some(f.path),
                            resolved: f.chain,
                            scripts: f.scripts,
                            layer,
                            elf: Some(elf),
                            rules,
                            why: None,
                        }
                    }
                    Err(why) => Finding {
                        why: Some(format!(
                            "{}: not an ELF executable archctl can read from its first {} bytes: {why}",
                            f.path,
                            f.head.len()
                        )),
                        binary: Some(f.path),
                        resolved: f.chain,
                        scripts: f.scripts,
                        layer,
                        elf: None,
                        rules: Vec::new(),
                    },
                }
            }
            Outcome::NoBinary { chain, why } => Finding {
                binary: None,
                resolved: chain,
                scripts: Vec::new(),
                layer: None,
                elf: None,
                rules: Vec::new(),
                why: Some(why),
            },
        });
        Ok((finding, stats))
    }

    /// GET a layer blob and pump its body to the search until it has read enough
    /// (drops its reader) or the body ends.
    async fn serve_layer(
        &self,
        r: &ImageRef,
        host: &str,
        digest: &str,
        reply: std::sync::mpsc::SyncSender<Result<Chunks, LayerError>>,
    ) {
        let path = format!("/v2/{}/blobs/{digest}", r.repository);
        let got = self
            .client
            .get_stream(Get {
                registry: &r.registry,
                host,
                repo: &r.repository,
                path: &path,
                accept: "*/*",
                limit: MAX_ERROR_BODY_BYTES,
                what: "layer blob",
            })
            .await;
        let mut resp = match got {
            Ok(Reply::Stream(resp)) => resp,
            Ok(Reply::Read(f)) if f.status == reqwest::StatusCode::NOT_FOUND => {
                let _ = reply.send(Err(LayerError::Fetch(RegistryError::Http {
                    registry: r.registry.clone(),
                    why: format!("layer blob {digest} not found in {}", r.repository),
                })));
                return;
            }
            Ok(Reply::Read(f)) => {
                let e = match check_status(f, r) {
                    Err(e) => e,
                    Ok(f) => RegistryError::Http {
                        registry: r.registry.clone(),
                        why: format!("layer blob {digest}: unexpected {}", f.status),
                    },
                };
                let _ = reply.send(Err(LayerError::Fetch(e)));
                return;
            }
            Err(e) => {
                let _ = reply.send(Err(LayerError::Fetch(e)));
                return;
            }
        };
        let (tx, rx) = tokio::sync::mpsc::channel(8);
        if reply.send(Ok(rx)).is_err() {
            return;
        }
        loop {
            tokio::select! {
                _ = tx.closed() => break,
                c = resp.chunk() => match c {
                    Ok(Some(b)) => {
                        if tx.send(Ok(b.to_vec())).await.is_err() {
                            break;
                        }
                    }
                    Ok(None) => break,
                    Err(e) => {
                        let _ = tx.send(Err(io::Error::other(format!("layer blob {digest}: {e}")))).await;
                        break;
                    }
                },
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(arch: &str) -> PlatformEntry {
        PlatformEntry {
            os: "linux".into(),
            architecture: arch.into(),
            variant: None,
            os_version: None,
            os_features: None,
            digest: String::new(),
            config_platform: None,
            mismatch: None,
            truth: None,
        }
    }

    #[test]
    fn an_index_shares_four_platforms_worth_of_caps() {
        let per = Limits {
            compressed: 100,
            unpacked: 1000,
        };
        let mut b = IndexBudget::with(per);
        let mut t = TruthReport::without_program(&entry("amd64"), "index", String::new());
        t.truth.stats.compressed_bytes = 100;
        t.truth.stats.unpacked_bytes = 10;
        for _ in 0..3 {
            assert_eq!(b.next(), Some(per));
            b.spend(&t);
        }
        t.truth.stats.compressed_bytes = 60;
        b.spend(&t);
        assert_eq!(
            b.next(),
            Some(Limits {
                compressed: 40,
                unpacked: 1000
            })
        );
        b.spend(&t);
        assert_eq!(b.next(), None);
        let why = b.spent(&entry("arm64")).truth.why.unwrap();
        assert!(
            why.starts_with("not checked: the index's platforms already read 400 compressed"),
            "{why}"
        );
    }

    #[test]
    fn labels_are_compared_with_their_rule() {
        let table = Table::builtin();
        for (label, rule) in [
            ("amd64", "x86_64"),
            ("arm64", "aarch64"),
            ("arm", "arm"),
            ("386", "i386"),
            ("ppc64le", "ppc64le"),
            ("s390x", "s390x"),
            ("riscv64", "riscv64"),
            ("mips64le", "mips64el"),
            ("loong64", "loongarch64"),
        ] {
            let r = label_rule(table, &entry(label)).unwrap_or_else(|| panic!("{label}"));
            assert_eq!(r.name, rule, "{label}");
        }
        for p in crate::testprog::all() {
            let info = ElfInfo::from_bytes(p.bytes).unwrap();
            let (_, rules) = summarize(table, &info);
            assert!(rules.iter().any(|r| r == p.arch), "{}: {rules:?}", p.arch);
        }
    }
}
