//! `joint`: a command-line MessagePack-RPC client, demo server, load generator and tap, built
//! on the joint library. The command line itself is declared in args.rs.

mod args;
mod bench;
mod call;
mod demo;
mod json;
mod methods;
mod serve;
mod signals;
mod stream_call;
mod streams;
mod tap;
mod target;

use std::process::ExitCode;

use clap::{CommandFactory, Parser};

use args::{Cli, Command};

/// The peer answered with an error (or `joint demo` found something unexpected).
pub const EXIT_REMOTE: u8 = 1;
/// No answer: connection failure, timeout, or the peer went away.
pub const EXIT_FAILED: u8 = 2;
/// Bad command line (EX_USAGE).
pub const EXIT_USAGE: u8 = 64;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return clap_exit(e),
    };
    match cli.command {
        Command::Serve(args) => match args.into_options() {
            Ok(options) => serve::run(&options),
            Err(message) => usage_error("serve", &message),
        },
        Command::Call(args) => match args.into_options() {
            Ok(options) => call::run_call(&options),
            Err(message) => usage_error("call", &message),
        },
        Command::Notify(args) => match args.request.into_options() {
            Ok(options) => call::run_notify(&options),
            Err(message) => usage_error("notify", &message),
        },
        Command::Demo => demo::run(),
        Command::Bench(args) => bench::run(args),
        Command::Tap(args) => tap::run(args),
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "joint", &mut std::io::stdout());
            ExitCode::SUCCESS
        }
        Command::Man { dir } => match write_man_pages(dir.as_deref()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("joint: cannot write the manual page: {e}");
                ExitCode::from(EXIT_FAILED)
            }
        },
    }
}

/// `joint man`: joint.1 on stdout, or (with a directory) every page into it.
fn write_man_pages(dir: Option<&std::path::Path>) -> std::io::Result<()> {
    match dir {
        Some(dir) => clap_mangen::generate_to(Cli::command(), dir),
        None => clap_mangen::Man::new(Cli::command()).render(&mut std::io::stdout()),
    }
}

/// Help and version go to stdout with status 0; every other parse error is a usage error (64,
/// not clap's 2, which means "no answer" here).
fn clap_exit(e: clap::Error) -> ExitCode {
    let _ = e.print();
    if e.use_stderr() {
        ExitCode::from(EXIT_USAGE)
    } else {
        ExitCode::SUCCESS
    }
}

/// A problem clap could not see (a malformed address or ARG, options that do not go together),
/// reported in clap's form: the message, the command's usage line, where to read more.
fn usage_error(command: &str, message: &str) -> ExitCode {
    let mut cli = Cli::command();
    let sub = cli.find_subcommand_mut(command).expect("a command args.rs declares");
    let mut sub = std::mem::take(sub).bin_name(format!("joint {command}"));
    clap_exit(sub.error(clap::error::ErrorKind::ValueValidation, message))
}
