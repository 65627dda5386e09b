//! Snappy's block format (the remote-write body), compressed as the raw bytes are written.
//!
//! Snappy compresses every 64 KiB of its input on its own, so a full 64 KiB can be compressed as
//! soon as it is written: the raw bytes held never exceed a block and one series, and no
//! compression buffer the size of the request is needed. A first push then touches a fraction
//! of the fresh memory it did (whose page faults cost more than compressing, BENCHMARKS.md), and
//! the block being compressed is still in cache. The output is byte for byte what snappy gives
//! for the whole input at once (`snap::raw::Encoder::compress`; tests/snappy_blocks.rs).

use snap::raw::{max_compress_len, Encoder};

/// Snappy's block size (the format's, snap's `MAX_BLOCK_SIZE`): its compressor starts afresh at
/// each, so block by block is the same as all at once.
pub const BLOCK: usize = 1 << 16;

/// The compressor and its buffers, kept from message to message: warm memory, where fresh
/// buffers of a request's size would fault in page by page on every push.
#[derive(Default)]
pub struct Compressor {
    encoder: Option<Encoder>,
    /// One block compressed, behind the block's own length header (which the message leaves out).
    scratch: Vec<u8>,
    /// The message's compressed blocks so far.
    out: Vec<u8>,
    /// Raw bytes compressed into `out`.
    raw_len: u64,
}

impl Compressor {
    /// Starts a message (drops any unfinished one).
    pub fn start(&mut self) {
        self.out.clear();
        // A first message's output is not regrown from nothing (a no-op once warm).
        self.out.reserve(BLOCK);
        self.raw_len = 0;
    }

    /// Compresses the full blocks at the front of `raw` into the message; the rest stays in `raw`.
    pub fn take_blocks(&mut self, raw: &mut Vec<u8>) {
        if raw.len() < BLOCK {
            return;
        }
        let mut done = 0;
        while raw.len() - done >= BLOCK {
            self.block(&raw[done..done + BLOCK]);
            done += BLOCK;
        }
        // Less than a block and a series is left: a short move.
        raw.drain(..done);
    }

    /// Compresses what is left of `raw` (which it empties) and returns the message: the whole
    /// input's length, then the blocks.
    pub fn finish(&mut self, raw: &mut Vec<u8>) -> Vec<u8> {
        self.take_blocks(raw);
        if !raw.is_empty() {
            self.block(raw);
            raw.clear();
        }
        let mut header = [0u8; 10];
        let n = put_varint(self.raw_len, &mut header);
        let mut message = Vec::with_capacity(n + self.out.len());
        message.extend_from_slice(&header[..n]);
        message.extend_from_slice(&self.out);
        self.start();
        message
    }

    /// All of `raw` as one message (the 2.0 encoder's, built whole).
    pub fn compress(&mut self, raw: &[u8]) -> Vec<u8> {
        self.start();
        for block in raw.chunks(BLOCK) {
            self.block(block);
        }
        self.finish(&mut Vec::new())
    }

    fn block(&mut self, block: &[u8]) {
        debug_assert!(!block.is_empty() && block.len() <= BLOCK);
        if self.scratch.is_empty() {
            self.scratch = vec![0; max_compress_len(BLOCK)];
        }
        let encoder = self.encoder.get_or_insert_with(Encoder::new);
        // Fails only for inputs over 4 GiB; a block is 64 KiB.
        let n = encoder.compress(block, &mut self.scratch).expect("one snappy block compresses");
        self.out.extend_from_slice(&self.scratch[varint_len(block.len() as u64)..n]);
        self.raw_len += block.len() as u64;
    }
}

fn varint_len(v: u64) -> usize {
    (64 - (v | 1).leading_zeros() as usize).div_ceil(7)
}

fn put_varint(mut v: u64, out: &mut [u8; 10]) -> usize {
    let mut i = 0;
    while v >= 0x80 {
        out[i] = v as u8 | 0x80;
        v >>= 7;
        i += 1;
    }
    out[i] = v as u8;
    i + 1
}
