//! The audit-log file format (§12.4): the 16-byte magic `QUORATE-AUDIT-1\n`, then records
//! `u32be(len) || SHA-256(receipt) || receipt`, then possibly zero bytes reserved for the
//! next records (§12.4.3). Records are only ever appended, so a crash can damage only the
//! tail. Reading is pure (bytes in); the node's writer lives in `quorate-node`.

use quorate_crypto::tensor_digest::sha256;

use crate::receipt::MAX_RECEIPT_LEN;

/// First bytes of every audit log.
pub const MAGIC: &[u8; 16] = b"QUORATE-AUDIT-1\n";
/// Bytes before each record's receipt: its length and its SHA-256.
pub const RECORD_HEADER: usize = 4 + 32;

/// The input is not an audit log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a quorate audit log (missing the QUORATE-AUDIT-1 header)")]
pub struct NotAnAuditLog;

/// What scanning a log found.
pub struct Scan {
    /// The complete records, in order.
    pub records: Vec<Vec<u8>>,
    /// Offset just past the last complete record.
    pub good_len: u64,
    /// Bytes after it (a torn tail), counting the zero bytes after a torn record.
    pub torn_bytes: u64,
    /// Zero bytes after it reserved for the next records (§12.4.3), when nothing is torn.
    pub reserved_bytes: u64,
}

/// Reads every complete record; stops at the first incomplete or mismatching one.
pub fn scan(bytes: &[u8]) -> Result<Scan, NotAnAuditLog> {
    if !is_audit_log(bytes) {
        return Err(NotAnAuditLog);
    }
    let mut reader = RecordReader::after_magic(&bytes[MAGIC.len()..]);
    let mut records = Vec::new();
    // Reading a slice cannot fail; an error would only end the records early.
    while let Ok(Some(record)) = reader.next_record() {
        records.push(record);
    }
    Ok(Scan {
        records,
        good_len: reader.good_len,
        torn_bytes: reader.torn_bytes,
        reserved_bytes: reader.reserved_bytes,
    })
}

/// Reads an audit log's records one at a time from any reader (a file, a slice), so that a
/// log of any length is checked in bounded memory (§6.4): at most one record of
/// [`MAX_RECEIPT_LEN`] bytes is held. It ends at the first incomplete or mismatching record,
/// with the bytes from there to the end counted in [`Self::torn_bytes`], or at a tail of
/// zero bytes reserved for the next records (§12.4.3), counted in [`Self::reserved_bytes`].
pub struct RecordReader<R> {
    inner: R,
    /// Offset just past the last complete record.
    pub good_len: u64,
    /// Bytes after it that are not a reserved tail, known once the reader has ended.
    pub torn_bytes: u64,
    /// Zero bytes after it, to the end, when nothing is torn; known once the reader has ended.
    pub reserved_bytes: u64,
    ended: bool,
}

impl<R: std::io::Read> RecordReader<R> {
    /// Checks the magic, then reads records from what follows.
    pub fn new(mut inner: R) -> std::io::Result<Result<Self, NotAnAuditLog>> {
        let mut magic = [0u8; MAGIC.len()];
        if read_up_to(&mut inner, &mut magic)? < MAGIC.len() || &magic != MAGIC {
            return Ok(Err(NotAnAuditLog));
        }
        Ok(Ok(Self::after_magic(inner)))
    }

    fn after_magic(inner: R) -> Self {
        Self {
            inner,
            good_len: MAGIC.len() as u64,
            torn_bytes: 0,
            reserved_bytes: 0,
            ended: false,
        }
    }

    /// The next complete record, or `None` at the end of the log or of its good part.
    pub fn next_record(&mut self) -> std::io::Result<Option<Vec<u8>>> {
        if self.ended {
            return Ok(None);
        }
        let mut header = [0u8; RECORD_HEADER];
        let got = read_up_to(&mut self.inner, &mut header)?;
        // §12.4.3: no record starts with a zero header (the SHA-256 of no receipt is zero),
        // so zeros where a record would start are the reserved tail, if zeros run to the end.
        if header[..got].iter().all(|&b| b == 0) {
            return self.end_zeros(got);
        }
        if got < RECORD_HEADER {
            return self.end(got);
        }
        let len = u32::from_be_bytes([header[0], header[1], header[2], header[3]]) as usize;
        if len > MAX_RECEIPT_LEN {
            return self.end(got);
        }
        let mut record = vec![0u8; len];
        let body = read_up_to(&mut self.inner, &mut record)?;
        if body < len || sha256(&record)[..] != header[4..] {
            return self.end(got + body);
        }
        self.good_len += (RECORD_HEADER + len) as u64;
        Ok(Some(record))
    }

    /// Ends the log: `read` bytes of a bad record were consumed; the rest is counted too.
    fn end(&mut self, read: usize) -> std::io::Result<Option<Vec<u8>>> {
        self.ended = true;
        let rest = std::io::copy(&mut self.inner, &mut std::io::sink())?;
        self.torn_bytes = read as u64 + rest;
        Ok(None)
    }

    /// Ends the log at `read` zero bytes where a record would start: a reserved tail if only
    /// zeros follow, else a torn one (a record whose first bytes did not reach the disk).
    fn end_zeros(&mut self, read: usize) -> std::io::Result<Option<Vec<u8>>> {
        self.ended = true;
        let (mut zeros, mut total) = (true, read as u64);
        let mut chunk = [0u8; 8192];
        loop {
            match self.inner.read(&mut chunk) {
                Ok(0) => break,
                Ok(n) => {
                    zeros &= chunk[..n].iter().all(|&b| b == 0);
                    total += n as u64;
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        if zeros {
            self.reserved_bytes = total;
        } else {
            self.torn_bytes = total;
        }
        Ok(None)
    }
}

/// Fills `buf` as far as the reader goes; returns how many bytes it got.
fn read_up_to(r: &mut impl std::io::Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

/// Whether the bytes are an audit log (by its magic).
pub fn is_audit_log(bytes: &[u8]) -> bool {
    bytes.starts_with(MAGIC)
}

/// One record as appended: header and receipt.
pub fn record(receipt: &[u8]) -> Vec<u8> {
    let mut record = Vec::with_capacity(RECORD_HEADER + receipt.len());
    record.extend_from_slice(&(receipt.len() as u32).to_be_bytes());
    record.extend_from_slice(&sha256(receipt));
    record.extend_from_slice(receipt);
    record
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn log(records: &[Vec<u8>]) -> Vec<u8> {
        let mut out = MAGIC.to_vec();
        for r in records {
            out.extend(record(r));
        }
        out
    }

    /// A reader that hands out one byte per call, as a slow pipe might.
    struct Trickle<'a>(&'a [u8]);
    impl std::io::Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            match (self.0.split_first(), buf.first_mut()) {
                (Some((b, rest)), Some(slot)) => {
                    *slot = *b;
                    self.0 = rest;
                    Ok(1)
                }
                _ => Ok(0),
            }
        }
    }

    #[test]
    fn every_cut_of_a_log_keeps_exactly_the_complete_records() {
        let records: Vec<Vec<u8>> = (0..4u8).map(|i| vec![i; 10 + usize::from(i)]).collect();
        let full = log(&records);
        let mut ends = vec![MAGIC.len()];
        for r in &records {
            ends.push(ends[ends.len() - 1] + RECORD_HEADER + r.len());
        }
        for cut in MAGIC.len()..=full.len() {
            let bytes = &full[..cut];
            let whole = ends.iter().filter(|&&e| e <= cut).count() - 1;
            let scan = scan(bytes).unwrap();
            assert_eq!(scan.records, records[..whole], "cut at {cut}");
            assert_eq!(scan.good_len, ends[whole] as u64);
            // A cut within a length's leading zero bytes leaves only zeros after the last
            // record: a reserved tail (§12.4.3), which the next record overwrites.
            let rest = (cut - ends[whole]) as u64;
            let zeros = bytes[ends[whole]..].iter().all(|&b| b == 0);
            assert_eq!(scan.torn_bytes, if zeros { 0 } else { rest });
            assert_eq!(scan.reserved_bytes, if zeros { rest } else { 0 });
            // The same through a reader that gets one byte at a time.
            assert_eq!(
                trickled(bytes),
                (scan.records, scan.torn_bytes, scan.reserved_bytes)
            );
        }
    }

    /// Reads a whole log through a reader that gets one byte at a time.
    fn trickled(bytes: &[u8]) -> (Vec<Vec<u8>>, u64, u64) {
        let mut reader = RecordReader::new(Trickle(bytes)).unwrap().unwrap();
        let mut records = Vec::new();
        while let Some(r) = reader.next_record().unwrap() {
            records.push(r);
        }
        (records, reader.torn_bytes, reader.reserved_bytes)
    }

    /// §12.4.3: zeros after the last record are reserved, not torn, however many; a record
    /// cut anywhere inside them (its first bytes written, the rest still zero) is torn, as
    /// is any nonzero byte after zeros, and the zeros after it count as torn too.
    #[test]
    fn a_zero_tail_is_reserved_and_a_record_cut_inside_it_is_torn() {
        let records: Vec<Vec<u8>> = (0..3u8).map(|i| vec![i + 1; 30]).collect();
        let full = log(&records);
        for zeros in [0usize, 1, 35, 36, 37, 9000] {
            let bytes = [&full[..], &vec![0; zeros]].concat();
            let s = scan(&bytes).unwrap();
            assert_eq!(s.records, records, "{zeros} zeros");
            assert_eq!((s.good_len, s.torn_bytes), (full.len() as u64, 0));
            assert_eq!(s.reserved_bytes, zeros as u64);
            assert_eq!(trickled(&bytes), (records.clone(), 0, zeros as u64));
        }
        let fourth = record(&[9; 30]);
        for cut in 1..fourth.len() {
            let mut bytes = [&full[..], &[0; 100]].concat();
            bytes[full.len()..][..cut].copy_from_slice(&fourth[..cut]);
            let s = scan(&bytes).unwrap();
            assert_eq!(s.records, records, "cut at {cut}");
            // The length's first bytes are zero: a cut within them is still all zeros.
            let written_zero = fourth[..cut].iter().all(|&b| b == 0);
            assert_eq!(
                s.torn_bytes,
                if written_zero { 0 } else { 100 },
                "cut at {cut}"
            );
            assert_eq!(s.reserved_bytes, if written_zero { 100 } else { 0 });
            assert_eq!(
                trickled(&bytes),
                (records.clone(), s.torn_bytes, s.reserved_bytes)
            );
        }
        // A later part of a record reached the disk, its first part did not.
        let mut bytes = [&full[..], &[0; 100]].concat();
        bytes[full.len() + 60] = 7;
        let s = scan(&bytes).unwrap();
        assert_eq!((s.torn_bytes, s.reserved_bytes), (100, 0));
        assert_eq!(trickled(&bytes).1, 100);
    }

    #[test]
    fn a_mismatching_or_oversized_record_ends_the_good_part() {
        let records: Vec<Vec<u8>> = (0..3u8).map(|i| vec![i; 20]).collect();
        let mut bytes = log(&records);
        let second = MAGIC.len() + RECORD_HEADER + 20;
        bytes[second + RECORD_HEADER] ^= 1; // second record's body
        let scan1 = scan(&bytes).unwrap();
        assert_eq!(scan1.records.len(), 1);
        assert_eq!(scan1.torn_bytes, (bytes.len() - second) as u64);

        let mut bytes = log(&records);
        bytes[second..second + 4].copy_from_slice(&u32::MAX.to_be_bytes());
        let scan2 = scan(&bytes).unwrap();
        assert_eq!(scan2.records.len(), 1);
        assert_eq!(scan2.good_len, second as u64);
        assert!(scan(b"not a log").is_err());
        assert!(RecordReader::new(&b"QUORATE"[..]).unwrap().is_err());
    }
}
