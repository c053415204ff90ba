//! Choosing the platform an image runs as on this host, following containerd's platform
//! matching (`containerd/platforms` v1.0, read at tag v1.0.0-rc.4, the newest tag): the
//! platforms the host runs natively, in exactly the order of containerd's `Only(host)`
//! (its `platformVector`: amd64/vN, …, amd64/v1, 386; arm64/v9.x, …, v8, arm/v8…v5;
//! arm/vN…v5), then emulated ones — those with a registered, healthy handler before
//! those whose emulator is merely installed; among emulated ones amd64 (at the levels
//! the emulator provides, highest first), then arm64, then the registry's order.
//!
//! Normalisation is containerd's `Normalize` (`normalizeOS` and `normalizeArch` of
//! `database.go`), matching is its `NewMatcher`, and ties are broken by the registry's
//! order (containerd sorts stably).

use serde::Serialize;

use crate::{arch::Table, registry::inspect::PlatformEntry};

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum PlatformError {
    #[error("invalid platform \"{0}\": write it as OS/ARCH[/VARIANT], e.g. linux/arm64")]
    Invalid(String),
    #[error("this host's architecture ({0}) has no OCI platform name archctl knows")]
    UnknownHost(String),
}

/// A platform in OCI terms, normalised as containerd does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Platform {
    pub os: String,
    pub arch: String,
    /// None for the empty variant (containerd's normalised arm64 "v8" and amd64 "v1";
    /// arm's v7 is explicit).
    pub variant: Option<String>,
    /// `os.features`, sorted and without duplicates (containerd's `Normalize`).
    pub os_features: Vec<String>,
}

/// containerd's `normalizeOS` (database.go): lower case, `macos` is `darwin`, and an
/// empty OS is the running one (always `linux` for archctl).
pub fn normalize_os(os: &str) -> String {
    if os.is_empty() {
        return "linux".into();
    }
    match os.to_ascii_lowercase().as_str() {
        "macos" => "darwin".into(),
        o => o.into(),
    }
}

/// containerd's `normalizeArch` (database.go), exactly: lower case; `i386` is `386`
/// without variant; `x86_64`/`x86-64` are `amd64`, whose `v1` is no variant; `aarch64`
/// is `arm64`, whose `8`/`v8`/`v8.0` are no variant and `9`/`9.0`/`v9.0` are `v9`;
/// `armhf` is `arm/v7`, `armel` `arm/v6`; arm's empty or `7` variant is `v7` and `5`,
/// `6`, `8` get their `v`. Nothing else changes (amd64 `2` stays `2`, `i686` stays).
pub fn normalize_arch(arch: &str, variant: &str) -> (String, String) {
    let arch = arch.to_ascii_lowercase();
    let mut variant = variant.to_ascii_lowercase();
    let arch = match arch.as_str() {
        "i386" => {
            variant.clear();
            "386".to_string()
        }
        "x86_64" | "x86-64" | "amd64" => {
            if variant == "v1" {
                variant.clear();
            }
            "amd64".to_string()
        }
        "aarch64" | "arm64" => {
            match variant.as_str() {
                "8" | "v8" | "v8.0" => variant.clear(),
                "9" | "9.0" | "v9.0" => variant = "v9".into(),
                _ => {}
            }
            "arm64".to_string()
        }
        "armhf" => {
            variant = "v7".into();
            "arm".to_string()
        }
        "armel" => {
            variant = "v6".into();
            "arm".to_string()
        }
        "arm" => {
            match variant.as_str() {
                "" | "7" => variant = "v7".into(),
                "5" | "6" | "8" => variant = format!("v{variant}"),
                _ => {}
            }
            "arm".to_string()
        }
        _ => arch,
    };
    (arch, variant)
}

/// containerd's `specifierRe` for the components of a platform.
fn valid_component(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
}

impl Platform {
    /// A platform, normalised (containerd's `Normalize`).
    pub fn new(os: &str, arch: &str, variant: Option<&str>) -> Platform {
        let (arch, variant) = normalize_arch(arch, variant.unwrap_or(""));
        Platform {
            os: normalize_os(os),
            arch,
            variant: (!variant.is_empty()).then_some(variant),
            os_features: Vec::new(),
        }
    }

    /// `os/arch[/variant]`, each component as containerd's `Parse` accepts it
    /// (`[A-Za-z0-9_.-]+`). archctl wants the OS and the architecture spelt out, so a
    /// lone `arm64` or `linux` (which containerd completes from the running host) is
    /// refused, and so are OS options (`linux(+gpu)`).
    pub fn parse(s: &str) -> Result<Platform, PlatformError> {
        let parts: Vec<&str> = s.trim().split('/').collect();
        if !parts.iter().all(|p| valid_component(p)) {
            return Err(PlatformError::Invalid(s.to_string()));
        }
        match parts.as_slice() {
            [os, arch] => Ok(Platform::new(os, arch, None)),
            [os, arch, v] => Ok(Platform::new(os, arch, Some(v))),
            _ => Err(PlatformError::Invalid(s.to_string())),
        }
    }

    pub fn from_entry(e: &PlatformEntry) -> Platform {
        let mut p = Platform::new(&e.os, &e.architecture, e.variant.as_deref());
        if let Some(f) = &e.os_features {
            p.os_features = f.clone();
            p.os_features.sort();
            p.os_features.dedup();
        }
        p
    }

    /// Docker's spelling: `linux/arm64`, `linux/arm/v7` (containerd's `Format`).
    pub fn spelling(&self) -> String {
        match &self.variant {
            Some(v) => format!("{}/{}/{v}", self.os, self.arch),
            None => format!("{}/{}", self.os, self.arch),
        }
    }

    fn variant_str(&self) -> &str {
        self.variant.as_deref().unwrap_or("")
    }

    /// The number of a `vN` variant (containerd: `strconv.Atoi(strings.TrimPrefix(v,
    /// "v"))`, so `3` counts too); amd64's empty variant is level 1.
    fn version(&self) -> Option<u32> {
        let v = self.variant_str();
        if v.is_empty() && self.arch == "amd64" {
            return Some(1);
        }
        v.strip_prefix('v').unwrap_or(v).parse().ok()
    }

    /// The x86-64 micro-architecture level an amd64 platform needs (1 for plain amd64).
    pub fn amd64_level(&self) -> Option<u32> {
        (self.arch == "amd64").then(|| self.version()).flatten()
    }

    /// containerd's `NewMatcher(self).Match(p)`: same OS, architecture and variant
    /// (both normalised), and `p`'s os.features a subset of this platform's. (OS
    /// versions only count for Windows, which archctl never runs.)
    pub fn matches(&self, p: &Platform) -> bool {
        self.os == p.os
            && self.arch == p.arch
            && self.variant == p.variant
            && p.os_features.iter().all(|f| self.os_features.contains(f))
    }
}

/// containerd's `arm64variantToVersion` (compare.go): the major versions an arm64
/// variant covers and, per major, the highest minor. v9.x also covers v8.(x+5), capped
/// at v8.9.
fn arm64_versions(variant: &str) -> Option<&'static [(u32, u32)]> {
    Some(match variant {
        "v8" | "v8.0" => &[(8, 0)],
        "v8.1" => &[(8, 1)],
        "v8.2" => &[(8, 2)],
        "v8.3" => &[(8, 3)],
        "v8.4" => &[(8, 4)],
        "v8.5" => &[(8, 5)],
        "v8.6" => &[(8, 6)],
        "v8.7" => &[(8, 7)],
        "v8.8" => &[(8, 8)],
        "v8.9" => &[(8, 9)],
        "v9" | "v9.0" => &[(9, 0), (8, 5)],
        "v9.1" => &[(9, 1), (8, 6)],
        "v9.2" => &[(9, 2), (8, 7)],
        "v9.3" => &[(9, 3), (8, 8)],
        "v9.4" => &[(9, 4), (8, 9)],
        "v9.5" => &[(9, 5), (8, 9)],
        "v9.6" => &[(9, 6), (8, 9)],
        "v9.7" => &[(9, 7), (8, 9)],
        _ => return None,
    })
}

/// containerd's `strconv.Atoi(strings.TrimPrefix(variant, "v"))`, for the versions a
/// vector counts down from. The one deviation: above 255 (containerd would list every
/// level down to 1 — billions for `amd64/v9999999999`) the variant counts as no number.
fn vector_version(v: &str) -> Option<i64> {
    v.strip_prefix('v')
        .unwrap_or(v)
        .parse::<i64>()
        .ok()
        .filter(|n| *n <= 255)
}

/// containerd's `platformVector` (compare.go), exactly: what `Only(p)` matches, best
/// first. amd64/vN: itself, amd64/v(N-1) … v1, then 386. arm/vN: itself, then down
/// to v5 (the floor: arm/v5 and older match only themselves). arm64/vX: the arm64
/// variants `arm64_versions` lists, newest first (v8 last), then arm/v8 … v5 — and
/// nothing at all for a variant containerd does not know (e.g. arm64/v10). Anything
/// else: itself. The elements are normalised (what `NewMatcher` compares).
pub fn platform_vector(p: &Platform) -> Vec<Platform> {
    let same = |arch: &str, variant: &str| {
        let mut q = Platform::new(&p.os, arch, Some(variant));
        q.os_features = p.os_features.clone();
        q
    };
    let mut vector = vec![p.clone()];
    match p.arch.as_str() {
        "amd64" => {
            let v = p.variant_str();
            if let Some(n) = vector_version(v)
                && n > 1
            {
                vector.extend((1..n).rev().map(|k| same("amd64", &format!("v{k}"))));
            }
            vector.push(same("386", ""));
        }
        "arm" => {
            let v = p.variant_str();
            if let Some(n) = vector_version(v)
                && n > 5
            {
                vector.extend((5..n).rev().map(|k| same("arm", &format!("v{k}"))));
            }
        }
        "arm64" => {
            let variant = match p.variant_str() {
                "" => "v8",
                v => v,
            };
            vector.clear();
            let Some(versions) = arm64_versions(variant) else {
                return vector;
            };
            for &(major, top) in versions {
                for minor in (0..=top).rev() {
                    let v = if minor == 0 {
                        format!("v{major}")
                    } else {
                        format!("v{major}.{minor}")
                    };
                    vector.push(same("arm64", &v));
                }
            }
            // Every arm64/v8.x and v9.x runs arm/v8 (32-bit) and below.
            vector.extend(platform_vector(&same("arm", "v8")));
        }
        _ => {}
    }
    vector
}

/// containerd's `orderedPlatformComparer`, as built by `Only` and `OnlyStrict`: a
/// platform matches when one of the list matches it, and ranks by the first that does.
#[derive(Debug, Clone)]
pub struct Ordered {
    matchers: Vec<Platform>,
}

impl Ordered {
    /// containerd's `Only(p)`: `p` and every platform it runs, best first.
    pub fn only(p: &Platform) -> Ordered {
        Ordered {
            matchers: platform_vector(p),
        }
    }

    /// containerd's `OnlyStrict(p)`: `p` alone (in any spelling that normalises to it).
    pub fn only_strict(p: &Platform) -> Ordered {
        Ordered {
            matchers: vec![p.clone()],
        }
    }

    pub fn platforms(&self) -> &[Platform] {
        &self.matchers
    }

    /// The index of the first matcher that matches `p`: lower is better.
    pub fn rank(&self, p: &Platform) -> Option<usize> {
        self.matchers.iter().position(|m| m.matches(p))
    }

    pub fn matches(&self, p: &Platform) -> bool {
        self.rank(p).is_some()
    }

    /// containerd's `Less`: the earlier matcher wins; under the same matcher, more
    /// os.features win; a platform that matches nothing is compared again without its
    /// os.features (so it still sorts among its peers, after every match).
    pub fn less(&self, a: &Platform, b: &Platform) -> bool {
        for m in &self.matchers {
            let (am, bm) = (m.matches(a), m.matches(b));
            if am && !bm {
                return true;
            }
            if am || bm {
                return am && bm && a.os_features.len() > b.os_features.len();
            }
        }
        if !a.os_features.is_empty() || !b.os_features.is_empty() {
            let strip = |p: &Platform| Platform {
                os_features: Vec::new(),
                ..p.clone()
            };
            return self.less(&strip(a), &strip(b));
        }
        false
    }
}

/// The host as containerd sees it, plus whether an arm64 CPU runs 32-bit arm.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPlatform {
    /// With its variant: the x86-64 level (CPUID) or the ARM variant (/proc/cpuinfo).
    pub platform: Platform,
    /// arm64 only: the CPU has AArch32 (not Apple Silicon, not many server cores).
    pub aarch32: bool,
}

impl HostPlatform {
    /// A given platform, with containerd's assumption that arm64 runs 32-bit arm unless
    /// `no_aarch32`.
    pub fn given(s: &str, no_aarch32: bool) -> Result<HostPlatform, PlatformError> {
        let platform = Platform::parse(s)?;
        Ok(HostPlatform {
            aarch32: platform.arch == "arm64" && !no_aarch32,
            platform,
        })
    }

    /// The real host: its architecture, its variant ([`crate::cpu::host_variant`]: the
    /// x86-64 level from CPUID, the ARM variant from /proc/cpuinfo), and AArch32 as
    /// established by executing a 32-bit arm program (the native set).
    pub fn detect(
        table: &Table,
        host_arch: Option<&str>,
        native: &[String],
    ) -> Result<HostPlatform, PlatformError> {
        let name = host_arch.unwrap_or("unknown");
        let rule = table
            .get(name)
            .ok_or_else(|| PlatformError::UnknownHost(name.to_string()))?;
        let spelling = rule
            .platforms
            .first()
            .ok_or_else(|| PlatformError::UnknownHost(name.to_string()))?;
        let base = Platform::parse(spelling)?;
        let platform = match crate::cpu::host_variant(&base.arch) {
            Some(v) => Platform::new(&base.os, &base.arch, Some(&v)),
            None => base,
        };
        Ok(HostPlatform {
            aarch32: platform.arch == "arm64" && native.iter().any(|a| a == "arm"),
            platform,
        })
    }

    /// containerd's `Only(host)`, less 32-bit arm on an arm64 CPU without AArch32.
    pub fn only(&self) -> Ordered {
        let mut o = Ordered::only(&self.platform);
        if self.platform.arch == "arm64" && !self.aarch32 {
            o.matchers.retain(|m| m.arch != "arm");
        }
        o
    }

    /// How natively this host runs `p`: Ok(index in `Only(host)`; 0 is an exact
    /// match, lower is better), or why not.
    pub fn native_rank(&self, p: &Platform) -> Result<usize, String> {
        let h = &self.platform;
        if p.os != h.os {
            return Err(format!("{} is not {}", p.os, h.os));
        }
        if let Some(i) = self.only().rank(p) {
            return Ok(i);
        }
        if !p.os_features.is_empty() {
            return Err(format!(
                "it needs os.features {} (containerd matches only features the host platform lists; {} lists none)",
                p.os_features.join(", "),
                h.spelling()
            ));
        }
        if h.arch == "arm64" && p.arch == "arm" && !self.aarch32 && Ordered::only(h).matches(p) {
            return Err(
                "this arm64 CPU cannot run 32-bit arm (no AArch32, e.g. Apple Silicon)".into(),
            );
        }
        if let (Some(have), Some(want)) = (h.amd64_level(), p.amd64_level()) {
            return Err(format!(
                "{} provides x86-64-v{have}; {} needs x86-64-v{want}",
                h.spelling(),
                p.spelling()
            ));
        }
        let runs: Vec<String> = self
            .only()
            .platforms()
            .iter()
            .map(|m| m.spelling())
            .collect();
        if runs.is_empty() {
            return Err(format!(
                "containerd knows no {} variant {} and matches nothing for {}",
                h.arch,
                h.variant_str(),
                h.spelling()
            ));
        }
        Err(format!(
            "{} runs only {} (containerd's Only)",
            h.spelling(),
            runs.join(", ")
        ))
    }
}

/// What an x86-64 emulator provides, found by running the probe under it
/// ([`crate::cpu::probe_x86_64_level`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmulatedCpu {
    /// The emulator file (the registered handler's interpreter, or the installed one).
    pub emulator: String,
    /// Its x86-64 level 1..=4, or why it could not be told.
    pub level: Result<u32, String>,
}

/// What the host can emulate.
#[derive(Debug, Clone, Default)]
pub struct Emulation {
    /// QEMU targets with an enabled, healthy binfmt_misc handler.
    pub registered: Vec<String>,
    /// QEMU targets whose emulator is installed (would be enabled on demand).
    pub installed: Vec<String>,
    /// `--no-emulation`.
    pub refused: bool,
    /// The file that would run x86_64 programs: the registered handler's interpreter,
    /// else the installed emulator.
    pub x86_64_emulator: Option<String>,
    /// The registered x86_64 handler, when its interpreter is not visible here (an F
    /// entry registered from a container): the probe then runs through it.
    pub x86_64_handler: Option<String>,
    /// The x86-64 level emulated amd64 gets (from that file, [`Emulation::probe_x86_64`]);
    /// None when not probed, which counts as x86-64-v1.
    pub x86_64: Option<EmulatedCpu>,
}

impl Emulation {
    /// Find out which x86-64 level the x86_64 emulator provides (by running the probe
    /// under it; remembered per emulator file, see [`crate::cpu::x86_64_level`]).
    pub fn probe_x86_64(&mut self) {
        let Some(path) = &self.x86_64_emulator else {
            return;
        };
        let level = match &self.x86_64_handler {
            Some(h) => crate::cpu::probe_x86_64_level_through_binfmt(h),
            None => crate::cpu::x86_64_level(std::path::Path::new(path)),
        };
        self.x86_64 = Some(EmulatedCpu {
            emulator: path.clone(),
            level: level.map_err(|e| e.to_string()),
        });
    }
}

/// How a platform runs here (the same notion as a test program's).
pub use crate::verify::Mode;

/// One offered platform and what archctl thinks of it. Part of the JSON contract.
#[derive(Debug, Clone, Serialize)]
pub struct Candidate {
    pub platform: String,
    pub mode: Option<Mode>,
    pub usable: bool,
    pub reason: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub emulator: Option<String>,
    pub digest: String,
    /// (tier, preference, index in the Only vector, registry order): lowest wins.
    #[serde(skip)]
    rank: (usize, usize, usize, usize),
    /// Rejected only because the emulator's x86-64 level is too low.
    #[serde(skip)]
    level_limited: bool,
}

/// The decision.
#[derive(Debug, Clone, Serialize)]
pub struct Choice {
    pub reference: String,
    /// Docker's spelling, or null when nothing is usable.
    pub platform: Option<String>,
    pub mode: Option<Mode>,
    /// QEMU target needed (emulated only).
    pub emulator: Option<String>,
    pub digest: Option<String>,
    pub candidates: Vec<Candidate>,
    /// Set when nothing is usable: what the image offers and what would make it run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The QEMU target that runs an OCI platform, if any.
pub fn qemu_target<'t>(table: &'t Table, p: &Platform) -> Option<&'t crate::arch::Rule> {
    table
        .lookup(&p.spelling())
        .or_else(|_| table.lookup(&format!("{}/{}", p.os, p.arch)))
        .ok()
}

/// Rank every offered platform and choose.
pub fn choose(
    table: &Table,
    reference: &str,
    host: &HostPlatform,
    offered: &[PlatformEntry],
    emu: &Emulation,
) -> Choice {
    let mut candidates: Vec<Candidate> = offered
        .iter()
        .enumerate()
        .map(|(order, e)| candidate(table, host, e, order, emu))
        .collect();
    // min_by_key keeps the first of equals: ties go to the registry's order.
    let best = candidates
        .iter()
        .enumerate()
        .filter(|(_, c)| c.usable)
        .min_by_key(|(_, c)| c.rank)
        .map(|(i, _)| i);
    if let Some(i) = best {
        candidates[i].reason = format!("chosen: {}", candidates[i].reason);
    }
    let chosen = best.map(|i| candidates[i].clone());
    let error = chosen.is_none().then(|| no_usable(host, &candidates, emu));
    Choice {
        reference: reference.to_string(),
        platform: chosen.as_ref().map(|c| c.platform.clone()),
        mode: chosen.as_ref().and_then(|c| c.mode),
        emulator: chosen.as_ref().and_then(|c| c.emulator.clone()),
        digest: chosen.as_ref().map(|c| c.digest.clone()),
        candidates,
        error,
    }
}

/// The file name of an emulator path, for messages (`qemu-x86_64-static`).
fn file_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

fn candidate(
    table: &Table,
    host: &HostPlatform,
    e: &PlatformEntry,
    order: usize,
    emu: &Emulation,
) -> Candidate {
    let p = Platform::from_entry(e);
    let mut c = Candidate {
        platform: p.spelling(),
        mode: None,
        usable: false,
        reason: String::new(),
        emulator: None,
        digest: e.digest.clone(),
        rank: (usize::MAX, 0, 0, order),
        level_limited: false,
    };
    if p.os != "linux" {
        c.reason = format!("{} images do not run on Linux", p.os);
        return c;
    }
    match host.native_rank(&p) {
        Ok(r) => {
            c.mode = Some(Mode::Native);
            c.usable = true;
            c.rank = (0, r, 0, order);
            c.reason = if r == 0 {
                "native".into()
            } else {
                format!("native: {} runs {}", host.platform.spelling(), p.spelling())
            };
            return c;
        }
        Err(why) => c.reason = why,
    }
    let Some(rule) = qemu_target(table, &p) else {
        c.reason = format!("{}; no QEMU target runs {}", c.reason, p.spelling());
        return c;
    };
    if qemu_target(table, &host.platform).is_some_and(|h| h.name == rule.name) {
        // A handler for the host's own architecture would catch its own emulator.
        c.reason = format!(
            "{}; the host's own architecture is never emulated",
            c.reason
        );
        return c;
    }
    if !p.os_features.is_empty() {
        // What `docker run --platform` (containerd's Only) would match: no features.
        c.reason = format!(
            "it needs os.features {}, which no platform archctl passes to the engine has",
            p.os_features.join(", ")
        );
        return c;
    }
    c.mode = Some(Mode::Emulated);
    c.emulator = Some(rule.name.clone());
    let preference = match p.arch.as_str() {
        "amd64" => 0,
        "arm64" => 1,
        _ => 2,
    };
    let (tier, how) = if emu.refused {
        c.reason = "emulation refused (--no-emulation)".into();
        return c;
    } else if emu.registered.contains(&rule.name) {
        (
            1,
            format!("emulated: handler qemu-{} registered", rule.name),
        )
    } else if emu.installed.contains(&rule.name) {
        (
            2,
            format!(
                "emulated: emulator for {} installed (registered on demand)",
                rule.name
            ),
        )
    } else {
        c.reason = format!(
            "needs emulation, but no emulator for {} is installed",
            rule.name
        );
        return c;
    };
    let mut within = 0;
    if p.arch == "amd64" {
        // Emulated amd64 runs what containerd's Only(linux/amd64/vN) matches, N the
        // level the emulator provides.
        let (level, provides) = match &emu.x86_64 {
            Some(EmulatedCpu {
                emulator,
                level: Ok(n),
            }) => (*n, format!("{} provides x86-64-v{n}", file_name(emulator))),
            Some(EmulatedCpu {
                emulator,
                level: Err(why),
            }) => (
                1,
                format!("cannot tell which x86-64 level {emulator} provides ({why}), so x86-64-v1"),
            ),
            None => (
                1,
                "the emulator's x86-64 level was not probed, so x86-64-v1".into(),
            ),
        };
        let cpu = Platform::new("linux", "amd64", Some(&format!("v{level}")));
        match Ordered::only(&cpu).rank(&p) {
            Some(i) => within = i,
            None => {
                c.mode = None;
                c.emulator = None;
                c.level_limited = true;
                c.reason = match p.amd64_level() {
                    Some(want) => format!(
                        "emulated: {provides}; {} needs x86-64-v{want}",
                        p.spelling()
                    ),
                    None => format!(
                        "emulated: {provides}, which runs only what linux/amd64/v{level} runs"
                    ),
                };
                return c;
            }
        }
        c.reason = format!("{how}; {provides}");
    } else {
        c.reason = how;
    }
    c.usable = true;
    c.rank = (tier, preference, within, order);
    c
}

fn no_usable(host: &HostPlatform, cands: &[Candidate], emu: &Emulation) -> String {
    if cands.is_empty() {
        return "the image offers no platforms".into();
    }
    let offered: Vec<&str> = cands.iter().map(|c| c.platform.as_str()).collect();
    let fixes: Vec<String> = cands
        .iter()
        .filter_map(|c| c.emulator.as_ref())
        .map(|e| format!("archctl enable {e}"))
        .collect();
    let mut msg = format!(
        "no platform of this image runs on {}: it offers {}",
        host.platform.spelling(),
        offered.join(", ")
    );
    if emu.refused && !fixes.is_empty() {
        msg.push_str("; drop --no-emulation to run it emulated");
    } else if let Some(f) = fixes.first() {
        msg.push_str(&format!(
            "; install qemu-user-static (apt-get install qemu-user-static) and run `{f}`"
        ));
    } else if let Some(c) = cands.iter().find(|c| c.level_limited) {
        let reason = c.reason.trim_start_matches("emulated: ");
        msg.push_str(&format!(
            "; {reason} (a newer emulator may provide a higher level)"
        ));
    }
    msg
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(p: &str, digest: &str) -> PlatformEntry {
        let parts: Vec<&str> = p.split('/').collect();
        PlatformEntry {
            os: parts[0].into(),
            architecture: parts[1].into(),
            variant: parts.get(2).map(|v| v.to_string()),
            os_version: None,
            os_features: None,
            digest: digest.into(),
            config_platform: None,
            mismatch: None,
            truth: None,
        }
    }

    fn pick(host: &str, no_aarch32: bool, offered: &[&str], emu: &Emulation) -> Choice {
        let h = HostPlatform::given(host, no_aarch32).unwrap();
        let entries: Vec<PlatformEntry> = offered
            .iter()
            .enumerate()
            .map(|(i, p)| entry(p, &format!("sha256:{i}")))
            .collect();
        choose(Table::builtin(), "img", &h, &entries, emu)
    }

    fn all_installed() -> Emulation {
        Emulation {
            registered: vec![],
            installed: Table::builtin()
                .rules()
                .iter()
                .map(|r| r.name.clone())
                .collect(),
            refused: false,
            x86_64_emulator: None,
            x86_64_handler: None,
            x86_64: None,
        }
    }

    #[test]
    fn normalisation_follows_containerd() {
        assert_eq!(
            Platform::parse("linux/arm64/v8").unwrap(),
            Platform::parse("linux/arm64").unwrap()
        );
        assert_eq!(
            Platform::parse("linux/aarch64").unwrap().spelling(),
            "linux/arm64"
        );
        assert_eq!(
            Platform::parse("linux/x86_64").unwrap().spelling(),
            "linux/amd64"
        );
        assert_eq!(
            Platform::parse("linux/arm").unwrap().spelling(),
            "linux/arm/v7"
        );
        assert_eq!(
            Platform::parse("linux/armhf").unwrap().spelling(),
            "linux/arm/v7"
        );
        assert_eq!(
            Platform::parse("linux/arm/7").unwrap().spelling(),
            "linux/arm/v7"
        );
        assert_eq!(
            Platform::parse("Linux/AMD64/v1").unwrap().spelling(),
            "linux/amd64"
        );
        assert!(Platform::parse("arm64").is_err());
        assert!(Platform::parse("linux//v7").is_err());
    }

    #[test]
    fn exact_native_match_wins() {
        let e = all_installed();
        let c = pick(
            "linux/arm64",
            false,
            &["linux/amd64", "linux/arm64/v8", "linux/arm/v7"],
            &e,
        );
        assert_eq!(c.platform.as_deref(), Some("linux/arm64"));
        assert_eq!(c.mode, Some(Mode::Native));
        assert_eq!(c.emulator, None);
        assert_eq!(c.digest.as_deref(), Some("sha256:1"));
        let c = pick("linux/amd64", false, &["linux/arm64", "linux/amd64"], &e);
        assert_eq!(c.platform.as_deref(), Some("linux/amd64"));
    }

    #[test]
    fn natively_compatible_before_emulation() {
        let e = all_installed();
        // amd64 runs 386.
        let c = pick("linux/amd64", false, &["linux/arm64", "linux/386"], &e);
        assert_eq!(c.platform.as_deref(), Some("linux/386"));
        assert_eq!(c.mode, Some(Mode::Native));
        // arm64 with AArch32: arm v8, v7, v6 in that order.
        let c = pick(
            "linux/arm64",
            false,
            &["linux/arm/v6", "linux/arm/v7", "linux/amd64"],
            &e,
        );
        assert_eq!(c.platform.as_deref(), Some("linux/arm/v7"));
        assert_eq!(c.mode, Some(Mode::Native));
        let c = pick("linux/arm64", false, &["linux/arm/v6", "linux/arm/v8"], &e);
        assert_eq!(c.platform.as_deref(), Some("linux/arm/v8"));
    }

    #[test]
    fn arm_v6_only_image_with_and_without_aarch32() {
        let e = all_installed();
        let c = pick("linux/arm64", false, &["linux/arm/v6"], &e);
        assert_eq!(
            (c.platform.as_deref(), c.mode),
            (Some("linux/arm/v6"), Some(Mode::Native))
        );
        // Apple Silicon: no AArch32, so arm/v6 needs qemu-arm.
        let c = pick("linux/arm64", true, &["linux/arm/v6"], &e);
        assert_eq!(
            (c.platform.as_deref(), c.mode),
            (Some("linux/arm/v6"), Some(Mode::Emulated))
        );
        assert_eq!(c.emulator.as_deref(), Some("arm"));
        assert!(
            c.candidates[0].reason.contains("installed"),
            "{:?}",
            c.candidates
        );
    }

    #[test]
    fn emulated_preference_registered_then_amd64_then_arm64_then_order() {
        let mut e = Emulation {
            registered: vec!["s390x".into()],
            installed: vec![
                "x86_64".into(),
                "aarch64".into(),
                "ppc64le".into(),
                "s390x".into(),
            ],
            refused: false,
            x86_64_emulator: None,
            x86_64_handler: None,
            x86_64: None,
        };
        let offered = ["linux/ppc64le", "linux/arm64", "linux/s390x", "linux/amd64"];
        // A registered handler beats installed emulators.
        let c = pick("linux/riscv64", false, &offered, &e);
        assert_eq!(c.platform.as_deref(), Some("linux/s390x"));
        // Among equals: amd64, then arm64, then registry order.
        e.registered.clear();
        let c = pick("linux/riscv64", false, &offered, &e);
        assert_eq!(c.platform.as_deref(), Some("linux/amd64"));
        assert_eq!(c.emulator.as_deref(), Some("x86_64"));
        let c = pick("linux/riscv64", false, &offered[..3], &e);
        assert_eq!(c.platform.as_deref(), Some("linux/arm64"));
        let c = pick(
            "linux/riscv64",
            false,
            &["linux/s390x", "linux/ppc64le"],
            &e,
        );
        assert_eq!(c.platform.as_deref(), Some("linux/s390x"));
    }

    #[test]
    fn no_emulation_and_nothing_usable() {
        let mut e = all_installed();
        e.refused = true;
        let c = pick("linux/amd64", false, &["linux/arm64"], &e);
        assert_eq!(c.platform, None);
        let err = c.error.unwrap();
        assert!(
            err.contains("offers linux/arm64") && err.contains("--no-emulation"),
            "{err}"
        );
        let none = Emulation::default();
        let c = pick("linux/amd64", false, &["linux/s390x"], &none);
        let err = c.error.unwrap();
        assert!(err.contains("archctl enable s390x"), "{err}");
    }

    #[test]
    fn windows_and_unknown_entries_are_ignored() {
        let e = all_installed();
        let c = pick(
            "linux/amd64",
            false,
            &["windows/amd64", "unknown/unknown", "linux/arm64"],
            &e,
        );
        assert_eq!(c.platform.as_deref(), Some("linux/arm64"));
        assert!(!c.candidates[0].usable && !c.candidates[1].usable);
        assert!(
            c.candidates[0].reason.contains("windows"),
            "{:?}",
            c.candidates[0]
        );
    }

    #[test]
    fn arm_hosts_run_older_arm_only() {
        let e = Emulation::default();
        let c = pick("linux/arm/v7", false, &["linux/arm/v8", "linux/arm/v6"], &e);
        assert_eq!(c.platform.as_deref(), Some("linux/arm/v6"));
        assert!(
            c.candidates[0]
                .reason
                .contains("linux/arm/v7 runs only linux/arm/v7, linux/arm/v6, linux/arm/v5"),
            "{:?}",
            c.candidates[0]
        );
    }

    // ---- containerd/platforms' own tables (v1.0.0-rc.4) ----

    fn p(s: &str) -> Platform {
        Platform::parse(s).unwrap()
    }

    /// compare_test.go TestOnly: every `true` platform matches `Only(platform)`, no
    /// `false` one does (the Linux cases; archctl never runs Windows images).
    #[test]
    fn only_matches_containerds_table() {
        let cases: &[(&str, &[&str], &[&str])] = &[
            (
                "linux/amd64",
                &["linux/amd64", "linux/386"],
                &[
                    "linux/amd64/v2",
                    "linux/arm/v7",
                    "linux/arm64",
                    "windows/amd64",
                    "windows/arm",
                ],
            ),
            (
                "linux/amd64/v2",
                &[
                    "linux/amd64",
                    "linux/amd64/v1",
                    "linux/amd64/v2",
                    "linux/386",
                ],
                &[
                    "linux/amd64/v3",
                    "linux/amd64/v4",
                    "linux/arm/v7",
                    "linux/arm64",
                    "windows/amd64",
                    "windows/arm",
                ],
            ),
            (
                "linux/386",
                &["linux/386"],
                &[
                    "linux/amd64",
                    "linux/arm/v7",
                    "linux/arm64",
                    "windows/amd64",
                    "windows/arm",
                ],
            ),
            (
                "linux/arm/v8",
                &[
                    "linux/arm",
                    "linux/arm/v5",
                    "linux/arm/v6",
                    "linux/arm/v7",
                    "linux/arm/v8",
                ],
                &[
                    "linux/amd64",
                    "linux/arm/v4",
                    "linux/arm64",
                    "windows/amd64",
                    "windows/arm",
                ],
            ),
            (
                "linux/arm/v7",
                &["linux/arm", "linux/arm/v5", "linux/arm/v6", "linux/arm/v7"],
                &[
                    "linux/amd64",
                    "linux/arm/v4",
                    "linux/arm/v8",
                    "linux/arm64",
                    "windows/amd64",
                    "windows/arm",
                ],
            ),
            (
                "linux/arm/v6",
                &["linux/arm/v5", "linux/arm/v6"],
                &[
                    "linux/amd64",
                    "linux/arm",
                    "linux/arm/v4",
                    "linux/arm/v7",
                    "linux/arm/v8",
                    "linux/arm64",
                    "windows/amd64",
                    "windows/arm",
                ],
            ),
            (
                "linux/arm/v5",
                &["linux/arm/v5"],
                &[
                    "linux/amd64",
                    "linux/arm",
                    "linux/arm/v4",
                    "linux/arm/v6",
                    "linux/arm/v7",
                    "linux/arm/v8",
                    "linux/arm64",
                    "windows/amd64",
                    "windows/arm",
                ],
            ),
            (
                "linux/arm/v4",
                &["linux/arm/v4"],
                &[
                    "linux/amd64",
                    "linux/arm",
                    "linux/arm/v5",
                    "linux/arm/v6",
                    "linux/arm/v7",
                    "linux/arm/v8",
                    "linux/arm64",
                    "windows/amd64",
                    "windows/arm",
                ],
            ),
            (
                "linux/arm64/v9.6",
                &[
                    "linux/arm",
                    "linux/arm/v5",
                    "linux/arm/v6",
                    "linux/arm/v7",
                    "linux/arm/v8",
                    "linux/arm64",
                    "linux/arm64/v8",
                    "linux/arm64/v8.1",
                    "linux/arm64/v8.2",
                    "linux/arm64/v8.3",
                    "linux/arm64/v8.4",
                    "linux/arm64/v8.5",
                    "linux/arm64/v8.6",
                    "linux/arm64/v8.7",
                    "linux/arm64/v8.8",
                    "linux/arm64/v8.9",
                    "linux/arm64/v9",
                    "linux/arm64/v9.0",
                    "linux/arm64/v9.1",
                    "linux/arm64/v9.2",
                    "linux/arm64/v9.3",
                    "linux/arm64/v9.4",
                    "linux/arm64/v9.5",
                    "linux/arm64/v9.6",
                ],
                &[
                    "linux/amd64",
                    "linux/arm/v4",
                    "windows/amd64",
                    "windows/arm",
                    "linux/arm64/v8.10",
                ],
            ),
            (
                "linux/arm64/v9",
                &[
                    "linux/arm",
                    "linux/arm/v5",
                    "linux/arm/v6",
                    "linux/arm/v7",
                    "linux/arm/v8",
                    "linux/arm64",
                    "linux/arm64/v8",
                    "linux/arm64/v8.1",
                    "linux/arm64/v8.2",
                    "linux/arm64/v8.3",
                    "linux/arm64/v8.4",
                    "linux/arm64/v8.5",
                    "linux/arm64/v9",
                    "linux/arm64/v9.0",
                ],
                &[
                    "linux/amd64",
                    "linux/arm/v4",
                    "windows/amd64",
                    "windows/arm",
                    "linux/arm64/v8.6",
                ],
            ),
            (
                "linux/arm64/v8.1",
                &[
                    "linux/arm",
                    "linux/arm/v5",
                    "linux/arm/v6",
                    "linux/arm/v7",
                    "linux/arm/v8",
                    "linux/arm64",
                    "linux/arm64/v8",
                    "linux/arm64/v8.1",
                ],
                &[
                    "linux/amd64",
                    "linux/arm/v4",
                    "linux/arm/v9",
                    "linux/arm64/v9",
                    "windows/amd64",
                    "windows/arm",
                ],
            ),
            (
                "linux/arm64",
                &[
                    "linux/arm",
                    "linux/arm/v5",
                    "linux/arm/v6",
                    "linux/arm/v7",
                    "linux/arm/v8",
                    "linux/arm64",
                    "linux/arm64/v8",
                ],
                &[
                    "linux/amd64",
                    "linux/arm/v4",
                    "linux/arm/v9",
                    "linux/arm64/v9",
                    "windows/amd64",
                    "windows/arm",
                ],
            ),
        ];
        for (host, yes, no) in cases {
            let m = Ordered::only(&p(host));
            for q in *yes {
                assert!(m.matches(&p(q)), "Only({host}) must match {q}");
            }
            for q in *no {
                assert!(!m.matches(&p(q)), "Only({host}) must not match {q}");
            }
        }
    }

    /// compare_test.go TestOnlyStrict (Linux cases).
    #[test]
    fn only_strict_matches_containerds_table() {
        let cases: &[(&str, &[&str], &[&str])] = &[
            (
                "linux/amd64",
                &["linux/amd64"],
                &[
                    "linux/386",
                    "linux/arm/v7",
                    "linux/arm64",
                    "windows/amd64",
                    "windows/arm",
                ],
            ),
            (
                "linux/386",
                &["linux/386"],
                &[
                    "linux/amd64",
                    "linux/arm/v7",
                    "linux/arm64",
                    "windows/amd64",
                    "windows/arm",
                ],
            ),
            (
                "linux/arm/v8",
                &["linux/arm/v8"],
                &[
                    "linux/arm",
                    "linux/arm/v5",
                    "linux/arm/v6",
                    "linux/arm/v7",
                    "linux/amd64",
                    "linux/arm/v4",
                    "linux/arm64",
                    "windows/amd64",
                    "windows/arm",
                ],
            ),
            (
                "linux/arm/v7",
                &["linux/arm", "linux/arm/v7"],
                &[
                    "linux/arm/v5",
                    "linux/arm/v6",
                    "linux/amd64",
                    "linux/arm/v4",
                    "linux/arm/v8",
                    "linux/arm64",
                    "windows/amd64",
                    "windows/arm",
                ],
            ),
            (
                "linux/arm/v6",
                &["linux/arm/v6"],
                &[
                    "linux/arm/v5",
                    "linux/amd64",
                    "linux/arm",
                    "linux/arm/v4",
                    "linux/arm/v7",
                    "linux/arm/v8",
                    "linux/arm64",
                    "windows/amd64",
                    "windows/arm",
                ],
            ),
            (
                "linux/arm/v5",
                &["linux/arm/v5"],
                &[
                    "linux/amd64",
                    "linux/arm",
                    "linux/arm/v4",
                    "linux/arm/v6",
                    "linux/arm/v7",
                    "linux/arm/v8",
                    "linux/arm64",
                    "windows/amd64",
                    "windows/arm",
                ],
            ),
            (
                "linux/arm/v4",
                &["linux/arm/v4"],
                &[
                    "linux/amd64",
                    "linux/arm",
                    "linux/arm/v5",
                    "linux/arm/v6",
                    "linux/arm/v7",
                    "linux/arm/v8",
                    "linux/arm64",
                    "windows/amd64",
                    "windows/arm",
                ],
            ),
            (
                "linux/arm64/v9.5",
                &["linux/arm64/v9.5"],
                &[
                    "linux/arm",
                    "linux/arm/v5",
                    "linux/arm/v6",
                    "linux/arm/v7",
                    "linux/arm/v8",
                    "linux/amd64",
                    "linux/arm/v4",
                    "linux/arm64/v8",
                    "linux/arm64/v8.1",
                    "linux/arm64/v9",
                    "linux/arm64/v9.1",
                    "linux/arm64/v9.4",
                    "windows/amd64",
                    "windows/arm",
                ],
            ),
            (
                "linux/arm64/v9",
                &["linux/arm64/v9", "linux/arm64/v9.0"],
                &[
                    "linux/arm",
                    "linux/arm/v5",
                    "linux/arm/v6",
                    "linux/arm/v7",
                    "linux/arm/v8",
                    "linux/amd64",
                    "linux/arm/v4",
                    "linux/arm/v9",
                    "linux/arm64/v8",
                    "linux/arm64/v8.1",
                    "windows/amd64",
                    "windows/arm",
                ],
            ),
            (
                "linux/arm64/v8.1",
                &["linux/arm64/v8.1"],
                &[
                    "linux/arm",
                    "linux/arm/v5",
                    "linux/arm/v6",
                    "linux/arm/v7",
                    "linux/arm/v8",
                    "linux/amd64",
                    "linux/arm/v4",
                    "linux/arm/v9",
                    "linux/arm64/v8",
                    "linux/arm64/v9",
                    "windows/amd64",
                    "windows/arm",
                ],
            ),
            (
                "linux/arm64",
                &["linux/arm64", "linux/arm64/v8"],
                &[
                    "linux/arm",
                    "linux/arm/v5",
                    "linux/arm/v6",
                    "linux/arm/v7",
                    "linux/arm/v8",
                    "linux/amd64",
                    "linux/arm/v4",
                    "linux/arm/v9",
                    "linux/arm64/v9",
                    "windows/amd64",
                    "windows/arm",
                ],
            ),
        ];
        for (host, yes, no) in cases {
            let m = Ordered::only_strict(&p(host));
            for q in *yes {
                assert!(m.matches(&p(q)), "OnlyStrict({host}) must match {q}");
            }
            for q in *no {
                assert!(!m.matches(&p(q)), "OnlyStrict({host}) must not match {q}");
            }
        }
    }

    /// The order `Only` ranks in: compare.go's platformVector and Only's doc comment.
    #[test]
    fn only_order_is_containerds_platform_vector() {
        let order = |host: &str| -> Vec<String> {
            Ordered::only(&p(host))
                .platforms()
                .iter()
                .map(Platform::spelling)
                .collect()
        };
        assert_eq!(
            order("linux/amd64/v4"),
            [
                "linux/amd64/v4",
                "linux/amd64/v3",
                "linux/amd64/v2",
                "linux/amd64",
                "linux/386"
            ]
        );
        assert_eq!(order("linux/amd64"), ["linux/amd64", "linux/386"]);
        assert_eq!(order("linux/amd64/v1"), ["linux/amd64", "linux/386"]);
        assert_eq!(
            order("linux/arm64"),
            [
                "linux/arm64",
                "linux/arm/v8",
                "linux/arm/v7",
                "linux/arm/v6",
                "linux/arm/v5"
            ]
        );
        // v9.2 also runs v8.0 … v8.7 (9.x implies 8.(x+5)).
        assert_eq!(
            order("linux/arm64/v9.2"),
            [
                "linux/arm64/v9.2",
                "linux/arm64/v9.1",
                "linux/arm64/v9",
                "linux/arm64/v8.7",
                "linux/arm64/v8.6",
                "linux/arm64/v8.5",
                "linux/arm64/v8.4",
                "linux/arm64/v8.3",
                "linux/arm64/v8.2",
                "linux/arm64/v8.1",
                "linux/arm64",
                "linux/arm/v8",
                "linux/arm/v7",
                "linux/arm/v6",
                "linux/arm/v5",
            ]
        );
        // v9.5 caps the v8 line at v8.9.
        let v95 = order("linux/arm64/v9.5");
        assert_eq!(v95[6], "linux/arm64/v8.9");
        assert!(!v95.iter().any(|s| s == "linux/arm64/v8.10"));
        // arm's floor is v5; v4 and below run only themselves.
        assert_eq!(order("linux/arm/v6"), ["linux/arm/v6", "linux/arm/v5"]);
        assert_eq!(order("linux/arm/v4"), ["linux/arm/v4"]);
        // An arm64 variant containerd does not know matches nothing, not even itself.
        assert!(order("linux/arm64/v10").is_empty());
        // Anything else: itself.
        assert_eq!(order("linux/riscv64"), ["linux/riscv64"]);
        // Non-numeric amd64 variants count as no level (Atoi fails).
        assert_eq!(order("linux/amd64/foo"), ["linux/amd64/foo", "linux/386"]);
        // Ties and ranks: containerd's Less.
        let only = Ordered::only(&p("linux/amd64/v3"));
        assert!(only.less(&p("linux/amd64/v3"), &p("linux/amd64/v2")));
        assert!(only.less(&p("linux/amd64"), &p("linux/386")));
        assert!(!only.less(&p("linux/386"), &p("linux/amd64")));
        assert!(only.less(&p("linux/386"), &p("linux/arm64")));
        assert!(!only.less(&p("linux/amd64/v2"), &p("linux/amd64/v2")));
    }

    /// compare_test.go TestCompareOSFeatures, case "linux/amd64" for Only: a platform
    /// with os.features the host lacks does not match, yet sorts after the matches and
    /// before other architectures.
    #[test]
    fn os_features_as_containerd_compares_them() {
        let with = |s: &str, f: &[&str]| {
            let mut q = p(s);
            q.os_features = f.iter().map(|x| x.to_string()).collect();
            q
        };
        let only = Ordered::only(&p("linux/amd64"));
        let mut list = vec![
            p("linux/arm64"),
            with("linux/amd64", &["other"]),
            p("linux/amd64"),
        ];
        list.sort_by(|a, b| {
            if only.less(a, b) {
                std::cmp::Ordering::Less
            } else if only.less(b, a) {
                std::cmp::Ordering::Greater
            } else {
                std::cmp::Ordering::Equal
            }
        });
        assert_eq!(
            list,
            [
                p("linux/amd64"),
                with("linux/amd64", &["other"]),
                p("linux/arm64")
            ]
        );
        assert!(!only.matches(&with("linux/amd64", &["other"])));
        // A host platform with the features matches it, and prefers more features.
        let gpu = Ordered::only(&with("linux/amd64", &["f1", "f2"]));
        assert!(gpu.matches(&with("linux/amd64", &["f2"])));
        assert!(gpu.less(
            &with("linux/amd64", &["f1", "f2"]),
            &with("linux/amd64", &["f2"])
        ));
        assert!(!gpu.matches(&with("linux/amd64", &["f3"])));
    }

    /// database.go's normalizeArch, and platforms_test.go TestParseSelector's
    /// normalised results and matches.
    #[test]
    fn normalisation_is_containerds() {
        for (arch, variant, want) in [
            ("i386", "v7", ("386", "")),
            ("386", "v7", ("386", "v7")),
            ("x86_64", "", ("amd64", "")),
            ("X86-64", "V1", ("amd64", "")),
            ("amd64", "v2", ("amd64", "v2")),
            ("amd64", "2", ("amd64", "2")),
            ("amd64", "1", ("amd64", "1")),
            ("Aarch64", "", ("arm64", "")),
            ("arm64", "8", ("arm64", "")),
            ("arm64", "v8", ("arm64", "")),
            ("arm64", "v8.0", ("arm64", "")),
            ("arm64", "8.1", ("arm64", "8.1")),
            ("arm64", "9", ("arm64", "v9")),
            ("arm64", "9.0", ("arm64", "v9")),
            ("arm64", "v9.0", ("arm64", "v9")),
            ("arm64", "v9.1", ("arm64", "v9.1")),
            ("armhf", "", ("arm", "v7")),
            ("armhf", "v6", ("arm", "v7")),
            ("armel", "", ("arm", "v6")),
            ("arm", "", ("arm", "v7")),
            ("arm", "7", ("arm", "v7")),
            ("arm", "5", ("arm", "v5")),
            ("arm", "6", ("arm", "v6")),
            ("arm", "8", ("arm", "v8")),
            ("arm", "4", ("arm", "4")),
            ("i686", "", ("i686", "")),
            ("S390X", "", ("s390x", "")),
        ] {
            assert_eq!(
                normalize_arch(arch, variant),
                (want.0.to_string(), want.1.to_string()),
                "{arch}/{variant}"
            );
        }
        assert_eq!(normalize_os("Linux"), "linux");
        assert_eq!(normalize_os("macOS"), "darwin");
        assert_eq!(normalize_os(""), "linux");
        // TestParseSelector: what each input's matcher must match.
        // (input, its spelling, what its matcher must match as os/arch/variant)
        type Selector<'a> = (&'a str, &'a str, &'a [(&'a str, &'a str, &'a str)]);
        let cases: &[Selector] = &[
            (
                "linux/arm64",
                "linux/arm64",
                &[
                    ("linux", "aarch64", ""),
                    ("linux", "aarch64", "v8"),
                    ("linux", "arm64", "v8"),
                ],
            ),
            (
                "linux/arm64/v8",
                "linux/arm64",
                &[
                    ("linux", "aarch64", ""),
                    ("linux", "aarch64", "v8"),
                    ("linux", "arm64", ""),
                ],
            ),
            (
                "linux/arm",
                "linux/arm/v7",
                &[
                    ("linux", "arm", "v7"),
                    ("linux", "armhf", ""),
                    ("linux", "arm", "7"),
                ],
            ),
            ("linux/arm/v6", "linux/arm/v6", &[("linux", "armel", "")]),
            (
                "linux/arm/v7",
                "linux/arm/v7",
                &[("linux", "arm", ""), ("linux", "armhf", "")],
            ),
            ("Linux/x86_64", "linux/amd64", &[]),
            ("linux/s390x", "linux/s390x", &[]),
        ];
        for (input, spelling, matches) in cases {
            let m = p(input);
            assert_eq!(m.spelling(), *spelling, "{input}");
            assert!(m.matches(&p(&m.spelling())), "{input} round trip");
            for (os, arch, variant) in *matches {
                let q = Platform::new(os, arch, Some(variant));
                assert!(m.matches(&q), "{input} must match {os}/{arch}/{variant}");
            }
        }
        // Components as containerd's specifierRe allows them.
        assert!(Platform::parse("linux/amd64/v2+x").is_err());
        assert!(Platform::parse("linux(+gpu)/amd64").is_err());
        assert!(Platform::parse("linux/amd64/v2/x").is_err());
    }

    #[test]
    fn host_levels_choose_the_best_native_variant() {
        let e = all_installed();
        let offered = [
            "linux/amd64",
            "linux/amd64/v2",
            "linux/amd64/v3",
            "linux/amd64/v4",
            "linux/386",
        ];
        for (host, want) in [
            ("linux/amd64", "linux/amd64"),
            ("linux/amd64/v1", "linux/amd64"),
            ("linux/amd64/v2", "linux/amd64/v2"),
            ("linux/amd64/v3", "linux/amd64/v3"),
            ("linux/amd64/v4", "linux/amd64/v4"),
        ] {
            let c = pick(host, false, &offered, &e);
            assert_eq!(c.platform.as_deref(), Some(want), "{host}");
            assert_eq!(c.mode, Some(Mode::Native));
        }
        // A v2 CPU never takes amd64/v3 (not even emulated: the host's own architecture).
        let c = pick(
            "linux/amd64/v2",
            false,
            &["linux/amd64/v3", "linux/386"],
            &e,
        );
        assert_eq!(c.platform.as_deref(), Some("linux/386"));
        assert!(
            c.candidates[0]
                .reason
                .contains("linux/amd64/v2 provides x86-64-v2; linux/amd64/v3 needs x86-64-v3"),
            "{:?}",
            c.candidates[0]
        );
        // Before this, archctl took amd64/v2 natively on a plain linux/amd64 host; containerd
        // does not.
        let c = pick("linux/amd64", false, &["linux/amd64/v2"], &e);
        assert_eq!(c.platform, None);
        // arm64: v8.x and v9.x by containerd's vector.
        let offered = [
            "linux/arm64/v9",
            "linux/arm64/v8.2",
            "linux/arm64",
            "linux/arm/v7",
        ];
        let c = pick("linux/arm64", false, &offered, &e);
        assert_eq!(c.platform.as_deref(), Some("linux/arm64"));
        let c = pick("linux/arm64/v8.4", false, &offered, &e);
        assert_eq!(c.platform.as_deref(), Some("linux/arm64/v8.2"));
        let c = pick("linux/arm64/v9.1", false, &offered, &e);
        assert_eq!(c.platform.as_deref(), Some("linux/arm64/v9"));
        let c = pick("linux/arm64/v8.4", false, &offered[..1], &e);
        assert_eq!(c.platform, None, "{:?}", c.candidates);
        // Ties: the registry's order (the same platform twice).
        let c = pick(
            "linux/amd64",
            false,
            &["linux/386", "linux/amd64/v1", "linux/amd64"],
            &e,
        );
        assert_eq!(c.digest.as_deref(), Some("sha256:1"));
    }

    fn emulated_x86(level: Result<u32, String>) -> Emulation {
        Emulation {
            registered: vec![],
            installed: vec!["x86_64".into(), "aarch64".into()],
            refused: false,
            x86_64_emulator: None,
            x86_64_handler: None,
            x86_64: Some(EmulatedCpu {
                emulator: "/usr/bin/qemu-x86_64-static".into(),
                level,
            }),
        }
    }

    #[test]
    fn emulated_amd64_takes_only_levels_the_emulator_provides() {
        let offered = [
            "linux/amd64/v2",
            "linux/amd64/v3",
            "linux/amd64/v4",
            "linux/arm/v7",
        ];
        for (level, want) in [
            (2, "linux/amd64/v2"),
            (3, "linux/amd64/v3"),
            (4, "linux/amd64/v4"),
        ] {
            let c = pick("linux/riscv64", false, &offered, &emulated_x86(Ok(level)));
            assert_eq!(c.platform.as_deref(), Some(want), "level {level}");
            assert_eq!(c.mode, Some(Mode::Emulated));
            assert_eq!(c.emulator.as_deref(), Some("x86_64"));
        }
        let c = pick("linux/arm64", true, &offered, &emulated_x86(Ok(3)));
        assert_eq!(c.platform.as_deref(), Some("linux/amd64/v3"));
        let chosen = c
            .candidates
            .iter()
            .find(|k| k.reason.starts_with("chosen"))
            .unwrap();
        assert!(
            chosen
                .reason
                .contains("qemu-x86_64-static provides x86-64-v3"),
            "{chosen:?}"
        );
        let v4 = &c.candidates[2];
        assert!(!v4.usable);
        assert_eq!(
            v4.reason,
            "emulated: qemu-x86_64-static provides x86-64-v3; linux/amd64/v4 needs x86-64-v4"
        );
        // A v1 emulator (qemu64) runs plain amd64 only; nothing else here, so the error says why.
        let c = pick("linux/arm64", true, &offered[..3], &emulated_x86(Ok(1)));
        assert_eq!(c.platform, None);
        let err = c.error.unwrap();
        assert!(
            err.contains("provides x86-64-v1") && err.contains("newer emulator"),
            "{err}"
        );
        // Unknown level: x86-64-v1, and the reason says so.
        let c = pick(
            "linux/arm64",
            true,
            &["linux/amd64/v2", "linux/amd64"],
            &emulated_x86(Err("boom".into())),
        );
        assert_eq!(c.platform.as_deref(), Some("linux/amd64"));
        assert!(
            c.candidates[0].reason.contains("cannot tell")
                && c.candidates[0].reason.contains("boom"),
            "{:?}",
            c.candidates[0]
        );
        // amd64 still comes before arm64 among emulated ones, at any level it runs.
        let c = pick(
            "linux/riscv64",
            false,
            &["linux/arm64", "linux/amd64/v2"],
            &emulated_x86(Ok(2)),
        );
        assert_eq!(c.platform.as_deref(), Some("linux/amd64/v2"));
    }
}
