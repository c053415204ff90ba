//! The archctl binary: parses arguments, calls the library, prints, maps exit codes.
//! Exit codes: 0 success, 1 failure, 2 usage error.

use std::{ffi::OsString, path::PathBuf, process::ExitCode, time::Duration};

use archctl::{
    binfmt::{DEFAULT_DIR, Flags},
    emulator::Search,
    ops::{self, Context},
    plan::{EnableOptions, Selection},
    report,
};
use clap::{Args, Parser, Subcommand};
use serde::Serialize;

mod alloc;

#[derive(Parser)]
#[command(
    name = "archctl",
    version,
    about = "Run foreign-architecture binaries and containers: qemu-user-static in binfmt_misc, registered right."
)]
struct Cli {
    /// Where binfmt_misc is (or gets) mounted.
    #[arg(long, global = true, env = "ARCHCTL_BINFMT_DIR", default_value = DEFAULT_DIR, value_name = "PATH")]
    binfmt_dir: PathBuf,
    /// Print machine-readable JSON on stdout.
    #[arg(long, global = true)]
    json: bool,
    /// Print nothing but errors.
    #[arg(short, long, global = true)]
    quiet: bool,
    /// archctl's configuration file [default: ARCHCTL_CONFIG, else /etc/archctl/config.toml].
    #[arg(long, global = true, value_name = "PATH")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Args, Clone)]
struct EmulatorArgs {
    /// Emulator binary to register (one architecture only).
    #[arg(long, value_name = "PATH")]
    emulator: Option<PathBuf>,
    /// Directory holding qemu-<arch>-static (or qemu-<arch>) emulators
    /// [default search: /usr/bin, /usr/local/bin, /usr/local/lib/archctl/emulators, then /usr/bin/qemu-<arch>].
    #[arg(long, value_name = "DIR")]
    emulator_dir: Option<PathBuf>,
    /// binfmt_misc flags, a subset of POCF. F (default) opens the emulator at
    /// registration so it works inside containers and chroots. C (credentials of the
    /// binary, needed for sudo/setuid programs inside emulated containers) is opt-in:
    /// qemu-user does not sanitise its QEMU_* environment for setuid programs, so any
    /// user could make a setuid program misbehave with raised privileges.
    #[arg(long, default_value = "F", value_name = "FLAGS")]
    flags: String,
}

impl EmulatorArgs {
    /// What `enable` and `export` register: the selection, these emulators and flags.
    fn enable_options(&self, selection: Selection, force: bool) -> anyhow::Result<EnableOptions> {
        Ok(EnableOptions {
            selection,
            search: self.search(),
            flags: Flags::parse(&self.flags).map_err(archctl::Error::from)?,
            force,
            skip_missing: false,
            skip_conflicts: false,
        })
    }

    fn search(&self) -> Search {
        Search {
            explicit: self.emulator.clone(),
            dir: self.emulator_dir.clone(),
            ..Default::default()
        }
    }
}

#[derive(Subcommand)]
enum Command {
    /// Register qemu-user-static for architectures, verified by running a test program.
    Enable {
        #[command(flatten)]
        select: SelectArgs,
        #[command(flatten)]
        emu: EmulatorArgs,
        /// Replace a different entry of the same name, and register in front of
        /// another entry (e.g. rosetta) that handles the architecture.
        #[arg(long)]
        force: bool,
        /// Skip running the test program after registering.
        #[arg(long)]
        no_verify: bool,
        /// Print the register strings; change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Seconds each verification may take.
        #[arg(long, default_value_t = 30, value_name = "SECS")]
        timeout: u64,
    },
    /// Remove archctl's qemu-<arch> entries (--all: every qemu-* entry), never others.
    Disable {
        #[command(flatten)]
        select: SelectArgs,
        /// Print what would be removed; change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Host, binfmt_misc state, native architectures and every registered entry.
    Status,
    /// Run the embedded test program of each architecture (default: every registered or
    /// native one).
    Test {
        #[arg(value_name = "ARCH")]
        archs: Vec<String>,
        /// Seconds each test program may take.
        #[arg(long, default_value_t = 30, value_name = "SECS")]
        timeout: u64,
    },
    /// Apply the configuration (what the boot service runs): the enable logic,
    /// idempotent, with a one-line summary.
    Boot,
    /// Write what `enable` would register as binfmt.d files (for systemd-binfmt) or
    /// JSON.
    Export {
        /// binfmt.d or json.
        #[arg(long, value_name = "FORMAT", value_parser = ["binfmt.d", "json"], default_value = "binfmt.d")]
        format: String,
        #[command(flatten)]
        select: SelectArgs,
        #[command(flatten)]
        emu: EmulatorArgs,
        /// Write one file per entry into this directory (e.g. /etc/binfmt.d) instead of
        /// printing.
        #[arg(long, value_name = "DIR")]
        output: Option<PathBuf>,
    },
    /// Install, remove or check the boot service that runs `archctl boot`.
    Service {
        #[command(subcommand)]
        action: ServiceAction,
        /// auto, systemd, openrc or sysv (rc.local / busybox bootlocal.sh).
        #[arg(long, global = true, default_value = "auto", value_name = "INIT")]
        init: String,
        /// Write into another root (image building).
        #[arg(long, global = true, default_value = "/", value_name = "DIR")]
        root: PathBuf,
        /// The archctl the service runs [default: this one].
        #[arg(long, global = true, value_name = "PATH")]
        binary: Option<PathBuf>,
    },
    /// Installed emulators, and bundles of them for offline guests.
    Emulators {
        #[command(subcommand)]
        action: EmulatorsAction,
    },
    /// Write or show archctl's configuration.
    Config {
        #[command(subcommand)]
        action: ConfigAction,
    },
    /// Which platforms images offer, from their registries.
    Inspect {
        /// Image references: alpine, alpine:3.20, ghcr.io/o/r:t, 127.0.0.1:5000/x@sha256:...
        #[arg(value_name = "IMAGE", required = true)]
        images: Vec<String>,
        /// Allow plain HTTP and unverified TLS for every registry (loopback registries and
        /// daemon.json's insecure-registries are allowed anyway).
        #[arg(long)]
        insecure: bool,
        /// Do not read or write the on-disk cache.
        #[arg(long)]
        no_cache: bool,
        /// Also fetch every platform's manifest and config and report entries whose
        /// config contradicts the index (`config_platform`, `mismatch` in JSON).
        #[arg(long)]
        verify_platforms: bool,
        /// Images inspected at once.
        #[arg(long, default_value_t = 8, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=256))]
        concurrency: u16,
        /// Seconds each request may take.
        #[arg(long, default_value_t = 30, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..=3600))]
        timeout: u64,
    },
    /// Choose the platform an image runs as here: native first, emulated only when needed.
    Pick {
        #[arg(value_name = "IMAGE")]
        image: String,
        #[command(flatten)]
        choice: ChoiceArgs,
        /// Print every candidate and why it was taken or rejected.
        #[arg(long)]
        explain: bool,
        /// Allow plain HTTP and unverified TLS for every registry.
        #[arg(long)]
        insecure: bool,
        /// Seconds each registry request may take.
        #[arg(long, default_value_t = 30, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..=3600))]
        timeout: u64,
    },
    /// Run a container on the platform `pick` chooses (native first), registering
    /// emulation on demand, then become the engine's `run` (signals, TTY, exit code).
    Run {
        /// docker, podman or nerdctl [default: ARCHCTL_ENGINE, else the first on PATH].
        #[arg(long, value_name = "ENGINE")]
        engine: Option<String>,
        /// Print the engine command instead of running it.
        #[arg(long)]
        dry_run: bool,
        /// Refuse emulated platforms.
        #[arg(long)]
        no_emulation: bool,
        /// [ENGINE-RUN-OPTIONS...] IMAGE [COMMAND [ARG...]], passed to the engine.
        #[arg(
            value_name = "ARGS",
            required = true,
            trailing_var_arg = true,
            allow_hyphen_values = true
        )]
        args: Vec<OsString>,
    },
    /// For a compose file, print an override file that sets `platform:` per service
    /// (the same choice as `pick`): `docker compose -f FILE -f OVERRIDE up`.
    ComposePlatforms {
        #[arg(value_name = "FILE")]
        file: PathBuf,
        #[command(flatten)]
        choice: ChoiceArgs,
    },
    /// Run a command with emulation in a private user namespace (Linux 6.7+), without
    /// root and without touching the host's binfmt_misc.
    Exec {
        /// Architectures to register inside (repeat, or separate with commas).
        #[arg(long = "arch", value_name = "ARCH", required = true, num_args = 1.., value_delimiter = ',')]
        archs: Vec<String>,
        #[command(flatten)]
        emu: EmulatorArgs,
        /// The command and its arguments, after `--`.
        #[arg(last = true, value_name = "CMD", required = true)]
        command: Vec<OsString>,
    },
}

#[derive(Subcommand)]
enum EmulatorsAction {
    /// Which qemu-user emulators are installed: version, static or not, usable with F.
    List {
        /// Look here first.
        #[arg(long, value_name = "DIR")]
        emulator_dir: Option<PathBuf>,
    },
    /// Install emulators from a tar.gz bundle (as `pack` makes), checked before use.
    Install {
        /// Only these architectures from the bundle [default: all in it].
        #[arg(value_name = "ARCH")]
        archs: Vec<String>,
        /// Bundle: an http(s) URL or a file.
        #[arg(long = "from", value_name = "URL|FILE", required = true)]
        from: String,
        /// The bundle's sha256, checked before anything is unpacked.
        #[arg(long, value_name = "HEX", required = true)]
        sha256: String,
        /// Where to install.
        #[arg(long, value_name = "DIR", default_value = archctl::bundle::DEFAULT_DEST)]
        dest: PathBuf,
        /// Seconds the download may stall.
        #[arg(long, default_value_t = 60, value_name = "SECS")]
        timeout: u64,
    },
    /// Pack installed static emulators into a tar.gz for an offline guest.
    Pack {
        /// Only these architectures [default: every installed one].
        #[arg(value_name = "ARCH")]
        archs: Vec<String>,
        #[arg(long, value_name = "FILE", required = true)]
        output: PathBuf,
        /// Look here first.
        #[arg(long, value_name = "DIR")]
        emulator_dir: Option<PathBuf>,
    },
}

#[derive(Subcommand, Clone, Copy)]
enum ServiceAction {
    /// Write and enable the boot service.
    Install,
    /// Remove exactly what install wrote.
    Uninstall,
    /// Is it installed, and up to date?
    Status,
}

#[derive(Subcommand)]
enum ConfigAction {
    /// Write the commented default configuration.
    Init {
        /// Where [default: the configuration path].
        #[arg(long, value_name = "FILE")]
        output: Option<PathBuf>,
        /// Overwrite an existing file.
        #[arg(long)]
        force: bool,
    },
    /// Print the effective configuration (the file's values and the defaults).
    Show,
}

/// How `pick` and `compose-platforms` choose.
#[derive(Args, Clone)]
struct ChoiceArgs {
    /// Choose as for this platform (linux/arm64, linux/amd64, ...) instead of this host.
    #[arg(long, value_name = "PLATFORM")]
    host_platform: Option<String>,
    /// The arm64 CPU cannot run 32-bit arm (Apple Silicon); detected on the real host.
    #[arg(long)]
    no_aarch32: bool,
    /// Refuse emulated platforms.
    #[arg(long)]
    no_emulation: bool,
}

impl ChoiceArgs {
    fn options(self) -> ops::PickOptions {
        ops::PickOptions {
            host_platform: self.host_platform,
            no_aarch32: self.no_aarch32,
            no_emulation: self.no_emulation,
        }
    }
}

/// Which architectures `enable`/`disable` act on.
#[derive(Args, Clone)]
struct SelectArgs {
    /// Architectures: QEMU names (x86_64, aarch64, ...), aliases (amd64, arm64, armhf)
    /// or platforms (linux/amd64).
    #[arg(
        value_name = "ARCH",
        required_unless_present = "all",
        conflicts_with = "all"
    )]
    archs: Vec<String>,
    /// enable: every architecture the host does not run natively and has an emulator
    /// for; disable: every qemu-* entry.
    #[arg(long)]
    all: bool,
}

impl SelectArgs {
    fn selection(self) -> Selection {
        if self.all {
            Selection::All
        } else {
            Selection::Archs(self.archs)
        }
    }
}

struct Out {
    json: bool,
    quiet: bool,
}

impl Out {
    fn print<T: Serialize>(
        &self,
        value: &T,
        human: impl FnOnce(&T) -> String,
    ) -> anyhow::Result<()> {
        if self.json {
            println!("{}", serde_json::to_string_pretty(value)?);
        } else if !self.quiet {
            print!("{}", human(value));
        }
        Ok(())
    }

    fn warn(&self, msg: &str) {
        if !self.quiet {
            eprintln!("archctl: warning: {msg}");
        }
    }

    fn info(&self, msg: &str) {
        if !self.quiet {
            eprintln!("archctl: {msg}");
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let out = Out {
        json: cli.json,
        quiet: cli.quiet,
    };
    match cli.command {
        Command::Enable {
            select,
            emu,
            force,
            no_verify,
            dry_run,
            timeout,
        } => {
            let ctx = Context::new(cli.binfmt_dir);
            let opts = emu.enable_options(select.selection(), force)?;
            let r = ops::enable(
                &ctx,
                &opts,
                !no_verify,
                dry_run,
                Duration::from_secs(timeout),
            )?;
            if r.mounted {
                out.info(&format!("mounted binfmt_misc at {}", r.binfmt_dir));
            }
            for w in &r.warnings {
                out.warn(w);
            }
            out.print(&r, report::change)
        }
        Command::Disable { select, dry_run } => {
            let ctx = Context::new(cli.binfmt_dir);
            let r = ops::disable(&ctx, &select.selection(), dry_run)?;
            out.print(&r, report::change)
        }
        Command::Export {
            format,
            select,
            emu,
            output,
        } => {
            let ctx = Context::new(cli.binfmt_dir);
            let opts = emu.enable_options(select.selection(), false)?;
            let binfmt_d = format == "binfmt.d";
            let r = ops::export(&ctx, &opts, output.as_deref(), binfmt_d)?;
            out.print(&r, |r| {
                r.entries
                    .iter()
                    .map(|e| match &e.file {
                        Some(f) => format!("wrote {f}\n"),
                        None if binfmt_d => format!("{}\n", e.register),
                        None => serde_json::to_string(e).unwrap_or_default() + "\n",
                    })
                    .collect()
            })
        }
        Command::Service {
            action,
            init,
            root,
            binary,
        } => {
            use archctl::service;
            let init = service::Init::parse(&init, &root).map_err(archctl::Error::from)?;
            let binary = match binary {
                Some(b) => b,
                None => std::env::current_exe()?,
            };
            let r = match action {
                ServiceAction::Install => service::install(init, &root, &binary),
                ServiceAction::Uninstall => service::uninstall(init, &root),
                ServiceAction::Status => Ok(service::status(init, &root, &binary)),
            }
            .map_err(archctl::Error::from)?;
            out.print(&r, |r| {
                let what = match action {
                    ServiceAction::Install => "installed",
                    ServiceAction::Uninstall => "removed",
                    ServiceAction::Status if r.installed && r.up_to_date => "installed, up to date",
                    ServiceAction::Status if r.installed => {
                        "installed, out of date (run install again)"
                    }
                    ServiceAction::Status => "not installed",
                };
                let mut s = format!("{} boot service {what}\n", r.init.as_str());
                for p in &r.paths {
                    s.push_str(&format!("  {p}\n"));
                }
                s
            })
        }
        Command::Emulators { action } => {
            use archctl::bundle;
            let ctx = Context::new(cli.binfmt_dir);
            let table = ctx.table;
            let native = ctx.native_all();
            let search = |dir: Option<PathBuf>| Search {
                dir,
                ..Default::default()
            };
            match action {
                EmulatorsAction::List { emulator_dir } => {
                    let r = bundle::list(table, &native, &search(emulator_dir));
                    out.print(&r, |r| {
                        r.iter()
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
                    })
                }
                EmulatorsAction::Pack {
                    archs,
                    output,
                    emulator_dir,
                } => {
                    let rules = if archs.is_empty() {
                        table.rules().iter().collect()
                    } else {
                        table.lookup_all(&archs).map_err(archctl::Error::from)?
                    };
                    let r = bundle::pack(table, &native, &search(emulator_dir), &rules, &output)
                        .map_err(archctl::Error::from)?;
                    out.print(&r, |r| {
                        format!(
                            "{} ({} emulators)\nsha256 {}\n",
                            r.file,
                            r.emulators.len(),
                            r.sha256
                        )
                    })
                }
                EmulatorsAction::Install {
                    archs,
                    from,
                    sha256,
                    dest,
                    timeout,
                } => {
                    let rules = table.lookup_all(&archs).map_err(archctl::Error::from)?;
                    let r = bundle::install(
                        table,
                        &native,
                        &from,
                        &sha256,
                        &dest,
                        &rules,
                        Duration::from_secs(timeout),
                    )
                    .map_err(archctl::Error::from)?;
                    out.print(&r, |r| {
                        r.installed
                            .iter()
                            .map(|p| format!("installed {p}\n"))
                            .collect()
                    })
                }
            }
        }
        Command::Boot => {
            let ctx = Context::new(cli.binfmt_dir);
            let path = archctl::config::Config::path(cli.config.as_deref());
            let r = ops::boot(&ctx, &path)?;
            out.print(&r, |r| format!("{}\n", r.summary))
        }
        Command::Config { action } => {
            let path = archctl::config::Config::path(cli.config.as_deref());
            match action {
                ConfigAction::Init { output, force } => {
                    let target = output.unwrap_or(path);
                    ops::config_init(&target, force)?;
                    out.info(&format!("wrote {}", target.display()));
                    Ok(())
                }
                ConfigAction::Show => {
                    let (c, _) =
                        archctl::config::Config::load(&path, archctl::arch::Table::builtin())
                            .map_err(archctl::Error::from)?;
                    out.print(&c, |c| toml::to_string_pretty(c).unwrap_or_default())
                }
            }
        }
        Command::Status => {
            let ctx = Context::new(cli.binfmt_dir);
            let r = ops::status(&ctx)?;
            out.print(&r, report::status)
        }
        Command::Test { archs, timeout } => {
            let ctx = Context::new(cli.binfmt_dir);
            let r = ops::test(&ctx, &archs, Duration::from_secs(timeout))?;
            out.print(&r, report::test)
        }
        Command::Inspect {
            images,
            insecure,
            no_cache,
            verify_platforms,
            concurrency,
            timeout,
        } => {
            let opts = archctl::registry::Options {
                insecure,
                verify_platforms,
                timeout: Duration::from_secs(timeout),
                cache: !no_cache,
                concurrency: usize::from(concurrency),
                ..Default::default()
            };
            let r = ops::inspect(&images, opts)?;
            for i in &r.images {
                for p in i.platforms.iter().filter(|p| p.mismatch == Some(true)) {
                    out.warn(&format!(
                        "{}: the {} entry's config says {}",
                        i.reference,
                        p.platform(),
                        p.config_platform.as_deref().unwrap_or("?")
                    ));
                }
            }
            out.print(&r, report::inspect)
        }
        Command::Pick {
            image,
            choice,
            explain,
            insecure,
            timeout,
        } => {
            let ctx = Context::new(cli.binfmt_dir);
            let opts = choice.options();
            let reg = archctl::registry::Options {
                insecure,
                timeout: Duration::from_secs(timeout),
                ..Default::default()
            };
            let c = ops::pick(&ctx, &image, &opts, reg)?;
            out.print(&c, |c| report::pick(c, explain))
        }
        Command::Run {
            engine,
            dry_run,
            no_emulation,
            args,
        } => {
            let ctx = Context::new(cli.binfmt_dir);
            let opts = ops::RunOptions {
                engine,
                dry_run,
                no_emulation,
                args,
            };
            let plan = ops::plan_run(&ctx, &opts, archctl::registry::Options::default())?;
            if dry_run {
                return out.print(&plan, |p| {
                    let mut s = String::new();
                    if let Some(a) = &p.enable {
                        s.push_str(&format!("archctl enable {a}\n"));
                    }
                    s.push_str(&archctl::engine::shell_quote(&p.argv));
                    s.push('\n');
                    s
                });
            }
            Err(ops::exec_run(&plan).into())
        }
        Command::ComposePlatforms { file, choice } => {
            let ctx = Context::new(cli.binfmt_dir);
            let opts = choice.options();
            let r =
                ops::compose_platforms(&ctx, &file, &opts, archctl::registry::Options::default())?;
            out.print(&r, |r| r.r#override.clone())
        }
        Command::Exec {
            archs,
            emu,
            command,
        } => {
            let flags = Flags::parse(&emu.flags).map_err(archctl::Error::from)?;
            Err(ops::exec(
                archctl::arch::Table::builtin(),
                &archs,
                &emu.search(),
                flags,
                &command,
            )
            .into())
        }
    }
}

fn main() -> ExitCode {
    // Output piped into `head` and the like: end quietly on a closed pipe, as Unix
    // tools do, instead of panicking in println!.
    // SAFETY: restoring the default disposition of one signal at start-up.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            use clap::error::ErrorKind;
            if matches!(
                e.kind(),
                ErrorKind::DisplayHelp
                    | ErrorKind::DisplayVersion
                    | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
            ) {
                let _ = e.print();
                return if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
                    ExitCode::from(2)
                } else {
                    ExitCode::SUCCESS
                };
            }
            let text = e.to_string();
            let first = text
                .lines()
                .next()
                .unwrap_or("invalid arguments")
                .trim_start_matches("error: ");
            eprintln!("archctl: error: {first}");
            eprintln!("hint: see `archctl --help` or `archctl <command> --help`");
            return ExitCode::from(2);
        }
    };
    let json = cli.json;
    let quiet = cli.quiet;
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let lib = e.downcast_ref::<archctl::Error>();
            if let Some(r) = lib.and_then(archctl::Error::report) {
                if json {
                    if let Ok(s) = serde_json::to_string_pretty(r) {
                        println!("{s}");
                    }
                } else if !quiet {
                    print!("{}", report::any(r));
                }
            }
            eprintln!("archctl: error: {e}");
            if let Some(h) = lib.and_then(archctl::Error::hint) {
                eprintln!("hint: {h}");
            }
            for h in lib.map(archctl::Error::report_hints).unwrap_or_default() {
                eprintln!("hint: {h}");
            }
            if lib.is_some_and(archctl::Error::is_usage) {
                ExitCode::from(2)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}
