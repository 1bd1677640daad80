use std::io::{self, Read};
use std::sync::{Arc, Mutex, PoisonError};

use rand::{RngExt, rng};
use rustic_cdc::{Polynom, Polynom64, Rabin64};

use crate::error::{ErrorKind, RusticError, RusticResult};

pub(super) mod constants {
    /// The size of a kilobyte.
    pub(super) const KB: usize = 1024;
    /// Buffer size used for reading - TODO: Find out optimal size for best performance!
    pub(super) const BUF_SIZE: usize = 4 * KB;
    /// Random polynomial maximum tries.
    pub(super) const RAND_POLY_MAX_TRIES: i32 = 1_000_000;
}

pub(crate) fn check_rabin_params(
    chunk_size: usize,
    chunk_min_size: usize,
    chunk_max_size: usize,
) -> RusticResult<()> {
    if (chunk_size & (chunk_size - 1)) != 0 {
        return Err(RusticError::new(
            ErrorKind::Unsupported,
            "Chunk size must be a power of 2 for the rabin chunker. chunk size = {chunk_size}.",
        )
        .attach_context("chunk_size", chunk_size.to_string()));
    }
    if chunk_min_size > chunk_size {
        return Err(RusticError::new(
            ErrorKind::Unsupported,
            "Chunk min size must be smaller or equal than the chunk size.",
        ));
    }
    if chunk_max_size < chunk_size {
        return Err(RusticError::new(
            ErrorKind::Unsupported,
            "Chunk max size must be larger or equal than the chunk size.",
        ));
    }
    Ok(())
}

/// The rolling hash's tables for one polynomial, as `Rabin64` computes them.
#[derive(Debug, Clone)]
pub(crate) struct Tables {
    out: [u64; 256],
    modt: [u64; 256],
    shift: u32,
}

/// Bytes in the rolling hash's window.
const WINDOW: usize = 64;

impl Tables {
    /// The tables of `poly`, computed once per polynomial: computing them takes longer than
    /// chunking a small file, and upstream did so for every file.
    pub(crate) fn of(poly: u64) -> Arc<Self> {
        static KNOWN: Mutex<Vec<(u64, Arc<Tables>)>> = Mutex::new(Vec::new());
        let mut known = KNOWN.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((_, tables)) = known.iter().find(|(p, _)| *p == poly) {
            return tables.clone();
        }
        let tables = Arc::new(Self {
            out: Rabin64::calculate_out_table(WINDOW, &poly),
            modt: Rabin64::calculate_mod_table(&poly),
            shift: (poly.degree() - 8) as u32,
        });
        known.push((poly, tables.clone()));
        tables
    }

    /// The hash after `out` left the window and `byte` entered it (`Rabin64::slide`).
    #[inline(always)]
    fn roll(&self, hash: u64, out: u8, byte: u8) -> u64 {
        let hash = hash ^ self.out[out as usize];
        let index = ((hash >> self.shift) & 255) as usize;
        ((hash << 8) | u64::from(byte)) ^ self.modt[index]
    }

    /// The hash of the window ending just before `data[at]` (`at >= WINDOW`).
    #[inline(always)]
    fn window_hash(&self, data: &[u8], at: usize) -> u64 {
        data[at - WINDOW..at]
            .iter()
            .fold(0, |h, &b| self.roll(h, 0, b))
    }

    /// The first cut `q` in `from..=to` (`WINDOW <= from <= to <= data.len()`): the first
    /// place where the window before it, `data[q - WINDOW..q]`, hashes to zero under `mask`.
    /// Four lanes roll over four consecutive stretches of the range at once, so that the
    /// hash's serial dependency does not bound the speed; the first lane with a cut has the
    /// first cut.
    pub(crate) fn first_cut(
        &self,
        data: &[u8],
        from: usize,
        to: usize,
        mask: u64,
    ) -> Option<usize> {
        const LANE: usize = 4096;
        const LANES: usize = 4;
        let mut at = from;
        while to - at >= LANES * LANE {
            let mut hashes = [0u64; LANES];
            let mut cuts = [usize::MAX; LANES];
            let mut outs: [&[u8; LANE]; LANES] = [&[0; LANE]; LANES];
            let mut ins: [&[u8; LANE]; LANES] = [&[0; LANE]; LANES];
            for l in 0..LANES {
                let start = at + l * LANE;
                hashes[l] = self.window_hash(data, start);
                outs[l] = data[start - WINDOW..][..LANE].try_into().unwrap();
                ins[l] = data[start..][..LANE].try_into().unwrap();
            }
            for i in 0..LANE {
                for l in 0..LANES {
                    if hashes[l] & mask == 0 {
                        cuts[l] = cuts[l].min(i);
                    }
                    hashes[l] = self.roll(hashes[l], outs[l][i], ins[l][i]);
                }
            }
            if let Some((l, &i)) = cuts.iter().enumerate().find(|(_, i)| **i != usize::MAX) {
                return Some(at + l * LANE + i);
            }
            at += LANES * LANE;
        }
        let mut hash = self.window_hash(data, at);
        loop {
            if hash & mask == 0 {
                return Some(at);
            }
            if at == to {
                return None;
            }
            hash = self.roll(hash, data[at - WINDOW], data[at]);
            at += 1;
        }
    }
}

/// `ChunkIter` is an iterator that chunks data.
///
/// Lifeboat: cuts exactly where upstream's byte-by-byte loop (kept as
/// [`reference::ChunkIter`]) cuts, faster: data is read in blocks straight into the chunk,
/// and the cut is searched in the block by [`Tables::first_cut`].
pub(crate) struct ChunkIter<R: Read + Send> {
    /// Bytes read past the last cut: the start of the next chunk.
    carry: Vec<u8>,
    /// The reader.
    reader: R,
    /// The reader returned less than asked: it is at its end.
    eof: bool,
    /// The split mask used to determine if a chunk is a chunk boundary.
    split_mask: u64,
    /// The rolling hash's tables.
    tables: Arc<Tables>,
    /// The size hint is used to optimize memory allocation; this should be an upper bound on the size.
    size_hint: usize,
    /// The minimum size of a chunk.
    min_size: usize,
    /// The maximum size of a chunk.
    max_size: usize,
    /// If the iterator is finished.
    finished: bool,
}

/// How much is read at a time past a chunk's minimum size.
const READ_BLOCK: usize = 256 * 1024;

impl<R: Read + Send> ChunkIter<R> {
    /// Creates a new `ChunkIter` for the rabin polynomial `poly`.
    pub(crate) fn new(
        poly: u64,
        chunk_size: usize,
        chunk_min_size: usize,
        chunk_max_size: usize,
        reader: R,
        size_hint: usize,
    ) -> RusticResult<Self> {
        check_rabin_params(chunk_size, chunk_min_size, chunk_max_size)?;
        if chunk_min_size < WINDOW {
            return Err(RusticError::new(
                ErrorKind::Unsupported,
                "Chunk min size must be at least the rabin window (64 bytes).",
            ));
        }
        let chunk_size: u64 = chunk_size.try_into().unwrap();
        Ok(Self {
            carry: Vec::new(),
            reader,
            eof: false,
            split_mask: chunk_size - 1,
            tables: Tables::of(poly),
            size_hint,
            min_size: chunk_min_size,
            max_size: chunk_max_size,
            finished: false,
        })
    }

    /// Reads up to `n` more bytes onto `vec` (none once the reader is at its end).
    fn fill(&mut self, vec: &mut Vec<u8>, n: usize) -> io::Result<()> {
        if self.eof || n == 0 {
            return Ok(());
        }
        // Room for what the file is expected to hold, not more (small files are many).
        vec.reserve(n.min(self.size_hint.saturating_sub(vec.len()).saturating_add(1)));
        let got = (&mut self.reader).take(n as u64).read_to_end(vec)?;
        self.eof = got < n;
        Ok(())
    }

    /// Reads the next block of a chunk that may grow to `max_size`.
    fn fill_block(&mut self, vec: &mut Vec<u8>) -> io::Result<()> {
        let n = READ_BLOCK.min(self.max_size.saturating_sub(vec.len()));
        self.fill(vec, n)
    }

    /// The length of the next chunk; `vec` holds at least `min_size` bytes and is read
    /// further as far as needed (maybe beyond the cut).
    fn cut(&mut self, vec: &mut Vec<u8>) -> io::Result<usize> {
        let (min, max, mask) = (self.min_size, self.max_size, self.split_mask);
        // Upstream primes the hash with the 63 bytes before the last byte of the minimum
        // chunk and then rolls on from the next byte, leaving that last byte out: for the
        // next 64 positions its hash is not the window's, so they are rolled one by one as
        // upstream rolls them. From then on the hash is the window's.
        let mut window = [0u8; WINDOW];
        window[..WINDOW - 1].copy_from_slice(&vec[min - WINDOW..min - 1]);
        let mut hash = window[..WINDOW - 1]
            .iter()
            .fold(0, |h, &b| self.tables.roll(h, 0, b));
        let mut q = min;
        while q < min + WINDOW {
            if q >= max || hash & mask == 0 {
                return Ok(q);
            }
            if vec.len() == q {
                self.fill_block(vec)?;
                if vec.len() == q {
                    return Ok(q);
                }
            }
            let slot = (q - min + WINDOW - 1) % WINDOW;
            hash = self.tables.roll(hash, window[slot], vec[q]);
            window[slot] = vec[q];
            q += 1;
        }
        loop {
            let to = vec.len().min(max);
            if let Some(cut) = self.tables.first_cut(vec, q, to, mask) {
                return Ok(cut);
            }
            if to == max {
                return Ok(max);
            }
            q = to;
            self.fill_block(vec)?;
            if vec.len() == q {
                return Ok(q);
            }
        }
    }
}

impl<R: Read + Send> Iterator for ChunkIter<R> {
    type Item = RusticResult<Vec<u8>>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.finished {
            return None;
        }
        let mut vec = std::mem::take(&mut self.carry);
        let short = self.min_size.saturating_sub(vec.len());
        let read = self
            .fill(&mut vec, short)
            .and_then(|()| {
                if vec.len() < self.min_size {
                    Ok(None)
                } else {
                    self.cut(&mut vec).map(Some)
                }
            });
        match read {
            Err(err) => {
                self.finished = true;
                Some(Err(RusticError::with_source(
                    ErrorKind::InputOutput,
                    "Failed to read from reader in iterator",
                    err,
                )))
            }
            // Less than the minimum is left: the last chunk.
            Ok(None) => {
                self.finished = true;
                (!vec.is_empty()).then_some(Ok(vec))
            }
            Ok(Some(cut)) => {
                if cut == vec.len() && self.eof {
                    self.finished = true;
                } else {
                    self.carry = vec.split_off(cut);
                }
                self.size_hint = self.size_hint.saturating_sub(cut);
                Some(Ok(vec))
            }
        }
    }
}

/// Upstream's byte-by-byte chunk loop, unchanged: the oracle the faster [`ChunkIter`] is
/// tested against (its cuts must stay exactly these, or existing repositories would stop
/// deduplicating).
#[doc(hidden)]
pub mod reference {
    use super::{ErrorKind, RusticError, RusticResult, check_rabin_params, constants};
    use rustic_cdc::{Rabin64, RollingHash64};
    use std::io::{self, Read};

    /// `ChunkIter` is an iterator that chunks data.
    #[allow(missing_debug_implementations)]
    pub struct ChunkIter<R: Read + Send> {
        /// The buffer used for reading.
        buf: Vec<u8>,

        /// The position in the buffer.
        pos: usize,

        /// The reader.
        reader: R,

        /// The split mask used to determine if a chunk is a chunk boundary.
        split_mask: u64,

        /// The rolling hash.
        rabin: Rabin64,

        /// The size hint is used to optimize memory allocation; this should be an upper bound on the size.
        size_hint: usize,

        /// The minimum size of a chunk.
        min_size: usize,

        /// The maximum size of a chunk.
        max_size: usize,

        /// If the iterator is finished.
        finished: bool,
    }

    impl<R: Read + Send> ChunkIter<R> {
        /// Creates a new `ChunkIter`.
        ///
        /// # Arguments
        ///
        /// * `reader` - The reader to read from.
        /// * `size_hint` - The size hint is used to optimize memory allocation; this should be an upper bound on the size.
        /// * `rabin` - The rolling hash.
        pub fn new(
            rabin: Rabin64,
            chunk_size: usize,
            chunk_min_size: usize,
            chunk_max_size: usize,
            reader: R,
            size_hint: usize,
        ) -> RusticResult<Self> {
            check_rabin_params(chunk_size, chunk_min_size, chunk_max_size)?;
            let chunk_size: u64 = chunk_size.try_into().unwrap();
            let split_mask: u64 = chunk_size - 1;
            Ok(Self {
                buf: vec![0; constants::BUF_SIZE],
                pos: constants::BUF_SIZE,
                reader,
                split_mask,
                rabin,
                size_hint, // size hint is used to optimize memory allocation; this should be an upper bound on the size
                min_size: chunk_min_size,
                max_size: chunk_max_size,
                finished: false,
            })
        }
    }

    impl<R: Read + Send> Iterator for ChunkIter<R> {
        type Item = RusticResult<Vec<u8>>;

        fn next(&mut self) -> Option<Self::Item> {
            if self.finished {
                return None;
            }

            let mut min_size = self.min_size;
            let mut vec = Vec::with_capacity(self.size_hint.min(min_size));

            // check if some bytes exist in the buffer and if yes, use them
            let open_buf_len = self.buf.len() - self.pos;
            if open_buf_len > 0 {
                vec.resize(open_buf_len, 0);
                vec.copy_from_slice(&self.buf[self.pos..]);
                self.pos = self.buf.len();
                min_size -= open_buf_len;
            }

            let size = match (&mut self.reader)
                .take(min_size as u64)
                .read_to_end(&mut vec)
            {
                Ok(size) => size,
                Err(err) => {
                    return Some(Err(RusticError::with_source(
                        ErrorKind::InputOutput,
                        "Failed to read from reader in iterator",
                        err,
                    )));
                }
            };

            // If self.min_size is not reached, we are done.
            // Note that the read data is of size size + open_buf_len and self.min_size = minsize + open_buf_len
            if size < min_size {
                self.finished = true;
                vec.truncate(size + open_buf_len);
                return if vec.is_empty() { None } else { Some(Ok(vec)) };
            }

            _ = self
                .rabin
                .reset_and_prefill_window(&mut vec[vec.len() - 64..vec.len()].iter().copied());

            loop {
                if vec.len() >= self.max_size {
                    break;
                }

                if (self.rabin.hash & self.split_mask) == 0 {
                    break;
                }

                if self.buf.len() == self.pos {
                    match self.reader.read(&mut self.buf[..]) {
                        Ok(0) => {
                            self.finished = true;
                            break;
                        }
                        Ok(size) => {
                            self.pos = 0;
                            self.buf.truncate(size);
                        }

                        Err(ref e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        Err(err) => {
                            return Some(Err(RusticError::with_source(
                                ErrorKind::InputOutput,
                                "Failed to read from reader in iterator",
                                err,
                            )));
                        }
                    }
                }

                let byte = self.buf[self.pos];
                vec.push(byte);
                self.pos += 1;
                self.rabin.slide(byte);
            }
            self.size_hint = self.size_hint.saturating_sub(vec.len()); // size_hint can be too small!
            Some(Ok(vec))
        }
    }

}

/// [`random_poly`] returns an random irreducible polynomial of degree 53
/// (largest prime number below 64-8)
/// There are (2^53-2/53) irreducible polynomials of degree 53 in
/// `F_2[X]`, c.f. Michael O. Rabin (1981): "Fingerprinting by Random
/// Polynomials", page 4.
///
/// # Errors
///
/// * If no polynomial could be found in one million tries.
pub fn random_poly() -> RusticResult<u64> {
    for _ in 0..constants::RAND_POLY_MAX_TRIES {
        let mut poly: u64 = rng().random();

        // mask away bits above bit 53
        poly &= (1 << 54) - 1;

        // set highest and lowest bit so that the degree is 53 and the
        // polynomial is not trivially reducible
        poly |= (1 << 53) | 1;

        if poly.irreducible() {
            return Ok(poly);
        }
    }

    Err(RusticError::new(
        ErrorKind::Internal,
        "No suitable polynomial found, this should essentially never happen. Please try again.",
    )
    .ask_report())
}

/// A trait for extending polynomials.
pub(crate) trait PolynomExtend {
    /// Returns true IFF x is irreducible over `F_2`.
    fn irreducible(&self) -> bool;

    /// Returns the degree of the polynomial.
    fn gcd(self, other: Self) -> Self;

    /// Adds two polynomials.
    fn add(self, other: Self) -> Self;

    /// Multiplies two polynomials modulo another polynomial.
    fn mulmod(self, other: Self, modulo: Self) -> Self;
}

// implementation goes along the lines of
// https://github.com/restic/chunker/blob/master/polynomials.go
impl PolynomExtend for Polynom64 {
    // Irreducible returns true IFF x is irreducible over F_2. This function
    // uses Ben Or's reducibility test.
    //
    // For details see "Tests and Constructions of Irreducible Polynomials over
    // Finite Fields".
    fn irreducible(&self) -> bool {
        for i in 1..=self.degree() / 2 {
            if self.gcd(qp(i, *self)) != 1 {
                return false;
            }
        }
        true
    }

    fn gcd(self, other: Self) -> Self {
        if other == 0 {
            return self;
        }

        if self == 0 {
            return other;
        }

        if self.degree() < other.degree() {
            self.gcd(other.modulo(&self))
        } else {
            other.gcd(self.modulo(&other))
        }
    }

    fn add(self, other: Self) -> Self {
        self ^ other
    }

    fn mulmod(self, other: Self, modulo: Self) -> Self {
        if self == 0 || other == 0 {
            return 0;
        }

        let mut res: Self = 0;
        let mut a = self;
        let mut b = other;

        if b & 1 > 0 {
            res = res.add(a).modulo(&modulo);
        }

        while b != 0 {
            a = (a << 1).modulo(&modulo);
            b >>= 1;
            if b & 1 > 0 {
                res = res.add(a).modulo(&modulo);
            }
        }

        res
    }
}

// qp computes the polynomial (x^(2^p)-x) mod g. This is needed for the
// reducibility test.
fn qp(p: i32, g: Polynom64) -> Polynom64 {
    // start with x
    let mut res: Polynom64 = 2;

    for _ in 0..p {
        // repeatedly square res
        res = res.mulmod(res, g);
    }

    // add x
    res.add(2).modulo(&g)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::hasher::hash;
    use insta::assert_ron_snapshot;
    use rand::prelude::*;
    use std::io::{Cursor, repeat};

    /// The Splitmask is used to determine if a chunk is a chunk boundary.
    const SIZE: usize = 1 << 20;
    /// The size of a megabyte.
    const MB: usize = 1024 * constants::KB;
    /// The minimum size of a chunk.
    const MIN_SIZE: usize = 512 * constants::KB;
    /// The maximum size of a chunk.
    const MAX_SIZE: usize = 8 * MB;

    fn chunker<R: Read + Send>(reader: R, size_hint: usize) -> ChunkIter<R> {
        let poly = 0x003D_A335_8B4D_C173;
        let rabin = Rabin64::new_with_polynom(6, &poly);
        ChunkIter::new(rabin, SIZE, MIN_SIZE, MAX_SIZE, reader, size_hint).unwrap()
    }

    #[test]
    fn chunk_random() {
        const RANDOM_DATA_SIZE: usize = 32 * 1024 * 1024;
        const SEED: u64 = 23;
        let mut rng = StdRng::seed_from_u64(SEED);
        let mut data = vec![0u8; RANDOM_DATA_SIZE];
        rng.fill_bytes(&mut data);
        let mut reader = Cursor::new(data);
        let chunker = chunker(&mut reader, 0);
        let chunks: Vec<_> = chunker
            .map(|chunk| {
                let chunk = chunk.unwrap();
                (chunk.len(), hash(&chunk))
            })
            .collect();

        assert_ron_snapshot!(chunks);
    }

    #[test]
    fn chunk_empty() {
        let empty: Vec<u8> = vec![];
        let mut reader = Cursor::new(empty);
        let chunker = chunker(&mut reader, 0);

        assert_eq!(0, chunker.into_iter().count());
    }

    #[test]
    fn chunk_empty_wrong_hint() {
        let empty: Vec<u8> = vec![];
        let mut reader = Cursor::new(empty);
        let chunker = chunker(&mut reader, 100);

        assert_eq!(0, chunker.into_iter().count());
    }

    #[test]
    fn chunk_zeros() {
        let mut reader = repeat(0u8);
        let mut chunker = chunker(&mut reader, usize::MAX);

        let chunk = chunker.next().unwrap().unwrap();
        assert_eq!(MIN_SIZE, chunk.len());
    }
}
