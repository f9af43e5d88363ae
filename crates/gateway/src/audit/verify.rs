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

/// Checks records one at a time, in order.
pub struct Verifier<'t> {
    trust: &'t Trust,
    /// The seq the next record must have (`None`: an export's first record sets it).
    expected: Option<u64>,
    prev: [u8; 32],
    report: Report,
}

impl<'t> Verifier<'t> {
    /// Starting at the log's beginning (seq `first`, chained to `prev`).
    pub fn new(trust: &'t Trust, first: u64, prev: [u8; 32]) -> Verifier<'t> {
        Verifier {
            trust,
            expected: Some(first),
            prev,
            report: Report::default(),
        }
    }

    /// Starting wherever the first record says (an export).
    pub fn anywhere(trust: &'t Trust) -> Verifier<'t> {
        Verifier {
            trust,
            expected: None,
            prev: GENESIS,
            report: Report::default(),
        }
    }

    fn fail(&mut self, seq: u64, problem: Problem) {
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
        let position = stored.or(self.expected);
        if let (Some(stored), Some(expected)) = (stored, self.expected)
            && stored != expected
        {
            // A gap: the expected record is gone.
            self.fail(expected, Problem::Missing);
            return false;
        }
        let opened = match chain::open(line) {
            Ok(opened) => opened,
            Err(error) => {
                let seq = position.unwrap_or(0);
                self.fail(seq, Problem::Malformed(error.to_string()));
                return false;
            }
        };
        let seq = match (position, self.expected) {
            (Some(position), _) if opened.seq != position => {
                if stored.is_some() {
                    self.fail(position, Problem::Misplaced { claims: opened.seq });
                } else if opened.seq > position {
                    self.fail(position, Problem::Missing);
                } else {
                    self.fail(position, Problem::Misplaced { claims: opened.seq });
                }
                return false;
            }
            (Some(position), _) => position,
            (None, _) => {
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
        let Some(public) = self.trust.get(&opened.key) else {
            self.fail(seq, Problem::UntrustedKey(opened.key));
            return false;
        };
        if !opened.signed_by(public) {
            self.fail(seq, Problem::BadSignature);
            return false;
        }
        self.prev = opened.hash;
        self.expected = Some(seq + 1);
        self.report.verified += 1;
        self.report.first.get_or_insert(seq);
        self.report.last = Some(seq);
        self.report.keys.insert(opened.key);
        true
    }

    /// Ends a database verification against its signed head.
    pub fn finish_with_head(mut self, head: Option<&Anchor>) -> Report {
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
    pub fn finish(self) -> Report {
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
