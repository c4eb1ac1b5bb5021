//! The format of recorded conversations (test/golden/*.bin, written by
//! test/golden/capture_tcp.py): records of `u8 flow` (0 toward the server, 1 toward the
//! client), `u64 ts` in ns (LE), `u32 len` (LE), then `len` bytes as one recv() returned
//! them. The parsers' replay tests, the fuzz seeds and the parser benchmarks read it.

use super::db::Flow;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub flow: Flow,
    pub ts: u64,
    pub data: Vec<u8>,
}

/// The records of a capture file's bytes; an error names the offset of a cut record.
pub fn read(raw: &[u8]) -> Result<Vec<Record>, String> {
    let mut out = Vec::new();
    let mut p = raw;
    while !p.is_empty() {
        let at = raw.len() - p.len();
        if p.len() < 13 {
            return Err(format!("record header cut at offset {at}"));
        }
        let flow = if p[0] == 0 {
            Flow::ToServer
        } else {
            Flow::ToClient
        };
        let ts = u64::from_le_bytes(p[1..9].try_into().unwrap_or_default());
        let len = u32::from_le_bytes(p[9..13].try_into().unwrap_or_default()) as usize;
        let data = p
            .get(13..13 + len)
            .ok_or_else(|| format!("record at offset {at} cut ({len} bytes announced)"))?;
        out.push(Record {
            flow,
            ts,
            data: data.to_vec(),
        });
        p = &p[13 + len..];
    }
    Ok(out)
}

/// The records of `test/golden/<file>` (for the parsers' tests: a bad file panics).
#[cfg(test)]
pub fn golden(file: &str) -> Vec<Record> {
    let path = format!("{}/../test/golden/{file}", env!("CARGO_MANIFEST_DIR"));
    let data = std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    read(&data).unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_records_and_reports_cuts() {
        let mut raw = vec![0u8];
        raw.extend(7u64.to_le_bytes());
        raw.extend(2u32.to_le_bytes());
        raw.extend(b"hi");
        raw.push(1);
        raw.extend(9u64.to_le_bytes());
        raw.extend(0u32.to_le_bytes());
        let recs = read(&raw).unwrap();
        assert_eq!(recs.len(), 2);
        assert_eq!(
            (recs[0].flow, recs[0].ts, &recs[0].data[..]),
            (Flow::ToServer, 7, &b"hi"[..])
        );
        assert_eq!((recs[1].flow, recs[1].ts), (Flow::ToClient, 9));
        assert!(read(&raw[..raw.len() - 1]).is_err());
        assert!(read(&raw[..14]).unwrap_err().contains("offset 0"));
        assert!(read(&raw[..16]).unwrap_err().contains("offset 15"));
    }
}
