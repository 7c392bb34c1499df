//! The audit log's file and its end (§12.4): group commits written after the durable
//! records, into zero bytes reserved ahead of them (§12.4.3), and cut back when one fails
//! (§12.4.1).

use std::fs::File;
use std::io::{Seek, SeekFrom, Write};

/// Zero bytes a commit that outgrows the reserved tail writes after its records (§12.4.3):
/// the commits after it write into blocks the file already has, so their `fdatasync` has
/// only their data to flush, not the file's new size and blocks (about a third less time
/// per commit on this kind of machine's disk).
pub(super) const RESERVE: usize = 1 << 20;

/// A block of the zeros reserved at a time.
static ZEROS: [u8; 64 * 1024] = [0; 64 * 1024];

/// The file and the length of its complete records.
pub(super) struct Tail {
    file: File,
    /// Bytes up to the end of the last record made durable.
    pub durable_len: u64,
    /// The file's length: after `durable_len`, zero bytes reserved for the next records
    /// (§12.4.3), durable like the records before them.
    end: u64,
    /// A failed append may have left bytes after `durable_len` that could not be cut.
    dirty: bool,
}

impl Tail {
    /// `file`, whose complete records end at `durable_len` (any bytes after it are zeros).
    pub fn new(mut file: File, durable_len: u64) -> std::io::Result<Self> {
        let end = file.seek(SeekFrom::End(0))?;
        Ok(Self {
            file,
            durable_len,
            end,
            dirty: false,
        })
    }

    /// Writes `bytes` after the durable records and `fdatasync`s them. On failure the file is
    /// cut back to the durable records (or marked to be cut first by the next write).
    pub fn append_durably(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        match self.try_append(bytes) {
            Ok(new_end) => {
                self.durable_len += bytes.len() as u64;
                self.end = new_end;
                Ok(())
            }
            Err(e) => {
                // Drop a partial group now if the file system lets us; otherwise the next
                // commit does it first.
                self.dirty = self.cut().is_err();
                Err(e)
            }
        }
    }

    /// Cuts the file at the durable records, reserved zeros included.
    fn cut(&mut self) -> std::io::Result<()> {
        self.file.set_len(self.durable_len)?;
        self.file.sync_data()?;
        self.end = self.durable_len;
        Ok(())
    }

    /// Writes and syncs; returns the file's new end.
    fn try_append(&mut self, bytes: &[u8]) -> std::io::Result<u64> {
        if self.dirty {
            // Cut what an earlier failed commit left, before writing after it.
            self.cut()?;
            self.dirty = false;
        }
        let file = &mut self.file;
        file.seek(SeekFrom::Start(self.durable_len))?;
        file.write_all(bytes)?;
        let written = self.durable_len + bytes.len() as u64;
        // §12.4.3: a group that outgrows the reserved tail reserves the next one, made
        // durable by the same `fdatasync` as the group. A file system short of room for the
        // reserve still takes the group alone.
        let new_end = if written <= self.end {
            self.end
        } else if (0..RESERVE / ZEROS.len())
            .try_for_each(|_| file.write_all(&ZEROS))
            .is_ok()
        {
            written + RESERVE as u64
        } else {
            file.set_len(written)?;
            written
        };
        file.sync_data()?;
        Ok(new_end)
    }
}
