//! The box's object store: a moto S3 server (the pinned one `make
//! e2e-cluster` installs, `PHLOX_TEST_MOTO_SERVER`) listening on the host's
//! bridge address, where every pod reaches it.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

/// A running moto server with one bucket; stopped on drop.
#[derive(Debug)]
pub struct Moto {
    child: std::process::Child,
    /// `http://<address>:<port>`.
    pub endpoint: String,
    pub bucket: String,
}

impl Moto {
    /// Starts moto on `address` and creates `bucket`. Fails (never skips)
    /// when the server is not installed.
    pub async fn start(address: Ipv4Addr, bucket: &str) -> Result<Self, String> {
        let server = std::env::var("PHLOX_TEST_MOTO_SERVER").map_err(|_| {
            "PHLOX_TEST_MOTO_SERVER is not set: run the box with `make e2e-cluster`, which installs moto".to_owned()
        })?;
        let port = std::net::TcpListener::bind(SocketAddr::from((address, 0)))
            .and_then(|l| l.local_addr())
            .map_err(|e| format!("a port on {address}: {e}"))?
            .port();
        let child = std::process::Command::new(&server)
            .args(["-H", &address.to_string(), "-p", &port.to_string()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .map_err(|e| format!("start {server}: {e}"))?;
        let moto = Self { child, endpoint: format!("http://{address}:{port}"), bucket: bucket.to_owned() };
        let http = reqwest::Client::new();
        for _ in 0..150 {
            let created = http.put(format!("{}/{bucket}", moto.endpoint)).timeout(Duration::from_secs(2)).send().await;
            if created.is_ok_and(|r| r.status().is_success()) {
                return Ok(moto);
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Err(format!("moto on {} never created bucket {bucket}", moto.endpoint))
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
