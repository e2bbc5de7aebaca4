//! Checks that the generated tonic servers are usable: a type can implement
//! the service traits, and the servers register under the gRPC service names
//! queriers dial.

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use gauntlet_proto::thanos;
use gauntlet_proto::thanos::info;
use tonic::server::NamedService;
use tonic::{Request, Response, Status};

/// Runs a future that never waits on I/O to completion.
fn ready<F: Future>(fut: F) -> F::Output {
    let mut fut = pin!(fut);
    let mut cx = Context::from_waker(Waker::noop());
    match fut.as_mut().poll(&mut cx) {
        Poll::Ready(out) => out,
        Poll::Pending => panic!("future was not immediately ready"),
    }
}

#[derive(Debug)]
struct FixedInfo;

#[tonic::async_trait]
impl info::info_server::Info for FixedInfo {
    async fn info(
        &self,
        _request: Request<info::InfoRequest>,
    ) -> Result<Response<info::InfoResponse>, Status> {
        Ok(Response::new(info::InfoResponse {
            component_type: "store".into(),
            store: Some(info::StoreInfo {
                min_time: 0,
                max_time: i64::MAX,
                supports_without_replica_labels: true,
                ..Default::default()
            }),
            ..Default::default()
        }))
    }
}

#[derive(Debug)]
struct NoWrites;

#[tonic::async_trait]
impl thanos::writeable_store_server::WriteableStore for NoWrites {
    async fn remote_write(
        &self,
        _request: Request<thanos::WriteRequest>,
    ) -> Result<Response<thanos::WriteResponse>, Status> {
        Err(Status::unimplemented("read-only"))
    }
}

#[test]
fn servers_register_under_upstream_service_names() {
    assert_eq!(
        <info::info_server::InfoServer<FixedInfo> as NamedService>::NAME,
        "thanos.info.Info"
    );
    assert_eq!(
        <thanos::writeable_store_server::WriteableStoreServer<NoWrites> as NamedService>::NAME,
        "thanos.WriteableStore"
    );
    assert_eq!(thanos::store_server::SERVICE_NAME, "thanos.Store");
}

#[test]
fn info_trait_implementation_answers() {
    use info::info_server::Info;
    let resp = ready(FixedInfo.info(Request::new(info::InfoRequest {}))).expect("info answers");
    let store = resp.into_inner().store.expect("store advertised");
    assert!(store.supports_without_replica_labels);
    assert_eq!(store.max_time, i64::MAX);

    // Wrapping in the generated server must compile for the trait object.
    let _server = info::info_server::InfoServer::new(FixedInfo);
}

#[test]
fn writeable_store_error_keeps_status_code() {
    use thanos::writeable_store_server::WriteableStore;
    let err = ready(NoWrites.remote_write(Request::new(thanos::WriteRequest::default())))
        .expect_err("rejects writes");
    assert_eq!(err.code(), tonic::Code::Unimplemented);
}
