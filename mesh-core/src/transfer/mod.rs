//! Verified, resumable transfers of files ("blobs") between members, on the data plane.
//!
//! A node **provides** a file: it computes its [`Manifest`] (size and the SHA-256 of each 1 MiB
//! chunk) and serves it under its content id, the [`BlobId`]. Another node **fetches** it by id:
//! it asks for the manifest (checked against the id), then for the chunks it does not hold yet,
//! several at a time, checks each against its hash as it comes, and writes it in place into
//! `DEST.part`; the finished file is renamed to `DEST`. Memory stays bounded whatever the size
//! (a few chunks in flight). A fetch that stops (the link drops, either process restarts) is
//! resumed by fetching again: the chunks already in `DEST.part` are checked and kept. A receiver
//! that already holds the content at `DEST` fetches nothing. A corrupt chunk is asked again, and
//! after a few failures the fetch is an error, never a success.
//!
//! Wire: requests on protocol [`PROTOCOL`] with JSON bodies (docs/LINK.md 5).

mod fetch;
mod manifest;
mod plan;
mod serve;

pub use fetch::{fetch, FetchReport, Progress};
pub use manifest::{BlobId, Manifest, CHUNK};
pub use plan::{Checked, Plan, TRIES};
pub(crate) use serve::serve;
pub use serve::{BlobAsk, Provided};

/// The protocol of blob requests.
pub const PROTOCOL: &str = "mesh/blob/1";

/// Why a transfer failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TransferError {
    /// The request failed (not linked, the peer left, refused...).
    #[error(transparent)]
    Data(#[from] crate::DataError),
    /// A local file could not be read or written.
    #[error("{0}")]
    Io(String),
    /// What came does not match what was asked for: the manifest does not match its id, or a
    /// chunk failed its hash every time it was asked.
    #[error("corrupt: {0}")]
    Corrupt(String),
}

impl From<std::io::Error> for TransferError {
    fn from(e: std::io::Error) -> Self {
        Self::Io(e.to_string())
    }
}
