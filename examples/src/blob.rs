//! Test files for the programs that show or measure transfers: content that differs from
//! chunk to chunk, written 1 MiB at a time (memory stays small whatever the size).

use std::io::Write;
use std::path::Path;

/// Writes a file of `mib` MiB whose bytes differ from chunk to chunk.
pub fn write_pattern(path: &Path, mib: usize) -> std::io::Result<()> {
    let mut file = std::io::BufWriter::new(std::fs::File::create(path)?);
    for m in 0..mib {
        let block: Vec<u8> =
            (0..1024 * 1024u32).map(|i| (i ^ m as u32).wrapping_mul(2_654_435_761).to_be_bytes()[1]).collect();
        file.write_all(&block)?;
    }
    file.flush()
}
