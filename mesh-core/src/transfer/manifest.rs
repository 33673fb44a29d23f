//! [`Manifest`]: what a blob is made of: its size and the SHA-256 of each 1 MiB chunk. Its
//! [`BlobId`] is the SHA-256 of the size and the chunk hashes, so a receiver checks each chunk
//! as it comes, and the manifest against the id it asked for.

use sha2::{Digest, Sha256};
use std::io::Read;
use std::path::Path;

/// Bytes per chunk (the last one may be shorter).
pub const CHUNK: u64 = 1024 * 1024;

/// The content id of a blob.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BlobId(pub [u8; 32]);

impl std::fmt::Display for BlobId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

impl std::str::FromStr for BlobId {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bytes = decode_hex(s).filter(|b| b.len() == 32).ok_or_else(|| format!("not a blob id: {s:?}"))?;
        let mut id = [0u8; 32];
        id.copy_from_slice(&bytes);
        Ok(Self(id))
    }
}

fn decode_hex(s: &str) -> Option<Vec<u8>> {
    if s.len() % 2 != 0 || !s.is_ascii() {
        return None;
    }
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).ok()).collect()
}

/// A blob's size and chunk hashes, as sent on the wire (hashes in hex).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Bytes in all.
    pub size: u64,
    /// SHA-256 of each chunk, in order, hex.
    pub chunks: Vec<String>,
}

/// The SHA-256 of `bytes`, hex.
pub(super) fn hash_hex(bytes: &[u8]) -> String {
    BlobId(Sha256::digest(bytes).into()).to_string()
}

impl Manifest {
    /// The manifest of the file at `path` (reads it once, a chunk at a time).
    pub fn of_file(path: &Path) -> std::io::Result<Self> {
        let mut file = std::fs::File::open(path)?;
        let (mut chunks, mut size) = (Vec::new(), 0u64);
        let mut buf = vec![0u8; CHUNK as usize];
        loop {
            let n = read_full(&mut file, &mut buf)?;
            if n == 0 {
                break;
            }
            size += n as u64;
            chunks.push(hash_hex(&buf[..n]));
            if n < buf.len() {
                break;
            }
        }
        Ok(Self { size, chunks })
    }

    /// The blob's content id.
    pub fn id(&self) -> BlobId {
        let mut h = Sha256::new();
        h.update(b"mesh-blob-v1\n");
        h.update(self.size.to_be_bytes());
        for c in &self.chunks {
            h.update(c.as_bytes());
        }
        BlobId(h.finalize().into())
    }

    /// True when the manifest is consistent: as many chunks as its size needs.
    pub fn is_whole(&self) -> bool {
        self.chunks.len() as u64 == self.size.div_ceil(CHUNK)
            && self.chunks.iter().all(|c| decode_hex(c).is_some_and(|b| b.len() == 32))
    }

    /// The length of chunk `i`.
    pub fn chunk_len(&self, i: u64) -> u64 {
        (self.size - i * CHUNK).min(CHUNK)
    }
}

/// Reads until `buf` is full or the file ends; the bytes read.
pub(crate) fn read_full(file: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match file.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manifest_names_its_chunks_and_its_id_changes_with_any_byte() {
        let dir = std::env::temp_dir().join(format!("manifest-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("blob");
        let mut data = vec![7u8; (CHUNK * 2 + 10) as usize];
        std::fs::write(&path, &data).unwrap();
        let m = Manifest::of_file(&path).unwrap();
        assert_eq!((m.size, m.chunks.len(), m.chunk_len(2)), (CHUNK * 2 + 10, 3, 10));
        assert!(m.is_whole());
        data[5] ^= 1;
        std::fs::write(&path, &data).unwrap();
        let changed = Manifest::of_file(&path).unwrap();
        assert_ne!(changed.id(), m.id());
        assert_eq!(m.id().to_string().parse::<BlobId>(), Ok(m.id()));
        assert!("xyz".parse::<BlobId>().is_err());
        let lying = Manifest { size: CHUNK * 5, ..m };
        assert!(!lying.is_whole(), "too few chunks for its size");
        std::fs::write(&path, b"").unwrap();
        let empty = Manifest::of_file(&path).unwrap();
        assert!(empty.is_whole() && empty.chunks.is_empty());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
