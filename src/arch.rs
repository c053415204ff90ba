//! The architecture table: QEMU targets, their binfmt_misc magic/mask, the names users
//! type for them and the OCI platforms they serve. The table is data
//! (`binfmt-rules/qemu.toml`), embedded at build time and parsed once.

use std::sync::OnceLock;

/// The embedded table as static data, written by build.rs from `binfmt-rules/qemu.toml`.
mod generated {
    /// One rule, as build.rs emits it.
    pub struct StaticRule {
        pub name: &'static str,
        pub family: &'static str,
        pub aliases: &'static [&'static str],
        pub platforms: &'static [&'static str],
        pub emulator: &'static str,
        pub offset: u8,
        pub magic: &'static [u8],
        pub mask: &'static [u8],
        pub legacy_machines: &'static [u16],
    }
    include!(concat!(env!("OUT_DIR"), "/rules.rs"));
}

/// The rule table shipped with archctl.
pub const BUILTIN_RULES: &str = include_str!("../binfmt-rules/qemu.toml");

#[derive(Debug, thiserror::Error)]
pub enum ArchError {
    #[error("unknown architecture \"{name}\": valid names are {valid}")]
    Unknown { name: String, valid: String },
    #[error("rule table: {0}")]
    Table(String),
}

/// One QEMU linux-user target (the data is defined with the file format, shared with
/// build.rs).
pub use crate::rules_data::Rule;

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
    /// Compares without allocating: `enable` asks it ~35 times per name.
    pub fn is_called(&self, name: &str) -> bool {
        let name = name.trim();
        let eq = |n: &String| n.eq_ignore_ascii_case(name);
        eq(&self.name) || self.aliases.iter().any(eq) || self.platforms.iter().any(eq)
    }
}

/// binfmt_misc's matching rule: every byte of `magic` at `offset` under `mask`.
pub fn magic_matches(header: &[u8], offset: u8, magic: &[u8], mask: &[u8]) -> bool {
    let start = usize::from(offset);
    let Some(window) = header.get(start..start + magic.len()) else {
        return false;
    };
    if mask.len() >= magic.len() {
        return window
            .iter()
            .zip(magic)
            .zip(mask)
            .all(|((h, m), k)| h & k == m & k);
    }
    window.iter().zip(magic).enumerate().all(|(i, (h, m))| {
        let k = mask.get(i).copied().unwrap_or(0xff);
        h & k == m & k
    })
}

pub use crate::rules_data::{MAX_MAGIC_LEN, parse_escaped};

/// Every byte as `\xNN`: safe in a register string whatever the byte. (By hand:
/// `write!` per byte cost a quarter of `enable`'s instructions.)
pub fn escape_bytes(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 4);
    for b in bytes {
        s.push('\\');
        s.push('x');
        s.push(char::from(HEX[usize::from(b >> 4)]));
        s.push(char::from(HEX[usize::from(b & 15)]));
    }
    s
}

/// Lower-case hex, as the kernel prints magic and mask (and digests are written).
pub fn hex(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(HEX[usize::from(b >> 4)]));
        s.push(char::from(HEX[usize::from(b & 15)]));
    }
    s
}

/// The parsed, validated rule table.
#[derive(Debug, Clone)]
pub struct Table {
    rules: Vec<Rule>,
    /// Each rule's [`representative_headers`], built on first use.
    headers: OnceLock<Vec<Vec<Vec<u8>>>>,
}

impl Table {
    /// The table embedded in archctl: decoded and validated by build.rs, so start-up
    /// only copies static data.
    pub fn builtin() -> &'static Table {
        static TABLE: OnceLock<Table> = OnceLock::new();
        TABLE.get_or_init(|| Table {
            rules: generated::RULES
                .iter()
                .map(|r| Rule {
                    name: r.name.to_string(),
                    family: r.family.to_string(),
                    aliases: r.aliases.iter().map(|s| s.to_string()).collect(),
                    platforms: r.platforms.iter().map(|s| s.to_string()).collect(),
                    emulator: r.emulator.to_string(),
                    offset: r.offset,
                    magic: r.magic.to_vec(),
                    mask: r.mask.to_vec(),
                    legacy_machines: r.legacy_machines.to_vec(),
                })
                .collect(),
            headers: OnceLock::new(),
        })
    }

    /// Parse and validate a rule file (the same checks build.rs applies to the
    /// embedded one).
    pub fn parse(text: &str) -> Result<Table, ArchError> {
        let rules = crate::rules_data::parse_table(text).map_err(ArchError::Table)?;
        Ok(Table {
            rules,
            headers: OnceLock::new(),
        })
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

    /// The rule whose test program an entry (offset, magic, mask) would catch (the
    /// first, when it would catch several).
    pub fn classify(&self, offset: u8, magic: &[u8], mask: &[u8]) -> Option<&Rule> {
        self.selected_by(offset, magic, mask).into_iter().next()
    }

    /// Every rule whose binaries an entry (offset, magic, mask) would catch: those with
    /// a [`representative_headers`] header it matches. An entry that serves one
    /// architecture selects exactly one rule.
    pub fn selected_by(&self, offset: u8, magic: &[u8], mask: &[u8]) -> Vec<&Rule> {
        let headers = self
            .headers
            .get_or_init(|| self.rules.iter().map(representative_headers).collect());
        self.rules
            .iter()
            .zip(headers)
            .filter(|(_, hs)| hs.iter().any(|h| magic_matches(h, offset, magic, mask)))
            .map(|(r, _)| r)
            .collect()
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

/// The headers that stand for a rule's binaries: [`representative_header`], then the
/// same with each of the rule's legacy e_machine values (in the header's byte order).
pub fn representative_headers(rule: &Rule) -> Vec<Vec<u8>> {
    let first = representative_header(rule);
    let mut all = Vec::with_capacity(1 + rule.legacy_machines.len());
    for m in &rule.legacy_machines {
        let mut h = first.clone();
        if let Some(field) = h.get_mut(18..20) {
            // EI_DATA (byte 5): 2 is big-endian.
            let big = first.get(5) == Some(&2);
            field.copy_from_slice(&if big {
                m.to_be_bytes()
            } else {
                m.to_le_bytes()
            });
            all.push(h);
        }
    }
    all.insert(0, first);
    all
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
    fn builtin_table_is_the_parsed_rule_file() {
        let parsed = Table::parse(BUILTIN_RULES).unwrap();
        assert_eq!(parsed.rules(), Table::builtin().rules());
    }

    #[test]
    fn builtin_table_parses_and_is_validated() {
        let t = Table::builtin();
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
