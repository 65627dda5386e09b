//! The disk buffer alone (src/disk_buffer.rs): records survive reopening, acknowledged ones do
//! not come back, torn and corrupt files are skipped with what is valid kept, the lock refuses a
//! second user, and a model-based test replays random action sequences (append, acknowledge,
//! reopen, tear the tail) against a plain in-memory queue, as Vector's disk_v2 tests do.

use beam_prometheus::disk_buffer::{crc32c, DiskBuffer, Record};
use proptest::prelude::*;
use std::collections::VecDeque;
use std::fs::{self, OpenOptions};
use std::path::{Path, PathBuf};

fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("beamprom-disk-{}-{}-{}", name, std::process::id(), rand_suffix()));
    let _ = fs::remove_dir_all(&d);
    d
}

fn rand_suffix() -> u128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos()
}

fn open(dir: &Path, max: u64) -> (DiskBuffer, Vec<Record>) {
    DiskBuffer::open(dir.to_str().unwrap(), max).unwrap()
}

fn body(i: u64, len: usize) -> Vec<u8> {
    (0..len).map(|k| (i as usize * 31 + k) as u8).collect()
}

fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> =
        fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).filter(|p| p.to_str().unwrap().ends_with(".log")).collect();
    v.sort();
    v
}

#[test]
fn crc32c_check_value() {
    // The standard check value of CRC-32C.
    assert_eq!(crc32c(b"123456789"), 0xE306_9283);
}

#[test]
fn records_survive_reopening_until_acknowledged() {
    let dir = temp_dir("reopen");
    let (mut b, rec) = open(&dir, 1 << 20);
    assert!(rec.is_empty());
    let first = b.append(&[(1000, 2, &body(1, 50)), (1000, 3, &body(2, 70))]).unwrap();
    b.append(&[(2000, 4, &body(3, 10))]).unwrap();
    assert_eq!(b.live_bytes(), 3 * 32 + 130);
    drop(b);
    let (mut b, rec) = open(&dir, 1 << 20);
    let got: Vec<(u64, i64, u32, Vec<u8>)> = rec.into_iter().map(|r| (r.id, r.time_ms, r.samples, r.body)).collect();
    assert_eq!(
        got,
        vec![(first, 1000, 2, body(1, 50)), (first + 1, 1000, 3, body(2, 70)), (first + 2, 2000, 4, body(3, 10))]
    );
    b.ack(first + 1);
    drop(b);
    let (b, rec) = open(&dir, 1 << 20);
    assert_eq!(rec.iter().map(|r| r.id).collect::<Vec<_>>(), vec![first + 2]);
    // Ids keep increasing across restarts.
    assert!(b.next_id() > first + 2);
    drop(b);
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn acknowledged_files_are_removed() {
    let dir = temp_dir("remove");
    // 64 KiB segments (the smallest): 20 records of 10 KB fill several.
    let (mut b, _) = open(&dir, 65_536);
    let first = b.append(&(0..20).map(|i| (i as i64, 1, vec![i as u8; 10_000])).collect::<Vec<_>>().iter().map(|(t, n, v)| (*t, *n, &v[..])).collect::<Vec<_>>()).unwrap();
    let files = segments(&dir).len();
    assert!(files >= 3, "{} files", files);
    b.ack(first + 19);
    assert_eq!(b.live_bytes(), 0);
    assert!(segments(&dir).is_empty(), "{:?}", segments(&dir));
    drop(b);
    let (_, rec) = open(&dir, 65_536);
    assert!(rec.is_empty());
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_torn_tail_is_skipped_and_the_rest_kept() {
    let dir = temp_dir("torn");
    let (mut b, _) = open(&dir, 1 << 20);
    let first = b.append(&[(1, 1, &body(1, 100)), (2, 1, &body(2, 100)), (3, 1, &body(3, 100))]).unwrap();
    drop(b);
    let seg = segments(&dir).pop().unwrap();
    let len = fs::metadata(&seg).unwrap().len();
    // Power loss in the middle of the last record.
    OpenOptions::new().write(true).open(&seg).unwrap().set_len(len - 40).unwrap();
    let (mut b, rec) = open(&dir, 1 << 20);
    assert_eq!(rec.iter().map(|r| r.id).collect::<Vec<_>>(), vec![first, first + 1]);
    // Appending after recovery goes to a new file; everything stays readable.
    let next = b.append(&[(4, 1, &body(4, 10))]).unwrap();
    assert!(next > first + 1);
    drop(b);
    let (_, rec) = open(&dir, 1 << 20);
    assert_eq!(rec.iter().map(|r| r.id).collect::<Vec<_>>(), vec![first, first + 1, next]);
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_corrupt_record_ends_its_file_and_later_files_still_count() {
    let dir = temp_dir("corrupt");
    let (mut b, _) = open(&dir, 1 << 20);
    let first = b.append(&[(1, 1, &body(1, 100)), (2, 1, &body(2, 100))]).unwrap();
    drop(b);
    let (mut b, _) = open(&dir, 1 << 20);
    b.append(&[(3, 1, &body(3, 100))]).unwrap();
    drop(b);
    let segs = segments(&dir);
    assert_eq!(segs.len(), 2);
    // Flip one byte in the second record's body of the first file.
    let mut data = fs::read(&segs[0]).unwrap();
    let at = data.len() - 5;
    data[at] ^= 0xff;
    fs::write(&segs[0], &data).unwrap();
    let (_, rec) = open(&dir, 1 << 20);
    assert_eq!(rec.iter().map(|r| (r.id, r.time_ms)).collect::<Vec<_>>(), vec![(first, 1), (first + 2, 3)]);
    // Garbage instead of a file: skipped, never a panic.
    fs::write(dir.join("segment-00000000000000ff.log"), b"not a record at all").unwrap();
    fs::write(&segs[1], b"").unwrap();
    let (_, rec) = open(&dir, 1 << 20);
    assert_eq!(rec.iter().map(|r| r.id).collect::<Vec<_>>(), vec![first]);
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_torn_ledger_falls_back_to_the_other_slot() {
    let dir = temp_dir("ledger");
    let (mut b, _) = open(&dir, 1 << 20);
    let first = b.append(&[(1, 1, &body(1, 10)), (2, 1, &body(2, 10)), (3, 1, &body(3, 10))]).unwrap();
    b.ack(first); // slot A
    b.ack(first + 1); // slot B
    drop(b);
    let mut l = fs::read(dir.join("ledger")).unwrap();
    assert_eq!(l.len(), 32);
    l[16] ^= 0xff; // slot B torn
    fs::write(dir.join("ledger"), &l).unwrap();
    // The older acknowledgement holds: one record comes again (harmless: identical samples).
    let (_, rec) = open(&dir, 1 << 20);
    assert_eq!(rec.iter().map(|r| r.id).collect::<Vec<_>>(), vec![first + 1, first + 2]);
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_second_user_of_the_directory_is_refused() {
    let dir = temp_dir("lock");
    let (b, _) = open(&dir, 1 << 20);
    let e = DiskBuffer::open(dir.to_str().unwrap(), 1 << 20).err().expect("a second open must fail");
    assert!(e.starts_with("--prometheusBufferDir:") && e.contains("in use") && e.contains(&std::process::id().to_string()), "{}", e);
    drop(b);
    // Released with its holder.
    assert!(DiskBuffer::open(dir.to_str().unwrap(), 1 << 20).is_ok());
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn an_unusable_directory_is_an_error_naming_the_option() {
    let e = DiskBuffer::open("/proc/beamprom-cannot-create", 1 << 20).err().unwrap();
    assert!(e.starts_with("--prometheusBufferDir: cannot create"), "{}", e);
}

#[test]
fn forgotten_records_stop_counting_and_come_back_only_before_the_ledger_passes_them() {
    let dir = temp_dir("forget");
    let (mut b, _) = open(&dir, 1 << 20);
    let first = b.append(&[(1, 1, &body(1, 10)), (2, 1, &body(2, 10)), (3, 1, &body(3, 10))]).unwrap();
    b.forget(first + 1);
    assert_eq!(b.live_bytes(), 2 * 42);
    b.ack(first + 1);
    assert_eq!(b.live_bytes(), 42);
    drop(b);
    let (_, rec) = open(&dir, 1 << 20);
    assert_eq!(rec.iter().map(|r| r.id).collect::<Vec<_>>(), vec![first + 2]);
    fs::remove_dir_all(&dir).unwrap();
}

#[derive(Clone, Debug)]
enum Action {
    /// A batch of record body lengths.
    Append(Vec<usize>),
    /// Acknowledge this many of the oldest unacknowledged records.
    Ack(usize),
    Reopen,
    /// Cut this many bytes off the newest file, then reopen (a crash mid-write).
    TearTail(u64),
}

fn action() -> impl Strategy<Value = Action> {
    prop_oneof![
        4 => prop::collection::vec(0usize..3000, 1..5).prop_map(Action::Append),
        3 => (0usize..6).prop_map(Action::Ack),
        1 => Just(Action::Reopen),
        1 => (1u64..200).prop_map(Action::TearTail),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// The model: a queue of (id, body) not yet acknowledged. After any sequence, reopening
    /// yields exactly the model's queue, in order; a torn tail loses only records of the
    /// newest file's end, which the model drops too (they were never acknowledged as written).
    #[test]
    fn behaves_like_an_in_memory_queue(actions in prop::collection::vec(action(), 1..40)) {
        let dir = temp_dir("model");
        // Small segments so that batches span files.
        let max = 65_536;
        let (mut b, rec) = open(&dir, max);
        prop_assert!(rec.is_empty());
        let mut model: VecDeque<(u64, Vec<u8>)> = VecDeque::new();
        let mut n = 0u64;
        for a in actions {
            match a {
                Action::Append(lens) => {
                    let bodies: Vec<Vec<u8>> = lens.iter().map(|l| { n += 1; body(n, *l) }).collect();
                    let batch: Vec<(i64, u32, &[u8])> = bodies.iter().map(|v| (n as i64, 1, &v[..])).collect();
                    let first = b.append(&batch).unwrap();
                    for (i, v) in bodies.into_iter().enumerate() {
                        model.push_back((first + i as u64, v));
                    }
                }
                Action::Ack(k) => {
                    let k = k.min(model.len());
                    if k > 0 {
                        let upto = model[k - 1].0;
                        b.ack(upto);
                        model.drain(..k);
                    }
                }
                Action::Reopen => {
                    drop(b);
                    let (nb, rec) = open(&dir, max);
                    b = nb;
                    let got: Vec<(u64, Vec<u8>)> = rec.into_iter().map(|r| (r.id, r.body)).collect();
                    prop_assert_eq!(&got, &model.iter().cloned().collect::<Vec<_>>());
                }
                Action::TearTail(cut) => {
                    drop(b);
                    if let Some(last) = segments(&dir).pop() {
                        let len = fs::metadata(&last).unwrap().len();
                        OpenOptions::new().write(true).open(&last).unwrap().set_len(len.saturating_sub(cut)).unwrap();
                    }
                    let (nb, rec) = open(&dir, max);
                    b = nb;
                    let got: Vec<(u64, Vec<u8>)> = rec.into_iter().map(|r| (r.id, r.body)).collect();
                    // What survives is a prefix of the model: the torn records were the newest.
                    prop_assert!(got.len() <= model.len());
                    prop_assert_eq!(&got[..], &model.iter().take(got.len()).cloned().collect::<Vec<_>>()[..]);
                    model.truncate(got.len());
                }
            }
            prop_assert_eq!(b.live_bytes(), model.iter().map(|(_, v)| 32 + v.len() as u64).sum::<u64>());
        }
        drop(b);
        let (_, rec) = open(&dir, max);
        let got: Vec<(u64, Vec<u8>)> = rec.into_iter().map(|r| (r.id, r.body)).collect();
        prop_assert_eq!(&got, &model.iter().cloned().collect::<Vec<_>>());
        fs::remove_dir_all(&dir).unwrap();
    }
}
