//! The provider side: the blobs a node serves, and the task that answers their requests.

use super::manifest::{BlobId, Manifest, CHUNK};
use crate::data::{Inbox, Incoming, Request};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use tokio::task::JoinSet;

/// Answers prepared at once, at most (more wait): bounds the disk reads a peer can start.
const CONCURRENT: usize = 16;

/// A request for a blob.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum BlobAsk {
    /// The manifest of `blob` (answered as JSON).
    Manifest {
        /// The blob's id, hex.
        blob: String,
    },
    /// Chunk `index` of `blob` (answered with its bytes).
    Chunk {
        /// The blob's id, hex.
        blob: String,
        /// Which chunk.
        index: u64,
    },
}

/// A served blob: where it is, and what it is made of.
type Entry = (PathBuf, Arc<Manifest>);

/// The blobs a node serves, by id.
#[derive(Debug, Clone, Default)]
pub struct Provided(Arc<Mutex<HashMap<BlobId, Entry>>>);

impl Provided {
    /// Serves the file at `path` under its content id (reads it once to hash it).
    pub async fn add(&self, path: PathBuf) -> Result<(BlobId, Arc<Manifest>), super::TransferError> {
        let p = path.clone();
        let manifest = tokio::task::spawn_blocking(move || Manifest::of_file(&p))
            .await
            .map_err(|e| super::TransferError::Io(e.to_string()))??;
        let (id, manifest) = (manifest.id(), Arc::new(manifest));
        if let Ok(mut map) = self.0.lock() {
            map.insert(id, (path, manifest.clone()));
        }
        Ok((id, manifest))
    }

    /// Stops serving `id`.
    pub fn remove(&self, id: &BlobId) {
        if let Ok(mut map) = self.0.lock() {
            map.remove(id);
        }
    }

    fn get(&self, id: &str) -> Option<Entry> {
        let id: BlobId = id.parse().ok()?;
        self.0.lock().ok()?.get(&id).cloned()
    }
}

/// Answers blob requests from `inbox` until the node stops.
pub(crate) async fn serve(mut inbox: Inbox, provided: Provided) {
    let mut answering = JoinSet::new();
    while let Some(incoming) = inbox.recv().await {
        let Incoming::Request(req) = incoming else { continue };
        while answering.len() >= CONCURRENT {
            answering.join_next().await;
        }
        answering.spawn(answer(req, provided.clone()));
        while answering.try_join_next().is_some() {}
    }
}

async fn answer(req: Request, provided: Provided) {
    let ask: BlobAsk = match serde_json::from_slice(&req.body) {
        Ok(ask) => ask,
        Err(err) => return req.fail(&format!("not a blob ask: {err}")).await,
    };
    let (BlobAsk::Manifest { blob } | BlobAsk::Chunk { blob, .. }) = &ask;
    let Some((path, manifest)) = provided.get(blob) else { return req.fail("no such blob here").await };
    match ask {
        BlobAsk::Manifest { .. } => req.respond(serde_json::to_vec(&*manifest).unwrap_or_default()).await,
        BlobAsk::Chunk { index, .. } if index >= manifest.chunks.len() as u64 => req.fail("no such chunk").await,
        BlobAsk::Chunk { index, .. } => {
            let len = manifest.chunk_len(index) as usize;
            let read = tokio::task::spawn_blocking(move || {
                use std::io::{Read, Seek, SeekFrom};
                let mut file = std::fs::File::open(path)?;
                file.seek(SeekFrom::Start(index * CHUNK))?;
                let mut buf = vec![0u8; len];
                file.read_exact(&mut buf)?;
                Ok::<_, std::io::Error>(buf)
            })
            .await;
            match read {
                Ok(Ok(bytes)) => req.respond(bytes).await,
                Ok(Err(err)) => req.fail(&format!("cannot read the blob: {err}")).await,
                Err(err) => req.fail(&format!("cannot read the blob: {err}")).await,
            }
        }
    }
}
