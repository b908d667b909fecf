//! The runtime of the generated Connect adapters: a public service's tonic
//! trait served over Connect's unary protocol.
//!
//! The build script writes, next to each public service's tonic server, a
//! `<Service>Connect<T>` implementing [`Service`]: it routes a method name
//! to the trait method, with the request decoded by [`Request::decode`] and
//! the answer encoded by [`encode`]. Transport concerns (content types,
//! compression, body limits, error bodies) are the HTTP layer's; errors
//! stay `tonic::Status` here, so both protocols share one error type.

use std::future::Future;
use std::pin::Pin;

use bytes::Bytes;
use tonic::Status;

/// The message codec of a Connect call, from its content type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    /// `application/proto`: binary protobuf.
    Proto,
    /// `application/json`: protobuf-JSON.
    Json,
}

impl Codec {
    /// The codec a `Content-Type` names, if any.
    pub fn from_content_type(content_type: &str) -> Option<Self> {
        let base = content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
        match base.as_str() {
            "application/proto" | "application/x-protobuf" | "application/protobuf" => Some(Self::Proto),
            "application/json" => Some(Self::Json),
            _ => None,
        }
    }

    /// The `Content-Type` of a message in this codec.
    pub fn content_type(self) -> &'static str {
        match self {
            Self::Proto => "application/proto",
            Self::Json => "application/json",
        }
    }
}

/// A unary call: the (decompressed) body with its codec, and what the
/// HTTP layer passes to the service as a gRPC request would carry it.
#[derive(Debug)]
pub struct Request {
    pub codec: Codec,
    pub body: Bytes,
    pub metadata: tonic::metadata::MetadataMap,
    pub extensions: tonic::Extensions,
}

impl Request {
    /// The request message (named `name` in errors), in the tonic request
    /// the trait method takes. An empty JSON body is the empty message, as
    /// Connect clients send it.
    pub fn decode<M>(self, name: &str) -> Result<(Codec, tonic::Request<M>), Status>
    where
        M: prost::Message + Default + serde::de::DeserializeOwned,
    {
        let message = match self.codec {
            Codec::Proto => M::decode(self.body).map_err(|e| e.to_string()),
            Codec::Json if self.body.is_empty() => Ok(M::default()),
            Codec::Json => {
                let mut json = serde_json::Deserializer::from_slice(&self.body);
                match serde_path_to_error::deserialize(&mut json) {
                    Ok(m) => json.end().map(|()| m).map_err(|e| e.to_string()),
                    Err(e) => Err(match e.path().to_string().as_str() {
                        "." => e.inner().to_string(),
                        path => format!("{path}: {}", e.inner()),
                    }),
                }
            }
        }
        .map_err(|e| Status::invalid_argument(format!("malformed {name}: {e}")))?;
        Ok((self.codec, tonic::Request::from_parts(self.metadata, self.extensions, message)))
    }
}

/// A unary answer: the encoded message and its codec.
#[derive(Debug)]
pub struct Response {
    pub codec: Codec,
    pub body: Bytes,
}

/// Encodes a trait method's answer with the call's codec.
pub fn encode<M: prost::Message + serde::Serialize>(
    codec: Codec,
    response: tonic::Response<M>,
) -> Result<Response, Status> {
    let message = response.into_inner();
    let body = match codec {
        Codec::Proto => message.encode_to_vec(),
        Codec::Json => serde_json::to_vec(&message)
            .map_err(|e| Status::internal(format!("cannot encode the response as JSON: {e}")))?,
    };
    Ok(Response { codec, body: body.into() })
}

/// The future of one call.
pub type Call = Pin<Box<dyn Future<Output = Result<Response, Status>> + Send>>;

/// A service's unary methods over Connect (implemented by the generated
/// `<Service>Connect` adapters).
pub trait Service: Send + Sync + 'static {
    /// `package.Service`, the first segment of each method's path.
    fn name(&self) -> &'static str;
    /// The unary methods (streaming ones are served over gRPC only).
    fn methods(&self) -> &'static [&'static str];
    /// Calls `method` of the service.
    fn call(&self, method: &str, request: Request) -> Call;
}

/// The answer for a method the service does not have.
pub fn unimplemented(service: &'static str, method: &str) -> Call {
    let status = Status::unimplemented(format!("{service}/{method} does not exist"));
    Box::pin(async move { Err(status) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::version::v1::version_server::Version;
    use crate::version::v1::{VersionConnect, VersionRequest, VersionResponse};

    struct Fixed;

    #[tonic::async_trait]
    impl Version for Fixed {
        async fn version(&self, r: tonic::Request<VersionRequest>) -> Result<tonic::Response<VersionResponse>, Status> {
            let tenant = r.metadata().get("x-scope-orgid").and_then(|v| v.to_str().ok()).unwrap_or("");
            if tenant == "nobody" {
                return Err(Status::permission_denied("not you"));
            }
            Ok(tonic::Response::new(VersionResponse { querier_api: 7 }))
        }
    }

    fn request(codec: Codec, body: &'static [u8], tenant: &'static str) -> Request {
        let mut metadata = tonic::metadata::MetadataMap::new();
        metadata.insert("x-scope-orgid", tonic::metadata::MetadataValue::from_static(tenant));
        Request { codec, body: Bytes::from_static(body), metadata, extensions: tonic::Extensions::new() }
    }

    #[tokio::test]
    async fn generated_adapters_route_to_the_trait_in_both_codecs() {
        let svc = VersionConnect::new(Fixed);
        assert_eq!((svc.name(), svc.methods()), ("version.v1.Version", &["Version"][..]));
        let json = svc.call("Version", request(Codec::Json, b"{}", "a")).await.unwrap();
        assert_eq!((json.codec, &json.body[..]), (Codec::Json, &br#"{"QuerierAPI":"7"}"#[..]));
        let proto = svc.call("Version", request(Codec::Proto, b"", "a")).await.unwrap();
        assert_eq!(&proto.body[..], &[0x08, 7]);
        let denied = svc.call("Version", request(Codec::Json, b"", "nobody")).await.unwrap_err();
        assert_eq!((denied.code(), denied.message()), (tonic::Code::PermissionDenied, "not you"));
        let missing = svc.call("Nope", request(Codec::Json, b"", "a")).await.unwrap_err();
        assert_eq!(missing.code(), tonic::Code::Unimplemented);
        assert!(missing.message().contains("version.v1.Version/Nope"), "{}", missing.message());
    }

    #[tokio::test]
    async fn malformed_json_names_the_field() {
        let svc = crate::push::v1::PusherServiceConnect::new(NoPush);
        let e = svc.call("Push", request(Codec::Json, br#"{"series":{}}"#, "a")).await.unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument);
        assert!(e.message().starts_with("malformed PushRequest: series: invalid type"), "{}", e.message());
        let e = svc.call("Push", request(Codec::Json, br#"{"series":[]} x"#, "a")).await.unwrap_err();
        assert!(e.message().contains("trailing characters"), "{}", e.message());
        let e = svc.call("Push", request(Codec::Proto, b"\xff\xff", "a")).await.unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument);
    }

    struct NoPush;

    #[tonic::async_trait]
    impl crate::push::v1::pusher_service_server::PusherService for NoPush {
        async fn push(
            &self,
            _: tonic::Request<crate::push::v1::PushRequest>,
        ) -> Result<tonic::Response<crate::push::v1::PushResponse>, Status> {
            Err(Status::internal("not reached"))
        }
    }
}
