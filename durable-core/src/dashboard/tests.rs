//! The dashboard's defences and error statuses, driven through the router without a
//! socket. (The pages in a browser: tests/integration/dashboard_browser.rs.)

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use tower::ServiceExt;

use crate::admin::Admin;
use crate::client::Client;
use crate::dashboard::{DashboardOptions, router};

async fn app(options: DashboardOptions) -> (tempfile::TempDir, Router) {
    let dir = tempfile::tempdir().unwrap();
    let store = durable_store::FjallStore::open(dir.path()).unwrap();
    let client = Client::open(store).await.unwrap();
    (dir, router(Admin::new(client), options))
}

fn request(method: &str, uri: &str) -> axum::http::request::Builder {
    Request::builder()
        .method(method)
        .uri(uri)
        .header(header::HOST, "127.0.0.1:8080")
}

async fn send(app: &Router, request: Request<Body>) -> (StatusCode, axum::http::HeaderMap, String) {
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let body = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    (status, headers, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test]
async fn a_form_post_without_the_csrf_token_is_forbidden() {
    let (_dir, app) = app(DashboardOptions::new()).await;
    for body in ["", "csrf=guess&confirm=yes"] {
        let post = request("POST", "/instances/any/actions/purge")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from(body))
            .unwrap();
        let (status, _, page) = send(&app, post).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{page}");
        assert!(page.contains("CSRF"), "{page}");
    }
}

#[tokio::test]
async fn a_form_post_with_the_csrf_token_acts_and_redirects_with_a_message() {
    let (_dir, app) = app(DashboardOptions::new()).await;
    let csrf = crate::dashboard::security::Csrf::process();
    let post = request("POST", "/instances/nobody/actions/resume")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(format!("csrf={}", csrf.token())))
        .unwrap();
    let (status, headers, _) = send(&app, post).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(headers[header::LOCATION], "/instances/nobody");
    let cookie = headers[header::SET_COOKIE].to_str().unwrap();
    let mut flashed = axum::http::HeaderMap::new();
    flashed.insert(
        header::COOKIE,
        cookie.split(';').next().unwrap().parse().unwrap(),
    );
    let message = crate::dashboard::security::flash(&flashed).unwrap();
    assert!(message.starts_with("Failed: "), "{message}");
}

#[tokio::test]
async fn a_json_post_of_another_content_type_is_refused() {
    let (_dir, app) = app(DashboardOptions::new()).await;
    for content_type in [
        None,
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
    ] {
        let mut post = request("POST", "/api/instances/any/purge");
        if let Some(content_type) = content_type {
            post = post.header(header::CONTENT_TYPE, content_type);
        }
        let (status, _, body) = send(&app, post.body(Body::from("{}")).unwrap()).await;
        assert_eq!(
            status,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "{content_type:?}: {body}"
        );
        let error: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert!(
            error["error"]
                .as_str()
                .unwrap()
                .contains("application/json"),
            "{body}"
        );
    }
    // The same request as JSON reaches the handler: no such instance.
    let post = request("POST", "/api/instances/any/purge")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from("{}"))
        .unwrap();
    let (status, _, body) = send(&app, post).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
}

#[tokio::test]
async fn with_a_token_every_route_needs_it() {
    let (_dir, app) = app(DashboardOptions::new().token("s3cret")).await;
    for uri in [
        "/",
        "/instances/x",
        "/entities",
        "/api/instances",
        "/api/stats",
    ] {
        let (status, _, body) = send(&app, request("GET", uri).body(Body::empty()).unwrap()).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{uri}: {body}");
    }
    let wrong = request("GET", "/api/stats")
        .header(header::AUTHORIZATION, "Bearer guess")
        .body(Body::empty())
        .unwrap();
    assert_eq!(send(&app, wrong).await.0, StatusCode::UNAUTHORIZED);
    let right = request("GET", "/api/stats")
        .header(header::AUTHORIZATION, "Bearer s3cret")
        .body(Body::empty())
        .unwrap();
    let (status, _, body) = send(&app, right).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // A browser gives it once in the query, then carries the cookie.
    let once = request("GET", "/?token=s3cret&status=failed")
        .body(Body::empty())
        .unwrap();
    let (status, headers, _) = send(&app, once).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(headers[header::LOCATION], "/?status=failed");
    let cookie = headers[header::SET_COOKIE].to_str().unwrap();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    let with_cookie = request("GET", "/")
        .header(header::COOKIE, cookie.split(';').next().unwrap())
        .body(Body::empty())
        .unwrap();
    assert_eq!(send(&app, with_cookie).await.0, StatusCode::OK);
}

#[tokio::test]
async fn without_a_token_only_requests_addressed_to_this_machine_are_answered() {
    let (_dir, app) = app(DashboardOptions::new()).await;
    let rebound = Request::builder()
        .uri("/api/stats")
        .header(header::HOST, "attacker.example:8080")
        .body(Body::empty())
        .unwrap();
    assert_eq!(send(&app, rebound).await.0, StatusCode::FORBIDDEN);
    let local = Request::builder()
        .uri("/api/stats")
        .header(header::HOST, "localhost:8080")
        .body(Body::empty())
        .unwrap();
    assert_eq!(send(&app, local).await.0, StatusCode::OK);
}

#[tokio::test]
async fn the_list_refreshes_itself_until_told_not_to() {
    let (_dir, app) = app(DashboardOptions::new().refresh(std::time::Duration::from_secs(3))).await;
    let (status, _, page) = send(&app, request("GET", "/").body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert!(
        page.contains(r#"<meta http-equiv="refresh" content="3">"#),
        "{page}"
    );
    assert!(
        page.contains("refresh=off"),
        "no link to turn it off: {page}"
    );
    let (_, _, paused) = send(
        &app,
        request("GET", "/?refresh=off").body(Body::empty()).unwrap(),
    )
    .await;
    assert!(!paused.contains("http-equiv"), "{paused}");
    assert!(paused.contains("Auto-refresh is off"), "{paused}");
}

#[tokio::test]
async fn api_errors_are_typed_json() {
    let (_dir, app) = app(DashboardOptions::new()).await;
    let (status, _, body) = send(
        &app,
        request("GET", "/api/instances/nobody")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let error: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(
        error["error"].as_str().unwrap().contains("nobody"),
        "{body}"
    );

    let (status, _, body) = send(
        &app,
        request("GET", "/api/instances?page_size=many")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");

    let bad_json = request("POST", "/api/instances/nobody/raise")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from("{not json"))
        .unwrap();
    assert_eq!(send(&app, bad_json).await.0, StatusCode::BAD_REQUEST);

    let (status, _, body) = send(
        &app,
        request("GET", "/api/instances")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let list: crate::admin::view::InstanceList = serde_json::from_str(&body).unwrap();
    assert!(list.instances.is_empty());
}

#[tokio::test]
async fn the_one_call_server_refuses_other_addresses_without_a_token_and_writes_its_address() {
    let dir = tempfile::tempdir().unwrap();
    let store = durable_store::FjallStore::open(dir.path()).unwrap();
    let client = Client::open(store).await.unwrap();
    let refused = super::Dashboard::new(client.clone())
        .serve(([0, 0, 0, 0], 0))
        .await
        .unwrap_err();
    assert!(
        matches!(refused, super::ServeError::NotLoopback(_)),
        "{refused}"
    );

    let handle = super::Dashboard::new(client)
        .serve(([127, 0, 0, 1], 0))
        .await
        .unwrap();
    let file = dir.path().join(super::URL_FILE);
    let written = std::fs::read_to_string(&file).unwrap();
    assert_eq!(written, format!("http://{}/\n", handle.local_addr()));
    assert_eq!(written.trim_end(), handle.url());
    handle.shutdown().await;
    assert!(!file.exists(), "the address file outlived the dashboard");
}

// An empty token (`durable serve --token "$UNSET"`) must not open the dashboard to anyone
// who sends an empty credential, nor let it listen beyond loopback.
#[tokio::test]
async fn an_empty_token_authorizes_nothing_and_binds_only_loopback() {
    let (_dir, app) = app(DashboardOptions::new().token("")).await;
    let bearer = request("GET", "/api/stats")
        .header(header::AUTHORIZATION, "Bearer ")
        .body(Body::empty())
        .unwrap();
    assert_eq!(send(&app, bearer).await.0, StatusCode::UNAUTHORIZED);
    let cookie = request("GET", "/api/stats")
        .header(header::COOKIE, "durable_token=")
        .body(Body::empty())
        .unwrap();
    assert_eq!(send(&app, cookie).await.0, StatusCode::UNAUTHORIZED);
    let query = request("GET", "/?token=").body(Body::empty()).unwrap();
    assert_eq!(send(&app, query).await.0, StatusCode::UNAUTHORIZED);

    let dir = tempfile::tempdir().unwrap();
    let store = durable_store::FjallStore::open(dir.path()).unwrap();
    let client = Client::open(store).await.unwrap();
    let refused = super::Dashboard::new(client)
        .token("")
        .serve(([0, 0, 0, 0], 0))
        .await
        .unwrap_err();
    assert!(
        matches!(refused, super::ServeError::NotLoopback(_)),
        "{refused}"
    );
}

// A created-range filter far out of range is a bad request shown on the page, not an
// arithmetic overflow that drops the connection.
#[tokio::test]
async fn a_created_filter_out_of_range_is_refused_on_the_page() {
    let (_dir, app) = app(DashboardOptions::new()).await;
    for value in [
        "999999999-01-01T00:00",
        "2026-01-01T00:1e300",
        "2026-01-01T00:00:-1e300",
    ] {
        let uri = format!("/?created_from={value}");
        let (status, _, page) = send(&app, request("GET", &uri).body(Body::empty()).unwrap()).await;
        assert_eq!(status, StatusCode::OK, "{value}: {page}");
        assert!(page.contains("is not a date and time"), "{value}: {page}");
    }
}

// A token of any printable characters (`openssl rand -base64` gives `+`, `/`, `=`; a
// password may hold `;`, `&`, `%` or a space) gets a browser in: given raw or
// percent-encoded in `?token=`, it comes back in a cookie that holds it whole.
#[tokio::test]
async fn a_token_of_any_printable_characters_logs_a_browser_in() {
    let token = "a+b/c=; d&e%41 f#g";
    let (_dir, app) = self::app(DashboardOptions::new().token(token)).await;
    let encoded = token
        .bytes()
        .map(|b| format!("%{b:02X}"))
        .collect::<String>();
    let once = request("GET", &format!("/?refresh=off&token={encoded}"))
        .body(Body::empty())
        .unwrap();
    let (status, headers, body) = send(&app, once).await;
    assert_eq!(status, StatusCode::SEE_OTHER, "{body}");
    assert_eq!(headers[header::LOCATION], "/?refresh=off");
    let cookie = headers[header::SET_COOKIE].to_str().unwrap();
    // The browser sends back the cookie's value up to its first `;`.
    let with_cookie = request("GET", "/")
        .header(header::COOKIE, cookie.split(';').next().unwrap())
        .body(Body::empty())
        .unwrap();
    assert_eq!(send(&app, with_cookie).await.0, StatusCode::OK);

    // A raw `+` in the query is the token's `+`, as a browser's address bar sends it.
    let (_dir2, base64) = self::app(DashboardOptions::new().token("a+b/c=")).await;
    let raw = request("GET", "/?token=a+b/c=")
        .body(Body::empty())
        .unwrap();
    assert_eq!(send(&base64, raw).await.0, StatusCode::SEE_OTHER);
}

// Without a token the loopback dashboard answers any page of the machine's browser, so a
// page of another site must not frame it and trick a click on Restart or Purge.
#[tokio::test]
async fn no_other_site_may_frame_the_pages() {
    let (_dir, app) = app(DashboardOptions::new()).await;
    for uri in ["/", "/instances/nobody", "/entities"] {
        let (_, headers, body) = send(&app, request("GET", uri).body(Body::empty()).unwrap()).await;
        assert_eq!(
            headers
                .get(header::X_FRAME_OPTIONS)
                .map(|v| v.to_str().unwrap()),
            Some("DENY"),
            "{uri}: {headers:?} {body}"
        );
        let policy = headers[header::CONTENT_SECURITY_POLICY].to_str().unwrap();
        assert!(policy.contains("frame-ancestors 'none'"), "{uri}: {policy}");
    }
}

// Query values echoed into the filter inputs and the paging links stay inside their
// attributes.
#[tokio::test]
async fn filter_values_echoed_back_stay_text() {
    let (_dir, app) = app(DashboardOptions::new()).await;
    let hostile = "%22%3E%3Cscript%3Ealert(1)%3C%2Fscript%3E";
    for uri in [
        format!("/?orchestrator={hostile}&page_size=1&refresh=off"),
        format!("/entities?name={hostile}&key_prefix={hostile}"),
        format!("/?created_from={hostile}"),
    ] {
        let (status, _, page) = send(&app, request("GET", &uri).body(Body::empty()).unwrap()).await;
        assert_eq!(status, StatusCode::OK, "{uri}: {page}");
        assert!(!page.contains("<script>alert"), "{uri}: {page}");
        assert!(page.contains("&quot;&gt;&lt;script&gt;"), "{uri}: {page}");
    }
}
