//! Lifeboat: the index files a process has read, by repository location. An index file never
//! changes (its name is the hash of its content), so loading the index again reads only the
//! files added since and forgets those gone. A daemon loads the index for every part of every
//! backup; with a file added by each part, reading them all again grew the cost of each
//! backup with every backup before it. At most [`MAX_BLOBS`] blobs are kept per repository
//! (about 50 bytes each); a larger index is read whole every time, as upstream does.

use std::{
    collections::{BTreeSet, HashMap},
    sync::{Arc, Mutex},
};

use crate::repofile::indexfile::{IndexId, IndexPack};

/// The most blobs whose index entries are kept for one repository.
pub(crate) const MAX_BLOBS: usize = 500_000;

#[derive(Default)]
struct Kept {
    files: HashMap<IndexId, Arc<Vec<IndexPack>>>,
    blobs: usize,
}

static KEPT: Mutex<Vec<(String, Kept)>> = Mutex::new(Vec::new());

/// The packs of the `listed` index files kept for `location`, and the listed files not kept.
pub(crate) fn split(
    location: &str,
    listed: &[IndexId],
) -> (Vec<Arc<Vec<IndexPack>>>, Vec<IndexId>) {
    let all = KEPT.lock().unwrap_or_else(|p| p.into_inner());
    let kept = all.iter().find(|(l, _)| l == location).map(|(_, k)| k);
    let (mut known, mut missing) = (Vec::new(), Vec::new());
    for id in listed {
        match kept.and_then(|k| k.files.get(id)) {
            Some(packs) => known.push(packs.clone()),
            None => missing.push(*id),
        }
    }
    (known, missing)
}

/// Keeps the index files just `read` for `location` and forgets those no longer `listed`.
pub(crate) fn keep(location: &str, listed: &[IndexId], read: Vec<(IndexId, Vec<IndexPack>)>) {
    let mut all = KEPT.lock().unwrap_or_else(|p| p.into_inner());
    let at = match all.iter().position(|(l, _)| l == location) {
        Some(at) => at,
        None => {
            all.push((location.to_string(), Kept::default()));
            all.len() - 1
        }
    };
    let kept = &mut all[at].1;
    let listed: BTreeSet<&IndexId> = listed.iter().collect();
    kept.files.retain(|id, _| listed.contains(id));
    for (id, packs) in read {
        let _ = kept.files.insert(id, Arc::new(packs));
    }
    kept.blobs = kept
        .files
        .values()
        .flat_map(|packs| packs.iter())
        .map(|p| p.blobs.len())
        .sum();
    if kept.blobs > MAX_BLOBS {
        let _ = all.remove(at);
    }
}
