//! Sorting a family's series by name, then labels (the order `naming::map` promises), and
//! dropping exact duplicates, without reading the series again. Sorting `Sample`s by their
//! texts was half of a large first push's mapping: by then the label lists of 100k series are
//! out of the cache, and steps are long paths with long common prefixes. So each series' key is
//! taken as it is pushed (in a family larger than `SMALL`): its name's index among its family's few names, and the id of its
//! label set's allocation (series share sets). The distinct label texts are ranked by their bytes
//! once per mapping, the distinct sets by their texts' ranks, each family's names among
//! themselves, and the series are sorted by those two integers. Equal bytes get equal ranks, so
//! the order and the duplicates are those of comparing the texts (tests/naming.rs checks it
//! against a sort by bytes). Families of up to `SMALL` series are sorted by their texts instead,
//! shared texts compared by address: a family takes keys, for all its series, only once it
//! outgrows `SMALL`, and only the sets of such families are ranked.

use crate::naming::{FxBuild, Labels, Sample, Text};
use std::collections::HashMap;
use std::sync::Arc;

fn addr(t: &Text) -> usize {
    Arc::as_ptr(t) as *const u8 as usize
}

fn set_addr(l: &Labels) -> usize {
    Arc::as_ptr(l) as *const u8 as usize
}

/// The distinct label-set allocations of one mapping's series and their texts, in first-seen order.
#[derive(Default)]
pub struct Texts {
    id_of: HashMap<usize, u32, FxBuild>,
    texts: Vec<Text>,
    set_of: HashMap<usize, u32, FxBuild>,
    sets: Vec<Labels>,
}

impl Texts {
    /// The id of a label text, by its allocation.
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

    /// Sets recorded.
    pub fn len(&self) -> usize {
        self.sets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sets.is_empty()
    }

    /// Ranks of each set id with `needed[id]`, by its texts' bytes; equal contents share a rank.
    /// Only sorting a large family needs ranks (`SMALL`): the texts of other sets are not ranked.
    pub fn ranks(mut self, needed: &[bool]) -> Ranks {
        // The sets' texts get ids too, before the texts are ranked.
        let sets = std::mem::take(&mut self.sets);
        let wanted: Vec<usize> = (0..sets.len()).filter(|&i| needed.get(i).copied().unwrap_or(false)).collect();
        let mut set_ids: Vec<u32> = Vec::with_capacity(wanted.len() * 8);
        let mut set_ends: Vec<u32> = Vec::with_capacity(wanted.len());
        for &i in &wanted {
            for (k, v) in sets[i].iter() {
                set_ids.push(self.id(k));
                set_ids.push(self.id(v));
            }
            set_ends.push(set_ids.len() as u32);
        }
        let text = rank_by(self.texts.len(), |a, b| self.texts[a].cmp(&self.texts[b]));
        for id in &mut set_ids {
            *id = text[*id as usize];
        }
        let set_of = |w: usize| -> &[u32] { &set_ids[if w == 0 { 0 } else { set_ends[w - 1] as usize }..set_ends[w] as usize] };
        let rank = rank_by(wanted.len(), |a, b| set_of(a).cmp(set_of(b)));
        // Sets no large family holds get no rank: one used by mistake sorts last, not as a duplicate.
        let mut set = vec![u32::MAX; sets.len()];
        for (w, &i) in wanted.iter().enumerate() {
            set[i] = rank[w];
        }
        Ranks { set }
    }
}

/// Rank of each of `n` items by `cmp`; equal items share a rank.
pub fn rank_by(n: usize, cmp: impl Fn(usize, usize) -> std::cmp::Ordering) -> Vec<u32> {
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
    set: Vec<u32>,
}

/// The keys of one family's series, in push order: (name index, label set id).
#[derive(Default)]
pub struct Keys {
    ids: Vec<(u32, u32)>,
    /// The previous series' set: neighbours mostly share it, which saves the lookup.
    last: Option<(usize, u32)>,
}

impl Keys {
    /// Series recorded.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Whether sorting these series needs the ranks of their sets, and if so marks them.
    pub fn mark_needed(&self, needed: &mut [bool]) {
        if self.ids.len() > SMALL {
            for &(_, set) in &self.ids {
                needed[set as usize] = true;
            }
        }
    }

    /// Records the key of `s`, the next series of the family; `name` is the index of its name
    /// among the family's names, equal only for equal texts.
    pub fn push(&mut self, name: u32, s: &Sample, texts: &mut Texts) {
        let l = set_addr(&s.labels);
        let set = match self.last {
            Some((ls, set)) if ls == l => set,
            _ => texts.set_id(&s.labels),
        };
        self.last = Some((l, set));
        self.ids.push((name, set));
    }

    /// Sorts `samples` (the series pushed, in push order) by their keys, names ranked by
    /// `name_rank` and sets by `ranks`, drops exact duplicates (the first pushed kept) and
    /// returns how many were dropped.
    pub fn sort_and_dedup(self, samples: &mut Vec<Sample>, name_rank: &[u32], ranks: &Ranks) -> u64 {
        debug_assert_eq!(self.ids.len(), samples.len(), "one key per series");
        if samples.len() < 2 {
            return 0;
        }
        if samples.len() <= SMALL {
            return sort_small(samples);
        }
        let key = |&(n, l): &(u32, u32)| (name_rank[n as usize] as u64) << 32 | ranks.set[l as usize] as u64;
        // Key, then push order: of two duplicates the one pushed first is kept.
        let mut order: Vec<(u64, u32)> = self
            .ids
            .iter()
            .enumerate()
            .map(|(i, k)| (key(k), i as u32))
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

/// Families up to this many series (most of them: a counter's family has one per step) are
/// sorted in place by their texts, without keys or ranks: few comparisons, most of them between
/// shared texts, found equal by address.
pub const SMALL: usize = 16;

/// `Keys::sort_and_dedup` of a small family: a stable insertion sort, so of two duplicates the
/// first pushed is kept.
pub fn sort_small(samples: &mut Vec<Sample>) -> u64 {
    let n = samples.len();
    for i in 1..n {
        let mut j = i;
        while j > 0 && cmp_series(&samples[j - 1], &samples[j]).is_gt() {
            samples.swap(j - 1, j);
            j -= 1;
        }
    }
    samples.dedup_by(|later, kept| cmp_series(kept, later).is_eq());
    (n - samples.len()) as u64
}

#[inline]
fn cmp_text(a: &Text, b: &Text) -> std::cmp::Ordering {
    if Arc::ptr_eq(a, b) { std::cmp::Ordering::Equal } else { a.cmp(b) }
}

/// By name, then label set (each label by name, then value): the order the keys give.
fn cmp_series(a: &Sample, b: &Sample) -> std::cmp::Ordering {
    cmp_text(&a.name, &b.name).then_with(|| {
        if Arc::ptr_eq(&a.labels, &b.labels) {
            return std::cmp::Ordering::Equal;
        }
        for ((ak, av), (bk, bv)) in a.labels.iter().zip(b.labels.iter()) {
            let o = cmp_text(ak, bk).then_with(|| cmp_text(av, bv));
            if o.is_ne() {
                return o;
            }
        }
        a.labels.len().cmp(&b.labels.len())
    })
}

/// Sorts and dedups `samples` on their own (keys taken now): for tests, and for callers
/// without a mapping's push order.
pub fn sort_and_dedup(samples: &mut Vec<Sample>) -> u64 {
    let mut names: Vec<Text> = Vec::new();
    let mut index: HashMap<&str, u32> = HashMap::new();
    let mut texts = Texts::default();
    let mut keys = Keys::default();
    for s in samples.iter() {
        let n = *index.entry(&s.name).or_insert_with(|| {
            names.push(s.name.clone());
            names.len() as u32 - 1
        });
        keys.push(n, s, &mut texts);
    }
    let name_rank = rank_by(names.len(), |a, b| names[a].cmp(&names[b]));
    let all = vec![true; texts.len()];
    let ranks = texts.ranks(&all);
    keys.sort_and_dedup(samples, &name_rank, &ranks)
}
