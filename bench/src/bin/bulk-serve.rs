//! A server for measuring how a large reply goes out: each byte a client
//! sends asks for one reply, sent the way the mode says. Used by
//! `bench/scripts/bulk_send_cpu.py`.
//!
//! usage: bulk-serve ADDR MODE ARG
//!   copied SIZE    build a SIZE-byte `Vec` per request, `ctx.write(&vec)` (copied into the loop's chunks)
//!   owned SIZE     build a SIZE-byte `Vec` per request, `ctx.write_owned(vec)` (moved, no copy)
//!   sendfile PATH  `ctx.send_file(file, 0..len)` per request (`sendfile(2)` on TCP)
//!   readwrite PATH `ctx.stream(file)` per request (the loop reads the file into chunks and writes them)
//!
//! Prints `listening on ADDR` once ready; runs until killed.

use std::fs::File;
use std::path::PathBuf;
use std::process::ExitCode;

use reactor_loop::{Config, Context, Handler, Reactor};

#[derive(Clone)]
enum Mode {
    Copied(usize),
    Owned(usize),
    SendFile(PathBuf),
    ReadWrite(PathBuf),
}

struct Bulk(Mode);

impl Handler for Bulk {
    fn on_input(&mut self, ctx: &mut Context<'_>, input: &[u8]) -> usize {
        for _ in input {
            match &self.0 {
                Mode::Copied(size) => {
                    let reply = vec![b'x'; *size];
                    ctx.write(&reply);
                }
                Mode::Owned(size) => ctx.write_owned(vec![b'x'; *size]),
                Mode::SendFile(path) => {
                    let file = File::open(path).expect("open the file");
                    let len = file.metadata().expect("stat the file").len();
                    ctx.send_file(file, 0..len).expect("queue the file");
                }
                Mode::ReadWrite(path) => {
                    ctx.stream(File::open(path).expect("open the file")).expect("queue the file");
                }
            }
        }
        input.len()
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let [_, addr, mode, arg] = &args[..] else {
        eprintln!("usage: bulk-serve ADDR copied|owned SIZE | sendfile|readwrite PATH");
        return ExitCode::from(2);
    };
    let mode = match mode.as_str() {
        "copied" => Mode::Copied(arg.parse().expect("SIZE")),
        "owned" => Mode::Owned(arg.parse().expect("SIZE")),
        "sendfile" => Mode::SendFile(arg.into()),
        "readwrite" => Mode::ReadWrite(arg.into()),
        other => {
            eprintln!("unknown mode {other}");
            return ExitCode::from(2);
        }
    };
    // Replies of any size: the cap is the client's to keep by reading.
    let config = Config { max_output: usize::MAX / 2, ..Config::default() };
    let run = || -> std::io::Result<()> {
        let mut reactor = Reactor::with_config(config, ())?;
        let id = reactor.listen(addr.as_str(), move || Bulk(mode.clone()))?;
        println!("listening on {}", reactor.local_addr(id)?);
        reactor.run()
    };
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("bulk-serve: {err}");
            ExitCode::FAILURE
        }
    }
}
