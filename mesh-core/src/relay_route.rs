//! Which relays a relayed signal tries, and how long the relay signaler waits: the rule the
//! `relay` signaler runs and the simulators model, in one place.

use crate::id::PeerId;
use std::time::Duration;

/// The relay signaler's default wait for a relay's answer, across all tries.
pub const DEFAULT_RELAY_TIMEOUT: Duration = Duration::from_millis(500);

/// The relay signaler's default number of relays tried per signal (the admin counts as one).
pub const DEFAULT_MAX_RELAYS: usize = 3;

/// The relays to try for `to`, best first: `to` itself when linked, else the admin, then the other
/// linked peers by ascending id; at most `max`; none when this node is the admin.
pub fn relay_order(me: &PeerId, to: &PeerId, admin: Option<&PeerId>, linked: &[PeerId], max: usize) -> Vec<PeerId> {
    if linked.contains(to) {
        return vec![to.clone()];
    }
    if admin == Some(me) {
        return Vec::new();
    }
    let mut others: Vec<PeerId> = linked.iter().filter(|p| *p != me && *p != to).cloned().collect();
    others.sort();
    let mut order = Vec::new();
    if let Some(admin) = admin.filter(|a| *a != me && *a != to && linked.contains(a)) {
        others.retain(|p| p != admin);
        order.push(admin.clone());
    }
    order.extend(others);
    order.truncate(max);
    order
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> PeerId {
        PeerId::new(s).unwrap()
    }

    #[test]
    fn the_admin_goes_first_then_neighbours_by_id() {
        let linked = [p("w3"), p("w1"), p("w0"), p("w2")];
        assert_eq!(relay_order(&p("w9"), &p("w5"), Some(&p("w2")), &linked, 3), [p("w2"), p("w0"), p("w1")]);
    }

    #[test]
    fn the_admin_relays_through_nobody() {
        assert!(relay_order(&p("w0"), &p("w5"), Some(&p("w0")), &[p("w1"), p("w2")], 3).is_empty());
    }

    #[test]
    fn a_linked_target_is_its_own_relay() {
        assert_eq!(relay_order(&p("w9"), &p("w1"), Some(&p("w0")), &[p("w0"), p("w1")], 3), [p("w1")]);
    }

    #[test]
    fn an_unlinked_admin_and_the_target_itself_are_skipped() {
        let order = relay_order(&p("w9"), &p("w5"), Some(&p("w0")), &[p("w3")], 3);
        assert_eq!(order, [p("w3")]);
        assert!(relay_order(&p("w9"), &p("w5"), None, &[], 3).is_empty());
    }
}
