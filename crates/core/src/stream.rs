//! Adapters between engine streams and repository stream sources.

use std::io::Read;

use lifeboat_repo::StreamSource;

/// A stream whose producer reports failure only through read errors (the image export).
pub(crate) struct ReaderSource(pub Option<Box<dyn Read + Send>>);

impl StreamSource for ReaderSource {
    fn reader(&mut self) -> Box<dyn Read + Send> {
        self.0.take().unwrap_or_else(|| Box::new(std::io::empty()))
    }
    fn finish(&mut self) -> Result<(), String> {
        Ok(())
    }
}

/// A small in-memory document (the manifest).
pub(crate) struct BytesSource(pub Vec<u8>);

impl StreamSource for BytesSource {
    fn reader(&mut self) -> Box<dyn Read + Send> {
        Box::new(std::io::Cursor::new(std::mem::take(&mut self.0)))
    }
    fn finish(&mut self) -> Result<(), String> {
        Ok(())
    }
}
