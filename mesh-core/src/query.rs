//! Registry queries: which workers a client asks the admin for, and the answer's page.
//!
//! A filter matches on status, a minimum priority (the `priority_key` value), and tags (every
//! required tag must be in the worker's metadata `tags` list). Matches are sorted by priority,
//! highest first, then by peer id, and cut to `max`. The answer says how many workers are
//! present (`total_count`) and how many matched before the cut (`matched_count`).

use crate::room::{MemberInfo, RoomState, WorkerStatus};
use serde::{Deserialize, Serialize};

/// What a registry query asks for; the default matches every present worker.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct RegistryFilter {
    /// Only workers with this status (any status when absent).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<WorkerStatus>,
    /// Only workers whose priority is at least this.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_priority: Option<u64>,
    /// Only workers whose metadata `tags` list holds every one of these.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// At most this many workers in the answer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max: Option<usize>,
}

/// The answer to a registry query.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegistryPage {
    /// Matching workers, highest priority first, then by peer id; at most `max`.
    pub workers: Vec<MemberInfo>,
    /// Present workers in the room, matching or not.
    pub total_count: usize,
    /// Workers that matched, before the `max` cut.
    pub matched_count: usize,
}

impl RegistryFilter {
    /// True when `member` passes every condition of the filter.
    pub fn matches(&self, member: &MemberInfo) -> bool {
        let r = &member.record;
        let status_ok = self.status.is_none_or(|s| s == r.status);
        let priority_ok = self.min_priority.is_none_or(|p| r.priority >= p);
        let tags: Vec<&str> = match r.metadata.get("tags") {
            Some(serde_json::Value::Array(list)) => list.iter().filter_map(|t| t.as_str()).collect(),
            _ => Vec::new(),
        };
        status_ok && priority_ok && self.tags.iter().all(|t| tags.contains(&t.as_str()))
    }

    /// Applies the filter to the present workers of `room`.
    pub fn apply(&self, room: &RoomState) -> RegistryPage {
        let present: Vec<MemberInfo> =
            room.present().map(|(peer, record)| MemberInfo::new(peer.clone(), record.clone())).collect();
        let total_count = present.len();
        let mut workers: Vec<MemberInfo> = present.into_iter().filter(|m| self.matches(m)).collect();
        workers.sort_by(|a, b| b.record.priority.cmp(&a.record.priority).then_with(|| a.peer.cmp(&b.peer)));
        let matched_count = workers.len();
        if let Some(max) = self.max {
            workers.truncate(max);
        }
        RegistryPage { workers, total_count, matched_count }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::room::{Metadata, WorkerRecord};
    use crate::PeerId;

    fn room() -> RoomState {
        let mut room = RoomState::default();
        for (name, priority, status, tags) in [
            ("a", 8, WorkerStatus::Available, vec!["fp8"]),
            ("b", 80, WorkerStatus::Available, vec!["fp8", "nvlink"]),
            ("c", 80, WorkerStatus::Busy, vec!["nvlink"]),
            ("d", 24, WorkerStatus::Available, vec![]),
            ("e", 99, WorkerStatus::Leaving, vec!["fp8"]),
        ] {
            let mut metadata = Metadata::new();
            metadata.insert("tags".into(), serde_json::json!(tags));
            let mut record = WorkerRecord::new(priority, metadata);
            record.status = status;
            room.merge(&PeerId::new(name).unwrap(), &record);
        }
        room
    }

    fn names(page: &RegistryPage) -> Vec<&str> {
        page.workers.iter().map(|m| m.peer.as_str()).collect()
    }

    #[test]
    fn no_filter_returns_every_present_worker_by_priority_then_id() {
        let page = RegistryFilter::default().apply(&room());
        assert_eq!(names(&page), ["b", "c", "d", "a"]);
        assert_eq!((page.total_count, page.matched_count), (4, 4));
    }

    #[test]
    fn filters_combine_and_max_cuts_after_counting() {
        let f =
            RegistryFilter { status: Some(WorkerStatus::Available), tags: vec!["fp8".into()], ..Default::default() };
        assert_eq!(names(&f.apply(&room())), ["b", "a"]);
        let f = RegistryFilter { min_priority: Some(24), max: Some(2), ..Default::default() };
        let page = f.apply(&room());
        assert_eq!(names(&page), ["b", "c"]);
        assert_eq!((page.total_count, page.matched_count), (4, 3));
        let f = RegistryFilter { tags: vec!["fp8".into(), "nvlink".into()], ..Default::default() };
        assert_eq!(names(&f.apply(&room())), ["b"]);
    }

    #[test]
    fn the_filter_reads_from_json_with_every_field_optional() {
        let f: RegistryFilter = serde_json::from_str(r#"{"status":"available","tags":["x"]}"#).unwrap();
        assert_eq!(f.status, Some(WorkerStatus::Available));
        assert_eq!(f.max, None);
        assert!(serde_json::from_str::<RegistryFilter>(r#"{"status":"sleeping"}"#).is_err());
    }
}
