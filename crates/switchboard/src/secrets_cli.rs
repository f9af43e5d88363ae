//! `switchboard secrets rotate|keygen`: the encrypted secret store (`gateway::vault`)
//! from the command line. `rotate` opens the state dir's database itself, so it runs while
//! no gateway uses that state dir (a running gateway answers `POST /admin/secrets/rotate`).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use base64::Engine as _;
use clap::Subcommand;
use rand::RngCore as _;

#[derive(Subcommand)]
pub(crate) enum SecretsCommand {
    /// Re-encrypt every stored secret under `[secrets] key`, reading them with the key
    /// they were stored with (`[secrets] previous_key`); one transaction.
    Rotate {
        #[arg(long, env = "SWITCHBOARD_CONFIG")]
        config: PathBuf,
    },
    /// Print a new random key (base64 of 32 bytes) for `[secrets] key`.
    Keygen,
}

pub(crate) fn run(command: SecretsCommand, max_config_bytes: u64) -> anyhow::Result<ExitCode> {
    match command {
        SecretsCommand::Keygen => {
            let mut key = [0u8; 32];
            rand::rng().fill_bytes(&mut key);
            println!("{}", base64::engine::general_purpose::STANDARD.encode(key));
            Ok(ExitCode::SUCCESS)
        }
        SecretsCommand::Rotate { config } => {
            let loaded = switchboard_config::load_with_limit(&config, max_config_bytes)?;
            let settings = loaded
                .secrets
                .as_ref()
                .context("the config has no [secrets] section")?;
            let state_dir =
                loaded.gateway.state_dir.as_deref().context(
                    "the config has no [gateway] state_dir: secrets live in memory only",
                )?;
            let rotated = switchboard_gateway::vault::rotate_offline(state_dir, settings)
                .map_err(anyhow::Error::msg)?;
            println!("{rotated} secret(s) re-encrypted under the current key");
            Ok(ExitCode::SUCCESS)
        }
    }
}
