//! gRPC clients to the leader, one per address, marked as forwarded so that
//! a request hops at most once.

use std::collections::HashMap;
use std::sync::Mutex;

use phlox_proto::metastore::v1::metastore_service_client::MetastoreServiceClient;
use tonic::metadata::MetadataValue;
use tonic::transport::Channel;

use crate::config::MAX_MESSAGE_SIZE;
use crate::error::{MetastoreError, Result};
use crate::raft::endpoint;

/// Metadata key set on requests one metastore node forwards to another.
pub(crate) const FORWARDED_HEADER: &str = "x-phlox-metastore-forwarded";

/// Cached channels to leaders by address.
#[derive(Debug, Default)]
pub(crate) struct Forwarder {
    clients: Mutex<HashMap<String, MetastoreServiceClient<Channel>>>,
}

impl Forwarder {
    pub(crate) fn client(&self, address: &str) -> Result<MetastoreServiceClient<Channel>> {
        let mut clients = self.clients.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(client) = clients.get(address) {
            return Ok(client.clone());
        }
        let channel = phlox_proto::tls::connect_lazy(
            endpoint(address).map_err(|_| MetastoreError::InvalidAddress { address: address.to_owned() })?,
        );
        let client = MetastoreServiceClient::new(channel)
            .max_decoding_message_size(MAX_MESSAGE_SIZE)
            .max_encoding_message_size(MAX_MESSAGE_SIZE);
        clients.insert(address.to_owned(), client.clone());
        Ok(client)
    }
}

/// A request marked as forwarded.
pub(crate) fn forwarded<T>(message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.metadata_mut().insert(FORWARDED_HEADER, MetadataValue::from_static("1"));
    request
}

/// Whether a request was forwarded by another metastore node.
pub(crate) fn is_forwarded<T>(request: &tonic::Request<T>) -> bool {
    request.metadata().contains_key(FORWARDED_HEADER)
}
