//! What every example does with its command line, shared by all of them
//! (each includes this file with `#[path]`; it is not an example itself).
//!
//! - [`args`] parses the command line before anything else happens: `--help`
//!   prints the usage on stdout and exits 0; a bad argument prints one line
//!   on stderr that names it, and exits 2. Nothing is logged before.
//! - [`address`] is the value parser of an address argument, so that a bad
//!   address is a bad argument like any other.
//! - [`init_logging`]: stderr, `info` unless `RUST_LOG` says otherwise.
//! - [`finish`]: the exit status and one readable line when a server fails
//!   to start or stops on an error.
//! - [`count`]: "1 job", "2 jobs" in what the examples print.

#![allow(dead_code)] // each example uses a part

use std::fmt;
use std::net::ToSocketAddrs;

use clap::error::ErrorKind;
use clap::Parser;

/// The command line, parsed; or the process exits: 0 after printing the
/// usage (`--help`), 2 after printing one line that says what is wrong.
pub fn args<T: Parser>() -> T {
    T::try_parse().unwrap_or_else(|err| match err.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => err.exit(),
        _ => {
            eprintln!("{}", one_line(&err.render().to_string()));
            std::process::exit(2)
        }
    })
}

/// clap's message without the tips and usage after it, on one line: the
/// first paragraph, its lines joined (a missing argument is named on the
/// line after "the following required arguments were not provided:").
fn one_line(message: &str) -> String {
    let first = message.split("\n\n").next().unwrap_or(message);
    first.lines().map(str::trim).filter(|line| !line.is_empty()).collect::<Vec<_>>().join(" ")
}

/// The value parser of an address argument: `IP:PORT` or `HOST:PORT`, which
/// must resolve to at least one address. The text is kept as written, for
/// the reactor to resolve and bind (trying each address a name has).
pub fn address(text: &str) -> Result<String, String> {
    match text.to_socket_addrs().map(|mut addrs| addrs.next()) {
        Ok(Some(_)) => Ok(text.to_string()),
        Ok(None) => Err("it resolves to no address".to_string()),
        Err(err) => Err(format!("{err} (expected IP:PORT or HOST:PORT, like 127.0.0.1:9000)")),
    }
}

/// The exit of a server whose arguments were good: 0 after a clean
/// shutdown; 1 after an error that stopped it (a port already in use, a
/// directory it cannot make), printed as one line that says what failed.
pub fn finish(result: std::io::Result<()>) -> std::process::ExitCode {
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Logging to stderr, `info` unless `RUST_LOG` says otherwise. Called once
/// the arguments are known to be good.
pub fn init_logging() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
}

/// `n` and the noun that goes with it: `count(1, "job", "jobs")` is
/// `1 job`, `count(2, "job", "jobs")` is `2 jobs`.
pub fn count<N: fmt::Display + PartialEq + From<u8>>(n: N, one: &str, many: &str) -> String {
    let noun = if n == N::from(1) { one } else { many };
    format!("{n} {noun}")
}

#[cfg(test)]
mod common_tests {
    use super::*;

    #[test]
    fn a_message_is_cut_to_its_first_paragraph_on_one_line() {
        let invalid = "error: invalid value 'x' for '--idle-timeout <SECS>': invalid digit found in string\n\n\
                       For more information, try '--help'.\n";
        assert_eq!(
            one_line(invalid),
            "error: invalid value 'x' for '--idle-timeout <SECS>': invalid digit found in string"
        );
        let missing = "error: the following required arguments were not provided:\n  --dir <DIR>\n\n\
                       Usage: upload --dir <DIR> [ADDR]\n\nFor more information, try '--help'.\n";
        assert_eq!(one_line(missing), "error: the following required arguments were not provided: --dir <DIR>");
    }

    #[test]
    fn an_address_must_resolve() {
        assert_eq!(address("127.0.0.1:0").as_deref(), Ok("127.0.0.1:0"));
        assert_eq!(address("[::1]:9000").as_deref(), Ok("[::1]:9000"));
        assert!(address("foo").unwrap_err().contains("expected IP:PORT"));
        assert!(address("127.0.0.1:99999").is_err());
        assert!(address("127.0.0.1").is_err());
    }

    #[test]
    fn a_count_of_one_is_singular() {
        assert_eq!(count(0u32, "job", "jobs"), "0 jobs");
        assert_eq!(count(1usize, "job", "jobs"), "1 job");
        assert_eq!(count(2u64, "echo", "echoes"), "2 echoes");
    }
}
