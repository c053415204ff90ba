//! The architecture table: QEMU targets, their binfmt_misc magic/mask, the names users
//! type for them and the OCI platforms they serve. The table is data
//! (`binfmt-rules/qemu.toml`), embedded at build time and parsed once.

use std::sync::OnceLock;

use serde::Deserialize;

/// The rule table shipped with archctl.
pub const BUILTIN_RULES: &str = include_str!("../binfmt-rules/qemu.toml");

/// Longest magic the kernel accepts (BINPRM_BUF_SIZE is 256; QEMU's longest is 40).
pub const MAX_MAGIC_LEN: usize = 128;

#[derive(Debug, thiserror::Error)]
pub enum ArchError {
    #[error("unknown architecture \"{name}\": valid names are {valid}")]
    Unknown { name: String, valid: String },
    #[error("rule table: {0}")]
    Table(String),
}

/// One QEMU linux-user target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// QEMU target name (`aarch64`); the binfmt_misc entry is `qemu-<name>`.
    pub name: String,
    /// QEMU's CPU family: hosts of the same family may run the target natively.
    pub family: String,
    pub aliases: Vec<String>,
    /// OCI platforms, most specific first.
    pub platforms: Vec<String>,
    /// Suffix of the QEMU binary (`qemu-<emulator>-static`).
    pub emulator: String,
    pub offset: u8,
    pub magic: Vec<u8>,
    pub mask: Vec<u8>,
}

impl Rule {
    /// Name of archctl's binfmt_misc entry for this target.
    pub fn entry_name(&self) -> String {
        format!("qemu-{}", self.name)
    }

    /// Does a file starting with `header` match this rule's magic under its mask?
    pub fn matches(&self, header: &[u8]) -> bool {
        magic_matches(header, self.offset, &self.magic, &self.mask)
    }

    /// Does the name (qemu name, alias or platform; any case) designate this rule?
    pub fn is_called(&self, name: &str) -> bool {
        let name = name.trim().to_ascii_lowercase();
        self.name == name || self.aliases.contains(&name) || self.platforms.contains(&name)
    }
}

/// binfmt_misc's matching rule: every byte of `magic` at `offset` under `mask`.
pub fn magic_matches(header: &[u8], offset: u8, magic: &[u8], mask: &[u8]) -> bool {
    let start = usize::from(offset);
    let Some(window) = header.get(start..start + magic.len()) else {
        return false;
    };
    window.iter().zip(magic).enumerate().all(|(i, (h, m))| {
        let k = mask.get(i).copied().unwrap_or(0xff);
        h & k == m & k
    })
}

/// Parse `\xNN`-escaped bytes (the kernel's register syntax and QEMU's script syntax).
/// Printable ASCII stands for itself; `\\` is a backslash.
pub fn parse_escaped(text: &str) -> Result<Vec<u8>, String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len() / 4);
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => match bytes.get(i + 1) {
                Some(b'x') => {
                    let hex = text
                        .get(i + 2..i + 4)
                        .ok_or_else(|| format!("truncated escape at byte {i}"))?;
                    let v = u8::from_str_radix(hex, 16)
                        .map_err(|_| format!("bad escape \\x{hex} at byte {i}"))?;
                    out.push(v);
                    i += 4;
                }
                Some(b'\\') => {
                    out.push(b'\\');
                    i += 2;
                }
                _ => return Err(format!("bad escape at byte {i}: only \\xNN and \\\\")),
            },
            c if c.is_ascii_graphic() => {
                out.push(c);
                i += 1;
            }
            c => {
                return Err(format!(
                    "unexpected byte 0x{c:02x} at {i}; write it as \\x{c:02x}"
                ));
            }
        }
    }
    Ok(out)
}

/// Every byte as `\xNN`: safe in a register string whatever the byte.
pub fn escape_bytes(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut s = String::with_capacity(bytes.len() * 4);
    for b in bytes {
        let _ = write!(s, "\\x{b:02x}");
    }
    s
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTable {
    rule: Vec<RawRule>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    name: String,
    family: String,
    #[serde(default)]
    aliases: Vec<String>,
    #[serde(default)]
    platforms: Vec<String>,
    emulator: Option<String>,
    #[serde(default)]
    offset: u8,
    magic: String,
    mask: String,
}

/// The parsed, validated rule table.
#[derive(Debug, Clone)]
pub struct Table {
    rules: Vec<Rule>,
}

impl Table {
    /// The table embedded in archctl, parsed on first use.
    pub fn builtin() -> &'static Table {
        static TABLE: OnceLock<Table> = OnceLock::new();
        TABLE.get_or_init(|| match Table::parse(BUILTIN_RULES) {
            Ok(t) => t,
            // The embedded table is validated by the test suite; a broken one is a build bug.
            Err(e) => panic!("embedded binfmt-rules/qemu.toml is invalid: {e}"),
        })
    }

    /// Parse and validate a table: unique names and aliases, sane magic/mask.
    pub fn parse(text: &str) -> Result<Table, ArchError> {
        let raw: RawTable = toml::from_str(text).map_err(|e| ArchError::Table(e.to_string()))?;
        let mut rules = Vec::with_capacity(raw.rule.len());
        let mut seen = std::collections::HashSet::new();
        for r in raw.rule {
            let bad = |why: String| ArchError::Table(format!("rule \"{}\": {why}", r.name));
            let magic = parse_escaped(&r.magic).map_err(|e| bad(format!("magic: {e}")))?;
            let mask = parse_escaped(&r.mask).map_err(|e| bad(format!("mask: {e}")))?;
            if magic.is_empty() || magic.len() > MAX_MAGIC_LEN {
                return Err(bad(format!("magic is {} bytes", magic.len())));
            }
            if mask.len() != magic.len() {
                return Err(bad(format!(
                    "mask is {} bytes, magic {}",
                    mask.len(),
                    magic.len()
                )));
            }
            if r.name.is_empty()
                || !r
                    .name
                    .bytes()
                    .all(|c| c.is_ascii_alphanumeric() || c == b'_')
            {
                return Err(bad("name must be [a-z0-9_]+".into()));
            }
            for n in std::iter::once(&r.name)
                .chain(&r.aliases)
                .chain(&r.platforms)
            {
                if *n != n.to_ascii_lowercase() {
                    return Err(bad(format!("\"{n}\" must be lower case")));
                }
                // An arm64 platform may be listed by two rules only if it is the same name.
                if !seen.insert(n.clone()) {
                    return Err(bad(format!("\"{n}\" is used by two rules")));
                }
            }
            rules.push(Rule {
                emulator: r.emulator.unwrap_or_else(|| r.name.clone()),
                name: r.name,
                family: r.family,
                aliases: r.aliases,
                platforms: r.platforms,
                offset: r.offset,
                magic,
                mask,
            });
        }
        if rules.is_empty() {
            return Err(ArchError::Table("no rules".into()));
        }
        Ok(Table { rules })
    }

    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// Exact QEMU name.
    pub fn get(&self, name: &str) -> Option<&Rule> {
        self.rules.iter().find(|r| r.name == name)
    }

    /// Resolve what a user typed: QEMU name, alias or OCI platform, any case.
    pub fn lookup(&self, name: &str) -> Result<&Rule, ArchError> {
        self.rules
            .iter()
            .find(|r| r.is_called(name))
            .ok_or_else(|| ArchError::Unknown {
                name: name.to_string(),
                valid: self.names().join(", "),
            })
    }

    /// Resolve several names, keeping the first occurrence of each rule.
    pub fn lookup_all<S: AsRef<str>>(&self, names: &[S]) -> Result<Vec<&Rule>, ArchError> {
        let mut out: Vec<&Rule> = Vec::new();
        for n in names {
            let r = self.lookup(n.as_ref())?;
            if !out.iter().any(|o| o.name == r.name) {
                out.push(r);
            }
        }
        Ok(out)
    }

    pub fn names(&self) -> Vec<&str> {
        self.rules.iter().map(|r| r.name.as_str()).collect()
    }

    /// The rule whose test program an entry (offset, magic, mask) would catch.
    pub fn classify(&self, offset: u8, magic: &[u8], mask: &[u8]) -> Option<&Rule> {
        self.rules.iter().find(|r| {
            let header = representative_header(r);
            magic_matches(&header, offset, magic, mask)
        })
    }

    /// The rule for the machine name `uname -m` reports.
    pub fn for_machine(&self, machine: &str) -> Option<&Rule> {
        let m = machine.to_ascii_lowercase();
        // uname says "mips64"/"mips" for both endiannesses: the build's endianness decides.
        let m = match (m.as_str(), cfg!(target_endian = "little")) {
            ("mips64", true) => "mips64el".to_string(),
            ("mips", true) => "mipsel".to_string(),
            _ => m,
        };
        self.rules.iter().find(|r| r.is_called(&m))
    }
}

/// The ELF header that stands for a rule: its test program's when archctl has one,
/// else the rule's magic itself (the bytes the rule insists on).
pub fn representative_header(rule: &Rule) -> Vec<u8> {
    match crate::testprog::program(&rule.name) {
        Some(p) => p.bytes[..p.bytes.len().min(256)].to_vec(),
        None => {
            let mut h = vec![0u8; usize::from(rule.offset)];
            h.extend(rule.magic.iter().zip(&rule.mask).map(|(m, k)| m & k));
            h
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_table_parses_and_is_validated() {
        let t = Table::parse(BUILTIN_RULES).unwrap();
        assert!(t.rules().len() >= 30, "{} rules", t.rules().len());
        for r in t.rules() {
            assert_eq!(r.magic.len(), r.mask.len(), "{}", r.name);
            assert_eq!(&r.magic[..4], b"\x7fELF", "{}", r.name);
            // The OS/ABI byte (7) must never be fully compared: Linux binaries carry 0 or 3.
            if r.magic.len() > 7 {
                assert_ne!(r.mask[7], 0xff, "{}: OS/ABI byte must be masked", r.name);
            }
        }
    }

    #[test]
    fn lookup_accepts_names_aliases_platforms_any_case() {
        let t = Table::builtin();
        for (input, want) in [
            ("x86_64", "x86_64"),
            ("AMD64", "x86_64"),
            ("linux/amd64", "x86_64"),
            ("arm64", "aarch64"),
            ("linux/arm64/v8", "aarch64"),
            ("armhf", "arm"),
            ("linux/arm/v7", "arm"),
            ("386", "i386"),
            ("ppc64el", "ppc64le"),
            ("loong64", "loongarch64"),
            (" riscv64 ", "riscv64"),
        ] {
            assert_eq!(t.lookup(input).unwrap().name, want, "{input}");
        }
        let err = t.lookup("z80").unwrap_err().to_string();
        assert!(err.contains("\"z80\"") && err.contains("aarch64"), "{err}");
    }

    #[test]
    fn lookup_all_dedups() {
        let t = Table::builtin();
        let r = t.lookup_all(&["amd64", "x86_64", "arm64"]).unwrap();
        let names: Vec<_> = r.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["x86_64", "aarch64"]);
    }

    #[test]
    fn escapes_round_trip() {
        let b = parse_escaped(r"\x7fELF\x02\\").unwrap();
        assert_eq!(b, b"\x7fELF\x02\\");
        assert_eq!(parse_escaped(&escape_bytes(&b)).unwrap(), b);
        assert!(parse_escaped(r"\x7").is_err());
        assert!(parse_escaped(r"\q").is_err());
        assert!(parse_escaped("a b").is_err());
    }

    #[test]
    fn table_validation_names_the_problem() {
        let bad = "[[rule]]\nname='x'\nfamily='x'\nmagic='\\x7f'\nmask='\\xff\\xff'\n";
        let e = Table::parse(bad).unwrap_err().to_string();
        assert!(e.contains("rule \"x\"") && e.contains("mask"), "{e}");
        let unknown = "[[rule]]\nname='x'\nfamily='x'\nmagic='\\x7f'\nmask='\\xff'\ncolour=1\n";
        assert!(
            Table::parse(unknown)
                .unwrap_err()
                .to_string()
                .contains("colour")
        );
        let dup = "[[rule]]\nname='x'\nfamily='x'\nmagic='\\x7f'\nmask='\\xff'\n[[rule]]\nname='y'\naliases=['x']\nfamily='x'\nmagic='\\x7f'\nmask='\\xff'\n";
        assert!(
            Table::parse(dup)
                .unwrap_err()
                .to_string()
                .contains("two rules")
        );
    }

    #[test]
    fn machine_names_map_to_rules() {
        let t = Table::builtin();
        assert_eq!(t.for_machine("x86_64").unwrap().name, "x86_64");
        assert_eq!(t.for_machine("aarch64").unwrap().name, "aarch64");
        assert_eq!(t.for_machine("armv7l").unwrap().name, "arm");
        assert_eq!(t.for_machine("i686").unwrap().name, "i386");
        assert!(t.for_machine("vax").is_none());
    }
}
