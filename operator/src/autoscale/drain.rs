//! The segment writer's drain call (`/segment-writer/drain`), as the
//! operator uses it before removing a writer.

use serde::Deserialize;

use super::scrape::FETCH_TIMEOUT;

/// A writer's answer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub struct DrainState {
    /// It left the placement.
    #[serde(default)]
    pub draining: bool,
    /// It flushed and acked its last segment: it can go.
    #[serde(default)]
    pub drained: bool,
}

async fn call(request: reqwest::RequestBuilder, url: &str) -> Result<DrainState, String> {
    let response = request.timeout(FETCH_TIMEOUT).send().await.map_err(|e| format!("{url}: {e}"))?;
    if !response.status().is_success() {
        return Err(format!("{url}: HTTP {}", response.status()));
    }
    let text = response.text().await.map_err(|e| format!("{url}: {e}"))?;
    serde_json::from_str(&text).map_err(|e| format!("{url}: {e}"))
}

/// Asks the writer whose admin listener is `admin_url` to drain
/// (idempotent).
pub async fn start(http: &reqwest::Client, admin_url: &str, admin_token: &str) -> Result<DrainState, String> {
    let url = format!("{admin_url}/segment-writer/drain");
    call(http.post(&url).bearer_auth(admin_token), &url).await
}

/// The writer's drain state.
pub async fn state(http: &reqwest::Client, admin_url: &str, admin_token: &str) -> Result<DrainState, String> {
    let url = format!("{admin_url}/segment-writer/drain");
    call(http.get(&url).bearer_auth(admin_token), &url).await
}
