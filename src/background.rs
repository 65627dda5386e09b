//! The exporter's own threads (mapping, delivery) give way to the pipeline's. On Linux they run
//! under `SCHED_BATCH`: the same share of the CPU, but their wake-ups do not preempt a running
//! thread. Woken by a `writeMetrics` call, the mapping thread otherwise took over the caller's
//! CPU for the length of a mapping: on 2 cores, with the receivers up, calls of 0.25 ms at 1k
//! series took up to 9 ms, every millisecond of it spent in the wake-up (`notify_all`).

/// Puts the calling thread under the background policy; false where it cannot (other systems,
/// or a kernel that refuses), which only costs the caller's latency.
pub fn give_way() -> bool {
    #[cfg(target_os = "linux")]
    {
        let param = libc::sched_param { sched_priority: 0 };
        // SAFETY: `param` is a valid sched_param; pid 0 is the calling thread.
        unsafe { libc::sched_setscheduler(0, libc::SCHED_BATCH, &param) == 0 }
    }
    #[cfg(not(target_os = "linux"))]
    {
        false
    }
}

/// Whether thread `tid` of this process (0: the calling thread) runs under the background
/// policy; None when there is no such thread (any more).
pub fn gives_way(tid: i32) -> Option<bool> {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: a plain syscall on a thread id.
        match unsafe { libc::sched_getscheduler(tid) } {
            -1 => None,
            policy => Some(policy == libc::SCHED_BATCH),
        }
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = tid;
        Some(false)
    }
}
