//! The runner's thread hands a snapshot over and returns: `Intake::submit` only checks the
//! buffer's structure (`contract::split`, no strings decoded) and queues it; the exporter's
//! mapping thread maps, encodes and queues it for delivery (`Exporter::export_from`). So a
//! `writeMetrics` costs the Java-side encoding and a copy, never the mapping of a large first
//! push, nor anything that waits on a receiver. With a disk buffer, `submit` maps on the
//! caller's thread: the requests are on disk when it returns.
//!
//! At most `MAX_PENDING` snapshots of a pipeline wait for the mapping thread. A newer snapshot
//! replaces its pipeline's oldest waiting one beyond that: Beam's values are cumulative, so the
//! newest snapshot still carries every series' newest value; the replaced one's remote-write
//! samples are counted as dropped (by the size of the mapping of the snapshot that replaced it,
//! counted once that is mapped, so also before any mapping has ended) and logged once per episode.

use crate::contract::{self, DecodeError};
use crate::delivery::Exporter;
use std::borrow::Cow;
use std::collections::VecDeque;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Snapshots of one pipeline waiting for the mapping thread (besides the one it maps).
pub const MAX_PENDING: usize = 2;

#[derive(Default)]
struct State {
    /// (pipeline, snapshot buffer), as `Exporter::export_from` takes them.
    pending: VecDeque<(i64, Vec<u8>)>,
    /// The mapping thread is mapping a snapshot taken from `pending`.
    busy: bool,
    /// No more submissions; the mapping thread ends.
    closing: bool,
    /// Snapshots replaced in the current episode (for the log).
    replaced: u64,
    /// Per pipeline, replaced snapshots whose samples are still to be counted as dropped: by the
    /// size of that pipeline's next mapping, which covers the snapshot that replaced them.
    owed: Vec<(i64, u64)>,
}

impl State {
    fn owe(&mut self, pipeline: i64, snapshots: u64) {
        match self.owed.iter_mut().find(|(p, _)| *p == pipeline) {
            Some((_, n)) => *n += snapshots,
            None => self.owed.push((pipeline, snapshots)),
        }
    }

    fn take_owed(&mut self, pipeline: i64) -> u64 {
        take_owed(&mut self.owed, pipeline)
    }
}

/// Removes and returns what `owed` holds for `pipeline` (0 if nothing).
fn take_owed(owed: &mut Vec<(i64, u64)>, pipeline: i64) -> u64 {
    match owed.iter().position(|(p, _)| *p == pipeline) {
        Some(i) => owed.swap_remove(i).1,
        None => 0,
    }
}

/// Counts `snapshots` replaced snapshots as dropped, each the size of the newest mapping.
fn count_dropped(exporter: &Exporter, snapshots: u64) {
    if snapshots > 0 {
        exporter.stats().samples_dropped.fetch_add(exporter.remote_write_samples_per_snapshot() * snapshots, Relaxed);
    }
}

struct Shared {
    state: Mutex<State>,
    cv: Condvar,
    /// Reused by `submit` to check a buffer's structure.
    scratch: Mutex<(Vec<u8>, Vec<f64>)>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// An `Exporter` whose snapshots are mapped on a thread of its own. Everything else
/// (`stats`, `config`, `last_error`, …) is the exporter's.
pub struct Intake {
    exporter: Arc<Exporter>,
    shared: Arc<Shared>,
}

impl std::ops::Deref for Intake {
    type Target = Exporter;
    fn deref(&self) -> &Exporter {
        &self.exporter
    }
}

impl Intake {
    pub fn new(exporter: Exporter) -> Result<Intake, String> {
        let exporter = Arc::new(exporter);
        let shared = Arc::new(Shared { state: Mutex::default(), cv: Condvar::new(), scratch: Mutex::default() });
        let (e, s) = (exporter.clone(), shared.clone());
        std::thread::Builder::new()
            .name("beam-prometheus-mapping".into())
            .spawn(move || mapping_thread(&e, &s))
            .map_err(|e| format!("cannot start the mapping thread: {}", e))?;
        Ok(Intake { exporter, shared })
    }

    /// Checks `buf`'s structure and queues it for the mapping thread; returns at once.
    /// `pipeline` as `Exporter::export_from` takes it. With a disk buffer (--prometheusBufferDir)
    /// the snapshot is mapped and its requests are on disk before this returns, as README
    /// promises: nothing handed over is lost with the process.
    pub fn submit(&self, pipeline: i64, buf: Vec<u8>) -> Result<(), DecodeError> {
        if self.exporter.config().buffer_dir.is_some() {
            return self.exporter.export_from(pipeline, Cow::Owned(buf));
        }
        {
            let mut scratch = lock(&self.shared.scratch);
            let (skeleton, fields) = &mut *scratch;
            contract::split(&buf, skeleton, fields)?;
        }
        let mut st = lock(&self.shared.state);
        if st.closing {
            drop(st);
            log::warn!("metrics exported after the exporter was closed are ignored");
            return Ok(());
        }
        // The bound is per pipeline: a snapshot replaces one of its own pipeline, never another's
        // (each pipeline's latest is part of what the exporter maps).
        let mut replaced = 0u64;
        while st.pending.iter().filter(|(p, _)| *p == pipeline).count() >= MAX_PENDING {
            let Some(i) = st.pending.iter().position(|(p, _)| *p == pipeline) else { break };
            st.pending.remove(i);
            replaced += 1;
        }
        st.pending.push_back((pipeline, buf));
        let first_of_episode = replaced > 0 && st.replaced == 0;
        st.replaced += replaced;
        if replaced > 0 {
            // Counted once the snapshot that replaced them is mapped: only then is its size known
            // (the newest mapping may be of another pipeline, or not ended yet).
            st.owe(pipeline, replaced);
        }
        drop(st);
        self.shared.cv.notify_all();
        if first_of_episode {
            log::warn!(
                "snapshots arrive faster than the exporter maps them: the older of {} waiting snapshots was replaced by the newest \
                 (its remote-write samples are counted in samples_dropped; the newest carries every series' newest value)",
                MAX_PENDING
            );
        }
        Ok(())
    }

    /// Waits until every submitted snapshot is mapped and delivered (or dropped); false on timeout.
    pub fn flush(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        self.mapped_by(deadline) && self.exporter.flush(deadline.saturating_duration_since(Instant::now()))
    }

    /// Maps what is still waiting (here, once the mapping thread is idle), then closes the
    /// exporter (`Exporter::close`) with what is left of `timeout`.
    pub fn close(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let (left, mut owed) = {
            let mut st = lock(&self.shared.state);
            st.closing = true;
            self.shared.cv.notify_all();
            while st.busy {
                let now = Instant::now();
                if now >= deadline {
                    break;
                }
                st = self.shared.cv.wait_timeout(st, deadline - now).unwrap_or_else(|p| p.into_inner()).0;
            }
            (std::mem::take(&mut st.pending), std::mem::take(&mut st.owed))
        };
        for (pipeline, buf) in left {
            if let Err(e) = self.exporter.export_from(pipeline, Cow::Owned(buf)) {
                log::error!("{}", e);
            }
            count_dropped(&self.exporter, take_owed(&mut owed, pipeline));
        }
        // Owed for a snapshot the mapping thread still maps at the deadline: its newest size.
        for (_, n) in owed {
            count_dropped(&self.exporter, n);
        }
        self.exporter.close(deadline.saturating_duration_since(Instant::now()))
    }

    /// True once nothing waits for or is in the mapping thread, false at `deadline`.
    fn mapped_by(&self, deadline: Instant) -> bool {
        let mut st = lock(&self.shared.state);
        while st.busy || !st.pending.is_empty() {
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            st = self.shared.cv.wait_timeout(st, deadline - now).unwrap_or_else(|p| p.into_inner()).0;
        }
        true
    }
}

impl Drop for Intake {
    fn drop(&mut self) {
        lock(&self.shared.state).closing = true;
        self.shared.cv.notify_all();
    }
}

fn mapping_thread(exporter: &Exporter, shared: &Shared) {
    crate::background::give_way();
    loop {
        let (pipeline, buf) = {
            let mut st = lock(&shared.state);
            loop {
                if let Some(b) = st.pending.pop_front() {
                    st.busy = true;
                    break b;
                }
                if st.closing {
                    return;
                }
                st = shared.cv.wait_timeout(st, Duration::from_secs(1)).unwrap_or_else(|p| p.into_inner()).0;
            }
        };
        // The structure was checked by `submit`; decoding can still refuse what `split` does
        // not read (a string that is not UTF-8).
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| exporter.export_from(pipeline, Cow::Owned(buf))));
        match result {
            Ok(Ok(())) => {}
            Ok(Err(e)) => log::error!("{}", e),
            Err(_) => log::error!("internal error: mapping a snapshot panicked; it was dropped"),
        }
        let mut st = lock(&shared.state);
        // Before `busy` clears, so a flush that returns has them counted.
        count_dropped(exporter, st.take_owed(pipeline));
        st.busy = false;
        if st.pending.is_empty() && st.replaced > 0 {
            st.replaced = 0;
        }
        drop(st);
        shared.cv.notify_all();
    }
}
