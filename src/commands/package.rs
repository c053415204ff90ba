//! What a package ships besides the binary, generated from the clap definitions of
//! `cli` (passed in, so this layer does not reach up into it) so they cannot drift from
//! the command line: shell completion scripts and the manual page.

use clap::Command;

use super::CommandError;
use crate::report::Generated;

/// `archctl completions SHELL`: the completion script of `shell` for the whole tree.
pub fn completions(mut cmd: Command, shell: clap_complete::Shell) -> Generated {
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut cmd, "archctl", &mut out);
    Generated {
        kind: "completions",
        name: shell.to_string(),
        text: String::from_utf8_lossy(&out).into_owned(),
    }
}

/// The sections every page of archctl's has after the generated ones.
const EXIT_STATUS: &str = r#".SH "EXIT STATUS"
.TP
\fB0\fR
success
.TP
\fB1\fR
failure (a conflict, a failed verification, a missing emulator the configuration names, ...)
.TP
\fB2\fR
usage error: what was written on the command line is wrong
.SH FILES
.TP
\fI/etc/archctl/config.toml\fR
what \fBarchctl boot\fR registers at every boot (\fB\-\-config\fR, \fBARCHCTL_CONFIG\fR)
.TP
\fI/usr/lib/systemd/system/archctl.service\fR
the boot service of the Debian package (\fBarchctl service install\fR writes \fI/etc/systemd/system/archctl.service\fR)
.SH ENVIRONMENT
.TP
\fBARCHCTL_BINFMT_DIR\fR
where binfmt_misc is (\fB\-\-binfmt\-dir\fR)
.TP
\fBARCHCTL_CONFIG\fR
the configuration file (\fB\-\-config\fR)
.TP
\fBARCHCTL_ENGINE\fR
docker, podman or nerdctl, for \fBpick\fR, \fBrun\fR and \fBcompose\-platforms\fR
"#;

/// Text as roff reads it literally: backslashes and hyphens escaped, and no line can
/// start a request.
fn roff_text(s: &str) -> String {
    let escaped = s.replace('\\', "\\e").replace('-', "\\-");
    escaped.lines().map(|l| format!("\\&{l}\n")).collect()
}

/// The commands of `cmd`, each with its one-line summary (they are described in this
/// same page, so no archctl-CMD(1) references as clap_mangen writes them).
fn commands_list(cmd: &Command, heading: &str, path: &str) -> String {
    let mut s = format!("{heading}\n");
    for sub in visible(cmd) {
        s.push_str(".TP\n");
        s.push_str(&format!(
            "\\fB{}\\fR\n",
            roff_text(&format!("{path} {}", sub.get_name())).trim_end()
        ));
        let about = sub.get_about().map(|a| a.to_string()).unwrap_or_default();
        s.push_str(&roff_text(&about));
    }
    s
}

/// The visible subcommands of `cmd`.
fn visible(cmd: &Command) -> impl Iterator<Item = &Command> {
    cmd.get_subcommands()
        .filter(|s| !s.is_hide_set() && s.get_name() != "help")
}

/// `known` and the ids of the global options `cmd` defines (described where they are
/// defined, hidden in the commands below).
fn global_ids(cmd: &Command, known: &[String]) -> Vec<String> {
    let mut ids = known.to_vec();
    for a in cmd.get_arguments().filter(|a| a.is_global_set()) {
        let id = a.get_id().to_string();
        if !ids.contains(&id) {
            ids.push(id);
        }
    }
    ids
}

/// The section of `cmd` (`.SH "ARCHCTL CMD"` with synopsis, description and options as
/// subsections, and its commands), then those of its commands.
fn sections(
    cmd: &Command,
    parent: &str,
    inherited: &[String],
    page: &dyn Fn(&Command) -> clap_mangen::Man,
    text: &mut String,
) -> Result<(), CommandError> {
    let io =
        |e: std::io::Error| CommandError::Refused(format!("cannot render the manual page: {e}"));
    let path = format!("{parent} {}", cmd.get_name());
    let own = cmd.clone().mut_args(|a| {
        if inherited.contains(&a.get_id().to_string()) {
            a.hide(true)
        } else {
            a
        }
    });
    let man = page(&own);
    let mut part = Vec::new();
    man.render_synopsis_section(&mut part).map_err(io)?;
    man.render_description_section(&mut part).map_err(io)?;
    if own.get_arguments().any(|a| !a.is_hide_set()) {
        man.render_options_section(&mut part).map_err(io)?;
    }
    text.push_str(&format!(".SH \"{}\"\n", path.to_uppercase()));
    let part = String::from_utf8_lossy(&part).replace("\n.SH ", "\n.SS ");
    text.push_str(
        &part
            .strip_prefix(".SH ")
            .map_or(part.clone(), |p| format!(".SS {p}")),
    );
    if visible(cmd).next().is_some() {
        text.push_str(&commands_list(cmd, ".SS COMMANDS", &path));
        let known = global_ids(cmd, inherited);
        for sub in visible(cmd) {
            sections(sub, &path, &known, page, text)?;
        }
    }
    Ok(())
}

/// `archctl man`: one page, archctl(1): the root command (synopsis, global options, the
/// list of commands), then a section per visible command with its own synopsis,
/// description, options and subcommands, then exit status, files, environment.
pub fn man(mut cmd: Command) -> Result<Generated, CommandError> {
    cmd.build();
    let version = cmd.get_version().unwrap_or_default().to_string();
    let page = |c: &Command| {
        clap_mangen::Man::new(c.clone())
            .title("archctl")
            .section("1")
            .source(format!("archctl {version}"))
            .manual("User Commands")
    };
    let io =
        |e: std::io::Error| CommandError::Refused(format!("cannot render the manual page: {e}"));
    let root = page(&cmd);
    let mut out = Vec::new();
    root.render_title(&mut out).map_err(io)?;
    root.render_name_section(&mut out).map_err(io)?;
    root.render_synopsis_section(&mut out).map_err(io)?;
    root.render_description_section(&mut out).map_err(io)?;
    root.render_options_section(&mut out).map_err(io)?;
    let mut text = String::from_utf8_lossy(&out).into_owned();
    text.push_str(&commands_list(&cmd, ".SH COMMANDS", "archctl"));
    let globals = global_ids(&cmd, &[]);
    for sub in visible(&cmd) {
        sections(sub, "archctl", &globals, &page, &mut text)?;
    }
    text.push_str(EXIT_STATUS);
    Ok(Generated {
        kind: "man",
        name: "archctl.1".into(),
        text: once_preamble(&text),
    })
}

/// roff starts every rendering it writes with the definition of `\*(Aq` (two lines);
/// the page keeps the first.
fn once_preamble(text: &str) -> String {
    let mut seen = 0;
    let mut out = String::with_capacity(text.len());
    for l in text.lines() {
        if l.starts_with(".ie \\n(.g .ds Aq") || l.starts_with(".el .ds Aq") {
            seen += 1;
            if seen > 2 {
                continue;
            }
        }
        out.push_str(l);
        out.push('\n');
    }
    out
}
