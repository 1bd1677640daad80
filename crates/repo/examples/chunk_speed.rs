//! The chunker's speed, Lifeboat's loop against upstream's, on random data in memory:
//! `cargo run --release -p lifeboat-repo --example chunk_speed [MB]`. (Whole-backup figures
//! against restic are `bench/compare.sh`'s.)

use std::time::Instant;

use rustic_core::chunker::check::cut_lengths;

fn main() {
    let mb: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(512);
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    let data: Vec<u8> = (0..mb << 20)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect();
    let sizes = (1 << 20, 512 << 10, 8 << 20);
    for (name, upstream) in [("lifeboat", false), ("upstream", true)] {
        let start = Instant::now();
        let cuts = cut_lengths(0x003D_A335_8B4D_C173, sizes, &data, 1 << 20, upstream).unwrap();
        let secs = start.elapsed().as_secs_f64();
        println!(
            "{name}: {mb} MB in {secs:.3} s = {:.0} MB/s, {} chunks",
            mb as f64 / secs,
            cuts.len()
        );
    }
}
