// Rule 10: I/O runs again on every replay and its result is not recorded: do it in an
// activity. File and network modules, and client crates by their root (`reqwest` is a
// stand-in module here).
use durable_core::{OrchestrationContext, orchestrator};

mod reqwest {
    pub async fn get(_url: &str) -> Result<String, String> {
        Ok(String::new())
    }
}

#[orchestrator]
pub async fn fetch(_ctx: OrchestrationContext, _: ()) -> Result<String, String> {
    let config = std::fs::read_to_string("config.toml").unwrap_or_default();
    let socket = std::net::TcpStream::connect("localhost:80");
    let page = reqwest::get("https://example.com").await?;
    let _ = socket;
    Ok(config + &page)
}

fn main() {}
