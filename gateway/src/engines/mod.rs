//! Secrets engines as Vault's HTTP API shows them, each over its service.

pub mod database;
pub mod kv;
pub mod pki;
pub mod transit;
