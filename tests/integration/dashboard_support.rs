//! What the dashboard's tests share: one raw HTTP/1.1 exchange (the tests read status
//! lines, headers and bodies as a browser or `curl` would get them), a dashboard served
//! on a free loopback port, and an id encoded as a path segment.

use std::net::SocketAddr;

use durable_core::Client;
use durable_core::dashboard::{Dashboard, DashboardHandle};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// One HTTP response, read whole.
pub struct Response {
    /// The status code.
    pub status: u16,
    /// The status line and the headers, without the blank line that ends them.
    pub head: String,
    /// The body's bytes.
    pub body: Vec<u8>,
}

impl Response {
    /// The body as text (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The value of header `name` (any case), if the response has it.
    pub fn header(&self, name: &str) -> Option<&str> {
        (self.head.lines().skip(1))
            .filter_map(|line| line.split_once(':'))
            .find(|(n, _)| n.trim().eq_ignore_ascii_case(name))
            .map(|(_, value)| value.trim())
    }

    /// The body as JSON; panics, naming the request, if it is not.
    pub fn json<T: serde::de::DeserializeOwned>(&self, what: &str) -> T {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "{what}: not the JSON expected ({e}): {}\n{:?}",
                self.head,
                self.text()
            )
        })
    }
}

/// An HTTP/1.1 exchange on a fresh connection; `body` is (content type, content).
pub async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<(&str, &str)>,
) -> Response {
    request_with(addr, method, path, &[], body).await
}

/// [`request`] with more headers (`Name: value` lines, such as a browser's cookies).
pub async fn request_with(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[String],
    body: Option<(&str, &str)>,
) -> Response {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut request = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for header in headers {
        request.push_str(header);
        request.push_str("\r\n");
    }
    let (content_type, content) = body.unwrap_or(("", ""));
    if !content_type.is_empty() {
        request.push_str(&format!("Content-Type: {content_type}\r\n"));
    }
    request.push_str(&format!(
        "Content-Length: {}\r\n\r\n{content}",
        content.len()
    ));
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.unwrap();
    let split = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("an HTTP response");
    let head = String::from_utf8_lossy(&response[..split]).into_owned();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    assert!(
        !head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked"),
        "this helper reads only whole bodies: {head}"
    );
    Response {
        status,
        head,
        body: response[split + 4..].to_vec(),
    }
}

/// A JSON request (`body` sent as `application/json`) whose answer must be `status`,
/// with a JSON body.
pub async fn json(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&str>,
    status: u16,
) -> serde_json::Value {
    let response = request(addr, method, path, body.map(|b| ("application/json", b))).await;
    let what = format!("{method} {path}");
    assert_eq!(
        response.status,
        status,
        "{what}: {}\n{}",
        response.head,
        response.text()
    );
    response.json(&what)
}

/// The dashboard of `client` on a free loopback port, with no token.
pub async fn serve(client: &Client) -> DashboardHandle {
    Dashboard::new(client.clone())
        .serve(([127, 0, 0, 1], 0))
        .await
        .unwrap()
}

/// `value` percent-encoded as a path segment (every byte but the unreserved ones).
pub fn encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
