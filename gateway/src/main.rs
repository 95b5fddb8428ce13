//! The `watershed` binary: parses the command line and runs a command.

use std::process::ExitCode;

fn main() -> ExitCode {
    watershed::cli::main()
}
