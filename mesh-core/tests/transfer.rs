//! Verified, resumable transfers on the in-memory plugins (real time: the files are real).

mod harness;

use harness::*;
use mesh_core::memory::MemoryNetwork;
use mesh_core::transfer::{Progress, TransferError, CHUNK};
use mesh_core::DataError;
use std::path::PathBuf;
use tokio::sync::watch;

/// A fresh directory for one test, removed when dropped.
struct Dir(PathBuf);

impl Dir {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("mesh-transfer-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    /// A file of `len` bytes that differ from chunk to chunk.
    fn file(&self, name: &str, len: usize) -> (PathBuf, Vec<u8>) {
        let data: Vec<u8> = (0..len).map(|i| (i as u64).wrapping_mul(2_654_435_761).rotate_right(13) as u8).collect();
        let path = self.0.join(name);
        std::fs::write(&path, &data).unwrap();
        (path, data)
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blob_arrives_verified_with_progress_and_one_held_already_is_not_sent_again() {
    let dir = Dir::new("basic");
    let net = MemoryNetwork::new();
    let nodes = spawn_mesh(&net, 2).await;
    let (src, data) = dir.file("model.bin", (5 * CHUNK + 12345) as usize);
    let id = nodes[0].provide(&src).await.unwrap();
    let dest = dir.0.join("got.bin");
    let (tx, rx) = watch::channel(Progress::default());
    let report = nodes[1].fetch(&peer("w0"), &id, &dest, Some(&tx)).await.expect("fetched");
    assert_eq!(std::fs::read(&dest).unwrap(), data, "the same bytes");
    assert_eq!((report.fetched, report.resumed, report.already_held), (data.len() as u64, 0, false));
    let last = *rx.borrow();
    assert_eq!((last.done, last.total), (data.len() as u64, data.len() as u64));
    assert!(last.rate > 0.0 && last.eta == Some(std::time::Duration::ZERO), "{last:?}");
    let again = nodes[1].fetch(&peer("w0"), &id, &dest, None).await.unwrap();
    assert!(again.already_held && again.fetched == 0, "content addressing: {again:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_fetch_resumes_after_a_restart_from_its_verified_chunks() {
    let dir = Dir::new("resume");
    let net = MemoryNetwork::new();
    let mut nodes = spawn_mesh(&net, 2).await;
    // Large enough that stopping after 3 chunks is far from its end (16 chunks are asked at once).
    let (src, data) = dir.file("data.bin", (40 * CHUNK) as usize);
    let id = nodes[0].provide(&src).await.unwrap();
    let dest = dir.0.join("data.bin.copy");
    let (tx, mut rx) = watch::channel(Progress::default());
    let w1 = nodes.pop().unwrap();
    let w0_id = peer("w0");
    tokio::select! {
        r = w1.fetch(&w0_id, &id, &dest, Some(&tx)) => panic!("finished before it was stopped: {r:?}"),
        _ = rx.wait_for(|p| p.done >= 3 * CHUNK) => {}
    }
    // The receiver's process goes away half-way, and a new one starts with the same name.
    w1.abort();
    let mut part = dest.as_os_str().to_owned();
    part.push(".part");
    let held = std::fs::read(&part).expect("the part file stays");
    assert_eq!(held.len(), data.len());
    // Damage one verified chunk on disk: it must be fetched again, not trusted.
    let mut damaged = held;
    damaged[1] ^= 0xff;
    std::fs::write(&part, &damaged).unwrap();
    let w1 = start(&net, "w1").await;
    wait_links(&w1, 1).await;
    let report = w1.fetch(&peer("w0"), &id, &dest, None).await.expect("resumed");
    assert_eq!(std::fs::read(&dest).unwrap(), data);
    assert!(report.resumed >= 2 * CHUNK, "kept what verified: {report:?}");
    assert_eq!(report.fetched + report.resumed, data.len() as u64, "nothing fetched twice: {report:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_blob_is_an_error_never_a_success() {
    let dir = Dir::new("corrupt");
    let net = MemoryNetwork::new();
    let nodes = spawn_mesh(&net, 2).await;
    let (src, mut data) = dir.file("weights.bin", (3 * CHUNK) as usize);
    let id = nodes[0].provide(&src).await.unwrap();
    data[(CHUNK + 7) as usize] ^= 1; // the provider's disk flips a bit after it was hashed
    std::fs::write(&src, &data).unwrap();
    let dest = dir.0.join("weights.out");
    let result = nodes[1].fetch(&peer("w0"), &id, &dest, None).await;
    assert!(matches!(&result, Err(TransferError::Corrupt(why)) if why.contains("chunk 1")), "{result:?}");
    assert!(!dest.exists(), "no file pretends to be the blob");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fetch_fails_with_its_reason() {
    let dir = Dir::new("reasons");
    let net = MemoryNetwork::new();
    let mut nodes = spawn_mesh(&net, 2).await;
    let unknown = mesh_core::transfer::Manifest { size: 0, chunks: vec![] }.id();
    let result = nodes[1].fetch(&peer("w0"), &unknown, &dir.0.join("x"), None).await;
    assert!(
        matches!(&result, Err(TransferError::Data(DataError::Refused(why))) if why.contains("no such blob")),
        "{result:?}"
    );
    let (src, _) = dir.file("big.bin", (64 * CHUNK) as usize);
    let id = nodes[0].provide(&src).await.unwrap();
    let (tx, mut rx) = watch::channel(Progress::default());
    let w0 = nodes.remove(0);
    let t = std::time::Instant::now();
    let (w0_id, out) = (peer("w0"), dir.0.join("big.out"));
    let fetching = nodes[0].fetch(&w0_id, &id, &out, Some(&tx));
    let leave = async {
        let _ = rx.wait_for(|p| p.done >= CHUNK).await;
        // From here no byte of w0's gets through (at most 16 more chunks were on their way), and
        // it leaves: the fetch cannot finish, and must say why at once.
        net.cut(&peer("w0"), &peer("w1"));
        net.cut(&peer("w1"), &peer("w0"));
        w0.leave().await;
    };
    let (result, ()) = tokio::join!(fetching, leave);
    assert!(
        matches!(result, Err(TransferError::Data(DataError::PeerLeft(_) | DataError::LinkLost(_)))),
        "the provider left: {result:?}"
    );
    assert!(t.elapsed() < std::time::Duration::from_secs(30), "at once, not at the 60 s ask timeout");
}
