//! What every command reports, and how a person reads it. Each command returns one of
//! these structs; `--json` serialises it as is and the human output is rendered from it
//! here, so the two never disagree. Nothing here does work: it only describes and renders.

use std::{ffi::OsString, fmt::Write};

use serde::Serialize;

use crate::{
    bundle::{EmulatorInfo, InstallReport, PackReport},
    config::Config,
    engine::shell_quote,
    plan::Action,
    platform::Choice,
    registry::inspect::InspectReport,
    service::ServiceReport,
    verify::{Mode, TestResult},
};

/// One line of `enable`/`disable` output. Field names are the JSON contract.
#[derive(Debug, Clone, Serialize)]
pub struct EntryReport {
    pub arch: String,
    pub name: String,
    pub action: Action,
    pub interpreter: Option<String>,
    pub flags: Option<String>,
    pub verified: Option<bool>,
    /// `unchanged` because another tool's entry of this name already serves the
    /// architecture: why it counts (interpreter, flags).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub equivalent: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// `--dry-run`: the exact string that would be written to `register`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub register: Option<String>,
}

/// Result of `enable` / `disable`.
#[derive(Debug, Clone, Serialize)]
pub struct ChangeReport {
    pub host: String,
    pub binfmt_dir: String,
    pub dry_run: bool,
    /// binfmt_misc was mounted by this run.
    pub mounted: bool,
    pub entries: Vec<EntryReport>,
    pub warnings: Vec<String>,
    /// Selected architectures left without a working handler (conflicts, a named
    /// architecture without emulator): the run registered everything else, and exits 1.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub unserved: Vec<String>,
    /// Set when the run failed: rolled back, or architectures left unserved.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// `archctl status`: host, binfmt_misc, native set, every entry.
#[derive(Debug, Clone, Serialize)]
pub struct StatusReport {
    pub host: HostReport,
    pub binfmt_misc: BinfmtReport,
    pub native: Vec<String>,
    pub entries: Vec<EntryStatus>,
}

#[derive(Debug, Clone, Serialize)]
pub struct HostReport {
    pub arch: String,
    pub machine: String,
    pub kernel: String,
    /// Linux 6.7+: `archctl exec` and private instances work.
    pub private_binfmt_misc: bool,
    /// The host's OCI platform with its variant, as `pick` uses it (`linux/amd64/v3`:
    /// the x86-64 level from CPUID; `linux/arm64`: containerd's ARM variant), or null
    /// when archctl has no OCI name for this architecture.
    pub platform: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct BinfmtReport {
    pub path: String,
    pub mounted: bool,
    pub enabled: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct EntryStatus {
    pub name: String,
    /// The architecture whose programs it catches (by magic/mask), or `unknown`.
    pub arch: String,
    pub enabled: bool,
    pub interpreter: String,
    pub flags: String,
    /// Hex, as the kernel prints it; null for extension entries.
    pub magic: Option<String>,
    pub mask: Option<String>,
    pub offset: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub extension: Option<String>,
    /// An entry named the way archctl names its own (`qemu-<target>`).
    pub managed: bool,
    /// The interpreter exists, is an ELF for this host and is static; or, not visible
    /// here (an F entry registered from a container), its test program runs.
    pub interpreter_ok: bool,
    /// The interpreter's path exists in this mount namespace.
    pub interpreter_visible: bool,
    /// A test program was run through the entry to decide `interpreter_ok`.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub interpreter_tested: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interpreter_problem: Option<String>,
}

/// `archctl test`.
#[derive(Debug, Clone, Serialize)]
pub struct TestReport {
    pub host: String,
    pub results: Vec<TestResult>,
}

/// One service of `archctl compose-platforms`.
#[derive(Debug, Clone, Serialize)]
pub struct ComposeService {
    pub service: String,
    pub image: Option<String>,
    pub platform: Option<String>,
    pub mode: Option<crate::platform::Mode>,
    pub emulator: Option<String>,
    /// Why no platform is set for it (built locally, set by the user, or an error).
    pub note: Option<String>,
    /// The command that registers the emulation it needs (not root, or --no-enable).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub needs: Option<String>,
    pub error: Option<String>,
}

/// `archctl compose-platforms`: a compose override setting `platform:` per service.
#[derive(Debug, Clone, Serialize)]
pub struct ComposeReport {
    pub file: String,
    pub services: Vec<ComposeService>,
    /// Architectures whose handlers this run registered (as root).
    pub registered: Vec<String>,
    /// The override file's text.
    pub r#override: String,
}

/// `archctl boot`: the configuration applied, and a one-line summary.
#[derive(Debug, Clone, Serialize)]
pub struct BootReport {
    pub config: String,
    /// False when the file does not exist (the defaults were applied).
    pub config_found: bool,
    pub elapsed_ms: f64,
    pub summary: String,
    pub result: ChangeReport,
}

/// One exported entry.
#[derive(Debug, Clone, Serialize)]
pub struct ExportEntry {
    pub arch: String,
    pub name: String,
    pub interpreter: String,
    pub flags: String,
    pub offset: u8,
    /// Hex, as the kernel prints it.
    pub magic: String,
    pub mask: String,
    /// The line for `register` (and for a binfmt.d file).
    pub register: String,
    /// `--output`: the file written.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
}

/// `archctl export`.
#[derive(Debug, Clone, Serialize)]
pub struct ExportReport {
    pub format: String,
    pub entries: Vec<ExportEntry>,
    /// Targets left out, and why (native, no emulator).
    pub skipped: Vec<String>,
}

/// What `archctl run` does (printed by `--dry-run`, then executed).
#[derive(Debug, Clone, Serialize)]
pub struct RunPlan {
    pub platform: String,
    pub mode: crate::platform::Mode,
    pub emulator: Option<String>,
    /// The user's `--platform`, which wins over archctl's choice.
    pub user_platform: bool,
    /// A handler is registered first (root only).
    pub enable: Option<String>,
    pub command: Vec<String>,
    /// Where the platform came from: `registry`, or `local` (the engine's image, the
    /// registry having failed); null for the user's `--platform`.
    pub source: Option<crate::local::Source>,
    /// The image the engine has cached under this name, when archctl looked.
    pub local: Option<crate::local::LocalImage>,
    /// The pull policy archctl added (`--pull=always`) because the cached image is of
    /// another platform; null when none was added.
    pub pull: Option<String>,
    /// What archctl noticed: the local image used, or a cached image of another
    /// platform.
    pub note: Option<String>,
    /// The note is a warning (the user's own `--pull` may run the other platform).
    #[serde(skip)]
    pub warn: bool,
    #[serde(skip)]
    pub argv: Vec<OsString>,
}

fn table(rows: &[Vec<String>]) -> String {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..cols)
        .map(|c| {
            rows.iter()
                .map(|r| r.get(c).map_or(0, |s| s.chars().count()))
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for r in rows {
        let mut line = String::new();
        for (c, cell) in r.iter().enumerate() {
            if c + 1 == r.len() {
                line.push_str(cell);
            } else {
                let _ = write!(line, "{cell:<w$}  ", w = widths[c]);
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

pub fn change(r: &ChangeReport) -> String {
    let mut out = String::new();
    if r.dry_run {
        let _ = writeln!(out, "dry run: nothing is changed");
    }
    let rows: Vec<Vec<String>> = r
        .entries
        .iter()
        .map(|e| {
            vec![
                e.name.clone(),
                e.action.as_str().to_string(),
                e.interpreter.clone().unwrap_or_default(),
                e.flags
                    .as_ref()
                    .map(|f| format!("flags={f}"))
                    .unwrap_or_default(),
                match e.verified {
                    Some(true) => "verified".into(),
                    Some(false) => "VERIFY FAILED".into(),
                    None => String::new(),
                },
                e.note.clone().unwrap_or_default(),
            ]
        })
        .collect();
    out.push_str(&table(&rows));
    for e in &r.entries {
        if let Some(s) = &e.register {
            let _ = writeln!(out, "register {}: {s}", e.name);
        }
    }
    out
}

fn yes(b: bool) -> &'static str {
    if b { "yes" } else { "no" }
}

pub fn status(r: &StatusReport) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "host:        {} ({}machine {}, kernel {}, private binfmt_misc instances: {})",
        r.host.arch,
        r.host
            .platform
            .as_ref()
            .map(|p| format!("platform {p}, "))
            .unwrap_or_default(),
        r.host.machine,
        r.host.kernel,
        yes(r.host.private_binfmt_misc)
    );
    let _ = writeln!(
        out,
        "binfmt_misc: {} ({}{})",
        r.binfmt_misc.path,
        if r.binfmt_misc.mounted {
            "mounted"
        } else {
            "not mounted"
        },
        if r.binfmt_misc.mounted {
            if r.binfmt_misc.enabled {
                ", enabled"
            } else {
                ", DISABLED"
            }
        } else {
            ""
        }
    );
    let _ = writeln!(out, "native:      {}", r.native.join(", "));
    if r.entries.is_empty() {
        let _ = writeln!(out, "entries:     none");
        return out;
    }
    let _ = writeln!(out, "entries:");
    let mut rows = vec![vec![
        "  NAME".to_string(),
        "ARCH".into(),
        "ENABLED".into(),
        "FLAGS".into(),
        "INTERPRETER".into(),
        "OK".into(),
    ]];
    for e in &r.entries {
        rows.push(vec![
            format!("  {}", e.name),
            e.arch.clone(),
            yes(e.enabled).into(),
            if e.flags.is_empty() {
                "-".into()
            } else {
                e.flags.clone()
            },
            e.interpreter.clone(),
            match &e.interpreter_problem {
                None => "yes".into(),
                Some(p) => format!("no: {p}"),
            },
        ]);
    }
    out.push_str(&table(&rows));
    out
}

pub fn test(r: &TestReport) -> String {
    let rows: Vec<Vec<String>> = r
        .results
        .iter()
        .map(|t| {
            vec![
                t.arch.clone(),
                if t.ok { "ok".into() } else { "FAIL".into() },
                match t.mode {
                    Mode::Native => "native".into(),
                    Mode::Emulated if t.handlers.is_empty() => "emulated".into(),
                    Mode::Emulated => format!("emulated ({})", t.handlers.join(", ")),
                },
                format!("{:.1} ms", t.time_ms),
                t.error.clone().unwrap_or_default(),
            ]
        })
        .collect();
    table(&rows)
}

pub fn inspect(r: &InspectReport) -> String {
    let mut out = String::new();
    for i in &r.images {
        match &i.error {
            Some(e) => {
                let _ = writeln!(out, "{}  ERROR: {e}", i.reference);
            }
            None => {
                let _ = writeln!(
                    out,
                    "{}  {}  {}",
                    i.reference,
                    i.digest.as_deref().unwrap_or("-"),
                    i.media_type.as_deref().unwrap_or("-")
                );
                let mut rows: Vec<Vec<String>> = i
                    .platforms
                    .iter()
                    .map(|p| {
                        let mut plat = p.platform();
                        if let Some(v) = &p.os_version {
                            plat.push_str(&format!(" ({v})"));
                        }
                        if p.mismatch == Some(true) {
                            let c = p.config_platform.as_deref().unwrap_or("?");
                            plat.push_str(&format!(" (config says {c}!)"));
                        }
                        let mut row = vec![format!("  {plat}"), p.digest.clone()];
                        if let Some(t) = &p.truth {
                            row.push(t.summary());
                        }
                        row
                    })
                    .collect();
                rows.extend(i.attestations.iter().map(|a| {
                    vec![
                        "  (attestation)".to_string(),
                        format!(
                            "{}{}",
                            a.digest,
                            a.reference
                                .as_deref()
                                .map(|r| format!(" for {r}"))
                                .unwrap_or_default()
                        ),
                    ]
                }));
                out.push_str(&table(&rows));
            }
        }
    }
    out
}

/// `archctl pick`: one line, or every candidate with `explain`.
pub fn pick(c: &Choice, explain: bool) -> String {
    let mut out = String::new();
    if let Some(p) = &c.platform {
        let mode = match c.mode {
            Some(Mode::Native) => "native".to_string(),
            _ => format!("emulated ({})", c.emulator.as_deref().unwrap_or("?")),
        };
        let _ = writeln!(out, "{p}  {mode}  {}", c.digest.as_deref().unwrap_or("-"));
    }
    if explain || c.platform.is_none() {
        let rows: Vec<Vec<String>> = c
            .candidates
            .iter()
            .map(|k| {
                vec![
                    format!("  {}", k.platform),
                    if k.usable {
                        "usable".into()
                    } else {
                        "rejected".into()
                    },
                    k.reason.clone(),
                ]
            })
            .collect();
        out.push_str(&table(&rows));
    }
    out
}

/// `archctl service install|uninstall|status`.
#[derive(Debug, Clone, Serialize)]
pub struct ServiceOutcome {
    /// What was asked (it decides the human wording only).
    #[serde(skip)]
    pub verb: ServiceVerb,
    #[serde(flatten)]
    pub report: ServiceReport,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServiceVerb {
    Install,
    Uninstall,
    Status,
}

/// `archctl pick`.
#[derive(Debug, Clone, Serialize)]
pub struct PickReport {
    #[serde(flatten)]
    pub choice: Choice,
    /// `registry`, or `local`: the registry did not know the image or could not be
    /// reached, and the engine's local image was used.
    pub source: crate::local::Source,
    /// Why the local image was used.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// `--explain`: every candidate in the human output.
    #[serde(skip)]
    pub explain: bool,
}

/// Text archctl generates for packaging (`completions`, `man`, `service unit`): printed
/// as it is; JSON carries it in `text`.
#[derive(Debug, Clone, Serialize)]
pub struct Generated {
    /// `completions`, `man` or `unit`.
    pub kind: &'static str,
    /// The shell, the page (`archctl.1`) or the unit (`archctl.service`).
    pub name: String,
    pub text: String,
}

/// `archctl config init`.
#[derive(Debug, Clone, Serialize)]
pub struct ConfigWritten {
    pub wrote: String,
}

/// `archctl ps`: the processes running under emulation.
#[derive(Debug, Clone, Serialize)]
pub struct PsReport {
    pub processes: Vec<crate::ps::Process>,
    /// What may be missing (processes that could not be read, no binfmt_misc).
    pub notes: Vec<String>,
}

/// Whatever a command reports: printed on success, and before the error line when a
/// command ran and failed.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum Report {
    Change(ChangeReport),
    Status(StatusReport),
    Test(TestReport),
    Boot(BootReport),
    Export(ExportReport),
    Service(ServiceOutcome),
    Emulators(Vec<EmulatorInfo>),
    Packed(PackReport),
    Installed(InstallReport),
    ConfigShown(Config),
    ConfigWritten(ConfigWritten),
    Inspect(InspectReport),
    Pick(PickReport),
    Compose(ComposeReport),
    Run(RunPlan),
    Generated(Generated),
    Ps(PsReport),
    Doctor(crate::commands::doctor::DoctorReport),
    NodeAgent(crate::commands::node_agent::AgentReport),
    Webhook(crate::commands::webhook::WebhookReport),
}

/// A line for stderr that goes with a report (`archctl: ...` or `archctl: warning: ...`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    Info(String),
    Warning(String),
}

impl std::fmt::Display for Notice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Notice::Info(m) => write!(f, "archctl: {}", terminal_safe(m)),
            Notice::Warning(m) => write!(f, "archctl: warning: {}", terminal_safe(m)),
        }
    }
}

/// Text for a terminal: control characters (escape sequences, carriage returns,
/// backspaces, C1 controls, DEL) from entry names, interpreters, registry messages and
/// the like are shown as `\xNN` / `\u{NNNN}` instead of acting on the terminal. Newlines
/// and tabs, which archctl's own layout uses, stay.
pub fn terminal_safe(s: &str) -> std::borrow::Cow<'_, str> {
    let unsafe_char = |c: char| c.is_control() && c != '\n' && c != '\t';
    // Fast path, on bytes: C0 controls and DEL are single bytes, and every C1 control
    // (U+0080-U+009F) starts with 0xC2 in UTF-8; only text with one of those bytes is
    // looked at char by char (a listing of 200 images is ~100 KB of text).
    // Without short-circuits, and 64 bytes at a time, so that the compiler vectorises it.
    let suspect = |b: u8| (b < 0x20) & (b != b'\n') & (b != b'\t') | (b == 0x7f) | (b == 0xc2);
    let any_suspect = s
        .as_bytes()
        .chunks(64)
        .any(|c| c.iter().fold(false, |a, &b| a | suspect(b)));
    if !any_suspect || !s.chars().any(unsafe_char) {
        return std::borrow::Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if !unsafe_char(c) {
            out.push(c);
        } else if (c as u32) < 0x80 {
            out.push_str(&format!("\\x{:02x}", c as u32));
        } else {
            out.push_str(&format!("\\u{{{:04x}}}", c as u32));
        }
    }
    std::borrow::Cow::Owned(out)
}

impl Report {
    /// The human rendering (stdout), safe for a terminal ([`terminal_safe`]).
    pub fn human(&self) -> String {
        let text = self.human_raw();
        match terminal_safe(&text) {
            std::borrow::Cow::Borrowed(_) => text,
            std::borrow::Cow::Owned(safe) => safe,
        }
    }

    fn human_raw(&self) -> String {
        match self {
            Report::Change(r) => change(r),
            Report::Status(r) => status(r),
            Report::Test(r) => test(r),
            Report::Boot(r) => format!("{}\n", r.summary),
            Report::Export(r) => export(r),
            Report::Service(r) => service(r),
            Report::Emulators(r) => emulators(r),
            Report::Packed(r) => format!(
                "{} ({} emulators)\nsha256 {}\n",
                r.file,
                r.emulators.len(),
                r.sha256
            ),
            Report::Installed(r) => r
                .installed
                .iter()
                .map(|p| format!("installed {p}\n"))
                .collect(),
            Report::ConfigShown(c) => toml::to_string_pretty(c).unwrap_or_default(),
            Report::ConfigWritten(_) => String::new(),
            Report::Inspect(r) => inspect(r),
            Report::Pick(p) => pick(&p.choice, p.explain),
            Report::Compose(c) => c.r#override.clone(),
            Report::Run(p) => run_plan(p),
            Report::Generated(g) => g.text.clone(),
            Report::Ps(r) => ps(r),
            Report::Doctor(d) => doctor(d),
            Report::Webhook(w) => format!(
                "webhook: stopped by {} after {} requests: {} placed, {} skipped, {} untouched, {} bad\n",
                w.stopped_by, w.requests, w.placed, w.skipped, w.untouched, w.bad_requests
            ),
            Report::NodeAgent(a) => format!(
                "node-agent on {}: stopped by {} after {} checks, {} repairs; labels removed: {}; entries removed: {}\n",
                a.node,
                a.stopped_by,
                a.checks,
                a.repairs,
                a.labels_removed.len(),
                a.entries_removed.len()
            ),
        }
    }

    /// The stderr lines that go with it (not in JSON: the JSON carries the same facts).
    pub fn notices(&self) -> Vec<Notice> {
        match self {
            Report::Change(r) => change_notices(r),
            Report::ConfigWritten(w) => vec![Notice::Info(format!("wrote {}", w.wrote))],
            Report::Inspect(r) => r
                .images
                .iter()
                .flat_map(|i| {
                    i.platforms
                        .iter()
                        .filter(|p| p.mismatch == Some(true))
                        .map(|p| {
                            Notice::Warning(format!(
                                "{}: the {} entry's config says {}",
                                i.reference,
                                p.platform(),
                                p.config_platform.as_deref().unwrap_or("?")
                            ))
                        })
                        .chain(
                            i.platforms
                                .iter()
                                .filter_map(|p| p.truth.as_ref())
                                .filter(|t| t.label_matches == Some(false))
                                .map(|t| {
                                    Notice::Warning(format!("{}: {}", i.reference, t.summary()))
                                }),
                        )
                })
                .collect(),
            Report::Pick(p) => p.note.iter().cloned().map(Notice::Info).collect(),
            Report::Ps(r) => r.notes.iter().cloned().map(Notice::Info).collect(),
            Report::Run(p) => p
                .note
                .iter()
                .cloned()
                .map(if p.warn {
                    Notice::Warning
                } else {
                    Notice::Info
                })
                .collect(),
            _ => Vec::new(),
        }
    }

    /// The JSON output.
    pub fn json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// One line saying what failed, for the error line of a command that ran and failed.
    pub fn failure_summary(&self) -> String {
        match self {
            Report::Change(c) => c.error.clone().unwrap_or_else(|| "failed".into()),
            Report::Boot(b) => b.result.error.clone().unwrap_or_else(|| "failed".into()),
            Report::Inspect(r) => {
                let failed: Vec<String> = r.images.iter().filter_map(|i| i.error.clone()).collect();
                failed.join("; ")
            }
            Report::Compose(r) => r
                .services
                .iter()
                .filter_map(|s| {
                    s.error
                        .as_ref()
                        .map(|e| format!("service {}: {e}", s.service))
                })
                .collect::<Vec<_>>()
                .join("; "),
            Report::Doctor(d) => {
                let failed: Vec<&str> = d
                    .checks
                    .iter()
                    .filter(|c| c.verdict == crate::doctor::Verdict::Fail)
                    .map(|c| c.check.as_str())
                    .collect();
                format!(
                    "doctor: {} of {} checks failed ({}): {}",
                    failed.len(),
                    d.checks.len(),
                    d.target,
                    failed.join(", ")
                )
            }
            Report::Pick(p) => p
                .choice
                .error
                .clone()
                .unwrap_or_else(|| "no usable platform".into()),
            Report::Test(t) => {
                let failed: Vec<String> = t
                    .results
                    .iter()
                    .filter(|r| !r.ok)
                    .map(|r| format!("{}: {}", r.arch, r.error.as_deref().unwrap_or("failed")))
                    .collect();
                format!("test failed: {}", failed.join("; "))
            }
            _ => "failed".into(),
        }
    }

    /// Hints of the parts that failed (one per distinct hint).
    pub fn hints(&self) -> Vec<String> {
        let mut v: Vec<String> = Vec::new();
        let unserved = match self {
            Report::Change(c) => Some((&c.unserved, "archctl enable --force")),
            Report::Boot(b) => Some((
                &b.result.unserved,
                "set force = true in the configuration, or archctl enable --force",
            )),
            _ => None,
        };
        if let Some((archs, how)) = unserved
            && !archs.is_empty()
        {
            v.push(format!(
                "{how} {} replaces what is there with archctl's entry; for a missing emulator, install qemu-user-static",
                archs.join(" ")
            ));
        }
        if let Report::Inspect(r) = self {
            for h in r.images.iter().filter_map(|i| i.hint.as_ref()) {
                if !v.contains(h) {
                    v.push(h.clone());
                }
            }
        }
        v
    }
}

/// `archctl doctor`: one line per check (verdict, check, finding), its fix under it.
fn doctor(d: &crate::commands::doctor::DoctorReport) -> String {
    let width = d.checks.iter().map(|c| c.check.len()).max().unwrap_or(0);
    let mut s = String::new();
    for c in &d.checks {
        let _ = writeln!(
            s,
            "{:4}  {:width$}  {}",
            c.verdict.as_str(),
            c.check,
            c.finding
        );
        if let Some(f) = &c.fix {
            let _ = writeln!(s, "{:4}  {:width$}  fix: {f}", "", "");
        }
    }
    let _ = writeln!(
        s,
        "{}: {} ok, {} warn, {} fail",
        d.target, d.counts.ok, d.counts.warn, d.counts.fail
    );
    s
}

fn change_notices(r: &ChangeReport) -> Vec<Notice> {
    let mut v = Vec::new();
    if r.mounted {
        v.push(Notice::Info(format!(
            "mounted binfmt_misc at {}",
            r.binfmt_dir
        )));
    }
    v.extend(r.warnings.iter().cloned().map(Notice::Warning));
    v
}

fn export(r: &ExportReport) -> String {
    let binfmt_d = r.format == "binfmt.d";
    r.entries
        .iter()
        .map(|e| match &e.file {
            Some(f) => format!("wrote {f}\n"),
            None if binfmt_d => format!("{}\n", e.register),
            None => serde_json::to_string(e).unwrap_or_default() + "\n",
        })
        .collect()
}

fn service(o: &ServiceOutcome) -> String {
    let r = &o.report;
    let what = match o.verb {
        ServiceVerb::Install => "installed",
        ServiceVerb::Uninstall => "removed",
        ServiceVerb::Status if r.installed && r.up_to_date => "installed, up to date",
        ServiceVerb::Status if r.installed => "installed, out of date (run install again)",
        ServiceVerb::Status => "not installed",
    };
    let from = if r.packaged {
        " (the package's unit)"
    } else {
        ""
    };
    let mut s = format!("{} boot service {what}{from}\n", r.init.as_str());
    for p in &r.paths {
        let _ = writeln!(s, "  {p}");
    }
    s
}

fn emulators(list: &[EmulatorInfo]) -> String {
    list.iter()
        .map(|e| {
            format!(
                "{:13} {:45} {:8} {}\n",
                e.arch,
                e.path.as_deref().unwrap_or("-"),
                if e.path.is_none() {
                    "missing"
                } else if e.usable_with_f {
                    "static"
                } else {
                    "UNUSABLE"
                },
                e.problem.as_deref().or(e.version.as_deref()).unwrap_or("")
            )
        })
        .collect()
}

/// A table like ps: one line per process, the command last.
fn ps(r: &PsReport) -> String {
    if r.processes.is_empty() {
        return "no process runs under emulation\n".into();
    }
    let mut s = format!(
        "{:>7} {:12} {:16} {:>9} {:>9} {:24} COMMAND\n",
        "PID", "ARCH", "ENTRY", "TIME", "RSS", "CONTAINER"
    );
    for p in &r.processes {
        let container = p.container.as_ref().map_or("-".to_string(), |c| {
            let short = c.id.get(..12).unwrap_or(&c.id);
            match &c.name {
                Some(n) => format!("{} {n}", c.engine.as_str()),
                None => format!("{} {short}", c.engine.as_str()),
            }
        });
        let mut command: Vec<String> = p.program.iter().cloned().collect();
        if let Some(a) = &p.argv0 {
            command.push(format!("(argv0 {a})"));
        }
        command.extend(p.args.iter().cloned());
        let secs = p.cpu_seconds as u64;
        let _ = writeln!(
            s,
            "{:>7} {:12} {:16} {:>9} {:>9} {:24} {}",
            p.pid,
            p.arch.as_deref().unwrap_or("?"),
            p.entry.as_deref().unwrap_or("-"),
            format!("{}:{:02}:{:02}", secs / 3600, secs / 60 % 60, secs % 60),
            p.rss_kib.map_or("-".into(), |k| format!("{k}K")),
            container,
            command.join(" ")
        );
    }
    s
}

fn run_plan(p: &RunPlan) -> String {
    let mut s = String::new();
    if let Some(a) = &p.enable {
        let _ = writeln!(s, "archctl enable {a}");
    }
    s.push_str(&shell_quote(&p.argv));
    s.push('\n');
    s
}

#[cfg(test)]
mod tests {
    use super::terminal_safe;

    #[test]
    fn controls_are_escaped_and_everything_else_is_left_alone() {
        // Plain text, newlines, tabs, and non-control characters led by 0xC2 (the fast
        // path's suspect byte) come back as they are, without a copy.
        for s in ["linux/arm64\tsha256:ab\n", "© 2026 ¡hola! é ü", ""] {
            assert!(matches!(terminal_safe(s), std::borrow::Cow::Borrowed(t) if t == s));
        }
        assert_eq!(terminal_safe("a\x1b[2Jb"), "a\\x1b[2Jb");
        assert_eq!(terminal_safe("cr\rdel\x7f"), "cr\\x0ddel\\x7f");
        // C1 controls: NEL and CSI.
        assert_eq!(terminal_safe("x\u{85}y\u{9b}z"), "x\\u{0085}y\\u{009b}z");
        assert_eq!(terminal_safe("© \u{9b}"), "© \\u{009b}");
    }
}
