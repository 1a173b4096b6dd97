//! Where a download's bytes go: chunks gathered into reused, page-aligned buffers, and written
//! to the `.part` file around the page cache (`O_DIRECT`) when the file is large.
//!
//! Writing a large download through the page cache costs a copy of every byte into freshly
//! allocated cache pages; measured on the development VM that copy was most of `nw get`'s CPU
//! time (`copy_folio_from_iter_atomic`, about half of all samples) and varied between 0.3 and
//! 1.7 CPU-seconds per GB from run to run, while `dd oflag=direct` moved the same gigabyte for
//! 0.13–0.17 CPU-seconds. So a large file is written with `O_DIRECT` from buffers that sit in
//! memory at the same offset modulo [`ALIGN`] as their bytes do in the file: everything but a
//! chunk's unaligned head and tail (at most a block each, written through the page cache) goes
//! straight to the device. The checkpoint's `fdatasync` still makes it durable (it flushes the
//! device's cache), so the checkpoint rule is unchanged.
//!
//! A file system that refuses `O_DIRECT` (at open or at the first write) gets ordinary writes.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::{FileExt as _, OpenOptionsExt as _};
use std::sync::{Arc, Mutex};

use bytes::Bytes;

/// The alignment of direct writes: offset, length and memory (the page size, which covers the
/// 512- and 4096-byte logical blocks of ordinary devices).
pub(crate) const ALIGN: usize = 4096;
/// Buffers kept for reuse; more in flight are allocated and freed.
const KEEP: usize = 16;

/// Reusable buffers of one chunk plus alignment slack.
#[derive(Clone)]
pub(crate) struct Pool {
    chunk: usize,
    free: Arc<Mutex<Vec<Vec<u8>>>>,
}

impl Pool {
    pub(crate) fn new(chunk: usize) -> Self {
        Self { chunk, free: Arc::default() }
    }

    fn get(&self) -> Vec<u8> {
        let kept = self.free.lock().unwrap_or_else(std::sync::PoisonError::into_inner).pop();
        // Slack for aligning the start, and for a first chunk that starts mid-block.
        kept.unwrap_or_else(|| vec![0; self.chunk + 2 * ALIGN])
    }

    fn put(&self, mem: Vec<u8>) {
        let mut free = self.free.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if free.len() < KEEP {
            free.push(mem);
        }
    }
}

/// A filled part of a pooled buffer; it goes back to the pool when the last [`Bytes`] viewing
/// it is dropped.
struct Filled {
    mem: Vec<u8>,
    start: usize,
    end: usize,
    pool: Pool,
}

impl AsRef<[u8]> for Filled {
    fn as_ref(&self) -> &[u8] {
        &self.mem[self.start..self.end]
    }
}

impl Drop for Filled {
    fn drop(&mut self) {
        self.pool.put(std::mem::take(&mut self.mem));
    }
}

/// Gathers one stream's bytes, which fill the file from `pos` on, into chunks that end where
/// the file's chunk-sized blocks end (so all but a stream's first and last chunk are whole and
/// aligned) and that sit in memory at the file offset's alignment.
pub(crate) struct Gather {
    pool: Pool,
    /// The file offset of the next byte.
    pos: u64,
    /// The buffer being filled, where its first byte is, and how far it is filled.
    open: Option<(Vec<u8>, usize, usize)>,
}

impl Gather {
    pub(crate) fn new(pool: Pool, pos: u64) -> Self {
        Self { pool, pos, open: None }
    }

    /// Where the next bytes go: the open buffer's room up to the end of the file's chunk
    /// (never empty). The body reader reads into it; [`filled`](Self::filled) says how much.
    pub(crate) fn room(&mut self) -> &mut [u8] {
        let chunk = self.pool.chunk as u64;
        let (mem, _, filled) = self.open.get_or_insert_with(|| {
            let mem = self.pool.get();
            // The first byte sits at the file offset's place within an aligned block.
            let start = mem.as_ptr().align_offset(ALIGN) + offset_in(self.pos, ALIGN);
            (mem, start, start)
        });
        let room = usize::try_from(chunk - self.pos % chunk).unwrap_or(usize::MAX);
        &mut mem[*filled..*filled + room]
    }

    /// The first `n` bytes of [`room`](Self::room) now hold data; returns the chunk when that
    /// completes it.
    pub(crate) fn filled(&mut self, n: usize) -> Option<Bytes> {
        let (_, _, filled) = self.open.as_mut()?;
        *filled += n;
        self.pos += n as u64;
        if self.pos.is_multiple_of(self.pool.chunk as u64) { self.close() } else { None }
    }

    /// What is gathered and not yet returned, as a chunk.
    pub(crate) fn close(&mut self) -> Option<Bytes> {
        let (mem, start, filled) = self.open.take()?;
        if filled == start {
            self.pool.put(mem);
            return None;
        }
        Some(Bytes::from_owner(Filled { mem, start, end: filled, pool: self.pool.clone() }))
    }
}

/// `pos % align` as an index.
fn offset_in(pos: u64, align: usize) -> usize {
    // The remainder is below `align`, so it fits.
    usize::try_from(pos % align as u64).unwrap_or(0)
}

/// The `.part` file, with a second descriptor opened `O_DIRECT` when writing around the page
/// cache.
pub(crate) struct Sink {
    file: File,
    direct: Option<File>,
}

impl Sink {
    /// Writes through `file`, and around the page cache when `direct` and the file system
    /// allows it.
    pub(crate) fn new(file: File, direct: bool) -> Self {
        use std::os::fd::AsRawFd as _;
        // The same open file again, through its descriptor: never the name, which someone may
        // have replaced (with a link) since it was opened.
        let own = format!("/proc/self/fd/{}", file.as_raw_fd());
        let direct = direct
            .then(|| OpenOptions::new().write(true).custom_flags(libc::O_DIRECT).open(&own).ok())
            .flatten();
        Self { file, direct }
    }

    /// Whether writes go around the page cache.
    #[cfg(test)]
    pub(crate) fn is_direct(&self) -> bool {
        self.direct.is_some()
    }

    /// Writes `data` at file offset `at`: the aligned middle directly when `data` sits in
    /// memory at `at`'s alignment, the rest through the page cache.
    pub(crate) fn write_at(&mut self, data: &[u8], at: u64) -> std::io::Result<()> {
        let Some(direct) = &self.direct else { return self.file.write_all_at(data, at) };
        let head = ((ALIGN - offset_in(at, ALIGN)) % ALIGN).min(data.len());
        let congruent = (data.as_ptr() as usize + head).is_multiple_of(ALIGN);
        let middle = if congruent { (data.len() - head) / ALIGN * ALIGN } else { 0 };
        if middle == 0 {
            return self.file.write_all_at(data, at);
        }
        self.file.write_all_at(&data[..head], at)?;
        let (body, tail) = data[head..].split_at(middle);
        let body_at = at + head as u64;
        match direct.write_all_at(body, body_at) {
            Ok(()) => {}
            // This file system takes no direct writes after all: the page cache it is.
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                self.direct = None;
                self.file.write_all_at(body, body_at)?;
            }
            Err(e) => return Err(e),
        }
        self.file.write_all_at(tail, body_at + middle as u64)
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    /// `n` bytes of a pattern that does not repeat at block or chunk sizes.
    fn bytes(n: usize) -> Vec<u8> {
        (0..n).map(|i| u8::try_from(i % 251).unwrap()).collect()
    }

    /// Feeds `total` bytes starting at file offset `pos` in pieces of `piece`, collecting the
    /// chunks with the offsets they belong at.
    fn gather(pos: u64, total: usize, piece: usize, chunk: usize) -> Vec<(u64, Bytes)> {
        let data: Vec<u8> = bytes(total);
        let mut g = Gather::new(Pool::new(chunk), pos);
        let (mut out, mut at) = (Vec::new(), pos);
        for mut p in data.chunks(piece) {
            while !p.is_empty() {
                let room = g.room();
                let n = room.len().min(p.len());
                room[..n].copy_from_slice(&p[..n]);
                p = &p[n..];
                if let Some(c) = g.filled(n) {
                    at += c.len() as u64;
                    out.push((at - c.len() as u64, c));
                }
            }
        }
        if let Some(c) = g.close() {
            out.push((at, c));
        }
        out
    }

    #[test]
    fn chunks_end_on_chunk_boundaries_and_sit_at_their_file_alignment() {
        let chunk = 64 << 10;
        for (pos, total, piece) in
            [(0, 300_000, 7_000), (12_345, 200_000, 65_536), (chunk as u64 * 3 - 1, 5, 1)]
        {
            let chunks = gather(pos, total, piece, chunk);
            let joined: Vec<u8> = chunks.iter().flat_map(|(_, c)| c.to_vec()).collect();
            let want: Vec<u8> = bytes(total);
            assert_eq!(joined, want, "bytes kept in order from {pos}");
            for (i, (at, c)) in chunks.iter().enumerate() {
                assert_eq!(
                    c.as_ptr() as usize % ALIGN,
                    offset_in(*at, ALIGN),
                    "chunk {i} at {at} sits at its file offset's alignment"
                );
                let end = at + c.len() as u64;
                if i + 1 < chunks.len() {
                    assert_eq!(end % chunk as u64, 0, "chunk {i} ends on a chunk boundary");
                }
                assert!(c.len() <= chunk, "chunk {i} is {} bytes", c.len());
            }
        }
    }

    #[test]
    fn nothing_gathered_closes_to_nothing() {
        let mut g = Gather::new(Pool::new(ALIGN * 4), 10);
        assert!(g.close().is_none());
        assert!(!g.room().is_empty(), "there is always room");
        assert!(g.filled(0).is_none());
        assert!(g.close().is_none());
    }

    #[test]
    fn a_direct_sink_writes_every_byte_where_it_belongs() {
        // /var/tmp: on disk, where direct writes are taken (tmpfs may refuse them).
        let dir = PathBuf::from(format!("/var/tmp/nw-sink-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("f.part");
        let file = OpenOptions::new().create(true).truncate(true).write(true).open(&path).unwrap();
        let mut sink = Sink::new(file, true);
        assert!(sink.is_direct(), "/var/tmp takes O_DIRECT on this machine's file system");
        let chunk = 64 << 10;
        // Two streams, as segments: one from 0, one from an unaligned offset.
        let (a, b) = (gather(0, 150_000, 10_000, chunk), gather(150_000, 99_999, 33_333, chunk));
        for (at, c) in a.iter().chain(&b) {
            sink.write_at(c, *at).unwrap();
        }
        // And a piece that is not at its alignment in memory: written through the cache.
        let odd = vec![7u8; 3 * ALIGN + 1];
        sink.write_at(&odd[1..], 249_999).unwrap();
        drop(sink);
        let got = std::fs::read(&path).unwrap();
        let mut want = bytes(150_000);
        want.extend(bytes(99_999));
        want.extend(std::iter::repeat_n(7u8, 3 * ALIGN));
        assert_eq!(got.len(), want.len());
        assert!(got == want, "the file holds every byte at its offset");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
