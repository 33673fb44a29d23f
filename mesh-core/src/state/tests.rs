//! Behaviour tests of the state machine on virtual time.
//!
//! [`Sim`] wires several [`MeshState`]s together the way a driver would: a rendezvous that answers
//! registrations and sends joined/left notices, links that open when an offer is accepted, and
//! fault injection (cut a pair, crash a node). Time only moves when a test advances it.

mod authority;
mod behaviour;
mod failover;
mod sim;
mod trust;
