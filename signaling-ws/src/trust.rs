//! What the server checks before it takes a member's word: the key a member registers against
//! the room's allowlist, and an admin's claim against the workers' signed votes (docs/PROTOCOL.md,
//! "Keys and the admin").

use mesh_core::identity::PublicKey;
use mesh_core::{MemberInfo, PeerId, Role, RoomId, Vote, MAX_EPOCH};
use std::collections::BTreeSet;

/// Votes read from one announcement (a room has at most a few hundred workers).
const MAX_VOTES: usize = 1024;

/// True if a peer registering as `role` with `key` may join under the server's allowlists
/// (`allow_workers`, `allow_clients`; an empty list allows any key, a list requires one on it;
/// worker keys may always join as clients).
/// The rule is the nodes' own ([`mesh_core::identity::Allowlist`]).
pub fn allowed(workers: &[String], clients: &[String], role: Role, key: Option<&str>) -> bool {
    let lists = mesh_core::TrustConfig { workers: workers.to_vec(), clients: clients.to_vec() };
    lists.allowlist().admits(role, key)
}

/// Checks `admin`'s claim to the role in `room` at `epoch`: the votes that verify against the
/// keys the `workers` registered must come from a strict majority of them. `checked` are voters
/// whose votes for this admin and epoch verified before (an admin announces its proof again as
/// it grows): they are not checked again. The voters that verified, or why the claim fails.
pub fn check_admin_proof(
    room: &RoomId,
    admin: &PeerId,
    epoch: u64,
    votes: &[Vote],
    workers: &[MemberInfo],
    checked: &BTreeSet<PeerId>,
) -> Result<BTreeSet<PeerId>, String> {
    if epoch > MAX_EPOCH {
        return Err(format!("epoch {epoch} is beyond the largest taken ({MAX_EPOCH})"));
    }
    let mut voters = BTreeSet::new();
    for vote in votes.iter().take(MAX_VOTES) {
        let Some(worker) = workers.iter().find(|w| w.peer == vote.voter) else { continue };
        let verifies = || {
            let key = worker.key.as_deref().and_then(PublicKey::parse);
            key.is_some_and(|k| k.signed_vote(room, epoch, admin, vote.sig.as_deref()))
        };
        if checked.contains(&vote.voter) || verifies() {
            voters.insert(vote.voter.clone());
        }
    }
    if voters.len() * 2 > workers.len() {
        Ok(voters)
    } else {
        Err(format!(
            "{} of the room's {} workers voted for {admin} at epoch {epoch} (signatures that verify); a strict majority is needed",
            voters.len(),
            workers.len()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mesh_core::identity::NodeKey;
    use mesh_core::WorkerRecord;

    fn worker(name: &str, key: &NodeKey) -> MemberInfo {
        MemberInfo {
            key: Some(key.public_hex()),
            ..MemberInfo::new(PeerId::new(name).unwrap(), WorkerRecord::new(0, Default::default()))
        }
    }

    #[test]
    fn a_claim_stands_only_on_a_strict_majority_of_verified_votes() {
        let room = RoomId::new("r").unwrap();
        let keys: Vec<NodeKey> = (0..4).map(|_| NodeKey::generate()).collect();
        let workers: Vec<MemberInfo> = keys.iter().enumerate().map(|(i, k)| worker(&format!("w{i}"), k)).collect();
        let admin = PeerId::new("w0").unwrap();
        let vote = |i: usize, epoch: u64| Vote {
            voter: workers[i].peer.clone(),
            sig: Some(keys[i].sign_vote(&room, epoch, &admin)),
        };
        let three: Vec<Vote> = (0..3).map(|i| vote(i, 5)).collect();
        let none = BTreeSet::new();
        let check = |admin: &PeerId, epoch, votes: &[Vote], workers: &[MemberInfo]| {
            check_admin_proof(&room, admin, epoch, votes, workers, &none)
        };
        assert_eq!(check(&admin, 5, &three, &workers).expect("3 of 4").len(), 3);
        assert!(check(&admin, 5, &three[..2], &workers).is_err(), "2 of 4 is no majority");
        assert!(check(&admin, 6, &three, &workers).is_err(), "votes for another epoch");
        let other = PeerId::new("w3").unwrap();
        assert!(check(&other, 5, &three, &workers).is_err(), "votes for another admin");
        let repeated = vec![vote(0, 5), vote(0, 5), vote(0, 5)];
        assert!(check(&admin, 5, &repeated, &workers).is_err(), "one voter counted once");
        let forged: Vec<Vote> = (0..3)
            .map(|i| Vote { voter: workers[i].peer.clone(), sig: Some(keys[3].sign_vote(&room, 5, &admin)) })
            .collect();
        assert!(check(&admin, 5, &forged, &workers).is_err(), "signed with another key");
        assert!(check(&admin, u64::MAX, &three, &workers).is_err(), "a huge epoch");
        // Voters checked before count without their signature again; a non-member never does.
        let unsigned: Vec<Vote> =
            ["w0", "w1", "ghost"].iter().map(|v| Vote { voter: PeerId::new(*v).unwrap(), sig: None }).collect();
        let before: BTreeSet<PeerId> = ["w0", "w1", "ghost"].iter().map(|v| PeerId::new(*v).unwrap()).collect();
        assert!(check_admin_proof(&room, &admin, 5, &unsigned, &workers, &before).is_err(), "2 members of 4");
        let mut grown = unsigned.clone();
        grown.push(vote(2, 5));
        assert!(check_admin_proof(&room, &admin, 5, &grown, &workers, &before).is_ok(), "the new vote is checked");
    }

    #[test]
    fn allowlists_admit_only_listed_keys() {
        let (w, c) = (vec!["AB".to_string()], vec!["cd".to_string()]);
        assert!(allowed(&[], &[], Role::Worker, None), "no list: open");
        assert!(allowed(&w, &c, Role::Worker, Some("ab")));
        assert!(!allowed(&w, &c, Role::Worker, Some("cd")), "a client key is no worker key");
        assert!(!allowed(&w, &c, Role::Worker, None));
        assert!(allowed(&w, &c, Role::Client, Some("cd")));
        assert!(allowed(&w, &c, Role::Client, Some("ab")), "a worker may join as a client");
        assert!(!allowed(&w, &c, Role::Client, Some("ef")));
        assert!(allowed(&w, &[], Role::Client, Some("ef")), "no client list: any client");
    }
}
