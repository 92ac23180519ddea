//! The nginx edge classifies User-Agents exactly as the gateway does: both read `nginx/bots.map`,
//! and every line of the shared table of real User-Agents (`nginx/tests/user-agents.tsv`) gets the
//! same verdict and family from nginx as from `kiln_core::bots`. The edge's verdict always replaces
//! whatever a client sent.

use axum::http::HeaderMap;
use kiln_core::{BotClassifier, BotFamily};
use std::net::SocketAddr;

/// An upstream in the gateway's place that answers with what the edge told it:
/// `<X-Is-Bot> <X-Kiln-Bot-Family or ->`.
async fn echo() -> SocketAddr {
    let app = axum::Router::new().fallback(|headers: HeaderMap| async move {
        let header = |name: &str| {
            headers
                .get(name)
                .map_or("-".to_owned(), |v| v.to_str().unwrap_or("?").to_owned())
        };
        format!("{} {}", header("x-is-bot"), header("x-kiln-bot-family"))
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    address
}

fn table() -> Vec<(Option<BotFamily>, String)> {
    let path = kiln_testkit::repo_root().join("nginx/tests/user-agents.tsv");
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
        .map(|line| {
            let (expected, user_agent) = line.split_once('\t').unwrap();
            let expected = (expected != "-").then(|| expected.parse().unwrap());
            (expected, user_agent.to_owned())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_edge_and_the_gateway_classify_every_user_agent_alike() {
    let edge = kiln_testkit::TestEdge::start(echo().await);
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let ask = async |path: &str, user_agent: &str, spoof: bool| {
        let mut request = client
            .get(edge.url(path))
            .header("host", "shop.test")
            .header("user-agent", user_agent);
        if spoof {
            request = request
                .header("x-is-bot", "1")
                .header("x-kiln-bot-family", "search");
        }
        request.send().await.unwrap().text().await.unwrap()
    };

    let table = table();
    let mut disagreements = Vec::new();
    for (expected, user_agent) in &table {
        let gateway = BotClassifier::shared().classify(user_agent);
        let edge_says = ask("/products/1?x=1", user_agent, false).await;
        let wanted = match gateway {
            Some(family) => format!("1 {family}"),
            None => "0 -".to_owned(),
        };
        if edge_says != wanted || gateway != *expected {
            disagreements.push(format!(
                "{user_agent}: edge {edge_says:?}, gateway {gateway:?}, table {expected:?}"
            ));
        }
        // A bot fetching an asset is served like anyone else; the family still travels.
        if let Some(family) = gateway {
            let asset = ask("/static/app.js", user_agent, false).await;
            if asset != format!("0 {family}") {
                disagreements.push(format!("{user_agent} on an asset: edge {asset:?}"));
            }
        }
    }
    assert!(disagreements.is_empty(), "{disagreements:#?}");

    // What a client claims is replaced: a browser saying it is Googlebot's family is a person.
    let (_, browser) = table
        .iter()
        .find(|(expected, _)| expected.is_none())
        .unwrap();
    assert_eq!(ask("/", browser, true).await, "0 -");
    eprintln!(
        "{} User-Agents classified alike by the edge and the gateway (bots.map version {})",
        table.len(),
        BotClassifier::shared().version()
    );
}
