//! Adapters between engine streams and repository stream sources.

use std::io::Read;

use lifeboat_docker::EngineError;
use lifeboat_repo::Repository;

use crate::CoreError;

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

/// Streams file `path` of snapshot `id` out of the repository into `consume` (an image load,
/// a database client), through a pipe written by a helper thread. The consumer's error wins:
/// when it stops reading, the writer only sees a broken pipe.
pub(crate) fn from_repository<T>(
    repo: &dyn Repository,
    id: &str,
    path: &str,
    consume: impl FnOnce(Box<dyn Read + Send>) -> Result<T, EngineError>,
) -> Result<T, CoreError> {
    let (reader, mut writer) =
        std::io::pipe().map_err(CoreError::io("creating a pipe for", path))?;
    std::thread::scope(|scope| {
        let dumper = scope.spawn(move || repo.dump(id, path, &mut writer));
        let consumed = consume(Box::new(reader));
        let dumped = dumper.join().unwrap_or_else(|_| {
            Err(lifeboat_repo::RepoError::StreamFailed {
                path: path.to_string(),
                reason: "the thread reading the repository failed".into(),
            })
        });
        let value = consumed?;
        dumped?;
        Ok(value)
    })
}
