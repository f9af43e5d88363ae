//! The log end to end in one process: records appended by many concurrent writers go
//! through the queue and the writer into a real redb file; then each kind of tampering,
//! done directly on the tables of a copy, is found at the right seq.

use std::path::Path;
use std::sync::Arc;

use redb::{ReadableDatabase as _, ReadableTable as _};
use switchboard_config::{AuditKey as KeySource, AuditSettings, SigningSeed};
use tokio_util::sync::CancellationToken;

use super::chain::{self, Anchor, AnchorKind};
use super::digest::hex;
use super::store::{META, RECORDS, Snapshot};
use super::verify::{Problem, Report, Trust, verify_snapshot};
use super::{AuditKey, Decision, Log, Outcome, Record};
use crate::db::Db;
use crate::metrics::Metrics;

const SEED_A: [u8; 32] = [0x11; 32];
const SEED_B: [u8; 32] = [0x22; 32];
const TASKS: usize = 16;
const PER_TASK: usize = 625;
const TOTAL: u64 = (TASKS * PER_TASK) as u64;

fn key(seed: [u8; 32]) -> AuditKey {
    AuditKey::from_seed(&SigningSeed(seed))
}

fn settings() -> AuditSettings {
    AuditSettings {
        key: KeySource::Inline(SigningSeed(SEED_A)),
        queue: 256,
        ..AuditSettings::default()
    }
}

fn record(task: usize, index: usize) -> Record {
    Record {
        time_ms: super::time::now_ms(),
        principal: format!("key:p{task}"),
        session: format!("s{task}"),
        face: "http",
        method: "tools/call".into(),
        server: Some("fx".into()),
        tool: Some("fx__echo".into()),
        decision: if index.is_multiple_of(10) {
            Decision::Denied {
                step: "allow",
                rule: Some("hidden".into()),
            }
        } else {
            Decision::Allowed
        },
        outcome: (!index.is_multiple_of(10)).then_some(Outcome::Ok),
        arguments_sha256: Some(super::digest::canonical_sha256(
            &serde_json::json!({ "text": format!("{task}-{index}") }),
        )),
        latency_us: index as u64,
        ..Record::default()
    }
}

/// Writes 10,000 records from 16 concurrent tasks through the log's queue and writer.
async fn write_log(dir: &Path) {
    let db = Db::open(Some(dir)).unwrap();
    let log = Log::open(&settings(), &db, &Metrics::default()).unwrap();
    let shutdown = CancellationToken::new();
    let writer = tokio::spawn(log.take_writer(shutdown.clone()).unwrap());
    let tasks: Vec<_> = (0..TASKS)
        .map(|task| {
            let log = log.clone();
            tokio::spawn(async move {
                for index in 0..PER_TASK {
                    log.append(record(task, index)).await.unwrap();
                    if index % 64 == 0 {
                        tokio::task::yield_now().await;
                    }
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    shutdown.cancel();
    writer.await.unwrap();
}

fn copy(from: &Path) -> tempfile::TempDir {
    let to = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.path().join(entry.file_name())).unwrap();
    }
    to
}

fn verify(dir: &Path, trust: Option<&Trust>) -> Report {
    let db = crate::db::open_read_only(dir).unwrap();
    let snapshot = Snapshot::of(&db).unwrap();
    verify_snapshot(&snapshot, trust).unwrap()
}

/// Runs `tamper` on the raw tables of a copy of the log in `dir`.
fn tampered(dir: &Path, tamper: impl FnOnce(&redb::WriteTransaction)) -> tempfile::TempDir {
    let copy = copy(dir);
    let db = Db::open(Some(copy.path())).unwrap();
    let tx = db.database().begin_write().unwrap();
    tamper(&tx);
    tx.commit().unwrap();
    copy
}

fn line(tx: &redb::WriteTransaction, seq: u64) -> Vec<u8> {
    let table = tx.open_table(RECORDS).unwrap();
    table.get(seq).unwrap().unwrap().value().to_vec()
}

fn put(tx: &redb::WriteTransaction, seq: u64, line: &[u8]) {
    tx.open_table(RECORDS).unwrap().insert(seq, line).unwrap();
}

/// The body of a sealed line, re-chained to `prev` and re-keyed to `key_id`.
fn rechained_body(line: &[u8], prev: &[u8; 32], key_id: &str) -> Vec<u8> {
    let opened = chain::open(line).unwrap();
    let text = String::from_utf8(line.to_vec()).unwrap();
    let body = format!("{}}}", &text[..text.find(",\"hash\":").unwrap()]);
    body.replace(
        &format!("\"prev\":\"{}\"", hex(&opened.prev)),
        &format!("\"prev\":\"{}\"", hex(prev)),
    )
    .replace(
        &format!("\"key\":\"{}\"", opened.key),
        &format!("\"key\":\"{key_id}\""),
    )
    .into_bytes()
}

/// Re-seals records `from..=TOTAL` with `signer`, claiming key id `claimed` (the signer's
/// own, or the trusted one's to forge), as an attacker with the file but not the key would.
fn resign(
    tx: &redb::WriteTransaction,
    from: u64,
    signer: &AuditKey,
    claimed: &str,
    register: bool,
) {
    let mut prev = if from == 1 {
        chain::GENESIS
    } else {
        chain::open(&line(tx, from - 1)).unwrap().hash
    };
    for seq in from..=TOTAL {
        let body = rechained_body(&line(tx, seq), &prev, claimed);
        let (sealed, hash) = chain::seal(signer, &body);
        put(tx, seq, &sealed);
        prev = hash;
    }
    let head = Anchor::sign(signer, AnchorKind::Head, TOTAL, &prev);
    let mut meta = tx.open_table(META).unwrap();
    meta.insert("head", head.to_bytes().as_slice()).unwrap();
    if register {
        meta.insert(
            format!("key:{}", signer.id()).as_str(),
            signer.public().as_slice(),
        )
        .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_concurrent_records_verify_and_every_tampering_is_found() {
    let dir = tempfile::tempdir().unwrap();
    write_log(dir.path()).await;
    let a = Trust::new([key(SEED_A).verifying()]);
    let b = key(SEED_B);

    let clean = verify(dir.path(), Some(&a));
    assert!(clean.is_ok(), "{clean}");
    assert_eq!(
        (clean.verified, clean.first, clean.last),
        (TOTAL, Some(1), Some(TOTAL))
    );
    // Every task's records are there, in the order the writer took them.
    let db = crate::db::open_read_only(dir.path()).unwrap();
    let snapshot = Snapshot::of(&db).unwrap();
    assert_eq!(snapshot.len().unwrap(), TOTAL);
    let denied = snapshot
        .from(1)
        .unwrap()
        .filter(|entry| {
            let (_, line) = entry.as_ref().unwrap();
            String::from_utf8_lossy(line).contains("\"decision\":\"denied\"")
        })
        .count();
    assert_eq!(denied, TASKS * PER_TASK.div_ceil(10));
    drop(snapshot);
    drop(db);

    type Case = (
        &'static str,
        Box<dyn Fn(&redb::WriteTransaction)>,
        u64,
        fn(&Problem) -> bool,
    );
    let cases: Vec<Case> = vec![
        (
            "edit a field",
            Box::new(|tx| {
                let edited = String::from_utf8(line(tx, 4321))
                    .unwrap()
                    .replace("\"fx__echo\"", "\"fx__eval\"");
                put(tx, 4321, edited.as_bytes());
            }),
            4321,
            |p| *p == Problem::Edited,
        ),
        (
            "delete one",
            Box::new(|tx| {
                tx.open_table(RECORDS).unwrap().remove(5000).unwrap();
            }),
            5000,
            |p| *p == Problem::Missing,
        ),
        (
            "swap two",
            Box::new(|tx| {
                let (first, second) = (line(tx, 100), line(tx, 200));
                put(tx, 100, &second);
                put(tx, 200, &first);
            }),
            100,
            |p| *p == Problem::Misplaced { claims: 200 },
        ),
        (
            "truncate the tail",
            Box::new(|tx| {
                let mut table = tx.open_table(RECORDS).unwrap();
                for seq in 9990..=TOTAL {
                    table.remove(seq).unwrap();
                }
            }),
            9990,
            |p| *p == Problem::Truncated { head: TOTAL },
        ),
        (
            "re-sign the tail with another key",
            Box::new(move |tx| resign(tx, 7000, &key(SEED_B), key(SEED_B).id(), true)),
            7000,
            |p| matches!(p, Problem::UntrustedKey(_)),
        ),
        (
            "re-sign the tail claiming the trusted key's id",
            Box::new(move |tx| resign(tx, 7000, &key(SEED_B), key(SEED_A).id(), false)),
            7000,
            |p| *p == Problem::BadSignature,
        ),
        (
            "re-sign everything and list only the other key",
            Box::new(move |tx| {
                resign(tx, 1, &key(SEED_B), key(SEED_B).id(), true);
                tx.open_table(META)
                    .unwrap()
                    .remove(format!("key:{}", key(SEED_A).id()).as_str())
                    .unwrap();
            }),
            1,
            |p| matches!(p, Problem::UntrustedKey(_)),
        ),
        (
            "edit a field and recompute its hash",
            Box::new(|tx| {
                let original = line(tx, 42);
                let opened = chain::open(&original).unwrap();
                let edited = rechained_body(&original, &opened.prev, &opened.key);
                let edited = String::from_utf8(edited)
                    .unwrap()
                    .replace("\"fx__echo\"", "\"fx__eval\"");
                let (sealed, _) = chain::seal(&key(SEED_B), edited.as_bytes());
                // Keep the claimed key id: the signature is the attacker's.
                put(tx, 42, &sealed);
            }),
            42,
            |p| *p == Problem::BadSignature,
        ),
    ];
    for (what, tamper, seq, expected) in cases {
        let copy = tampered(dir.path(), |tx| tamper(tx));
        let report = verify(copy.path(), Some(&a));
        let (at, problem) = report
            .problem
            .clone()
            .unwrap_or_else(|| panic!("{what}: not detected: {report}"));
        assert_eq!(at, seq, "{what}: {report}");
        assert!(expected(&problem), "{what}: {problem:?}");
        assert_eq!(report.verified, seq - 1, "{what}: {report}");
    }

    // Without a trusted key the log's own key list is trusted: edits, deletions, swaps and
    // truncation still show; a tail re-signed with a key the attacker listed does not,
    // which is why `--public-key` exists. The report names both keys.
    let copy = tampered(dir.path(), |tx| resign(tx, 7000, &b, b.id(), true));
    let own = verify(copy.path(), None);
    assert!(own.is_ok(), "{own}");
    assert_eq!(own.keys.len(), 2, "{own}");
    let copy = tampered(dir.path(), |tx| {
        tx.open_table(RECORDS).unwrap().remove(5000).unwrap();
    });
    assert_eq!(verify(copy.path(), None).problem.unwrap().0, 5000);
}

#[tokio::test]
async fn the_log_goes_on_after_a_restart_and_prunes_to_its_bound() {
    let dir = tempfile::tempdir().unwrap();
    let settings = AuditSettings {
        max_records: 100,
        ..settings()
    };
    for round in 0..3 {
        let db = Db::open(Some(dir.path())).unwrap();
        let log = Log::open(&settings, &db, &Metrics::default()).unwrap();
        let shutdown = CancellationToken::new();
        let writer = tokio::spawn(log.take_writer(shutdown.clone()).unwrap());
        for index in 0..90 {
            log.append(record(round, index)).await.unwrap();
        }
        shutdown.cancel();
        writer.await.unwrap();
    }
    let trust = Trust::new([key(SEED_A).verifying()]);
    let report = verify(dir.path(), Some(&trust));
    assert!(report.is_ok(), "{report}");
    assert_eq!(report.last, Some(270));
    let first = report.first.unwrap();
    assert!(report.verified <= 100 && first > 170, "{report}");

    // Removing the signed base (to hide what was pruned) shows.
    let copy = tampered(dir.path(), |tx| {
        tx.open_table(META).unwrap().remove("base").unwrap();
    });
    assert_eq!(verify(copy.path(), Some(&trust)).problem.unwrap().0, 1);
}

#[tokio::test]
async fn a_full_queue_refuses_after_the_wait_and_loses_nothing() {
    let db = Arc::new(Db::memory());
    let settings = AuditSettings {
        queue: 2,
        queue_wait: std::time::Duration::from_millis(20),
        ..settings()
    };
    let log = Log::open(&settings, &db, &Metrics::default()).unwrap();
    // No writer yet: two records fill the queue, the third is refused.
    let first = log.reserve().await.unwrap();
    let second = log.reserve().await.unwrap();
    assert!(matches!(log.reserve().await, Err(super::AuditError::Full)));
    log.submit(first, record(0, 1)).unwrap();
    log.submit(second, record(0, 2)).unwrap();
    let shutdown = CancellationToken::new();
    let writer = tokio::spawn(log.take_writer(shutdown.clone()).unwrap());
    // The writer frees the slots once the records are committed (how soon depends on the
    // machine's load, so a refusal within the 20 ms wait is tried again, up to 10 s).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let third = loop {
        match log.reserve().await {
            Ok(slot) => break slot,
            Err(super::AuditError::Full) if std::time::Instant::now() < deadline => continue,
            Err(other) => panic!("the writer never freed a slot: {other}"),
        }
    };
    log.submit(third, record(0, 3)).unwrap();
    shutdown.cancel();
    writer.await.unwrap();
    let snapshot = Snapshot::of(db.database()).unwrap();
    assert_eq!(snapshot.len().unwrap(), 3);
    let report = verify_snapshot(&snapshot, None).unwrap();
    assert!(report.is_ok(), "{report}");
    // After shutdown the log takes no more records (and says so).
    let late = log.reserve().await.unwrap();
    assert!(matches!(
        log.submit(late, record(0, 4)),
        Err(super::AuditError::Closed)
    ));
}

#[test]
fn an_export_verifies_as_written_and_shows_edits() {
    let a = key(SEED_A);
    let mut prev = chain::GENESIS;
    let mut lines = Vec::new();
    for seq in 11..=20 {
        let (line, hash) = chain::seal(&a, &record(0, seq as usize).body(seq, &prev, a.id()));
        lines.push(String::from_utf8(line).unwrap());
        prev = hash;
    }
    let trust = Trust::new([a.verifying()]);
    let text = lines.join("\n") + "\n";
    let report = super::verify::verify_lines(text.as_bytes(), &trust).unwrap();
    assert!(report.is_ok(), "{report}");
    assert_eq!((report.first, report.last), (Some(11), Some(20)));
    let mut swapped = lines.clone();
    swapped.swap(3, 6);
    let report = super::verify::verify_lines(swapped.join("\n").as_bytes(), &trust).unwrap();
    assert_eq!(report.problem.unwrap().0, 14);
    let mut deleted = lines.clone();
    deleted.remove(5);
    let report = super::verify::verify_lines(deleted.join("\n").as_bytes(), &trust).unwrap();
    assert_eq!(report.problem.unwrap(), (16, Problem::Missing));
}

#[test]
fn the_tables_hold_exactly_what_the_writer_sealed() {
    // A reader sees nothing of a log never written.
    let db = Db::memory();
    let snapshot = Snapshot::of(db.database()).unwrap();
    assert_eq!(snapshot.len().unwrap(), 0);
    assert!(snapshot.head().unwrap().is_none());
    let report = verify_snapshot(&snapshot, None).unwrap();
    assert!(report.is_ok() && report.verified == 0, "{report}");
    let tx = db.database().begin_read().unwrap();
    assert!(tx.open_table(RECORDS).is_err());
}
