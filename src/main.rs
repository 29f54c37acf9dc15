//! The `addrmunge` command line: parse arguments, call the library, map
//! errors to exit codes (64 for a bad configuration or key file, 1 for other
//! failures and for `decode` of an address that is not valid, 0 on a broken
//! pipe). The commands live in [`cli`], one module per group.

#![forbid(unsafe_code)]

mod cli;

use std::io;
use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    match cli::run(cli) {
        Ok(code) => code,
        Err(e) => {
            if e.chain().any(|c| {
                c.downcast_ref::<io::Error>()
                    .is_some_and(|io| io.kind() == io::ErrorKind::BrokenPipe)
            }) {
                return ExitCode::SUCCESS;
            }
            eprintln!("addrmunge: error: {e}");
            for cause in e.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
            let usage = e.chain().any(|c| {
                c.is::<cli::UsageError>()
                    || c.is::<addrmunge::ConfigError>()
                    || c.is::<addrmunge::token::KeyFileError>()
            });
            ExitCode::from(if usage { 64 } else { 1 })
        }
    }
}
