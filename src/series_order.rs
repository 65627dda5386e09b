//! Sorting a family's series by name, then labels (the order `naming::map` promises), and
//! dropping exact duplicates, without reading the series again. Sorting `Sample`s by their
//! texts was half of a large first push's mapping: by then the label lists of 100k series are
//! out of the cache, and steps are long paths with long common prefixes. So each series' key is
//! taken when it is pushed: the ids of its name's and its label set's allocations (series share
//! both). The distinct texts are ranked by their bytes once per mapping, the distinct label sets
//! by their texts' ranks, and the series are sorted by those two integers. Equal bytes get equal
//! ranks, so the order and the duplicates are those of comparing the texts (tests/naming.rs
//! checks it against a sort by bytes).

use crate::naming::{FxBuild, Labels, Sample, Text};
use std::collections::HashMap;
use std::sync::Arc;

fn addr(t: &Text) -> usize {
    Arc::as_ptr(t) as *const u8 as usize
}

fn set_addr(l: &Labels) -> usize {
    Arc::as_ptr(l) as *const u8 as usize
}

/// The distinct text and label-set allocations of one mapping's series, in first-seen order.
#[derive(Default)]
pub struct Texts {
    id_of: HashMap<usize, u32, FxBuild>,
    texts: Vec<Text>,
    set_of: HashMap<usize, u32, FxBuild>,
    sets: Vec<Labels>,
}

impl Texts {
    fn id(&mut self, t: &Text) -> u32 {
        let texts = &mut self.texts;
        *self.id_of.entry(addr(t)).or_insert_with(|| {
            texts.push(t.clone());
            texts.len() as u32 - 1
        })
    }

    fn set_id(&mut self, l: &Labels) -> u32 {
        let sets = &mut self.sets;
        *self.set_of.entry(set_addr(l)).or_insert_with(|| {
            sets.push(l.clone());
            sets.len() as u32 - 1
        })
    }

    /// Ranks of each text id and of each set id, by bytes; equal contents share a rank.
    pub fn ranks(mut self) -> Ranks {
        // The sets' texts get ids too, before the texts are ranked.
        let sets = std::mem::take(&mut self.sets);
        let mut set_ids: Vec<u32> = Vec::with_capacity(sets.len() * 8);
        let mut set_ends: Vec<u32> = Vec::with_capacity(sets.len());
        for l in &sets {
            for (k, v) in l.iter() {
                set_ids.push(self.id(k));
                set_ids.push(self.id(v));
            }
            set_ends.push(set_ids.len() as u32);
        }
        let text = rank_by(self.texts.len(), |a, b| self.texts[a].cmp(&self.texts[b]));
        for id in &mut set_ids {
            *id = text[*id as usize];
        }
        let set = |i: usize| -> &[u32] { &set_ids[if i == 0 { 0 } else { set_ends[i - 1] as usize }..set_ends[i] as usize] };
        let set = rank_by(sets.len(), |a, b| set(a).cmp(set(b)));
        Ranks { text, set }
    }
}

/// Rank of each of `n` items by `cmp`; equal items share a rank.
fn rank_by(n: usize, cmp: impl Fn(usize, usize) -> std::cmp::Ordering) -> Vec<u32> {
    let mut by_order: Vec<u32> = (0..n as u32).collect();
    by_order.sort_unstable_by(|&a, &b| cmp(a as usize, b as usize));
    let mut rank = vec![0u32; n];
    for i in 1..by_order.len() {
        let (prev, this) = (by_order[i - 1] as usize, by_order[i] as usize);
        rank[this] = rank[prev] + cmp(prev, this).is_ne() as u32;
    }
    rank
}

/// See `Texts::ranks`.
pub struct Ranks {
    text: Vec<u32>,
    set: Vec<u32>,
}

/// The keys of one family's series, in push order: (name id, label set id).
#[derive(Default)]
pub struct Keys {
    ids: Vec<(u32, u32)>,
    /// The previous series' name and set: neighbours mostly share them, which saves the lookups.
    last: Option<(usize, u32, usize, u32)>,
}

impl Keys {
    /// Series recorded.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Records the key of `s`, the next series of the family.
    pub fn push(&mut self, s: &Sample, texts: &mut Texts) {
        let (n, l) = (addr(&s.name), set_addr(&s.labels));
        let (name, set) = match self.last {
            Some((ln, name, ls, set)) if ln == n && ls == l => (name, set),
            Some((ln, name, _, _)) if ln == n => (name, texts.set_id(&s.labels)),
            _ => (texts.id(&s.name), texts.set_id(&s.labels)),
        };
        self.last = Some((n, name, l, set));
        self.ids.push((name, set));
    }

    /// Sorts `samples` (the series pushed, in push order) by their keys ranked by `ranks`, drops
    /// exact duplicates (the first pushed kept) and returns how many were dropped.
    pub fn sort_and_dedup(self, samples: &mut Vec<Sample>, ranks: &Ranks) -> u64 {
        debug_assert_eq!(self.ids.len(), samples.len(), "one key per series");
        if samples.len() < 2 {
            return 0;
        }
        // Key, then push order: of two duplicates the one pushed first is kept.
        let mut order: Vec<(u64, u32)> = self
            .ids
            .iter()
            .enumerate()
            .map(|(i, &(n, l))| ((ranks.text[n as usize] as u64) << 32 | ranks.set[l as usize] as u64, i as u32))
            .collect();
        if order.windows(2).all(|w| w[0].0 < w[1].0) {
            return 0;
        }
        order.sort_unstable();
        order.dedup_by(|b, a| a.0 == b.0);
        let dropped = (samples.len() - order.len()) as u64;
        let mut taken: Vec<Option<Sample>> = samples.drain(..).map(Some).collect();
        samples.extend(order.iter().map(|&(_, i)| taken[i as usize].take().expect("each series once")));
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
    let ranks = texts.ranks();
    keys.sort_and_dedup(samples, &ranks)
}
