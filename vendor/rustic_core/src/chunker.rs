use std::io::Read;

mod fixed_size;
/// The rabin chunker.
pub mod rabin;

use fixed_size::ChunkIter as FixedSizeChunkIter;
use rabin::ChunkIter as RabinChunkIter;

use crate::{
    RusticResult,
    repofile::{ConfigFile, configfile::Chunker},
};

/// `ChunkIter` is an iterator that chunks data.
pub(crate) enum ChunkIter<R: Read + Send> {
    Rabin(Box<RabinChunkIter<R>>),
    FixedSize(FixedSizeChunkIter<R>),
}

impl<R: Read + Send> ChunkIter<R> {
    pub(crate) fn from_config(
        config: &ConfigFile,
        reader: R,
        size_hint: usize,
    ) -> RusticResult<Self> {
        let iter = match config.chunker() {
            Chunker::Rabin => {
                let poly = config.poly()?;
                Self::Rabin(Box::new(RabinChunkIter::new(
                    poly,
                    config.chunk_size(),
                    config.chunk_min_size(),
                    config.chunk_max_size(),
                    reader,
                    size_hint,
                )?))
            }
            Chunker::FixedSize => Self::FixedSize(FixedSizeChunkIter::new(
                config.chunk_size(),
                reader,
                size_hint,
            )),
        };
        Ok(iter)
    }
}

impl<R: Read + Send> Iterator for ChunkIter<R> {
    type Item = RusticResult<Vec<u8>>;

    fn next(&mut self) -> Option<Self::Item> {
        match self {
            Self::Rabin(rabin) => rabin.next(),
            Self::FixedSize(fixed_size) => fixed_size.next(),
        }
    }
}

/// Lifeboat: the chunker's cuts, and upstream's, for tests outside this crate (the faster
/// loop must cut exactly where upstream's cuts).
#[doc(hidden)]
pub mod check {
    use std::io::{self, Read};

    use super::rabin::{ChunkIter, reference};
    use crate::RusticResult;

    /// Hands out `data` in reads of 1, 2, ... up to `max_read` bytes, round and round, as a
    /// pipe or a slow disk may.
    struct Trickle<'a> {
        data: &'a [u8],
        next: usize,
        max_read: usize,
    }

    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            self.next = self.next % self.max_read + 1;
            let n = self.next.min(buf.len()).min(self.data.len());
            buf[..n].copy_from_slice(&self.data[..n]);
            self.data = &self.data[n..];
            Ok(n)
        }
    }

    /// The chunks' lengths, cut by the chunker Lifeboat uses (`upstream` false) or by
    /// upstream's byte loop, with the polynomial `poly` and the given sizes, from a reader that
    /// hands out at most `max_read` bytes at a time. Checks that the chunks are `data`.
    pub fn cut_lengths(
        poly: u64,
        (size, min, max): (usize, usize, usize),
        data: &[u8],
        max_read: usize,
        upstream: bool,
    ) -> RusticResult<Vec<usize>> {
        let reader = Trickle {
            data,
            next: 0,
            max_read,
        };
        let chunks: Box<dyn Iterator<Item = RusticResult<Vec<u8>>> + '_> = if upstream {
            let rabin = rustic_cdc::Rabin64::new_with_polynom(6, &poly);
            Box::new(reference::ChunkIter::new(
                rabin,
                size,
                min,
                max,
                reader,
                data.len(),
            )?)
        } else {
            Box::new(ChunkIter::new(poly, size, min, max, reader, data.len())?)
        };
        let mut lengths = Vec::new();
        let mut at = 0;
        for chunk in chunks {
            let chunk = chunk?;
            assert!(data[at..].starts_with(&chunk), "chunk {} is not the data", lengths.len());
            at += chunk.len();
            lengths.push(chunk.len());
        }
        assert_eq!(at, data.len(), "the chunks end before the data");
        Ok(lengths)
    }
}
