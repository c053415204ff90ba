//! What a CPU provides beyond its architecture's name, for choosing platform variants:
//!
//! - the x86-64 micro-architecture level (1..=4) of this CPU, from CPUID and XGETBV by
//!   the rules of tonistiigi/go-archvariant (what buildkit uses; containerd itself
//!   leaves amd64's variant empty);
//! - the ARM variant, from `/proc/cpuinfo` as containerd/platforms' `getCPUVariant`
//!   (cpuinfo_linux.go) reads it;
//! - the x86-64 level an x86-64 emulator provides, found by running the embedded probe
//!   (`test-images/probe/x86_64-level`, the same rules in assembly) under it: what QEMU
//!   emulates is decided by its version and CPU model, not by the host's CPU.

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use crate::ns::{ExecImage, NsError};

/// The probe: a static x86-64 program that exits with the level (1..=4) of the CPU
/// running it and writes `x86-64-vN`. Built reproducibly by `test-images/build.sh`.
pub const X86_64_LEVEL_PROBE: &[u8] = include_bytes!("../test-images/probe/x86_64-level");

/// How long the probe may take under an emulator (it runs in about 15 ms).
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(10);

/// One CPUID query: (leaf, subleaf) -> [eax, ebx, ecx, edx].
pub type Cpuid<'a> = &'a dyn Fn(u32, u32) -> [u32; 4];

// go-archvariant's bit names (amd64variant.go), by register.
mod bits {
    // CPUID.1:ECX
    pub const V2_CX: u32 = 1 << 0 | 1 << 9 | 1 << 13 | 1 << 19 | 1 << 20 | 1 << 23; // sse3 ssse3 cx16 sse4.1 sse4.2 popcnt
    pub const V3_CX: u32 = V2_CX | 1 << 12 | 1 << 22 | 1 << 26 | 1 << 27 | 1 << 28 | 1 << 29; // fma movbe xsave osxsave avx f16c
    // CPUID.(7,0):EBX
    pub const V3_BX: u32 = 1 << 3 | 1 << 5 | 1 << 8; // bmi1 avx2 bmi2
    pub const V4_BX: u32 = V3_BX | 1 << 16 | 1 << 17 | 1 << 28 | 1 << 30 | 1 << 31; // avx512 f dq cd bw vl
    // CPUID.80000001:ECX
    pub const V2_EXT_CX: u32 = 1 << 0; // lahf_lm
    pub const V3_EXT_CX: u32 = V2_EXT_CX | 1 << 5; // abm (lzcnt)
    // XCR0
    pub const V3_OS: u32 = 1 << 1 | 1 << 2; // sse, avx state
    pub const V4_OS: u32 = V3_OS | 1 << 5 | 1 << 6 | 1 << 7; // opmask, zmm_hi256, hi16_zmm
}

/// go-archvariant's `detectVersion`, step by step (including its quirks: a CPU whose
/// highest basic leaf is below 7 is v1 whatever it has). `xgetbv` (XCR0's low half) is
/// called only when CPUID.1:ECX.OSXSAVE is set, i.e. when XGETBV cannot fault.
pub fn amd64_level(cpuid: Cpuid, xgetbv: &dyn Fn() -> u32) -> u32 {
    use bits::*;
    if cpuid(0, 0)[0] < 7 || cpuid(0x8000_0000, 0)[0] < 0x8000_0001 {
        return 1;
    }
    let mut version = 4;
    let cx = cpuid(1, 0)[2];
    if cx & V3_CX != V3_CX {
        version = 2;
        if cx & V2_CX != V2_CX {
            return 1;
        }
    }
    let bx = cpuid(7, 0)[1];
    if version == 4 && bx & V4_BX != V4_BX {
        version = 3;
    }
    if version == 3 && bx & V3_BX != V3_BX {
        version = 2;
    }
    let ext_cx = cpuid(0x8000_0001, 0)[2];
    if version >= 3 && ext_cx & V3_EXT_CX != V3_EXT_CX {
        version = 2;
    }
    if version == 2 && ext_cx & V2_EXT_CX != V2_EXT_CX {
        return 1;
    }
    if version >= 3 {
        let xcr0 = xgetbv();
        if version == 4 && xcr0 & V4_OS != V4_OS {
            version = 3;
        }
        if xcr0 & V3_OS != V3_OS {
            version = 2;
        }
    }
    version
}

/// The x86-64 level of the CPU archctl runs on (under an x86-64 emulator: the emulated
/// CPU's); None when archctl is not an x86-64 program.
#[cfg(target_arch = "x86_64")]
pub fn host_amd64_level() -> Option<u32> {
    use std::arch::x86_64::{__cpuid_count, _xgetbv};
    #[target_feature(enable = "xsave")]
    fn xcr0() -> u32 {
        // SAFETY: XGETBV with ECX=0 reads XCR0; valid once the OS enabled XSAVE, which
        // the caller established (see below).
        let v = unsafe { _xgetbv(0) };
        // Truncation intended: every bit go-archvariant looks at is in the low half.
        v as u32
    }
    let cpuid = |leaf, sub| {
        let r = __cpuid_count(leaf, sub);
        [r.eax, r.ebx, r.ecx, r.edx]
    };
    // SAFETY: amd64_level calls this only when CPUID.1:ECX.OSXSAVE is set: the OS has
    // enabled XSAVE, so XGETBV with ECX=0 is a valid instruction here.
    let xgetbv = || unsafe { xcr0() };
    Some(amd64_level(&cpuid, &xgetbv))
}

#[cfg(not(target_arch = "x86_64"))]
pub fn host_amd64_level() -> Option<u32> {
    None
}

/// containerd's `getCPUInfo(pattern)`: the value of the first `/proc/cpuinfo` line whose
/// key is `pattern` (case-insensitive, trimmed).
fn cpuinfo_field<'t>(cpuinfo: &'t str, pattern: &str) -> Option<&'t str> {
    cpuinfo.lines().find_map(|line| {
        let mut parts = line.split(':');
        let key = parts.next()?;
        let value = parts.next()?;
        key.trim()
            .eq_ignore_ascii_case(pattern)
            .then(|| value.trim())
    })
}

/// containerd's `getCPUVariantFromArch`: the variant `uname -m` implies, when cpuinfo
/// has no "CPU architecture" (e.g. under qemu-user on another architecture).
fn variant_from_machine(machine: &str) -> Option<&'static str> {
    let m = machine.to_ascii_lowercase();
    if m == "aarch64" {
        return Some("8");
    }
    if m.starts_with("armv") && m.len() >= 5 {
        return Some(match &m[3..5] {
            "v8" => "8",
            "v7" => "7",
            "v6" => "6",
            "v5" => "5",
            "v4" => "4",
            "v3" => "3",
            _ => "unknown",
        });
    }
    None
}

/// containerd's `getCPUVariant` (cpuinfo_linux.go), exactly: "CPU architecture" from
/// `cpuinfo`, else the machine name; the Raspberry Pi quirk (an ARMv6 reporting 7)
/// when `arm32` (containerd: its own GOARCH is arm); then `v8`, `v7` … `v3` or
/// `unknown`. None where containerd fails (no cpuinfo, an unknown machine).
pub fn arm_variant(cpuinfo: Option<&str>, machine: &str, arm32: bool) -> Option<String> {
    // An unreadable cpuinfo is an error for containerd; a missing field is not.
    let cpuinfo = cpuinfo?;
    let mut variant = match cpuinfo_field(cpuinfo, "Cpu architecture") {
        Some(v) => v.to_string(),
        None => variant_from_machine(machine)?.to_string(),
    };
    if arm32
        && variant == "7"
        && cpuinfo_field(cpuinfo, "model name")
            .is_some_and(|m| m.to_ascii_lowercase().starts_with("armv6-compatible"))
    {
        variant = "6".into();
    }
    let v = match variant.to_ascii_lowercase().as_str() {
        "8" | "aarch64" => "v8",
        "7" | "7m" | "?(12)" | "?(13)" | "?(14)" | "?(15)" | "?(16)" | "?(17)" => "v7",
        "6" | "6tej" => "v6",
        "5" | "5t" | "5te" | "5tej" => "v5",
        "4" | "4t" => "v4",
        "3" => "v3",
        _ => "unknown",
    };
    Some(v.into())
}

/// The variant of this host's OCI architecture (`amd64`, `arm64`, `arm`): the x86-64
/// level as `vN`, or containerd's ARM variant. None for other architectures, or when
/// it cannot be told (then containerd, too, leaves it empty).
pub fn host_variant(oci_arch: &str) -> Option<String> {
    match oci_arch {
        "amd64" => host_amd64_level().map(|n| format!("v{n}")),
        "arm64" | "arm" => {
            let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").ok();
            let machine = nix::sys::utsname::uname()
                .map(|u| u.machine().to_string_lossy().into_owned())
                .unwrap_or_default();
            arm_variant(cpuinfo.as_deref(), &machine, oci_arch == "arm")
        }
        _ => None,
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error(transparent)]
    Image(#[from] NsError),
    #[error("cannot run {path}: {source}")]
    Spawn {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} did not finish the x86-64 probe within {} s", PROBE_TIMEOUT.as_secs())]
    Timeout { path: PathBuf },
    #[error("{path} ran the x86-64 probe, which {what}")]
    Output { path: PathBuf, what: String },
}

/// Run the probe under `emulator` (as `emulator PROBE`, the way binfmt_misc starts an
/// interpreter, with an empty environment: a container does not inherit `QEMU_CPU`)
/// and return the level it reports. Checked: the exit status and the line must agree.
pub fn probe_x86_64_level(emulator: &Path) -> Result<u32, ProbeError> {
    let image = ExecImage::new("x86_64-level", X86_64_LEVEL_PROBE)?;
    let mut cmd = Command::new(emulator);
    cmd.arg(image.path());
    run_probe(cmd, emulator)
}

/// Execute the probe itself, so that the kernel hands it to the binfmt_misc handler for
/// x86-64 (`handler`, for messages): for a handler whose interpreter this mount
/// namespace cannot see (registered with F from a container). Only meaningful on a
/// host that does not run x86-64 programs natively.
pub fn probe_x86_64_level_through_binfmt(handler: &str) -> Result<u32, ProbeError> {
    let image = ExecImage::new("x86_64-level", X86_64_LEVEL_PROBE)?;
    run_probe(
        Command::new(image.path()),
        Path::new(&format!("the binfmt_misc handler {handler}")),
    )
}

fn run_probe(mut cmd: Command, label: &Path) -> Result<u32, ProbeError> {
    let mut child = cmd
        .env_clear()
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|source| ProbeError::Spawn {
            path: label.to_path_buf(),
            source,
        })?;
    let deadline = Instant::now() + PROBE_TIMEOUT;
    let mut pause = Duration::from_micros(200);
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break s,
            Ok(None) if Instant::now() < deadline => {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(20));
            }
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(ProbeError::Timeout {
                    path: label.to_path_buf(),
                });
            }
            Err(source) => {
                return Err(ProbeError::Spawn {
                    path: label.to_path_buf(),
                    source,
                });
            }
        }
    };
    let mut out = Vec::new();
    if let Some(mut s) = child.stdout.take() {
        use std::io::Read;
        let _ = s.read_to_end(&mut out);
    }
    let line = String::from_utf8_lossy(&out);
    let what = match status.code() {
        Some(n @ 1..=4) if line == format!("x86-64-v{n}\n") => return Ok(n as u32),
        Some(n @ 1..=4) => format!("exited {n} but wrote {:?}", line.trim_end()),
        Some(n) => format!("exited {n} (not a level 1..4)"),
        None => format!("was killed ({status})"),
    };
    Err(ProbeError::Output {
        path: label.to_path_buf(),
        what,
    })
}

/// [`probe_x86_64_level`], remembered in the runtime directory
/// ([`crate::host::runtime_dir`], `x86_64-levels.json`) per emulator file — its path,
/// device, inode, size and modification time — for this boot and this archctl (whose
/// probe might change): what an emulator provides changes only when the file does. A
/// probe costs about 15 ms (QEMU's start-up), a lookup a file read. Only successful
/// probes are kept; a cache that cannot be read or written costs a probe, nothing else.
pub fn x86_64_level(emulator: &Path) -> Result<u32, ProbeError> {
    let key = LevelCache::key(emulator);
    let dir = crate::host::runtime_dir();
    let cache = dir.as_ref().map(|d| d.join("x86_64-levels.json"));
    let mut known = cache.as_deref().map(LevelCache::load).unwrap_or_default();
    if let Some(k) = &key
        && let Some(level) = known.get(emulator, k)
    {
        return Ok(level);
    }
    let level = probe_x86_64_level(emulator)?;
    if let (Some(k), Some(file)) = (key, cache) {
        known.set(emulator, k, level);
        known.store(&file);
    }
    Ok(level)
}

/// The levels of [`x86_64_level`]'s cache file.
#[derive(Default, serde::Serialize, serde::Deserialize)]
struct LevelCache {
    levels: Vec<CachedLevel>,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct CachedLevel {
    emulator: PathBuf,
    /// What must not have changed since the probe.
    key: String,
    level: u32,
}

impl LevelCache {
    /// Emulators kept (the oldest go first).
    const MAX: usize = 16;

    fn key(emulator: &Path) -> Option<String> {
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::metadata(emulator).ok()?;
        Some(format!(
            "{} {} {} {} {}.{} {} {}",
            m.dev(),
            m.ino(),
            m.size(),
            m.mode(),
            m.mtime(),
            m.mtime_nsec(),
            crate::host::boot_id()?,
            env!("CARGO_PKG_VERSION"),
        ))
    }

    fn load(file: &Path) -> LevelCache {
        std::fs::read(file)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    fn get(&self, emulator: &Path, key: &str) -> Option<u32> {
        self.levels
            .iter()
            .find(|c| c.emulator == emulator && c.key == key)
            .map(|c| c.level)
            .filter(|l| (1..=4).contains(l))
    }

    fn set(&mut self, emulator: &Path, key: String, level: u32) {
        // One entry per emulator path: its older versions are gone.
        self.levels.retain(|c| c.emulator != emulator);
        self.levels.push(CachedLevel {
            emulator: emulator.to_path_buf(),
            key,
            level,
        });
        let excess = self.levels.len().saturating_sub(Self::MAX);
        self.levels.drain(..excess);
    }

    /// Best effort, as the native set's cache.
    fn store(&self, file: &Path) {
        let (Some(dir), Ok(json)) = (file.parent(), serde_json::to_vec(self)) else {
            return;
        };
        if std::fs::create_dir_all(dir).is_ok() {
            let _ = crate::fsutil::write_atomic(file, &json, 0o600);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A CPU described by the flags /proc/cpuinfo shows (Linux's names), with every
    /// state enabled in XCR0 that the AVX/AVX-512 flags need (Linux hides those flags
    /// when the OS does not enable the state).
    fn cpu_with(flags: &[&str]) -> ([[u32; 4]; 4], u32) {
        let has = |f: &str| flags.contains(&f);
        let bit = |f: &str, b: u32| if has(f) { 1u32 << b } else { 0 };
        let cx1 = bit("pni", 0)
            | bit("ssse3", 9)
            | bit("fma", 12)
            | bit("cx16", 13)
            | bit("sse4_1", 19)
            | bit("sse4_2", 20)
            | bit("movbe", 22)
            | bit("popcnt", 23)
            | bit("xsave", 26)
            | bit("xsave", 27) // OSXSAVE: Linux enables XSAVE when the CPU has it
            | bit("avx", 28)
            | bit("f16c", 29);
        let bx7 = bit("bmi1", 3)
            | bit("avx2", 5)
            | bit("bmi2", 8)
            | bit("avx512f", 16)
            | bit("avx512dq", 17)
            | bit("avx512cd", 28)
            | bit("avx512bw", 30)
            | bit("avx512vl", 31);
        let ext = bit("lahf_lm", 0) | bit("abm", 5);
        let xcr0 = 1
            | if has("avx") { 0b110 } else { 0b010 }
            | if has("avx512f") { 0b1110_0000 } else { 0 };
        (
            [
                [0xd, 0, 0, 0],
                [0, 0, cx1, 0],
                [0, bx7, 0, 0],
                [0, 0, ext, 0],
            ],
            xcr0,
        )
    }

    fn level_of(flags: &[&str]) -> u32 {
        let (regs, xcr0) = cpu_with(flags);
        let cpuid = |leaf: u32, _sub: u32| match leaf {
            0 => regs[0],
            1 => regs[1],
            7 => regs[2],
            0x8000_0000 => [0x8000_0008, 0, 0, 0],
            0x8000_0001 => regs[3],
            _ => [0; 4],
        };
        amd64_level(&cpuid, &|| xcr0)
    }

    const V2: &[&str] = &[
        "pni", "ssse3", "cx16", "sse4_1", "sse4_2", "popcnt", "lahf_lm",
    ];
    const V3: &[&str] = &[
        "fma", "movbe", "xsave", "avx", "f16c", "bmi1", "avx2", "bmi2", "abm",
    ];
    const V4: &[&str] = &["avx512f", "avx512dq", "avx512cd", "avx512bw", "avx512vl"];

    #[test]
    fn levels_follow_go_archvariant() {
        let v2: Vec<&str> = V2.to_vec();
        let v3: Vec<&str> = [V2, V3].concat();
        let v4: Vec<&str> = [V2, V3, V4].concat();
        assert_eq!(level_of(&[]), 1);
        assert_eq!(level_of(&v2), 2);
        assert_eq!(level_of(&v3), 3);
        assert_eq!(level_of(&v4), 4);
        // Each missing feature drops the level to the one below.
        for f in V2 {
            let less: Vec<&str> = v4.iter().copied().filter(|x| x != f).collect();
            assert_eq!(level_of(&less), 1, "without {f}");
        }
        for f in V3 {
            let less: Vec<&str> = v4.iter().copied().filter(|x| x != f).collect();
            assert_eq!(level_of(&less), 2, "without {f}");
        }
        for f in V4 {
            let less: Vec<&str> = v4.iter().copied().filter(|x| x != f).collect();
            assert_eq!(level_of(&less), 3, "without {f}");
        }
    }

    #[test]
    fn os_support_and_old_cpus() {
        let (regs, _) = cpu_with(&[V2, V3, V4].concat());
        let cpuid = |leaf: u32, _sub: u32| match leaf {
            0 => regs[0],
            1 => regs[1],
            7 => regs[2],
            0x8000_0000 => [0x8000_0008, 0, 0, 0],
            0x8000_0001 => regs[3],
            _ => [0; 4],
        };
        // The CPU has AVX-512, the OS saves only SSE+AVX state: v3. Only SSE: v2.
        assert_eq!(amd64_level(&cpuid, &|| 0b111), 3);
        assert_eq!(amd64_level(&cpuid, &|| 0b011), 2);
        assert_eq!(amd64_level(&cpuid, &|| 0b1110_0111), 4);
        // go-archvariant: highest basic leaf below 7 is v1, whatever the features.
        let old = |leaf: u32, sub: u32| {
            if leaf == 0 {
                [6, 0, 0, 0]
            } else {
                cpuid(leaf, sub)
            }
        };
        assert_eq!(amd64_level(&old, &|| 0b1110_0111), 1);
        let no_ext = |leaf: u32, sub: u32| {
            if leaf == 0x8000_0000 {
                [0x8000_0000, 0, 0, 0]
            } else {
                cpuid(leaf, sub)
            }
        };
        assert_eq!(amd64_level(&no_ext, &|| 0b1110_0111), 1);
        // XGETBV is never executed without OSXSAVE.
        let (regs2, _) = cpu_with(V2);
        let cpuid2 = |leaf: u32, _sub: u32| match leaf {
            0 => regs2[0],
            1 => regs2[1],
            7 => regs2[2],
            0x8000_0000 => [0x8000_0008, 0, 0, 0],
            0x8000_0001 => regs2[3],
            _ => [0; 4],
        };
        assert_eq!(
            amd64_level(&cpuid2, &|| panic!("XGETBV without OSXSAVE")),
            2
        );
    }

    /// The level from this machine's CPUID is 1..=4 and the one its /proc/cpuinfo flags
    /// give (Linux clears the AVX flags when it does not enable their state).
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn host_level_agrees_with_proc_cpuinfo() {
        let level = host_amd64_level().unwrap();
        assert!((1..=4).contains(&level), "{level}");
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap();
        let flags: Vec<&str> = cpuinfo_field(&cpuinfo, "flags")
            .unwrap()
            .split_whitespace()
            .collect();
        assert_eq!(level, level_of(&flags), "flags: {flags:?}");
        assert_eq!(host_variant("amd64"), Some(format!("v{level}")));
    }

    /// Natively, the probe program finds what CPUID here says.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn probe_run_natively_agrees_with_cpuid() {
        let image = ExecImage::new("x86_64-level", X86_64_LEVEL_PROBE).unwrap();
        let out = Command::new(image.path()).output().unwrap();
        let level = host_amd64_level().unwrap();
        assert_eq!(out.status.code(), Some(level as i32));
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            format!("x86-64-v{level}\n")
        );
    }

    /// Executed directly, the probe runs as the kernel runs any x86-64 program: natively
    /// here (through a registered handler on a host that is not x86-64).
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn probe_through_binfmt_runs_the_program_itself() {
        assert_eq!(
            probe_x86_64_level_through_binfmt("qemu-x86_64").unwrap(),
            host_amd64_level().unwrap()
        );
    }

    /// The machine names are containerd's TestGetCPUVariantFromArch cases
    /// (cpuinfo_linux_test.go, v1.0.0-rc.4: aarch64, Armv8, armv7 … armv3, armv9 is
    /// "unknown", a name not starting with armv is an error), then mapped as
    /// getCPUVariant maps them.
    #[test]
    fn arm_variant_as_containerd_reads_it() {
        let arm64 = "processor\t: 0\nBogoMIPS\t: 48.00\nFeatures\t: fp asimd\nCPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: 0x0\n";
        assert_eq!(
            arm_variant(Some(arm64), "aarch64", false).as_deref(),
            Some("v8")
        );
        let rpi1 = "processor\t: 0\nmodel name\t: ARMv6-compatible processor rev 7 (v6l)\nCPU architecture: 7\n";
        assert_eq!(
            arm_variant(Some(rpi1), "armv6l", true).as_deref(),
            Some("v6")
        );
        assert_eq!(
            arm_variant(Some(rpi1), "armv6l", false).as_deref(),
            Some("v7")
        );
        let v7 = "model name\t: ARMv7 Processor rev 4 (v7l)\nCPU architecture: 7\n";
        assert_eq!(arm_variant(Some(v7), "armv7l", true).as_deref(), Some("v7"));
        // No "CPU architecture" (x86 cpuinfo under qemu-user): from the machine name.
        let x86 = "processor\t: 0\nvendor_id\t: GenuineIntel\n";
        for (machine, want) in [
            ("aarch64", Some("v8")),
            ("Armv8", Some("v8")),
            ("armv8l", Some("v8")),
            ("armv7l", Some("v7")),
            ("armv6l", Some("v6")),
            ("armv5tel", Some("v5")),
            ("armv4l", Some("v4")),
            ("armv3", Some("v3")),
            ("armv9", Some("unknown")),
            ("x86_64", None),
        ] {
            assert_eq!(
                arm_variant(Some(x86), machine, false).as_deref(),
                want,
                "{machine}"
            );
        }
        assert_eq!(arm_variant(None, "aarch64", false), None);
        let odd = "CPU architecture: 9\n";
        assert_eq!(
            arm_variant(Some(odd), "aarch64", false).as_deref(),
            Some("unknown")
        );
    }

    #[cfg(target_arch = "aarch64")]
    #[test]
    fn host_arm64_variant_is_v8() {
        // Linux's arm64 /proc/cpuinfo always says "CPU architecture: 8".
        assert_eq!(host_variant("arm64").as_deref(), Some("v8"));
    }
}
