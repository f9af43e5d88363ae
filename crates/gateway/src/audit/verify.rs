//! Verifying the log: every record in seq order, chained to the one before, hashing to
//! what it claims and signed by a trusted key; then the signed head, which tells a
//! truncated log from a short one. The first problem is reported with its seq number.
//!
//! The same checks run over a JSON-lines export, which has no head: there, a record
//! missing at the end cannot be seen, and the first record's `prev` is taken as given (an
//! export may start anywhere).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use ed25519_dalek::VerifyingKey;

use super::chain::{self, Anchor, AnchorKind, GENESIS};
use super::key::key_id;
use super::store::{Snapshot, StoreError};

/// The public keys whose signatures count, by id.
#[derive(Clone, Debug, Default)]
pub struct Trust {
    keys: BTreeMap<String, VerifyingKey>,
}

impl Trust {
    pub fn new(keys: impl IntoIterator<Item = VerifyingKey>) -> Trust {
        Trust {
            keys: keys
                .into_iter()
                .map(|key| (key_id(key.as_bytes()), key))
                .collect(),
        }
    }

    /// The keys the log itself lists (trusting the log's own word for them).
    pub fn from_log(keys: &BTreeMap<String, [u8; 32]>) -> Trust {
        Trust::new(
            keys.values()
                .filter_map(|public| VerifyingKey::from_bytes(public).ok()),
        )
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    pub fn ids(&self) -> Vec<&str> {
        self.keys.keys().map(String::as_str).collect()
    }

    fn get(&self, id: &str) -> Option<&VerifyingKey> {
        self.keys.get(id)
    }
}

/// What is wrong, at the first bad seq.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Problem {
    /// No record has this seq, though later ones exist (deleted).
    Missing,
    /// The record stored here says it is another one (moved or swapped).
    Misplaced { claims: u64 },
    /// The line is not a sealed record.
    Malformed(String),
    /// The body does not hash to the record's hash (edited).
    Edited,
    /// The record does not chain to the one before it (that one was replaced, or this one
    /// re-chained).
    Unchained,
    /// Signed by a key that is not trusted (re-signed with another key).
    UntrustedKey(String),
    /// The signature does not verify (re-signed, or forged).
    BadSignature,
    /// The signed head says the log goes on to `head`: the records from here were removed.
    Truncated { head: u64 },
    /// Records exist but no valid signed head covers them.
    BadHead(&'static str),
    /// The signed base (after pruning) is missing its signature or does not match.
    BadBase(&'static str),
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::Missing => f.write_str("record missing (deleted)"),
            Problem::Misplaced { claims } => {
                write!(f, "the record stored here is record {claims} (reordered)")
            }
            Problem::Malformed(why) => write!(f, "not a sealed record: {why}"),
            Problem::Edited => f.write_str("record edited: its content does not match its hash"),
            Problem::Unchained => {
                f.write_str("chain broken: the record does not follow the one before it")
            }
            Problem::UntrustedKey(id) => write!(f, "signed by an untrusted key `{id}`"),
            Problem::BadSignature => f.write_str("bad signature (re-signed or forged)"),
            Problem::Truncated { head } => write!(
                f,
                "log truncated: the signed head says it goes on to record {head}"
            ),
            Problem::BadHead(why) => write!(f, "signed head: {why}"),
            Problem::BadBase(why) => write!(f, "signed base: {why}"),
        }
    }
}

/// The result of a verification.
#[derive(Clone, Debug, Default)]
pub struct Report {
    /// Records that verified before the first problem (all of them when there is none).
    pub verified: u64,
    pub first: Option<u64>,
    /// The last record that verified.
    pub last: Option<u64>,
    /// The ids of the keys that signed what verified.
    pub keys: BTreeSet<String>,
    /// The first problem and its seq.
    pub problem: Option<(u64, Problem)>,
}

impl Report {
    pub fn is_ok(&self) -> bool {
        self.problem.is_none()
    }

    /// The report as one JSON object, the shape `audit verify --json` prints and
    /// `GET /admin/audit/verify` answers: `ok`, `verified`, `first`, `last`, `keys`,
    /// `first_bad_seq`, `problem`.
    pub fn to_json(&self) -> serde_json::Value {
        let (seq, problem) = match &self.problem {
            Some((seq, problem)) => (Some(*seq), Some(problem.to_string())),
            None => (None, None),
        };
        serde_json::json!({
            "ok": self.is_ok(),
            "verified": self.verified,
            "first": self.first,
            "last": self.last,
            "keys": self.keys,
            "first_bad_seq": seq,
            "problem": problem,
        })
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let range = match (self.first, self.last) {
            (Some(first), Some(last)) => format!(" (seq {first}–{last})"),
            _ => String::new(),
        };
        let keys = self.keys.iter().cloned().collect::<Vec<_>>().join(", ");
        match &self.problem {
            None => write!(
                f,
                "ok: {} records verified{range}, signed by {}",
                self.verified,
                if keys.is_empty() { "-" } else { &keys }
            ),
            Some((seq, problem)) => write!(
                f,
                "BROKEN at seq {seq}: {problem} ({} records before it verified{range})",
                self.verified
            ),
        }
    }
}

/// Records whose signatures are checked together (in parallel, once this many wait).
const SIGNATURE_BATCH: usize = 4096;

/// A record that passed every check but its signature.
struct Unsigned {
    seq: u64,
    opened: chain::Opened,
}

/// Checks records one at a time, in order. Order, hashes and the chain are checked as
/// records arrive; signatures (the costly part) in batches spread over the CPUs. The
/// problem reported is still the one at the lowest seq.
pub struct Verifier<'t> {
    trust: &'t Trust,
    /// The seq the next record must have (`None`: an export's first record sets it).
    expected: Option<u64>,
    prev: [u8; 32],
    /// Records waiting for their signature check, in order.
    unsigned: Vec<Unsigned>,
    report: Report,
}

impl<'t> Verifier<'t> {
    /// Starting at the log's beginning (seq `first`, chained to `prev`).
    pub fn new(trust: &'t Trust, first: u64, prev: [u8; 32]) -> Verifier<'t> {
        Verifier {
            trust,
            expected: Some(first),
            prev,
            unsigned: Vec::new(),
            report: Report::default(),
        }
    }

    /// Starting wherever the first record says (an export).
    pub fn anywhere(trust: &'t Trust) -> Verifier<'t> {
        Verifier {
            trust,
            expected: None,
            prev: GENESIS,
            unsigned: Vec::new(),
            report: Report::default(),
        }
    }

    /// The signature problem of one record, if any.
    fn signature_problem(trust: &Trust, record: &Unsigned) -> Option<Problem> {
        match trust.get(&record.opened.key) {
            None => Some(Problem::UntrustedKey(record.opened.key.clone())),
            Some(public) if !record.opened.signed_by(public) => Some(Problem::BadSignature),
            Some(_) => None,
        }
    }

    /// Checks the waiting signatures; the records before the first bad one verified.
    fn settle(&mut self) {
        let unsigned = std::mem::take(&mut self.unsigned);
        if unsigned.is_empty() {
            return;
        }
        let trust = self.trust;
        let first_bad = |part: &[Unsigned], offset: usize| {
            part.iter().enumerate().find_map(|(index, record)| {
                Verifier::signature_problem(trust, record).map(|problem| (offset + index, problem))
            })
        };
        let threads = std::thread::available_parallelism()
            .map_or(1, usize::from)
            .min(8);
        let bad = if threads == 1 || unsigned.len() < 256 {
            first_bad(&unsigned, 0)
        } else {
            let size = unsigned.len().div_ceil(threads);
            std::thread::scope(|scope| {
                let parts: Vec<_> = unsigned
                    .chunks(size)
                    .enumerate()
                    .map(|(index, part)| scope.spawn(move || first_bad(part, index * size)))
                    .collect();
                parts
                    .into_iter()
                    .filter_map(|part| part.join().expect("a signature check does not panic"))
                    .min_by_key(|(index, _)| *index)
            })
        };
        let bad = bad.map(|(index, problem)| (index, unsigned[index].seq, problem));
        let good = bad.as_ref().map_or(unsigned.len(), |(index, _, _)| *index);
        for record in unsigned.into_iter().take(good) {
            self.report.verified += 1;
            self.report.first.get_or_insert(record.seq);
            self.report.last = Some(record.seq);
            self.report.keys.insert(record.opened.key);
        }
        if let Some((_, seq, problem)) = bad {
            self.report.problem = Some((seq, problem));
        }
    }

    fn fail(&mut self, seq: u64, problem: Problem) {
        // The signatures of the records before it are checked first: a bad one there is
        // the first problem.
        self.settle();
        self.report.problem.get_or_insert((seq, problem));
    }

    pub fn failed(&self) -> bool {
        self.report.problem.is_some()
    }

    /// Checks the next record: stored under `stored` (a database key; `None` in an
    /// export). Returns false once a problem was found.
    pub fn push(&mut self, stored: Option<u64>, line: &[u8]) -> bool {
        if self.failed() {
            return false;
        }
        if let (Some(stored), Some(expected)) = (stored, self.expected)
            && stored != expected
        {
            // A gap: the expected record is gone.
            self.fail(expected, Problem::Missing);
            return false;
        }
        let position = stored.or(self.expected);
        let opened = match chain::open(line) {
            Ok(opened) => opened,
            Err(error) => {
                self.fail(position.unwrap_or(0), Problem::Malformed(error.to_string()));
                return false;
            }
        };
        let seq = match position {
            Some(position) if opened.seq != position => {
                let problem = if stored.is_none() && opened.seq > position {
                    // An export skips from `position` on: that record is gone.
                    Problem::Missing
                } else {
                    Problem::Misplaced { claims: opened.seq }
                };
                self.fail(position, problem);
                return false;
            }
            Some(position) => position,
            None => {
                // An export's first record: its place and predecessor are taken as given.
                self.prev = opened.prev;
                opened.seq
            }
        };
        if !opened.intact() {
            self.fail(seq, Problem::Edited);
            return false;
        }
        if opened.prev != self.prev {
            self.fail(seq, Problem::Unchained);
            return false;
        }
        self.prev = opened.hash;
        self.expected = Some(seq + 1);
        self.unsigned.push(Unsigned { seq, opened });
        if self.unsigned.len() >= SIGNATURE_BATCH {
            self.settle();
        }
        !self.failed()
    }

    /// Ends a database verification against its signed head.
    pub fn finish_with_head(mut self, head: Option<&Anchor>) -> Report {
        self.settle();
        if self.failed() {
            return self.report;
        }
        let next = self.expected.unwrap_or(1);
        match head {
            None if self.report.verified == 0 => {}
            None => self.fail(next, Problem::BadHead("missing")),
            Some(head) => {
                let trusted = self
                    .trust
                    .get(&head.key)
                    .is_some_and(|public| head.signed_by(AnchorKind::Head, public));
                if !trusted {
                    self.fail(
                        head.seq.min(next),
                        Problem::BadHead("not signed by a trusted key"),
                    );
                } else if head.seq >= next {
                    self.fail(next, Problem::Truncated { head: head.seq });
                } else if head.seq + 1 < next {
                    // Records after the head: appended by something that cannot sign heads.
                    self.fail(
                        head.seq + 1,
                        Problem::BadHead("records after the signed head"),
                    );
                } else if head.hash() != Some(self.prev) {
                    self.fail(head.seq, Problem::BadHead("does not match the last record"));
                }
            }
        }
        self.report
    }

    /// Ends an export's verification (no head to check).
    pub fn finish(mut self) -> Report {
        self.settle();
        self.report
    }
}

/// Verifies the log in `snapshot`. `trust`: the keys to accept; `None` trusts the keys the
/// log lists itself (which shows edits and breaks, but not a log re-signed throughout
/// with a key listed in its place).
pub fn verify_snapshot(snapshot: &Snapshot, trust: Option<&Trust>) -> Result<Report, StoreError> {
    let own;
    let trust = match trust {
        Some(trust) => trust,
        None => {
            own = Trust::from_log(&snapshot.keys()?);
            &own
        }
    };
    let base = snapshot.base()?;
    let (first, prev) = match &base {
        None => (1, GENESIS),
        Some(base) => {
            let trusted = trust
                .get(&base.key)
                .is_some_and(|public| base.signed_by(AnchorKind::Base, public));
            match (trusted, base.hash()) {
                (true, Some(hash)) => (base.seq, hash),
                _ => {
                    return Ok(Report {
                        problem: Some((base.seq, Problem::BadBase("not signed by a trusted key"))),
                        ..Report::default()
                    });
                }
            }
        }
    };
    let mut verifier = Verifier::new(trust, first, prev);
    for entry in snapshot.from(0)? {
        let (seq, line) = entry?;
        if seq < first {
            // Older than the signed base: left behind by a prune that did not happen.
            verifier.fail(seq, Problem::BadBase("records older than the base remain"));
            break;
        }
        if !verifier.push(Some(seq), &line) {
            break;
        }
    }
    Ok(verifier.finish_with_head(snapshot.head()?.as_ref()))
}

/// Verifies a JSON-lines export read from `reader`.
pub fn verify_lines(reader: impl std::io::BufRead, trust: &Trust) -> std::io::Result<Report> {
    let mut verifier = Verifier::anywhere(trust);
    for line in reader.split(b'\n') {
        let line = line?;
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        if !verifier.push(None, &line) {
            break;
        }
    }
    Ok(verifier.finish())
}
