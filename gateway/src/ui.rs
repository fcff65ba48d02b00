//! The web UI at `/ui/`: a few hand-written files (HTML, one ES module, one
//! stylesheet) embedded in the binary at build time, so that serving it needs
//! no JavaScript toolchain and no file on disk.
//!
//! The UI is a client of the public `/v1` API like any other: it holds the
//! user's token in the browser's session storage and sends it as
//! `X-Vault-Token`. The server side is therefore only static files; nothing
//! here reads a token or touches the services.
//!
//! Served when the config says `ui = true` (always in `server -dev`), checked
//! per request ([`crate::Gateway::enable_ui`]). When off, every UI path answers
//! the API's plain 404, as if the UI did not exist.
//!
//! Every UI response carries its own headers (these routes sit outside the
//! API's `common_headers` layer): a Content-Security-Policy that allows
//! nothing but this origin (no inline script, no external origin: the API's
//! answers are rendered as text, and an injected `<script>` would not run),
//! `X-Frame-Options: DENY` against clickjacking, and caching that makes a new
//! binary's UI take effect at once (the page: `no-store`; the assets:
//! `no-cache` with an `ETag`, so a reload costs a 304).

use std::sync::OnceLock;

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, MethodRouter};
use axum::Router;

use crate::error::ApiError;
use crate::Gateway;

/// Allows this origin only: scripts and styles from files (never inline),
/// `fetch` to the same origin's API, no frames, no plugins, no form posts
/// elsewhere.
pub(crate) const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; connect-src 'self'; form-action 'self'; \
     frame-ancestors 'none'; base-uri 'none'";

/// One embedded file.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

/// Every file the UI has; anything else below `/ui/` that looks like a file
/// is a 404.
const ASSETS: &[Asset] = &[
    Asset {
        name: "index.html",
        content_type: "text/html; charset=utf-8",
        body: include_bytes!("../ui/index.html"),
    },
    Asset {
        name: "app.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../ui/app.js"),
    },
    Asset {
        name: "app.css",
        content_type: "text/css; charset=utf-8",
        body: include_bytes!("../ui/app.css"),
    },
    Asset {
        name: "favicon.svg",
        content_type: "image/svg+xml",
        body: include_bytes!("../ui/favicon.svg"),
    },
];

/// The UI's routes on the gateway's router.
pub(crate) fn routes() -> Router<Gateway> {
    routes_with(Gateway::ui_enabled)
}

/// The routes over any state that says whether the UI is on (the unit tests
/// use a flag instead of a whole gateway).
fn routes_with<S>(enabled: fn(&S) -> bool) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    Router::new()
        .route(
            "/",
            only_get(move |State(s): State<S>| async move {
                if enabled(&s) {
                    redirect_to_ui()
                } else {
                    not_found()
                }
            }),
        )
        .route(
            "/ui",
            only_get(move |State(s): State<S>| async move {
                if enabled(&s) {
                    redirect_to_ui()
                } else {
                    not_found()
                }
            }),
        )
        .route(
            "/ui/",
            only_get(move |State(s): State<S>, headers: HeaderMap| async move {
                if enabled(&s) {
                    serve("index.html", &headers)
                } else {
                    not_found()
                }
            }),
        )
        .route(
            "/ui/{*path}",
            only_get(
                move |State(s): State<S>, Path(path): Path<String>, headers: HeaderMap| async move {
                    if enabled(&s) {
                        serve(&path, &headers)
                    } else {
                        not_found()
                    }
                },
            ),
        )
}

/// GET (and so HEAD); any other method is Vault's 405.
fn only_get<H, T, S>(handler: H) -> MethodRouter<S>
where
    H: axum::handler::Handler<T, S>,
    T: 'static,
    S: Clone + Send + Sync + 'static,
{
    get(handler).fallback(|| async { json_error(ApiError::unsupported_operation()) })
}

/// `/` and `/ui` lead to the UI's page (307: the method is kept, as Vault does).
fn redirect_to_ui() -> Response {
    crate::observe::set_route("ui".into());
    let mut resp = StatusCode::TEMPORARY_REDIRECT.into_response();
    let h = resp.headers_mut();
    h.insert(header::LOCATION, HeaderValue::from_static("/ui/"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

/// One file by its path below `/ui/`. The client routes live in the URL's
/// fragment (`/ui/#/secrets`), which browsers do not send; a path without
/// an extension still gets the page, so that a pasted `/ui/secrets` works.
fn serve(path: &str, req: &HeaderMap) -> Response {
    crate::observe::set_route("ui".into());
    let asset = match ASSETS.iter().find(|a| a.name == path) {
        Some(a) => a,
        None if !path.rsplit('/').next().unwrap_or(path).contains('.') => &ASSETS[0],
        None => return not_found(),
    };
    let page = asset.name == "index.html";
    let etag = etag(asset);
    let fresh = !page
        && req
            .get(header::IF_NONE_MATCH)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.split(',').any(|t| t.trim() == etag));
    let mut resp = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        asset.body.into_response()
    };
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(asset.content_type),
    );
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static(if page { "no-store" } else { "no-cache" }),
    );
    if !page {
        if let Ok(v) = HeaderValue::from_str(etag) {
            h.insert(header::ETAG, v);
        }
    }
    security_headers(h);
    resp
}

/// The content hash of an embedded file, computed once.
fn etag(asset: &Asset) -> &'static str {
    static TAGS: OnceLock<Vec<String>> = OnceLock::new();
    let tags = TAGS.get_or_init(|| {
        use sha2::{Digest, Sha256};
        ASSETS
            .iter()
            .map(|a| format!("\"{}\"", hex::encode(&Sha256::digest(a.body)[..12])))
            .collect()
    });
    ASSETS
        .iter()
        .position(|a| a.name == asset.name)
        .and_then(|i| tags.get(i))
        .map_or("", String::as_str)
}

fn security_headers(h: &mut HeaderMap) {
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(
        "cross-origin-opener-policy",
        HeaderValue::from_static("same-origin"),
    );
}

/// The API's own 404 (`{"errors":[]}`), with the headers its layer would add.
fn not_found() -> Response {
    json_error(ApiError::not_found())
}

fn json_error(e: ApiError) -> Response {
    let mut resp = e.into_response();
    let h = resp.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    use axum::body::Body;
    use axum::http::{Method, Request};
    use tower::ServiceExt;

    use super::*;

    fn app(on: bool) -> Router {
        routes_with(|s: &Arc<AtomicBool>| s.load(Ordering::Relaxed))
            .with_state(Arc::new(AtomicBool::new(on)))
    }

    async fn call(on: bool, method: Method, uri: &str, hdrs: &[(&str, &str)]) -> Response {
        let mut req = Request::builder().method(method).uri(uri);
        for (k, v) in hdrs {
            req = req.header(*k, *v);
        }
        app(on)
            .oneshot(req.body(Body::empty()).expect("request"))
            .await
            .expect("infallible")
    }

    fn header<'a>(r: &'a Response, name: &str) -> &'a str {
        r.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    async fn body(r: Response) -> String {
        let b = axum::body::to_bytes(r.into_body(), usize::MAX)
            .await
            .expect("body");
        String::from_utf8_lossy(&b).into_owned()
    }

    #[tokio::test]
    async fn ui_root_and_bare_path_redirect_with_307() {
        for uri in ["/", "/ui"] {
            let r = call(true, Method::GET, uri, &[]).await;
            assert_eq!(r.status(), StatusCode::TEMPORARY_REDIRECT, "{uri}");
            assert_eq!(header(&r, "location"), "/ui/");
        }
    }

    #[tokio::test]
    async fn ui_files_have_their_content_types_and_security_headers() {
        let cases = [
            ("/ui/", "text/html; charset=utf-8", "no-store"),
            ("/ui/index.html", "text/html; charset=utf-8", "no-store"),
            ("/ui/app.js", "text/javascript; charset=utf-8", "no-cache"),
            ("/ui/app.css", "text/css; charset=utf-8", "no-cache"),
            ("/ui/favicon.svg", "image/svg+xml", "no-cache"),
        ];
        for (uri, ct, cache) in cases {
            let r = call(true, Method::GET, uri, &[]).await;
            assert_eq!(r.status(), StatusCode::OK, "{uri}");
            assert_eq!(header(&r, "content-type"), ct, "{uri}");
            assert_eq!(header(&r, "cache-control"), cache, "{uri}");
            assert_eq!(header(&r, "x-frame-options"), "DENY", "{uri}");
            assert_eq!(header(&r, "x-content-type-options"), "nosniff", "{uri}");
            let csp = header(&r, "content-security-policy");
            assert!(csp.contains("default-src 'none'"), "{csp}");
            assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
            assert!(
                !csp.contains("unsafe-inline") && !csp.contains("http"),
                "{csp}"
            );
        }
        let page = body(call(true, Method::GET, "/ui/", &[]).await).await;
        assert!(page.contains("<script type=\"module\" src=\"app.js\">"));
    }

    #[tokio::test]
    async fn ui_assets_revalidate_with_their_etag() {
        let r = call(true, Method::GET, "/ui/app.js", &[]).await;
        let tag = header(&r, "etag").to_string();
        assert!(tag.starts_with('"') && tag.len() > 10, "{tag}");
        let r = call(true, Method::GET, "/ui/app.js", &[("if-none-match", &tag)]).await;
        assert_eq!(r.status(), StatusCode::NOT_MODIFIED);
        assert!(body(r).await.is_empty());
        let r = call(
            true,
            Method::GET,
            "/ui/app.js",
            &[("if-none-match", "\"stale\"")],
        )
        .await;
        assert_eq!(r.status(), StatusCode::OK);
        // The page itself is never cached.
        let r = call(true, Method::GET, "/ui/", &[("if-none-match", &tag)]).await;
        assert_eq!(r.status(), StatusCode::OK);
    }

    #[tokio::test]
    async fn ui_unknown_asset_is_404_but_a_client_route_gets_the_page() {
        for uri in ["/ui/nope.js", "/ui/../Cargo.toml", "/ui/x/app.css.map"] {
            let r = call(true, Method::GET, uri, &[]).await;
            assert_eq!(r.status(), StatusCode::NOT_FOUND, "{uri}");
            assert_eq!(header(&r, "content-type"), "application/json", "{uri}");
            assert_eq!(body(r).await, r#"{"errors":[]}"#);
        }
        let r = call(true, Method::GET, "/ui/secrets/kv", &[]).await;
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(header(&r, "content-type"), "text/html; charset=utf-8");
    }

    #[tokio::test]
    async fn ui_off_answers_404_everywhere() {
        for uri in ["/", "/ui", "/ui/", "/ui/app.js", "/ui/index.html"] {
            let r = call(false, Method::GET, uri, &[]).await;
            assert_eq!(r.status(), StatusCode::NOT_FOUND, "{uri}");
            assert_eq!(header(&r, "content-type"), "application/json");
            assert!(header(&r, "content-security-policy").is_empty());
        }
    }

    #[tokio::test]
    async fn ui_refuses_other_methods() {
        let r = call(true, Method::POST, "/ui/", &[]).await;
        assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert!(body(r).await.contains("unsupported operation"));
        let r = call(true, Method::HEAD, "/ui/app.css", &[]).await;
        assert_eq!(r.status(), StatusCode::OK);
    }

    /// The CSP allows no external origin and no inline code: the files must
    /// need neither.
    #[test]
    fn ui_files_load_nothing_from_elsewhere_and_have_no_inline_code() {
        for a in ASSETS {
            let text = String::from_utf8_lossy(a.body);
            for bad in ["http://", "https://", "//cdn", "eval(", "new Function"] {
                // The SVG's XML namespace is a name, not a fetch.
                if a.name == "favicon.svg" && bad == "http://" {
                    continue;
                }
                assert!(!text.contains(bad), "{} contains {bad}", a.name);
            }
        }
        let page = String::from_utf8_lossy(ASSETS[0].body);
        assert_eq!(
            page.matches("<script").count(),
            1,
            "one module, no inline script"
        );
        for attr in [
            " style=",
            " onclick=",
            " onload=",
            " onsubmit=",
            "javascript:",
        ] {
            assert!(!page.contains(attr), "index.html has {attr}");
        }
    }
}
