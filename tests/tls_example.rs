//! The TLS examples run as a user would: `tls_echo` and `http_hello --tls`
//! as programs on ephemeral ports, spoken to by real clients (`openssl
//! s_client`, `curl`) and by an in-process rustls client. Without `openssl`
//! or `curl` on PATH, the tests that need them print that they are skipped
//! and pass (`.ci/run` installs both).

mod util;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use reactor_loop::tls::rustls::pki_types::pem::PemObject;
use reactor_loop::tls::rustls::pki_types::CertificateDer;
use reactor_loop::tls::rustls::{ClientConfig, RootCertStore};
use util::tls::Client;
use util::{connect, pattern, Example, WAIT};

/// The certificate file a server without --cert logged, once it has.
fn logged_cert(example: &Example) -> PathBuf {
    let line = util::wait_for("the certificate's path in the log", || {
        example.log().into_iter().find(|line| line.contains("written to "))
    });
    let rest = &line[line.find("written to ").unwrap() + "written to ".len()..];
    PathBuf::from(rest.split_whitespace().next().unwrap())
}

fn trusting(pem: &Path) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(pem).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    Arc::new(ClientConfig::builder().with_root_certificates(roots).with_no_client_auth())
}

fn have(binary: &str) -> bool {
    Command::new(binary).arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok()
        || Command::new(binary).arg("version").stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok()
}

/// Runs `command` with `input` on its stdin; returns its stdout, or fails
/// the test if it does not finish within `WAIT`.
fn run_with_input(command: &mut Command, input: &[u8]) -> (bool, Vec<u8>, String) {
    let mut child = command.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let input = input.to_vec();
    let writer = thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let deadline = Instant::now() + WAIT;
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            panic!("{command:?} did not finish within {WAIT:?}");
        }
        thread::sleep(Duration::from_millis(10));
    }
    writer.join().unwrap();
    let output = child.wait_with_output().unwrap();
    (output.status.success(), output.stdout, String::from_utf8_lossy(&output.stderr).into_owned())
}

#[test]
fn tls_echo_echoes_a_mebibyte_to_a_rustls_client() {
    let example = Example::start("tls_echo", &["127.0.0.1:0"], 1);
    let pem = logged_cert(&example);
    let mut client = Client::connect(example.addr(), trusting(&pem));
    let data = pattern(1 << 20, 7);
    for step in data.chunks(100_000) {
        client.send(step).unwrap();
        let got = client.receive_exactly(step.len()).unwrap();
        assert!(got == step, "echo differs");
    }
}

#[test]
fn tls_echo_answers_openssl_s_client() {
    if !have("openssl") {
        eprintln!("SKIPPED: no `openssl` binary on PATH (apt-get install openssl)");
        return;
    }
    let example = Example::start("tls_echo", &["127.0.0.1:0"], 1);
    let pem = logged_cert(&example);
    // s_client -quiet sends stdin's line and prints what comes back; it
    // does not end at stdin's end, so the test stops it once the echo came.
    let mut child = Command::new("openssl")
        .args([
            "s_client",
            "-connect",
            &example.addr().to_string(),
            "-servername",
            "localhost",
            "-verify_hostname",
            "localhost",
            "-verify_return_error",
            "-CAfile",
            pem.to_str().unwrap(),
            "-quiet",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"hello over openssl\n").unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    thread::spawn(move || {
        let mut got = Vec::new();
        let mut buf = [0u8; 256];
        while let Ok(n) = stdout.read(&mut buf) {
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
            if got.windows(18).any(|w| w == b"hello over openssl") {
                let _ = tx.send(got.clone());
                return;
            }
        }
        let _ = tx.send(got);
    });
    let got = rx.recv_timeout(WAIT);
    let _ = child.kill();
    let _ = child.wait();
    drop(stdin);
    let got = got.expect("s_client's output");
    assert!(got.windows(18).any(|w| w == b"hello over openssl"), "got {:?}", String::from_utf8_lossy(&got));
}

#[test]
fn tls_echo_closes_a_silent_client_at_its_handshake_timeout() {
    let example = Example::start("tls_echo", &["127.0.0.1:0", "--handshake-timeout", "1"], 1);
    let began = Instant::now();
    let mut silent = connect(example.addr());
    let mut buf = [0u8; 8];
    assert_eq!(silent.read(&mut buf).expect("end of stream, not a timeout"), 0);
    assert!(began.elapsed() >= Duration::from_secs(1), "closed after {:?}", began.elapsed());
    util::wait_for("the close line", || {
        example.log().iter().any(|line| line.contains("no complete TLS handshake in time")).then_some(())
    });
}

fn curl(addr: std::net::SocketAddr, pem: &Path) -> (bool, Vec<u8>, String) {
    let port = addr.port();
    run_with_input(
        Command::new("curl").args([
            "-sS",
            "--max-time",
            "15",
            "--cacert",
            pem.to_str().unwrap(),
            // The name the certificate is for, at the address the test has.
            "--resolve",
            &format!("localhost:{port}:{}", addr.ip()),
            &format!("https://localhost:{port}/"),
        ]),
        b"",
    )
}

#[test]
fn http_hello_tls_answers_curl_with_the_logged_certificate() {
    if !have("curl") {
        eprintln!("SKIPPED: no `curl` binary on PATH (apt-get install curl)");
        return;
    }
    let example = Example::start("http_hello", &["127.0.0.1:0", "--tls"], 1);
    let pem = logged_cert(&example);
    let (ok, body, stderr) = curl(example.addr(), &pem);
    assert!(ok, "curl failed: {stderr}");
    assert_eq!(body, b"Hello, World");
}

#[test]
fn http_hello_tls_serves_a_given_certificate_and_key() {
    if !have("curl") {
        eprintln!("SKIPPED: no `curl` binary on PATH (apt-get install curl)");
        return;
    }
    let made = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let dir = std::env::temp_dir().join(format!("reactor-tls-example-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert, made.cert.pem()).unwrap();
    std::fs::write(&key, made.signing_key.serialize_pem()).unwrap();
    let example = Example::start(
        "http_hello",
        &["127.0.0.1:0", "--tls", "--cert", cert.to_str().unwrap(), "--key", key.to_str().unwrap()],
        1,
    );
    let (ok, body, stderr) = curl(example.addr(), &cert);
    let _ = std::fs::remove_dir_all(&dir);
    assert!(ok, "curl failed: {stderr}");
    assert_eq!(body, b"Hello, World");
    assert!(!example.log().iter().any(|line| line.contains("self-signed")), "it made its own certificate");
}

#[test]
fn http_hello_refuses_a_certificate_without_tls() {
    let status = Command::new(util::example_path("http_hello"))
        .args(["127.0.0.1:0", "--cert", "a.pem", "--key", "b.pem"])
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    assert_eq!(status.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&status.stderr);
    assert_eq!(stderr.lines().collect::<Vec<_>>(), ["error: --cert and --key need --tls"], "nothing logged first");
}
