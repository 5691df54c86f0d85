//! `reactor-bench compare`.

use std::io;
use std::process::ExitCode;

use clap::Args;

/// `reactor-bench compare`.
#[derive(Args, Debug)]
pub struct CompareArgs {}

pub fn run(_args: &CompareArgs) -> io::Result<ExitCode> {
    Err(io::Error::other("compare is not written yet"))
}
