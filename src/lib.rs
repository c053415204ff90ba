//! archctl: make foreign-architecture binaries and containers run on Linux, through
//! qemu-user-static registered in binfmt_misc.
//!
//! The layers, top to bottom (each imports only from below it; `docs/architecture.md`
//! draws them):
//!
//! - [`cli`]: clap's types and the dispatch to one command (the binary is `main.rs`:
//!   parse, run, print, exit code).
//! - [`commands`]: one function per command, grouped by concept; [`commands::CommandError`]
//!   decides exit codes.
//! - [`report`]: what commands return, and its human rendering (JSON serialises the same
//!   structs).
//! - The concepts: [`plan`] (what enable/disable change; apply with an undo guard),
//!   [`ps`] (processes running under emulation),
//!   [`verify`] (proof by execution), [`host`] (host and native architectures),
//!   [`emulator`] (finding and checking emulators), [`serve`] (whether an entry already
//!   in the table serves an architecture: equivalent handlers), [`platform`] (OCI platforms and the
//!   containerd-style choice), [`cpu`] (x86-64 levels and ARM variants of the host and
//!   of emulators), [`engine`] (docker/podman/nerdctl command lines),
//!   [`local`] (the engine's local image store),
//!   [`registry`] (references, settings, credentials, auth, HTTP, cache, inspection),
//!   [`config`] (`/etc/archctl/config.toml`), [`service`] (boot services), [`bundle`]
//!   (emulator bundles), [`doctor`] (the checks of `archctl doctor`: verdicts, findings,
//!   fixes; binfmt.d as systemd-binfmt loads it).
//! - The foundations: [`arch`] (the rule table) with [`rules_data`], [`binfmt`] (the
//!   kernel interface), [`elf`] (ELF checks), [`ns`] (private namespaces, executable
//!   images), [`testprog`] (the embedded test programs), [`interrupt`] (signals during a
//!   run), [`fsutil`] (atomic writes), [`rootfs`] (files inside another root, as chroot
//!   resolves them).

pub mod arch;
pub mod binfmt;
pub mod bundle;
pub mod cli;
pub mod commands;
pub mod config;
pub mod cpu;
pub mod doctor;
pub mod elf;
pub mod emulator;
pub mod engine;
pub mod fsutil;
pub mod host;
pub mod interrupt;
pub mod kubernetes;
pub mod local;
pub mod ns;
pub mod plan;
pub mod platform;
pub mod ps;
pub mod registry;
pub mod report;
pub mod rootfs;
pub mod rules_data;
pub mod serve;
pub mod service;
pub mod testprog;
pub mod verify;
