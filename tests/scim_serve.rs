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
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("store")).unwrap();
    let token = match auth::execute(
        &store,
        TokenRequest::Create { label: "t".into() },
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
    let task = tokio::spawn(serve(listener, tls, router(state), async {
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
