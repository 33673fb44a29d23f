//! The receiver side: fetch a blob by id into a file, verified chunk by chunk, resumable.

use super::manifest::{BlobId, Manifest, CHUNK};
use super::plan::{Checked, Plan, TRIES};
use super::serve::BlobAsk;
use super::{TransferError, PROTOCOL};
use crate::data::DataError;
use crate::id::PeerId;
use crate::node::MeshNode;
use bytes::Bytes;
use futures::stream::{FuturesUnordered, StreamExt};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// Chunks asked for at once.
const IN_FLIGHT: usize = 16;
/// How long the manifest's ask waits for its answer.
const ASK_TIMEOUT: Duration = Duration::from_secs(60);
/// How long one chunk's ask may wait: the asks in flight share the link, so on a slow one (a
/// lossy WAN moves well under 1 MiB/s) the last of them waits for all the others.
const CHUNK_TIMEOUT: Duration = Duration::from_secs(600);
/// A fetch during which no chunk arrives for this long has stalled, and fails. Generous: the 16
/// answers in flight share the link and come in step, so at 0.2 MiB/s (one lossy WAN link) the
/// first of them is whole only after some 80 s. A peer that dies fails the asks at once anyway.
const STALL: Duration = Duration::from_secs(300);

/// How far a fetch is.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Progress {
    /// Bytes held and verified.
    pub done: u64,
    /// Bytes in all.
    pub total: u64,
    /// Bytes per second fetched so far in this run.
    pub rate: f64,
    /// Time left at that rate.
    pub eta: Option<Duration>,
}

/// What a fetch did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FetchReport {
    /// The blob's size.
    pub size: u64,
    /// Bytes that came over the link in this run.
    pub fetched: u64,
    /// Bytes kept from an earlier, interrupted run.
    pub resumed: u64,
    /// True when the destination held the content already (nothing was asked for).
    pub already_held: bool,
}

fn ask(blob: &BlobId, index: u64) -> Vec<u8> {
    serde_json::to_vec(&BlobAsk::Chunk { blob: blob.to_string(), index }).unwrap_or_default()
}

/// Fetches blob `id` from `from` into `dest`; `progress` (if any) follows it.
pub async fn fetch(
    node: &MeshNode,
    from: &PeerId,
    id: &BlobId,
    dest: &Path,
    progress: Option<&watch::Sender<Progress>>,
) -> Result<FetchReport, TransferError> {
    if let Some(held) = already_held(dest, id).await {
        return Ok(FetchReport { size: held, fetched: 0, resumed: 0, already_held: true });
    }
    let ask_manifest = serde_json::to_vec(&BlobAsk::Manifest { blob: id.to_string() }).unwrap_or_default();
    let answer = node.request(from, PROTOCOL, ask_manifest, ASK_TIMEOUT).await?;
    let manifest: Manifest =
        serde_json::from_slice(&answer).map_err(|e| TransferError::Corrupt(format!("not a manifest: {e}")))?;
    if !manifest.is_whole() || manifest.id() != *id {
        return Err(TransferError::Corrupt(format!("{from} sent a manifest that is not blob {id}")));
    }
    let part = part_path(dest);
    let (file, have) = {
        let (part, m) = (part.clone(), manifest.clone());
        tokio::task::spawn_blocking(move || open_part(&part, &m))
            .await
            .map_err(|e| TransferError::Io(e.to_string()))??
    };
    let file = Arc::new(file);
    let mut plan = Plan::new(manifest, have);
    let (size, resumed, started) = (plan.manifest().size, plan.bytes_held(), Instant::now());
    let mut fetched = 0u64;
    let mut asking = FuturesUnordered::new();
    loop {
        while asking.len() < IN_FLIGHT {
            let Some(i) = plan.next_request() else { break };
            asking.push(async move { (i, node.request(from, PROTOCOL, ask(id, i), CHUNK_TIMEOUT).await) });
        }
        // Slow is fine, stuck is not: each chunk may wait long, but one must come every STALL.
        let next = tokio::time::timeout(STALL, asking.next()).await.map_err(|_| DataError::TimedOut)?;
        let Some((i, answer)) = next else { break };
        let bytes: Bytes = match answer {
            Ok(bytes) => bytes,
            // The link dropped, or the provider refused: fetch again to resume.
            Err(err @ DataError::NotLinked(_)) => {
                let rest: Vec<_> = asking.map(|(_, answer)| answer).collect().await;
                return Err(why_stopped(from, err, rest).into());
            }
            Err(err) => return Err(err.into()),
        };
        match plan.on_chunk(i, &bytes) {
            Checked::Good { offset } => {
                let file = file.clone();
                let len = bytes.len() as u64;
                tokio::task::spawn_blocking(move || file.write_all_at(&bytes, offset))
                    .await
                    .map_err(|e| TransferError::Io(e.to_string()))??;
                fetched += len;
                if let Some(p) = progress {
                    let rate = fetched as f64 / started.elapsed().as_secs_f64().max(1e-6);
                    let done = plan.bytes_held();
                    let eta = (rate > 0.0).then(|| Duration::from_secs_f64((size - done) as f64 / rate));
                    p.send_replace(Progress { done, total: size, rate, eta });
                }
            }
            Checked::Again => {}
            Checked::Corrupt => {
                return Err(TransferError::Corrupt(format!("chunk {i} from {from} failed its hash {TRIES} times")))
            }
        }
    }
    if !plan.done() {
        return Err(TransferError::Corrupt("the transfer ended with chunks missing".into()));
    }
    let (f, p, d) = (file.clone(), part.clone(), dest.to_path_buf());
    tokio::task::spawn_blocking(move || {
        f.sync_all()?;
        std::fs::rename(p, d)
    })
    .await
    .map_err(|e| TransferError::Io(e.to_string()))??;
    Ok(FetchReport { size, fetched, resumed, already_held: false })
}

/// Why a fetch that was linked to `from` (it had the manifest) stopped, given the first failed
/// ask and the answers to the rest. Asks sent after the link closed say only "not linked"; the
/// ones it closed on say why. When every ask came back after the link had gone (all the answers
/// in flight had arrived), the link was lost all the same: "not linked" would read as if there
/// had never been one.
fn why_stopped(from: &PeerId, first: DataError, rest: Vec<Result<Bytes, DataError>>) -> DataError {
    std::iter::once(first)
        .chain(rest.into_iter().filter_map(Result::err))
        .find(|e| !matches!(e, DataError::NotLinked(_)))
        .unwrap_or_else(|| DataError::LinkLost(from.clone()))
}

/// Where an unfinished fetch of `dest` keeps its chunks.
pub(crate) fn part_path(dest: &Path) -> PathBuf {
    let mut name = dest.as_os_str().to_owned();
    name.push(".part");
    PathBuf::from(name)
}

/// The size of `dest` if it holds blob `id` already.
async fn already_held(dest: &Path, id: &BlobId) -> Option<u64> {
    let dest = dest.to_path_buf();
    let m = tokio::task::spawn_blocking(move || dest.is_file().then(|| Manifest::of_file(&dest).ok()).flatten())
        .await
        .ok()??;
    (m.id() == *id).then_some(m.size)
}

/// Opens (or creates) the part file at its full size; the chunks it holds that verify.
fn open_part(part: &Path, m: &Manifest) -> std::io::Result<(std::fs::File, Vec<bool>)> {
    let existed = part.is_file();
    let file = std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(false).open(part)?;
    let old_len = file.metadata()?.len();
    file.set_len(m.size)?;
    let mut have = vec![false; m.chunks.len()];
    if existed {
        let mut buf = vec![0u8; CHUNK as usize];
        for (i, held) in have.iter_mut().enumerate() {
            let (offset, len) = (i as u64 * CHUNK, m.chunk_len(i as u64));
            if offset + len > old_len {
                break;
            }
            let buf = &mut buf[..len as usize];
            file.read_exact_at(buf, offset)?;
            *held = super::manifest::hash_hex(buf) == m.chunks[i];
        }
    }
    Ok((file, have))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w0() -> PeerId {
        PeerId::new("w0").expect("a valid id")
    }

    #[test]
    fn a_fetch_whose_link_went_says_the_link_was_lost_even_when_every_ask_came_back_not_linked() {
        let rest = vec![Ok(Bytes::from_static(b"chunk")), Err(DataError::NotLinked(w0()))];
        assert_eq!(why_stopped(&w0(), DataError::NotLinked(w0()), rest), DataError::LinkLost(w0()));
    }

    #[test]
    fn the_ask_the_link_closed_on_says_why() {
        let rest = vec![Err(DataError::NotLinked(w0())), Err(DataError::PeerLeft(w0()))];
        assert_eq!(why_stopped(&w0(), DataError::NotLinked(w0()), rest), DataError::PeerLeft(w0()));
    }
}
