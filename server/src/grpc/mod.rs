//! gRPC services: the Thanos StoreAPI (`thanos.Store`) and Info (`thanos.info.Info`) over a
//! bucket store.

pub(crate) mod cancel;
pub(crate) mod convert;
pub mod request_limits;
pub mod store;

pub use request_limits::{MAX_STORE_REQUEST_BYTES, RequestLimitsLayer};
pub use store::{StoreApi, StoreService};
