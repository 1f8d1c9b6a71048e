//! HTTP/1.x requests: method and Host (port stripped). Enough to name a cleartext flow; the
//! body is never looked at here.

/// Request heads longer than this are not waited for (the name is taken from what is there).
pub const MAX_HEAD_LEN: usize = 16 * 1024;

const METHODS: &[&str] = &[
    "GET",
    "POST",
    "HEAD",
    "PUT",
    "DELETE",
    "OPTIONS",
    "PATCH",
    "CONNECT",
    "TRACE",
    "PROPFIND",
    "PROPPATCH",
    "MKCOL",
    "COPY",
    "MOVE",
    "LOCK",
    "UNLOCK",
    "REPORT",
    "SEARCH",
    "NOTIFY",
    "SUBSCRIBE",
    "M-SEARCH",
];

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HttpError {
    #[error("not an HTTP/1.x request (starts with {0:02x?})")]
    NotHttp(Vec<u8>),
    #[error("HTTP request line malformed")]
    BadRequestLine,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    pub method: String,
    /// From the Host header, else from an absolute-form or CONNECT target; port removed, lower
    /// case.
    pub host: Option<String>,
    /// The request head ended (blank line seen) within the bytes given.
    pub complete: bool,
}

/// True when `data` starts with a known method followed by a space (or is a prefix of one).
/// With fewer than 8 bytes, says whether it still could be.
pub fn may_be_request(data: &[u8]) -> bool {
    METHODS.iter().any(|m| {
        let m = m.as_bytes();
        if data.len() > m.len() {
            data.starts_with(m) && data[m.len()] == b' '
        } else {
            m.starts_with(data)
        }
    })
}

/// Parse the request head at the start of `data`. Ok(None): looks like HTTP but the request line
/// is not complete yet.
pub fn parse_request(data: &[u8]) -> Result<Option<Request>, HttpError> {
    if !may_be_request(data) {
        return Err(HttpError::NotHttp(data.iter().take(8).copied().collect()));
    }
    let head = &data[..data.len().min(MAX_HEAD_LEN)];
    let Some(line_end) = find(head, b"\n") else {
        return if data.len() >= MAX_HEAD_LEN {
            Err(HttpError::BadRequestLine)
        } else {
            Ok(None)
        };
    };
    let line = trim_cr(&head[..line_end]);
    let mut parts = line.split(|&b| b == b' ').filter(|p| !p.is_empty());
    let method = parts.next().ok_or(HttpError::BadRequestLine)?;
    let target = parts.next().ok_or(HttpError::BadRequestLine)?;
    let version = parts.next().ok_or(HttpError::BadRequestLine)?;
    if !version.starts_with(b"HTTP/") && !version.starts_with(b"RTSP/") {
        return Err(HttpError::BadRequestLine);
    }
    let method = String::from_utf8_lossy(method).into_owned();
    let mut host = None;
    let mut complete = false;
    let mut rest = head.get(line_end.saturating_add(1)..).unwrap_or_default();
    while let Some(end) = find(rest, b"\n") {
        let header = trim_cr(&rest[..end]);
        rest = rest.get(end.saturating_add(1)..).unwrap_or_default();
        if header.is_empty() {
            complete = true;
            break;
        }
        if let Some(colon) = header.iter().position(|&b| b == b':') {
            let (name, value) = header.split_at(colon);
            if name.eq_ignore_ascii_case(b"host") && host.is_none() {
                host = host_without_port(trim(&value[1..]));
            }
        }
    }
    if host.is_none() {
        host = host_from_target(&method, target);
    }
    Ok(Some(Request {
        method,
        host,
        complete,
    }))
}

/// One request's line, kept as evidence: the method, the Host header, the target (path and
/// query, or the absolute URL a proxy request names). Never the body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestLine {
    pub method: String,
    pub host: Option<String>,
    pub target: String,
    /// Bytes of this request in the stream (head plus a body of known length); None when the
    /// body's end is not known (chunked or unannounced), so no later request can be found.
    pub length: Option<usize>,
}

/// The complete request head at the start of `data`. Ok(None): not complete yet.
pub fn next_request(data: &[u8]) -> Result<Option<RequestLine>, HttpError> {
    let Some(req) = parse_request(data)? else {
        return Ok(None);
    };
    if !req.complete {
        return Ok(None);
    }
    let head_end = find(data, b"\r\n\r\n")
        .map(|i| i.saturating_add(4))
        .or_else(|| find(data, b"\n\n").map(|i| i.saturating_add(2)))
        .ok_or(HttpError::BadRequestLine)?;
    let head = &data[..head_end];
    let line_end = find(head, b"\n").ok_or(HttpError::BadRequestLine)?;
    let line = trim_cr(&head[..line_end]);
    let target = line
        .split(|&b| b == b' ')
        .filter(|p| !p.is_empty())
        .nth(1)
        .ok_or(HttpError::BadRequestLine)?;
    let mut content_length = Some(0usize);
    for header in head
        .get(line_end.saturating_add(1)..)
        .unwrap_or_default()
        .split(|&b| b == b'\n')
        .map(trim_cr)
    {
        let Some(colon) = header.iter().position(|&b| b == b':') else {
            continue;
        };
        let (name, value) = header.split_at(colon);
        let value = trim(&value[1..]);
        if name.eq_ignore_ascii_case(b"content-length") {
            content_length = std::str::from_utf8(value)
                .ok()
                .and_then(|v| v.parse::<usize>().ok());
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            content_length = None;
        }
    }
    Ok(Some(RequestLine {
        method: req.method,
        host: req.host,
        target: String::from_utf8_lossy(target).into_owned(),
        length: content_length.and_then(|body| head_end.checked_add(body)),
    }))
}

fn host_from_target(method: &str, target: &[u8]) -> Option<String> {
    if method == "CONNECT" {
        return host_without_port(target);
    }
    let lower = target.to_ascii_lowercase();
    let rest = lower
        .strip_prefix(b"http://")
        .or_else(|| lower.strip_prefix(b"https://"))?;
    let authority_end = rest
        .iter()
        .position(|&b| b == b'/' || b == b'?')
        .unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    let authority = match authority.iter().rposition(|&b| b == b'@') {
        Some(at) => authority.get(at.saturating_add(1)..).unwrap_or_default(),
        None => authority,
    };
    host_without_port(authority)
}

/// `example.com:8080` -> `example.com`; `[2001:db8::1]:80` -> `2001:db8::1`; lower case.
pub fn host_without_port(value: &[u8]) -> Option<String> {
    let host = if let Some(rest) = value.strip_prefix(b"[") {
        let close = rest.iter().position(|&b| b == b']')?;
        &rest[..close]
    } else {
        match value.iter().filter(|&&b| b == b':').count() {
            0 => value,
            1 => value.split(|&b| b == b':').next().unwrap_or(value),
            // Several colons: only a bare IPv6 address is a host.
            _ => {
                let text = std::str::from_utf8(value).ok()?;
                text.parse::<std::net::Ipv6Addr>().ok()?;
                value
            }
        }
    };
    super::tls::host_from_bytes(host)
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn trim_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

fn trim(v: &[u8]) -> &[u8] {
    let start = v
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(v.len());
    let end = v
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(start, |e| e.saturating_add(1));
    &v[start..end]
}

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects, clippy::cast_possible_truncation)]
mod tests {
    use super::*;

    #[test]
    fn host_and_method() {
        let r = parse_request(
            b"POST /api HTTP/1.1\r\nUser-Agent: x\r\nHOST: Data.Mistat.Xiaomi.com:8080\r\n\r\nbody",
        )
        .unwrap()
        .unwrap();
        assert_eq!(r.method, "POST");
        assert_eq!(r.host.as_deref(), Some("data.mistat.xiaomi.com"));
        assert!(r.complete);
    }

    #[test]
    fn partial_request_waits_then_parses() {
        assert_eq!(parse_request(b"GE"), Ok(None));
        assert_eq!(parse_request(b"GET /index.html HTT"), Ok(None));
        let r = parse_request(b"GET / HTTP/1.0\r\nHost: a.b\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(r.host.as_deref(), Some("a.b"));
        assert!(!r.complete);
    }

    #[test]
    fn ipv6_hosts_and_absolute_targets() {
        assert_eq!(
            host_without_port(b"[2001:DB8::1]:80").as_deref(),
            Some("2001:db8::1")
        );
        assert_eq!(
            host_without_port(b"2001:db8::1").as_deref(),
            Some("2001:db8::1")
        );
        assert_eq!(host_without_port(b"a:b.com:81"), None);
        let r = parse_request(b"GET http://user@Proxy.Example:3128/x HTTP/1.1\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(r.host.as_deref(), Some("proxy.example"));
        let r = parse_request(b"CONNECT tunnel.example:443 HTTP/1.1\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(r.host.as_deref(), Some("tunnel.example"));
    }

    #[test]
    fn request_lines_one_after_another() {
        let stream = b"POST /a?x=1 HTTP/1.1\r\nHost: h.example\r\nContent-Length: 5\r\n\r\nhelloGET /b HTTP/1.1\r\nHost: h.example\r\n\r\n";
        let first = next_request(stream).unwrap().unwrap();
        assert_eq!(
            (first.method.as_str(), first.target.as_str()),
            ("POST", "/a?x=1")
        );
        assert_eq!(first.host.as_deref(), Some("h.example"));
        let second = next_request(&stream[first.length.unwrap()..])
            .unwrap()
            .unwrap();
        assert_eq!(
            (second.method.as_str(), second.target.as_str()),
            ("GET", "/b")
        );
        // An incomplete head waits; a chunked body hides where the next request starts.
        assert_eq!(next_request(b"GET /c HTTP/1.1\r\nHost: x"), Ok(None));
        let chunked = b"POST /d HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n";
        assert_eq!(next_request(chunked).unwrap().unwrap().length, None);
        // A length that overflows is not trusted.
        let huge = format!("POST /e HTTP/1.1\r\nContent-Length: {}\r\n\r\n", usize::MAX);
        assert_eq!(next_request(huge.as_bytes()).unwrap().unwrap().length, None);
    }

    #[test]
    fn not_http() {
        assert!(parse_request(b"\x16\x03\x01\x02\x00").is_err());
        assert!(parse_request(b"GETTING / HTTP/1.1\r\n").is_err());
        assert_eq!(
            parse_request(b"GET /\r\n\r\n"),
            Err(HttpError::BadRequestLine)
        );
    }
}
