//! The little of D-Bus the host needs to hand split DNS to systemd-resolved: one blocking
//! connection to the system bus, method calls, and their replies. The wire format is the
//! D-Bus Specification's (version 0.41): "Message Protocol" for the header, "Type System"
//! for the marshalling rules (each value aligned to its type's alignment from the start of the
//! message), and "Authentication Protocol" for the `EXTERNAL` mechanism, which proves who we
//! are by the socket's credentials.
//!
//! Only what the calls use is marshalled (bytes, booleans, 16- and 32-bit integers, strings,
//! object paths, signatures, arrays, structs, variants); anything else in a reply is an error,
//! never a panic, and a reply larger than [`MAX_MESSAGE`] is refused.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

/// The system bus when `DBUS_SYSTEM_BUS_ADDRESS` does not name another (the specification's
/// well-known address).
const SYSTEM_BUS: &str = "unix:path=/var/run/dbus/system_bus_socket";
/// How long one call may take before it is given up.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// The largest reply read. Ours are a few hundred bytes; the specification allows 128 MiB.
const MAX_MESSAGE: usize = 1 << 20;
/// How deep containers may nest in what we read (the specification allows 64 in all).
const MAX_DEPTH: usize = 32;

/// A D-Bus value, with enough type to marshal it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Value {
    Byte(u8),
    Bool(bool),
    U16(u16),
    I32(i32),
    U32(u32),
    Str(String),
    ObjectPath(String),
    Signature(String),
    /// An array of values of `element`'s signature (which an empty array still needs).
    Array {
        element: String,
        items: Vec<Value>,
    },
    Struct(Vec<Value>),
    Variant(Box<Value>),
}

impl Value {
    /// The value's signature.
    pub(crate) fn signature(&self) -> String {
        match self {
            Self::Byte(_) => "y".into(),
            Self::Bool(_) => "b".into(),
            Self::U16(_) => "q".into(),
            Self::I32(_) => "i".into(),
            Self::U32(_) => "u".into(),
            Self::Str(_) => "s".into(),
            Self::ObjectPath(_) => "o".into(),
            Self::Signature(_) => "g".into(),
            Self::Array { element, .. } => format!("a{element}"),
            Self::Struct(fields) => {
                format!("({})", fields.iter().map(Self::signature).collect::<String>())
            }
            Self::Variant(_) => "v".into(),
        }
    }

    /// The string inside a `Str`, `ObjectPath` or `Signature`.
    pub(crate) fn as_str(&self) -> Option<&str> {
        match self {
            Self::Str(s) | Self::ObjectPath(s) | Self::Signature(s) => Some(s),
            _ => None,
        }
    }
}

/// The alignment of the type a signature starts with.
fn alignment(code: u8) -> usize {
    match code {
        b'q' | b'n' => 2,
        b'b' | b'i' | b'u' | b's' | b'o' | b'a' => 4,
        b'(' | b'{' | b'x' | b't' | b'd' => 8,
        _ => 1,
    }
}

/// Marshals values into a message, little-endian.
#[derive(Default)]
struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    fn align(&mut self, to: usize) {
        while !self.buf.len().is_multiple_of(to) {
            self.buf.push(0);
        }
    }

    fn u32(&mut self, v: u32) {
        self.align(4);
        self.buf.extend_from_slice(&v.to_le_bytes());
    }

    fn string(&mut self, s: &str) {
        self.u32(u32::try_from(s.len()).unwrap_or(u32::MAX));
        self.buf.extend_from_slice(s.as_bytes());
        self.buf.push(0);
    }

    fn signature(&mut self, s: &str) {
        self.buf.push(u8::try_from(s.len()).unwrap_or(u8::MAX));
        self.buf.extend_from_slice(s.as_bytes());
        self.buf.push(0);
    }

    fn value(&mut self, v: &Value) {
        match v {
            Value::Byte(b) => self.buf.push(*b),
            Value::Bool(b) => self.u32(u32::from(*b)),
            Value::U16(n) => {
                self.align(2);
                self.buf.extend_from_slice(&n.to_le_bytes());
            }
            Value::I32(n) => {
                self.align(4);
                self.buf.extend_from_slice(&n.to_le_bytes());
            }
            Value::U32(n) => self.u32(*n),
            Value::Str(s) | Value::ObjectPath(s) => self.string(s),
            Value::Signature(s) => self.signature(s),
            Value::Array { element, items } => {
                self.u32(0);
                let length_at = self.buf.len() - 4;
                // The length counts the elements, not the padding before the first one.
                self.align(alignment(element.bytes().next().unwrap_or(b'y')));
                let start = self.buf.len();
                for item in items {
                    self.value(item);
                }
                let length = u32::try_from(self.buf.len() - start).unwrap_or(u32::MAX);
                self.buf[length_at..length_at + 4].copy_from_slice(&length.to_le_bytes());
            }
            Value::Struct(fields) => {
                self.align(8);
                for f in fields {
                    self.value(f);
                }
            }
            Value::Variant(inner) => {
                self.signature(&inner.signature());
                self.value(inner);
            }
        }
    }
}

/// What went wrong reading a message.
fn malformed(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("a malformed D-Bus message: {what}"))
}

/// Unmarshals values from a message (or part of one whose alignment starts at 0).
struct Reader<'a> {
    buf: &'a [u8],
    at: usize,
    big_endian: bool,
}

impl Reader<'_> {
    fn align(&mut self, to: usize) -> io::Result<()> {
        let next = self.at.next_multiple_of(to);
        if next > self.buf.len() {
            return Err(malformed("padding runs past the end"));
        }
        self.at = next;
        Ok(())
    }

    fn take(&mut self, n: usize) -> io::Result<&[u8]> {
        let end = self.at.checked_add(n).filter(|e| *e <= self.buf.len());
        let end = end.ok_or_else(|| malformed("a value runs past the end"))?;
        let bytes = &self.buf[self.at..end];
        self.at = end;
        Ok(bytes)
    }

    fn u32(&mut self) -> io::Result<u32> {
        self.align(4)?;
        let b: [u8; 4] = self.take(4)?.try_into().map_err(|_| malformed("a short integer"))?;
        Ok(if self.big_endian { u32::from_be_bytes(b) } else { u32::from_le_bytes(b) })
    }

    fn text(&mut self, length: usize) -> io::Result<String> {
        let bytes = self.take(length)?.to_vec();
        if self.take(1)? != [0] {
            return Err(malformed("a string without its terminating nul"));
        }
        String::from_utf8(bytes).map_err(|_| malformed("a string that is not UTF-8"))
    }

    fn signature(&mut self) -> io::Result<String> {
        let length = usize::from(self.take(1)?[0]);
        self.text(length)
    }

    /// Reads one value of the single complete type at the start of `sig`; returns it and the
    /// rest of `sig`.
    fn value<'s>(&mut self, sig: &'s [u8], depth: usize) -> io::Result<(Value, &'s [u8])> {
        if depth > MAX_DEPTH {
            return Err(malformed("containers nested too deep"));
        }
        let (&code, rest) = sig.split_first().ok_or_else(|| malformed("a missing type"))?;
        let value = match code {
            b'y' => Value::Byte(self.take(1)?[0]),
            b'b' => match self.u32()? {
                0 => Value::Bool(false),
                1 => Value::Bool(true),
                _ => return Err(malformed("a boolean that is neither 0 nor 1")),
            },
            b'q' => {
                self.align(2)?;
                let b: [u8; 2] = self.take(2)?.try_into().map_err(|_| malformed("short"))?;
                Value::U16(if self.big_endian {
                    u16::from_be_bytes(b)
                } else {
                    u16::from_le_bytes(b)
                })
            }
            b'i' => Value::I32(self.u32()?.cast_signed()),
            b'u' => Value::U32(self.u32()?),
            b's' | b'o' => {
                let length = usize::try_from(self.u32()?).map_err(|_| malformed("length"))?;
                let text = self.text(length)?;
                if code == b's' { Value::Str(text) } else { Value::ObjectPath(text) }
            }
            b'g' => Value::Signature(self.signature()?),
            b'v' => {
                let inner = self.signature()?;
                let (value, left) = self.value(inner.as_bytes(), depth + 1)?;
                if !left.is_empty() {
                    return Err(malformed("a variant holding more than one value"));
                }
                Value::Variant(Box::new(value))
            }
            b'a' => {
                let length = usize::try_from(self.u32()?).map_err(|_| malformed("length"))?;
                let element_sig = single_type(rest)?;
                self.align(alignment(element_sig.first().copied().unwrap_or(b'y')))?;
                let end = self.at.checked_add(length).filter(|e| *e <= self.buf.len());
                let end = end.ok_or_else(|| malformed("an array runs past the end"))?;
                let mut items = Vec::new();
                while self.at < end {
                    items.push(self.value(element_sig, depth + 1)?.0);
                }
                if self.at != end {
                    return Err(malformed("an array's elements overrun its length"));
                }
                let element = String::from_utf8_lossy(element_sig).into_owned();
                return Ok((Value::Array { element, items }, &rest[element_sig.len()..]));
            }
            b'(' => {
                self.align(8)?;
                let mut fields = Vec::new();
                let mut inner = rest;
                loop {
                    match inner.first() {
                        Some(b')') => break,
                        None => return Err(malformed("an unclosed struct signature")),
                        Some(_) => {
                            let (field, left) = self.value(inner, depth + 1)?;
                            fields.push(field);
                            inner = left;
                        }
                    }
                }
                return Ok((Value::Struct(fields), &inner[1..]));
            }
            other => {
                return Err(malformed(&format!("type '{}' is not read here", char::from(other))));
            }
        };
        Ok((value, rest))
    }
}

/// The single complete type at the start of `sig`.
fn single_type(sig: &[u8]) -> io::Result<&[u8]> {
    let mut depth = 0usize;
    for (i, &c) in sig.iter().enumerate() {
        match c {
            b'a' => continue,
            b'(' | b'{' => depth += 1,
            b')' | b'}' => {
                depth = depth.checked_sub(1).ok_or_else(|| malformed("an unbalanced signature"))?;
            }
            _ => {}
        }
        if depth == 0 {
            return Ok(&sig[..=i]);
        }
    }
    Err(malformed("an incomplete signature"))
}

/// Reads every value a body of signature `sig` holds.
fn read_body(body: &[u8], big_endian: bool, sig: &str) -> io::Result<Vec<Value>> {
    let mut reader = Reader { buf: body, at: 0, big_endian };
    let mut rest = sig.as_bytes();
    let mut out = Vec::new();
    while !rest.is_empty() {
        let (value, left) = reader.value(rest, 0)?;
        out.push(value);
        rest = left;
    }
    Ok(out)
}

/// A method call that failed: the error's name and message as the service sent them, or
/// what went wrong on the way.
#[derive(Debug)]
pub(crate) enum CallError {
    /// The service answered with an error.
    Remote { name: String, message: String },
    /// The bus could not be reached, or the conversation failed.
    Io(io::Error),
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Remote { name, message } => write!(f, "{message} ({name})"),
            Self::Io(e) => write!(f, "{e}"),
        }
    }
}

impl From<io::Error> for CallError {
    fn from(e: io::Error) -> Self {
        Self::Io(e)
    }
}

/// One call to make: who, what, and the arguments.
pub(crate) struct Call<'a> {
    pub(crate) destination: &'a str,
    pub(crate) path: &'a str,
    pub(crate) interface: &'a str,
    pub(crate) member: &'a str,
    pub(crate) args: Vec<Value>,
}

/// A connection to the system bus, past authentication and `Hello`.
pub(crate) struct Bus {
    reader: BufReader<UnixStream>,
    serial: u32,
}

/// Where a bus address's first `unix:` entry points: a path, or an abstract name.
fn unix_address(address: &str) -> Option<(bool, String)> {
    address.split(';').find_map(|entry| {
        let params = entry.strip_prefix("unix:")?;
        params.split(',').find_map(|kv| match kv.split_once('=')? {
            ("path", p) => Some((false, unescape(p))),
            ("abstract", p) => Some((true, unescape(p))),
            _ => None,
        })
    })
}

/// A bus address value with its `%XX` escapes undone.
fn unescape(value: &str) -> String {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok());
        match (bytes[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl Bus {
    /// Connects to the system bus (`DBUS_SYSTEM_BUS_ADDRESS`, or the well-known socket).
    /// Blocking.
    pub(crate) fn system() -> io::Result<Self> {
        let address =
            std::env::var("DBUS_SYSTEM_BUS_ADDRESS").unwrap_or_else(|_| SYSTEM_BUS.to_owned());
        Self::connect(&address)
    }

    /// Connects to the bus at `address`, authenticates and says `Hello`. Blocking.
    fn connect(address: &str) -> io::Result<Self> {
        let (is_abstract, path) = unix_address(address).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("the system bus address {address:?} names no unix socket"),
            )
        })?;
        let stream = if is_abstract {
            use std::os::linux::net::SocketAddrExt;
            let addr = std::os::unix::net::SocketAddr::from_abstract_name(path.as_bytes())?;
            UnixStream::connect_addr(&addr)
        } else {
            UnixStream::connect(&path)
        }
        .map_err(|e| io::Error::new(e.kind(), format!("the system bus at {path}: {e}")))?;
        stream.set_read_timeout(Some(CALL_TIMEOUT))?;
        stream.set_write_timeout(Some(CALL_TIMEOUT))?;
        let mut bus = Self { reader: BufReader::new(stream), serial: 0 };
        bus.authenticate()
            .map_err(|e| io::Error::new(e.kind(), format!("the system bus at {path}: {e}")))?;
        bus.call(&Call {
            destination: "org.freedesktop.DBus",
            path: "/org/freedesktop/DBus",
            interface: "org.freedesktop.DBus",
            member: "Hello",
            args: Vec::new(),
        })
        .map_err(|e| io::Error::other(format!("the system bus did not take Hello: {e}")))?;
        Ok(bus)
    }

    /// The `EXTERNAL` mechanism: our uid, in hex of its decimal digits.
    fn authenticate(&mut self) -> io::Result<()> {
        // SAFETY: getuid(2) cannot fail and touches no memory.
        let uid = unsafe { libc::getuid() }.to_string();
        let hex: String = uid.bytes().map(|b| format!("{b:02x}")).collect();
        let stream = self.reader.get_mut();
        stream.write_all(format!("\0AUTH EXTERNAL {hex}\r\n").as_bytes())?;
        let mut line = String::new();
        (&mut self.reader).take(4096).read_line(&mut line)?;
        if !line.starts_with("OK ") {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!("the system bus refused us: {}", line.trim_end()),
            ));
        }
        self.reader.get_mut().write_all(b"BEGIN\r\n")
    }

    /// Calls a method and returns its reply's values.
    pub(crate) fn call(&mut self, call: &Call<'_>) -> Result<Vec<Value>, CallError> {
        self.serial = self.serial.wrapping_add(1).max(1);
        let serial = self.serial;
        let message = method_call(serial, call);
        self.reader.get_mut().write_all(&message)?;
        loop {
            let reply = self.read_message()?;
            if reply.reply_serial != Some(serial) {
                continue; // a signal, such as NameAcquired after Hello
            }
            let body = read_body(&reply.body, reply.big_endian, &reply.signature)?;
            return match reply.kind {
                2 => Ok(body),
                3 => Err(CallError::Remote {
                    name: reply.error_name.unwrap_or_default(),
                    message: body.first().and_then(Value::as_str).unwrap_or_default().to_owned(),
                }),
                k => Err(CallError::Io(malformed(&format!("a reply of type {k}")))),
            };
        }
    }

    fn read_message(&mut self) -> io::Result<Message> {
        let mut fixed = [0u8; 16];
        self.reader.read_exact(&mut fixed)?;
        let big_endian = match fixed[0] {
            b'l' => false,
            b'B' => true,
            _ => return Err(malformed("an unknown byte order")),
        };
        let word = |at: usize| {
            let b = [fixed[at], fixed[at + 1], fixed[at + 2], fixed[at + 3]];
            usize::try_from(if big_endian { u32::from_be_bytes(b) } else { u32::from_le_bytes(b) })
                .unwrap_or(usize::MAX)
        };
        let (body_length, fields_length) = (word(4), word(12));
        let header = 16usize.saturating_add(fields_length).next_multiple_of(8);
        let total = header.saturating_add(body_length);
        if total > MAX_MESSAGE {
            return Err(malformed(&format!("{total} bytes, more than we read")));
        }
        let mut whole = fixed.to_vec();
        whole.resize(total, 0);
        self.reader.read_exact(&mut whole[16..])?;
        parse_message(&whole, big_endian, header)
    }
}

/// A message read: its type, and the header fields a reply needs.
struct Message {
    kind: u8,
    big_endian: bool,
    reply_serial: Option<u32>,
    error_name: Option<String>,
    signature: String,
    body: Vec<u8>,
}

fn parse_message(whole: &[u8], big_endian: bool, header: usize) -> io::Result<Message> {
    let mut reader = Reader { buf: &whole[..header], at: 12, big_endian };
    let (fields, _) = reader.value(b"a(yv)", 0)?;
    let mut message = Message {
        kind: whole[1],
        big_endian,
        reply_serial: None,
        error_name: None,
        signature: String::new(),
        body: whole[header..].to_vec(),
    };
    let Value::Array { items, .. } = fields else { return Err(malformed("header fields")) };
    for field in items {
        let Value::Struct(pair) = field else { continue };
        let (Some(Value::Byte(code)), Some(Value::Variant(v))) = (pair.first(), pair.get(1)) else {
            continue;
        };
        match (code, v.as_ref()) {
            (4, Value::Str(name)) => message.error_name = Some(name.clone()),
            (5, Value::U32(serial)) => message.reply_serial = Some(*serial),
            (8, Value::Signature(sig)) => message.signature = sig.clone(),
            _ => {}
        }
    }
    Ok(message)
}

/// A method call message, little-endian.
fn method_call(serial: u32, call: &Call<'_>) -> Vec<u8> {
    let mut body = Writer::default();
    for arg in &call.args {
        body.value(arg);
    }
    let signature: String = call.args.iter().map(Value::signature).collect();
    let field =
        |code: u8, v: Value| Value::Struct(vec![Value::Byte(code), Value::Variant(v.into())]);
    let mut fields = vec![
        field(1, Value::ObjectPath(call.path.into())),
        field(2, Value::Str(call.interface.into())),
        field(3, Value::Str(call.member.into())),
        field(6, Value::Str(call.destination.into())),
    ];
    if !signature.is_empty() {
        fields.push(field(8, Value::Signature(signature)));
    }
    let mut m = Writer::default();
    m.buf.extend_from_slice(&[b'l', 1, 0, 1]);
    m.u32(u32::try_from(body.buf.len()).unwrap_or(u32::MAX));
    m.u32(serial);
    m.value(&Value::Array { element: "(yv)".into(), items: fields });
    m.align(8);
    m.buf.extend_from_slice(&body.buf);
    m.buf
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(values: &[Value]) -> Vec<Value> {
        let mut w = Writer::default();
        for v in values {
            w.value(v);
        }
        let sig: String = values.iter().map(Value::signature).collect();
        read_body(&w.buf, false, &sig).expect("what we wrote reads back")
    }

    #[test]
    fn values_marshal_with_the_specifications_alignment_and_read_back() {
        // SetLinkDNS's arguments: an interface index and a(iay).
        let servers = Value::Array {
            element: "(iay)".into(),
            items: vec![Value::Struct(vec![
                Value::I32(2),
                Value::Array { element: "y".into(), items: vec![Value::Byte(10); 4] },
            ])],
        };
        let mut w = Writer::default();
        w.value(&Value::I32(7));
        w.value(&servers);
        // i32 7; the array's length (12: i32 2, ay's length 4, its four bytes), which ends at
        // offset 8 where the struct starts, so no padding; the struct.
        let want: Vec<u8> = [
            &7i32.to_le_bytes()[..],
            &12u32.to_le_bytes(),
            &2i32.to_le_bytes(),
            &4u32.to_le_bytes(),
            &[10, 10, 10, 10],
        ]
        .concat();
        assert_eq!(w.buf, want);

        let values = vec![
            Value::I32(-3),
            servers,
            Value::Array { element: "(sb)".into(), items: Vec::new() },
            Value::Array {
                element: "(sb)".into(),
                items: vec![
                    Value::Struct(vec![Value::Str("corp.example".into()), Value::Bool(true)]),
                    Value::Struct(vec![Value::Str("~.".into()), Value::Bool(false)]),
                ],
            },
            Value::Byte(1),
            Value::U16(53),
            Value::Variant(Box::new(Value::ObjectPath("/org/x".into()))),
            Value::Signature("a(iayqs)".into()),
            Value::U32(u32::MAX),
        ];
        assert_eq!(round_trip(&values), values);
    }

    #[test]
    fn a_method_call_has_the_header_the_bus_expects() {
        let m = method_call(
            9,
            &Call {
                destination: "org.freedesktop.resolve1",
                path: "/org/freedesktop/resolve1",
                interface: "org.freedesktop.resolve1.Manager",
                member: "RevertLink",
                args: vec![Value::I32(4)],
            },
        );
        assert_eq!(&m[..4], &[b'l', 1, 0, 1]);
        assert_eq!(u32::from_le_bytes(m[4..8].try_into().unwrap()), 4, "body length");
        assert_eq!(u32::from_le_bytes(m[8..12].try_into().unwrap()), 9, "serial");
        let fields_length = u32::from_le_bytes(m[12..16].try_into().unwrap()) as usize;
        let header = (16 + fields_length).next_multiple_of(8);
        assert_eq!(m.len(), header + 4);
        let parsed = parse_message(&m, false, header).expect("our own message parses");
        assert_eq!(parsed.signature, "i");
        assert_eq!(read_body(&parsed.body, false, "i").unwrap(), vec![Value::I32(4)]);
    }

    #[test]
    fn hostile_bytes_are_errors_not_panics() {
        let cases: &[(&[u8], &str)] = &[
            (&[], "i"),
            (&[1, 0, 0], "u"),
            (&[5, 0, 0, 0, b'a', b'b'], "s"),
            (&[2, 0, 0, 0, 0xff, 0xfe, 0], "s"),
            (&[1, 0, 0, 0, b'x', 1], "s"),
            (&[2, 0, 0, 0], "b"),
            (&[0xff, 0xff, 0xff, 0xff], "ay"),
            (&[3, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0], "a(i)"),
            (&[1, b'z', 0], "v"),
            (&[4, b'(', b'(', b'(', b'(', 0], "v"),
            (&[0, 0, 0, 0], "(i"),
        ];
        for (bytes, sig) in cases {
            assert!(read_body(bytes, false, sig).is_err(), "{bytes:?} as {sig} should not read");
        }
        // A variant nesting variants past the limit.
        let mut deep = Value::U32(1);
        for _ in 0..40 {
            deep = Value::Variant(Box::new(deep));
        }
        let mut w = Writer::default();
        w.value(&deep);
        assert!(read_body(&w.buf, false, "v").is_err());
    }

    #[test]
    fn bus_addresses_name_their_socket() {
        assert_eq!(
            unix_address("unix:path=/run/dbus/system_bus_socket"),
            Some((false, "/run/dbus/system_bus_socket".into()))
        );
        assert_eq!(
            unix_address("tcp:host=x;unix:abstract=/tmp/dbus-%41b,guid=1"),
            Some((true, "/tmp/dbus-Ab".into()))
        );
        assert_eq!(unix_address("tcp:host=localhost,port=1"), None);
        assert_eq!(unescape("%zz%4"), "%zz%4");
    }

    /// A bus of a few lines that answers a connection with `reply` after reading what the
    /// client sends first, then reads on until the client gives up (`hold`) or closes at once;
    /// returns its address.
    fn hostile(tag: &str, reply: &'static [u8], hold: bool) -> String {
        use std::io::Read as _;
        let path = std::env::temp_dir().join(format!("nw-dbus-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        std::thread::spawn(move || {
            if let Ok((mut c, _)) = listener.accept() {
                let mut first = [0u8; 64];
                let _ = c.read(&mut first);
                let _ = c.write_all(reply);
                if hold {
                    let _ = c.read_to_end(&mut Vec::new());
                }
            }
        });
        format!("unix:path={}", path.display())
    }

    #[test]
    fn a_hostile_bus_is_an_error_that_says_what_it_did() {
        let refused =
            Bus::connect(&hostile("refuse", b"REJECTED EXTERNAL\r\n", true)).err().unwrap();
        assert_eq!(refused.kind(), io::ErrorKind::PermissionDenied);
        assert!(refused.to_string().contains("refused us: REJECTED EXTERNAL"), "{refused}");
        // A header claiming a 100 MB body: refused before anything that size is allocated.
        let huge: &[u8] =
            b"OK 0123\r\nl\x02\x00\x01\x00\x00\x40\x06\x01\x00\x00\x00\x00\x00\x00\x00";
        let e = Bus::connect(&hostile("huge", huge, true)).err().unwrap();
        assert!(e.to_string().contains("more than we read"), "{e}");
        let e =
            Bus::connect(&hostile("order", b"OK 0123\r\nX0000000000000000", true)).err().unwrap();
        assert!(e.to_string().contains("an unknown byte order"), "{e}");
        // One that hangs up after saying OK: whether BEGIN or Hello meets the closed socket,
        // the error says it was the system bus.
        let e = Bus::connect(&hostile("closed", b"OK 0123\r\n", false)).err().unwrap();
        assert!(e.to_string().contains("the system bus"), "{e}");
        let e = Bus::connect("unix:path=/nonexistent/bus").err().unwrap();
        assert!(e.to_string().contains("the system bus at /nonexistent/bus"), "{e}");
    }
}
