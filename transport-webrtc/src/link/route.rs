//! Which network path a link took: the types of the selected ICE candidate pair, local then
//! remote (`host`, `srflx`, `prflx`, `relay`), for example `relay/prflx` for a link through TURN.

use std::sync::Arc;
use webrtc::peer_connection::{PeerConnection, RTCStatsReportEntry, StatsSelector};

/// The selected pair's candidate types as `local/remote`, if a pair is selected.
pub(super) async fn selected(pc: &Arc<dyn PeerConnection>) -> Option<String> {
    let report = pc.get_stats(std::time::Instant::now(), StatsSelector::None).await;
    let pair_id = report.transport()?.selected_candidate_pair_id.clone();
    let Some(RTCStatsReportEntry::IceCandidatePair(pair)) = report.get(&pair_id) else { return None };
    // The pair names its candidates by their own ids; the report's entry ids carry a prefix.
    let kind = |candidate: &str| {
        report.iter().find_map(|entry| match entry {
            RTCStatsReportEntry::LocalCandidate(c) | RTCStatsReportEntry::RemoteCandidate(c)
                if entry.id().ends_with(candidate) =>
            {
                Some(c.candidate_type.to_string())
            }
            _ => None,
        })
    };
    // Remote candidates that were signalled (host, srflx, relay) are listed; one the agent only
    // learned from a peer's check (webrtc 0.21 leaves it out of the report) is peer-reflexive.
    let remote = kind(&pair.remote_candidate_id).unwrap_or_else(|| "prflx".into());
    Some(format!("{}/{remote}", kind(&pair.local_candidate_id)?))
}
