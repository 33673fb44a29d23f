//! Timeline marks: one structured `tracing` event per step of a join or of a link attempt, so the
//! steps of every process in a run can be put on one time axis.
//!
//! Every mark is an INFO event of target [`TARGET`] with a `step` field, the wall-clock time
//! `unix_us` (processes on one host share the clock) and, for link steps, `peer` and `session`
//! (transport steps get them from the `link` span the node opens around each attempt). They are
//! off unless the log filter enables the target, e.g. `RUST_LOG=warn,mesh_timeline=info`;
//! `mesh-bench formation --breakdown` reads them back from JSON logs.

/// The tracing target of every mark.
pub const TARGET: &str = "mesh_timeline";

/// Microseconds since the Unix epoch (0 if the clock is before it).
pub fn unix_us() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_micros() as u64).unwrap_or(0)
}

/// Emits a timeline mark: `mark!("step")` or `mark!("step", peer = %p, ...)`.
#[macro_export]
macro_rules! mark {
    ($step:expr) => {
        ::tracing::info!(target: "mesh_timeline", step = $step, unix_us = $crate::timeline::unix_us())
    };
    ($step:expr, $($field:tt)+) => {
        ::tracing::info!(target: "mesh_timeline", step = $step, unix_us = $crate::timeline::unix_us(), $($field)+)
    };
}

/// The span around one link attempt (`link{remote, session}`): enabled with the timeline, so the
/// transport's marks inside it name their link, and otherwise at DEBUG as before.
pub fn link_span(peer: &crate::PeerId, session: &crate::SessionId) -> tracing::Span {
    if tracing::enabled!(target: "mesh_timeline", tracing::Level::INFO) {
        tracing::info_span!(target: "mesh_timeline", "link", remote = %peer, session = %session)
    } else {
        tracing::debug_span!("link", remote = %peer, session = %session)
    }
}

/// The `q` quantile (0 to 1) of `sorted` samples, `None` when there are none.
pub fn quantile<T: Copy>(sorted: &[T], q: f64) -> Option<T> {
    let last = sorted.len().checked_sub(1)?;
    Some(sorted[((sorted.len() as f64 * q) as usize).min(last)])
}
