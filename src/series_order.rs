//! Sorting a family's series by name, then labels (the order `naming::map` promises), and
//! dropping exact duplicates, without reading the series again. Sorting `Sample`s by their
//! texts was half of a large first push's mapping: by then the label lists of 100k series are
//! out of the cache, and steps are long paths with long common prefixes. So each series' key is
//! taken when it is pushed (its labels still in the cache), as ids of its texts' allocations;
//! the distinct texts are ranked by their bytes once per mapping, and the series are sorted by
//! those integers. Equal bytes get equal ranks, so the order and the duplicates are those of
//! comparing the texts (tests/naming.rs checks it against a sort by bytes).

use crate::naming::{FxBuild, Sample, Text};
use std::collections::HashMap;
use std::sync::Arc;

fn addr(t: &Text) -> usize {
    Arc::as_ptr(t) as *const u8 as usize
}

/// The distinct text allocations of one mapping's series, in first-seen order.
#[derive(Default)]
pub struct Texts {
    id_of: HashMap<usize, u32, FxBuild>,
    texts: Vec<Text>,
}

impl Texts {
    fn id(&mut self, t: &Text) -> u32 {
        let texts = &mut self.texts;
        *self.id_of.entry(addr(t)).or_insert_with(|| {
            texts.push(t.clone());
            texts.len() as u32 - 1
        })
    }

    /// Rank of each id by its text's bytes; equal texts share a rank.
    pub fn ranks(&self) -> Vec<u32> {
        let mut by_bytes: Vec<u32> = (0..self.texts.len() as u32).collect();
        by_bytes.sort_unstable_by(|&a, &b| self.texts[a as usize].cmp(&self.texts[b as usize]));
        let mut rank = vec![0u32; self.texts.len()];
        for i in 1..by_bytes.len() {
            let (prev, this) = (by_bytes[i - 1] as usize, by_bytes[i] as usize);
            rank[this] = rank[prev] + (self.texts[prev] != self.texts[this]) as u32;
        }
        rank
    }
}

/// The keys of one family's series, in push order: [name, label name, label value, …] as ids.
#[derive(Default)]
pub struct Keys {
    ids: Vec<u32>,
    ends: Vec<u32>,
    /// The previous series' texts by position: neighbours mostly share them (job, namespace,
    /// step), which saves the map lookup.
    last: Vec<(usize, u32)>,
}

impl Keys {
    /// Series recorded.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// Records the key of `s`, the next series of the family.
    pub fn push(&mut self, s: &Sample, texts: &mut Texts) {
        let all = std::iter::once(&s.name).chain(s.labels.iter().flat_map(|(k, v)| [k, v]));
        for (j, t) in all.enumerate() {
            let a = addr(t);
            let id = match self.last.get(j) {
                Some(&(la, id)) if la == a => id,
                _ => {
                    let id = texts.id(t);
                    match self.last.get_mut(j) {
                        Some(l) => *l = (a, id),
                        None => self.last.push((a, id)),
                    }
                    id
                }
            };
            self.ids.push(id);
        }
        self.ends.push(self.ids.len() as u32);
    }

    /// Sorts `samples` (the series pushed, in push order) by their keys ranked by `rank`, drops
    /// exact duplicates (the first pushed kept) and returns how many were dropped.
    pub fn sort_and_dedup(mut self, samples: &mut Vec<Sample>, rank: &[u32]) -> u64 {
        debug_assert_eq!(self.ends.len(), samples.len(), "one key per series");
        if samples.len() < 2 {
            return 0;
        }
        for id in &mut self.ids {
            *id = rank[*id as usize];
        }
        let (ids, ends) = (&self.ids, &self.ends);
        let key = |i: u32| -> &[u32] {
            let start = if i == 0 { 0 } else { ends[i as usize - 1] as usize };
            &ids[start..ends[i as usize] as usize]
        };
        let mut order: Vec<u32> = (0..samples.len() as u32).collect();
        // Stable: of two duplicates the one pushed first is kept.
        order.sort_by(|&a, &b| key(a).cmp(key(b)));
        order.dedup_by(|b, a| key(*a) == key(*b));
        let dropped = (samples.len() - order.len()) as u64;
        if dropped == 0 && order.iter().enumerate().all(|(i, &o)| i as u32 == o) {
            return 0;
        }
        let mut taken: Vec<Option<Sample>> = samples.drain(..).map(Some).collect();
        samples.extend(order.iter().map(|&i| taken[i as usize].take().expect("each series once")));
        dropped
    }
}

/// Sorts and dedups `samples` on their own (keys taken now): for tests, and for callers
/// without a mapping's push order.
pub fn sort_and_dedup(samples: &mut Vec<Sample>) -> u64 {
    let mut texts = Texts::default();
    let mut keys = Keys::default();
    for s in samples.iter() {
        keys.push(s, &mut texts);
    }
    let rank = texts.ranks();
    keys.sort_and_dedup(samples, &rank)
}
