//! `archctl doctor`: why an "exec format error"? The host's checks, or one file's. It
//! reads and runs test programs; it never changes anything.

use std::{path::Path, time::Duration};

use super::{CommandError, Context, binfmt::entry_statuses};
use crate::{
    arch::Rule,
    binfmt::{Entry, handlers_for},
    cpu,
    doctor::{self, Check, Counts},
    elf,
    engine::Engine,
    host::Native,
    ns, serve,
    service::{self, Init},
    verify::{self, Job, Mode},
};

/// `archctl doctor [--json]`: the report of every check.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DoctorReport {
    /// `host`, or the file examined.
    pub target: String,
    /// `doctor FILE`: the file's ELF facts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub elf: Option<elf::ElfFacts>,
    pub checks: Vec<Check>,
    pub counts: Counts,
}

impl DoctorReport {
    fn new(target: String, elf: Option<elf::ElfFacts>, checks: Vec<Check>) -> DoctorReport {
        DoctorReport {
            target,
            elf,
            counts: Counts::of(&checks),
            checks,
        }
    }

    pub fn failed(&self) -> bool {
        self.counts.fail > 0
    }
}

/// A bounded engine query: at most this long, this much output kept.
const ENGINE_TIMEOUT: Duration = Duration::from_secs(10);
const ENGINE_OUTPUT: usize = 64 * 1024;

/// `archctl doctor`: the host's checks. `config` is the boot service's configuration.
pub fn host(ctx: &Context, config: Option<&Path>) -> Result<DoctorReport, CommandError> {
    let mut checks = Vec::new();
    let dir = ctx.fs.dir().display().to_string();
    let mounted = ctx.fs.is_mounted()?;
    let enabled = mounted && ctx.fs.status_enabled()?;
    checks.push(if !mounted {
        Check::fail(
            "binfmt_misc",
            format!("binfmt_misc is not mounted at {dir}: no foreign program runs"),
            format!("archctl enable ARCH (mounts it), or mount -t binfmt_misc binfmt_misc {dir}"),
        )
    } else if !enabled {
        Check::fail(
            "binfmt_misc",
            format!("binfmt_misc at {dir} is disabled: the kernel ignores every entry"),
            format!("echo 1 > {dir}/status"),
        )
    } else {
        Check::ok("binfmt_misc", format!("mounted at {dir}, enabled"))
    });
    let private = ns::kernel_at_least(&ctx.host.kernel, 6, 7);
    checks.push(user_namespace(private));
    checks.push(kernel(&ctx.host.kernel, private));
    let native = ctx.native_all();
    checks.push(native_check(ctx, &native));
    let entries = if mounted {
        ctx.fs.entries()?
    } else {
        Vec::new()
    };
    checks.extend(entry_checks(ctx, &native, &entries, &dir));
    checks.push(boot_service(config));
    checks.push(binfmt_d(ctx, &entries));
    checks.extend(engines(ctx, &native, &entries));
    Ok(DoctorReport::new("host".into(), None, checks))
}

fn user_namespace(private: bool) -> Check {
    match doctor::initial_user_namespace() {
        Some(true) => Check::ok(
            "user-namespace",
            "the initial user namespace: registrations here are the host's",
        ),
        Some(false) if private => Check::warn(
            "user-namespace",
            "this process is in a user namespace of its own (a rootless container?): on Linux 6.7+ its binfmt_misc is a private instance, and what is registered here does not reach the host",
            "register on the host (or from a container in the host's user namespace: docker run --privileged, not rootless)",
        ),
        Some(false) => Check::warn(
            "user-namespace",
            "this process is in a user namespace of its own: before Linux 6.7 it cannot register in the host's binfmt_misc",
            "register on the host, as root in the initial user namespace",
        ),
        None => Check::warn(
            "user-namespace",
            "/proc/self/uid_map cannot be read: cannot tell which user namespace this is",
            "mount /proc",
        ),
    }
}

fn kernel(release: &str, private: bool) -> Check {
    if !ns::kernel_at_least(release, 4, 8) {
        return Check::fail(
            "kernel",
            format!(
                "Linux {release}: no F flag before 4.8, so emulators cannot serve containers or chroots"
            ),
            "boot a kernel of 4.8 or later",
        );
    }
    Check::ok(
        "kernel",
        if private {
            format!(
                "Linux {release}: F flag; a binfmt_misc instance per user namespace (6.7+), so rootless `archctl exec` works"
            )
        } else {
            format!(
                "Linux {release}: F flag; one binfmt_misc for the whole host (per-user-namespace instances and `archctl exec` need 6.7)"
            )
        },
    )
}

fn native_check(ctx: &Context, native: &Native) -> Check {
    let mut finding = format!("native: {}", native.arches.join(", "));
    if ctx.host.arch.as_deref() == Some("aarch64") {
        if native.contains("arm") {
            finding.push_str("; AArch32 is there: arm programs run natively");
        } else {
            finding.push_str("; no AArch32 (e.g. Apple Silicon, Graviton 3+): arm/v7 and arm/v6 programs need qemu-arm");
        }
    }
    if !native.undecided.is_empty() {
        finding.push_str(&format!(
            "; undecided (a handler claims them and this kernel has no private instance to probe in): {}",
            native.undecided.join(", ")
        ));
    }
    Check::ok("native", finding)
}

/// The architecture an entry catches, when archctl knows it.
fn arch_of<'t>(ctx: &'t Context, e: &Entry) -> Option<&'t Rule> {
    serve::selected_rules(ctx.table, &e.matcher)
        .first()
        .copied()
}

/// Each entry: proven by its architecture's test program (through the entry the kernel
/// uses: binfmt_misc tries entries newest first, the order it lists them in), F,
/// the interpreter, and entries shadowed by another for the same architecture.
fn entry_checks(ctx: &Context, native: &Native, entries: &[Entry], dir: &str) -> Vec<Check> {
    let statuses = entry_statuses(ctx, native, entries, &|_| true);
    // The entry the kernel uses for an architecture's programs: the first enabled one
    // listed that catches them (binfmt::handlers_for keeps the kernel's order).
    let user_of = |rule: &Rule| handlers_for(entries, rule).next().map(|e| e.name.clone());
    let mut rules: Vec<&Rule> = Vec::new();
    for r in entries
        .iter()
        .filter(|e| e.enabled)
        .filter_map(|e| arch_of(ctx, e))
    {
        if !rules.iter().any(|k| k.name == r.name) {
            rules.push(r);
        }
    }
    let jobs: Vec<Job> = rules
        .iter()
        .filter(|r| !native.contains(&r.name))
        .filter_map(|r| {
            user_of(r).map(|name| Job {
                arch: r.name.clone(),
                mode: Mode::Emulated,
                handlers: vec![name],
            })
        })
        .collect();
    let results = verify::run(&jobs, verify::DEFAULT_TIMEOUT);
    let mut checks = Vec::new();
    for (e, st) in entries.iter().zip(&statuses) {
        let id = format!("entry:{}", e.name);
        let Some(rule) = arch_of(ctx, e) else {
            checks.push(Check::ok(
                id,
                format!("catches no CPU architecture archctl knows (interpreter {}): not looked at further", e.interpreter),
            ));
            continue;
        };
        let arch = &rule.name;
        if !e.enabled {
            checks.push(Check::warn(
                id,
                format!("{arch}: disabled, the kernel skips it"),
                format!("echo 1 > {dir}/{}", e.name),
            ));
            continue;
        }
        let user = user_of(rule);
        if native.contains(arch) {
            checks.push(Check::warn(
                id,
                format!(
                    "{arch} runs natively here, but this entry sends its programs to {}",
                    e.interpreter
                ),
                format!("echo -1 > {dir}/{}", e.name),
            ));
            continue;
        }
        if let Some(user) = user
            && user != e.name
        {
            checks.push(Check::warn(
                id,
                format!(
                    "{arch}: shadowed: {user} also catches {arch} programs and the kernel uses it (binfmt_misc tries the newest entry first)"
                ),
                format!("echo 0 > {dir}/{user}  (or echo -1 > {dir}/{}, to keep {user})", e.name),
            ));
            continue;
        }
        let result = jobs
            .iter()
            .zip(&results)
            .find(|(j, _)| j.arch == *arch)
            .map(|(_, r)| r);
        let proven = result.is_some_and(|r| r.ok);
        let managed = e.name == rule.entry_name();
        let reregister = if managed {
            format!("archctl enable {arch} --force")
        } else {
            format!(
                "archctl enable {arch} --force  (replaces {} with archctl's qemu entry)",
                e.name
            )
        };
        if !proven {
            let why = result
                .and_then(|r| r.error.clone())
                .unwrap_or_else(|| "no test program ran".into());
            let problem = st
                .interpreter_problem
                .as_deref()
                .map(|p| format!("; {p}"))
                .unwrap_or_default();
            checks.push(Check::fail(
                id,
                format!("{arch}: its test program failed through it: {why}{problem}"),
                reregister,
            ));
            continue;
        }
        let ms = result.map_or(0.0, |r| r.time_ms);
        if !e.flags.fix_binary {
            checks.push(Check::warn(
                id,
                format!(
                    "{arch}: proven ({ms:.0} ms), but without F: the kernel opens {} at every exec, in the caller's root, so containers and chroots without it fail (ENOENT)",
                    e.interpreter
                ),
                reregister,
            ));
        } else if !st.interpreter_ok {
            checks.push(Check::warn(
                id,
                format!(
                    "{arch}: proven ({ms:.0} ms), F, but {}: {}",
                    e.interpreter,
                    st.interpreter_problem
                        .as_deref()
                        .unwrap_or("not a static emulator")
                ),
                reregister,
            ));
        } else {
            let held = if st.interpreter_visible {
                "static"
            } else {
                "not visible here, held open by the kernel (registered from a container)"
            };
            checks.push(Check::ok(
                id,
                format!("{arch}: proven ({ms:.0} ms), F, {} {held}", e.interpreter),
            ));
        }
    }
    checks
}

/// The boot service: installed, enabled, ordered, and running a binary that exists.
fn boot_service(config: Option<&Path>) -> Check {
    let id = "boot-service";
    let Ok(root) = crate::rootfs::Root::open(Path::new("/")) else {
        return Check::warn(id, "cannot open / to look for the boot service", "check /");
    };
    let init = Init::detect(&root);
    let Ok(binary) = std::env::current_exe() else {
        return Check::warn(
            id,
            "cannot tell where this archctl is",
            "archctl service status",
        );
    };
    let Ok(cmd) = service::BootCommand::new(&binary, config, &root) else {
        return Check::warn(id, "cannot form the boot command", "archctl service status");
    };
    let st = service::status(init, &root, &cmd);
    let kind = init.as_str();
    if st.paths.is_empty() {
        return Check::warn(
            id,
            format!("no {kind} boot service: what is registered now is gone after a reboot"),
            "archctl service install",
        );
    }
    if !st.installed {
        // The unit or script is there, its enablement (wants link, runlevel) is not.
        let fix = match init {
            Init::Systemd => "systemctl enable archctl.service",
            Init::Openrc => "rc-update add archctl default",
            Init::Sysv => "archctl service install",
        };
        return Check::warn(
            id,
            format!(
                "{} is there but not enabled: it does not run at boot",
                st.paths.join(", ")
            ),
            fix,
        );
    }
    let main = st.paths.first().cloned().unwrap_or_default();
    let text = crate::fsutil::read_bounded(Path::new(&main), 1 << 20)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    if let Some(bin) = doctor::service_binary(&text)
        && !Path::new(&bin).is_file()
    {
        return Check::fail(
            id,
            format!("{main} runs {bin}, which does not exist: nothing is registered at boot"),
            "archctl service install  (with this archctl where it will stay)",
        );
    }
    match init {
        Init::Systemd => {
            let line = |key: &str| {
                text.lines()
                    .filter_map(|l| l.trim().strip_prefix(key))
                    .collect::<Vec<_>>()
                    .join(" ")
            };
            if !line("After=").contains("systemd-binfmt.service") {
                return Check::fail(
                    id,
                    format!(
                        "{main} is not ordered after systemd-binfmt.service, which flushes every entry when it starts"
                    ),
                    "archctl service install",
                );
            }
            if !line("Before=").contains("docker.service") {
                return Check::warn(
                    id,
                    format!(
                        "{main} is not ordered before docker.service: containers started at boot may find no emulator"
                    ),
                    "archctl service install",
                );
            }
        }
        Init::Openrc | Init::Sysv => {}
    }
    if !st.up_to_date {
        return Check::warn(
            id,
            format!(
                "{kind} boot service {main} is not what this archctl would write ({})",
                cmd_text(&st)
            ),
            "archctl service install",
        );
    }
    Check::ok(
        id,
        format!(
            "{kind} boot service installed, up to date: {}",
            cmd_text(&st)
        ),
    )
}

fn cmd_text(st: &service::ServiceReport) -> String {
    st.command.clone().unwrap_or_default()
}

/// What systemd-binfmt loads at boot (binfmt.d), against what is registered now.
fn binfmt_d(ctx: &Context, entries: &[Entry]) -> Check {
    let id = "binfmt.d";
    // Only CPU emulators matter here (python, wine or llvm entries are not archctl's).
    let lines: Vec<_> = doctor::binfmt_d(ctx.table, Path::new("/"))
        .into_iter()
        .filter(|l| l.arch.is_some())
        .collect();
    if lines.is_empty() {
        return Check::ok(id, "no binfmt.d file registers an emulator at boot");
    }
    let systemd = Path::new("/run/systemd/system").is_dir();
    let mut problems = Vec::new();
    for l in &lines {
        if !l.flags.contains('F') {
            problems.push(format!("{} ({}) has no F", l.name, l.file));
        } else if !Path::new(&l.interpreter).exists() {
            problems.push(format!(
                "{} ({}): {} does not exist",
                l.name, l.file, l.interpreter
            ));
        }
        if let Some(e) = entries.iter().find(|e| e.name == l.name)
            && e.interpreter != l.interpreter
        {
            problems.push(format!(
                "{} ({}) replaces the registered {} ({}) at the next boot",
                l.name, l.file, e.name, e.interpreter
            ));
        }
    }
    let files: std::collections::BTreeSet<&str> = lines
        .iter()
        .map(|l| l.file.rsplit_once('/').map_or(l.file.as_str(), |(d, _)| d))
        .collect();
    let summary = format!(
        "{}systemd-binfmt registers {} emulators at boot from {}",
        if systemd { "" } else { "(no systemd running) " },
        lines.len(),
        files.into_iter().collect::<Vec<_>>().join(", ")
    );
    if problems.is_empty() {
        Check::ok(
            id,
            format!(
                "{summary}, all with F (archctl's boot service, ordered after systemd-binfmt, keeps equivalent entries)"
            ),
        )
    } else {
        Check::warn(
            id,
            format!("{summary}: {}", problems.join("; ")),
            "fix or mask those files (ln -s /dev/null /etc/binfmt.d/NAME.conf), or set force = true in archctl's configuration so its boot service replaces their entries",
        )
    }
}

/// Each container engine on PATH: does it answer, for which platform, and do the
/// buildx builders list the emulated platforms.
fn engines(ctx: &Context, native: &Native, entries: &[Entry]) -> Vec<Check> {
    let mut checks = Vec::new();
    let emulated: Vec<&Rule> = entries
        .iter()
        .filter(|e| e.enabled)
        .filter_map(|e| arch_of(ctx, e))
        .filter(|r| !native.contains(&r.name) && !r.platforms.is_empty())
        .collect();
    for engine in Engine::ALL {
        let program = engine.program();
        if !crate::engine::on_path(program) {
            continue;
        }
        let id = format!("engine:{program}");
        let format = match engine {
            Engine::Podman => "{{.Host.OS}}/{{.Host.Arch}}",
            _ => "{{.OSType}}/{{.Architecture}}",
        };
        match bounded(program, &["info", "--format", format]) {
            Ok(out) => {
                let platform = out.trim().to_string();
                checks.push(Check::ok(id, format!("{program} answers: {platform}")));
                if engine == Engine::Docker
                    && let Some(c) = buildx(&emulated)
                {
                    checks.push(c);
                }
            }
            Err(why) => checks.push(Check::warn(
                id,
                format!("{program} is installed but `{program} info` failed: {why}"),
                match engine {
                    Engine::Docker => {
                        "start the daemon (systemctl start docker), or point DOCKER_HOST at it"
                    }
                    Engine::Podman => "podman info  (and fix what it says)",
                    Engine::Nerdctl => "start containerd (systemctl start containerd)",
                },
            )),
        }
    }
    checks
}

/// `docker buildx ls`: builders detect emulators when they start; one started before
/// an `enable` does not list the new platforms.
fn buildx(emulated: &[&Rule]) -> Option<Check> {
    let out = bounded("docker", &["buildx", "ls"]).ok()?;
    Some(buildx_check(&out, emulated))
}

/// The verdict on `docker buildx ls`'s output: every emulated architecture listed?
fn buildx_check(out: &str, emulated: &[&Rule]) -> Check {
    let mut listed: Vec<&str> = out
        .split(|c: char| c.is_whitespace() || c == ',')
        .filter(|w| w.starts_with("linux/"))
        .map(|w| w.trim_end_matches('*'))
        .collect();
    listed.dedup();
    let missing: Vec<&str> = emulated
        .iter()
        .filter(|r| !r.platforms.iter().any(|p| listed.contains(&p.as_str())))
        .filter_map(|r| r.platforms.first().map(String::as_str))
        .collect();
    if missing.is_empty() {
        Check::ok(
            "engine:buildx",
            format!("buildx builders list {}", listed.join(", ")),
        )
    } else {
        Check::warn(
            "engine:buildx",
            format!(
                "buildx builders do not list {} (served by binfmt_misc now): they detect emulators when they start",
                missing.join(", ")
            ),
            "restart the builders: docker buildx stop NAME && docker buildx inspect --bootstrap NAME (the default builder: restart docker)",
        )
    }
}

/// Run an engine query with [`ENGINE_TIMEOUT`] and bounded output: its stdout, or the
/// first line of its stderr.
fn bounded(program: &str, args: &[&str]) -> Result<String, String> {
    let a = crate::engine::query(program, args, ENGINE_TIMEOUT, ENGINE_OUTPUT)?;
    if a.ok {
        Ok(String::from_utf8_lossy(&a.stdout).into_owned())
    } else {
        Err(a.error)
    }
}

/// `archctl doctor IMAGE`: for each platform the image offers, its label against the
/// program its layers start (the truth check), and what this host would run and
/// through what. Fails when the platform this host would choose is mislabeled or
/// nothing can run.
pub fn image(
    ctx: &Context,
    image: &str,
    reg: crate::registry::Options,
) -> Result<DoctorReport, CommandError> {
    use crate::registry::inspect::{ImageReport, Inspector};
    let inspector = Inspector::new(crate::registry::Options {
        verify_platforms: true,
        ..reg
    })?;
    let mut checks = Vec::new();
    let platforms = match super::block_on(inspector.truth_of(image))? {
        Ok(p) => p,
        Err(e) => {
            // The registry does not know it or cannot be reached: the engine's local
            // store, as `pick` and `run` fall back to.
            let local = Engine::detect().ok().and_then(|eng| {
                crate::local::lookup(eng, image)
                    .ok()
                    .flatten()
                    .map(|l| (eng, l))
            });
            let Some((eng, img)) = local else {
                return Err(e.into());
            };
            let mut entry = img.entry();
            let found = crate::local::program_of(eng, &img)
                .map_err(|le| CommandError::Refused(le.to_string()))?;
            let from = format!("{}'s local image", eng.program());
            entry.truth = Some(crate::registry::truth::report_for(&entry, &from, found));
            checks.push(Check::ok(
                "source",
                format!(
                    "{from} {} ({}): the registry said: {e}",
                    img.id, img.platform
                ),
            ));
            vec![entry]
        }
    };
    let host = super::containers::host_platform(ctx, &Default::default())?;
    let report = ImageReport {
        reference: image.to_string(),
        digest: None,
        media_type: None,
        platforms: platforms.clone(),
        attestations: Vec::new(),
        error: None,
        hint: None,
    };
    let choice = super::containers::choose_among(ctx, &host, &Default::default(), vec![report])
        .pop()
        .map(|(_, c)| c);
    let chosen = choice.as_ref().and_then(|c| c.platform.clone());
    for p in &platforms {
        let label = p.platform();
        let id = format!("platform:{label}");
        let here = choice
            .as_ref()
            .and_then(|c| c.candidates.iter().find(|k| k.digest == p.digest))
            .map(|k| match (k.usable, k.mode) {
                (true, Some(crate::platform::Mode::Native)) => {
                    "this host would run it natively".to_string()
                }
                (true, _) => format!(
                    "this host would run it emulated{}",
                    k.emulator
                        .as_deref()
                        .map(|e| format!(", through qemu-{e}"))
                        .unwrap_or_default()
                ),
                (false, _) => format!("this host cannot run it: {}", k.reason),
            })
            .unwrap_or_default();
        let is_chosen = chosen.as_deref().is_some_and(|c| {
            choice
                .as_ref()
                .and_then(|ch| ch.digest.as_deref())
                .map_or(c == label, |d| d == p.digest)
        });
        let mark = if is_chosen { " (its choice)" } else { "" };
        let mut finding = match &p.truth {
            Some(t) => t.summary(),
            None => "unchecked".into(),
        };
        if p.mismatch == Some(true) {
            finding.push_str(&format!(
                "; its config says {}",
                p.config_platform.as_deref().unwrap_or("?")
            ));
        }
        let finding = format!("{finding}; {here}{mark}");
        let mislabeled = p.mismatch == Some(true)
            || p.truth
                .as_ref()
                .is_some_and(|t| t.label_matches == Some(false));
        let fix = format!(
            "the image's label is wrong: rebuild it for {label} (docker buildx build --platform {label}, from a base image of {label}), or run a platform whose binaries match"
        );
        checks.push(if mislabeled && is_chosen {
            Check::fail(id, finding, fix)
        } else if mislabeled {
            Check::warn(id, finding, fix)
        } else {
            Check::ok(id, finding)
        });
    }
    checks.push(match &choice {
        Some(c) if c.platform.is_some() => Check::ok(
            "choice",
            format!(
                "this host would run {} {}",
                c.platform.as_deref().unwrap_or(""),
                match (c.mode, c.emulator.as_deref()) {
                    (Some(crate::platform::Mode::Native), _) => "natively".to_string(),
                    (_, Some(e)) => format!("emulated (qemu-{e})"),
                    _ => "emulated".to_string(),
                }
            ),
        ),
        Some(c) => Check::fail(
            "choice",
            format!(
                "this host can run none of {}'s platforms: {}",
                image,
                c.error.as_deref().unwrap_or("nothing usable")
            ),
            "archctl pick IMAGE --explain  (and archctl enable ARCH for the emulation it needs)",
        ),
        None => Check::fail(
            "choice",
            format!("{image} offers no platform"),
            "check the image name",
        ),
    });
    Ok(DoctorReport::new(image.to_string(), None, checks))
}

/// `archctl doctor FILE`: the ELF facts of FILE, and whether and how this host runs it.
pub fn file(ctx: &Context, path: &Path) -> Result<DoctorReport, CommandError> {
    let target = path.display().to_string();
    let facts = match elf::facts(path) {
        Ok(f) => f,
        Err(e) => {
            let fix = match &e {
                elf::ElfError::NotElf { .. } => {
                    "a script runs through its #! interpreter: archctl doctor THAT-INTERPRETER"
                }
                _ => "name an executable file",
            };
            let c = Check::fail("elf", e.to_string(), fix);
            return Ok(DoctorReport::new(target, None, vec![c]));
        }
    };
    let info = &facts.info;
    let rule = ctx.table.rules().iter().find(|r| r.matches(&info.header));
    let mut checks = Vec::new();
    let level = facts
        .x86_isa_needed
        .filter(|l| *l > 1)
        .map(|l| format!(", needs x86-64-v{l}"))
        .unwrap_or_default();
    let arch = rule.map_or("an architecture archctl has no rule for", |r| {
        r.name.as_str()
    });
    checks.push(Check::ok(
        "elf",
        format!(
            "{} ({arch}), {}, {}{level}",
            info.describe(),
            facts.elf_type,
            facts.os_abi
        ),
    ));
    checks.push(runs_here(ctx, &facts, rule));
    Ok(DoctorReport::new(target, Some(facts), checks))
}

fn runs_here(ctx: &Context, facts: &elf::ElfFacts, rule: Option<&Rule>) -> Check {
    let id = "runs-here";
    let info = &facts.info;
    let Some(rule) = rule else {
        return Check::fail(
            id,
            format!("no emulator archctl knows runs {} programs", info.machine),
            "run it on a machine of its architecture",
        );
    };
    let arch = &rule.name;
    let needed = facts.x86_isa_needed.filter(|l| *l > 1);
    let native = ctx.native_all();
    if native.runs(ctx.table, &info.header) {
        if let Some(need) = needed
            && let Some(have) = cpu::host_amd64_level()
            && have < need
        {
            return Check::fail(
                id,
                format!(
                    "native {arch}, but it needs x86-64-v{need} and this CPU is x86-64-v{have}: it would die of an illegal instruction"
                ),
                "a build for a lower level (e.g. linux/amd64 without a v3 variant), or a newer CPU",
            );
        }
        return Check::ok(id, format!("runs natively ({arch})"));
    }
    let entries = match ctx.entries_if_mounted() {
        Ok(e) => e,
        Err(e) => {
            return Check::fail(
                id,
                format!("cannot read binfmt_misc: {e}"),
                "archctl doctor",
            );
        }
    };
    let Some(entry) = entries
        .iter()
        .find(|e| e.enabled && e.matcher.matches(&info.header))
    else {
        return Check::fail(
            id,
            format!(
                "no binfmt_misc entry catches {arch} programs: running it fails with \"exec format error\""
            ),
            format!("archctl enable {arch}"),
        );
    };
    let through = format!("through {} ({})", entry.name, entry.interpreter);
    if let Some(need) = needed {
        let level = if Path::new(&entry.interpreter).exists() {
            cpu::x86_64_level(Path::new(&entry.interpreter)).ok()
        } else {
            cpu::probe_x86_64_level_through_binfmt(&entry.name).ok()
        };
        if let Some(have) = level
            && have < need
        {
            return Check::fail(
                id,
                format!(
                    "{through}, but it needs x86-64-v{need} and the emulator provides x86-64-v{have}: it would die of an illegal instruction"
                ),
                "a newer qemu-user-static (QEMU 7.2+ emulates x86-64-v3), or a build for a lower level",
            );
        }
    }
    if let Some(interp) = &info.interpreter
        && !Path::new(interp).exists()
    {
        return Check::warn(
            id,
            format!(
                "{through}, but it is dynamically linked and needs {interp}, which is not on this host (ENOENT when run here)"
            ),
            format!(
                "run it in a root or container of its architecture (chroot, or docker run --platform {}), or point QEMU_LD_PREFIX at such a root",
                rule.platforms.first().map_or("...", String::as_str)
            ),
        );
    }
    Check::ok(id, format!("runs emulated, {through}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buildx_builders_that_miss_an_emulated_platform_are_named() {
        // `docker buildx ls` (buildx 0.12) on an amd64 host whose builder started
        // before qemu-aarch64 was registered.
        let out = "NAME/NODE       DRIVER/ENDPOINT STATUS  BUILDKIT             PLATFORMS
default *       docker
  default       default         running v0.12.5+bce5db6acf0e linux/amd64, linux/amd64/v2, linux/amd64/v3, linux/386
";
        let table = crate::arch::Table::builtin();
        let (Some(arm64), Some(i386)) = (table.get("aarch64"), table.get("i386")) else {
            panic!("no aarch64 or i386 rule");
        };
        let c = buildx_check(out, &[arm64]);
        assert_eq!(c.verdict, doctor::Verdict::Warn, "{}", c.finding);
        assert!(
            c.finding.contains("do not list linux/arm64"),
            "{}",
            c.finding
        );
        let c = buildx_check(out, &[i386]);
        assert_eq!(c.verdict, doctor::Verdict::Ok, "{}", c.finding);
        let with_arm = out.replace("linux/386", "linux/386, linux/arm64");
        assert_eq!(
            buildx_check(&with_arm, &[arm64]).verdict,
            doctor::Verdict::Ok
        );
    }

    #[test]
    fn the_kernel_check_knows_f_and_private_instances() {
        let old = kernel("4.4.0-210-generic", false);
        assert_eq!(old.verdict, doctor::Verdict::Fail);
        assert!(
            old.finding.contains("no F flag before 4.8"),
            "{}",
            old.finding
        );
        let mid = kernel("5.15.0-91-generic", false);
        assert_eq!(mid.verdict, doctor::Verdict::Ok);
        assert!(mid.finding.contains("one binfmt_misc for the whole host"));
        let new = kernel("6.8.0", true);
        assert!(new.finding.contains("per user namespace"));
    }
}
