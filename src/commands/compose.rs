//! `archctl compose-platforms`: a compose override that sets `platform:` per service,
//! from the same choice as `pick`.

use std::path::Path;

use super::{
    CommandError, Context, binfmt,
    containers::{PickOptions, choose_for, emulation_state},
};
use crate::{
    platform::Mode,
    registry,
    report::{ComposeReport, ComposeService, Report},
};

/// Read a compose file's services and choose a platform for each image. With `enable`
/// and as root, register the handlers the emulated choices need (verified, as `run`
/// does); otherwise each such service says which command does.
pub fn compose_platforms(
    ctx: &Context,
    file: &Path,
    opts: &PickOptions,
    enable: bool,
    registry: registry::Options,
) -> Result<ComposeReport, CommandError> {
    use yaml_rust2::{Yaml, YamlLoader};
    let bad = |why: String| CommandError::Usage(format!("{}: {why}", file.display()));
    let text = read_compose(file)?;
    check_yaml_size(&text).map_err(bad)?;
    let docs = YamlLoader::load_from_str(&text).map_err(|e| bad(e.to_string()))?;
    let services = docs
        .first()
        .map(|d| &d["services"])
        .and_then(Yaml::as_hash)
        .ok_or_else(|| bad("no `services:` mapping".into()))?;
    let mut out: Vec<ComposeService> = Vec::new();
    let mut images = Vec::new();
    for (name, svc) in services {
        let name = name.as_str().unwrap_or_default().to_string();
        let image = svc["image"].as_str().map(str::to_string);
        let mut s = ComposeService {
            service: name,
            image: image.clone(),
            platform: None,
            mode: None,
            emulator: None,
            note: None,
            needs: None,
            error: None,
        };
        if let Some(p) = svc["platform"].as_str() {
            s.note = Some(format!("platform {p} set in the file"));
        } else if image.is_none() {
            s.note = Some("no image (built locally)".into());
        } else if let Some(i) = &image {
            images.push(i.clone());
        }
        out.push(s);
    }
    let mut chosen = choose_for(ctx, &images, opts, registry)?.into_iter();
    for s in out.iter_mut().filter(|s| s.note.is_none()) {
        let Some((report, c)) = chosen.next() else {
            break;
        };
        s.error = report.error.or(c.error);
        s.platform = c.platform;
        s.mode = c.mode;
        s.emulator = c.emulator;
    }
    // Emulation the chosen platforms need and the table does not have yet.
    let mut missing: Vec<String> = Vec::new();
    let wanted: Vec<&String> = out
        .iter()
        .filter(|s| s.mode == Some(Mode::Emulated))
        .filter_map(|s| s.emulator.as_ref())
        .collect();
    if !wanted.is_empty() {
        let native = ctx.native_all();
        let rules: Vec<&crate::arch::Rule> =
            wanted.iter().filter_map(|w| ctx.table.get(w)).collect();
        let registered = emulation_state(ctx, &rules, &native).registered;
        for w in wanted {
            // (Chosen for another --host-platform, it may be this host's own.)
            if !registered.contains(w) && !native.contains(w) && !missing.contains(w) {
                missing.push(w.clone());
            }
        }
    }
    let mut registered = Vec::new();
    if !missing.is_empty() {
        if enable && nix::unistd::geteuid().is_root() {
            binfmt::register_for_containers(ctx, &missing)?;
            registered = missing;
        } else {
            for s in out.iter_mut() {
                if let Some(e) = s.emulator.as_ref().filter(|e| missing.contains(e)) {
                    s.needs = Some(format!("sudo archctl enable {e}"));
                }
            }
        }
    }
    let mut yaml = format!(
        "# Written by `archctl compose-platforms {}`: use with\n#   docker compose -f {} -f THIS_FILE up\nservices:\n",
        file.display(),
        file.display()
    );
    for s in &out {
        match (&s.platform, &s.note, &s.error) {
            (Some(p), _, _) => {
                let how = match (s.mode, &s.emulator) {
                    (Some(Mode::Emulated), Some(e)) => format!("emulated ({e})"),
                    _ => "native".into(),
                };
                yaml.push_str(&format!(
                    "  {}:\n    platform: {p}  # {how}\n",
                    yaml_key(&s.service)
                ));
                if let Some(n) = &s.needs {
                    yaml.push_str(&format!("    # before `up`, run: {n}\n"));
                }
            }
            (None, Some(n), _) => yaml.push_str(&format!("  # {}: {n}\n", s.service)),
            (None, None, Some(e)) => yaml.push_str(&format!("  # {}: {e}\n", s.service)),
            _ => {}
        }
    }
    let report = ComposeReport {
        file: file.display().to_string(),
        services: out,
        registered,
        r#override: yaml,
    };
    if report.services.iter().any(|s| s.error.is_some()) {
        return Err(CommandError::Failed(Box::new(Report::Compose(report))));
    }
    Ok(report)
}

/// A mapping key, quoted when YAML needs it.
fn yaml_key(k: &str) -> String {
    if !k.is_empty()
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    {
        k.to_string()
    } else {
        format!("{k:?}")
    }
}

/// Largest compose file archctl reads.
pub const MAX_COMPOSE_BYTES: u64 = 4 << 20;
/// Most YAML nodes a compose file may stand for once its aliases are expanded (what
/// the loader builds): a "billion laughs" file of 1 KB stands for billions.
pub const MAX_YAML_NODES: u64 = 100_000;
/// Deepest nesting of sequences and mappings accepted.
pub const MAX_YAML_DEPTH: usize = 128;

/// The file's text, at most [`MAX_COMPOSE_BYTES`], from a regular file only (a FIFO
/// cannot block it, `/dev/zero` cannot flood it: [`crate::fsutil::read_bounded`]).
fn read_compose(file: &Path) -> Result<String, CommandError> {
    let bytes = crate::fsutil::read_bounded(file, MAX_COMPOSE_BYTES)
        .map_err(|e| CommandError::Usage(format!("compose file {e}")))?;
    String::from_utf8(bytes)
        .map_err(|e| CommandError::Usage(format!("{}: not UTF-8: {e}", file.display())))
}

/// Walk the YAML's events (linear in the text: aliases are not expanded here) and
/// refuse a document that would expand into more than [`MAX_YAML_NODES`] nodes or nest
/// deeper than [`MAX_YAML_DEPTH`], before the loader builds it (the loader copies the
/// anchored node at every alias). Syntax errors are left to the loader.
fn check_yaml_size(text: &str) -> Result<(), String> {
    use std::collections::HashMap;
    use yaml_rust2::parser::{Event, Parser};
    let mut parser = Parser::new_from_str(text);
    // Expanded node count of each anchor, and of the whole stream so far.
    let mut sizes: HashMap<usize, u64> = HashMap::new();
    // Open collections: (anchor id, nodes counted before it).
    let mut open: Vec<(usize, u64)> = Vec::new();
    let mut nodes = 0u64;
    loop {
        let Ok((event, _)) = parser.next_token() else {
            return Ok(());
        };
        match event {
            Event::StreamEnd => return Ok(()),
            Event::Scalar(_, _, anchor, _) => {
                nodes += 1;
                if anchor > 0 {
                    sizes.insert(anchor, 1);
                }
            }
            Event::Alias(anchor) => {
                nodes = nodes.saturating_add(sizes.get(&anchor).copied().unwrap_or(1));
            }
            Event::SequenceStart(anchor, _) | Event::MappingStart(anchor, _) => {
                open.push((anchor, nodes));
                nodes += 1;
                if open.len() > MAX_YAML_DEPTH {
                    return Err(format!(
                        "nested more than {MAX_YAML_DEPTH} levels deep, more than archctl accepts"
                    ));
                }
            }
            Event::SequenceEnd | Event::MappingEnd => {
                if let Some((anchor, before)) = open.pop()
                    && anchor > 0
                {
                    sizes.insert(anchor, nodes - before);
                }
            }
            _ => {}
        }
        if nodes > MAX_YAML_NODES {
            return Err(format!(
                "stands for more than {MAX_YAML_NODES} YAML nodes once its aliases are expanded (an alias bomb?), more than archctl accepts"
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_size_counts_aliases_expanded() {
        let ok = "x: &a [1, 2, 3]\nservices:\n  web: {image: a, extra: *a}\n";
        assert_eq!(check_yaml_size(ok), Ok(()));
        let mut bomb = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..9 {
            let p = i - 1;
            bomb.push_str(&format!(
                "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
            ));
        }
        let e = check_yaml_size(&bomb).unwrap_err();
        assert!(e.contains("alias bomb"), "{e}");
        let deep = format!("{}x{}", "[".repeat(200), "]".repeat(200));
        assert!(check_yaml_size(&deep).unwrap_err().contains("nested"));
        let deep_block: String = (0..300).map(|i| format!("{}k:\n", " ".repeat(i))).collect();
        assert!(check_yaml_size(&deep_block).unwrap_err().contains("nested"));
    }
}
