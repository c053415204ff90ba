//! The command line: clap's types, and [`run`], which turns parsed arguments into one
//! command-layer call and returns its report. Printing and exit codes are main's.

use std::{ffi::OsString, path::PathBuf, time::Duration};

use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};

use crate::{
    binfmt::{DEFAULT_DIR, Flags},
    commands::{
        CommandError, Context, binfmt, compose,
        containers::{self, PickOptions, RunOptions},
        doctor, exec, node_agent, package, ps, setup, webhook,
    },
    config::Config,
    emulator::Search,
    plan::{EnableOptions, Selection},
    registry,
    report::{Report, ServiceVerb},
};

/// Every `--timeout SECS` takes 1 to this many seconds (an hour), checked when parsed:
/// a larger one would overflow the deadline arithmetic (`Instant + Duration`) after
/// something was registered.
pub const MAX_TIMEOUT_SECS: u64 = 3600;

/// The parser of every `--timeout SECS`: 1..=[`MAX_TIMEOUT_SECS`], a usage error (exit 2,
/// naming the flag and the range) otherwise, before anything is touched.
fn secs() -> clap::builder::RangedU64ValueParser<u64> {
    clap::value_parser!(u64).range(1..=MAX_TIMEOUT_SECS)
}

const ABOUT: &str = "Run foreign-architecture binaries and containers: qemu-user-static in binfmt_misc, registered right.";

#[derive(Parser)]
#[command(name = "archctl", version, about = ABOUT)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

/// The options every command takes.
#[derive(Args)]
pub struct Global {
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
}

impl Cli {
    /// Parse the command line. archctl runs on the boot path and in front of every
    /// `docker run`, and building clap's whole tree (every subcommand and option) was a
    /// quarter of a boot's instructions; so when argv names a subcommand, only that one
    /// is built. Help, version, `help CMD`, unknown words and anything unusual go
    /// through the full tree, so messages and suggestions are clap's own.
    pub fn parse_args(args: impl IntoIterator<Item = OsString>) -> Result<Cli, clap::Error> {
        let args: Vec<OsString> = args.into_iter().collect();
        let Some(root) = subcommand_word(&args).and_then(lone_root) else {
            return Cli::try_parse_from(args);
        };
        let m = root.try_get_matches_from(args)?;
        Ok(Cli {
            global: Global::from_arg_matches(&m)?,
            command: Command::from_arg_matches(&m)?,
        })
    }
}

/// The first word of argv that is not a global option (or its value).
fn subcommand_word(args: &[OsString]) -> Option<&str> {
    let mut words = args.iter().skip(1);
    while let Some(w) = words.next() {
        let w = w.to_str()?;
        match w {
            "--binfmt-dir" | "--config" => {
                words.next();
            }
            "--json" | "--quiet" | "-q" => {}
            _ if w.starts_with("--binfmt-dir=") || w.starts_with("--config=") => {}
            _ if w.starts_with('-') => return None,
            _ => return Some(w),
        }
    }
    None
}

/// The root command with the global options and only the subcommand `name`.
fn lone_root(name: &str) -> Option<clap::Command> {
    type Augment = fn(clap::Command) -> clap::Command;
    let (name, augment): (&'static str, Augment) = match name {
        "enable" => ("enable", EnableArgs::augment_args),
        "disable" => ("disable", DisableArgs::augment_args),
        "status" => ("status", StatusArgs::augment_args),
        "test" => ("test", TestArgs::augment_args),
        "boot" => ("boot", BootArgs::augment_args),
        "export" => ("export", ExportArgs::augment_args),
        "service" => ("service", ServiceArgs::augment_args),
        "emulators" => ("emulators", EmulatorsArgs::augment_args),
        "config" => ("config", ConfigArgs::augment_args),
        "inspect" => ("inspect", InspectArgs::augment_args),
        "pick" => ("pick", PickArgs::augment_args),
        "run" => ("run", RunArgs::augment_args),
        "compose-platforms" => ("compose-platforms", ComposePlatformsArgs::augment_args),
        "exec" => ("exec", ExecArgs::augment_args),
        "ps" => ("ps", PsArgs::augment_args),
        "doctor" => ("doctor", DoctorArgs::augment_args),
        "node-agent" => ("node-agent", NodeAgentArgs::augment_args),
        "webhook" => ("webhook", WebhookArgs::augment_args),
        "completions" => ("completions", CompletionsArgs::augment_args),
        "man" => ("man", ManArgs::augment_args),
        _ => return None,
    };
    let mut sub = augment(clap::Command::new(name));
    if name == "man" {
        sub = sub.hide(true);
    }
    let root = clap::Command::new("archctl")
        .version(env!("CARGO_PKG_VERSION"))
        .about(ABOUT);
    Some(
        Global::augment_args(root)
            .subcommand_required(true)
            .subcommand(sub),
    )
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
        // `--all` registers everything not in conflict and lists the conflicts; named
        // architectures are all checked first, and a conflict among them writes nothing.
        let all = matches!(selection, Selection::All);
        Ok(EnableOptions {
            selection,
            search: self.search(),
            flags: Flags::parse(&self.flags)?,
            force,
            skip_missing: false,
            skip_conflicts: all,
            isolate_failures: false,
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
    Enable(EnableArgs),
    Disable(DisableArgs),
    Status(StatusArgs),
    Test(TestArgs),
    Boot(BootArgs),
    Export(ExportArgs),
    Service(ServiceArgs),
    Emulators(EmulatorsArgs),
    Config(ConfigArgs),
    Inspect(InspectArgs),
    Pick(PickArgs),
    Run(RunArgs),
    ComposePlatforms(ComposePlatformsArgs),
    Exec(ExecArgs),
    Ps(PsArgs),
    Doctor(DoctorArgs),
    NodeAgent(NodeAgentArgs),
    Webhook(WebhookArgs),
    Completions(CompletionsArgs),
    #[command(hide = true)]
    Man(ManArgs),
}

/// Why "exec format error"? Check the host (binfmt_misc, each entry proven, the boot
/// service, binfmt.d, the engines), one executable (its ELF facts and whether and
/// through what this host runs it), or an image (each platform's label against the
/// program in its layers, and what this host would run). Changes nothing; exits 1 when
/// a check fails.
#[derive(Args)]
pub struct DoctorArgs {
    /// An executable file (an existing path, or one starting with / or .), else an image
    /// reference; default: the host.
    #[arg(value_name = "FILE|IMAGE")]
    pub target: Option<PathBuf>,
    /// IMAGE: allow plain HTTP and unverified TLS for the registry.
    #[arg(long)]
    pub insecure: bool,
    /// IMAGE: seconds each registry request may take (1-3600).
    #[arg(long, default_value_t = 30, value_name = "SECS", value_parser = secs())]
    pub timeout: u64,
}

impl DoctorArgs {
    /// A file when the target names one: it exists, or it is written as a path.
    fn is_file(target: &std::path::Path) -> bool {
        let s = target.to_string_lossy();
        std::fs::symlink_metadata(target).is_ok()
            || s.starts_with('/')
            || s.starts_with("./")
            || s.starts_with("../")
            || s == "."
            || s == ".."
    }
}

/// Register qemu-user-static for architectures, verified by running a test program.
#[derive(Args)]
pub struct EnableArgs {
    #[command(flatten)]
    pub select: SelectArgs,
    #[command(flatten)]
    pub emu: EmulatorArgs,
    /// Replace a different entry of the same name, and register in front of
    /// another entry (e.g. rosetta) that handles the architecture.
    #[arg(long)]
    pub force: bool,
    /// Skip running the test program after registering.
    #[arg(long)]
    pub no_verify: bool,
    /// Print the register strings; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Seconds each verification may take (1-3600).
    #[arg(long, default_value_t = 30, value_name = "SECS", value_parser = secs())]
    pub timeout: u64,
}

/// Remove archctl's qemu-<arch> entries (--all: every qemu-* entry), never others.
#[derive(Args)]
pub struct DisableArgs {
    #[command(flatten)]
    pub select: SelectArgs,
    /// Print what would be removed; change nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// Kubernetes node agent (a privileged DaemonSet): applies the configuration like
/// `boot`, proves every entry, labels the Node (`native.archctl.io/linux-<arch>=true`,
/// `emulation.archctl.io/linux-<arch>=qemu`), re-checks every --interval and on SIGHUP
/// (re-registering lost entries), serves /healthz and /readyz, and on SIGTERM removes
/// its labels (its entries too with --remove-on-exit).
#[derive(Args)]
pub struct NodeAgentArgs {
    /// The Node to label [default: NODE_NAME, else the host name].
    #[arg(long, env = "NODE_NAME", value_name = "NAME")]
    pub node_name: Option<String>,
    /// kubeconfig to reach the API server [default: in-cluster service account, else
    /// KUBECONFIG, else ~/.kube/config].
    #[arg(long, value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,
    /// Seconds between checks (1-3600).
    #[arg(long, default_value_t = 60, value_name = "SECS", value_parser = secs())]
    pub interval: u64,
    /// Address of /healthz and /readyz (plain HTTP).
    #[arg(long, default_value = "127.0.0.1:9101", value_name = "ADDR:PORT")]
    pub listen: String,
    /// At exit, also remove the binfmt_misc entries it proved (default: they stay).
    #[arg(long)]
    pub remove_on_exit: bool,
    /// Seconds each test program may take (1-3600).
    #[arg(long, default_value_t = 30, value_name = "SECS", value_parser = secs())]
    pub timeout: u64,
}

/// Kubernetes placement webhook (mutating admission for Pods).
#[derive(Args)]
pub struct WebhookArgs {
    #[command(subcommand)]
    pub action: WebhookAction,
}

#[derive(Subcommand)]
pub enum WebhookAction {
    /// Serve AdmissionReview v1 over TLS at POST /mutate (and /healthz, /readyz,
    /// /metrics): pods without an architecture constraint get a required node affinity
    /// to the architectures every image offers, natively or where the node agent's
    /// label says they are emulated, and a preferred one toward native nodes. It never
    /// denies: on any error the pod is admitted, annotated `archctl.io/placement:
    /// skipped: <reason>`.
    Serve {
        /// PEM certificate chain the webhook presents.
        #[arg(long, value_name = "FILE")]
        tls_cert: PathBuf,
        /// PEM private key of the certificate.
        #[arg(long, value_name = "FILE")]
        tls_key: PathBuf,
        /// Address to listen on.
        #[arg(long, default_value = "0.0.0.0:8443", value_name = "ADDR:PORT")]
        listen: String,
        /// kubeconfig for namespaces and pull secrets [default: in-cluster service
        /// account, else KUBECONFIG, else ~/.kube/config].
        #[arg(long, value_name = "FILE", conflicts_with = "no_api")]
        kubeconfig: Option<PathBuf>,
        /// No API server: no namespace opt-out by label, pods with pull secrets skipped.
        #[arg(long)]
        no_api: bool,
        /// Time budget of one admission request, in milliseconds (10-30000); past it
        /// the pod is admitted unchanged with a skip annotation.
        #[arg(long, default_value_t = 2000, value_name = "MS", value_parser = clap::value_parser!(u64).range(10..=30000))]
        budget_ms: u64,
        /// Weight (1-100) of the preferred affinity toward nodes that run every image
        /// natively; 0 adds none.
        #[arg(long, default_value_t = 50, value_name = "N", value_parser = clap::value_parser!(u8).range(0..=100))]
        preferred_weight: u8,
        /// The webhook's own namespace, never touched [default: POD_NAMESPACE, else
        /// archctl-system].
        #[arg(
            long,
            env = "POD_NAMESPACE",
            default_value = "archctl-system",
            value_name = "NS"
        )]
        namespace: String,
        /// Allow plain HTTP and unverified TLS for every registry (loopback registries
        /// and daemon.json's insecure-registries are allowed anyway).
        #[arg(long)]
        insecure: bool,
        /// Do not read or write the on-disk registry cache.
        #[arg(long)]
        no_cache: bool,
    },
}

/// The processes running under an emulator: architecture, entry, program and
/// arguments, CPU time, memory, container.
#[derive(Args)]
pub struct PsArgs {}

/// Host, binfmt_misc state, native architectures and every registered entry.
#[derive(Args)]
pub struct StatusArgs {}

/// Run the embedded test program of each architecture (default: every registered or
/// native one).
#[derive(Args)]
pub struct TestArgs {
    #[arg(value_name = "ARCH")]
    pub archs: Vec<String>,
    /// Seconds each test program may take (1-3600).
    #[arg(long, default_value_t = 30, value_name = "SECS", value_parser = secs())]
    pub timeout: u64,
}

/// Apply the configuration (what the boot service runs): the enable logic,
/// idempotent, with a one-line summary.
#[derive(Args)]
pub struct BootArgs {}

/// Write what `enable` would register as binfmt.d files (for systemd-binfmt) or
/// JSON.
#[derive(Args)]
pub struct ExportArgs {
    /// binfmt.d or json.
    #[arg(long, value_name = "FORMAT", value_parser = ["binfmt.d", "json"], default_value = "binfmt.d")]
    pub format: String,
    #[command(flatten)]
    pub select: SelectArgs,
    #[command(flatten)]
    pub emu: EmulatorArgs,
    /// Write one file per entry into this directory (e.g. /etc/binfmt.d) instead of
    /// printing.
    #[arg(long, value_name = "DIR")]
    pub output: Option<PathBuf>,
}

/// Install, remove or check the boot service that runs `archctl boot`.
#[derive(Args)]
pub struct ServiceArgs {
    #[command(subcommand)]
    pub action: ServiceAction,
    /// auto, systemd, openrc or sysv (rc.local / busybox bootlocal.sh).
    #[arg(long, global = true, default_value = "auto", value_name = "INIT")]
    pub init: String,
    /// Write into another root (image building).
    #[arg(long, global = true, default_value = "/", value_name = "DIR")]
    pub root: PathBuf,
    /// The archctl the service runs [default: this one].
    #[arg(long, global = true, value_name = "PATH")]
    pub binary: Option<PathBuf>,
}

/// Installed emulators, and bundles of them for offline guests.
#[derive(Args)]
pub struct EmulatorsArgs {
    #[command(subcommand)]
    pub action: EmulatorsAction,
}

/// Write or show archctl's configuration.
#[derive(Args)]
pub struct ConfigArgs {
    #[command(subcommand)]
    pub action: ConfigAction,
}

/// Which platforms images offer, from their registries.
#[derive(Args)]
pub struct InspectArgs {
    /// Image references: alpine, alpine:3.20, ghcr.io/o/r:t, 127.0.0.1:5000/x@sha256:...
    #[arg(value_name = "IMAGE", required = true)]
    pub images: Vec<String>,
    /// Allow plain HTTP and unverified TLS for every registry (loopback registries and
    /// daemon.json's insecure-registries are allowed anyway).
    #[arg(long)]
    pub insecure: bool,
    /// Do not read or write the on-disk cache.
    #[arg(long)]
    pub no_cache: bool,
    /// Also fetch every platform's manifest and config and report entries whose
    /// config contradicts the index (`config_platform`, `mismatch` in JSON), and find
    /// the program each platform starts in its layers and check its ELF header against
    /// the label (`elf`, `label_matches`, `truth` in JSON).
    #[arg(long)]
    pub verify_platforms: bool,
    /// Images inspected at once (1-256).
    #[arg(long, default_value_t = 8, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=256))]
    pub concurrency: u16,
    /// Seconds each request may take (1-3600).
    #[arg(long, default_value_t = 30, value_name = "SECS", value_parser = secs())]
    pub timeout: u64,
}

/// Choose the platform an image runs as here: native first, emulated only when needed.
#[derive(Args)]
pub struct PickArgs {
    #[arg(value_name = "IMAGE")]
    pub image: String,
    #[command(flatten)]
    pub choice: ChoiceArgs,
    /// Print every candidate and why it was taken or rejected.
    #[arg(long)]
    pub explain: bool,
    /// Allow plain HTTP and unverified TLS for every registry.
    #[arg(long)]
    pub insecure: bool,
    /// Seconds each registry request may take (1-3600).
    #[arg(long, default_value_t = 30, value_name = "SECS", value_parser = secs())]
    pub timeout: u64,
    /// Whose local images to use when the registry does not know the image or cannot be
    /// reached: docker, podman or nerdctl [default: ARCHCTL_ENGINE, else the first on
    /// PATH, else none].
    #[arg(long, value_name = "ENGINE")]
    pub engine: Option<String>,
}

/// Run a container on the platform `pick` chooses (native first), registering
/// emulation on demand, then become the engine's `run` (signals, TTY, exit code).
#[derive(Args)]
pub struct RunArgs {
    /// docker, podman or nerdctl [default: ARCHCTL_ENGINE, else the first on PATH].
    #[arg(long, value_name = "ENGINE")]
    pub engine: Option<String>,
    /// Print the engine command instead of running it.
    #[arg(long)]
    pub dry_run: bool,
    /// Refuse emulated platforms.
    #[arg(long)]
    pub no_emulation: bool,
    /// [ENGINE-RUN-OPTIONS...] IMAGE [COMMAND [ARG...]], passed to the engine.
    #[arg(
        value_name = "ARGS",
        required = true,
        trailing_var_arg = true,
        allow_hyphen_values = true
    )]
    pub args: Vec<OsString>,
}

/// For a compose file, print an override file that sets `platform:` per service
/// (the same choice as `pick`): `docker compose -f FILE -f OVERRIDE up`. As root,
/// registers the emulation the chosen platforms need (as `run` does); otherwise says
/// per service which command does.
#[derive(Args)]
pub struct ComposePlatformsArgs {
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    #[command(flatten)]
    pub choice: ChoiceArgs,
    /// Register nothing, even as root: print the commands that would.
    #[arg(long)]
    pub no_enable: bool,
}

/// Run a command with emulation in a private user namespace (Linux 6.7+), without
/// root and without touching the host's binfmt_misc.
#[derive(Args)]
pub struct ExecArgs {
    /// Architectures to register inside (repeat, or separate with commas).
    #[arg(long = "arch", value_name = "ARCH", required = true, num_args = 1.., value_delimiter = ',')]
    pub archs: Vec<String>,
    #[command(flatten)]
    pub emu: EmulatorArgs,
    /// The command and its arguments, after `--`.
    #[arg(last = true, value_name = "CMD", required = true)]
    pub command: Vec<OsString>,
}

/// Print a shell completion script, generated from this command line's definitions:
/// `archctl completions bash > /usr/share/bash-completion/completions/archctl`.
#[derive(Args)]
pub struct CompletionsArgs {
    /// bash, zsh or fish.
    #[arg(value_name = "SHELL")]
    pub shell: Shell,
}

/// The shells `archctl completions` writes scripts for.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shell {
    Bash,
    Zsh,
    Fish,
}

impl From<Shell> for clap_complete::Shell {
    fn from(s: Shell) -> clap_complete::Shell {
        match s {
            Shell::Bash => clap_complete::Shell::Bash,
            Shell::Zsh => clap_complete::Shell::Zsh,
            Shell::Fish => clap_complete::Shell::Fish,
        }
    }
}

/// Print the manual page (roff), generated from this command line's definitions
/// (packaging: `archctl man | gzip -9n > archctl.1.gz`).
#[derive(Args)]
pub struct ManArgs {}

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
        /// Seconds (1-3600) for the answer to start and for each 64 KiB to arrive; the
        /// whole download must end within 30 times this.
        #[arg(long, default_value_t = 60, value_name = "SECS", value_parser = secs())]
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
    /// Print the systemd unit install writes, running --binary (packaging).
    #[command(hide = true)]
    Unit,
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
            engine: None,
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

impl ServiceAction {
    /// The verb of a service command that looks at or changes a root (`unit` does
    /// neither).
    fn verb(self) -> Option<ServiceVerb> {
        match self {
            ServiceAction::Install => Some(ServiceVerb::Install),
            ServiceAction::Uninstall => Some(ServiceVerb::Uninstall),
            ServiceAction::Status => Some(ServiceVerb::Status),
            ServiceAction::Unit => None,
        }
    }
}

/// Run the command the arguments name. `run` and `exec` replace the process and return
/// only on error (or, for `run --dry-run`, with the plan).
pub fn run(cli: Cli) -> Result<Report, CommandError> {
    let ctx = || Context::new(cli.global.binfmt_dir.clone());
    let config_path = || Config::path(cli.global.config.as_deref());
    Ok(match cli.command {
        Command::Enable(EnableArgs {
            select,
            emu,
            force,
            no_verify,
            dry_run,
            timeout,
        }) => {
            let opts = emu.enable_options(select.selection(), force)?;
            let timeout = Duration::from_secs(timeout);
            Report::Change(binfmt::enable(&ctx(), &opts, !no_verify, dry_run, timeout)?)
        }
        Command::Disable(DisableArgs { select, dry_run }) => {
            Report::Change(binfmt::disable(&ctx(), &select.selection(), dry_run)?)
        }
        Command::Status(StatusArgs {}) => Report::Status(binfmt::status(&ctx())?),
        Command::Ps(PsArgs {}) => Report::Ps(ps::ps(&ctx())?),
        Command::Webhook(WebhookArgs {
            action:
                WebhookAction::Serve {
                    tls_cert,
                    tls_key,
                    listen,
                    kubeconfig,
                    no_api,
                    budget_ms,
                    preferred_weight,
                    namespace,
                    insecure,
                    no_cache,
                },
        }) => {
            let budget = Duration::from_millis(budget_ms);
            Report::Webhook(webhook::serve(webhook::WebhookOptions {
                listen,
                tls_cert,
                tls_key,
                kubeconfig,
                no_api,
                budget,
                preferred_weight,
                namespace,
                registry: registry::Options {
                    insecure,
                    cache: !no_cache,
                    // One try within the budget: a retry would only spend it.
                    retries: 0,
                    timeout: budget,
                    ..Default::default()
                },
            })?)
        }
        Command::NodeAgent(a) => {
            let node = match a.node_name {
                Some(n) if !n.is_empty() => n,
                _ => nix::unistd::gethostname()
                    .ok()
                    .and_then(|h| h.into_string().ok())
                    .filter(|h| !h.is_empty())
                    .ok_or_else(|| {
                        CommandError::Usage(
                            "node-agent: no node name: pass --node-name NAME or set NODE_NAME"
                                .into(),
                        )
                    })?,
            };
            Report::NodeAgent(node_agent::run(&node_agent::AgentOptions {
                binfmt_dir: cli.global.binfmt_dir.clone(),
                config: config_path(),
                kubeconfig: a.kubeconfig,
                node,
                interval: Duration::from_secs(a.interval),
                listen: a.listen,
                remove_on_exit: a.remove_on_exit,
                test_timeout: Duration::from_secs(a.timeout),
            })?)
        }
        Command::Doctor(DoctorArgs {
            target,
            insecure,
            timeout,
        }) => {
            let r = match target {
                None => doctor::host(&ctx(), cli.global.config.as_deref())?,
                Some(f) if DoctorArgs::is_file(&f) => doctor::file(&ctx(), &f)?,
                Some(image) => {
                    let reg = registry::Options {
                        insecure,
                        timeout: Duration::from_secs(timeout),
                        ..Default::default()
                    };
                    doctor::image(&ctx(), &image.to_string_lossy(), reg)?
                }
            };
            if r.failed() {
                return Err(CommandError::Failed(Box::new(Report::Doctor(r))));
            }
            Report::Doctor(r)
        }
        Command::Test(TestArgs { archs, timeout }) => {
            Report::Test(binfmt::test(&ctx(), &archs, Duration::from_secs(timeout))?)
        }
        Command::Boot(BootArgs {}) => Report::Boot(binfmt::boot(&ctx(), &config_path())?),
        Command::Export(ExportArgs {
            format,
            select,
            emu,
            output,
        }) => {
            let opts = emu.enable_options(select.selection(), false)?;
            let binfmt_d = format == "binfmt.d";
            Report::Export(binfmt::export(&ctx(), &opts, output.as_deref(), binfmt_d)?)
        }
        Command::Service(ServiceArgs {
            action,
            init,
            root,
            binary,
        }) => match action.verb() {
            Some(verb) => Report::Service(setup::service(
                verb,
                &init,
                &root,
                binary.as_deref(),
                cli.global.config.as_deref(),
            )?),
            None => Report::Generated(setup::service_unit(
                binary.as_deref(),
                cli.global.config.as_deref(),
            )?),
        },
        Command::Emulators(EmulatorsArgs { action }) => match action {
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
        Command::Config(ConfigArgs { action }) => match action {
            ConfigAction::Init { output, force } => {
                let target = output.unwrap_or_else(config_path);
                Report::ConfigWritten(setup::config_init(&target, force)?)
            }
            ConfigAction::Show => Report::ConfigShown(setup::config_show(&config_path())?),
        },
        Command::Inspect(InspectArgs {
            images,
            insecure,
            no_cache,
            verify_platforms,
            concurrency,
            timeout,
        }) => {
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
        Command::Pick(PickArgs {
            image,
            choice,
            explain,
            insecure,
            timeout,
            engine,
        }) => {
            let reg = registry::Options {
                insecure,
                timeout: Duration::from_secs(timeout),
                ..Default::default()
            };
            let opts = PickOptions {
                engine,
                ..choice.options()
            };
            let picked = containers::pick(&ctx(), &image, &opts, reg)?;
            Report::Pick(crate::report::PickReport {
                choice: picked.choice,
                source: picked.source,
                note: picked.note,
                explain,
            })
        }
        Command::Run(RunArgs {
            engine,
            dry_run,
            no_emulation,
            args,
        }) => {
            let opts = RunOptions {
                engine,
                dry_run,
                no_emulation,
                args,
            };
            let plan = containers::plan_run(&ctx(), &opts, registry::Options::default())?;
            if !dry_run {
                // Said before archctl becomes the engine (main prints nothing after).
                if !cli.global.quiet {
                    for n in Report::Run(plan.clone()).notices() {
                        eprintln!("{n}");
                    }
                }
                return Err(containers::exec_run(&plan));
            }
            Report::Run(plan)
        }
        Command::ComposePlatforms(ComposePlatformsArgs {
            file,
            choice,
            no_enable,
        }) => Report::Compose(compose::compose_platforms(
            &ctx(),
            &file,
            &choice.options(),
            !no_enable,
            registry::Options::default(),
        )?),
        Command::Exec(ExecArgs {
            archs,
            emu,
            command,
        }) => {
            let flags = Flags::parse(&emu.flags)?;
            return Err(exec::exec(&ctx(), &archs, &emu.search(), flags, &command));
        }
        Command::Completions(CompletionsArgs { shell }) => {
            Report::Generated(package::completions(Cli::command(), shell.into()))
        }
        Command::Man(ManArgs {}) => Report::Generated(package::man(Cli::command())?),
    })
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    /// Every subcommand built alone is the one of the full tree: same help, same
    /// options, so the fast path cannot drift from the documented one.
    #[test]
    fn each_lone_subcommand_matches_the_full_tree() {
        let mut full = Cli::command();
        full.build();
        let names: Vec<String> = full
            .get_subcommands()
            .map(|c| c.get_name().to_string())
            .filter(|n| n != "help")
            .collect();
        assert_eq!(names.len(), 20, "{names:?}");
        for name in names {
            let mut lone = lone_root(&name).unwrap_or_else(|| panic!("{name}: not in lone_root"));
            lone.build();
            let help = |c: &mut clap::Command| {
                c.find_subcommand_mut(&name)
                    .map(|s| s.render_long_help().to_string())
                    .unwrap_or_default()
            };
            let (f, l) = (help(&mut full), help(&mut lone));
            assert!(!f.is_empty());
            assert_eq!(
                f, l,
                "{name}: the lone subcommand differs from the full tree's"
            );
        }
    }

    /// Every `--timeout` is 1..=MAX_TIMEOUT_SECS, on the fast path and the full tree.
    #[test]
    fn timeouts_are_range_checked_when_parsed() {
        let parse = |v: &[&str]| Cli::parse_args(v.iter().map(OsString::from));
        let huge = "9223372036854775807";
        for cmd in [
            &["archctl", "enable", "x86_64", "--timeout"][..],
            &["archctl", "test", "--timeout"],
            &["archctl", "inspect", "alpine", "--timeout"],
            &["archctl", "pick", "alpine", "--timeout"],
            &[
                "archctl",
                "emulators",
                "install",
                "--from",
                "f",
                "--sha256",
                "0",
                "--timeout",
            ],
        ] {
            for bad in ["0", "3601", huge] {
                let args = [cmd, &[bad]].concat();
                let kind = parse(&args).err().map(|e| e.kind());
                assert_eq!(
                    kind,
                    Some(clap::error::ErrorKind::ValueValidation),
                    "{args:?}"
                );
                // The full tree (help, unusual argv) says the same.
                let full = Cli::try_parse_from(&args).err().map(|e| e.kind());
                assert_eq!(full, kind, "{args:?}");
            }
            for good in ["1", "3600"] {
                let args = [cmd, &[good]].concat();
                assert!(parse(&args).is_ok(), "{args:?}");
            }
        }
    }

    #[test]
    fn the_subcommand_word_skips_global_options() {
        let w = |v: &[&str]| {
            let a: Vec<OsString> = v.iter().map(OsString::from).collect();
            subcommand_word(&a).map(str::to_string)
        };
        assert_eq!(w(&["archctl", "boot"]).as_deref(), Some("boot"));
        assert_eq!(
            w(&[
                "archctl",
                "--binfmt-dir",
                "/x",
                "-q",
                "--json",
                "enable",
                "aarch64"
            ])
            .as_deref(),
            Some("enable")
        );
        assert_eq!(
            w(&["archctl", "--config=/c", "status"]).as_deref(),
            Some("status")
        );
        assert_eq!(w(&["archctl", "--help"]), None);
        assert_eq!(w(&["archctl"]), None);
        let parsed = Cli::parse_args(
            [
                "archctl",
                "--json",
                "enable",
                "x86_64",
                "--flags",
                "FP",
                "--binfmt-dir",
                "/b",
            ]
            .map(OsString::from),
        )
        .unwrap();
        assert!(parsed.global.json);
        assert_eq!(parsed.global.binfmt_dir, PathBuf::from("/b"));
        let Command::Enable(e) = parsed.command else {
            panic!("not enable");
        };
        assert_eq!(e.emu.flags, "FP");
        assert_eq!(e.select.archs, ["x86_64"]);
        // An error on the fast path is clap's usual one.
        let err = Cli::parse_args(["archctl", "enable", "--bogus"].map(OsString::from));
        assert_eq!(
            err.err().map(|e| e.kind()),
            Some(clap::error::ErrorKind::UnknownArgument)
        );
    }
}
