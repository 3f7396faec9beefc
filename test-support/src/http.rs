//! A minimal HTTP/1.1 client over hyper's connection API: one connection per
//! request, so each call is independent of the others.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::HeaderMap;
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// Anything that went wrong below HTTP.
pub type Error = Box<dyn std::error::Error + Send + Sync>;

/// A complete response.
#[derive(Debug)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Headers.
    pub headers: HeaderMap,
    /// The whole body.
    pub body: Bytes,
}

impl Response {
    /// The body as JSON; panics with the body text when it is not.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|_| panic!("not JSON: {:?}", String::from_utf8_lossy(&self.body)))
    }

    /// A header as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// Sends a request and returns the response head with its still-streaming body.
pub async fn send(
    method: Method,
    url: &str,
    headers: &[(&str, &str)],
    body: impl Into<Bytes>,
) -> Result<hyper::Response<Incoming>, Error> {
    let uri: hyper::Uri = url.parse()?;
    let authority = uri.authority().ok_or("url without host")?.clone();
    let stream = TcpStream::connect(authority.as_str()).await?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let path = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let mut request = Request::builder()
        .method(method)
        .uri(path)
        .header("host", authority.as_str());
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    Ok(sender
        .send_request(request.body(Full::new(body.into()))?)
        .await?)
}

/// Sends a request and reads the whole response.
pub async fn request(
    method: Method,
    url: &str,
    headers: &[(&str, &str)],
    body: impl Into<Bytes>,
) -> Result<Response, Error> {
    let response = send(method, url, headers, body).await?;
    let (parts, body) = response.into_parts();
    Ok(Response {
        status: parts.status.as_u16(),
        headers: parts.headers,
        body: body.collect().await?.to_bytes(),
    })
}

/// `GET url`.
pub async fn get(url: &str) -> Result<Response, Error> {
    request(Method::GET, url, &[], Bytes::new()).await
}

/// `POST url` with a JSON body.
pub async fn post_json(url: &str, body: &str) -> Result<Response, Error> {
    request(
        Method::POST,
        url,
        &[("content-type", "application/json")],
        body.to_owned(),
    )
    .await
}

/// The value of the first sample in Prometheus text `exposition` whose name and
/// labels start with `series` (e.g. `flight_search_sse_streams_open` or
/// `flight_search_http_requests_total{route="/api/flights/search"`).
pub fn metric(exposition: &str, series: &str) -> Option<f64> {
    exposition
        .lines()
        .filter(|l| !l.starts_with('#'))
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with([' ', '{', ',', '}']))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::metric;

    #[test]
    fn finds_samples_by_name_and_label_prefix() {
        let text = "# TYPE a gauge\na 3\na_total 9\nb{route=\"/x\",status=\"200\"} 2\n";
        assert_eq!(metric(text, "a"), Some(3.0));
        assert_eq!(metric(text, "a_total"), Some(9.0));
        assert_eq!(metric(text, "b{route=\"/x\""), Some(2.0));
        assert_eq!(metric(text, "c"), None);
    }
}
