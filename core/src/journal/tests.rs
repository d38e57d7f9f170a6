//! Unit tests of the journal's pure parts (format, ids, time, paths) and of
//! the writer's fsync poisoning through the test-only fsync seam. Tests of
//! the files, the lock and crashes are in `tests/journal.rs`.

use super::frame::{self, Scan, ScanError, TailRule};
use super::session::TEST_SYNC;
use super::sys;
use super::*;
use serde_json::json;
use std::fs::File;
use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};

/// A journal of records with varied payloads (escapes, unicode, nesting),
/// and where each record starts; the last start is the file length.
fn sample() -> (Vec<u8>, Vec<usize>) {
    let events = [
        json!({"command": "start"}),
        json!({"command": "fail", "reason": "line one\nline two\t\"quoted\" \u{1F4A5} ünïcode"}),
        json!(null),
        json!({"nested": [1, 2.5, {"deep": [true, false]}], "empty": {}}),
        json!("last"),
    ];
    let mut data = Vec::new();
    let mut starts = Vec::new();
    for (i, event) in events.iter().enumerate() {
        starts.push(data.len());
        data.extend(frame::encode(i as u64 + 1, 1_764_034_200_000 + i as u64, event).unwrap());
    }
    starts.push(data.len());
    (data, starts)
}

fn check(data: &[u8]) -> Result<Scan, ScanError> {
    frame::scan(data, 0, 1, TailRule::Check)
}

#[test]
fn records_round_trip_and_are_one_greppable_line_each() {
    let (data, starts) = sample();
    let scan = check(&data).unwrap();
    assert_eq!(scan.records.len(), 5);
    assert_eq!((scan.end, scan.tail), (data.len() as u64, 0));
    for (i, record) in scan.records.iter().enumerate() {
        assert_eq!(record.seq, i as u64 + 1);
        assert_eq!(record.ts_ms, 1_764_034_200_000 + i as u64);
        assert_eq!(record.offset, starts[i] as u64);
    }
    assert_eq!(
        scan.records[1].event["reason"],
        "line one\nline two\t\"quoted\" 💥 ünïcode"
    );
    let text = String::from_utf8(data).unwrap();
    let first = text.lines().next().unwrap();
    let body = r#"{"seq":1,"ts_ms":1764034200000,"event":{"command":"start"}}"#;
    // The documented example, pinned: changing the on-disk format must be
    // deliberate (old journals must stay readable).
    assert_eq!(first, format!("ed5a83c8 59 {body}"));
    assert_eq!(text.lines().count(), 5);
}

#[test]
fn truncation_at_every_byte_keeps_the_records_before_it_and_reports_a_torn_tail() {
    let (data, starts) = sample();
    for cut in 0..=data.len() {
        let whole = starts.iter().filter(|&&s| s <= cut).count() - 1;
        let end = starts[whole];
        // A plain prefix (kill -9), and one followed by zero bytes (a size
        // that reached the disk before the data, on power loss).
        let mut zeroed = data[..cut].to_vec();
        zeroed.extend([0u8; 9]);
        for bytes in [&data[..cut], &zeroed[..]] {
            let scan = check(bytes).unwrap_or_else(|e| panic!("cut at {cut}: {e:?}"));
            assert_eq!(scan.records.len(), whole, "cut at {cut}");
            assert_eq!(scan.end, end as u64, "cut at {cut}");
            assert_eq!(scan.tail, (bytes.len() - end) as u64, "cut at {cut}");
        }
    }
}

#[test]
fn every_single_bit_flip_anywhere_is_corruption_at_its_record() {
    let (data, starts) = sample();
    for i in 0..data.len() {
        let record = starts.iter().rposition(|&s| s <= i).unwrap();
        for bit in 0..8 {
            let mut bad = data.clone();
            bad[i] ^= 1 << bit;
            let err =
                check(&bad).expect_err(&format!("flip of bit {bit} of byte {i} was not detected"));
            assert_eq!(
                (err.record, err.offset),
                (record as u64 + 1, starts[record] as u64),
                "flip of bit {bit} of byte {i}: {}",
                err.what
            );
        }
    }
}

#[test]
fn a_flipped_bit_in_the_last_records_newline_is_not_mistaken_for_a_torn_write() {
    let (mut data, starts) = sample();
    let last = data.len() - 1;
    data[last] = b'\n' ^ 0x20;
    let err = check(&data).unwrap_err();
    assert_eq!((err.record, err.offset), (5, starts[4] as u64));
    assert!(err.what.contains("no interrupted write"), "{}", err.what);
}

#[test]
fn a_complete_record_missing_only_its_newline_is_torn_not_kept() {
    let (data, starts) = sample();
    let scan = check(&data[..data.len() - 1]).unwrap();
    assert_eq!(scan.records.len(), 4);
    assert_eq!(scan.end, starts[4] as u64);
}

#[test]
fn unterminated_bytes_no_write_can_leave_are_corruption() {
    let (data, starts) = sample();
    let good = &data[..starts[2]];
    let frame3 = &data[starts[2]..starts[3]];
    let body_start = frame3.iter().position(|&b| b == b'{').unwrap();
    let mut bad_body = frame3[..frame3.len() - 1].to_vec();
    bad_body[body_start + 3] ^= 0x01;
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("text", b"hello world".to_vec()),
        ("uppercase crc", b"ABCDEF01 12 {".to_vec()),
        ("leading zero length", b"abcdef01 012 {".to_vec()),
        ("no space after crc", b"abcdef01x".to_vec()),
        ("zero in the middle of a header", b"abc\0ef01 1".to_vec()),
        ("complete body, bad checksum", bad_body),
        (
            "stray byte after a complete record",
            [&frame3[..frame3.len() - 1], b"x"].concat(),
        ),
    ];
    for (name, tail) in cases {
        let err = check(&[good, &tail].concat()).expect_err(name);
        assert_eq!((err.record, err.offset), (3, starts[2] as u64), "{name}");
        // The follower leaves any unterminated bytes for later.
        let scan = frame::scan(&[good, &tail].concat(), 0, 1, TailRule::Pending).unwrap();
        assert_eq!(
            (scan.records.len(), scan.end),
            (2, starts[2] as u64),
            "{name}"
        );
    }
}

#[test]
fn sequence_numbers_must_run_from_one_without_gap_or_repeat() {
    let frames = |seqs: &[u64]| -> Vec<u8> {
        seqs.iter()
            .flat_map(|&s| frame::encode(s, 0, &json!(s)).unwrap())
            .collect()
    };
    assert_eq!(check(&frames(&[1, 2, 3])).unwrap().records.len(), 3);
    for (seqs, record, what) in [
        (&[2][..], 1, "sequence gap: expected record 1, found 2"),
        (
            &[1, 2, 4],
            3,
            "sequence gap: expected record 3, found 4 (1 missing)",
        ),
        (
            &[1, 2, 2],
            3,
            "sequence number 2 repeats or goes back (expected 3)",
        ),
        (&[1, 3, 2], 2, "sequence gap"),
    ] {
        let err = check(&frames(seqs)).unwrap_err();
        assert_eq!(err.record, record, "{seqs:?}");
        assert!(err.what.starts_with(what), "{seqs:?}: {}", err.what);
    }
    // A follower continuing from record 3 expects 3.
    let tail = frames(&[3, 4]);
    let scan = frame::scan(&tail, 1000, 3, TailRule::Pending).unwrap();
    assert_eq!(scan.records[0].offset, 1000);
    assert_eq!(scan.end, 1000 + tail.len() as u64);
    assert!(frame::scan(&tail, 0, 2, TailRule::Pending).is_err());
}

#[test]
fn a_checksummed_line_that_is_not_an_envelope_is_corruption() {
    let body = br#"{"seq":1}"#;
    let line = [
        format!("{:08x} {} ", crc32fast::hash(body), body.len()).as_bytes(),
        body,
        b"\n",
    ]
    .concat();
    let err = check(&line).unwrap_err();
    assert!(err.what.contains("not a journal record"), "{}", err.what);
    let err = check(b"\n").unwrap_err();
    assert_eq!(err.offset, 0);
}

// ─── Poisoning (the fsync seam) ─────────────────────────────────────────────

static FAILING_SYNCS: AtomicUsize = AtomicUsize::new(0);

fn failing_sync(_: &File) -> io::Result<()> {
    FAILING_SYNCS.fetch_add(1, Ordering::SeqCst);
    Err(io::Error::from_raw_os_error(libc::EIO))
}

#[test]
fn a_failed_fsync_poisons_the_writer_and_is_never_retried() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = StateDir::lock(tmp.path()).unwrap();
    let mut good = dir.create_session().unwrap();
    assert_eq!(good.append(&"fine").unwrap(), 1);
    let id = good.id().clone();
    drop(good);

    TEST_SYNC.set(Some(failing_sync));
    let (mut writer, report) = dir.open_session::<String>(&id).unwrap();
    TEST_SYNC.set(None);
    assert_eq!(report.records.len(), 1);

    let err = writer.append(&"doomed").unwrap_err();
    assert!(matches!(err, JournalError::Fsync { .. }), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains(&writer.path().display().to_string()) && msg.contains("without retrying"),
        "{msg}"
    );
    assert!(writer.is_poisoned());
    let err = writer.append(&"again").unwrap_err();
    assert!(
        matches!(err, JournalError::Poisoned { what: "fsync", .. }),
        "{err}"
    );
    assert!(matches!(
        writer.finish().unwrap_err(),
        JournalError::Poisoned { .. }
    ));
    assert_eq!(
        FAILING_SYNCS.load(Ordering::SeqCst),
        1,
        "the failed fsync was retried"
    );
}

static CUT_SYNCS: AtomicUsize = AtomicUsize::new(0);

fn failing_cut_sync(_: &File) -> io::Result<()> {
    CUT_SYNCS.fetch_add(1, Ordering::SeqCst);
    Err(io::Error::from_raw_os_error(libc::EIO))
}

#[test]
fn a_failed_fsync_after_cutting_a_torn_tail_stops_the_open() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = StateDir::lock(tmp.path()).unwrap();
    let mut writer = dir.create_session().unwrap();
    writer.append(&1).unwrap();
    let (id, path) = (writer.id().clone(), writer.path().to_path_buf());
    drop(writer);
    std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .and_then(|mut f| io::Write::write_all(&mut f, b"0123abcd 40 {\"seq\""))
        .unwrap();
    TEST_SYNC.set(Some(failing_cut_sync));
    let err = dir.open_session::<u32>(&id).unwrap_err();
    TEST_SYNC.set(None);
    assert!(matches!(err, JournalError::Fsync { .. }), "{err}");
    assert_eq!(CUT_SYNCS.load(Ordering::SeqCst), 1);
}

// ─── Ids, time, paths ───────────────────────────────────────────────────────

#[test]
fn utc_formatting_matches_known_dates() {
    assert_eq!(format_utc(0), "1970-01-01T00:00:00Z");
    assert_eq!(format_utc(1_764_034_200_999), "2025-11-25T01:30:00Z");
    assert_eq!(format_utc(951_868_799_000), "2000-02-29T23:59:59Z");
    assert_eq!(sys::format_compact(1_795_570_200), "20261125T013000Z");
    assert_eq!(sys::parse_compact("20261125T013000Z"), Some(1_795_570_200));
    for secs in (0..4_000_000_000u64).step_by(7_777_777) {
        assert_eq!(sys::parse_compact(&sys::format_compact(secs)), Some(secs));
    }
    for bad in [
        "20260230T000000Z",
        "20261125T240000Z",
        "20261125 013000Z",
        "2026112T0130000Z",
        "+0261125T013000Z",
    ] {
        assert_eq!(sys::parse_compact(bad), None, "{bad}");
    }
}

#[test]
fn session_ids_are_validated_and_sort_in_creation_order() {
    let old = SessionId::parse("20261125T013000Z-3f9a").unwrap();
    assert_eq!((old.number(), old.created_secs()), (0, 1_795_570_200));
    let id = SessionId::parse("000042-20261125T013000Z-3f9a").unwrap();
    assert_eq!((id.number(), id.created_secs()), (42, 1_795_570_200));
    assert_eq!(
        SessionId::parse("1234567890123456-20261125T013000Z-3f9a")
            .unwrap()
            .number(),
        1_234_567_890_123_456
    );
    for bad in [
        "",
        "../etc",
        "20261125T013000Z",
        "20261125T013000Z-3F9A",
        "20261125T013000Z-3f9",
        "20261125T013000Z-3f9a/x",
        "100000101T000000Z-3f9a",
        "42-20261125T013000Z-3f9a",
        "000000-20261125T013000Z-3f9a",
        "0000042-20261125T013000Z-3f9a",
        "000042-20261125T013000Z",
        "000042--20261125T013000Z-3f9a",
        "1000000000000000000-20261125T013000Z-3f9a",
    ] {
        assert!(
            matches!(
                SessionId::parse(bad),
                Err(JournalError::BadSessionId { .. })
            ),
            "{bad}"
        );
    }
    let first = SessionId::next(None, 1_795_570_200).unwrap();
    assert!(
        first.as_str().starts_with("000001-20261125T013000Z-"),
        "{first}"
    );
    assert_eq!(SessionId::parse(first.as_str()).unwrap(), first);
    // After a first-format id, even one from the far future: number 1.
    let far = SessionId::parse("99991231T235959Z-ffff").unwrap();
    let after_far = SessionId::next(Some(&far), 1_795_570_200).unwrap();
    assert!(after_far > far && after_far > old && far > old);
    assert!(after_far.as_str().starts_with("000001-20261125T013000Z-"));
    // The clock standing still, stepping back, or past what an id can say:
    // each id still sorts after the one before and reads back.
    let mut prev = after_far;
    for now in [1_795_570_200, 1_795_570_100, 0, u64::MAX / 1000] {
        let next = SessionId::next(Some(&prev), now).unwrap();
        assert!(next > prev, "{next} after {prev}");
        assert_eq!(SessionId::parse(next.as_str()).unwrap(), next);
        prev = next;
    }
    assert!(
        prev.as_str().starts_with("000005-99991231T235959Z-"),
        "{prev}"
    );
    // Numbers compare as numbers past the padding.
    let big = SessionId::parse("1000000-20200101T000000Z-0000").unwrap();
    assert!(big > SessionId::parse("999999-20301231T000000Z-0000").unwrap());
    let last = SessionId::parse("999999999999999999-20261125T013000Z-3f9a").unwrap();
    assert_eq!(SessionId::next(Some(&last), 0), None);
}

#[test]
fn records_longer_than_the_limit_are_not_encoded_and_headers_declaring_them_are_corrupt() {
    let small = frame::encode(1, 0, &"x".repeat(1000)).unwrap();
    assert!(check(&small).is_ok());
    let padding = MAX_RECORD_BYTES as usize - r#"{"seq":1,"ts_ms":0,"event":""}"#.len();
    let at_limit = frame::encode(1, 0, &"x".repeat(padding)).unwrap();
    assert_eq!(check(&at_limit).unwrap().records.len(), 1);
    assert_eq!(
        frame::encode(1, 0, &"x".repeat(padding + 1)),
        Err(frame::EncodeError::TooLarge {
            bytes: MAX_RECORD_BYTES + 1
        })
    );
    // A header declaring more than the limit: corruption, whether the
    // line is complete or not (it is no torn record either).
    for data in [
        b"00000000 1048577 {}\n".to_vec(),
        b"00000000 99999999999".to_vec(),
    ] {
        let err = check(&data).unwrap_err();
        assert_eq!((err.record, err.offset), (1, 0));
        assert!(err.what.contains("more than 1048576 bytes"), "{}", err.what);
    }
}

#[test]
fn crash_points_parse_strictly() {
    use sys::CrashPoint::*;
    assert_eq!(
        sys::parse_crash_point("3:before-write"),
        Some((3, BeforeWrite))
    );
    assert_eq!(sys::parse_crash_point("1:mid-write"), Some((1, MidWrite)));
    assert_eq!(
        sys::parse_crash_point("7:after-write"),
        Some((7, AfterWrite))
    );
    assert_eq!(sys::parse_crash_point("2:after-sync"), Some((2, AfterSync)));
    for bad in ["", "3", "0:after-sync", "x:after-sync", "3:later"] {
        assert_eq!(sys::parse_crash_point(bad), None, "{bad}");
    }
}

#[test]
fn error_messages_name_the_path_and_the_way_out() {
    let corrupt = JournalError::Corrupt {
        path: "/x/sessions/s/journal".into(),
        record: 17,
        offset: 2048,
        what: "checksum mismatch (stored 00000000, computed 12345678)".into(),
    };
    assert_eq!(
        corrupt.to_string(),
        "journal /x/sessions/s/journal is corrupt at record 17 (byte 2048): checksum mismatch \
         (stored 00000000, computed 12345678); refusing to guess — restore it from backup or move \
         the session away"
    );
    let locked = JournalError::Locked {
        path: "/x".into(),
        holder: Some(LockHolder {
            pid: 1234,
            since_ms: 1_764_034_200_000,
            proc_start: None,
        }),
    };
    assert_eq!(
        locked.to_string(),
        "state dir /x is locked by pid 1234 (since 2025-11-25T01:30:00Z)"
    );
    let unknown = JournalError::Locked {
        path: "/x".into(),
        holder: None,
    };
    assert!(unknown.to_string().contains("locked by another process"));
}
