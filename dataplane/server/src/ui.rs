//! The web UI: a single-page app (`dataplane/server/ui/`, plain ES modules,
//! no build step) embedded in the binary and served by the query frontend
//! at `/`. It uses only the public query API. With `PHLOX_UI_DIR` set, the
//! files are read from that directory instead (UI development without
//! rebuilding).

use axum::extract::Path;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

/// The embedded files: (name, content type, content).
const FILES: &[(&str, &str, &str)] = &[
    ("index.html", "text/html; charset=utf-8", include_str!("../ui/index.html")),
    ("app.js", "text/javascript; charset=utf-8", include_str!("../ui/app.js")),
    ("util.js", "text/javascript; charset=utf-8", include_str!("../ui/util.js")),
    ("api.js", "text/javascript; charset=utf-8", include_str!("../ui/api.js")),
    ("flame-model.js", "text/javascript; charset=utf-8", include_str!("../ui/flame-model.js")),
    ("colors.js", "text/javascript; charset=utf-8", include_str!("../ui/colors.js")),
    ("flame-view.js", "text/javascript; charset=utf-8", include_str!("../ui/flame-view.js")),
    ("time-canvas.js", "text/javascript; charset=utf-8", include_str!("../ui/time-canvas.js")),
    ("filters.js", "text/javascript; charset=utf-8", include_str!("../ui/filters.js")),
    ("url-state.js", "text/javascript; charset=utf-8", include_str!("../ui/url-state.js")),
    ("style.css", "text/css; charset=utf-8", include_str!("../ui/style.css")),
];

fn file(name: &str) -> Response {
    let Some((_, content_type, embedded)) = FILES.iter().find(|(n, _, _)| *n == name) else {
        return (StatusCode::NOT_FOUND, "no such file\n").into_response();
    };
    let body = match std::env::var_os("PHLOX_UI_DIR") {
        Some(dir) => match std::fs::read_to_string(std::path::Path::new(&dir).join(name)) {
            Ok(text) => text,
            Err(e) => return (StatusCode::NOT_FOUND, format!("{name}: {e}\n")).into_response(),
        },
        None => (*embedded).to_owned(),
    };
    (
        [
            (header::CONTENT_TYPE, *content_type),
            (header::CACHE_CONTROL, "no-cache"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'self'; img-src 'self' data: blob:; style-src 'self' 'unsafe-inline'; frame-ancestors 'none'",
            ),
        ],
        body,
    )
        .into_response()
}

/// `GET /` (and any client-side route under `/ui/` that is not a file).
pub(crate) async fn index() -> Response {
    file("index.html")
}

/// `GET /ui/{file}`.
pub(crate) async fn asset(Path(name): Path<String>) -> Response {
    file(&name)
}
