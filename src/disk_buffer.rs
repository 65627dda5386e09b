//! Optional disk buffer for remote-write requests (`--prometheusBufferDir`): queued requests
//! survive a crash (SIGKILL, power loss) and are replayed first, in order, by the next exporter
//! opened on the same directory. Shaped after Vector's disk_v2 buffer, much smaller: our records
//! are whole compressed requests.
//!
//! Layout of the directory:
//! - `lock`: held with `flock` while an exporter uses the directory; the kernel releases it when
//!   the process dies, so a crash never leaves it stale, and a second process is refused.
//! - `segment-<seq, 16 hex digits>.log`: append-only record files, replayed in `seq` order. A
//!   writer never appends to a file it did not create, so a torn tail stays at the end of a file.
//! - `ledger`: the id of the newest record delivered or dropped, in two checksummed slots
//!   written alternately (a torn write spoils one slot, the other still holds an older value).
//!
//! Record: `magic u32 | payload length u32 | crc32c u32 | id u64 | time_ms i64 | samples u32 |
//! payload`, little endian; the checksum covers everything after itself. Ids increase by one.
//!
//! Durability: `append` writes a batch (one snapshot's requests) with one `write` and one
//! `fdatasync` before it returns (group commit), and fsyncs the directory when a segment is
//! created. The ledger is written without fsync: after a power loss it may lag, and the
//! receiver then gets the last delivered requests again (identical samples, which Prometheus
//! ignores). Recovery stops reading a file at the first record that is short, has a bad magic
//! or checksum, or an id out of sequence, and logs what it skipped.

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::FileExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

const MAGIC: u32 = 0xBEA7_0D15;
const HEADER: usize = 32;
const OPTION: &str = "--prometheusBufferDir";

/// One buffered request as recovered from disk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    pub id: u64,
    pub time_ms: i64,
    pub samples: u32,
    pub body: Vec<u8>,
}

struct Segment {
    path: PathBuf,
    bytes: u64,
    /// Newest record id in the file; 0 when it holds none.
    last_id: u64,
}

pub struct DiskBuffer {
    dir: PathBuf,
    _lock: File,
    ledger: File,
    ledger_writes: u64,
    /// Oldest first; the last one is written to while `writer` is set.
    segments: VecDeque<Segment>,
    writer: Option<File>,
    next_seq: u64,
    segment_max: u64,
    max_bytes: u64,
    next_id: u64,
    acked: u64,
    /// (id, bytes on disk) of every record not yet acknowledged, oldest first.
    live: VecDeque<(u64, u64)>,
    live_bytes: u64,
}

/// CRC-32C (Castagnoli), bitwise-table; requests are small enough that speed does not matter.
pub fn crc32c(data: &[u8]) -> u32 {
    static TABLE: once_cell::sync::Lazy<[u32; 256]> = once_cell::sync::Lazy::new(|| {
        let mut t = [0u32; 256];
        for (i, e) in t.iter_mut().enumerate() {
            let mut c = i as u32;
            for _ in 0..8 {
                c = if c & 1 != 0 { 0x82F6_3B78 ^ (c >> 1) } else { c >> 1 };
            }
            *e = c;
        }
        t
    });
    let mut c = !0u32;
    for &b in data {
        c = TABLE[((c ^ b as u32) & 0xff) as usize] ^ (c >> 8);
    }
    !c
}

fn encode(out: &mut Vec<u8>, id: u64, time_ms: i64, samples: u32, body: &[u8]) {
    let start = out.len();
    out.extend_from_slice(&MAGIC.to_le_bytes());
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&id.to_le_bytes());
    out.extend_from_slice(&time_ms.to_le_bytes());
    out.extend_from_slice(&samples.to_le_bytes());
    out.extend_from_slice(body);
    let crc = crc32c(&out[start + 12..]);
    out[start + 8..start + 12].copy_from_slice(&crc.to_le_bytes());
}

fn segment_name(seq: u64) -> String {
    format!("segment-{:016x}.log", seq)
}

fn parse_segment_name(name: &str) -> Option<u64> {
    let hex = name.strip_prefix("segment-")?.strip_suffix(".log")?;
    if hex.len() != 16 {
        return None;
    }
    u64::from_str_radix(hex, 16).ok()
}

fn lock_exclusive(file: &File) -> io::Result<()> {
    // SAFETY: flock on a file descriptor we own; no memory is passed.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Reads one segment: its valid records in order, and a description of what was skipped.
fn read_segment(path: &Path, mut expect_after: u64) -> io::Result<(Vec<Record>, Option<String>)> {
    let mut data = Vec::new();
    File::open(path)?.read_to_end(&mut data)?;
    let mut out = Vec::new();
    let mut at = 0usize;
    while at < data.len() {
        let rest = &data[at..];
        let problem = if rest.len() < HEADER {
            Some("truncated record header")
        } else if u32::from_le_bytes(rest[0..4].try_into().unwrap()) != MAGIC {
            Some("bad record magic")
        } else {
            let len = u32::from_le_bytes(rest[4..8].try_into().unwrap()) as usize;
            if rest.len() < HEADER + len {
                Some("truncated record")
            } else if crc32c(&rest[12..HEADER + len]) != u32::from_le_bytes(rest[8..12].try_into().unwrap()) {
                Some("checksum mismatch")
            } else {
                let id = u64::from_le_bytes(rest[12..20].try_into().unwrap());
                if expect_after != 0 && id <= expect_after {
                    Some("record id out of sequence")
                } else {
                    out.push(Record {
                        id,
                        time_ms: i64::from_le_bytes(rest[20..28].try_into().unwrap()),
                        samples: u32::from_le_bytes(rest[28..32].try_into().unwrap()),
                        body: rest[HEADER..HEADER + len].to_vec(),
                    });
                    expect_after = id;
                    at += HEADER + len;
                    None
                }
            }
        };
        if let Some(p) = problem {
            let skipped = format!("{} at byte {} of {}: skipped its last {} bytes", p, at, path.display(), data.len() - at);
            return Ok((out, Some(skipped)));
        }
    }
    Ok((out, None))
}

impl DiskBuffer {
    /// Opens (creating) `dir`, takes its lock and recovers the records not yet acknowledged,
    /// oldest first. Errors name the option.
    pub fn open(dir: &str, max_bytes: u64) -> Result<(DiskBuffer, Vec<Record>), String> {
        let dir = PathBuf::from(dir);
        let fail = |what: &str, e: io::Error| format!("{}: cannot {} '{}': {}", OPTION, what, dir.display(), e);
        fs::create_dir_all(&dir).map_err(|e| fail("create", e))?;
        let lock_path = dir.join("lock");
        let mut lock = OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&lock_path).map_err(|e| fail("use", e))?;
        if let Err(e) = lock_exclusive(&lock) {
            if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
                let mut holder = String::new();
                let _ = lock.read_to_string(&mut holder);
                return Err(format!(
                    "{}: '{}' is in use by another exporter (process {} holds {}); give each JVM its own directory",
                    OPTION,
                    dir.display(),
                    holder.trim(),
                    lock_path.display()
                ));
            }
            return Err(fail("lock", e));
        }
        let _ = lock.set_len(0).and_then(|_| lock.write_all(std::process::id().to_string().as_bytes()));

        let ledger_path = dir.join("ledger");
        let ledger = OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&ledger_path).map_err(|e| fail("use", e))?;
        // Both slots allocated now, so that a full disk cannot stop acknowledgements later.
        if ledger.metadata().map(|m| m.len() < 32).unwrap_or(true) {
            ledger.write_all_at(&[0u8; 32], 0).and_then(|_| ledger.sync_data()).map_err(|e| fail("write the ledger in", e))?;
        }
        let mut raw = [0u8; 32];
        let n = ledger.read_at(&mut raw, 0).unwrap_or(0);
        let mut acked = 0u64;
        let mut ledger_writes = 0u64;
        for slot in 0..2 {
            let s = &raw[slot * 16..slot * 16 + 16];
            if n >= slot * 16 + 16 && crc32c(&s[0..8]) == u32::from_le_bytes(s[8..12].try_into().unwrap()) {
                let v = u64::from_le_bytes(s[0..8].try_into().unwrap());
                if v >= acked {
                    acked = v;
                    ledger_writes = slot as u64 + 1;
                }
            }
        }

        let mut seqs: Vec<u64> = fs::read_dir(&dir)
            .map_err(|e| fail("read", e))?
            .filter_map(|e| e.ok().and_then(|e| e.file_name().to_str().and_then(parse_segment_name)))
            .collect();
        seqs.sort_unstable();
        let mut segments = VecDeque::new();
        let mut records = Vec::new();
        let mut live = VecDeque::new();
        let mut live_bytes = 0;
        let mut newest = acked;
        let mut last_seen = 0u64;
        for seq in &seqs {
            let path = dir.join(segment_name(*seq));
            let (recs, skipped) = match read_segment(&path, last_seen) {
                Ok(r) => r,
                Err(e) => (Vec::new(), Some(format!("cannot read {}: {}", path.display(), e))),
            };
            if let Some(s) = skipped {
                log::warn!("{}: corrupt or truncated buffer file, {}", OPTION, s);
            }
            let bytes = fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
            let last_id = recs.last().map_or(0, |r| r.id);
            last_seen = last_seen.max(last_id);
            newest = newest.max(last_id);
            for r in recs {
                if r.id > acked {
                    let size = (HEADER + r.body.len()) as u64;
                    live.push_back((r.id, size));
                    live_bytes += size;
                    records.push(r);
                }
            }
            segments.push_back(Segment { path, bytes, last_id });
        }
        let mut buffer = DiskBuffer {
            segment_max: (max_bytes / 16).clamp(64 << 10, 64 << 20),
            dir,
            _lock: lock,
            ledger,
            ledger_writes,
            segments,
            writer: None,
            next_seq: seqs.last().map_or(0, |s| s + 1),
            max_bytes,
            next_id: newest + 1,
            acked,
            live,
            live_bytes,
        };
        buffer.remove_done_segments();
        Ok((buffer, records))
    }

    /// Bytes of the records not yet acknowledged.
    pub fn live_bytes(&self) -> u64 {
        self.live_bytes
    }

    pub fn max_bytes(&self) -> u64 {
        self.max_bytes
    }

    /// Bytes a batch of bodies takes on disk.
    pub fn size_of<'a>(bodies: impl IntoIterator<Item = &'a [u8]>) -> u64 {
        bodies.into_iter().map(|b| (HEADER + b.len()) as u64).sum()
    }

    /// Id of the next record `append` writes.
    pub fn next_id(&self) -> u64 {
        self.next_id
    }

    /// Writes a batch of `(time_ms, samples, body)` and syncs it; returns the first id (ids are
    /// consecutive). On an error, the error and how many of the batch's first records are on
    /// disk nevertheless (they got ids from the first one on; the rest got none).
    pub fn append(&mut self, batch: &[(i64, u32, &[u8])]) -> Result<u64, (io::Error, usize)> {
        let first = self.next_id;
        let mut i = 0;
        while i < batch.len() {
            if self.writer.is_none() || self.segments.back().map_or(true, |s| s.bytes >= self.segment_max) {
                self.start_segment().map_err(|e| (e, (self.next_id - first) as usize))?;
            }
            let room = self.segment_max.saturating_sub(self.segments.back().map_or(0, |s| s.bytes));
            let mut buf = Vec::new();
            let mut ids = Vec::new();
            // At least one record per segment, however large.
            while i < batch.len() && (buf.is_empty() || ((buf.len() + HEADER + batch[i].2.len()) as u64) <= room) {
                let (t, n, body) = batch[i];
                let id = self.next_id + ids.len() as u64;
                encode(&mut buf, id, t, n, body);
                ids.push((id, (HEADER + body.len()) as u64));
                i += 1;
            }
            let seg = self.segments.back_mut().expect("start_segment made one");
            let w = self.writer.as_mut().expect("start_segment opened it");
            let written = w.write_all(&buf).and_then(|_| w.sync_data());
            if let Err(e) = written {
                // The records of this chunk are not on disk; earlier chunks of the batch are
                // (the caller learns how many). The next batch starts a new segment.
                let _ = w.set_len(seg.bytes);
                self.writer = None;
                if seg.bytes == 0 {
                    let _ = fs::remove_file(&seg.path);
                    self.segments.pop_back();
                }
                return Err((e, (self.next_id - first) as usize));
            }
            seg.bytes += buf.len() as u64;
            seg.last_id = ids.last().map_or(seg.last_id, |x| x.0);
            self.next_id += ids.len() as u64;
            for (id, size) in ids {
                self.live.push_back((id, size));
                self.live_bytes += size;
            }
        }
        Ok(first)
    }

    fn start_segment(&mut self) -> io::Result<()> {
        let seq = self.next_seq;
        self.next_seq += 1;
        let path = self.dir.join(segment_name(seq));
        let file = OpenOptions::new().write(true).create_new(true).open(&path)?;
        if let Err(e) = sync_dir(&self.dir) {
            let _ = fs::remove_file(&path);
            return Err(e);
        }
        self.segments.push_back(Segment { path, bytes: 0, last_id: 0 });
        self.writer = Some(file);
        Ok(())
    }

    /// A record dropped while an older one is still queued: it stops counting against the bound
    /// now; the ledger passes it once the older ones are done (until then a restart replays it).
    pub fn forget(&mut self, id: u64) {
        if let Some(i) = self.live.iter().position(|&(x, _)| x == id) {
            let (_, size) = self.live.remove(i).expect("found just above");
            self.live_bytes -= size;
        }
    }

    /// Every record up to `upto` is delivered or dropped: the ledger moves on and files holding
    /// only such records are removed.
    pub fn ack(&mut self, upto: u64) {
        let upto = upto.min(self.next_id.saturating_sub(1));
        if upto <= self.acked {
            return;
        }
        self.acked = upto;
        while let Some(&(id, size)) = self.live.front() {
            if id > upto {
                break;
            }
            self.live.pop_front();
            self.live_bytes -= size;
        }
        let mut slot = [0u8; 16];
        slot[0..8].copy_from_slice(&upto.to_le_bytes());
        let crc = crc32c(&slot[0..8]);
        slot[8..12].copy_from_slice(&crc.to_le_bytes());
        let at = (self.ledger_writes % 2) * 16;
        self.ledger_writes += 1;
        if let Err(e) = self.ledger.write_at(&slot, at) {
            log::warn!("{}: cannot write {}: {} (delivered requests may be sent again after a restart)", OPTION, self.dir.join("ledger").display(), e);
        }
        self.remove_done_segments();
    }

    fn remove_done_segments(&mut self) {
        while let Some(s) = self.segments.front() {
            let is_writer = self.writer.is_some() && self.segments.len() == 1;
            if s.last_id > self.acked || (is_writer && s.last_id == 0) {
                break;
            }
            if is_writer {
                self.writer = None;
            }
            if let Err(e) = fs::remove_file(&s.path) {
                log::warn!("{}: cannot remove {}: {}", OPTION, s.path.display(), e);
            }
            self.segments.pop_front();
        }
    }

    /// Files in the directory (segments), for tests and the README's bound.
    pub fn segment_paths(&self) -> Vec<PathBuf> {
        self.segments.iter().map(|s| s.path.clone()).collect()
    }
}

impl Drop for DiskBuffer {
    fn drop(&mut self) {
        // Best effort: the next open reads the ledger as it is, and the lock goes with the fd.
        let _ = self.ledger.sync_data();
    }
}
