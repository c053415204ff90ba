//! Human-readable rendering of the report structs (the JSON output serialises the same
//! structs, so the two never disagree).

use std::fmt::Write;

use crate::ops::{ChangeReport, Report, StatusReport, TestReport};
use crate::platform::Choice;
use crate::registry::inspect::InspectReport;
use crate::verify::Mode;

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
        "host:        {} (machine {}, kernel {}, private binfmt_misc instances: {})",
        r.host.arch,
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
                        vec![format!("  {plat}"), p.digest.clone()]
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

pub fn any(r: &Report) -> String {
    match r {
        Report::Pick(c) => pick(c, true),
        Report::Compose(c) => c.r#override.clone(),
        Report::Change(c) => change(c),
        Report::Test(t) => test(t),
        Report::Inspect(i) => inspect(i),
    }
}
