//! `switchboard audit …`: verify the audit log (or a JSON-lines export), follow its tail,
//! make a signing key. These read the state dir's database read-only, so they work beside
//! a running gateway and after one was killed.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::{Args, Subcommand};
use switchboard_gateway::audit::key::{self, AuditKey};
use switchboard_gateway::audit::store::Snapshot;
use switchboard_gateway::audit::verify::{Report, Trust, verify_lines, verify_snapshot};
use switchboard_gateway::registry::StoredVersion;

#[derive(Subcommand)]
pub(crate) enum AuditCommand {
    /// Check every record: order, hash chain, signatures and the signed head. Names the
    /// first bad sequence number; exits 1 when the log does not verify.
    Verify {
        #[command(flatten)]
        source: Source,
        /// A trusted public key (base64 or hex; `switchboard audit keygen` prints one).
        /// Repeat for a log signed by several keys. Without it, the key the config names
        /// (`--config`) is trusted, else the keys the log lists itself.
        #[arg(long = "public-key", value_name = "KEY")]
        public_keys: Vec<String>,
        /// Verify this JSON-lines export instead of the database.
        #[arg(long, value_name = "FILE", conflicts_with_all = ["state_dir"])]
        file: Option<PathBuf>,
        /// Print the result as one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Print the last records as JSON lines.
    Tail {
        #[command(flatten)]
        source: Source,
        /// How many records.
        #[arg(short = 'n', long, default_value_t = 10)]
        lines: usize,
        /// Keep printing records as they are committed.
        #[arg(short, long)]
        follow: bool,
    },
    /// Make a new Ed25519 signing key: prints the secret (for `[audit] signing_key`,
    /// keep it secret) and its public key (for `verify --public-key`).
    Keygen,
}

/// Where the log is: a state dir, or the config that names it.
#[derive(Args)]
pub(crate) struct Source {
    /// The gateway's state dir (holds switchboard.redb).
    #[arg(long, value_name = "DIR")]
    state_dir: Option<PathBuf>,
    /// The gateway's config: its state dir, and its signing key to trust.
    #[arg(long, value_name = "FILE", env = "SWITCHBOARD_CONFIG")]
    config: Option<PathBuf>,
}

pub(crate) struct Located {
    pub(crate) state_dir: Option<PathBuf>,
    /// The public key of the key the config names.
    configured: Option<AuditKey>,
}

pub(crate) fn locate(source: &Source, max_config_bytes: u64) -> anyhow::Result<Located> {
    let Some(path) = &source.config else {
        return Ok(Located {
            state_dir: source.state_dir.clone(),
            configured: None,
        });
    };
    let config = switchboard_config::load_with_limit(path, max_config_bytes)?;
    let state_dir = source
        .state_dir
        .clone()
        .or_else(|| config.gateway.state_dir.clone());
    let configured = match &config.audit {
        Some(audit) => AuditKey::load_existing(&audit.key, state_dir.as_deref())?,
        None => None,
    };
    Ok(Located {
        state_dir,
        configured,
    })
}

/// The log's database, read-only beside a running gateway; after a gateway died without
/// closing it (`kill -9`, power loss), a repaired private copy: redb's readers leave the
/// repair to a live writer, and this command never writes the state dir.
pub(crate) enum Database {
    Live(redb::ReadOnlyDatabase),
    Copy { db: redb::Database, dir: PathBuf },
}

impl Drop for Database {
    fn drop(&mut self) {
        if let Database::Copy { dir, .. } = self {
            let _ = std::fs::remove_dir_all(&*dir);
        }
    }
}

impl Database {
    /// The kept versions of a server's lists (`registry_cli.rs`), oldest first, and its
    /// approved version.
    pub(crate) fn registry_versions(
        &self,
        server: &str,
    ) -> anyhow::Result<(Vec<StoredVersion>, Option<u64>)> {
        use switchboard_gateway::registry::store::{read_approved, read_versions};
        Ok(match self {
            Database::Live(db) => (read_versions(db, server)?, read_approved(db, server)?),
            Database::Copy { db, .. } => (read_versions(db, server)?, read_approved(db, server)?),
        })
    }

    fn snapshot(&self) -> anyhow::Result<Snapshot> {
        Ok(match self {
            Database::Live(db) => Snapshot::of(db)?,
            Database::Copy { db, .. } => Snapshot::of(db)?,
        })
    }
}

pub(crate) fn open(state_dir: Option<&Path>, quiet: bool) -> anyhow::Result<Database> {
    let dir = state_dir.context(
        "no state dir: pass --state-dir DIR, or --config FILE with [gateway] state_dir \
         (without a state dir the audit log lives in memory only)",
    )?;
    let file = dir.join("switchboard.redb");
    if !file.exists() {
        bail!(
            "no database in {}: switchboard.redb does not exist",
            dir.display()
        );
    }
    match switchboard_gateway::db::open_read_only(dir) {
        Ok(db) => Ok(Database::Live(db)),
        Err(switchboard_gateway::db::DbError::Open {
            source: redb::DatabaseError::RepairAborted,
            ..
        }) => {
            let copy = std::env::temp_dir().join(format!(
                "switchboard-audit-{}-{}",
                std::process::id(),
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_nanos())
            ));
            std::fs::create_dir_all(&copy)?;
            let target = copy.join("switchboard.redb");
            let opened = std::fs::copy(&file, &target)
                .map_err(anyhow::Error::from)
                .and_then(|_| Ok(redb::Database::create(&target)?));
            match opened {
                Ok(db) => {
                    if !quiet {
                        eprintln!(
                            "switchboard: note: the database was not closed cleanly (the gateway \
                             died); reading a repaired copy up to its last commit"
                        );
                    }
                    Ok(Database::Copy { db, dir: copy })
                }
                Err(error) => {
                    let _ = std::fs::remove_dir_all(&copy);
                    Err(error.context(format!("cannot read {}", file.display())))
                }
            }
        }
        Err(error) => Err(error.into()),
    }
}

pub(crate) fn run(command: AuditCommand, max_config_bytes: u64) -> anyhow::Result<ExitCode> {
    match command {
        AuditCommand::Keygen => {
            let seed = key::generate_seed();
            let key = AuditKey::from_seed(&seed);
            let secret = base64_of(&seed.0);
            println!(
                "signing_key = \"{secret}\"   # secret: [audit] signing_key (or the file signing_key_file names)"
            );
            println!(
                "public_key  = \"{}\"   # for switchboard audit verify --public-key",
                key::public_base64(&key.public())
            );
            println!("key id      = {}", key.id());
            Ok(ExitCode::SUCCESS)
        }
        AuditCommand::Verify {
            source,
            public_keys,
            file,
            json,
        } => {
            let located = locate(&source, max_config_bytes)?;
            let trust = if !public_keys.is_empty() {
                let mut keys = Vec::new();
                for (index, text) in public_keys.iter().enumerate() {
                    keys.push(key::parse_public(text).with_context(|| {
                        format!(
                            "--public-key #{}: not an Ed25519 public key (base64 or hex)",
                            index + 1
                        )
                    })?);
                }
                Some(Trust::new(keys))
            } else {
                located
                    .configured
                    .as_ref()
                    .map(|key| Trust::new([key.verifying()]))
            };
            let report = match &file {
                Some(file) => {
                    let Some(trust) = &trust else {
                        bail!("an export carries no key list: pass --public-key (or --config)");
                    };
                    let reader = std::fs::File::open(file)
                        .with_context(|| format!("cannot open {}", file.display()))?;
                    verify_lines(std::io::BufReader::new(reader), trust)?
                }
                None => {
                    let db = open(located.state_dir.as_deref(), json)?;
                    let snapshot = db.snapshot()?;
                    if trust.is_none() && !json {
                        eprintln!(
                            "switchboard: note: trusting the keys the log lists itself; pass --public-key \
                             (or --config) to also catch a log re-signed with another key"
                        );
                    }
                    verify_snapshot(&snapshot, trust.as_ref())?
                }
            };
            print_report(&report, file.is_some(), json);
            Ok(if report.is_ok() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        AuditCommand::Tail {
            source,
            lines,
            follow,
        } => {
            let located = locate(&source, max_config_bytes)?;
            let mut db = open(located.state_dir.as_deref(), false)?;
            let mut stdout = std::io::stdout().lock();
            let mut last = 0;
            for (seq, line) in db.snapshot()?.last(lines)? {
                stdout.write_all(&line)?;
                stdout.write_all(b"\n")?;
                last = seq;
            }
            stdout.flush()?;
            if !follow {
                return Ok(ExitCode::SUCCESS);
            }
            if last == 0 {
                last = db.snapshot()?.last(1)?.first().map_or(0, |(seq, _)| *seq);
            }
            loop {
                std::thread::sleep(Duration::from_millis(250));
                if let (Database::Copy { .. }, Some(dir)) = (&db, located.state_dir.as_deref()) {
                    // Follow the live file once a gateway runs on it again.
                    match switchboard_gateway::db::open_read_only(dir) {
                        Ok(live) => db = Database::Live(live),
                        Err(_) => continue,
                    }
                }
                for entry in db.snapshot()?.from(last + 1)? {
                    let (seq, line) = entry?;
                    stdout.write_all(&line)?;
                    stdout.write_all(b"\n")?;
                    last = seq;
                }
                stdout.flush()?;
            }
        }
    }
}

fn base64_of(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn print_report(report: &Report, export: bool, as_json: bool) {
    if as_json {
        println!("{}", report.to_json());
        return;
    }
    let what = if export { "audit export" } else { "audit log" };
    println!("{what} {report}");
}
