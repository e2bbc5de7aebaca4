//! The defects a probe of running Gauntlet processes found, each held shut against real
//! processes started on loopback: tenant names that must survive a restart, tenancy on every
//! StoreAPI and status page, HTTP listeners that close stalled connections and cap how many
//! are open, work that ends when its client leaves, requests that cannot amplify into memory,
//! and logins that give nothing away by their timing. `docs/security.md` says what each role
//! enforces.

mod amplification;
mod auth;
pub(crate) mod disconnect;
mod listeners;
mod tenancy;
mod tenant_names;
