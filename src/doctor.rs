//! Diagnosis: checks with a verdict, a one-line finding and the exact fix (`archctl
//! doctor`). This module owns what a check is and the pure readings the checks need
//! (binfmt.d files as systemd-binfmt loads them, the user namespace, the boot command an
//! installed service runs); `commands::doctor` gathers the facts and decides. Nothing
//! here changes the system.

use std::path::{Path, PathBuf};

use serde::Serialize;

/// A check's verdict. `fail` makes `doctor` exit 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Ok,
    Warn,
    Fail,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Ok => "ok",
            Verdict::Warn => "warn",
            Verdict::Fail => "fail",
        }
    }
}

/// One check of `archctl doctor`. Field names are the JSON contract.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    /// What was checked: `binfmt_misc`, `user-namespace`, `kernel`, `native`,
    /// `entry:<name>`, `boot-service`, `binfmt.d`, `engine:<name>`, `elf`, `runs-here`.
    pub check: String,
    pub verdict: Verdict,
    /// One line: what was found.
    pub finding: String,
    /// The exact fix (a command where there is one), for `warn` and `fail`.
    pub fix: Option<String>,
}

impl Check {
    pub fn ok(check: impl Into<String>, finding: impl Into<String>) -> Check {
        Check {
            check: check.into(),
            verdict: Verdict::Ok,
            finding: finding.into(),
            fix: None,
        }
    }

    pub fn warn(
        check: impl Into<String>,
        finding: impl Into<String>,
        fix: impl Into<String>,
    ) -> Check {
        Check::with_fix(Verdict::Warn, check.into(), finding.into(), fix.into())
    }

    pub fn fail(
        check: impl Into<String>,
        finding: impl Into<String>,
        fix: impl Into<String>,
    ) -> Check {
        Check::with_fix(Verdict::Fail, check.into(), finding.into(), fix.into())
    }

    fn with_fix(verdict: Verdict, check: String, finding: String, fix: String) -> Check {
        Check {
            check,
            verdict,
            finding,
            fix: Some(fix),
        }
    }
}

/// How many checks had each verdict.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Counts {
    pub ok: usize,
    pub warn: usize,
    pub fail: usize,
}

impl Counts {
    pub fn of(checks: &[Check]) -> Counts {
        let mut c = Counts::default();
        for k in checks {
            match k.verdict {
                Verdict::Ok => c.ok += 1,
                Verdict::Warn => c.warn += 1,
                Verdict::Fail => c.fail += 1,
            }
        }
        c
    }
}

// --- the user namespace ------------------------------------------------------------------

/// Is this process in the initial user namespace? Its uid_map then maps the whole range
/// onto itself (`0 0 4294967295`). None when /proc does not say.
pub fn initial_user_namespace() -> Option<bool> {
    let map = std::fs::read_to_string("/proc/self/uid_map").ok()?;
    Some(is_identity_map(&map))
}

/// `0 0 4294967295` on one line, whatever the padding.
pub fn is_identity_map(map: &str) -> bool {
    let lines: Vec<Vec<&str>> = map
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .filter(|w| !w.is_empty())
        .collect();
    matches!(lines.as_slice(), [w] if w.as_slice() == ["0", "0", "4294967295"])
}

// --- binfmt.d: what systemd-binfmt loads at boot ---------------------------------------

/// systemd-binfmt's directories, in its order of precedence: a file name in an earlier
/// directory hides the same name in a later one (binfmt.d(5)).
pub const BINFMT_D_DIRS: &[&str] = &[
    "etc/binfmt.d",
    "run/binfmt.d",
    "usr/local/lib/binfmt.d",
    "usr/lib/binfmt.d",
    "lib/binfmt.d",
];

/// Files larger than this are not read (binfmt.d files are a line or two).
const BINFMT_D_LIMIT: u64 = 64 << 10;
/// At most this many files are read per directory.
const BINFMT_D_FILES: usize = 512;

/// One registration line of a binfmt.d file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BinfmtDLine {
    /// The file, as the host sees it (`/usr/lib/binfmt.d/qemu-aarch64.conf`).
    pub file: String,
    pub name: String,
    pub interpreter: String,
    pub flags: String,
    /// The CPU architecture it catches (by its magic and mask), when archctl knows it:
    /// entries for scripts (python, wine, llvm) have none.
    pub arch: Option<String>,
}

/// Split a register string (`:name:type:offset:magic:mask:interpreter:flags`, any
/// delimiter) into name, interpreter and flags.
pub fn parse_register(line: &str) -> Option<(String, String, String)> {
    let f = register_fields(line)?;
    let flags = f.get(6).copied().unwrap_or("");
    Some((f[0].into(), f[5].into(), flags.trim_end().into()))
}

fn register_fields(line: &str) -> Option<Vec<&str>> {
    let delim = line.chars().next()?;
    let fields: Vec<&str> = line[delim.len_utf8()..].split(delim).collect();
    (fields.len() >= 6 && !fields[0].is_empty()).then_some(fields)
}

/// The architecture a magic (`M`) register string catches.
fn register_arch(table: &crate::arch::Table, line: &str) -> Option<String> {
    let f = register_fields(line)?;
    if f[1] != "M" {
        return None;
    }
    let offset = if f[2].is_empty() {
        0
    } else {
        f[2].parse().ok()?
    };
    let magic = crate::rules_data::parse_escaped(f[3]).ok()?;
    let mask = if f[4].is_empty() {
        vec![0xff; magic.len()]
    } else {
        crate::rules_data::parse_escaped(f[4]).ok()?
    };
    table
        .classify(offset, &magic, &mask)
        .map(|r| r.name.clone())
}

/// The registrations systemd-binfmt would load from the binfmt.d directories under
/// `root`: *.conf files, earlier directories hiding later files of the same name,
/// comments (`#`, `;`) and blank lines skipped. Symlinks to /dev/null mask a file.
pub fn binfmt_d(table: &crate::arch::Table, root: &Path) -> Vec<BinfmtDLine> {
    let mut seen: std::collections::BTreeSet<std::ffi::OsString> = Default::default();
    let mut files: Vec<(String, PathBuf)> = Vec::new();
    for dir in BINFMT_D_DIRS {
        let Ok(rd) = std::fs::read_dir(root.join(dir)) else {
            continue;
        };
        let mut names: Vec<std::ffi::OsString> = rd
            .filter_map(Result::ok)
            .map(|e| e.file_name())
            .filter(|n| n.to_string_lossy().ends_with(".conf"))
            .take(BINFMT_D_FILES)
            .collect();
        names.sort();
        for n in names {
            if !seen.insert(n.clone()) {
                continue;
            }
            let p = root.join(dir).join(&n);
            if std::fs::read_link(&p).is_ok_and(|t| t == Path::new("/dev/null")) {
                continue;
            }
            files.push((format!("/{dir}/{}", n.to_string_lossy()), p));
        }
    }
    files.sort_by(|a, b| {
        let name = |s: &str| s.rsplit('/').next().unwrap_or("").to_string();
        name(&a.0).cmp(&name(&b.0))
    });
    let mut out = Vec::new();
    for (shown, p) in files {
        let Ok(bytes) = crate::fsutil::read_bounded(&p, BINFMT_D_LIMIT) else {
            continue;
        };
        let text = String::from_utf8_lossy(&bytes);
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
                continue;
            }
            if let Some((name, interpreter, flags)) = parse_register(line) {
                out.push(BinfmtDLine {
                    file: shown.clone(),
                    name,
                    interpreter,
                    flags,
                    arch: register_arch(table, line),
                });
            }
        }
    }
    out
}

// --- the boot service ---------------------------------------------------------------------

/// The archctl binary an installed service runs: the first word of its `... boot` line
/// (a systemd `ExecStart=`, an OpenRC script's command, an rc.local line), when that
/// word is an absolute path.
pub fn service_binary(text: &str) -> Option<String> {
    text.lines().find_map(|l| {
        let l = l.trim();
        let l = l.strip_prefix("ExecStart=").unwrap_or(l);
        let words: Vec<&str> = l.split_whitespace().collect();
        if words.last().copied() != Some("boot") && !words.contains(&"boot") {
            return None;
        }
        let first = words.first()?.trim_matches(|c| c == '\'' || c == '"');
        (first.starts_with('/') && first.ends_with("archctl")).then(|| first.to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_map_is_the_initial_namespace() {
        assert!(is_identity_map("         0          0 4294967295\n"));
        assert!(!is_identity_map("         0       1000          1\n"));
        assert!(!is_identity_map("0 0 4294967295\n1 1 1\n"));
        assert!(!is_identity_map(""));
    }

    #[test]
    fn register_strings_split_on_their_own_delimiter() {
        let (n, i, f) = parse_register(
            r":qemu-aarch64:M::\x7fELF\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\xb7\x00:\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff:/usr/libexec/qemu-binfmt/aarch64-binfmt-P:POCF",
        )
        .unwrap();
        assert_eq!(
            (n.as_str(), i.as_str(), f.as_str()),
            (
                "qemu-aarch64",
                "/usr/libexec/qemu-binfmt/aarch64-binfmt-P",
                "POCF"
            )
        );
        let (n, i, f) = parse_register("|DOSWin|M||MZ||/usr/bin/wine|").unwrap();
        assert_eq!(
            (n.as_str(), i.as_str(), f.as_str()),
            ("DOSWin", "/usr/bin/wine", "")
        );
        assert!(parse_register(":short:M:").is_none());
        assert!(parse_register("").is_none());
    }

    #[test]
    fn binfmt_d_follows_systemds_precedence() {
        let root = tempfile::tempdir().unwrap();
        let w = |p: &str, t: &str| {
            let p = root.path().join(p);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, t).unwrap();
        };
        w(
            "usr/lib/binfmt.d/qemu-arm.conf",
            ":qemu-arm:M::a::/usr/lib/arm:F\n",
        );
        // QEMU's arm magic and mask, as qemu-binfmt-conf.sh writes them.
        let rule = crate::arch::Table::builtin().get("arm").unwrap();
        let esc = crate::arch::escape_bytes;
        w(
            "etc/binfmt.d/qemu-arm.conf",
            &format!(
                "# mine\n:qemu-arm:M::{}:{}:/etc/arm:OCF\n",
                esc(&rule.magic),
                esc(&rule.mask)
            ),
        );
        w("usr/lib/binfmt.d/qemu-mips.conf", ":qemu-mips:M::m::/m:\n");
        w("usr/lib/binfmt.d/README", ":x:M::m::/x:\n");
        std::fs::create_dir_all(root.path().join("run/binfmt.d")).unwrap();
        std::os::unix::fs::symlink("/dev/null", root.path().join("run/binfmt.d/qemu-mips.conf"))
            .unwrap();
        let got = binfmt_d(crate::arch::Table::builtin(), root.path());
        assert_eq!(got.len(), 1, "{got:?}");
        assert_eq!(got[0].file, "/etc/binfmt.d/qemu-arm.conf");
        assert_eq!(got[0].arch.as_deref(), Some("arm"));
        assert_eq!(got[0].interpreter, "/etc/arm");
        assert_eq!(got[0].flags, "OCF");
    }

    #[test]
    fn service_binary_reads_each_init_systems_line() {
        assert_eq!(
            service_binary("[Service]\nExecStart=/usr/local/bin/archctl --config /x boot\n")
                .as_deref(),
            Some("/usr/local/bin/archctl")
        );
        assert_eq!(
            service_binary("start() {\n\t'/opt/archctl' boot\n}\n").as_deref(),
            Some("/opt/archctl")
        );
        assert_eq!(service_binary("#!/bin/sh\nexit 0\n"), None);
    }
}
