//! Transport integration tests: a real server on 127.0.0.1 (TLS, HTTP/1.1, upgrade, HTTP/2)
//! driven by our client.

use bytes::Bytes;
use chunkyard::client::{BackupParams, ClientConfig, H2Conn, HttpClient};
use chunkyard::testing::{TestServer, noise};
use http::{Method, StatusCode};

const BACKUP_QUERY: &str =
    "backup-id=myhost&backup-time=1718000000&backup-type=host&benchmark=false&debug=true&store=store";

fn client(server: &TestServer) -> HttpClient {
    HttpClient::new(server.client_config()).unwrap()
}

fn client_with(server: &TestServer, f: impl FnOnce(&mut ClientConfig)) -> HttpClient {
    let mut config = server.client_config();
    f(&mut config);
    HttpClient::new(config).unwrap()
}

async fn get(c: &HttpClient, target: &str, headers: &[(&str, &str)]) -> chunkyard::client::Response {
    c.raw(Method::GET, target, headers, Bytes::new(), true).await.unwrap()
}

#[tokio::test]
async fn version_answers_with_strings_on_single_and_double_slash() {
    let server = TestServer::start();
    let c = client(&server);
    for target in ["/api2/json/version", "//api2/json/version", "/api2//json/%76ersion"] {
        let r = get(&c, target, &[]).await;
        assert_eq!(r.status, StatusCode::OK, "{target}: {}", r.text());
        let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        for key in ["version", "release", "repoid"] {
            assert!(v["data"][key].is_string(), "{target}: {key} in {v}");
        }
    }
    // The typed call reads `data` over the same kept-alive connection.
    assert_eq!(c.version().await.unwrap()["version"], "3.2");
}

#[tokio::test]
async fn fingerprint_is_pinned() {
    let server = TestServer::start();
    assert_eq!(server.fingerprint.len(), 95);
    let wrong = client_with(&server, |c| {
        let mut f = c.fingerprint.clone().into_bytes();
        f[0] = if f[0] == b'0' { b'1' } else { b'0' };
        c.fingerprint = String::from_utf8(f).unwrap();
    });
    let err = wrong.version().await.unwrap_err();
    assert!(err.to_string().contains("fingerprint"), "{err}");
    // Upper case is how users sometimes paste it; the client lower-cases like the real one.
    let upper = client_with(&server, |c| c.fingerprint = c.fingerprint.to_uppercase());
    upper.version().await.unwrap();
}

#[tokio::test]
async fn bad_credentials_get_401() {
    let server = TestServer::start();
    let c = client(&server);
    let missing = c.raw(Method::GET, "/api2/json/version", &[], Bytes::new(), false).await.unwrap();
    let malformed = get(&c, "/api2/json/version", &[("authorization", "PBSAPIToken nonsense")]).await;
    let basic = get(&c, "/api2/json/version", &[("authorization", "Basic YTpi")]).await;
    let wrong = client_with(&server, |cfg| cfg.secret.push('x'));
    let wrong = wrong.raw(Method::GET, "/api2/json/version", &[], Bytes::new(), true).await.unwrap();
    let unknown = client_with(&server, |cfg| cfg.authid = "admin@pbs!other".into());
    let unknown = unknown.raw(Method::GET, "/api2/json/version", &[], Bytes::new(), true).await.unwrap();
    for r in [missing, malformed, basic, wrong, unknown] {
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
        assert!(r.text().starts_with("authentication failed - "), "{}", r.text());
    }
    // The `=` form of the header works too, and the secret may be percent-encoded.
    let eq = format!("PBSAPIToken={}:{}", server.authid, server.secret.replace('-', "%2D"));
    let r = c.raw(Method::GET, "/api2/json/version", &[("authorization", &eq)], Bytes::new(), false).await.unwrap();
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
}

#[tokio::test]
async fn unknown_path_is_404_and_long_uri_is_414() {
    let server = TestServer::start();
    let c = client(&server);
    let r = get(&c, "//api2/json/nope/x", &[]).await;
    assert_eq!((r.status, r.text().as_str()), (StatusCode::NOT_FOUND, "Path '/api2/json/nope/x' not found."));
    let base = "/api2/json/version?_dc=";
    let at_limit = format!("{base}{}", "a".repeat(3072 - base.len()));
    assert_eq!(get(&c, &at_limit, &[]).await.status, StatusCode::OK);
    let over = format!("{at_limit}a");
    let r = get(&c, &over, &[]).await;
    assert_eq!(r.status, StatusCode::URI_TOO_LONG);
    assert!(r.body.is_empty());
}

#[tokio::test]
async fn upgrade_checks_answer_with_the_spec_texts() {
    let server = TestServer::start();
    let c = client(&server);
    let target = format!("//api2/json/backup?{BACKUP_QUERY}");
    // (target, headers, status, text)
    type Case<'a> = (String, Vec<(&'a str, &'a str)>, StatusCode, &'a str);
    let cases: Vec<Case<'_>> = vec![
        (target.clone(), vec![], StatusCode::BAD_REQUEST, "missing Upgrade header"),
        (
            target.clone(),
            vec![("connection", "upgrade"), ("upgrade", "h2c")],
            StatusCode::BAD_REQUEST,
            "invalid protocol name",
        ),
        (
            format!("{target}&foo=1"),
            vec![("upgrade", "proxmox-backup-protocol-v1")],
            StatusCode::BAD_REQUEST,
            "parameter 'foo': schema does not allow additional properties",
        ),
        (
            target.replace("store=store", "store=nosuch"),
            vec![("upgrade", "proxmox-backup-protocol-v1")],
            StatusCode::BAD_REQUEST,
            "datastore 'nosuch' does not exist",
        ),
        (
            target.replace("backup-id=myhost", "backup-id=benchmark"),
            vec![("upgrade", "proxmox-backup-protocol-v1")],
            StatusCode::BAD_REQUEST,
            "unable to run benchmark without --benchmark flags",
        ),
        (
            target.replace("benchmark=false", "benchmark=1"),
            vec![("upgrade", "proxmox-backup-protocol-v1")],
            StatusCode::BAD_REQUEST,
            "benchmark flags is only allowed on 'host/benchmark'",
        ),
    ];
    for (target, headers, status, text) in cases {
        let r = get(&c, &target, &headers).await;
        assert_eq!((r.status, r.text().as_str()), (status, text), "{target} {headers:?}");
    }
    // Nothing of a refused upgrade is left on disk.
    let store = server.store_path();
    assert!(!store.join("host").exists());
}

#[tokio::test]
async fn sessions_past_the_limit_get_503() {
    let server = TestServer::start_with(|c| c.limits.max_sessions = 0);
    let err = client(&server).start_backup(&BackupParams::benchmark("store", 1718000000)).await.err().unwrap();
    assert_eq!(err.status(), Some(StatusCode::SERVICE_UNAVAILABLE), "{err}");
    assert!(err.to_string().contains("too many sessions"), "{err}");
}

#[tokio::test]
async fn benchmark_upgrade_reaches_http2_speedtest() {
    let server = TestServer::start();
    let session = client(&server).start_backup(&BackupParams::benchmark("store", 1718000000)).await.unwrap();
    let body = Bytes::from(vec![0x5au8; 4 * 1024 * 1024]);
    let raw = session
        .request(Method::POST, "/speedtest", "", body.clone(), "application/x-www-form-urlencoded")
        .await
        .unwrap();
    assert_eq!((raw.status, &raw.body[..]), (StatusCode::OK, &b"{\"data\":null}"[..]));
    // Pipelined, as the benchmark sends them.
    let runs = (0..4).map(|_| session.speedtest(body.clone()));
    for r in futures_util::future::join_all(runs).await {
        assert_eq!(r.unwrap(), serde_json::Value::Null);
    }
    let r = session.request(Method::GET, "/nope", "", Bytes::new(), "application/x-www-form-urlencoded").await.unwrap();
    assert_eq!((r.status, r.text().as_str()), (StatusCode::NOT_FOUND, "Path '/nope' not found."));
}

#[tokio::test]
async fn reader_upgrade_checks_its_params_before_switching() {
    let server = TestServer::start();
    let c = client(&server);
    let r = get(&c, "//api2/json/reader?store=store", &[("upgrade", "proxmox-backup-reader-protocol-v1")]).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
}

#[test]
fn admin_token_is_private_and_its_secret_is_stored_hashed() {
    use std::os::unix::fs::PermissionsExt;
    let server = TestServer::start();
    let etc = server.data_dir.join("etc");
    let file = etc.join("admin-token.json");
    assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600);
    let token: serde_json::Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    assert_eq!(token["tokenid"], "admin@pbs!default");
    assert_eq!(token["value"], server.secret.as_str());
    assert_eq!(token["fingerprint"], server.fingerprint.as_str());
    assert_eq!(token["repository"], format!("admin@pbs!default@127.0.0.1:{}:store", server.addr.port()).as_str());
    let mut checked = 0;
    for entry in std::fs::read_dir(&etc).unwrap() {
        let path = entry.unwrap().path();
        if path == file {
            continue;
        }
        let bytes = std::fs::read(&path).unwrap();
        let text = String::from_utf8_lossy(&bytes);
        assert!(!text.contains(&server.secret), "secret in clear in {}", path.display());
        checked += 1;
    }
    assert!(checked >= 4, "proxy.pem, proxy.key, users.json, tokens.json expected");
    let tokens = std::fs::read_to_string(etc.join("tokens.json")).unwrap();
    assert!(tokens.contains("$argon2id$"));
}

/// `protocol::h2::serve` against our HTTP/2 client over an in-memory pipe: settings, bodies
/// larger than a frame, pipelined streams, the envelope of data, raw and error replies.
#[tokio::test]
async fn h2_serve_round_trip() {
    use chunkyard::http::{ApiError, Reply, parse_query};
    use chunkyard::protocol::h2::{read_body, serve};
    let (server_io, client_io) = tokio::io::duplex(1 << 20);
    let local = tokio::task::LocalSet::new();
    let limits = chunkyard::config::LimitsConfig::default();
    local.spawn_local(async move {
        let _ = serve(server_io, &limits, |mut req: http::Request<h2::RecvStream>| async move {
            let query = parse_query(req.uri().query());
            match req.uri().path() {
                "/echo" => Ok(Reply::Raw(read_body(req.body_mut(), 8 << 20).await?)),
                "/len" => Ok(Reply::Data(
                    serde_json::json!({"len": read_body(req.body_mut(), 8 << 20).await?.len(), "q": query}),
                )),
                "/small" => Ok(Reply::Data(read_body(req.body_mut(), 10).await?.len().into())),
                p => Err(ApiError::no_such_path(p)),
            }
        })
        .await;
    });
    local
        .run_until(async move {
            let (send, _task) = chunkyard::client::session::h2_handshake(client_io).await.unwrap();
            let conn = H2Conn::new(send);
            let big = Bytes::from((0..6_000_000u32).map(|i| (i % 251) as u8).collect::<Vec<u8>>());
            let calls =
                (0..3).map(|_| conn.request(Method::POST, "/echo", "", big.clone(), "application/octet-stream"));
            for r in futures_util::future::join_all(calls).await {
                let r = r.unwrap();
                assert_eq!(r.status, StatusCode::OK);
                assert!(r.body == big);
            }
            let r = conn.request(Method::POST, "/len", "a=1&b=x+y", Bytes::from_static(b"abc"), "x").await.unwrap();
            assert_eq!(r.data().unwrap(), serde_json::json!({"len": 3, "q": [["a", "1"], ["b", "x y"]]}));
            let r = conn.request(Method::POST, "/small", "", Bytes::from(vec![0u8; 11]), "x").await.unwrap();
            assert_eq!((r.status, r.text().as_str()), (StatusCode::BAD_REQUEST, "request body too large"));
            let r = conn.request(Method::GET, "/zzz", "", Bytes::new(), "x").await.unwrap();
            assert_eq!((r.status, r.text().as_str()), (StatusCode::NOT_FOUND, "Path '/zzz' not found."));
        })
        .await;
}

#[tokio::test]
async fn handshakes_and_requests_are_counted() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let server = TestServer::start();
    let c = client(&server);
    c.version().await.unwrap();
    let _ = get(&c, "/api2/json/nope", &[]).await;
    let mut scrape = tokio::net::TcpStream::connect(server.metrics_addr.expect("metrics enabled")).await.unwrap();
    scrape.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await.unwrap();
    let mut text = String::new();
    scrape.read_to_string(&mut text).await.unwrap();
    assert!(text.contains("chunkyard_tls_handshakes_total"), "{text}");
    for series in [r#"endpoint="version",status="200""#, r#"endpoint="unknown",status="404""#] {
        assert!(
            text.lines().any(|l| l.starts_with("chunkyard_requests_total{") && l.contains(series)),
            "{series} in {text}"
        );
    }
}

/// The high-level helpers against the real server: a fixed, a dynamic and a blob archive in
/// the real client's order, then an incremental run that only appends known chunks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn archives_back_up_and_the_next_run_reuses_known_chunks() {
    use chunkyard::client::BackupOptions;
    use chunkyard::format::fixed_index::FixedIndex;
    let server = TestServer::start();
    let c = client(&server);
    let options = BackupOptions { dynamic_avg: 64 * 1024, ..BackupOptions::default() };
    let image = Bytes::from(noise(10 * 1024 * 1024 + 123, 1));
    let tree = Bytes::from(noise(1024 * 1024, 2));

    let first = c.start_backup(&BackupParams::new("store", "host", "e2e", 1718000000)).await.unwrap();
    let mut up = first.uploader(options).await.unwrap();
    assert!(up.previous_manifest().is_none());
    up.blob("etc.conf.blob", b"setting = 1\n").await.unwrap();
    let fixed = up.fixed("disk.img.fidx", image.clone()).await.unwrap();
    let dynamic = up.dynamic("root.pxar.didx", tree.clone()).await.unwrap();
    let manifest = up.finish().await.unwrap();
    assert_eq!((fixed.chunks, fixed.uploaded, fixed.reused), (3, 3, 0));
    assert!(dynamic.chunks > 4 && dynamic.uploaded == dynamic.chunks, "{dynamic:?}");
    assert_eq!(manifest.files.len(), 3);
    drop(first);

    let dir = server.store_path().join("host/e2e/2024-06-10T06:13:20Z");
    for f in ["index.json.blob", "etc.conf.blob", "disk.img.fidx", "root.pxar.didx"] {
        assert!(dir.join(f).is_file(), "{f} missing");
    }
    let index = FixedIndex::parse(&std::fs::read(dir.join("disk.img.fidx")).unwrap()).unwrap();
    assert_eq!(index.size, image.len() as u64);
    assert_eq!(index.csum(), fixed.csum);

    // Second run: one 4 MiB slot and the start of the tree changed.
    let mut image2 = image.to_vec();
    image2[5 * 1024 * 1024] ^= 0xff;
    let mut tree2 = tree.to_vec();
    tree2[10] ^= 0xff;
    let second = c.start_backup(&BackupParams::new("store", "host", "e2e", 1718000001)).await.unwrap();
    let mut up = second.uploader(options).await.unwrap();
    assert_eq!(up.previous_manifest().map(|m| m.backup_time), Some(1718000000));
    let fixed2 = up.fixed("disk.img.fidx", Bytes::from(image2)).await.unwrap();
    let dynamic2 = up.dynamic("root.pxar.didx", Bytes::from(tree2)).await.unwrap();
    up.finish().await.unwrap();
    assert_eq!((fixed2.uploaded, fixed2.reused), (1, 2));
    assert!(dynamic2.uploaded <= 2 && dynamic2.reused + dynamic2.uploaded == dynamic2.chunks, "{dynamic2:?}");
    assert!(server.store_path().join("host/e2e/2024-06-10T06:13:21Z/index.json.blob").is_file());
}
