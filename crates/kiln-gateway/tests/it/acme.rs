//! ACME HTTP-01 challenges: answered from Redis on any host, for people and bots, never proxied to
//! the origin, and only for the exact host and token they were published for.

use crate::helpers::{GOOGLEBOT, spawn_app};
use kiln_core::{DomainSettings, Hostname};
use reqwest::{Method, StatusCode};

const TOKEN: &str = "evaGxfADs6pSRb2LAv9IZf17Dt3juxGJ-PCt92wr-oA";

#[tokio::test]
async fn challenges_are_answered_from_redis_for_people_and_bots_and_never_proxied() {
    let gw = spawn_app(DomainSettings::default()).await;
    let shop = Hostname::parse("shop.test").unwrap();
    let answer = format!("{TOKEN}.thumbprint-of-the-account-key");
    gw.store
        .challenges()
        .put(&shop, TOKEN, &answer)
        .await
        .unwrap();
    let path = format!("/.well-known/acme-challenge/{TOKEN}");

    for request in [
        gw.person(Method::GET, &path),
        gw.bot(&path),
        // What a CA's validation request looks like when it did not come through the edge.
        gw.client
            .get(gw.url(&path))
            .header("host", "SHOP.test:80")
            .header("user-agent", "Mozilla/5.0 (compatible; Pebble)"),
        gw.client
            .get(gw.url(&path))
            .header("host", "shop.test")
            .header("user-agent", GOOGLEBOT),
    ] {
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()["content-type"], "text/plain");
        assert_eq!(response.headers()["cache-control"], "no-store");
        assert!(response.headers().get("x-kiln-cache").is_none());
        assert_eq!(response.text().await.unwrap(), answer);
    }
    let head = gw.person(Method::HEAD, &path).send().await.unwrap();
    assert_eq!(head.status(), StatusCode::OK);

    // A host that is not (yet) a domain is answered too: its answer is what was published for it.
    let newcomer = Hostname::parse("new.test").unwrap();
    gw.store
        .challenges()
        .put(&newcomer, TOKEN, "for-the-newcomer")
        .await
        .unwrap();
    let response = gw
        .client
        .get(gw.url(&path))
        .header("host", "new.test")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.text().await.unwrap(), "for-the-newcomer");

    assert_eq!(gw.origin.log.count(), 0, "the origin saw none of it");
    assert!(
        gw.store
            .pages()
            .list(&gw.domain.id, "", None, 10)
            .await
            .unwrap()
            .pages
            .is_empty(),
        "nothing was cached"
    );
}

#[tokio::test]
async fn challenge_answers_do_not_leak_to_other_tokens_or_hosts() {
    let gw = spawn_app(DomainSettings::default()).await;
    let other = Hostname::parse("other.test").unwrap();
    gw.store
        .challenges()
        .put(&other, TOKEN, "other-hosts-answer")
        .await
        .unwrap();
    let shop = Hostname::parse("shop.test").unwrap();
    gw.store
        .challenges()
        .put(&shop, "shop-token", "shops-answer")
        .await
        .unwrap();

    let not_found = [
        // Another host's token.
        format!("/.well-known/acme-challenge/{TOKEN}"),
        // Tokens that are not the published one, or patterns of it.
        "/.well-known/acme-challenge/shop-toke".to_owned(),
        "/.well-known/acme-challenge/shop-token/".to_owned(),
        "/.well-known/acme-challenge/shop*".to_owned(),
        "/.well-known/acme-challenge/*".to_owned(),
        "/.well-known/acme-challenge/..%2Fshop-token".to_owned(),
        "/.well-known/acme-challenge/".to_owned(),
    ];
    for path in &not_found {
        let response = gw.person(Method::GET, path).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::NOT_FOUND, "{path}");
        let body = response.text().await.unwrap();
        assert!(!body.contains("answer"), "{path}: {body}");
    }
    // A NUL in the path is refused before anything is looked up (see `guard`).
    let nul = gw
        .person(Method::GET, "/.well-known/acme-challenge/shop-token%00")
        .send()
        .await
        .unwrap();
    assert_eq!(nul.status(), StatusCode::BAD_REQUEST);
    assert!(!nul.text().await.unwrap().contains("answer"));
    let post = gw
        .person(Method::POST, "/.well-known/acme-challenge/shop-token")
        .send()
        .await
        .unwrap();
    assert_eq!(post.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(gw.origin.log.count(), 0, "the origin saw none of it");

    let found = gw
        .person(Method::GET, "/.well-known/acme-challenge/shop-token")
        .send()
        .await
        .unwrap();
    assert_eq!(found.text().await.unwrap(), "shops-answer");
}
