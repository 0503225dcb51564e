//! The demo smoke test: it starts, runs the first sync, serves a SCIM GET, and stops.
// The demo exists only with the default `demo` feature.
#![cfg(feature = "demo")]

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::common::wait_until;
use retrac_sync::demo::{self, DemoOptions};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[derive(Clone, Default)]
struct Shared(Arc<Mutex<Vec<u8>>>);

impl Write for Shared {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Shared {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

fn field(text: &str, label: &str) -> Option<String> {
    text.lines()
        .find(|l| l.starts_with(label))
        .map(|l| l[label.len()..].trim().to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_syncs_serves_scim_and_stops() {
    let out = Shared::default();
    let opts = DemoOptions {
        users: 60,
        listen: "127.0.0.1:0".parse().unwrap(),
        mutate_every: Duration::from_secs(3600),
        ..Default::default()
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn({
        let mut out = out.clone();
        async move {
            let stopped = async {
                let _ = stopped.await;
            };
            demo::run_until(opts, &mut out, stopped).await
        }
    });
    wait_until(
        Duration::from_secs(60),
        "the demo to print its start banner",
        async || out.text().contains("Ctrl-C stops"),
    )
    .await;
    let text = out.text();
    assert!(text.contains("First pull"), "{text}");
    assert!(text.contains("60 members created"), "{text}");
    let url = field(&text, "SCIM endpoint").unwrap();
    let token = field(&text, "SCIM token").unwrap();
    assert!(token.starts_with("rtsc_"), "{token}");

    // A real SCIM GET with the printed token.
    let addr = url
        .trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap()
        .to_string();
    let path = format!(
        "{}/Users?count=1",
        url.trim_start_matches(&format!("http://{addr}"))
    );
    let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n")
            .as_bytes(),
    )
    .await
    .unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).await.unwrap();
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    assert!(resp.contains("\"totalResults\":60"), "{resp}");

    // The console, and the one-time sign-in link the demo printed: it opens the page with
    // the button that uses it.
    let console = field(&text, "Console").unwrap();
    let link = text
        .split_whitespace()
        .find(|w| w.starts_with(&format!("{console}/login/link/")))
        .unwrap_or_else(|| panic!("no sign-in link in {text}"));
    let caddr = console.trim_start_matches("http://").to_string();
    let lpath = link.trim_start_matches(&console);
    let mut s = tokio::net::TcpStream::connect(&caddr).await.unwrap();
    s.write_all(
        format!("GET {lpath} HTTP/1.1\r\nHost: {caddr}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).await.unwrap();
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    assert!(resp.contains(">Sign in</button>"), "{resp}");

    let _ = stop.send(());
    tokio::time::timeout(Duration::from_secs(30), task)
        .await
        .expect("the demo stops")
        .unwrap()
        .unwrap();
    let text = out.text();
    assert!(text.contains("Stopped cleanly"), "{text}");
}
