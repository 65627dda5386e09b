//! A large first push on two threads. Its mapping and encoding split into independent halves
//! (families by stem, requests by series); one half runs on a scoped helper thread that gives
//! way like the exporter's own (`background`), so a pipeline's threads still come first. Small
//! snapshots stay on one thread: below `WORTH_IT` a thread costs more than it saves. Only first
//! pushes (a new set of metrics) start a thread: a repeat push is cheap, and a thread started
//! every period would leave glibc arenas behind.

use std::sync::Mutex;

/// Size from which a second thread pays off (starting one costs some 50 µs): series for the
/// encoding, metrics for the mapping (a metric is one series or a few).
pub const WORTH_IT: usize = 4096;

/// Runs `a` on a helper thread and `b` on this one, and returns both results. Where no thread
/// can be started, runs both here. A panic in either reaches the caller, as on one thread.
pub fn join<A: Send, B>(a: impl FnOnce() -> A + Send, b: impl FnOnce() -> B) -> (A, B) {
    // `a` stays here until the helper takes it, so it can still run here if none starts.
    let slot = Mutex::new(Some(a));
    std::thread::scope(|s| {
        let helper = std::thread::Builder::new().name("beam-prometheus-helper".into()).spawn_scoped(s, || {
            crate::background::give_way();
            let a = slot.lock().unwrap_or_else(|p| p.into_inner()).take();
            a.map(|a| a())
        });
        let b = b();
        let a = match helper {
            Ok(h) => h.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)),
            Err(e) => {
                log::debug!("no helper thread ({}): both halves on one thread", e);
                None
            }
        };
        let a = a.unwrap_or_else(|| {
            let a = slot.lock().unwrap_or_else(|p| p.into_inner()).take().expect("the half nobody ran");
            a()
        });
        (a, b)
    })
}
