//! Content codings a data task asks for and undoes (RFC 9110 §8.4): `gzip`, `deflate`, `br`
//! and `zstd`, in pure Rust (flate2 over miniz_oxide, brotli-decompressor, ruzstd).
//!
//! A data task holds its body in memory under a limit, and so does the decoded body: a small
//! answer that inflates beyond the limit (a "zip bomb") fails at the limit instead of filling
//! memory. Downloads and ranged requests never ask for a coding: a range of an encoded
//! representation is not a range of the file.

use std::io::Read;

use bytes::Bytes;

/// The `Accept-Encoding` a data task sends.
pub const ACCEPT: &str = "gzip, deflate, br, zstd";

/// Why a body could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// A coding that was not asked for.
    #[error("the server used the content coding {0:?}, which was not asked for")]
    Unknown(String),
    /// The body is not what its coding says.
    #[error("the body is not valid {coding}: {why}")]
    Corrupt {
        /// The coding.
        coding: String,
        /// What the decoder said.
        why: String,
    },
    /// Decoded, it would be longer than the limit.
    #[error("decoded, the body is longer than {limit} bytes")]
    TooLong {
        /// The limit, in bytes.
        limit: usize,
    },
}

/// Undoes `content_encoding` (a `Content-Encoding` value: codings in the order they were
/// applied) on `body`, yielding at most `limit` bytes.
pub fn decode(content_encoding: &str, body: Bytes, limit: usize) -> Result<Bytes, DecodeError> {
    let codings: Vec<String> = content_encoding
        .split(',')
        .map(|c| c.trim().to_ascii_lowercase())
        .filter(|c| !c.is_empty() && c != "identity")
        .collect();
    let mut body = body;
    // The last coding applied is the first undone.
    for coding in codings.iter().rev() {
        body = undo(coding, &body, limit)?;
    }
    Ok(body)
}

fn undo(coding: &str, body: &[u8], limit: usize) -> Result<Bytes, DecodeError> {
    let failed = |e: Failed| match e {
        Failed::TooLong => DecodeError::TooLong { limit },
        Failed::Io(e) => DecodeError::Corrupt { coding: coding.to_owned(), why: e.to_string() },
    };
    match coding {
        // x-gzip is gzip (RFC 9110 §8.4.1.3).
        "gzip" | "x-gzip" => bounded(flate2::read::MultiGzDecoder::new(body), limit),
        // "deflate" is the zlib format (RFC 9110 §8.4.1.2); some servers send raw deflate
        // instead, which browsers accept, and so does this.
        "deflate" => match bounded(flate2::read::ZlibDecoder::new(body), limit) {
            Err(Failed::Io(_)) => bounded(flate2::read::DeflateDecoder::new(body), limit),
            other => other,
        },
        "br" => bounded(brotli_decompressor::Decompressor::new(body, 64 << 10), limit),
        "zstd" => match ruzstd::decoding::StreamingDecoder::new(body) {
            Ok(decoder) => bounded(decoder, limit),
            Err(e) => Err(Failed::Io(std::io::Error::other(e.to_string()))),
        },
        other => return Err(DecodeError::Unknown(other.to_owned())),
    }
    .map_err(failed)
}

enum Failed {
    TooLong,
    Io(std::io::Error),
}

/// Reads `reader` to its end, failing past `limit` bytes.
fn bounded(reader: impl Read, limit: usize) -> Result<Bytes, Failed> {
    let mut out = Vec::new();
    let cap = u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1);
    reader.take(cap).read_to_end(&mut out).map_err(Failed::Io)?;
    if out.len() > limit {
        return Err(Failed::TooLong);
    }
    Ok(Bytes::from(out))
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    const PLAIN: &[u8] = b"hello, decoded world! hello, decoded world! hello, decoded world!\n";
    /// `PLAIN` as the `brotli` tool (Debian's brotli 1.0.9) encodes it.
    const BR: &[u8] = &[
        0xa1, 0x08, 0x02, 0x00, 0x66, 0xa4, 0x76, 0xba, 0xbb, 0x2f, 0x55, 0x8f, 0x91, 0x95, 0xa1,
        0x69, 0x05, 0x90, 0x90, 0x37, 0xb0, 0x01, 0x47, 0x1a, 0x90, 0x67, 0xe9, 0xee, 0x97, 0xa6,
        0xe5, 0x66, 0xc5, 0x78, 0x0a, 0xa7, 0xdc, 0x02,
    ];
    /// `PLAIN` as the `zstd` tool (Debian's zstd 1.5.4) encodes it.
    const ZSTD: &[u8] = &[
        0x28, 0xb5, 0x2f, 0xfd, 0x24, 0x42, 0xf5, 0x00, 0x00, 0xb8, 0x68, 0x65, 0x6c, 0x6c, 0x6f,
        0x2c, 0x20, 0x64, 0x65, 0x63, 0x6f, 0x64, 0x65, 0x64, 0x20, 0x77, 0x6f, 0x72, 0x6c, 0x64,
        0x21, 0x20, 0x0a, 0x01, 0x00, 0x48, 0x73, 0x36, 0x01, 0x6c, 0x9b, 0x54, 0xb0,
    ];

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    fn zlib(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    fn raw_deflate(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    fn decoded(coding: &str, body: Vec<u8>) -> Result<Bytes, DecodeError> {
        decode(coding, Bytes::from(body), 1 << 20)
    }

    #[test]
    fn every_coding_asked_for_is_undone() {
        for (coding, body) in [
            ("gzip", gzip(PLAIN)),
            ("x-gzip", gzip(PLAIN)),
            ("deflate", zlib(PLAIN)),
            ("deflate", raw_deflate(PLAIN)),
            ("br", BR.to_vec()),
            ("zstd", ZSTD.to_vec()),
            ("identity", PLAIN.to_vec()),
            ("", PLAIN.to_vec()),
        ] {
            assert_eq!(decoded(coding, body).as_deref(), Ok(PLAIN), "{coding}");
        }
        // Two codings, applied in order, undone in reverse; case and spaces do not matter.
        let twice = gzip(&zlib(PLAIN));
        assert_eq!(decoded("Deflate , GZIP", twice).as_deref(), Ok(PLAIN));
        // Concatenated gzip members are one body (RFC 1952 §2.2).
        let members = [gzip(b"hello, "), gzip(b"world")].concat();
        assert_eq!(decoded("gzip", members).as_deref(), Ok(&b"hello, world"[..]));
    }

    #[test]
    fn bad_bodies_and_bombs_fail_with_their_reason() {
        assert_eq!(
            decoded("compress", PLAIN.to_vec()),
            Err(DecodeError::Unknown("compress".into()))
        );
        for coding in ["gzip", "deflate", "br", "zstd"] {
            let e = decoded(coding, b"not encoded at all".to_vec()).unwrap_err();
            assert!(matches!(&e, DecodeError::Corrupt { coding: c, .. } if c == coding), "{e:?}");
        }
        let mut cut = gzip(PLAIN);
        cut.truncate(cut.len() - 6);
        assert!(matches!(decoded("gzip", cut), Err(DecodeError::Corrupt { .. })));
        // 64 MiB of zeros is 64 KiB gzipped: held to the limit, not inflated into memory.
        let bomb = gzip(&vec![0u8; 64 << 20]);
        assert!(bomb.len() < 128 << 10, "{}", bomb.len());
        assert_eq!(
            decode("gzip", Bytes::from(bomb), 1 << 20),
            Err(DecodeError::TooLong { limit: 1 << 20 })
        );
    }
}
