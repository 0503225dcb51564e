//! `scim::serve` over real loopback sockets: plain HTTP, TLS from PEM files, and shutdown.
//! The certificate in tests/data is a self-signed test-only pair for localhost/127.0.0.1.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use retrac_sync::config::ScimConfig;
use retrac_sync::scim::{router, serve, tls, ScimState};
use retrac_sync::store::Store;
use retrac_sync::tokens::{self as auth, TokenRequest, TokenResponse};
use rustls::pki_types::pem::PemObject;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn data(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

struct Running {
    _dir: tempfile::TempDir,
    addr: std::net::SocketAddr,
    token: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

async fn start(tls: Option<Arc<rustls::ServerConfig>>) -> Running {
    start_with(tls, retrac_sync::scim::conn_limits(&ScimConfig::default())).await
}

async fn start_with(
    tls: Option<Arc<rustls::ServerConfig>>,
    limits: retrac_sync::listener::ConnLimits,
) -> Running {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("store")).unwrap();
    let token = match auth::execute(
        &store,
        TokenRequest::Create {
            label: "t".into(),
            scope: retrac_sync::store::TokenScope::Scim,
        },
        None,
        chrono::Utc::now(),
    )
    .unwrap()
    {
        TokenResponse::Created { secret, .. } => secret.0,
        other => panic!("{other:?}"),
    };
    let state = ScimState::new(store, &ScimConfig::default()).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(serve(listener, tls, router(state), limits, async {
        let _ = stopped.await;
    }));
    Running {
        _dir: dir,
        addr,
        token,
        stop: Some(stop),
        task,
    }
}

fn request(token: &str, keep_alive: bool) -> String {
    format!(
        "GET /scim/v2/Users?count=0 HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {token}\r\nConnection: {}\r\n\r\n",
        if keep_alive { "keep-alive" } else { "close" }
    )
}

#[tokio::test]
async fn plain_http_serves_and_shuts_down_with_an_idle_connection_open() {
    let mut s = start(None).await;
    let mut conn = tokio::net::TcpStream::connect(s.addr).await.unwrap();
    conn.write_all(request(&s.token, true).as_bytes())
        .await
        .unwrap();
    let mut buf = vec![0u8; 4096];
    let n = conn.read(&mut buf).await.unwrap();
    let text = String::from_utf8_lossy(&buf[..n]);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.contains("\"totalResults\":0"), "{text}");
    // The keep-alive connection stays open; shutdown must still finish promptly.
    let _ = s.stop.take().unwrap().send(());
    let finished = tokio::time::timeout(Duration::from_secs(5), &mut s.task).await;
    assert!(
        matches!(finished, Ok(Ok(Ok(())))),
        "serve did not stop: {finished:?}"
    );
    assert!(
        tokio::net::TcpStream::connect(s.addr).await.is_err(),
        "no new connection after shutdown"
    );
}

#[tokio::test]
async fn tls_from_pem_files_serves_https() {
    let config =
        tls::server_config(&data("scim-test-cert.pem"), &data("scim-test-key.pem")).unwrap();
    let mut s = start(Some(config)).await;
    let mut roots = rustls::RootCertStore::empty();
    for cert in
        rustls::pki_types::CertificateDer::pem_file_iter(data("scim-test-cert.pem")).unwrap()
    {
        roots.add(cert.unwrap()).unwrap();
    }
    let client = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(client));
    let tcp = tokio::net::TcpStream::connect(s.addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut tls_stream = connector.connect(name, tcp).await.unwrap();
    tls_stream
        .write_all(request(&s.token, false).as_bytes())
        .await
        .unwrap();
    let mut out = Vec::new();
    let _ = tls_stream.read_to_end(&mut out).await;
    let text = String::from_utf8_lossy(&out);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    // A plain-HTTP client gets no answer from the TLS listener.
    let mut plain = tokio::net::TcpStream::connect(s.addr).await.unwrap();
    plain
        .write_all(request(&s.token, false).as_bytes())
        .await
        .unwrap();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), plain.read_to_end(&mut buf)).await;
    assert!(!String::from_utf8_lossy(&buf).contains("200 OK"));
    let _ = s.stop.take().unwrap().send(());
    let finished = tokio::time::timeout(Duration::from_secs(5), &mut s.task).await;
    assert!(matches!(finished, Ok(Ok(Ok(())))));
}

#[test]
fn tls_errors_name_the_file_and_the_reason() {
    let missing = tls::server_config(&data("nope.pem"), &data("scim-test-key.pem")).unwrap_err();
    assert!(missing.to_string().contains("scim.tls_cert"), "{missing}");
    assert!(missing.to_string().contains("nope.pem"), "{missing}");
    // A key file given as the certificate holds no certificate.
    let swapped =
        tls::server_config(&data("scim-test-key.pem"), &data("scim-test-key.pem")).unwrap_err();
    assert!(swapped.to_string().contains("no CERTIFICATE"), "{swapped}");
    let no_key =
        tls::server_config(&data("scim-test-cert.pem"), &data("scim-test-cert.pem")).unwrap_err();
    assert!(no_key.to_string().contains("scim.tls_key"), "{no_key}");
}

fn short_limits() -> retrac_sync::listener::ConnLimits {
    retrac_sync::listener::ConnLimits {
        name: "test",
        max_connections: 8,
        idle_timeout: Duration::from_secs(2),
        header_timeout: Duration::from_secs(1),
        max_connections_per_ip: 8,
        drain_timeout: Duration::from_secs(1),
    }
}

/// Reads until the server closes; how long that took.
async fn closed_after(conn: &mut tokio::net::TcpStream) -> Duration {
    let t = std::time::Instant::now();
    let mut buf = vec![0u8; 4096];
    loop {
        match tokio::time::timeout(Duration::from_secs(10), conn.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return t.elapsed(),
            Ok(Ok(_)) => continue,
            Err(_) => panic!("the server kept the connection open for 10 s"),
        }
    }
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_after_the_idle_timeout() {
    let s = start_with(None, short_limits()).await;
    let mut conn = tokio::net::TcpStream::connect(s.addr).await.unwrap();
    conn.write_all(request(&s.token, true).as_bytes())
        .await
        .unwrap();
    let mut buf = vec![0u8; 4096];
    let n = conn.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    // Now idle: no request, no byte. The header timeout (1 s) does not apply while
    // nothing has been sent; the idle timeout (2 s) does.
    let waited = closed_after(&mut conn).await;
    assert!(
        waited >= Duration::from_millis(1500) && waited < Duration::from_secs(4),
        "closed after {waited:?}"
    );
}

#[tokio::test]
async fn a_client_sending_its_headers_slowly_is_cut_at_the_header_timeout() {
    let s = start_with(None, short_limits()).await;
    let mut conn = tokio::net::TcpStream::connect(s.addr).await.unwrap();
    let t = std::time::Instant::now();
    // One byte every 200 ms keeps the connection busy, so the idle timeout never acts;
    // the headers are never complete.
    let head = request(&s.token, true);
    let mut cut = None;
    for b in head.as_bytes().iter().take(30) {
        if conn.write_all(&[*b]).await.is_err() {
            cut = Some(t.elapsed());
            break;
        }
        let mut buf = [0u8; 64];
        match tokio::time::timeout(Duration::from_millis(200), conn.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {
                cut = Some(t.elapsed());
                break;
            }
            _ => {}
        }
    }
    let cut = cut.expect("the slow client was cut off");
    assert!(
        cut >= Duration::from_millis(900) && cut < Duration::from_millis(2500),
        "cut after {cut:?}"
    );
}

/// A socket that sends nothing is closed at the header timeout counted from the accept (1 s
/// here), not at the idle timeout (2 s): the header timer used to start at the first byte.
#[tokio::test]
async fn a_silent_new_connection_is_closed_at_the_header_timeout_from_accept() {
    let s = start_with(None, short_limits()).await;
    let mut conn = tokio::net::TcpStream::connect(s.addr).await.unwrap();
    let waited = closed_after(&mut conn).await;
    assert!(
        waited >= Duration::from_millis(800) && waited < Duration::from_millis(1900),
        "closed after {waited:?}"
    );
}

/// At the cap (8 here), a new connection closes the silent one that has waited longest and is
/// served at once.
#[tokio::test]
async fn at_the_cap_a_new_connection_closes_the_idlest_one() {
    let s = start_with(None, short_limits()).await;
    let mut silent = Vec::new();
    for _ in 0..8 {
        silent.push(tokio::net::TcpStream::connect(s.addr).await.unwrap());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let t = std::time::Instant::now();
    let mut conn = tokio::net::TcpStream::connect(s.addr).await.unwrap();
    conn.write_all(request(&s.token, false).as_bytes())
        .await
        .unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_millis(500), conn.read(&mut buf))
        .await
        .expect("answered at once")
        .unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    assert!(t.elapsed() < Duration::from_millis(500));
    // The first silent socket, the idlest, was the one closed.
    let mut b = [0u8; 8];
    let first = tokio::time::timeout(Duration::from_millis(300), silent[0].read(&mut b)).await;
    assert!(matches!(first, Ok(Ok(0)) | Ok(Err(_))), "{first:?}");
}
