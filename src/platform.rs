//! Choosing the platform an image runs as on this host, following containerd's platform
//! matching (`containerd/platforms`): an exact native match first, then platforms the CPU
//! runs natively (386 on amd64; arm v8…v5 on arm64 with AArch32), then emulated ones —
//! those with a registered, healthy handler before those whose emulator is merely
//! installed; among emulated ones amd64, then arm64, then the registry's order.

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
    /// None for the default variant (arm64's v8, amd64's v1; arm's v7 is explicit).
    pub variant: Option<String>,
}

impl Platform {
    pub fn new(os: &str, arch: &str, variant: Option<&str>) -> Platform {
        let os = os.to_ascii_lowercase();
        let (arch, mut variant) = match (arch.to_ascii_lowercase().as_str(), variant) {
            ("x86_64" | "x86-64" | "amd64", v) => ("amd64".to_string(), v.map(str::to_string)),
            ("aarch64" | "arm64", v) => ("arm64".to_string(), v.map(str::to_string)),
            ("armhf", _) => ("arm".to_string(), Some("v7".to_string())),
            ("armel", _) => ("arm".to_string(), Some("v6".to_string())),
            ("i386" | "i686" | "386", v) => ("386".to_string(), v.map(str::to_string)),
            (a, v) => (a.to_string(), v.map(str::to_string)),
        };
        if let Some(v) = &variant {
            let v = v.to_ascii_lowercase();
            let v = if v.chars().all(|c| c.is_ascii_digit()) {
                format!("v{v}")
            } else {
                v
            };
            variant = Some(v);
        }
        variant = match (arch.as_str(), variant.as_deref()) {
            ("arm64", Some("v8")) | ("amd64", Some("v1")) | (_, Some("")) => None,
            ("arm", None) => Some("v7".to_string()),
            _ => variant,
        };
        Platform { os, arch, variant }
    }

    /// `os/arch[/variant]`.
    pub fn parse(s: &str) -> Result<Platform, PlatformError> {
        let parts: Vec<&str> = s.trim().split('/').collect();
        match parts.as_slice() {
            [os, arch] if !os.is_empty() && !arch.is_empty() => Ok(Platform::new(os, arch, None)),
            [os, arch, v] if !os.is_empty() && !arch.is_empty() && !v.is_empty() => {
                Ok(Platform::new(os, arch, Some(v)))
            }
            _ => Err(PlatformError::Invalid(s.to_string())),
        }
    }

    pub fn from_entry(e: &PlatformEntry) -> Platform {
        Platform::new(&e.os, &e.architecture, e.variant.as_deref())
    }

    /// Docker's spelling: `linux/arm64`, `linux/arm/v7`.
    pub fn spelling(&self) -> String {
        match &self.variant {
            Some(v) => format!("{}/{}/{v}", self.os, self.arch),
            None => format!("{}/{}", self.os, self.arch),
        }
    }

    fn arm_version(&self) -> Option<u32> {
        self.variant
            .as_deref()
            .and_then(|v| v.strip_prefix('v'))
            .and_then(|n| n.parse().ok())
    }
}

/// The host as containerd sees it, plus whether an arm64 CPU runs 32-bit arm.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPlatform {
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

    /// The real host: its architecture, and AArch32 as established by executing a
    /// 32-bit arm program (the native set).
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
        let platform = Platform::parse(spelling)?;
        Ok(HostPlatform {
            aarch32: platform.arch == "arm64" && native.iter().any(|a| a == "arm"),
            platform,
        })
    }

    /// How natively this host runs `p`: Some(0) exact, Some(n) compatible (lower is
    /// better), None not at all. Why not, when not.
    pub fn native_rank(&self, p: &Platform) -> Result<usize, String> {
        let h = &self.platform;
        if p.os != h.os {
            return Err(format!("{} is not {}", p.os, h.os));
        }
        if p.arch == h.arch {
            return match (h.arch.as_str(), p.arm_version(), h.arm_version()) {
                ("arm", Some(want), Some(have)) if want > have => {
                    Err(format!("this arm/v{have} CPU cannot run arm/v{want}"))
                }
                ("arm", Some(want), Some(have)) => Ok((have - want) as usize),
                _ => Ok(0),
            };
        }
        match (h.arch.as_str(), p.arch.as_str()) {
            ("amd64", "386") => Ok(1),
            ("arm64", "arm") if self.aarch32 => match p.arm_version() {
                // v8 (32-bit) first, then v7, v6, v5.
                Some(v) if (5..=8).contains(&v) => Ok(1 + (8 - v) as usize),
                _ => Err("unknown arm variant".into()),
            },
            ("arm64", "arm") => {
                Err("this arm64 CPU cannot run 32-bit arm (no AArch32, e.g. Apple Silicon)".into())
            }
            _ => Err(format!("{} is not {}", p.arch, h.arch)),
        }
    }
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
    #[serde(skip)]
    rank: (usize, usize, usize),
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
        rank: (usize::MAX, 0, order),
    };
    if p.os != "linux" {
        c.reason = format!("{} images do not run on Linux", p.os);
        return c;
    }
    match host.native_rank(&p) {
        Ok(r) => {
            c.mode = Some(Mode::Native);
            c.usable = true;
            c.rank = (0, r, order);
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
    c.mode = Some(Mode::Emulated);
    c.emulator = Some(rule.name.clone());
    let preference = match p.arch.as_str() {
        "amd64" => 0,
        "arm64" => 1,
        _ => 2,
    };
    if emu.refused {
        c.reason = "emulation refused (--no-emulation)".into();
    } else if emu.registered.contains(&rule.name) {
        c.usable = true;
        c.rank = (1, preference, order);
        c.reason = format!("emulated: handler qemu-{} registered", rule.name);
    } else if emu.installed.contains(&rule.name) {
        c.usable = true;
        c.rank = (2, preference, order);
        c.reason = format!(
            "emulated: emulator for {} installed (registered on demand)",
            rule.name
        );
    } else {
        c.reason = format!(
            "needs emulation, but no emulator for {} is installed",
            rule.name
        );
    }
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
            c.candidates[0].reason.contains("cannot run arm/v8"),
            "{:?}",
            c.candidates[0]
        );
    }
}
