//! Configuration: defaults, file, environment, and every refusal.

use super::*;
use figment::Jail;

#[test]
fn defaults_then_file_then_environment() {
    Jail::expect_with(|jail| {
        jail.create_file(
            "mesh.toml",
            r#"
            room = "lab-1"
            transport = "memory"
            signaling = ["memory"]
            [metadata]
            gpu_memory_mb = 24000
            [timing]
            heartbeat_interval_ms = 500
            [ws]
            url = "ws://127.0.0.1:8765"
            "#,
        )?;
        jail.set_env("MESH_TIMING__HEARTBEAT_TIMEOUT_MS", "1500");
        jail.set_env("MESH_PEER_ID", "gpu-node-7");
        let cfg = MeshConfig::load(Some(Path::new("mesh.toml"))).expect("valid");
        assert_eq!(cfg.room, "lab-1");
        assert_eq!(cfg.peer_id().expect("configured").as_str(), "gpu-node-7");
        assert_eq!(cfg.timing.heartbeat_interval_ms, 500);
        assert_eq!(cfg.timing.heartbeat_timeout_ms, 1500);
        assert_eq!(cfg.timing.retry_max_ms, 32000, "untouched keys keep their defaults");
        assert_eq!(cfg.record().priority, 24000);
        assert_eq!(cfg.section("ws")["url"], "ws://127.0.0.1:8765");
        jail.set_env("MESH_SIGNALING", "relay, ws");
        let cfg = MeshConfig::load(Some(Path::new("mesh.toml"))).expect("valid");
        assert_eq!(cfg.signaling, ["relay", "ws"]);
        Ok(())
    });
}

#[test]
fn invalid_values_name_their_key() {
    Jail::expect_with(|jail| {
        jail.set_env("MESH_TIMING__HEARTBEAT_TIMEOUT_MS", "500");
        let err = MeshConfig::load(None).unwrap_err().to_string();
        assert!(err.contains("timing.heartbeat_timeout_ms"), "{err}");
        jail.set_env("MESH_TIMING__HEARTBEAT_TIMEOUT_MS", "3000");
        jail.set_env("MESH_ROOM", "bad room");
        let err = MeshConfig::load(None).unwrap_err().to_string();
        assert!(err.contains("`room`"), "{err}");
        jail.set_env("MESH_ROOM", "ok");
        jail.set_env("MESH_TIMING__RETRY_MAX_MS", "nope");
        let err = MeshConfig::load(None).unwrap_err().to_string();
        assert!(err.to_lowercase().contains("timing.retry_max_ms"), "{err}");
        Ok(())
    });
}

#[test]
fn status_trust_and_csv_tags_come_from_the_environment() {
    Jail::expect_with(|jail| {
        let key = crate::identity::NodeKey::generate().public_hex();
        jail.set_env("MESH_STATUS", "busy");
        jail.set_env("MESH_METADATA__TAGS", "h100, fp8");
        jail.set_env("MESH_TRUST__WORKERS", format!("{key},{key}"));
        let cfg = MeshConfig::load(None).expect("valid");
        assert_eq!(cfg.record().status, crate::room::WorkerStatus::Busy);
        assert_eq!(cfg.metadata["tags"], serde_json::json!(["h100", "fp8"]));
        let filter = crate::RegistryFilter { tags: vec!["fp8".into()], ..Default::default() };
        let mut room = crate::RoomState::default();
        room.merge(&PeerId::new("w").unwrap(), &cfg.record());
        assert_eq!(filter.apply(&room).matched_count, 1, "a tag filter matches a CSV tag");
        assert!(cfg.trust.allowlist().allows_worker(&key));
        jail.set_env("MESH_TRUST__WORKERS", "not-a-key");
        let err = MeshConfig::load(None).unwrap_err().to_string();
        assert!(err.contains("trust.workers"), "{err}");
        jail.set_env("MESH_TRUST__WORKERS", "");
        jail.set_env("MESH_STATUS", "leaving");
        assert!(MeshConfig::load(None).unwrap_err().to_string().contains("`status`"));
        Ok(())
    });
}

#[test]
fn unknown_keys_are_refused_by_name_at_the_top_and_in_sections() {
    Jail::expect_with(|jail| {
        jail.set_env("MESH_LOG_FORMAT", "json");
        jail.set_env("MESH_SIGNAL_RATE_BURST", "5");
        let cfg = MeshConfig::load(None).expect("valid");
        crate::Registry::from_inventory().check_sections(&cfg).expect("other programs' variables are not settings");
        jail.create_file("bogus.toml", "bogus_key = 1\n")?;
        let cfg = MeshConfig::load(Some(Path::new("bogus.toml"))).expect("loads: plugin sections are open here");
        let err = crate::Registry::from_inventory().check_sections(&cfg).unwrap_err().to_string();
        assert!(err.contains("`bogus_key`"), "{err}");
        jail.create_file("timing.toml", "[timing]\nheartbeat_interval = 5\n")?;
        let err = MeshConfig::load(Some(Path::new("timing.toml"))).unwrap_err().to_string();
        assert!(err.contains("heartbeat_interval"), "{err}");
        jail.create_file("trust.toml", "[trust]\nworker = []\n")?;
        let err = MeshConfig::load(Some(Path::new("trust.toml"))).unwrap_err().to_string();
        assert!(err.contains("worker"), "{err}");
        let mut cfg = MeshConfig::default();
        cfg.plugins.insert("memory".into(), serde_json::json!({"conect_timeout_ms": 1}));
        let err = crate::Registry::from_inventory().transport("memory", &cfg).err().expect("refused").to_string();
        assert!(err.contains("conect_timeout_ms"), "{err}");
        Ok(())
    });
}

#[test]
fn a_node_without_a_peer_id_gets_one_generated_id_that_every_read_returns() {
    figment::Jail::expect_with(|_jail| {
        let cfg = MeshConfig::load(None).expect("defaults load");
        let id = cfg.peer_id().expect("an id was generated");
        assert_eq!(cfg.peer_id().expect("still there"), id, "the same id on every read");
        assert_ne!(MeshConfig::load(None).expect("loads").peer_id().expect("id"), id, "another node, another id");
        Ok(())
    });
}

#[test]
fn an_invalid_room_or_peer_id_is_an_error_naming_its_key_not_a_fallback() {
    let cfg = MeshConfig { room: "no spaces allowed".into(), peer_id: String::new(), ..MeshConfig::default() };
    assert!(matches!(cfg.room_id(), Err(ConfigError::Invalid { key: "room", .. })));
    assert!(matches!(cfg.peer_id(), Err(ConfigError::Invalid { key: "peer_id", .. })));
}
