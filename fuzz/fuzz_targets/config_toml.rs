//! The native TOML config loader on any text: parses and validates, or answers a
//! `ConfigError`; never panics, and its errors and warnings render.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchboard_config::ConfigFormat;
use switchboard_fuzz::check_config;

fuzz_target!(|data: &[u8]| check_config(data, ConfigFormat::Native, "fuzz.toml"));
