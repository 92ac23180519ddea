//! Cookies, `Authorization` and other credentials pass through the gateway to the origin and never
//! reach its logs, at the most verbose log level, for people and bots alike.

use crate::helpers::spawn_app;
use kiln_core::DomainSettings;
use reqwest::Method;

#[tokio::test]
async fn credentials_passing_through_never_reach_the_logs_even_at_trace_level() {
    let logs = kiln_testkit::logs::capture("trace");
    let gw = spawn_app(DomainSettings {
        bot_wait_ms: 200,
        ..DomainSettings::default()
    })
    .await;
    let cookie = "session=cookie-secret-5f2a9c";
    let bearer = "Bearer bearer-secret-81d0e4";
    let api_key = "apikey-secret-77c3b1";
    let person = gw
        .person(Method::POST, "/account?x=1")
        .header("cookie", cookie)
        .header("authorization", bearer)
        .header("x-api-key", api_key)
        .body("password=body-secret-c0ffee")
        .send()
        .await
        .unwrap();
    assert_eq!(person.status(), 200);
    let bot = gw
        .bot("/products/1")
        .header("cookie", cookie)
        .header("authorization", bearer)
        .header("x-api-key", api_key)
        .send()
        .await
        .unwrap();
    assert_eq!(bot.headers()["x-kiln-cache"], "BYPASS");
    // The origin did get them: they were there to be logged.
    let seen = gw.origin.log.requests();
    assert!(
        seen.iter().all(|r| r.headers["cookie"] == cookie),
        "{seen:?}"
    );

    let text = logs.text();
    assert!(
        text.contains("kiln_gateway"),
        "the gateway's logs were not captured: {text}"
    );
    for secret in [
        "cookie-secret-5f2a9c",
        "bearer-secret-81d0e4",
        "apikey-secret-77c3b1",
        "body-secret-c0ffee",
    ] {
        assert!(
            !text.contains(secret),
            "{secret} is in the logs:\n{}",
            text.lines()
                .filter(|line| line.contains(secret))
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
}
