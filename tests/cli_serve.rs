//! `chunkyard serve` wiring: flags and `CHUNKYARD_*` variables reach the server, it prints its
//! address and fingerprint, answers authenticated API calls with the bootstrap token, serves
//! metrics, logs Borg-style JSON, and `cert fingerprint` agrees with it.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::Value;

struct Serve {
    child: Child,
    stdout: mpsc::Receiver<String>,
    stderr: mpsc::Receiver<String>,
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn lines(r: impl Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(r).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// The first line on `rx` that `pick` accepts, within 60 s (a loaded CI box is slow).
fn wait_for<T>(rx: &mpsc::Receiver<String>, what: &str, pick: impl Fn(&str) -> Option<T>) -> T {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => {
                if let Some(v) = pick(&line) {
                    return v;
                }
            }
            Err(e) => panic!("no {what} from serve: {e}"),
        }
    }
}

#[tokio::test]
#[allow(unsafe_code)]
async fn serve_runs_the_configured_server() {
    let dir = tempfile::tempdir().unwrap();
    // An existing chunk store is opened, not created: serve would otherwise first make 65536
    // directories, which is slow on a loaded machine and not what this test is about.
    std::fs::create_dir_all(dir.path().join("store/.chunks")).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_chunkyard"))
        .env_clear()
        .env("CHUNKYARD_METRICS_LISTEN", "127.0.0.1:0")
        .env("CHUNKYARD_LISTEN", "127.0.0.1:1") // the flag below must win
        .args(["--log-json", "--data-dir"])
        .arg(dir.path())
        .args(["serve", "--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut serve =
        Serve { stdout: lines(child.stdout.take().unwrap()), stderr: lines(child.stderr.take().unwrap()), child };

    let addr: std::net::SocketAddr =
        wait_for(&serve.stdout, "address", |l| l.strip_prefix("chunkyard listening on ")?.parse().ok());
    assert!(addr.ip().is_loopback() && addr.port() != 0 && addr.port() != 1, "{addr}");
    let fingerprint =
        wait_for(&serve.stdout, "fingerprint", |l| Some(l.strip_prefix("certificate fingerprint: ")?.to_string()));
    let metrics: std::net::SocketAddr = wait_for(&serve.stderr, "metrics log line", |l| {
        let v: Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("stderr line is not JSON ({e}): {l}"));
        assert_eq!(v["type"], "log_message", "{l}");
        let msg = v["message"].as_str()?;
        msg.split("http://").nth(1)?.split("/metrics").next()?.parse().ok()
    });

    // the bootstrap token works against the running server
    let token: Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("etc/admin-token.json")).unwrap()).unwrap();
    assert_eq!(token["fingerprint"], fingerprint.as_str());
    let client = chunkyard::client::http::HttpClient::new(chunkyard::client::ClientConfig {
        addr,
        fingerprint: fingerprint.clone(),
        authid: token["tokenid"].as_str().unwrap().into(),
        secret: token["value"].as_str().unwrap().into(),
    })
    .unwrap();
    let version = client.version().await.unwrap();
    assert!(version.to_string().contains("version"), "{version}");

    // cert fingerprint reads the certificate serve generated
    let o = Command::new(env!("CARGO_BIN_EXE_chunkyard"))
        .env_clear()
        .arg("--data-dir")
        .arg(dir.path())
        .args(["cert", "fingerprint"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), fingerprint);

    // and the metrics listener counted the TLS handshake
    let mut s = std::net::TcpStream::connect(metrics).unwrap();
    write!(s, "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
    let mut scrape = String::new();
    s.read_to_string(&mut scrape).unwrap();
    let handshakes: f64 = scrape
        .lines()
        .find(|l| l.starts_with("chunkyard_tls_handshakes_total"))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or_else(|| panic!("no handshake counter:\n{scrape}"));
    assert!(handshakes >= 1.0, "{scrape}");

    assert!(serve.child.try_wait().unwrap().is_none(), "serve exited early");

    // SIGTERM (how systemd stops a service) ends serve cleanly with exit code 0
    // SAFETY: plain kill(2) on the child we spawned and still own.
    assert_eq!(unsafe { libc::kill(serve.child.id() as libc::pid_t, libc::SIGTERM) }, 0);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = serve.child.try_wait().unwrap() {
            break status;
        }
        assert!(std::time::Instant::now() < deadline, "serve ignored SIGTERM");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.success(), "serve exited with {status} after SIGTERM");
}
