//! gRPC services: the Thanos StoreAPI (`thanos.Store`) and Info (`thanos.info.Info`) over a
//! bucket store.

pub(crate) mod convert;
pub mod store;

pub use store::{StoreApi, StoreService};
