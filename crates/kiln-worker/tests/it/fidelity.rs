//! Snapshots faithful to what people see, read in the markup Kiln stores: styles that live only in
//! the CSSOM (CSS-in-JS rules, adopted stylesheets), content that arrives as the page is scrolled,
//! and state held in DOM properties. The fixtures are the corpus's `cssom-rules`,
//! `adopted-sheets`, `lazy-content`, `dom-state` and `cloaking` pages and the framework apps
//! (`examples/frameworks/README.md` says what their styles are).

use futures::future::join_all;
use kiln_core::DeviceClass::{self, Desktop, Mobile};
use kiln_testkit::corpus::TestCorpusOrigin;
use lol_html::{RewriteStrSettings, element, rewrite_str, text};
use std::cell::RefCell;
use std::collections::BTreeMap;

use crate::helpers::{Outcome, TestCorpus, spawn_app_with};

const WORKER: &[(&str, &str)] = &[("KILN_WORKER_TABS_PER_BROWSER", "4")];

/// The opening tag Chromium writes for an open shadow root.
const SHADOW_ROOT: &str = r#"<template shadowrootmode="open">"#;

impl TestCorpus {
    /// Renders corpus pages at once, each for its device.
    async fn render_each(&self, pages: &[(&str, DeviceClass)]) -> Vec<String> {
        let outcomes = join_all(pages.iter().map(|(page, device)| {
            self.app
                .run(self.app.job(&self.origin.url(&format!("/{page}")), *device))
        }))
        .await;
        outcomes.iter().map(stored_html).collect()
    }
}

fn stored_html(outcome: &Outcome) -> String {
    assert_eq!(outcome.status(), 200);
    outcome.html()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rules_that_live_only_in_the_cssom_are_written_into_the_snapshot() {
    let corpus = TestCorpus::start(WORKER).await;
    let html = corpus
        .render_each(&[("cssom-rules", Desktop), ("adopted-sheets", Desktop)])
        .await;

    // Rules inserted with insertRule into an empty <style>, as emotion and styled-components do.
    let page = &html[0];
    let sheets = styles(page);
    let css = sheets.concat();
    let title = rule(&css, ".kiln-cssom-title")
        .unwrap_or_else(|| panic!("the inserted marker rule is missing: {sheets:#?}"));
    assert!(title.contains("color:rgb(200,30,90)"), "{title}");
    assert_eq!(
        css.matches(".kiln-cssom-title{").count(),
        1,
        "one copy of each rule: {sheets:#?}"
    );
    for (id, declaration) in [
        ("title", "text-decoration:underline"),
        ("cards", "background-color:rgb(255,236,179)"),
    ] {
        let classes = generated_classes(page, &format!("#{id}"));
        assert_eq!(classes.len(), 1, "#{id}: {classes:?}");
        let body = rule(&css, &format!(".{}", classes[0]))
            .unwrap_or_else(|| panic!("no rule for #{id}'s {}: {sheets:#?}", classes[0]));
        assert!(body.contains(declaration), "#{id}: {body}");
    }
    let media = block(&css, "@media(min-width:800px)")
        .unwrap_or_else(|| panic!("the @media rule is missing: {sheets:#?}"));
    assert!(
        rule(media, ".kiln-cssom-wide").is_some_and(|r| r.contains("rgb(20,160,120)")),
        "{media}"
    );
    assert!(
        rule(media, ".kiln-cssom-media-inner").is_some_and(|r| r.contains("rgb(240,140,0)")),
        "the rule inserted into the @media rule: {media}"
    );
    // The second sheet as its CSSOM stands: a rule deleted, one kept, one inserted; and still
    // after the first, as the cascade has it.
    assert!(
        !page.contains("kiln-cssom-old"),
        "the deleted rule survived: {sheets:#?}"
    );
    assert!(rule(&css, ".kiln-cssom-kept").is_some(), "{sheets:#?}");
    assert!(
        rule(&css, ".kiln-cssom-new").is_some_and(|r| r.contains("color:rgb(0,128,255)")),
        "{sheets:#?}"
    );
    assert!(
        css.find(".kiln-cssom-title{") < css.find(".kiln-cssom-new{"),
        "{sheets:#?}"
    );

    // Adopted sheets: the document's, after every <style> of the document's own (one is in the
    // body); each shadow root's, after the root's own <style>.
    let page = &html[1];
    let document = styles(&without_shadow_roots(page));
    let adopted = document
        .iter()
        .position(|css| {
            rule(css, ".kiln-adopted-doc").is_some_and(|r| r.contains("color:rgb(0,110,60)"))
        })
        .unwrap_or_else(|| panic!("the document's adopted sheet is missing: {document:#?}"));
    let own = document
        .iter()
        .rposition(|css| css.contains("rgb(90,90,90)"))
        .unwrap_or_else(|| panic!("the body's own <style> is missing: {document:#?}"));
    assert!(
        adopted > own,
        "the adopted sheet must come after the document's own styles: {document:#?}"
    );
    assert!(
        rule(&document[adopted], ".kiln-adopted-inserted").is_some(),
        "a rule inserted after adoption: {document:#?}"
    );
    assert!(
        rule(&document[adopted], "body").is_some_and(|r| r.contains("rgb(240,248,255)")),
        "{document:#?}"
    );

    for (card, extra) in [("first", false), ("second", true)] {
        let root = shadow_root(page, &format!(r#"<kiln-card id="{card}""#))
            .unwrap_or_else(|| panic!("no shadow root for the {card} card: {page}"));
        let sheets = styles(root);
        let own = sheets
            .iter()
            .position(|css| css.contains("rgb(0,0,0)"))
            .unwrap_or_else(|| panic!("{card}: the root's own <style> is missing: {root}"));
        let shared = sheets
            .iter()
            .position(|css| {
                rule(css, ".kiln-adopted-shared").is_some_and(|r| r.contains("rgb(120,40,200)"))
            })
            .unwrap_or_else(|| panic!("{card}: the shared adopted sheet is missing: {root}"));
        assert!(shared > own, "{card}: {sheets:#?}");
        let extra_at = sheets
            .iter()
            .position(|css| rule(css, ".kiln-adopted-extra").is_some());
        if extra {
            let extra_at =
                extra_at.unwrap_or_else(|| panic!("{card}: its own adopted sheet: {root}"));
            // Within one sheet, or in a later one.
            assert!(extra_at >= shared, "{card}: {sheets:#?}");
        } else {
            assert_eq!(extra_at, None, "{card} adopted no extra sheet: {root}");
        }
    }
    corpus.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn content_reached_by_scrolling_is_in_the_snapshot_within_a_bound() {
    let corpus = TestCorpus::start(WORKER).await;
    let html = corpus
        .render_each(&[("lazy-content", Desktop), ("lazy-content", Mobile)])
        .await;

    // Desktop: the viewport is 900 px high; mobile: 915 px. The endless feed starts at about
    // 7,100 px and grows by about 1,050 px a batch, so a scroll bounded at 9,300 px (12,100 px on
    // a phone) reaches a few batches and never a tenth.
    for (page, device, vh, viewport, max_batches) in [
        (&html[0], "desktop", "9px", 900, 8),
        (&html[1], "mobile", "9.15px", 915, 10),
    ] {
        for loaded in [
            "Loaded on intersection: lazy-section",
            "Loaded on intersection: section-6000",
        ] {
            assert!(page.contains(loaded), "{device}: {loaded} missing: {page}");
        }
        assert!(
            !page.contains("Loaded on intersection: section-20000"),
            "{device}: the section at 20,000 px is beyond any bound: {page}"
        );

        // The virtualised list at 2,000 px, back at the top of the page, shows its first screen.
        for row in 1..=20 {
            let text = format!(">Virtual row {row} of 100</div>");
            assert!(page.contains(&text), "{device}: {text} missing: {page}");
        }

        let batches: Vec<u32> = elements(page, "section.feed-batch")
            .iter()
            .map(|attributes| attributes["data-batch"].parse().unwrap())
            .collect();
        assert!(
            !batches.is_empty(),
            "{device}: the feed never loaded: {page}"
        );
        assert_eq!(
            batches,
            (1..=batches.len() as u32).collect::<Vec<_>>(),
            "{device}"
        );
        assert!(
            batches.len() <= max_batches,
            "{device}: the scroll did not stop: {} batches",
            batches.len()
        );

        // The hero was sized for the render's own viewport, never for a window as tall as the page.
        let style = |selector: &str, property: &str| {
            elements(page, selector)
                .first()
                .and_then(|attributes| attributes.get("style"))
                .and_then(|style| style_property(style, property))
        };
        assert_eq!(
            style("html", "--vh").as_deref(),
            Some(vh),
            "{device}: {page}"
        );
        assert_eq!(
            style("#hero", "height"),
            Some(format!("{viewport}px")),
            "{device}: {page}"
        );
        let tallest = page
            .match_indices("height: ")
            .filter_map(|(at, _)| {
                let value = &page[at + "height: ".len()..];
                value[..value.find("px")?].parse::<f64>().ok()
            })
            .fold(0.0, f64::max);
        assert!(
            tallest < 5_000.0,
            "{device}: a height of {tallest} px in the markup"
        );
    }
    assert_eq!(
        corpus.origin.hits.get("/api/delay/150/section-20000"),
        0,
        "the section at 20,000 px was fetched"
    );
    assert!(
        corpus.origin.hits.with_prefix("/api/delay/100/feed-batch-") <= 8 + 10,
        "the feed was fetched too often"
    );
    corpus.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_set_through_dom_properties_is_written_as_attributes_but_never_passwords() {
    let corpus = TestCorpus::start(WORKER).await;
    let html = corpus.render_each(&[("dom-state", Desktop)]).await;
    let page = &html[0];

    let one = |selector: &str| -> BTreeMap<String, String> {
        let found = elements(page, selector);
        assert_eq!(found.len(), 1, "{selector}: {page}");
        found.into_iter().next().unwrap()
    };
    assert_eq!(
        one("#name").get("value").map(String::as_str),
        Some("Ada Lovelace")
    );
    assert_eq!(text_of(page, "#note"), "Leave it at the door");
    for (selector, checked) in [
        ("#gift", true),
        ("#newsletter", false),
        ("#ship-standard", false),
        ("#ship-express", true),
    ] {
        assert_eq!(
            one(selector).contains_key("checked"),
            checked,
            "{selector}: {page}"
        );
    }
    for (selector, selected) in [
        (r#"#size option[value="small"]"#, false),
        (r#"#size option[value="large"]"#, true),
        (r#"#colour option[value="oak"]"#, false),
        (r#"#colour option[value="walnut"]"#, true),
    ] {
        assert_eq!(
            one(selector).contains_key("selected"),
            selected,
            "{selector}: {page}"
        );
    }
    assert!(one("#more").contains_key("open"), "{page}");
    assert!(one("#notice").contains_key("open"), "{page}");
    assert!(
        !page.contains("KILN-PASSWORD-SECRET-4d2b"),
        "a password typed in by script was stored: {page}"
    );
    assert!(!one("#password").contains_key("value"), "{page}");
    corpus.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn css_in_js_rules_and_lit_s_adopted_styles_are_in_the_framework_apps_snapshots() {
    let app = spawn_app_with(WORKER).await;
    let react = TestCorpusOrigin::start_framework("react").await;
    let vue = TestCorpusOrigin::start_framework("vue").await;
    let outcomes = join_all(
        [
            react.url("/"),
            react.url("/products/2"),
            vue.url("/"),
            vue.url("/products/2"),
        ]
        .iter()
        .map(|url| app.run(app.job(url, Desktop))),
    )
    .await;
    let html: Vec<String> = outcomes.iter().map(stored_html).collect();

    // React: emotion's rules, every one of them in the CSSOM only, for the classes the page uses.
    for page in &html[..2] {
        let sheets = styles(page);
        let css = sheets.concat();
        assert!(
            rule(&css, "body").is_some_and(|r| r.contains("background-color:rgb(250,247,240)")),
            "emotion's global rule: {sheets:#?}"
        );
        let header = generated_classes(page, "header");
        assert_eq!(header.len(), 1, "{page}");
        assert!(
            rule(&css, &format!(".{}", header[0]))
                .is_some_and(|r| r.contains("background-color:rgb(24,64,48)")),
            "the header's rule: {sheets:#?}"
        );
        let nav = generated_classes(page, "header nav");
        assert_eq!(nav.len(), 1, "{page}");
        assert!(
            rule(&css, &format!(".{} a", nav[0])).is_some_and(|r| r.contains("rgb(250,214,120)")),
            "the nav links' rule: {sheets:#?}"
        );
    }
    let product = &html[1];
    let card = generated_classes(product, "article.product");
    assert_eq!(card.len(), 1, "{product}");
    let css = styles(product).concat();
    assert!(
        rule(&css, &format!(".{}", card[0]))
            .is_some_and(|r| r.contains("border:4px solid rgb(190,120,40)")),
        "the product card's rule: {css}"
    );
    assert!(
        rule(&css, &format!(".{} .price", card[0])).is_some(),
        "the card's nested rule: {css}"
    );

    // Vue: the Lit element's static styles, adopted by its shadow root, in a <style> there.
    for (page, label, colour) in [
        (&html[2], "Free delivery", "rgb(30,120,200)"),
        (&html[3], "Handmade", "rgb(200,80,30)"),
    ] {
        let root = shadow_root(page, "<kiln-badge")
            .unwrap_or_else(|| panic!("no shadow root for <kiln-badge>: {page}"));
        assert!(root.contains(label), "{root}");
        let css = styles(root).concat();
        assert!(
            rule(&css, ".kiln-badge-pill").is_some_and(|r| r.contains("rgb(30,120,200)")),
            "Lit's styles are missing from the shadow root: {root}"
        );
        assert!(css.contains(colour), "{css}");
    }
    app.shutdown().await;
}

/// The fixture for the parity check: Kiln's renderer gets the page for bots, people another one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cloaking_page_shows_kiln_the_page_it_shows_bots() {
    let corpus = TestCorpus::start(WORKER).await;
    let html = corpus.render_each(&[("cloaking", Desktop)]).await;
    let page = &html[0];
    assert!(
        page.contains("<h1>Best cheap chairs buy now</h1>"),
        "{page}"
    );
    assert!(!page.contains("people-copy"), "{page}");

    let for_people = reqwest::Client::new()
        .get(corpus.origin.url("/cloaking"))
        .header(
            "user-agent",
            "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0.0.0 Safari/537.36",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(
        for_people.headers().get("vary").unwrap(),
        "User-Agent",
        "a cloaking origin that at least says so"
    );
    let for_people = for_people.text().await.unwrap();
    assert!(
        for_people.contains(r#"<p id="people-copy">"#),
        "{for_people}"
    );
    assert!(!for_people.contains("cheap chairs"), "{for_people}");
    corpus.shutdown().await;
}

/// Each `<style>` element's text, in document order (shadow roots included), with whitespace
/// squeezed (see [`squeeze`]).
fn styles(html: &str) -> Vec<String> {
    let found = RefCell::new(Vec::<String>::new());
    rewrite_str(
        html,
        RewriteStrSettings::new()
            .append_element_content_handler(element!("style", |_| {
                found.borrow_mut().push(String::new());
                Ok(())
            }))
            .append_element_content_handler(text!("style", |chunk| {
                if let Some(last) = found.borrow_mut().last_mut() {
                    last.push_str(chunk.as_str());
                }
                Ok(())
            })),
    )
    .expect("a snapshot is HTML lol_html can read");
    found.into_inner().iter().map(|css| squeeze(css)).collect()
}

/// The attributes of every element matching `selector`, in document order.
fn elements(html: &str, selector: &str) -> Vec<BTreeMap<String, String>> {
    let found = RefCell::new(Vec::new());
    rewrite_str(
        html,
        RewriteStrSettings::new().append_element_content_handler(element!(selector, |el| {
            found.borrow_mut().push(
                el.attributes()
                    .iter()
                    .map(|a| (a.name(), a.value()))
                    .collect(),
            );
            Ok(())
        })),
    )
    .expect("a snapshot is HTML lol_html can read");
    found.into_inner()
}

/// The text inside the elements matching `selector`, as written (entities left as they are).
fn text_of(html: &str, selector: &str) -> String {
    let found = RefCell::new(String::new());
    rewrite_str(
        html,
        RewriteStrSettings::new().append_element_content_handler(text!(selector, |chunk| {
            found.borrow_mut().push_str(chunk.as_str());
            Ok(())
        })),
    )
    .expect("a snapshot is HTML lol_html can read");
    found.into_inner()
}

/// The `css-…` class names (emotion's and the corpus's generated ones) of the one element matching
/// `selector`.
fn generated_classes(html: &str, selector: &str) -> Vec<String> {
    let found = elements(html, selector);
    assert_eq!(found.len(), 1, "{selector}: {html}");
    found[0]
        .get("class")
        .map(String::as_str)
        .unwrap_or_default()
        .split_ascii_whitespace()
        .filter(|class| class.starts_with("css-"))
        .map(str::to_owned)
        .collect()
}

/// A `style` attribute's value for `property`.
fn style_property(style: &str, property: &str) -> Option<String> {
    style.split(';').find_map(|declaration| {
        let (name, value) = declaration.split_once(':')?;
        (name.trim() == property).then(|| value.trim().to_owned())
    })
}

/// The contents of the first open shadow root after `host` (the start of its host's tag).
fn shadow_root<'a>(html: &'a str, host: &str) -> Option<&'a str> {
    let start = html.find(host)?;
    let open = start + html[start..].find(SHADOW_ROOT)? + SHADOW_ROOT.len();
    let close = template_end(&html[open..])?;
    Some(&html[open..open + close])
}

/// The document without its shadow roots' contents: what the document's own styles are.
fn without_shadow_roots(html: &str) -> String {
    let mut rest = html;
    let mut out = String::new();
    while let Some(open) = rest.find(SHADOW_ROOT) {
        out.push_str(&rest[..open]);
        let inside = &rest[open + SHADOW_ROOT.len()..];
        let close = template_end(inside).expect("every shadow root is closed");
        rest = &inside[close + "</template>".len()..];
    }
    out.push_str(rest);
    out
}

/// Where the template whose contents start `html` ends, nested templates skipped.
fn template_end(html: &str) -> Option<usize> {
    let mut depth = 0usize;
    let mut at = 0;
    loop {
        let next_open = html[at..].find("<template").map(|i| at + i);
        let next_close = at + html[at..].find("</template>")?;
        match next_open {
            Some(open) if open < next_close => {
                depth += 1;
                at = open + 1;
            }
            _ if depth == 0 => return Some(next_close),
            _ => {
                depth -= 1;
                at = next_close + 1;
            }
        }
    }
}

/// CSS without comments and with whitespace squeezed out where it means nothing: runs of
/// whitespace become one space, none is left around punctuation, so `.a { color: rgb(1, 2, 3); }`
/// and `.a{color:rgb(1,2,3)}` read alike, and `.a .b` keeps its descendant combinator.
fn squeeze(css: &str) -> String {
    const TIGHT: &[char] = &['{', '}', ':', ';', ',', '(', ')', '>'];
    let mut uncommented = String::with_capacity(css.len());
    let mut rest = css;
    while let Some(start) = rest.find("/*") {
        uncommented.push_str(&rest[..start]);
        rest = rest[start + 2..]
            .find("*/")
            .map_or("", |end| &rest[start + 2 + end + 2..]);
    }
    uncommented.push_str(rest);
    let mut out = String::with_capacity(css.len());
    let mut space = false;
    for c in uncommented.chars() {
        if c.is_whitespace() {
            space = true;
            continue;
        }
        if space && !out.is_empty() && !TIGHT.contains(&c) && !out.ends_with(TIGHT) {
            out.push(' ');
        }
        space = false;
        out.push(c);
    }
    out
}

/// The declarations of the first rule in squeezed `css` whose whole selector is `selector`.
fn rule<'a>(css: &'a str, selector: &str) -> Option<&'a str> {
    let needle = format!("{}{{", squeeze(selector));
    let mut from = 0;
    while let Some(found) = css[from..].find(&needle).map(|i| from + i) {
        let starts_rule = css[..found].is_empty() || css[..found].ends_with(['{', '}', ';']);
        let body = found + needle.len();
        if starts_rule {
            return css[body..].find('}').map(|end| &css[body..body + end]);
        }
        from = body;
    }
    None
}

/// The contents of the block (an at-rule's) in squeezed `css` that `prelude` opens.
fn block<'a>(css: &'a str, prelude: &str) -> Option<&'a str> {
    let start = css.find(&format!("{}{{", squeeze(prelude)))? + squeeze(prelude).len() + 1;
    let mut depth = 0usize;
    for (at, c) in css[start..].char_indices() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => return Some(&css[start..start + at]),
            '}' => depth -= 1,
            _ => {}
        }
    }
    None
}

#[test]
fn css_is_read_alike_however_it_is_spaced() {
    let chromium = squeeze(
        "/* a comment */ @media (min-width: 800px) {\n  .a { color: rgb(1, 2, 3); }\n  .b .c { border: 4px solid red; }\n}\n.d { x: 1; } /* unclosed",
    );
    assert_eq!(
        chromium,
        "@media(min-width:800px){.a{color:rgb(1,2,3);}.b .c{border:4px solid red;}}.d{x:1;}"
    );
    let media = block(&chromium, "@media (min-width: 800px)").unwrap();
    assert_eq!(rule(media, ".a"), Some("color:rgb(1,2,3);"));
    assert_eq!(rule(media, ".b .c"), Some("border:4px solid red;"));
    assert_eq!(
        rule(media, ".c"),
        None,
        "a selector's tail is not the selector"
    );
    assert_eq!(rule(&chromium, ".d"), Some("x:1;"));
    assert_eq!(rule(".xd{y:2}.d{x:1}", ".d"), Some("x:1"));

    let html = r#"<a><template shadowrootmode="open"><style>s1</style><template>t</template></template><style>s2</style></a>"#;
    assert_eq!(
        shadow_root(html, "<a"),
        Some("<style>s1</style><template>t</template>")
    );
    assert_eq!(without_shadow_roots(html), "<a><style>s2</style></a>");
    assert_eq!(
        style_property("--vh: 9px; height: 900px;", "height").as_deref(),
        Some("900px")
    );
}
