//! `snappy_blocks` writes exactly what snappy writes for the whole input at once, however the
//! input is handed over: block boundaries, the length header's size, empty and tiny inputs.

use beam_prometheus::snappy_blocks::{Compressor, BLOCK};
use proptest::prelude::*;

fn whole(raw: &[u8]) -> Vec<u8> {
    snap::raw::Encoder::new().compress_vec(raw).unwrap()
}

/// Compressible bytes (repeats of a few words, as label sets are) with some noise.
fn input(len: usize, seed: u64) -> Vec<u8> {
    let words: [&[u8]; 5] = [b"beam_elements_total", b"namespace", b"org.example.pipeline", b"Stage12-ExtractWords/ParDo", b"job"];
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        if x % 4 == 0 {
            out.push(x as u8);
        } else {
            out.extend_from_slice(words[(x >> 8) as usize % words.len()]);
        }
    }
    out.truncate(len);
    out
}

/// Written piece by piece, blocks taken whenever a block is full, as the encoder does.
fn streamed(c: &mut Compressor, raw: &[u8], pieces: &[usize]) -> Vec<u8> {
    c.start();
    let mut buf = Vec::new();
    let mut at = 0;
    for &p in pieces.iter().cycle().take(raw.len() + 1) {
        if at == raw.len() {
            break;
        }
        let end = (at + p.max(1)).min(raw.len());
        buf.extend_from_slice(&raw[at..end]);
        at = end;
        if buf.len() >= BLOCK {
            c.take_blocks(&mut buf);
            assert!(buf.len() < BLOCK, "full blocks are taken");
        }
    }
    c.finish(&mut buf)
}

#[test]
fn edge_lengths_match_whole_compression() {
    let mut c = Compressor::default();
    for len in [0, 1, 16, 17, 127, 128, 16383, 16384, BLOCK - 1, BLOCK, BLOCK + 1, 2 * BLOCK, 3 * BLOCK + 17, 2_097_151, 2_097_152] {
        let raw = input(len, len as u64 + 7);
        let want = whole(&raw);
        assert_eq!(c.compress(&raw), want, "compress, {} bytes", len);
        for pieces in [&[700, 3, 90_000][..], &[BLOCK], &[1]] {
            assert_eq!(streamed(&mut c, &raw, pieces), want, "streamed, {} bytes, pieces {:?}", len, pieces);
        }
        assert_eq!(snap::raw::Decoder::new().decompress_vec(&want).unwrap(), raw);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn any_split_matches_whole_compression(
        len in 0usize..400_000,
        seed in any::<u64>(),
        pieces in prop::collection::vec(1usize..100_000, 1..8),
    ) {
        let raw = input(len, seed);
        let mut c = Compressor::default();
        prop_assert_eq!(streamed(&mut c, &raw, &pieces), whole(&raw));
        // The compressor is reused from message to message.
        prop_assert_eq!(c.compress(&raw), whole(&raw));
    }
}
