//! Throughput of the transport stack alone: 4 MiB request bodies (the speedtest and fixed-chunk
//! size) from our client to `protocol::h2::serve` over TLS on loopback, 7 in flight like the
//! real client. The server side reads each body to its end and answers `{"data":null}`, so
//! the number is what TLS + HTTP/2 + flow control can carry before any hashing or disk work.
//!
//! Run: `cargo bench --bench transport`.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use chunkyard::client::{ClientConfig, H2Conn, HttpClient};
use chunkyard::config::{Config, LimitsConfig};
use chunkyard::http::Reply;
use chunkyard::protocol::h2::{read_body, serve};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use http::Method;

const BODY: usize = 4 * 1024 * 1024;
const IN_FLIGHT: usize = 7;

/// A TLS listener on 127.0.0.1 whose connections go straight to `h2::serve`.
fn start_server() -> (std::net::SocketAddr, String, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let config = Config { data_dir: dir.path().to_path_buf(), ..Config::default() };
    let tls = chunkyard::server::tls::load_or_generate(&config).unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::clone(&tls.config));
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let local = tokio::task::LocalSet::new();
        local.block_on(&rt, async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            loop {
                let (socket, _) = listener.accept().await.unwrap();
                let acceptor = acceptor.clone();
                tokio::task::spawn_local(async move {
                    let Ok(tls) = acceptor.accept(socket).await else { return };
                    let limits = LimitsConfig::default();
                    let _ = serve(tls, &limits, |mut req: http::Request<h2::RecvStream>| async move {
                        read_body(req.body_mut(), 16 << 20).await?;
                        Ok(Reply::Data(serde_json::Value::Null))
                    })
                    .await;
                });
            }
        });
    });
    (addr, tls.fingerprint, dir)
}

fn bench(c: &mut Criterion) {
    let (addr, fingerprint, _dir) = start_server();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let client =
        HttpClient::new(ClientConfig { addr, fingerprint, authid: "a@pbs!t".into(), secret: String::new() }).unwrap();
    let conn = rt.block_on(async {
        let tls = client.connect_tls().await.unwrap();
        let (send, task) = chunkyard::client::session::h2_handshake(tls).await.unwrap();
        std::mem::forget(task);
        H2Conn::new(send)
    });
    let body = Bytes::from((0..BODY).map(|i| (i % 251) as u8).collect::<Vec<u8>>());
    let mut group = c.benchmark_group("transport");
    group.throughput(Throughput::Bytes((BODY * IN_FLIGHT) as u64));
    group.measurement_time(Duration::from_secs(8));
    group.sample_size(20);
    group.bench_function("tls_h2_upload_4MiB_x7", |b| {
        b.iter(|| {
            rt.block_on(async {
                let calls = (0..IN_FLIGHT)
                    .map(|_| conn.request(Method::POST, "/speedtest", "", body.clone(), "application/octet-stream"));
                for r in futures_util::future::join_all(calls).await {
                    assert!(r.unwrap().status.is_success());
                }
            })
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
