//! The HTTP side: a loopback-only target and one HTTP/1.1 connection per slot, opened by us
//! with `TCP_NODELAY` (Nagle + delayed ACK would add ~40 ms per call and hide everything
//! else), kept alive across calls.

use std::net::{SocketAddr, ToSocketAddrs as _};

use anyhow::Context as _;
use bytes::Bytes;
use http::header::{ACCEPT, CONTENT_TYPE, HOST};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt as _, Full};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;

use crate::mcp::CallError;

/// Where the load goes: an `http://` URL whose host resolves to a loopback address.
#[derive(Clone, Debug)]
pub struct Target {
    address: SocketAddr,
    host: HeaderValue,
    path: Uri,
    /// Sent with every request (a credential: `X-API-Key`, `Authorization`).
    headers: Vec<(HeaderName, HeaderValue)>,
}

impl Target {
    pub fn parse(url: &str) -> anyhow::Result<Target> {
        let uri: Uri = url.parse().with_context(|| format!("bad URL {url}"))?;
        anyhow::ensure!(
            uri.scheme_str() == Some("http"),
            "only http:// URLs are supported, got {url}"
        );
        let authority = uri.authority().context("URL without host")?.clone();
        let port = authority.port_u16().unwrap_or(80);
        let address = (authority.host().trim_matches(['[', ']']), port)
            .to_socket_addrs()
            .with_context(|| format!("cannot resolve {authority}"))?
            .find(|address| address.ip().is_loopback())
            .with_context(|| format!("{authority} is not a loopback address: load stays local"))?;
        let path = uri
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .parse()
            .context("bad path")?;
        Ok(Target {
            address,
            host: HeaderValue::from_str(authority.as_str())?,
            path,
            headers: Vec::new(),
        })
    }

    /// The same target, with `NAME: VALUE` headers sent on every request.
    pub fn with_headers(mut self, headers: &[String]) -> anyhow::Result<Target> {
        for header in headers {
            let (name, value) = header
                .split_once(':')
                .with_context(|| format!("--header {header:?} is not `NAME: VALUE`"))?;
            self.headers.push((
                HeaderName::from_bytes(name.trim().as_bytes())
                    .with_context(|| format!("bad header name in {header:?}"))?,
                HeaderValue::from_str(value.trim())
                    .with_context(|| format!("bad header value in {header:?}"))?,
            ));
        }
        Ok(self)
    }
}

/// One reply, fully read.
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn content_type(&self) -> &str {
        self.headers
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    }

    /// A short, printable excerpt of the body for error reports.
    pub fn excerpt(&self) -> String {
        let mut text = String::from_utf8_lossy(&self.body).into_owned();
        text.truncate(200);
        text
    }
}

/// One kept-alive HTTP/1.1 connection. Its driver task ends when this handle is dropped or
/// the peer closes the socket, so nothing outlives the slot that owns it.
pub struct Connection {
    sender: http1::SendRequest<Full<Bytes>>,
}

impl Connection {
    pub async fn open(target: &Target) -> Result<Connection, CallError> {
        let stream = tokio::net::TcpStream::connect(target.address)
            .await
            .map_err(|e| CallError::Connect(format!("{}: {e}", target.address)))?;
        stream
            .set_nodelay(true)
            .map_err(|e| CallError::Connect(format!("TCP_NODELAY: {e}")))?;
        let (sender, connection) = http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| CallError::Connect(format!("HTTP handshake: {e}")))?;
        tokio::spawn(async move {
            // Errors surface on the next request through `sender`; nothing to do here.
            let _ = connection.await;
        });
        Ok(Connection { sender })
    }

    /// POSTs `body` with `extra` headers and reads the whole reply (an SSE reply ends when
    /// the server closes the stream after the result).
    pub async fn post(
        &mut self,
        target: &Target,
        extra: &[(HeaderName, HeaderValue)],
        body: Bytes,
    ) -> Result<Reply, CallError> {
        self.send(Method::POST, target, extra, body).await
    }

    /// DELETE, as a legacy client ends its session.
    pub async fn delete(
        &mut self,
        target: &Target,
        extra: &[(HeaderName, HeaderValue)],
    ) -> Result<Reply, CallError> {
        self.send(Method::DELETE, target, extra, Bytes::new()).await
    }

    async fn send(
        &mut self,
        method: Method,
        target: &Target,
        extra: &[(HeaderName, HeaderValue)],
        body: Bytes,
    ) -> Result<Reply, CallError> {
        let mut request = Request::new(Full::new(body));
        *request.method_mut() = method;
        *request.uri_mut() = target.path.clone();
        let headers = request.headers_mut();
        headers.insert(HOST, target.host.clone());
        for (name, value) in &target.headers {
            headers.insert(name.clone(), value.clone());
        }
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        headers.insert(
            ACCEPT,
            HeaderValue::from_static("application/json, text/event-stream"),
        );
        for (name, value) in extra {
            headers.insert(name.clone(), value.clone());
        }
        self.sender
            .ready()
            .await
            .map_err(|e| CallError::Transport(e.to_string()))?;
        let response = self
            .sender
            .send_request(request)
            .await
            .map_err(|e| CallError::Transport(e.to_string()))?;
        let (parts, body) = response.into_parts();
        let body = body
            .collect()
            .await
            .map_err(|e| CallError::Transport(format!("reading the body: {e}")))?
            .to_bytes();
        Ok(Reply {
            status: parts.status,
            headers: parts.headers,
            body,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_targets() {
        assert!(Target::parse("http://127.0.0.1:8931/mcp").is_ok());
        assert!(Target::parse("http://localhost:8931/mcp").is_ok());
        assert!(Target::parse("https://127.0.0.1:8931/mcp").is_err());
        assert!(Target::parse("http://192.0.2.1:80/mcp").is_err());
        let target = Target::parse("http://127.0.0.1:8931/mcp").unwrap();
        let with = target
            .clone()
            .with_headers(&["X-API-Key: k-0123".into()])
            .unwrap();
        assert_eq!(with.headers[0].0, "x-api-key");
        assert_eq!(with.headers[0].1, "k-0123");
        assert!(target.with_headers(&["no colon".into()]).is_err());
    }
}
