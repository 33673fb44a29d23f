//! mesh patch: answering connectivity checks that arrive before the remote description.
//!
//! The answerer starts its checks as soon as it has the offer, so its first check reaches the
//! offerer about half a round trip before the answer does (the answer goes through the
//! signaling server). Upstream dropped such a check ("password is empty") and the pair waited
//! for a retransmission. RFC 8445 §7.3 says an agent that receives a Binding request before the
//! remote candidates "MUST immediately generate a response": the request is authenticated with
//! our own password, and so is the response, so nothing about the peer is needed to answer.
//! No candidate or pair is created here: the answer's candidates do that when they arrive, and
//! the peer's pair has already succeeded by then.

use super::*;

impl Agent {
    /// Answers a Binding request received while the remote credentials are unknown; checks that
    /// it names our ufrag and carries our password's integrity first.
    pub(crate) fn answer_early_check(
        &mut self,
        now: Instant,
        m: &mut Message,
        local_index: usize,
        remote_addr: SocketAddr,
    ) -> Result<()> {
        let mut username = Username::new(ATTR_USERNAME, String::new());
        username.get_from(m)?;
        let ours = format!("{}:", self.ufrag_pwd.local_credentials.ufrag);
        if !username.to_string().starts_with(&ours) {
            debug!(
                "[{}]: discard early check from {}: username {} is not for us",
                self.get_name(),
                remote_addr,
                username
            );
            return Err(Error::ErrMismatchUsername);
        }
        let local_pwd = self.ufrag_pwd.local_credentials.pwd.clone();
        assert_inbound_message_integrity(m, local_pwd.as_bytes(), self.crypto_provider.crypto())?;

        let mut out = Message::new();
        out.build(&[
            Box::new(m.clone()),
            Box::new(BINDING_SUCCESS),
            Box::new(XorMappedAddress {
                ip: remote_addr.ip(),
                port: remote_addr.port(),
            }),
            Box::new(MessageIntegrity::new_short_term_integrity_with_provider(
                local_pwd,
                self.crypto_provider.crypto(),
            )),
            Box::new(FINGERPRINT),
        ])?;
        trace!(
            "[{}]: answered an early check from {}",
            self.get_name(),
            remote_addr
        );
        self.send_stun_to(now, &out, local_index, remote_addr);
        Ok(())
    }
}
