//! A real TURN server (coturn's `turnserver`) on a lab host, for links that only a relay gets
//! through. Long-term credentials, UDP only; its pid file and user database live in a per-run
//! temporary directory. Stopped on drop (and with the lab in any case).

use crate::Lab;
use std::process::{Child, Stdio};
use std::time::Duration;

/// A running `turnserver`.
pub struct Turn {
    child: Child,
    dir: std::path::PathBuf,
    /// `turn:ip:3478`.
    pub url: String,
    /// The one user.
    pub username: String,
    /// Its password.
    pub credential: String,
}

impl Turn {
    /// Starts coturn on host `i`, listening and relaying on the host's lab address.
    pub fn start(lab: &Lab, i: usize) -> Result<Self, String> {
        crate::run("turnserver", &["--version"]).map_err(|e| format!("coturn is needed for TURN: {e}"))?;
        let ip = lab.host(i).ip.to_string();
        let dir = std::env::temp_dir().join(format!("{}-turn{i}", lab.prefix()));
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let (username, credential) = ("mesh".to_string(), "lab-secret".to_string());
        let path = |name: &str| dir.join(name).to_string_lossy().into_owned();
        let mut child = lab
            .command(i, std::path::Path::new("turnserver"))
            .args(["-n", "--no-cli", "--no-tls", "--no-dtls", "--fingerprint", "--lt-cred-mech", "--realm", "lab"])
            .args(["-L", &ip, "-E", &ip, "--min-port", "49152", "--max-port", "49999"])
            .args(["--user", &format!("{username}:{credential}")])
            .args([
                "--log-file",
                "stdout",
                "--simple-log",
                "--pidfile",
                &path("turn.pid"),
                "--userdb",
                &path("turn.db"),
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start turnserver: {e}"))?;
        // NETLAB_TURN_LOG=1 echoes its log, for debugging a TURN scenario.
        let ready = crate::await_line(&mut child, "Total General servers", "NETLAB_TURN_LOG", Duration::from_secs(20));
        let turn = Self { child, dir, url: format!("turn:{ip}:3478"), username, credential };
        if ready {
            Ok(turn)
        } else {
            Err("turnserver did not start within 20 s".into())
        }
    }

    /// The `[webrtc]` line that points a worker at this server.
    pub fn ice_servers_toml(&self) -> String {
        format!(
            "ice_servers = [{{ urls = [\"{}\"], username = \"{}\", credential = \"{}\" }}]",
            self.url, self.username, self.credential
        )
    }
}

impl Drop for Turn {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
