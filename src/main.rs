//! `unity`: the command line. Every failure ends as one line on stderr and a non-zero exit.

use std::process::ExitCode;

use clap::Parser;
use unity::cli::{run, Cli};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("unity: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("unity: {}", unity::app::one_line(&format!("{e:#}")));
            ExitCode::FAILURE
        }
    }
}
