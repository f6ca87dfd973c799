//! Resource limits against hostile or greedy clients, through a real server: the session
//! bound (`limits.max_sessions`), slowloris on HTTP/1.1 and on the TLS handshake, and the
//! HTTP/2 limits of a session (concurrent streams, header list size, RST_STREAM flood). In
//! every case the offender is refused or cut off, others are served meanwhile, and the server
//! still opens a fresh session afterwards.

mod backup_support;

use std::time::{Duration, Instant};

use backup_support::*;
use bytes::Bytes;
use chunkyard::client::{BACKUP_PROTOCOL, ClientError, ReaderParams, encode_query};
use chunkyard::testing::TestServer;
use http::{Method, Request, StatusCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// How long a cut-off may take at most; the configured timeouts are 1 s.
const CUT_OFF_BOUND: Duration = Duration::from_secs(30);

fn limited_server() -> TestServer {
    TestServer::start_with(|c| {
        c.limits.max_sessions = 2;
        c.limits.max_streams = 4;
        c.limits.idle_timeout_secs = 1;
        c.limits.tls_handshake_timeout_secs = 1;
    })
}

/// A fresh management connection answers `version`, and a fresh backup session opens.
async fn assert_serving(server: &TestServer) {
    client(server).version().await.expect("version answers");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match client(server).start_backup(&params(server, "alive", T0)).await {
            Ok(s) => {
                drop(s);
                assert_removed(&group_dir(server, "alive")).await;
                return;
            }
            // The session slot of a connection that was just cut is released asynchronously.
            Err(e) if e.status() == Some(StatusCode::SERVICE_UNAVAILABLE) && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("fresh session refused: {e}"),
        }
    }
}

#[tokio::test]
async fn sessions_beyond_the_limit_are_refused_with_503() {
    let server = limited_server();
    let c = client(&server);
    let a = session(&server, "s1", T0).await;
    let b = session(&server, "s2", T0).await;
    let text = "too many sessions - the server allows 2 at once, try again later";
    assert_refused(c.start_backup(&params(&server, "s3", T0)).await.map(drop), StatusCode::SERVICE_UNAVAILABLE, text);
    let reader = ReaderParams {
        store: server.store.clone(),
        ns: None,
        backup_type: "host".into(),
        backup_id: "s1".into(),
        backup_time: T0,
    };
    assert_refused(c.start_reader(&reader).await.map(drop), StatusCode::SERVICE_UNAVAILABLE, text);
    assert!(!group_dir(&server, "s3").exists(), "a refused session leaves no group");
    // Management calls are not sessions: still served.
    c.version().await.unwrap();
    // The open sessions still work.
    for s in [&a, &b] {
        let r = s
            .request(Method::GET, "/previous_backup_time", "", Bytes::new(), "application/x-www-form-urlencoded")
            .await
            .unwrap();
        assert_eq!(r.status, StatusCode::OK);
    }
    // A closed session frees its slot.
    drop(a);
    assert_removed(&group_dir(&server, "s1")).await;
    assert_serving(&server).await;
    drop(b);
}

/// Reads until the server closes the connection; returns how long that took.
async fn wait_closed<R: tokio::io::AsyncRead + Unpin>(mut r: R) -> Duration {
    let started = Instant::now();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(CUT_OFF_BOUND, r.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return started.elapsed(),
            Ok(Ok(_)) => continue,
            Err(_) => panic!("connection still open after {CUT_OFF_BOUND:?}"),
        }
    }
}

#[tokio::test]
async fn a_slowly_dribbled_http_header_is_cut_off_while_others_are_served() {
    let server = limited_server();
    let tls = client(&server).connect_tls().await.unwrap();
    let (r, mut w) = tokio::io::split(tls);
    let closed = tokio::spawn(wait_closed(r));
    let header = format!("GET /api2/json/version HTTP/1.1\r\nhost: x\r\nx-slow: {}", "a".repeat(1000));
    let mut served = 0;
    for (i, byte) in header.bytes().enumerate() {
        if closed.is_finished() {
            break;
        }
        if w.write_all(&[byte]).await.is_err() || w.flush().await.is_err() {
            break;
        }
        if i % 5 == 0 {
            // Others are served while the slow client holds its connection.
            client(&server).version().await.expect("another client is served");
            served += 1;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let took = closed.await.unwrap();
    assert!(served > 0);
    assert!(took < CUT_OFF_BOUND, "slow header cut after {took:?}");
    assert_serving(&server).await;
}

#[tokio::test]
async fn stalled_tls_handshakes_are_cut_off_while_others_are_served() {
    let server = limited_server();
    let mut stalled = Vec::new();
    for i in 0..20 {
        let mut tcp = tokio::net::TcpStream::connect(server.addr).await.unwrap();
        if i % 2 == 1 {
            // Half a ClientHello: a record header announcing 512 bytes, then a few of them.
            tcp.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01]).await.unwrap();
        }
        stalled.push(tokio::spawn(wait_closed(tcp)));
    }
    client(&server).version().await.expect("served while 20 handshakes stall");
    let s = session(&server, "during", T0).await;
    drop(s);
    for h in stalled {
        let took = h.await.unwrap();
        assert!(took < CUT_OFF_BOUND);
    }
    assert_serving(&server).await;
}

async fn raw_session(server: &TestServer, id: &str) -> (h2::client::SendRequest<Bytes>, tokio::task::JoinHandle<()>) {
    let target = format!("//api2/json/backup?{}", encode_query(&params(server, id, T0).query()));
    client(server).upgrade(&target, BACKUP_PROTOCOL).await.expect("session opens")
}

fn request(method: Method, path: &str) -> Request<()> {
    Request::builder().method(method).uri(format!("https://localhost:8007{path}")).body(()).unwrap()
}

/// Sends a request without body and reads the whole answer.
async fn call(send: &h2::client::SendRequest<Bytes>, req: Request<()>) -> Result<(StatusCode, Bytes), ClientError> {
    let mut send = send.clone().ready().await?;
    let (response, _) = send.send_request(req, true)?;
    let response = response.await?;
    let status = response.status();
    let mut body = response.into_body();
    let mut all = Vec::new();
    while let Some(d) = body.data().await {
        all.extend_from_slice(&d?);
    }
    Ok((status, all.into()))
}

#[tokio::test]
async fn http2_concurrent_streams_are_bounded() {
    let server = limited_server();
    let (send, _task) = raw_session(&server, "streams").await;
    assert_eq!(call(&send, request(Method::GET, "/")).await.unwrap().0, StatusCode::OK);
    assert_eq!(send.current_max_send_streams(), 4, "server advertises limits.max_streams");
    // Four uploads whose bodies never end occupy every stream.
    let mut open = Vec::new();
    for _ in 0..4 {
        let mut s = send.clone().ready().await.unwrap();
        let (response, body) = s.send_request(request(Method::POST, "/speedtest"), false).unwrap();
        open.push((response, body));
    }
    // A fifth request waits for a free stream instead of being served.
    let fifth = tokio::spawn({
        let send = send.clone();
        async move { call(&send, request(Method::GET, "/previous_backup_time")).await }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!fifth.is_finished(), "a fifth stream was served while four were open");
    let (response, mut body) = open.pop().unwrap();
    body.send_data(Bytes::from_static(b"done"), true).unwrap();
    assert_eq!(response.await.unwrap().status(), StatusCode::OK);
    let (status, _) = tokio::time::timeout(CUT_OFF_BOUND, fifth).await.unwrap().unwrap().unwrap();
    assert_eq!(status, StatusCode::OK);
    drop(open);
    drop(send);
    assert_serving(&server).await;
}

fn with_big_headers(kib: usize) -> Request<()> {
    let mut req = request(Method::GET, "/");
    for i in 0..kib / 16 {
        req.headers_mut().insert(
            http::HeaderName::from_bytes(format!("x-big-{i}").as_bytes()).unwrap(),
            http::HeaderValue::from_str(&"v".repeat(16 * 1024)).unwrap(),
        );
    }
    req
}

#[tokio::test]
async fn http2_oversized_header_lists_are_refused() {
    let server = limited_server();
    let (send, task) = raw_session(&server, "headers").await;
    assert_eq!(call(&send, request(Method::GET, "/")).await.unwrap().0, StatusCode::OK);
    // Over the 128 KiB limit: this request is refused, the session goes on.
    let (status, _) = call(&send, with_big_headers(160)).await.unwrap();
    assert_eq!(status, StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
    assert_eq!(call(&send, request(Method::GET, "/")).await.unwrap().0, StatusCode::OK);
    // Far over it: the connection is closed (GOAWAY) and the unfinished session removed.
    let e = call(&send, with_big_headers(1024)).await.unwrap_err();
    assert!(e.to_string().contains("header_list_way_too_large"), "{e}");
    tokio::time::timeout(CUT_OFF_BOUND, task).await.expect("connection closed").unwrap();
    assert_removed(&group_dir(&server, "headers")).await;
    assert_serving(&server).await;
}

#[tokio::test]
async fn http2_rst_stream_flood_closes_the_connection() {
    let server = limited_server();
    let (send, task) = raw_session(&server, "flood").await;
    assert_eq!(call(&send, request(Method::GET, "/")).await.unwrap().0, StatusCode::OK);
    let mut cut = false;
    let mut sent = 0;
    for _ in 0..10_000 {
        sent += 1;
        let mut s = match send.clone().ready().await {
            Ok(s) => s,
            Err(_) => {
                cut = true;
                break;
            }
        };
        match s.send_request(request(Method::POST, "/speedtest"), false) {
            Ok((_response, mut body)) => body.send_reset(h2::Reason::CANCEL),
            Err(_) => {
                cut = true;
                break;
            }
        }
    }
    if !cut {
        cut = tokio::time::timeout(CUT_OFF_BOUND, task).await.is_ok();
    }
    assert!(cut, "the server kept a connection that reset 10000 streams");
    println!("RST_STREAM flood: connection closed after {sent} reset streams");
    // The session ended with its connection: its snapshot is gone.
    assert_removed(&group_dir(&server, "flood")).await;
    assert_serving(&server).await;
}

/// A 100 GiB image announced to a fixed index: 25600 slots of 33 bytes of table each.
const BIG_IMAGE: u64 = 100 << 30;
const BIG_TABLE: u64 = 25_600 * 33;

/// Opens `name` as a 100 GiB fixed index, retrying while the table of a session that was just
/// ended is still charged (its writers stop asynchronously).
async fn open_big_eventually(s: &chunkyard::client::BackupSession, name: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match s.create_fixed_index(name, BIG_IMAGE, None).await {
            Ok(_) => return,
            Err(e) if e.to_string().contains("index memory limit exceeded") && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("{name} not opened: {e}"),
        }
    }
}

#[tokio::test]
async fn index_memory_is_bounded_per_session_and_server_wide() {
    let server = TestServer::start_with(|c| {
        c.limits.max_session_index_bytes = 1 << 20;
        c.limits.max_index_bytes = 2 << 20;
    });
    let exceeded = |name: &str, used: u64, scope: &str, limit: u64| {
        format!(
            "index memory limit exceeded - '{name}' needs {BIG_TABLE} bytes, {used} of the {scope}'s {limit} are in use"
        )
    };
    let a = session(&server, "index-a", T0).await;
    a.create_fixed_index("a.img.fidx", BIG_IMAGE, None).await.unwrap();
    let r = a.create_fixed_index("b.img.fidx", BIG_IMAGE, None).await;
    assert_refused(r, StatusCode::BAD_REQUEST, &exceeded("b.img.fidx", BIG_TABLE, "session", 1 << 20));
    // Another session has a bound of its own, inside the server's.
    let b = session(&server, "index-b", T0).await;
    b.create_fixed_index("b.img.fidx", BIG_IMAGE, None).await.unwrap();
    let c = session(&server, "index-c", T0).await;
    let r = c.create_fixed_index("c.img.fidx", BIG_IMAGE, None).await;
    assert_refused(r, StatusCode::BAD_REQUEST, &exceeded("c.img.fidx", 2 * BIG_TABLE, "server", 2 << 20));

    // The refused session goes on: the name was not taken, and a backup that fits completes.
    let options = chunkyard::client::BackupOptions { dynamic_avg: 64 * 1024, ..Default::default() };
    let mut up = c.uploader(options).await.unwrap();
    let image = Bytes::from(data(4 * 1024 * 1024 + 4321, 1));
    up.fixed("c.img.fidx", image).await.unwrap();
    up.dynamic("root.pxar.didx", Bytes::from(data(1024 * 1024, 2))).await.unwrap();
    up.finish().await.unwrap();
    drop(c);
    assert!(snapshot_dir(&server, "index-c", T0).join("index.json.blob").exists());

    // Ending a session gives its tables back to the server.
    abandon_and_check(&server, a, "index-a", T0, true).await;
    let d = session(&server, "index-d", T0).await;
    open_big_eventually(&d, "d.img.fidx").await;
    abandon_and_check(&server, d, "index-d", T0, true).await;
    abandon_and_check(&server, b, "index-b", T0, true).await;
}
