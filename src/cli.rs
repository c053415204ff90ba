//! The command line: clap's types, and [`run`], which turns parsed arguments into one
//! command-layer call and returns its report. Printing and exit codes are main's.

use std::{ffi::OsString, path::PathBuf, time::Duration};

use clap::{Args, Parser, Subcommand};

use crate::{
    binfmt::{DEFAULT_DIR, Flags},
    commands::{
        CommandError, Context, binfmt, compose,
        containers::{self, PickOptions, RunOptions},
        exec, setup,
    },
    config::Config,
    emulator::Search,
    plan::{EnableOptions, Selection},
    registry,
    report::{Report, ServiceVerb},
};

#[derive(Parser)]
#[command(
    name = "archctl",
    version,
    about = "Run foreign-architecture binaries and containers: qemu-user-static in binfmt_misc, registered right."
)]
pub struct Cli {
    /// Where binfmt_misc is (or gets) mounted.
    #[arg(long, global = true, env = "ARCHCTL_BINFMT_DIR", default_value = DEFAULT_DIR, value_name = "PATH")]
    pub binfmt_dir: PathBuf,
    /// Print machine-readable JSON on stdout.
    #[arg(long, global = true)]
    pub json: bool,
    /// Print nothing but errors.
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// archctl's configuration file [default: ARCHCTL_CONFIG, else /etc/archctl/config.toml].
    #[arg(long, global = true, value_name = "PATH")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Args, Clone)]
pub struct EmulatorArgs {
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
    fn enable_options(
        &self,
        selection: Selection,
        force: bool,
    ) -> Result<EnableOptions, CommandError> {
        Ok(EnableOptions {
            selection,
            search: self.search(),
            flags: Flags::parse(&self.flags)?,
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
pub enum Command {
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
pub enum EmulatorsAction {
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
        #[arg(long, value_name = "DIR", default_value = crate::bundle::DEFAULT_DEST)]
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
pub enum ServiceAction {
    /// Write and enable the boot service.
    Install,
    /// Remove exactly what install wrote.
    Uninstall,
    /// Is it installed, and up to date?
    Status,
}

#[derive(Subcommand)]
pub enum ConfigAction {
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
pub struct ChoiceArgs {
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
    fn options(self) -> PickOptions {
        PickOptions {
            host_platform: self.host_platform,
            no_aarch32: self.no_aarch32,
            no_emulation: self.no_emulation,
        }
    }
}

/// Which architectures `enable`/`disable` act on.
#[derive(Args, Clone)]
pub struct SelectArgs {
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

impl From<ServiceAction> for ServiceVerb {
    fn from(a: ServiceAction) -> ServiceVerb {
        match a {
            ServiceAction::Install => ServiceVerb::Install,
            ServiceAction::Uninstall => ServiceVerb::Uninstall,
            ServiceAction::Status => ServiceVerb::Status,
        }
    }
}

/// Run the command the arguments name. `run` and `exec` replace the process and return
/// only on error (or, for `run --dry-run`, with the plan).
pub fn run(cli: Cli) -> Result<Report, CommandError> {
    let ctx = || Context::new(cli.binfmt_dir.clone());
    let config_path = || Config::path(cli.config.as_deref());
    Ok(match cli.command {
        Command::Enable {
            select,
            emu,
            force,
            no_verify,
            dry_run,
            timeout,
        } => {
            let opts = emu.enable_options(select.selection(), force)?;
            let timeout = Duration::from_secs(timeout);
            Report::Change(binfmt::enable(&ctx(), &opts, !no_verify, dry_run, timeout)?)
        }
        Command::Disable { select, dry_run } => {
            Report::Change(binfmt::disable(&ctx(), &select.selection(), dry_run)?)
        }
        Command::Status => Report::Status(binfmt::status(&ctx())?),
        Command::Test { archs, timeout } => {
            Report::Test(binfmt::test(&ctx(), &archs, Duration::from_secs(timeout))?)
        }
        Command::Boot => Report::Boot(binfmt::boot(&ctx(), &config_path())?),
        Command::Export {
            format,
            select,
            emu,
            output,
        } => {
            let opts = emu.enable_options(select.selection(), false)?;
            let binfmt_d = format == "binfmt.d";
            Report::Export(binfmt::export(&ctx(), &opts, output.as_deref(), binfmt_d)?)
        }
        Command::Service {
            action,
            init,
            root,
            binary,
        } => Report::Service(setup::service(
            action.into(),
            &init,
            &root,
            binary.as_deref(),
        )?),
        Command::Emulators { action } => match action {
            EmulatorsAction::List { emulator_dir } => {
                Report::Emulators(setup::emulators_list(&ctx(), emulator_dir.as_deref()))
            }
            EmulatorsAction::Pack {
                archs,
                output,
                emulator_dir,
            } => Report::Packed(setup::emulators_pack(
                &ctx(),
                &archs,
                &output,
                emulator_dir.as_deref(),
            )?),
            EmulatorsAction::Install {
                archs,
                from,
                sha256,
                dest,
                timeout,
            } => Report::Installed(setup::emulators_install(
                &ctx(),
                &archs,
                &from,
                &sha256,
                &dest,
                Duration::from_secs(timeout),
            )?),
        },
        Command::Config { action } => match action {
            ConfigAction::Init { output, force } => {
                let target = output.unwrap_or_else(config_path);
                Report::ConfigWritten(setup::config_init(&target, force)?)
            }
            ConfigAction::Show => Report::ConfigShown(setup::config_show(&config_path())?),
        },
        Command::Inspect {
            images,
            insecure,
            no_cache,
            verify_platforms,
            concurrency,
            timeout,
        } => {
            let opts = registry::Options {
                insecure,
                verify_platforms,
                timeout: Duration::from_secs(timeout),
                cache: !no_cache,
                concurrency: usize::from(concurrency),
                ..Default::default()
            };
            Report::Inspect(containers::inspect(&images, opts)?)
        }
        Command::Pick {
            image,
            choice,
            explain,
            insecure,
            timeout,
        } => {
            let reg = registry::Options {
                insecure,
                timeout: Duration::from_secs(timeout),
                ..Default::default()
            };
            let choice = containers::pick(&ctx(), &image, &choice.options(), reg)?;
            Report::Pick(crate::report::PickReport { choice, explain })
        }
        Command::Run {
            engine,
            dry_run,
            no_emulation,
            args,
        } => {
            let opts = RunOptions {
                engine,
                dry_run,
                no_emulation,
                args,
            };
            let plan = containers::plan_run(&ctx(), &opts, registry::Options::default())?;
            if !dry_run {
                return Err(containers::exec_run(&plan));
            }
            Report::Run(plan)
        }
        Command::ComposePlatforms { file, choice } => Report::Compose(compose::compose_platforms(
            &ctx(),
            &file,
            &choice.options(),
            registry::Options::default(),
        )?),
        Command::Exec {
            archs,
            emu,
            command,
        } => {
            let flags = Flags::parse(&emu.flags)?;
            return Err(exec::exec(&ctx(), &archs, &emu.search(), flags, &command));
        }
    })
}
