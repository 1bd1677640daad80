//! The repository engine's chunker, sped up in the vendored engine, cuts exactly where
//! upstream's byte-by-byte loop cuts: a repository written before the change keeps
//! deduplicating against data backed up after it, and restic's own backups into it too.

use rustic_core::chunker::{check::cut_lengths, rabin::random_poly};

/// restic's default polynomial form is random per repository; this one is the engine's
/// test polynomial.
const FIXED_POLY: u64 = 0x003D_A335_8B4D_C173;

/// `len` bytes from a xorshift generator seeded with `seed`.
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// Random stretches, runs of zeros (whose hash is zero: a cut right at the minimum) and
/// repeated log lines, one after another.
fn mixed(len: usize, seed: u64) -> Vec<u8> {
    let mut data = Vec::with_capacity(len);
    let mut part = 0u64;
    while data.len() < len {
        let n = 5_000
            + (noise(4, seed ^ part)
                .iter()
                .map(|&b| b as usize)
                .sum::<usize>()
                * 300);
        match part % 3 {
            0 => data.extend(noise(n, seed.wrapping_add(part))),
            1 => data.extend(std::iter::repeat_n(0u8, n)),
            _ => data.extend(
                b"2026-12-06T10:00:00Z INFO collector seq=1 value=0.25\n"
                    .iter()
                    .cycle()
                    .take(n),
            ),
        }
        part += 1;
    }
    data.truncate(len);
    data
}

fn assert_same_cuts(poly: u64, sizes: (usize, usize, usize), data: &[u8], max_read: usize) {
    let ours = cut_lengths(poly, sizes, data, max_read, false).unwrap();
    let upstream = cut_lengths(poly, sizes, data, max_read, true).unwrap();
    assert!(
        ours == upstream,
        "poly {poly:x}, sizes {sizes:?}, {} bytes read {max_read} at a time: {} cuts, upstream {}; first difference at chunk {:?}",
        data.len(),
        ours.len(),
        upstream.len(),
        ours.iter().zip(&upstream).position(|(a, b)| a != b)
    );
}

#[test]
fn the_chunker_cuts_random_and_mixed_data_exactly_where_upstreams_loop_cuts() {
    let polys = [FIXED_POLY, random_poly().unwrap(), random_poly().unwrap()];
    // Small chunk sizes give thousands of cuts in a few MB: cuts in the 64 bytes after the
    // minimum (where upstream's hash is not the window's), inside and between the four
    // lanes of the fast search, at the maximum, and at the end of the data.
    let sizes = [
        (1 << 12, 4096, 1 << 14),
        (1 << 12, 4096, 1 << 16),
        (1 << 14, 8192, 1 << 17),
        (1 << 16, 4096, 1 << 18),
    ];
    for (i, &poly) in polys.iter().enumerate() {
        for (j, &size) in sizes.iter().enumerate() {
            let seed = (i * 10 + j) as u64 + 1;
            for data in [noise(3 << 20, seed), mixed(3 << 20, seed)] {
                for max_read in [7, 4096 + 13, 1 << 20] {
                    assert_same_cuts(poly, size, &data, max_read);
                }
            }
        }
    }
}

#[test]
fn the_chunker_cuts_at_the_default_sizes_exactly_where_upstreams_loop_cuts() {
    // restic's sizes: 1 MiB average, 512 KiB minimum, 8 MiB maximum.
    let sizes = (1 << 20, 512 << 10, 8 << 20);
    let data = noise(96 << 20, 7);
    assert_same_cuts(random_poly().unwrap(), sizes, &data, 1 << 20);
    let data = mixed(24 << 20, 8);
    assert_same_cuts(FIXED_POLY, sizes, &data, 65_536);
}

#[test]
fn short_inputs_are_one_chunk_or_none() {
    let sizes = (1 << 12, 4096, 1 << 14);
    for len in [0, 1, 63, 64, 4095, 4096, 4097, 4096 + 64, 4096 + 65] {
        let data = noise(len, len as u64 + 3);
        assert_same_cuts(FIXED_POLY, sizes, &data, 1 << 20);
        let cuts = cut_lengths(FIXED_POLY, sizes, &data, 1 << 20, false).unwrap();
        if len < 4096 {
            assert_eq!(cuts, if len == 0 { vec![] } else { vec![len] });
        }
    }
}
