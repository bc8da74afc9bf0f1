//! The `sikker` executable: parse, set up logging, run, exit code.
#![forbid(unsafe_code)]

use std::process::ExitCode;

use sikker::config::{self, ParseError};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = match config::parse_cli(std::env::args_os()) {
        Ok(cli) => cli,
        Err(ParseError::Clap(e)) => {
            let _ = e.print();
            return ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(2));
        }
        Err(ParseError::Invalid(message)) => {
            eprintln!("error: {message}");
            return ExitCode::from(2);
        }
    };
    let (filter, format) = cli.command.log_settings();
    sikker::logging::init(&filter, format);
    for var in config::unknown_env_vars(std::env::vars_os()) {
        tracing::warn!(variable = %var, "unknown SIKKER_* environment variable ignored");
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    runtime.block_on(sikker::cli::run(cli.command))
}
