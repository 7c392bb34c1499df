//! The audit log's appends, group commits, storage faults and tree heads (§12.4, §18.11).

use super::*;
use crate::test_support::signed_receipt;
use quorate_crypto::tensor_digest::sha256;

#[test]
fn a_torn_tail_is_cut_and_complete_records_survive() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.qlog");
    let (log, n) = AuditLog::open(&path).unwrap();
    assert_eq!(n, 0);
    log.append(b"first receipt").unwrap();
    log.append(b"second receipt").unwrap();
    drop(log);
    let reserved = std::fs::read(&path).unwrap();
    let s = scan(&reserved).unwrap();
    // §12.4.3: the records, then the zeros reserved for the next ones: the first commit
    // reserved them, the second wrote into them.
    assert_eq!(
        s.reserved_bytes,
        (tail::RESERVE - RECORD_HEADER - 14) as u64
    );
    assert_eq!(s.good_len + s.reserved_bytes, reserved.len() as u64);
    let complete = reserved[..s.good_len as usize].to_vec();
    // Simulate a crash at every point of writing a third record: into the reserved
    // zeros, and at the end of a log that has none (as an earlier node wrote them).
    let mut third = Vec::new();
    third.extend_from_slice(&(14u32).to_be_bytes());
    third.extend_from_slice(&sha256(b"third receipt!"));
    third.extend_from_slice(b"third receipt!");
    for cut in 0..third.len() {
        let mut into_reserve = reserved.clone();
        into_reserve[complete.len()..][..cut].copy_from_slice(&third[..cut]);
        let at_end = [&complete[..], &third[..cut]].concat();
        for image in [into_reserve, at_end] {
            std::fs::write(&path, &image).unwrap();
            let (log, n) = AuditLog::open(&path).unwrap();
            assert_eq!(n, 2, "cut at {cut}");
            let reopened = std::fs::read(&path).unwrap();
            assert_eq!(reopened[..complete.len()], complete[..], "cut at {cut}");
            assert!(reopened[complete.len()..].iter().all(|&b| b == 0));
            log.append(b"after recovery").unwrap();
            drop(log);
            let s = scan(&std::fs::read(&path).unwrap()).unwrap();
            assert_eq!(s.records.len(), 3);
            assert_eq!(s.records[2], b"after recovery");
            assert_eq!(s.torn_bytes, 0);
        }
    }
    // A flipped byte in the last record is a torn record too.
    let mut bad = complete.clone();
    let n = bad.len();
    bad[n - 1] ^= 1;
    std::fs::write(&path, &bad).unwrap();
    assert_eq!(AuditLog::open(&path).unwrap().1, 1);
    assert!(scan(b"not a log").is_err());
}

#[test]
fn concurrent_appends_are_each_durable_once_and_whole() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.qlog");
    let (log, _) = AuditLog::open(&path).unwrap();
    let log = Arc::new(log);
    let threads: Vec<_> = (0..16u32)
        .map(|t| {
            let log = log.clone();
            std::thread::spawn(move || {
                for i in 0..100u32 {
                    let receipt = format!("receipt {t}/{i}").repeat(1 + (i as usize % 7));
                    log.append(receipt.as_bytes()).unwrap();
                    // Returned means durable: the bytes are in the file already.
                    assert!(log.durable_len() >= receipt.len() as u64);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let bytes = std::fs::read(&path).unwrap();
    let s = scan(&bytes).unwrap();
    assert_eq!(log.durable_len(), s.good_len);
    assert_eq!(s.good_len + s.reserved_bytes, bytes.len() as u64);
    assert_eq!(s.torn_bytes, 0);
    let mut got: Vec<Vec<u8>> = s.records;
    got.sort();
    let mut want: Vec<Vec<u8>> = (0..16u32)
        .flat_map(|t| {
            (0..100u32).map(move |i| {
                format!("receipt {t}/{i}")
                    .repeat(1 + (i as usize % 7))
                    .into_bytes()
            })
        })
        .collect();
    want.sort();
    assert_eq!(got, want);
    // Each thread's own receipts are in the order it appended them.
    let s = scan(&bytes).unwrap();
    for t in 0..16u32 {
        let prefix = format!("receipt {t}/");
        let order: Vec<u32> = s
            .records
            .iter()
            .filter_map(|r| std::str::from_utf8(r).ok()?.strip_prefix(&prefix))
            .map(|rest| rest.split(|c: char| !c.is_ascii_digit()).next().unwrap())
            .map(|n| n.parse().unwrap())
            .collect();
        assert_eq!(order, (0..100).collect::<Vec<_>>(), "thread {t}");
    }
}

/// Tasks and threads appending at once share group commits: every receipt is durable
/// when its append returns, exactly once and whole, and each appender's receipts keep
/// their order. Half the tasks ask to lead on their own thread (`Leader::Caller`), so
/// commits led there and handed on to the pool mix with those led by the pool and by
/// threads.
#[test]
fn async_and_blocking_appends_share_commits_and_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.qlog");
    let (log, _) = AuditLog::open(&path).unwrap();
    let log = Arc::new(log);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let receipt = |who: &str, i: u32| format!("{who}/{i:04}").repeat(1 + i as usize % 5);
    let tasks: Vec<_> = (0..12)
        .map(|t| {
            let log = log.clone();
            rt.spawn(async move {
                for i in 0..150u32 {
                    let r = receipt(&format!("task{t}"), i);
                    let leader = [Leader::Pool, Leader::Caller][t % 2];
                    let proof = log.append_async(r.as_bytes(), false, leader).await.unwrap();
                    assert!(proof.is_none());
                    assert!(log.durable_len() >= r.len() as u64);
                }
            })
        })
        .collect();
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let log = log.clone();
            std::thread::spawn(move || {
                for i in 0..150u32 {
                    log.append(receipt(&format!("thread{t}"), i).as_bytes())
                        .unwrap();
                }
            })
        })
        .collect();
    for t in tasks {
        rt.block_on(t).unwrap();
    }
    for t in threads {
        t.join().unwrap();
    }
    let s = scan(&std::fs::read(&path).unwrap()).unwrap();
    assert_eq!(s.torn_bytes, 0);
    assert_eq!(s.records.len(), 16 * 150);
    let who: Vec<String> = (0..12)
        .map(|t| format!("task{t}"))
        .chain((0..4).map(|t| format!("thread{t}")))
        .collect();
    for w in &who {
        let mine: Vec<&Vec<u8>> = s
            .records
            .iter()
            .filter(|r| r.starts_with(format!("{w}/").as_bytes()))
            .collect();
        let want: Vec<Vec<u8>> = (0..150).map(|i| receipt(w, i).into_bytes()).collect();
        assert_eq!(mine.len(), 150, "{w}");
        assert!(
            mine.iter().zip(&want).all(|(a, b)| *a == b),
            "{w} out of order"
        );
    }
    let s = scan(&std::fs::read(&path).unwrap()).unwrap();
    assert_eq!((log.durable_len(), s.torn_bytes), (s.good_len, 0));
}

/// Heads cover exactly the durable records, with the §18.1 leaves (a record's bytes are
/// its leaf), survive a reopen, and are signed only when the log grew.
#[test]
fn tree_heads_cover_the_durable_records() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.qlog");
    let key = SecretKey::from_seed(&[4; 32]);
    let (log, _) = AuditLog::open(&path).unwrap();
    let receipts: Vec<Vec<u8>> = (0..5).map(|i| signed_receipt(i, &key)).collect();
    for r in &receipts {
        log.append(r).unwrap();
    }
    let expected = {
        let mut tree = MerkleLog::new();
        for r in &receipts {
            let leaf = quorate_protocol::tlog::receipt_leaf_hash(r).unwrap();
            assert_eq!(leaf, leaf_of(r));
            tree.push(leaf).unwrap();
        }
        tree.root(5).unwrap()
    };
    let head = log.sign_head(&key, 1_800_000_000).unwrap().unwrap();
    let parsed = TreeHead::parse(&head).unwrap();
    parsed.sign1.verify(&key.public_key()).unwrap();
    assert_eq!((parsed.body.size, parsed.body.root), (5, expected));
    assert!(log.sign_head(&key, 1_800_000_001).unwrap().is_none());
    // The head to keep is the one signed, until it is recorded as kept.
    let (size, to_keep) = log.head_to_keep(&key, 1_800_000_002).unwrap().unwrap();
    assert_eq!((size, &to_keep), (5, &head));
    assert!(log.head_to_keep(&key, 1_800_000_002).unwrap().is_some());
    log.head_kept(5);
    assert!(log.head_to_keep(&key, 1_800_000_002).unwrap().is_none());
    // A head signed on request over a grown log is the next one to keep.
    log.append(&signed_receipt(8, &key)).unwrap();
    let requested = log.latest_head(&key, 1_800_000_002).unwrap();
    let (size, to_keep) = log.head_to_keep(&key, 1_800_000_002).unwrap().unwrap();
    assert_eq!((size, to_keep), (6, requested));
    drop(log);
    let (again, n) = AuditLog::open(&path).unwrap();
    assert_eq!(n, 6);
    let head = again.sign_head(&key, 1_800_000_003).unwrap().unwrap();
    assert_eq!(TreeHead::parse(&head).unwrap().body.size, 6);
    again.append(&signed_receipt(9, &key)).unwrap();
    let grown = again.sign_head(&key, 1_800_000_004).unwrap().unwrap();
    assert_eq!(TreeHead::parse(&grown).unwrap().body.size, 7);
    assert_eq!(again.head_path(), dir.path().join("audit.qlog.head"));
}

/// A task that leads its own commit (`Leader::Caller`) needs no thread of the blocking pool:
/// with the pool's only thread held, its append is durable when it returns, while an append
/// that leaves the lead to the pool waits. Dropping that waiting append loses nothing: its
/// receipt is committed once the pool is free.
#[test]
fn a_commit_led_by_its_caller_needs_no_pool_thread() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.qlog");
    let (log, _) = AuditLog::open(&path).unwrap();
    let log = Arc::new(log);
    let rt = tokio::runtime::Builder::new_current_thread()
        .max_blocking_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let records = || scan(&std::fs::read(&path).unwrap()).unwrap().records;
    let (release, held) = std::sync::mpsc::channel::<()>();
    let holder = rt.spawn_blocking(move || held.recv().is_ok());
    let patience = std::time::Duration::from_secs(10);
    rt.block_on(async {
        let here = log.append_async(b"led here", false, Leader::Caller);
        assert!(matches!(
            tokio::time::timeout(patience, here).await,
            Ok(Ok(None))
        ));
        assert_eq!(records(), vec![b"led here".to_vec()]);
        let pooled = log.append_async(b"led by the pool", false, Leader::Pool);
        let short = std::time::Duration::from_millis(300);
        assert!(
            tokio::time::timeout(short, pooled).await.is_err(),
            "the pool's only thread is held, so no commit can have been led there"
        );
    });
    release.send(()).unwrap();
    assert!(rt.block_on(holder).unwrap());
    rt.block_on(async {
        let after = log.append_async(b"after", false, Leader::Caller);
        assert!(tokio::time::timeout(patience, after).await.unwrap().is_ok());
    });
    let got = records();
    assert_eq!(got.len(), 3, "{got:?}");
    assert_eq!(got[1], b"led by the pool");
    assert_eq!(got[2], b"after");
}
