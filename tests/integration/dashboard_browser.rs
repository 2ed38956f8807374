//! The dashboard in a real browser: headless Chromium driven through chromedriver
//! (WebDriver). Needs the Debian packages `chromium` and `chromium-driver`; without them
//! the tests fail, saying so (they never skip).
//!
//! With `DURABLE_SCREENSHOT=path`, the instance page is saved there as a PNG.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use durable_core::dashboard::DashboardHandle;
use durable_core::{ActivityContext, OrchestrationContext, Runtime, activity, orchestrator};
use fantoccini::{Client as Browser, ClientBuilder, Locator};

use crate::common::store;
use crate::dashboard_support::serve;

/// How long a page may take to show what the test waits for.
const WAIT: Duration = Duration::from_secs(10);

#[activity]
async fn reserve_stock(_ctx: ActivityContext, items: u32) -> Result<u32, String> {
    Ok(items)
}

#[activity]
async fn charge_card(_ctx: ActivityContext, items: u32) -> Result<u64, String> {
    Ok(u64::from(items) * 250)
}

/// Two activities, then waits for an `approve` event naming the approver.
#[orchestrator]
async fn order_review(ctx: OrchestrationContext, items: u32) -> Result<String, String> {
    let reserved = ctx.call(reserve_stock, items).await?;
    let cents = ctx.call(charge_card, reserved).await?;
    let approver: String = ctx.wait_event("approve").await;
    Ok(format!(
        "{reserved} items, {cents} cents, approved by {approver}"
    ))
}

/// Waits forever on an event, holding its input.
#[orchestrator]
async fn holds_input(ctx: OrchestrationContext, _note: String) -> Result<(), String> {
    ctx.wait_event::<()>("never").await;
    Ok(())
}

fn find_binary(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([
            PathBuf::from("/usr/bin"),
            PathBuf::from("/usr/lib/chromium"),
        ])
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

/// chromedriver, running on a free port; killed on drop.
struct Driver {
    child: Child,
    url: String,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts chromedriver and a headless Chromium session with a fresh profile.
async fn browser(profile: &Path) -> (Driver, Browser) {
    const MISSING: &str = "the dashboard's browser tests need headless Chromium and chromedriver: install them with `apt-get install -y chromium chromium-driver` (Debian) and run the tests again";
    let chromium =
        find_binary("chromium").unwrap_or_else(|| panic!("chromium not found; {MISSING}"));
    let chromedriver =
        find_binary("chromedriver").unwrap_or_else(|| panic!("chromedriver not found; {MISSING}"));
    let port = free_port();
    let child = Command::new(&chromedriver)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}; {MISSING}", chromedriver.display()));
    let driver = Driver {
        child,
        url: format!("http://127.0.0.1:{port}"),
    };
    let mut capabilities = serde_json::Map::new();
    capabilities.insert(
        "goog:chromeOptions".into(),
        serde_json::json!({
            "binary": chromium,
            "args": [
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync",
                "--disable-dev-shm-usage", "--window-size=1280,1500",
                format!("--user-data-dir={}", profile.display()),
            ],
        }),
    );
    let started = Instant::now();
    let connector = hyper_util::client::legacy::connect::HttpConnector::new();
    loop {
        let connected = ClientBuilder::new(connector.clone())
            .capabilities(capabilities.clone())
            .connect(&driver.url)
            .await;
        match connected {
            Ok(client) => return (driver, client),
            // chromedriver may not listen yet.
            Err(e) if started.elapsed() < WAIT => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("cannot open a Chromium session through chromedriver: {e}; {MISSING}"),
        }
    }
}

/// Waits until the element at `css` exists and its text satisfies `done`; its text.
async fn until_text(page: &Browser, css: &str, done: impl Fn(&str) -> bool) -> String {
    let started = Instant::now();
    let mut last = String::new();
    while started.elapsed() < WAIT {
        if let Ok(element) = page.find(Locator::Css(css)).await
            && let Ok(text) = element.text().await
        {
            if done(&text) {
                return text;
            }
            last = text;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("`{css}` never showed what the test waited for; last text: {last:?}");
}

/// Runs `body` with a browser, then closes the browser whatever happened.
async fn with_browser<F, Fut>(dashboard: &DashboardHandle, body: F)
where
    F: FnOnce(Browser, String) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let profile = tempfile::tempdir().unwrap();
    let (driver, page) = browser(profile.path()).await;
    let closer = page.clone();
    let outcome = tokio::spawn(body(page, dashboard.url().to_owned())).await;
    let _ = closer.close().await;
    drop(driver);
    if let Err(e) = outcome {
        std::panic::resume_unwind(e.into_panic());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_lists_an_instance_shows_its_timeline_and_raises_its_event() {
    let (_dir, store) = store();
    let runtime = Runtime::builder(store)
        .orchestrator(order_review)
        .activity(reserve_stock)
        .activity(charge_card)
        .start()
        .await
        .unwrap();
    let client = runtime.client();
    client.start(order_review, "order-7", 3).await.unwrap();
    let dashboard = serve(&client).await;

    with_browser(&dashboard, |page, url| async move {
        // The list with its auto-refresh off: a reload between finding the link and
        // clicking it would make the link stale.
        page.goto(&format!("{url}?refresh=off")).await.unwrap();
        let row = until_text(&page, "#instances", |t| t.contains("order-7")).await;
        assert!(row.contains("order_review"), "{row}");
        page.find(Locator::LinkText("order-7"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();

        // Both activities completed, then the wait for `approve`: reload until the
        // timeline shows it (the page does not refresh itself).
        let started = Instant::now();
        loop {
            let rows = page
                .find_all(Locator::Css(".timeline-row.kind-activity"))
                .await
                .unwrap();
            let mut completed = 0;
            for row in &rows {
                if row.attr("data-outcome").await.unwrap().as_deref() == Some("completed") {
                    completed += 1;
                }
            }
            if completed == 2 {
                let text = page
                    .find(Locator::Css("#timeline"))
                    .await
                    .unwrap()
                    .text()
                    .await
                    .unwrap();
                assert!(
                    text.contains("reserve_stock") && text.contains("charge_card"),
                    "{text}"
                );
                break;
            }
            assert!(
                started.elapsed() < WAIT,
                "the timeline never showed two completed activities"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
            page.refresh().await.unwrap();
        }
        let history = page
            .find(Locator::Css("#history"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(
            history.contains("dashboard_browser.rs:"),
            "no await site in the history: {history}"
        );

        page.find(Locator::Id("event-name"))
            .await
            .unwrap()
            .send_keys("approve")
            .await
            .unwrap();
        let payload = page.find(Locator::Id("event-payload")).await.unwrap();
        payload.clear().await.unwrap();
        payload.send_keys("\"alice\"").await.unwrap();
        page.find(Locator::Id("raise"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        let flash = until_text(&page, "#flash", |t| !t.is_empty()).await;
        assert!(flash.contains("Raised event `approve`"), "{flash}");

        let started = Instant::now();
        loop {
            let status = page
                .find(Locator::Css("#status"))
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            if status == "completed" {
                break;
            }
            assert!(
                started.elapsed() < WAIT,
                "the instance never completed; status {status}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
            page.refresh().await.unwrap();
        }
        let output = page
            .find(Locator::Css("#output"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(
            output.contains("3 items, 750 cents, approved by alice"),
            "{output}"
        );

        if let Some(path) = std::env::var_os("DURABLE_SCREENSHOT") {
            let png = page.screenshot().await.unwrap();
            std::fs::write(&path, png).unwrap();
        }
    })
    .await;
    dashboard.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payload_holding_a_script_shows_as_text() {
    let (_dir, store) = store();
    let runtime = Runtime::builder(store)
        .orchestrator(holds_input)
        .start()
        .await
        .unwrap();
    let client = runtime.client();
    let note =
        "<script>document.title='owned'</script><img src=x onerror=\"document.title='owned'\">";
    client
        .start(holds_input, "xss", note.to_owned())
        .await
        .unwrap();
    let dashboard = serve(&client).await;

    with_browser(&dashboard, |page, url| async move {
        page.goto(&format!("{url}instances/xss")).await.unwrap();
        let input = until_text(&page, "#input", |t| !t.is_empty()).await;
        assert!(
            input.contains("<script>document.title='owned'</script>"),
            "{input}"
        );
        let injected = page
            .execute(
                "return document.querySelectorAll('main script, main img').length",
                vec![],
            )
            .await
            .unwrap();
        assert_eq!(
            injected,
            serde_json::json!(0),
            "the payload became elements"
        );
        assert_ne!(page.title().await.unwrap(), "owned");
    })
    .await;
    dashboard.shutdown().await;
}
