//! The vendored engine hands the items of a backup to its threads in batches (fewer thread
//! hand-offs); the batches must keep every item, in order, or the snapshot's trees break.

use rustic_core::archiver_batch::{Batches, MAX_ITEMS, MAX_WORK, PER_FILE};

/// (index, bytes to read: `None` for nothing to read)
type Item = (usize, Option<u64>);

fn batches(items: &[Item]) -> Vec<Vec<Item>> {
    Batches::new(items.iter().copied(), |i: &Item| i.1).collect()
}

#[test]
fn batches_keep_every_item_in_order_and_close_on_count_or_work() {
    let items: Vec<Item> = (0..2000)
        .map(|i| {
            let work = match i {
                500 => Some(50 << 20),
                600..=900 => Some(10_000),
                _ => None,
            };
            (i, work)
        })
        .collect();
    let out = batches(&items);
    assert_eq!(out.iter().flatten().copied().collect::<Vec<_>>(), items);
    assert!(out.iter().all(|b| !b.is_empty() && b.len() <= MAX_ITEMS));
    // Items with nothing to read fill whole batches.
    assert_eq!(out[0].len(), MAX_ITEMS);
    // A large file closes its batch.
    let large = out.iter().find(|b| b.iter().any(|i| i.0 == 500)).unwrap();
    assert_eq!(large.last().unwrap().0, 500);
    // New small files close a batch once their bytes reach the limit.
    let per_batch = MAX_WORK.div_ceil(10_000 + PER_FILE) as usize;
    let small = out
        .iter()
        .filter(|b| b.iter().all(|i| (600..=900).contains(&i.0)))
        .map(Vec::len)
        .max()
        .unwrap();
    assert_eq!(small, per_batch);
}

#[test]
fn no_items_make_no_batch() {
    assert!(batches(&[]).is_empty());
}
