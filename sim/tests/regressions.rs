//! Every bug the simulator found, as the small schedule it was shrunk to, named after the seed
//! that found it. Each failed before its fix (the note on each says which invariant broke).

use mesh_sim::schedule::{Fault, Net, Schedule, Step, Target};

fn net(latency_ms: u64, jitter_ms: u64, loss_pct: u64, server_ms: u64) -> Net {
    Net { latency_ms, jitter_ms, loss_pct, server_ms }
}

fn worker(name: &str, priority: u64) -> Fault {
    Fault::Join { name: name.into(), client: false, priority }
}

fn named(name: &str) -> Target {
    Target::Named(name.into())
}

/// Runs the schedule and fails with the trace if any invariant broke.
fn holds(seed: u64, net: Net, steps: &[(u64, Fault)]) {
    let steps = steps.iter().map(|(after_ms, fault)| Step { after_ms: *after_ms, fault: fault.clone() }).collect();
    let schedule = Schedule { seed, net, steps };
    let outcome = mesh_sim::run(&schedule, true);
    if let Some(v) = &outcome.violation {
        panic!("{schedule}broke \"{}\" at {} ms: {}\n{}", v.invariant, v.at_ms, v.detail, outcome.trace.join("\n"));
    }
}

/// A rival admin that steps down withdraws at the server; the winner had announced before the
/// rival did, so the server named nobody ("converges": the server names None). Fixed: an admin
/// announces again when a worker verifies it.
#[test]
fn seed_28_the_server_names_the_admin_after_a_rival_steps_down() {
    holds(
        28,
        net(42, 14, 0, 51),
        &[
            (0, worker("w0", 16)),
            (0, worker("w1", 24)),
            (1884, worker("w2", 0)),
            (254, worker("w6", 8)),
            (0, Fault::Leave(Target::Admin)),
        ],
    );
}

/// A worker that restarts under the same peer id dialed with the session ids of its
/// predecessor ("session ids unique"). Fixed: a process starts its sessions from the clock.
#[test]
fn seed_6_a_restarted_worker_never_reuses_a_session_id() {
    holds(
        6,
        net(71, 0, 0, 4),
        &[(0, worker("w0", 0)), (0, worker("w5", 8)), (8, Fault::Leave(named("w5"))), (0, worker("w5", 16))],
    );
}

/// The admin crashed while the server was down: nobody ever said it left, so the survivor
/// followed it (or dialed it) for ever and listed it in the registry ("converges"). Fixed: a
/// peer the restarted server no longer lists is forgotten (at once if never reached, after a
/// grace if it was linked).
#[test]
fn seed_32_a_worker_that_died_while_the_server_was_down_is_forgotten() {
    for after_ms in [65, 522] {
        holds(
            32,
            net(24, 0, 5, 24),
            &[
                (0, worker("w0", 16)),
                (0, worker("w1", 16)),
                (after_ms, Fault::ServerDown),
                (0, Fault::Crash(Target::Admin)),
            ],
        );
    }
}

/// The admin's peer list, sent just before a worker left, arrived after the goodbye and
/// brought the leaver back: it was dialed for ever ("converges"). Fixed: departed peers are
/// remembered; a snapshot does not bring them back.
#[test]
fn seed_57_a_stale_peer_list_does_not_bring_back_a_worker_that_left() {
    holds(
        57,
        net(75, 0, 0, 12),
        &[
            (0, worker("w0", 0)),
            (0, worker("w2", 8)),
            (0, worker("w3", 24)),
            (264, worker("w4", 24)),
            (149, worker("w5", 0)),
            (119, Fault::Leave(named("w3"))),
        ],
    );
}

/// The admin froze; the other worker took the role, announced it, then crashed: the server
/// forgot its admin and the thawed admin never told it again ("converges": the server names
/// None). Fixed: when the admin the server named leaves, an admin announces itself again.
#[test]
fn seed_70_a_thawed_admin_tells_the_server_again() {
    holds(
        70,
        net(45, 0, 1, 28),
        &[
            (0, worker("w0", 24)),
            (0, worker("w1", 8)),
            (559, Fault::Freeze(Target::Admin)),
            (1809, Fault::Query("c0".into())),
            (1491, Fault::Crash(named("w1"))),
        ],
    );
}

/// A client cut off from every worker failed its attempt to the only worker left and gave up
/// on any admin; when the link later opened it followed nobody ("converges": c0 follows None).
/// Fixed: a client keeps the only worker there is as its target.
#[test]
fn seed_265_a_client_whose_only_worker_was_unreachable_follows_it_once_linked() {
    holds(
        265,
        net(76, 0, 20, 2),
        &[
            (0, Fault::Join { name: "c0".into(), client: true, priority: 0 }),
            (0, worker("w0", 24)),
            (0, worker("w1", 24)),
            (739, Fault::Partition(vec![vec!["c0".into(), "c1".into()], vec!["w0".into(), "w1".into()]])),
            (4016, Fault::Leave(Target::Admin)),
        ],
    );
}

/// A worker crashed while the server was down and came back with a new record at version 1;
/// the survivor kept the old record, which won on content ("converges": w1 holds w0's old
/// record). Fixed: a process starts its record's version from the clock.
#[test]
fn seed_2244_a_restarted_workers_record_replaces_its_predecessors() {
    holds(
        2244,
        net(35, 0, 20, 6),
        &[
            (0, worker("w0", 24)),
            (0, worker("w1", 8)),
            (8, Fault::ServerDown),
            (0, Fault::Crash(named("w0"))),
            (0, worker("w0", 16)),
        ],
    );
}

/// The admin's notice of a joiner waited in a cut link and arrived after the server said the
/// joiner had crashed: the joiner came back and was dialed for ever ("converges"). Fixed: only
/// the rendezvous, or a link that opens, brings a departed peer back.
#[test]
fn seed_22014_the_admins_late_join_notice_does_not_undo_a_departure() {
    holds(
        22014,
        net(99, 0, 1, 8),
        &[
            (0, worker("w0", 0)),
            (0, worker("w1", 0)),
            (0, Fault::Settle),
            (0, Fault::Partition(vec![vec!["w0".into(), "c1".into()], vec!["w1".into(), "w2".into(), "w3".into()]])),
            (0, worker("w4", 24)),
            (122, Fault::Crash(named("w4"))),
        ],
    );
}

/// A client's link to the admin died of silence (20 % loss) while the answer to its registry
/// query was on it; the link was made again, but the query was never sent again and expired
/// ("registry query answered within the bound"). Fixed: queries sent to a peer whose link is
/// lost go again once a verified admin is linked.
#[test]
fn seed_51506_a_query_whose_answer_was_lost_with_the_link_is_sent_again() {
    holds(
        51506,
        net(63, 12, 20, 43),
        &[
            (0, worker("w0", 24)),
            (42, worker("w1", 8)),
            (43, worker("w2", 0)),
            (10, client("c0")),
            (45, worker("w3", 0)),
            (44, worker("w4", 24)),
            (18, client("c1")),
            (50, worker("w5", 8)),
            (35, worker("w6", 16)),
            (18, worker("w7", 0)),
            (39, worker("w8", 8)),
        ],
    );
}

fn client(name: &str) -> Fault {
    Fault::Join { name: name.into(), client: true, priority: 0 }
}

/// The admin crashed while the strongest worker was frozen, then the last other worker left:
/// the thawed worker became admin while its room still counted the leaver, so its own vote was
/// no majority and it did not announce; nothing announced later, and the server named nobody
/// ("converges": the server names None). Fixed: an announcement that waited for the proof to
/// hold goes out as soon as it holds (here: the leaver is gone).
#[test]
fn seed_966_an_admin_announces_once_its_proof_holds() {
    holds(
        966,
        net(5, 0, 0, 5),
        &[
            (0, worker("w0", 8)),
            (0, worker("w1", 0)),
            (0, worker("w2", 16)),
            (34, Fault::Freeze(named("w2"))),
            (0, Fault::Crash(Target::Admin)),
            (17, Fault::Leave(named("w1"))),
            (0, Fault::Settle),
        ],
    );
}

/// A worker crashed while the server was down; the client registered again and the server no
/// longer listed it, but the client kept counting it, so no admin's proof ever held for it
/// ("converges": the client follows an admin it never verifies). Fixed: a client takes the
/// rendezvous' list as the workers present when it registers again.
#[test]
fn seed_4002_a_client_forgets_the_workers_the_restarted_server_no_longer_lists() {
    holds(
        4002,
        net(5, 0, 0, 5),
        &[
            (0, worker("w0", 0)),
            (0, client("c0")),
            (0, worker("w1", 8)),
            (23, Fault::Partition(vec![vec!["c0".into()], vec!["w1".into(), "w2".into()], vec!["w0".into()]])),
            (0, Fault::ServerDown),
            (0, Fault::Crash(named("w1"))),
            (0, Fault::Settle),
        ],
    );
}

/// After a partition, a worker verifying a candidate that follows another admin (named in a
/// cycle of acks it had chased before) asked it again for ever: only a verified admin's
/// heartbeat could send it on ("converges": w3 follows w4, unverified). Fixed: the heartbeat of
/// the candidate being verified, naming the admin it follows, sends this node to verify that one.
#[test]
fn seed_15989_the_candidates_heartbeat_naming_its_admin_ends_a_chase() {
    holds(
        15989,
        net(3, 1, 20, 18),
        &[
            (0, worker("w0", 0)),
            (0, client("c0")),
            (0, client("c1")),
            (0, worker("w1", 16)),
            (0, worker("w2", 16)),
            (0, worker("w3", 8)),
            (0, worker("w4", 24)),
            (0, Fault::Settle),
            (
                3291,
                Fault::Partition(vec![
                    vec!["w0".into(), "w4".into()],
                    vec!["w1".into(), "w2".into(), "w3".into(), "c0".into(), "c1".into()],
                ]),
            ),
            (2379, Fault::Crash(named("c0"))),
            (460, Fault::Settle),
        ],
    );
}

/// Found once the simulator ran the real relay path: w3's offer to w0 went by relay (through
/// w1, frozen) and, the relay's timeout passed, by the server too. Frozen w0 answered the first
/// copy; its attempt failed, and the second copy (same session) was answered again: an attempt
/// for a session already handled, which nothing ever closed ("converges": w0 holds an
/// `accepting` entry for w3 for ever). Fixed: an offer of a session handled before is dropped.
#[test]
fn seed_75550_an_offer_that_came_by_two_paths_is_answered_once() {
    holds(
        75550,
        net(10, 0, 20, 36),
        &[
            (0, worker("w0", 16)),
            (0, worker("w1", 24)),
            (0, worker("w3", 16)),
            (414, Fault::Freeze(named("w0"))),
            (2593, Fault::Freeze(named("w1"))),
            (2325, Fault::Leave(named("w3"))),
            (81, Fault::Leave(named("w2"))),
        ],
    );
}

/// Found once the simulator ran the real relay path: w5 died while the server was down, so
/// nobody ever said it left. Newcomer w9 learned of it only from the admin's peer list (a
/// snapshot older than the death) and dialed it for ever ("converges": w9 holds a `dialing`
/// entry for w5). Fixed: a worker only the admin or an offer named, never linked and never
/// named by the rendezvous within the unlisted grace, is forgotten.
#[test]
fn seed_83399_a_worker_known_only_from_a_stale_peer_list_is_forgotten() {
    holds(
        83399,
        net(26, 0, 0, 18),
        &[
            (0, worker("w0", 0)),
            (0, worker("w5", 8)),
            (1832, Fault::ServerDown),
            (0, worker("w9", 8)),
            (762, Fault::Crash(named("w5"))),
        ],
    );
}
