//! Reading HTTP/1.1 requests in the small servers tests write by hand (a hostile peer, a
//! server that closes at the wrong moment): a head read a byte at a time, so that nothing
//! after it is taken from the stream, and a body of its `Content-Length`.

use std::io::Read;

/// The next request's head, up to and including its blank line (empty when the stream ended
/// first), read a byte at a time so that the bytes after it stay in the stream.
pub fn read_head(stream: &mut impl Read) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") && stream.read(&mut byte).unwrap_or(0) == 1 {
        head.push(byte[0]);
    }
    String::from_utf8_lossy(&head).into_owned()
}

/// The value of the field `name` in `head` (names compared without case), trimmed.
pub fn field<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|line| {
        let (n, value) = line.split_once(':')?;
        n.trim().eq_ignore_ascii_case(name).then(|| value.trim())
    })
}

/// The next request: its head ([`read_head`]) and as much of its body as its
/// `Content-Length` says (what arrived of it, when the stream ends sooner). Reading the body
/// whole lets a server close without resetting a connection whose bytes it left unread.
pub fn read_request(stream: &mut impl Read) -> (String, Vec<u8>) {
    let head = read_head(stream);
    let length: u64 = field(&head, "content-length").and_then(|v| v.parse().ok()).unwrap_or(0);
    let mut body = Vec::new();
    let _ = stream.take(length).read_to_end(&mut body);
    (head, body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_is_read_to_its_body_and_no_further() {
        let bytes = b"PUT /x HTTP/1.1\r\nHost: a\r\nContent-LENGTH: 3\r\n\r\nabcNEXT";
        let mut stream = &bytes[..];
        let (head, body) = read_request(&mut stream);
        assert!(head.starts_with("PUT /x") && head.ends_with("\r\n\r\n"), "{head:?}");
        assert_eq!((field(&head, "content-length"), field(&head, "host")), (Some("3"), Some("a")));
        assert_eq!((body.as_slice(), stream), (&b"abc"[..], &b"NEXT"[..]));
        assert_eq!(read_head(&mut &b""[..]), "");
    }
}
