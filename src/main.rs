//! The archctl binary: parses arguments, runs one command, prints its report (human or
//! JSON, from the same struct), and maps the outcome to an exit code: 0 success, 1
//! failure, 2 usage error.

#[cfg(target_env = "musl")]
mod alloc;

use std::process::ExitCode;

use archctl::{
    cli::{self, Cli},
    report::{Report, terminal_safe},
};

fn main() -> ExitCode {
    // Output piped into `head` and the like: end quietly on a closed pipe, as Unix
    // tools do, instead of panicking in println!.
    // SAFETY: restoring the default disposition of one signal at start-up, before any
    // other thread exists.
    let _ = unsafe {
        nix::sys::signal::signal(
            nix::sys::signal::SIGPIPE,
            nix::sys::signal::SigHandler::SigDfl,
        )
    };
    let cli = match Cli::parse_args(std::env::args_os()) {
        Ok(c) => c,
        Err(e) => return usage_error(&e),
    };
    let (json, quiet) = (cli.global.json, cli.global.quiet);
    match cli::run(cli) {
        Ok(report) => {
            if !quiet {
                for n in report.notices() {
                    eprintln!("{n}");
                }
            }
            print(&report, json, quiet);
            ExitCode::SUCCESS
        }
        Err(e) => {
            if let Some(r) = e.report() {
                print(r, json, quiet);
            }
            // Messages may carry what a registry or the table said: terminal-safe.
            eprintln!("archctl: error: {}", terminal_safe(&e.to_string()));
            for h in e.hints() {
                eprintln!("hint: {}", terminal_safe(&h));
            }
            ExitCode::from(e.exit_code())
        }
    }
}

fn print(report: &Report, json: bool, quiet: bool) {
    if json {
        println!("{}", report.json());
    } else if !quiet {
        print!("{}", report.human());
    }
}

/// clap's verdict: help and version on stdout (exit 0), anything else as one error line
/// with a hint (exit 2).
fn usage_error(e: &clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    match e.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
            let _ = e.print();
            ExitCode::SUCCESS
        }
        ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            let _ = e.print();
            ExitCode::from(2)
        }
        _ => {
            let text = e.to_string();
            let first = text
                .lines()
                .next()
                .unwrap_or("invalid arguments")
                .trim_start_matches("error: ");
            eprintln!("archctl: error: {}", terminal_safe(first));
            eprintln!("hint: see `archctl --help` or `archctl <command> --help`");
            ExitCode::from(2)
        }
    }
}
