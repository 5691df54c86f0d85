//! `--cert PEM --key PEM` for the examples that serve TLS (`tls_echo`,
//! `http_hello --tls`), shared by them (each includes this file with
//! `#[path]`; it is not an example itself).
//!
//! With both, the server presents that certificate chain and key. With
//! neither, it makes a self-signed certificate for `localhost` at start
//! (rcgen), writes the certificate (not the key) as PEM to a file in the
//! temporary directory and logs where, so that a client can trust it:
//! `curl --cacert THAT_FILE https://localhost:PORT/`.

#![allow(dead_code)] // each example uses a part

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use reactor_loop::tls::rustls::pki_types::pem::PemObject;
use reactor_loop::tls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use reactor_loop::tls::rustls::ServerConfig;

/// `--cert` and `--key`: flattened into a server's own arguments.
#[derive(clap::Args, Debug, Clone)]
pub struct CertArgs {
    /// The certificate chain to present, PEM (with --key). Without both, a
    /// self-signed certificate for localhost is made at start and its PEM
    /// written to a file whose path is logged.
    #[arg(long, value_name = "PEM", requires = "key")]
    pub cert: Option<PathBuf>,
    /// The private key of --cert, PEM (PKCS#8, PKCS#1 or SEC1).
    #[arg(long, value_name = "PEM", requires = "cert")]
    pub key: Option<PathBuf>,
}

/// A rustls server configuration with the certificate `args` name, or a
/// self-signed one for localhost; `alpn` lists the application protocols
/// offered (`http/1.1`), if any.
pub fn server_config(args: &CertArgs, alpn: &[&[u8]]) -> io::Result<Arc<ServerConfig>> {
    let (chain, key) = match (&args.cert, &args.key) {
        (Some(cert), Some(key)) => (load_chain(cert)?, load_key(key)?),
        _ => self_signed()?,
    };
    let mut config = ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|err| io::Error::new(io::ErrorKind::InvalidInput, format!("certificate and key: {err}")))?;
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}

fn load_chain(path: &Path) -> io::Result<Vec<CertificateDer<'static>>> {
    let bad = |err: &dyn std::fmt::Display| {
        io::Error::new(io::ErrorKind::InvalidInput, format!("--cert {}: {err}", path.display()))
    };
    let chain = CertificateDer::pem_file_iter(path)
        .map_err(|err| bad(&err))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|err| bad(&err))?;
    if chain.is_empty() {
        return Err(bad(&"no certificate in it"));
    }
    Ok(chain)
}

fn load_key(path: &Path) -> io::Result<PrivateKeyDer<'static>> {
    PrivateKeyDer::from_pem_file(path)
        .map_err(|err| io::Error::new(io::ErrorKind::InvalidInput, format!("--key {}: {err}", path.display())))
}

/// A self-signed certificate for localhost; its PEM is written to a file in
/// the temporary directory, named after the process, and logged.
fn self_signed() -> io::Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)> {
    let made = rcgen::generate_simple_self_signed(vec!["localhost".to_string()])
        .map_err(|err| io::Error::other(format!("making a self-signed certificate: {err}")))?;
    let path = std::env::temp_dir().join(format!("reactor-loop-{}-cert.pem", std::process::id()));
    std::fs::write(&path, made.cert.pem())
        .map_err(|err| io::Error::new(err.kind(), format!("writing {}: {err}", path.display())))?;
    log::info!(
        "no --cert/--key: self-signed certificate for localhost written to {} (curl --cacert {} https://localhost:PORT/)",
        path.display(),
        path.display()
    );
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(made.signing_key.serialize_der()));
    Ok((vec![made.cert.der().clone()], key))
}
