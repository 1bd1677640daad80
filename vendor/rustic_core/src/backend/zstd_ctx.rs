//! Lifeboat: one zstd context per thread, reused for every blob. Upstream made a new context
//! per blob (`encode_all`, `decode_all`); setting one up costs more than compressing a small
//! file, so small files went through several times slower than large ones. Repository files
//! (snapshots, index files) are decompressed with a reused context too: listing a thousand
//! snapshot files spent more time setting up contexts than decompressing.

use std::{cell::RefCell, io};

use zstd::bulk::{Compressor, Decompressor};

thread_local! {
    static COMPRESSOR: RefCell<Option<(i32, Compressor<'static>)>> = const { RefCell::new(None) };
    static DECOMPRESSOR: RefCell<Option<Decompressor<'static>>> = const { RefCell::new(None) };
    static FILE_DECODER: RefCell<Option<zstd::zstd_safe::DCtx<'static>>> = const { RefCell::new(None) };
}

/// `data` compressed at `level` (one zstd frame).
pub(crate) fn compress(data: &[u8], level: i32) -> io::Result<Vec<u8>> {
    COMPRESSOR.with(|slot| {
        let mut slot = slot.borrow_mut();
        if slot.as_ref().is_none_or(|(l, _)| *l != level) {
            *slot = Some((level, Compressor::new(level)?));
        }
        let (_, compressor) = slot.as_mut().expect("set above");
        compressor.compress(data)
    })
}

/// `data` (zstd frames) decompressed; an error if it holds more than `length` bytes.
pub(crate) fn decompress(data: &[u8], length: usize) -> io::Result<Vec<u8>> {
    DECOMPRESSOR.with(|slot| {
        let mut slot = slot.borrow_mut();
        if slot.is_none() {
            *slot = Some(Decompressor::new()?);
        }
        slot.as_mut().expect("set above").decompress(data, length)
    })
}

/// A repository file's zstd frames (of a size not known before) decompressed, as
/// `zstd::decode_all` does, with this thread's context.
pub(crate) fn decompress_file(data: &[u8]) -> io::Result<Vec<u8>> {
    FILE_DECODER.with(|slot| {
        let mut slot = slot.borrow_mut();
        let context = slot.get_or_insert_with(zstd::zstd_safe::DCtx::create);
        // A file that failed half-way leaves nothing behind for the next one.
        let _ = context
            .reset(zstd::zstd_safe::ResetDirective::SessionOnly)
            .map_err(|code| io::Error::other(zstd::zstd_safe::get_error_name(code)))?;
        let mut out = Vec::with_capacity(data.len().saturating_mul(4));
        let _ = io::copy(
            &mut zstd::stream::read::Decoder::with_context(data, context),
            &mut out,
        )?;
        Ok(out)
    })
}
