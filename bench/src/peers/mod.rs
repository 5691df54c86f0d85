//! The echo servers that `compare` runs side by side, and `serve`, which
//! runs one of them in the foreground.

mod reactor_echo;

use std::io;
use std::net::SocketAddr;

use clap::Args;

pub use reactor_echo::spawn_reactor_echo;

/// Which echo server.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Peer {
    /// reactor's echo server (the `echo` example's handler).
    Reactor,
}

impl Peer {
    pub fn name(self) -> &'static str {
        match self {
            Peer::Reactor => "reactor",
        }
    }
}

/// `reactor-bench serve`.
#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Which server.
    #[arg(value_enum)]
    pub peer: Peer,
    /// Address to listen on.
    #[arg(default_value = "127.0.0.1:9000")]
    pub addr: SocketAddr,
    /// Pin the server's thread to this core.
    #[arg(long)]
    pub core: Option<usize>,
}

/// Runs the chosen server until the process is stopped. It prints
/// `listening on <addr>` on stdout once bound.
pub fn serve(args: &ServeArgs) -> io::Result<()> {
    if let Some(core) = args.core {
        crate::pin_to_core(core);
    }
    match args.peer {
        Peer::Reactor => reactor_echo::serve(args.addr),
    }
}
