//! The rule file's format and its validation, shared by `build.rs` (which turns the
//! embedded table into static data at build time, so start-up parses nothing) and by
//! [`crate::arch::Table::parse`]. Plain data only: this file is compiled twice.

use serde::Deserialize;

/// Longest magic the kernel accepts (BINPRM_BUF_SIZE is 256; QEMU's longest is 40).
pub const MAX_MAGIC_LEN: usize = 128;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTable {
    pub rule: Vec<RawRule>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRule {
    pub name: String,
    pub family: String,
    #[serde(default)]
    pub aliases: Vec<String>,
    #[serde(default)]
    pub platforms: Vec<String>,
    pub emulator: Option<String>,
    #[serde(default)]
    pub offset: u8,
    pub magic: String,
    pub mask: String,
    /// Other e_machine values binaries of this target carry in the wild (microblaze's
    /// pre-2009 0xbaab, which QEMU's and Debian's entries still match).
    #[serde(default)]
    pub legacy_machines: Vec<u16>,
}

/// One QEMU linux-user target: a validated rule with its bytes decoded.
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
    /// Other e_machine values of this target's binaries (see [`RawRule`]).
    pub legacy_machines: Vec<u16>,
}

fn hex_digit(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
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
                    let (Some(&hi), Some(&lo)) = (bytes.get(i + 2), bytes.get(i + 3)) else {
                        return Err(format!("truncated escape at byte {i}"));
                    };
                    // Two hex digits, nothing else (`from_str_radix` would take a sign:
                    // `\x+f`), as the kernel reads them. The table is parsed on every
                    // run: by hand, not through a str parser.
                    match (hex_digit(hi), hex_digit(lo)) {
                        (Some(h), Some(l)) => out.push(h << 4 | l),
                        _ => {
                            let hex = String::from_utf8_lossy(&bytes[i + 2..i + 4]);
                            return Err(format!("bad escape \\x{hex} at byte {i}"));
                        }
                    }
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

/// Parse and validate a rule file: unique lower-case names, aliases and platforms;
/// magic and mask of equal, sane length.
pub fn parse_table(text: &str) -> Result<Vec<Rule>, String> {
    let raw: RawTable = toml::from_str(text).map_err(|e| e.to_string())?;
    let mut rules = Vec::with_capacity(raw.rule.len());
    let mut seen = std::collections::HashSet::new();
    for r in raw.rule {
        let bad = |why: String| format!("rule \"{}\": {why}", r.name);
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
            legacy_machines: r.legacy_machines,
        });
    }
    if rules.is_empty() {
        return Err("no rules".into());
    }
    Ok(rules)
}
