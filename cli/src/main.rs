//! The `lossgraph` command line: a thin shell over the library.
//!
//! Every failure is reported on stderr as one line `error: …` with a
//! non-zero exit status; a panic (a bug, never a user error) is reported the
//! same way by the panic hook installed in `main`.

mod cli;

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    std::panic::set_hook(Box::new(|info| {
        let msg = info.to_string().replace('\n', " ");
        eprintln!("error: internal error (a bug in lossgraph): {msg}");
    }));
    let args = cli::Cli::parse();
    match std::panic::catch_unwind(|| cli::run(args)) {
        Ok(Ok(code)) => code,
        Ok(Err(e)) => {
            let line = e.to_string().replace('\n', "; ");
            eprintln!("error: {line}");
            ExitCode::from(1)
        }
        Err(_) => ExitCode::from(101),
    }
}
