//! TLS echo server: every byte a client sends over TLS comes back to it,
//! encrypted.
//!
//! The echo handler is the plain one; `reactor_loop::tls::Tls` wraps it, so
//! that it sees plaintext and its writes are encrypted. A client that does
//! not finish its handshake within `--handshake-timeout` is closed, as is
//! one that sends something other than TLS (after an alert).
//!
//! Run:  cargo run --release --example tls_echo -- [ADDR] [--cert PEM --key PEM]
//!           [--handshake-timeout SECS] [--idle-timeout SECS]
//!       (default 127.0.0.1:9443; without --cert/--key a self-signed
//!       certificate for localhost is made and its PEM file logged; 10 s; 60 s)
//! Try:  openssl s_client -connect localhost:9443 -CAfile THAT_FILE -quiet   (then type lines)
//! Logs: RUST_LOG=debug shows each handshake and each connection's close line.

#[path = "common/mod.rs"]
mod common;
#[path = "common/tls.rs"]
mod tls_setup;

use std::io;
use std::time::Duration;

use clap::Parser;
use reactor_loop::tls::{Tls, TlsAcceptor};
use reactor_loop::{Config, Context, Handler, Reactor};

#[derive(Parser, Debug)]
#[command(about = "TLS echo server: every byte a client sends comes back to it, over TLS")]
struct Args {
    /// Address to listen on.
    #[arg(default_value = "127.0.0.1:9443", value_parser = common::address)]
    addr: String,
    #[command(flatten)]
    cert: tls_setup::CertArgs,
    /// Seconds a client has to complete its TLS handshake.
    #[arg(long, value_name = "SECS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3600))]
    handshake_timeout: u64,
    /// Seconds without input before a connection is closed (0: never).
    #[arg(long, value_name = "SECS", default_value_t = 60)]
    idle_timeout: u64,
}

/// Sends every byte back to its sender (in plaintext: the adapter
/// encrypts it).
struct Echo;

impl Handler for Echo {
    fn on_input(&mut self, ctx: &mut Context<'_>, input: &[u8]) -> usize {
        ctx.write(input);
        input.len()
    }
}

fn main() -> std::process::ExitCode {
    common::finish(run())
}

fn run() -> io::Result<()> {
    let args: Args = common::args();
    common::init_logging();
    let server_config = tls_setup::server_config(&args.cert, &[])?;
    let acceptor = TlsAcceptor::new(server_config).handshake_timeout(Duration::from_secs(args.handshake_timeout));
    let config = Config {
        idle_timeout: (args.idle_timeout > 0).then(|| Duration::from_secs(args.idle_timeout)),
        ..Config::default()
    };
    let mut reactor = Reactor::with_config(config, ())?;
    reactor.listen(&args.addr, move || Tls::server(&acceptor, Echo))?;
    reactor.handle_signals()?;
    reactor.run()?;
    log::info!("stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use reactor_loop::testing::TestKit;
    use reactor_loop::tls::rustls::pki_types::ServerName;
    use reactor_loop::tls::rustls::{ClientConfig, ClientConnection, RootCertStore};
    use reactor_loop::tls::{Tls, TlsAcceptor};

    use super::{tls_setup, Echo};

    /// The echo, in memory: a rustls client drives the adapter through the
    /// test kit.
    #[test]
    fn echoes_through_tls_in_memory() {
        let made = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
        let dir = std::env::temp_dir().join(format!("tls-echo-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
        std::fs::write(&cert, made.cert.pem()).unwrap();
        std::fs::write(&key, made.signing_key.serialize_pem()).unwrap();
        let args = tls_setup::CertArgs { cert: Some(cert), key: Some(key) };
        let acceptor = TlsAcceptor::new(tls_setup::server_config(&args, &[]).unwrap());
        let _ = std::fs::remove_dir_all(&dir);

        let mut roots = RootCertStore::empty();
        roots.add(made.cert.der().clone()).unwrap();
        let client_config = ClientConfig::builder().with_root_certificates(roots).with_no_client_auth();
        let mut client =
            ClientConnection::new(Arc::new(client_config), ServerName::try_from("localhost").unwrap()).unwrap();

        let mut kit = TestKit::new();
        let conn = kit.open(Tls::server(&acceptor, Echo));
        std::io::Write::write_all(&mut client.writer(), b"hello\n").unwrap();
        let mut got = Vec::new();
        for _ in 0..10 {
            let mut out = Vec::new();
            while client.wants_write() {
                client.write_tls(&mut out).unwrap();
            }
            if !out.is_empty() {
                kit.send(conn, &out);
            }
            let back = kit.received(conn);
            if !back.is_empty() {
                client.read_tls(&mut &back[..]).unwrap();
                client.process_new_packets().unwrap();
                let _ = std::io::Read::read_to_end(&mut client.reader(), &mut got);
            }
            if got == b"hello\n" {
                break;
            }
        }
        assert_eq!(got, b"hello\n");
    }
}
