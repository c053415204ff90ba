//! Every parser is bounded (issue #11, class 4b): property tests of the parsers that read
//! what users, registries and the kernel hand archctl — image references,
//! `WWW-Authenticate` challenges, the configuration's TOML, binfmt_misc entry files,
//! register strings and their `\xNN` escapes, and JSON nested without end. Arbitrary
//! input is an error, never a panic or a stack overflow; 1 MB of it ends (no timing
//! thresholds: that it returns is the property); what archctl writes, it reads back.
//!
//! A bounded number of cases per property ([`CASES`]); a failure's seed is kept in
//! `tests/proptest-regressions/properties.txt` and replayed first on every later run.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::{collections::BTreeMap, path::PathBuf, process::Command, time::Duration};

use archctl::{
    arch::{Table, escape_bytes, parse_escaped},
    binfmt::{Entry, Flags, Matcher, Registration},
    config::{Architectures, BinfmtConfig, Config},
    registry::{
        auth::{Challenge, parse_challenge},
        cache::{Cache, sha256_digest},
        reference::ImageRef,
    },
};
use proptest::{prelude::*, test_runner::FileFailurePersistence};

use support::{ARCHCTL, RegistryIsolated, RunExt, assert_code, assert_error_line};

/// Cases per property: the whole file runs in seconds in a debug build.
const CASES: u32 = 256;

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: CASES,
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(
            "tests/proptest-regressions/properties.txt",
        ))),
        ..ProptestConfig::default()
    }
}

/// Strings built from pieces of a grammar (and a few odd characters): random strings
/// alone almost never reach a parser's interesting states.
fn fragments(pieces: &'static [&'static str], max: usize) -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![
            4 => prop::sample::select(pieces).prop_map(str::to_string),
            1 => any::<char>().prop_map(|c| c.to_string()),
        ],
        0..max,
    )
    .prop_map(|v| v.concat())
}

/// A megabyte of `piece`, repeated.
fn megabyte(piece: &str) -> String {
    piece.repeat((1 << 20) / piece.len().max(1))
}

// ---------------------------------------------------------------------------------------
// Image references
// ---------------------------------------------------------------------------------------

const REFERENCE_PIECES: &[&str] = &[
    "a",
    "b0",
    "Z",
    "/",
    ":",
    ".",
    "-",
    "_",
    "__",
    "@",
    "[",
    "]",
    "::1",
    "fe80::",
    "5000",
    "localhost",
    "docker.io",
    "library",
    "sha256:",
    "127.0.0.1",
    "%",
    " ",
    "é",
    "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
];

/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`
fn component() -> impl Strategy<Value = String> {
    "[a-z0-9]{1,6}((\\.|_|__|-{1,3})[a-z0-9]{1,6}){0,2}"
}

fn label() -> impl Strategy<Value = String> {
    "[A-Za-z0-9]([A-Za-z0-9-]{0,6}[A-Za-z0-9])?"
}

/// A registry host Docker would take for one (a dot, a port, `localhost`, an IP).
fn domain() -> impl Strategy<Value = String> {
    let port =
        prop::option::of(1u16..).prop_map(|p| p.map(|p| format!(":{p}")).unwrap_or_default());
    let host = prop_oneof![
        (label(), prop::collection::vec(label(), 1..3))
            .prop_map(|(first, rest)| format!("{first}.{}", rest.join("."))),
        Just("localhost".to_string()),
        any::<std::net::Ipv4Addr>().prop_map(|ip| ip.to_string()),
        any::<std::net::Ipv6Addr>().prop_map(|ip| format!("[{ip}]")),
    ];
    (host, port).prop_map(|(h, p)| format!("{h}{p}"))
}

/// The parts of a valid reference: host, path components, tag, digest.
fn valid_reference()
-> impl Strategy<Value = (Option<String>, Vec<String>, Option<String>, Option<String>)> {
    (
        prop::option::of(domain()),
        prop::collection::vec(component(), 1..4),
        prop::option::of("[A-Za-z0-9_][A-Za-z0-9_.-]{0,20}"),
        prop::option::of("[0-9a-f]{64}".prop_map(|h| format!("sha256:{h}"))),
    )
        // Without a host, a first component with a dot would be read as one (as Docker does).
        .prop_filter("first component looks like a host", |(d, path, _, _)| {
            d.is_some() || path.len() == 1 || !path[0].contains('.')
        })
}

fn same_reference(a: &ImageRef, b: &ImageRef) -> bool {
    (&a.registry, &a.repository, &a.tag, &a.digest)
        == (&b.registry, &b.repository, &b.tag, &b.digest)
}

/// A parsed reference's endpoint makes a URL (what the client builds from it). Except
/// a host whose last label is a number (`1.2.3.4.5`, `a.0x1`): Docker's grammar takes it
/// for a name, URLs for a bad IPv4 address (the request fails with that error).
fn endpoint_is_a_url_host(r: &ImageRef) -> bool {
    let host = archctl::registry::reference::split_host(r.endpoint());
    let last = host.rsplit('.').next().unwrap_or("");
    let number = |l: &str| match l.strip_prefix("0x").or(l.strip_prefix("0X")) {
        Some(h) => h.bytes().all(|c| c.is_ascii_hexdigit()),
        None => !l.is_empty() && l.bytes().all(|c| c.is_ascii_digit()),
    };
    if number(last) && host.parse::<std::net::Ipv4Addr>().is_err() {
        return true;
    }
    reqwest::Url::parse(&format!("https://{}/v2/", r.endpoint()))
        .is_ok_and(|u| u.path() == "/v2/" && u.username().is_empty())
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn references_parse_to_what_they_say_and_print_back(
        (domain, path, tag, digest) in valid_reference()
    ) {
        let mut text = domain.clone().map(|d| format!("{d}/")).unwrap_or_default();
        text.push_str(&path.join("/"));
        if let Some(t) = &tag {
            text.push_str(&format!(":{t}"));
        }
        if let Some(d) = &digest {
            text.push_str(&format!("@{d}"));
        }
        let parsed = ImageRef::parse(&text);
        let registry = domain.clone().unwrap_or_else(|| "docker.io".into());
        if registry.len() + path.join("/").len() + "library/".len() + 1 > 255 {
            // Near Docker's 255-character limit: an error is fine, a panic is not.
            return Ok(());
        }
        let r = parsed.map_err(|e| TestCaseError::fail(format!("{text}: {e}")))?;
        let registry = match registry.as_str() {
            "index.docker.io" | "registry-1.docker.io" => "docker.io",
            d => d,
        };
        prop_assert_eq!(&r.registry, registry);
        let repository = if registry == "docker.io" && path.len() == 1 {
            format!("library/{}", path[0])
        } else {
            path.join("/")
        };
        prop_assert_eq!(&r.repository, &repository);
        prop_assert_eq!(&r.digest, &digest);
        if tag.is_some() || digest.is_none() {
            prop_assert_eq!(r.tag.as_deref(), Some(tag.as_deref().unwrap_or("latest")));
        }
        let again = ImageRef::parse(&r.to_string()).unwrap();
        prop_assert!(same_reference(&r, &again), "{} reparsed as {:?}", r, again);
        prop_assert!(endpoint_is_a_url_host(&r), "{}", r.endpoint());
    }

    #[test]
    fn any_reference_text_is_an_error_or_a_reference_that_prints_back(
        text in fragments(REFERENCE_PIECES, 24)
    ) {
        if let Ok(r) = ImageRef::parse(&text) {
            let printed = r.to_string();
            let again = ImageRef::parse(&printed)
                .map_err(|e| TestCaseError::fail(format!("{text:?} printed as {printed}: {e}")))?;
            prop_assert!(same_reference(&r, &again), "{:?}: {} reparsed as {:?}", text, r, again);
            prop_assert_eq!(again.to_string(), printed);
            prop_assert!(endpoint_is_a_url_host(&r), "{:?}: endpoint {}", text, r.endpoint());
        }
    }

    #[test]
    fn arbitrary_unicode_is_never_a_panic_for_the_reference_parser(text in any::<String>()) {
        let _ = ImageRef::parse(&text);
        let _ = archctl::registry::reference::is_loopback_host(&text);
    }
}

#[test]
fn a_megabyte_reference_is_refused() {
    for piece in ["a", "a/", "a:", "[", "@", "é"] {
        let e = ImageRef::parse(&megabyte(piece)).unwrap_err();
        assert!(e.to_string().contains("too long"), "{e}");
    }
}

#[test]
fn a_bracketed_host_is_followed_by_a_port_or_nothing() {
    // The parser took `[::1]x` for a host (it checked only that what follows `]` is not
    // `:` with a bad port); no URL can be built from it.
    for bad in ["[::1]x/a", "[::1]5000/a", "[::1]]/a"] {
        assert!(ImageRef::parse(bad).is_err(), "{bad}");
    }
    for good in ["[::1]/a", "[::1]:5000/a"] {
        let r = ImageRef::parse(good).unwrap();
        assert!(endpoint_is_a_url_host(&r), "{good}");
    }
}

// ---------------------------------------------------------------------------------------
// WWW-Authenticate
// ---------------------------------------------------------------------------------------

const CHALLENGE_PIECES: &[&str] = &[
    "Bearer",
    "Basic",
    "bearer ",
    " ",
    ",",
    "=",
    "\"",
    "\\",
    "\\\"",
    "realm",
    "service",
    "scope",
    "realm=\"",
    "https://a/t",
    "\t",
    ",,",
    "é",
];

/// What a header value may hold (`HeaderValue::to_str`): visible ASCII, space, tab.
fn header_text() -> impl Strategy<Value = String> {
    "[ -~\t]{0,40}"
}

/// An RFC 9110 quoted-string for any header text.
fn quoted(s: &str) -> String {
    let mut q = String::from("\"");
    for c in s.chars() {
        if c == '"' || c == '\\' {
            q.push('\\');
        }
        q.push(c);
    }
    q.push('"');
    q
}

fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|c| c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&c))
}

/// Parameter names as a server may spell them.
fn spelled(name: &'static str) -> impl Strategy<Value = String> {
    prop::collection::vec(any::<bool>(), name.len()).prop_map(move |up| {
        name.chars()
            .zip(up)
            .map(|(c, u)| if u { c.to_ascii_uppercase() } else { c })
            .collect()
    })
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn bearer_challenges_round_trip_through_quoted_strings(
        realm in header_text(),
        service in prop::option::of(header_text()),
        scope in prop::option::of(header_text()),
        scheme in spelled("bearer"),
        names in (spelled("realm"), spelled("service"), spelled("scope")),
        separator in prop::sample::select(&[",", ", ", " ,", " , ", ",\t"][..]),
        order in Just(vec![0usize, 1, 2]).prop_shuffle(),
        bare in any::<bool>(),
    ) {
        let values = [Some(&realm), service.as_ref(), scope.as_ref()];
        let names = [names.0, names.1, names.2];
        let params: Vec<String> = order
            .iter()
            .filter_map(|&i| {
                let v = values[i]?;
                // A token may go unquoted, as some servers send it.
                Some(if bare && is_token(v) {
                    format!("{}={v}", names[i])
                } else {
                    format!("{}={}", names[i], quoted(v))
                })
            })
            .collect();
        let header = format!("{scheme} {}", params.join(separator));
        prop_assert_eq!(
            parse_challenge(&header),
            Some(Challenge::Bearer { realm, service, scope }),
            "{}", header
        );
    }

    #[test]
    fn any_challenge_text_is_a_challenge_or_none(text in fragments(CHALLENGE_PIECES, 30)) {
        let _ = parse_challenge(&text);
    }
}

#[test]
fn a_megabyte_challenge_ends() {
    for piece in [
        "Bearer realm=\"",
        "\\",
        ",",
        "=",
        "a",
        "\"\\\"",
        "Bearer a=b,",
    ] {
        let _ = parse_challenge(&megabyte(piece));
    }
    let long = "x".repeat(1 << 20);
    assert_eq!(
        parse_challenge(&format!("Bearer realm=\"{long}\"")),
        Some(Challenge::Bearer {
            realm: long,
            service: None,
            scope: None
        })
    );
}

#[test]
fn quoted_challenge_values_keep_their_spaces() {
    // The parser trimmed every value, quoted or not: a quoted-string is exact.
    assert_eq!(
        parse_challenge(r#"Bearer realm=" https://a/t ", scope="repository:a:pull ""#),
        Some(Challenge::Bearer {
            realm: " https://a/t ".into(),
            service: None,
            scope: Some("repository:a:pull ".into()),
        })
    );
    // A bare token still loses the spaces around it.
    assert_eq!(
        parse_challenge("Bearer realm = https://a/t , service=s"),
        Some(Challenge::Bearer {
            realm: "https://a/t".into(),
            service: Some("s".into()),
            scope: None,
        })
    );
}

// ---------------------------------------------------------------------------------------
// The configuration (TOML)
// ---------------------------------------------------------------------------------------

const TOML_PIECES: &[&str] = &[
    "[binfmt]\n",
    "[emulators]\n",
    "architectures",
    "flags",
    "verify",
    "force",
    "emulator_dir",
    " = ",
    "\"",
    "'",
    "[",
    "]",
    "{",
    "}",
    ",",
    "\n",
    "#",
    "\"all\"",
    "\"F\"",
    "true",
    "1",
    "aarch64",
    "\"/opt/q\"",
    "\"\"\"",
    "\\u00e9",
    "é",
    "\u{10ffff}",
    "[[",
    "]]",
    ".",
    "=",
];

fn arch_names() -> Vec<String> {
    Table::builtin()
        .names()
        .into_iter()
        .map(String::from)
        .collect()
}

fn absolute_path() -> impl Strategy<Value = PathBuf> {
    "(/[^/\u{0}]{1,12}){1,4}".prop_map(PathBuf::from)
}

fn any_config() -> impl Strategy<Value = Config> {
    let names = arch_names();
    let architectures = prop_oneof![
        Just(Architectures::Keyword("all".into())),
        prop::collection::vec(prop::sample::select(names.clone()), 0..4)
            .prop_map(Architectures::List),
    ];
    (
        architectures,
        "[POCFpocf]{0,4}",
        prop::option::of(absolute_path()),
        any::<bool>(),
        any::<bool>(),
        prop::collection::btree_map(prop::sample::select(names), absolute_path(), 0..4),
    )
        .prop_map(
            |(architectures, flags, emulator_dir, verify, force, emulators)| Config {
                binfmt: BinfmtConfig {
                    architectures,
                    flags,
                    emulator_dir,
                    verify,
                    force,
                },
                emulators: emulators.into_iter().collect::<BTreeMap<_, _>>(),
            },
        )
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn configurations_round_trip_through_toml(c in any_config()) {
        let text = toml::to_string(&c).unwrap();
        prop_assert_eq!(Config::parse(&text, Table::builtin()), Ok(c), "{}", text);
    }

    #[test]
    fn any_configuration_text_is_a_configuration_or_an_error(
        text in fragments(TOML_PIECES, 40)
    ) {
        let _ = Config::parse(&text, Table::builtin());
    }

    #[test]
    fn arbitrary_unicode_is_never_a_panic_for_the_configuration_parser(text in any::<String>()) {
        let _ = Config::parse(&text, Table::builtin());
    }
}

/// Run `f` on a thread with a small stack (the boot service's, a tokio worker's are
/// not larger): recursion the parser does not bound would overflow it.
fn on_small_stack<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::Builder::new()
        .stack_size(512 * 1024)
        .spawn(f)
        .unwrap()
        .join()
        .unwrap()
}

#[test]
fn deeply_nested_toml_is_an_error_not_a_stack_overflow() {
    let depth = 100_000;
    for (open, close) in [("[", "]"), ("{a=", "}"), ("[{a=", "}]")] {
        for key in ["x", "binfmt.architectures", "emulators.aarch64"] {
            let text = format!("{key} = {}{}\n", open.repeat(depth), close.repeat(depth));
            let e = on_small_stack(move || Config::parse(&text, Table::builtin()));
            // The toml crate stops at its recursion limit, naming the line.
            let e = e.unwrap_err();
            assert!(
                e.contains("line 1: ") && e.contains("recursion"),
                "{key} {open}: {e}"
            );
        }
    }
    let text = format!("{}\n", "[a.".repeat(100_000));
    assert!(on_small_stack(move || Config::parse(&text, Table::builtin())).is_err());
}

#[test]
fn a_megabyte_configuration_ends() {
    for piece in ["#", "\n", "[binfmt]\n", "a=1\n", "\"", "x.", "é"] {
        let _ = Config::parse(&megabyte(piece), Table::builtin());
    }
}

// ---------------------------------------------------------------------------------------
// binfmt_misc entry files
// ---------------------------------------------------------------------------------------

/// Text the kernel's entry file could hold: no NUL; no newline, which would make it
/// ambiguous (it separates the file's lines); the register syntax's ':' allowed (another
/// tool may register with another delimiter).
fn entry_text() -> impl Strategy<Value = String> {
    "[^\u{0}\n]{1,30}"
}

fn any_entry() -> impl Strategy<Value = Entry> {
    let magic = (0u8..=255, 1usize..=128).prop_flat_map(|(offset, len)| {
        (
            Just(offset),
            prop::collection::vec(any::<u8>(), len),
            prop::option::of(prop::collection::vec(any::<u8>(), len)),
        )
            .prop_map(|(offset, magic, mask)| Matcher::Magic {
                offset,
                magic,
                mask,
            })
    });
    let extension = "[^\u{0}\n/]{1,12}".prop_map(Matcher::Extension);
    (
        entry_text(),
        any::<bool>(),
        entry_text().prop_map(|i| format!("/{i}")),
        "[POCF]{0,4}",
        prop_oneof![magic, extension],
    )
        .prop_map(|(name, enabled, interpreter, flags, matcher)| Entry {
            name,
            enabled,
            interpreter,
            flags: Flags::parse(&flags).unwrap(),
            matcher,
        })
}

/// The file as the kernel prints it (fs/binfmt_misc.c, entry_status).
fn kernel_entry_text(e: &Entry) -> String {
    let mut s = format!(
        "{}\ninterpreter {}\nflags: {}\n",
        if e.enabled { "enabled" } else { "disabled" },
        e.interpreter,
        e.flags
    );
    match &e.matcher {
        Matcher::Extension(ext) => s.push_str(&format!("extension .{ext}\n")),
        Matcher::Magic {
            offset,
            magic,
            mask,
        } => {
            s.push_str(&format!(
                "offset {offset}\nmagic {}\n",
                archctl::arch::hex(magic)
            ));
            if let Some(m) = mask {
                s.insert_str(s.len() - 1, &format!("\nmask {}", archctl::arch::hex(m)));
            }
        }
    }
    s
}

const ENTRY_PIECES: &[&str] = &[
    "enabled\n",
    "disabled\n",
    "interpreter ",
    "/usr/bin/q",
    "flags: ",
    "OCF",
    "offset ",
    "255",
    "256",
    "-1",
    "magic ",
    "mask ",
    "7f454c46",
    "f",
    "zz",
    "extension ",
    ".",
    "\n",
    " ",
    "\r",
    "é",
];

proptest! {
    #![proptest_config(config())]

    #[test]
    fn entry_files_round_trip(e in any_entry()) {
        let text = kernel_entry_text(&e);
        let parsed = Entry::parse(&e.name, &text)
            .map_err(|err| TestCaseError::fail(format!("{text:?}: {err}")))?;
        prop_assert_eq!(parsed, e, "{:?}", text);
    }

    #[test]
    fn any_entry_text_is_an_entry_or_an_error(text in fragments(ENTRY_PIECES, 30)) {
        let _ = Entry::parse("x", &text);
    }

    #[test]
    fn arbitrary_unicode_is_never_a_panic_for_the_entry_parser(text in any::<String>()) {
        let _ = Entry::parse("x", &text);
    }
}

#[test]
fn a_megabyte_entry_file_ends() {
    for piece in [
        "\n",
        "magic ",
        "magic ff\n",
        "mask f",
        "interpreter /q\n",
        "é",
    ] {
        let _ = Entry::parse("x", &megabyte(piece));
    }
}

#[test]
fn entry_files_keep_what_the_kernel_prints() {
    // An extension that starts with a dot is printed `extension ..x`: one dot is the
    // kernel's, the other the extension's (the parser stripped them all).
    let e = Entry::parse("x", "enabled\ninterpreter /q\nflags: \nextension ..pyc\n").unwrap();
    assert_eq!(e.matcher, Matcher::Extension(".pyc".into()));
    // A carriage return is part of an interpreter's path (`lines()` dropped it).
    let e = Entry::parse(
        "x",
        "enabled\ninterpreter /q\r\nflags: F\noffset 0\nmagic 7f\n",
    )
    .unwrap();
    assert_eq!(e.interpreter, "/q\r");
}

// ---------------------------------------------------------------------------------------
// Register strings and their escapes
// ---------------------------------------------------------------------------------------

/// What the kernel made of a register string (fs/binfmt_misc.c, create_entry).
#[derive(Debug, PartialEq, Eq)]
struct KernelEntry {
    name: Vec<u8>,
    offset: u8,
    magic: Vec<u8>,
    mask: Option<Vec<u8>>,
    interpreter: Vec<u8>,
    flags: String,
}

const MAX_REGISTER_LENGTH: usize = 1920;
const BINPRM_BUF_SIZE: usize = 256;

/// `strchr`: the position of `del` from `from`, or `None` at a NUL first.
fn strchr(buf: &[u8], from: usize, del: u8) -> Option<usize> {
    buf[from..]
        .iter()
        .position(|&c| c == del || c == 0)
        .map(|i| from + i)
        .filter(|&i| buf[i] == del)
}

/// `scanarg`: past the field's end (its delimiter), or `None` for a malformed `\x`.
fn scanarg(buf: &[u8], mut s: usize, del: u8) -> Option<usize> {
    loop {
        let c = buf[s];
        s += 1;
        if c == del {
            return Some(s);
        }
        if c == b'\\' && buf[s] == b'x' {
            s += 1;
            for _ in 0..2 {
                if !buf[s].is_ascii_hexdigit() {
                    return None;
                }
                s += 1;
            }
        }
    }
}

/// `string_unescape_inplace(.., UNESCAPE_HEX)` up to the first NUL.
fn unescape_hex(field: &[u8]) -> Vec<u8> {
    let end = field.iter().position(|&c| c == 0).unwrap_or(field.len());
    let f = &field[..end];
    let hex = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let mut out = Vec::new();
    let mut i = 0;
    while i < f.len() {
        if f[i] == b'\\' && i + 1 < f.len() {
            // A backslash escapes the next character: `\xN` or `\xNN`, else both are kept.
            if f[i + 1] == b'x'
                && let Some(h) = f.get(i + 2).copied().and_then(hex)
            {
                i += 3;
                let mut v = h;
                if let Some(l) = f.get(i).copied().and_then(hex) {
                    v = v << 4 | l;
                    i += 1;
                }
                out.push(v);
                continue;
            }
            out.push(b'\\');
            i += 1;
        }
        out.push(f[i]);
        i += 1;
    }
    out
}

/// The kernel's parse of a magic ('M') register string; `None` is EINVAL.
fn kernel_register(text: &str) -> Option<KernelEntry> {
    let count = text.len();
    if !(11..=MAX_REGISTER_LENGTH).contains(&count) {
        return None;
    }
    let mut buf = text.as_bytes().to_vec();
    let del = buf[0];
    buf.extend([del; 8]);
    let name_end = strchr(&buf, 1, del)?;
    let name = buf[1..name_end].to_vec();
    if name.is_empty() || name == b"." || name == b".." || name.contains(&b'/') {
        return None;
    }
    let mut p = name_end + 1;
    if buf[p] != b'M' || buf[p + 1] != del {
        return None;
    }
    p += 2;
    let s = strchr(&buf, p, del)?;
    let offset = if p == s {
        0
    } else {
        std::str::from_utf8(&buf[p..s]).ok()?.parse::<i64>().ok()?
    };
    if offset < 0 {
        return None;
    }
    p = s + 1;
    let magic_start = p;
    p = scanarg(&buf, p, del)?;
    let magic_raw = buf[magic_start..p - 1].to_vec();
    if magic_raw.first().is_none_or(|&c| c == 0) {
        return None;
    }
    let mask_start = p;
    p = scanarg(&buf, p, del)?;
    let mask_raw = buf[mask_start..p - 1].to_vec();
    let magic = unescape_hex(&magic_raw);
    let mask = match mask_raw.first() {
        None | Some(0) => None,
        Some(_) => Some(unescape_hex(&mask_raw)),
    };
    if mask.as_ref().is_some_and(|m| m.len() != magic.len()) {
        return None;
    }
    if magic.len() > BINPRM_BUF_SIZE || ((BINPRM_BUF_SIZE - magic.len()) as i64) < offset {
        return None;
    }
    let interp_end = strchr(&buf, p, del)?;
    let interpreter = buf[p..interp_end].to_vec();
    if interpreter.is_empty() {
        return None;
    }
    p = interp_end + 1;
    let flags_start = p;
    while matches!(buf[p], b'P' | b'O' | b'C' | b'F') {
        p += 1;
    }
    let flags = String::from_utf8(buf[flags_start..p].to_vec()).ok()?;
    if buf[p] == b'\n' {
        p += 1;
    }
    if p != count {
        return None;
    }
    Some(KernelEntry {
        name,
        offset: u8::try_from(offset).ok()?,
        magic,
        mask,
        interpreter,
        flags,
    })
}

fn any_registration() -> impl Strategy<Value = Registration> {
    let name = prop_oneof!["[a-z0-9_.-]{1,20}", "[^/:\n]{0,70}", Just("..".to_string()),];
    let bytes = |max: usize| prop::collection::vec(any::<u8>(), 0..max);
    let lengths = prop_oneof![
        3 => (1usize..=40).prop_flat_map(move |n| {
            (prop::collection::vec(any::<u8>(), n), prop::collection::vec(any::<u8>(), n))
        }),
        1 => (bytes(300), bytes(300)),
    ];
    (
        name,
        any::<u8>(),
        lengths,
        prop_oneof!["/[^:\n]{0,40}", "/[a-z/]{1500,1800}"],
        "[POCF]{0,4}",
    )
        .prop_map(
            |(name, offset, (magic, mask), interpreter, flags)| Registration {
                name,
                offset,
                magic,
                mask,
                interpreter,
                flags: Flags::parse(&flags).unwrap(),
            },
        )
}

proptest! {
    #![proptest_config(config())]

    /// Whatever `validate` lets through, the kernel takes as exactly that entry.
    #[test]
    fn validated_registrations_are_what_the_kernel_registers(reg in any_registration()) {
        if reg.validate().is_err() {
            return Ok(());
        }
        let line = reg.register_string();
        let k = kernel_register(&line)
            .ok_or_else(|| TestCaseError::fail(format!("the kernel refuses {line:?}")))?;
        prop_assert_eq!(
            k,
            KernelEntry {
                name: reg.name.clone().into_bytes(),
                offset: reg.offset,
                magic: reg.magic.clone(),
                mask: Some(reg.mask.clone()),
                interpreter: reg.interpreter.clone().into_bytes(),
                flags: reg.flags.to_string(),
            }
        );
    }

    /// Every byte survives the kernel's unescaping, and archctl's own.
    #[test]
    fn escaped_bytes_unescape_to_themselves(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        let escaped = escape_bytes(&bytes);
        prop_assert!(!escaped.contains([':', '\n', '\0']));
        prop_assert_eq!(unescape_hex(escaped.as_bytes()), bytes.clone());
        prop_assert_eq!(parse_escaped(&escaped), Ok(bytes));
    }

    /// What archctl's parser accepts, the kernel reads the same.
    #[test]
    fn escaped_text_means_what_the_kernel_reads(
        text in fragments(&["\\x", "\\\\", "\\", "x", "0", "f", "F", "g", "+", "+f", "-", " ", "7f", "é"], 20)
    ) {
        // In a register string, ':' ends the field. And `\\` is archctl's rule-file
        // syntax for one backslash: the kernel knows only `\xNN` (archctl writes every
        // byte so).
        prop_assume!(!text.contains(':') && !text.contains("\\\\"));
        if let Ok(bytes) = parse_escaped(&text) {
            let mut field = text.clone().into_bytes();
            field.push(b':');
            prop_assert_eq!(scanarg(&field, 0, b':'), Some(field.len()), "{:?}", text);
            prop_assert_eq!(unescape_hex(text.as_bytes()), bytes, "{:?}", text);
        }
    }
}

#[test]
fn registrations_the_kernel_would_refuse_are_refused_first() {
    let ok = Registration {
        name: "qemu-x".into(),
        offset: 0,
        magic: vec![0x7f, b'E'],
        mask: vec![0xff, 0xff],
        interpreter: "/q".into(),
        flags: Flags::FIX_BINARY,
    };
    assert!(ok.validate().is_ok());
    type Change = fn(&mut Registration);
    let cases: [(&str, Change); 7] = [
        ("NUL in name", |r| r.name = "a\0b".into()),
        ("NUL in interpreter", |r| r.interpreter = "/q\0".into()),
        ("empty magic", |r| {
            r.magic.clear();
            r.mask.clear()
        }),
        ("mask shorter than magic", |r| r.mask = vec![0xff]),
        ("magic past the kernel's 256-byte buffer", |r| {
            r.magic = vec![1; 257];
            r.mask = vec![0xff; 257]
        }),
        ("offset + magic past 256 bytes", |r| {
            r.offset = 255;
        }),
        ("longer than the kernel's 1920 bytes", |r| {
            r.interpreter = format!("/{}", "q".repeat(1910))
        }),
    ];
    for (what, change) in cases {
        let mut r = ok.clone();
        change(&mut r);
        assert!(
            kernel_register(&r.register_string()).is_none(),
            "{what}: the kernel takes it"
        );
        assert!(r.validate().is_err(), "{what}: validate lets it through");
    }
}

#[test]
fn escapes_take_hex_digits_only() {
    // `u8::from_str_radix` takes a sign: `\x+f` was 0x0f; the kernel refuses it.
    for bad in [r"\x+f", r"\x-1", r"\x 1"] {
        assert!(parse_escaped(bad).is_err(), "{bad}");
    }
    assert_eq!(parse_escaped(r"\x0F\\a"), Ok(vec![0x0f, b'\\', b'a']));
}

// ---------------------------------------------------------------------------------------
// JSON nested without end
// ---------------------------------------------------------------------------------------

/// `depth` levels of arrays, or of objects, around a number.
fn nested(depth: usize, objects: bool) -> String {
    if objects {
        format!("{}1{}", "{\"a\":".repeat(depth), "}".repeat(depth))
    } else {
        format!("{}1{}", "[".repeat(depth), "]".repeat(depth))
    }
}

/// A document archctl reads, with `deep` as the value of a key it does not know (typed
/// parsing skips it, recursively) or of one it keeps as any JSON value.
fn with_nested(fields: &str, key: &str, deep: &str) -> Vec<u8> {
    format!("{{{fields},\"{key}\":{deep}}}").into_bytes()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..config() })]

    /// The cache checks a manifest's JSON before storing it and reads its tag files: at
    /// any depth, on a small stack, that ends in a refusal or a value, not a stack
    /// overflow; a manifest of a sane depth is kept.
    #[test]
    fn deeply_nested_json_in_the_cache_is_refused(
        depth in prop_oneof![1usize..100, 200usize..200_000],
        objects in any::<bool>(),
    ) {
        let (blob, tag) = on_small_stack(move || {
            let dir = tempfile::tempdir().unwrap();
            let cache = Cache::new(dir.path().to_path_buf(), Duration::from_secs(3600));
            let deep = nested(depth, objects);
            let index = archctl::registry::OCI_INDEX;
            let json = with_nested(&format!("\"mediaType\":\"{index}\",\"manifests\":[]"), "x", &deep);
            let digest = sha256_digest(&json);
            cache.put_blob(&digest, &json, index);
            let blob = cache.get_blob(&digest).is_some();
            let key = "k";
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs();
            let entry = with_nested(
                &format!("\"key\":\"{key}\",\"digest\":\"{digest}\",\"media_type\":\"{index}\",\"time\":{now}"),
                "x",
                &deep,
            );
            let tags = dir.path().join("tags");
            std::fs::create_dir_all(&tags).unwrap();
            std::fs::write(tags.join(&sha256_digest(key.as_bytes())[7..]), entry).unwrap();
            (blob, cache.get_tag(key).is_some())
        });
        // A manifest is checked as any JSON value: too deep is not stored. A tag entry is
        // typed: serde_json skips the unknown key's value without recursing, at any depth.
        prop_assert_eq!((blob, tag), (depth < 100, true), "depth {}", depth);
    }
}

#[test]
fn a_registry_serving_endlessly_nested_json_gets_an_error() {
    let deep = nested(100_000, false);
    let index = archctl::registry::OCI_INDEX;
    for (content_type, key, error) in [
        // Typed parsing of an index skips an unknown key's value (without recursing) and
        // reads on to the end: 200 KB in.
        (
            index,
            "x",
            "missing field `manifests` at line 1 column 200025",
        ),
        // Without a telling Content-Type, the media type is probed, `manifests` read as
        // any JSON value: serde_json refuses to build it past 128 levels, so the probe
        // finds no index and the document is read as a manifest.
        (
            "application/json",
            "manifests",
            "invalid image manifest: missing field `config` at line 1 column 200033",
        ),
    ] {
        let manifest = with_nested("\"schemaVersion\":2", key, &deep);
        let registry = support::FakeServer::start(move |_, _| {
            (
                200,
                vec![("Content-Type".into(), content_type.into())],
                manifest.clone(),
            )
        });
        let cache = tempfile::tempdir().unwrap();
        let out = Command::new(ARCHCTL)
            .args(["inspect", &format!("{}/x/y:t", registry.addr)])
            .registry_isolated(cache.path(), cache.path())
            .env_remove("HTTP_PROXY")
            .env_remove("http_proxy")
            .run();
        assert_code(&out, 1);
        assert_error_line(&out, error);
    }
}
