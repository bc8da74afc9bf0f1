//! The HTTP honeypot: one request per connection; records method, path and
//! user agent (the server classifies the path) and answers with a stock page.

use tokio::net::TcpStream;

use super::event::Recorder;
use super::io::{Conn, read_exact_capped};

const MAX_HEADERS: usize = 100;
const MAX_BODY: usize = 64 * 1024;
const PAGE: &str = "<html><body><h1>It works!</h1></body></html>\n";

pub(crate) async fn serve(stream: TcpStream, mut rec: Recorder) {
    let mut conn = Conn::new(stream, rec.limits());
    let Some(request_line) = conn.line().await else {
        rec.connect().await;
        return;
    };
    let mut parts = request_line.split_whitespace();
    let (method, target, version) = (parts.next(), parts.next(), parts.next());
    let valid = matches!(version, Some(v) if v.starts_with("HTTP/")) && parts.next().is_none();
    let (Some(method), Some(target), true) = (method, target, valid) else {
        rec.connect().await;
        let _ = conn
            .send(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            .await;
        return;
    };
    let mut length = 0usize;
    for _ in 0..MAX_HEADERS {
        let Some(h) = conn.line().await else { break };
        if h.is_empty() {
            break;
        }
        let Some((name, value)) = h.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("user-agent") {
            rec.client_id = Some(value.to_owned());
        } else if name.eq_ignore_ascii_case("content-length") {
            length = value.parse().unwrap_or(0);
        }
    }
    rec.http(method, target).await;
    if length > 0 {
        // Drained so the client sees an answer; bodies are not recorded.
        let idle = conn.idle;
        let _ = read_exact_capped(&mut conn.r, length.min(MAX_BODY), 0, idle).await;
    }
    let head = format!(
        "HTTP/1.1 200 OK\r\nServer: Apache/2.4.41 (Ubuntu)\r\nContent-Type: text/html\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        PAGE.len()
    );
    let mut out = head.into_bytes();
    if !method.eq_ignore_ascii_case("HEAD") {
        out.extend_from_slice(PAGE.as_bytes());
    }
    let _ = conn.send(&out).await;
}
