//! The web console at `/ui/`, on the admin listener and behind the admin API's own
//! authorization: a static page (HTML, one script, one style sheet, embedded in the
//! binary with `include_str!`; nothing fetched from elsewhere) that reads and changes the
//! gateway through the admin API, mounted a second time under `/ui/admin/…` so the
//! browser's credentials for `/ui/` cover it.
//!
//! A browser cannot attach a bearer token to a page load, so under `/ui` the admin
//! credential may also come as HTTP Basic (any user name, the token or API key as the
//! password): [`edge`] turns it into the bearer the admin API's `authorize` checks, and
//! answers a refusal with a Basic challenge so the browser asks. Every `/ui` answer
//! carries a strict Content-Security-Policy (scripts and styles from this origin only, no
//! inline code, no framing, nothing sent elsewhere); the script renders every value the
//! gateway reports with `textContent`, never as markup, so a hostile tool name or
//! description shows as text.

use axum::Router;
use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use base64::Engine as _;

/// Where the console lives.
pub(crate) const PREFIX: &str = "/ui";

/// What the console's answers may load: its own script and style sheet, requests to its
/// own origin, nothing inline, no frames, no plug-ins, no form posts elsewhere.
pub(crate) const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; connect-src 'self'; img-src 'self'; base-uri 'none'; \
     form-action 'none'; frame-ancestors 'none'";

const INDEX_HTML: &str = include_str!("index.html");
const APP_JS: &str = include_str!("app.js");
const APP_CSS: &str = include_str!("app.css");
const FAVICON_SVG: &str = include_str!("favicon.svg");

/// The console's static routes (state-free, so the admin router can carry them behind
/// its authorization layer).
pub(crate) fn assets<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route(PREFIX, get(|| async { Redirect::permanent("/ui/") }))
        .route(
            "/ui/",
            get(|| async { asset(INDEX_HTML, "text/html; charset=utf-8") }),
        )
        .route(
            "/ui/app.js",
            get(|| async { asset(APP_JS, "text/javascript; charset=utf-8") }),
        )
        .route(
            "/ui/app.css",
            get(|| async { asset(APP_CSS, "text/css; charset=utf-8") }),
        )
        .route(
            "/ui/favicon.svg",
            get(|| async { asset(FAVICON_SVG, "image/svg+xml") }),
        )
}

fn asset(body: &'static str, content_type: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body,
    )
        .into_response()
}

/// Middleware outside the admin authorization: on `/ui` paths, a Basic credential
/// becomes the bearer `authorize` checks, a refusal gets a Basic challenge, and every
/// answer gets the security headers. Other paths pass untouched.
pub(crate) async fn edge(mut request: Request, next: Next) -> Response {
    let path = request.uri().path();
    if !(path == PREFIX || path.starts_with("/ui/")) {
        return next.run(request).await;
    }
    let bearer = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(basic_password)
        .and_then(|password| HeaderValue::from_str(&format!("Bearer {password}")).ok());
    if let Some(mut bearer) = bearer {
        bearer.set_sensitive(true);
        request.headers_mut().insert(header::AUTHORIZATION, bearer);
    }
    let mut response = next.run(request).await;
    let refused = response.status() == StatusCode::UNAUTHORIZED;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    if refused {
        headers.insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"switchboard console\", charset=\"UTF-8\""),
        );
    }
    response
}

/// The password of an `Authorization: Basic …` value (the user name is ignored), when
/// it decodes to UTF-8 text with a colon and a non-empty password.
fn basic_password(value: &str) -> Option<String> {
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (_, password) = text.split_once(':')?;
    (!password.is_empty() && !password.contains(['\r', '\n'])).then(|| password.to_owned())
}

#[cfg(test)]
mod tests {
    use super::basic_password;

    #[test]
    fn basic_credentials_give_their_password() {
        // "operator:s3cret" and ":tok"
        assert_eq!(
            basic_password("Basic b3BlcmF0b3I6czNjcmV0").as_deref(),
            Some("s3cret")
        );
        assert_eq!(basic_password("basic OnRvaw==").as_deref(), Some("tok"));
        // No colon, an empty password, another scheme, bad base64.
        assert_eq!(basic_password("Basic dG9r"), None);
        assert_eq!(basic_password("Basic dXNlcjo="), None);
        assert_eq!(basic_password("Bearer b3BlcmF0b3I6czNjcmV0"), None);
        assert_eq!(basic_password("Basic !!!"), None);
    }

    #[test]
    fn the_page_loads_nothing_inline_or_foreign() {
        let html = super::INDEX_HTML;
        assert!(!html.contains("<script>"), "no inline script");
        assert!(!html.contains("style="), "no inline style");
        assert!(!html.contains("http://") && !html.contains("https://"));
        assert!(
            !super::APP_JS.contains("innerHTML"),
            "values render as text"
        );
        assert!(!super::APP_JS.contains("eval("));
    }
}
