//! One GET over an established rustls connection: enough HTTP/1.1 for
//! `/v1/attestation`, with a cap on what the server may send back.

use std::io::{Read, Write};
use std::net::TcpStream;

use anyhow::{bail, Context};

/// Largest response accepted: evidence with TDX collateral is tens of KiB.
const MAX_RESPONSE: u64 = 4 << 20;

/// Sends `GET path` and returns the status and body.
pub fn get(
    tls: &mut rustls::StreamOwned<rustls::ClientConnection, TcpStream>,
    authority: &str,
    path: &str,
) -> anyhow::Result<(u16, Vec<u8>)> {
    let req = format!("GET {path} HTTP/1.1\r\nHost: {authority}\r\nAccept: application/json\r\nConnection: close\r\n\r\n");
    tls.write_all(req.as_bytes()).context("sending the request")?;
    tls.flush().context("sending the request")?;
    let mut raw = Vec::new();
    match Read::by_ref(tls).take(MAX_RESPONSE + 1).read_to_end(&mut raw) {
        Ok(_) => {}
        // A server may close without close_notify once the body is sent;
        // the length check below still catches a cut-off body.
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !raw.is_empty() => {}
        Err(e) => return Err(e).context("reading the response"),
    }
    if raw.len() as u64 > MAX_RESPONSE {
        bail!("the response is over {MAX_RESPONSE} bytes");
    }
    parse_response(&raw)
}

/// Status and body of a complete HTTP/1.1 response (Content-Length or
/// read-to-close; chunked bodies are refused).
fn parse_response(raw: &[u8]) -> anyhow::Result<(u16, Vec<u8>)> {
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n").context("the response has no complete header")?;
    let head = std::str::from_utf8(&raw[..end]).context("the response header is not UTF-8")?;
    let body = &raw[end + 4..];
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let status: u16 =
        status_line.split(' ').nth(1).and_then(|s| s.parse().ok()).with_context(|| format!("bad status line {status_line:?}"))?;
    let mut length = None;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else { continue };
        let (name, value) = (name.trim(), value.trim());
        if name.eq_ignore_ascii_case("content-length") {
            length = Some(value.parse::<usize>().with_context(|| format!("bad Content-Length {value:?}"))?);
        } else if name.eq_ignore_ascii_case("transfer-encoding") && !value.eq_ignore_ascii_case("identity") {
            bail!("unexpected Transfer-Encoding {value:?}");
        }
    }
    match length {
        Some(n) if body.len() < n => bail!("the response body was cut off ({} of {n} bytes)", body.len()),
        Some(n) => Ok((status, body[..n].to_vec())),
        None => Ok((status, body.to_vec())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_content_length_bodies() {
        let (s, b) = parse_response(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}").unwrap();
        assert_eq!((s, b.as_slice()), (200, &b"{}"[..]));
        let (s, b) = parse_response(b"HTTP/1.1 400 Bad Request\r\n\r\nno").unwrap();
        assert_eq!((s, b.as_slice()), (400, &b"no"[..]));
        assert!(parse_response(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n{}").is_err());
        assert!(parse_response(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n").is_err());
        assert!(parse_response(b"HTTP/1.1 200 OK\r\n").is_err());
    }
}
