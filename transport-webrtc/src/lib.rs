//! # transport-webrtc
//!
//! The `webrtc` Transport plugin (WebRTC data channels, `webrtc` crate 0.21 line).
//!
//! **Status: not implemented yet** (tracked by its own issue). The crate builds against the
//! `webrtc` dependency so the workspace and CI already pay its build cost; no plugin is registered,
//! so configuring `transport = "webrtc"` fails with the list of known transports.
