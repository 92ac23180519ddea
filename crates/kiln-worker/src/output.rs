//! Turns the DOM Chromium serialised into the page bots get, in one streaming pass of lol_html:
//! scripts go (JSON-LD stays), a `<base href>` goes in when the page's own location differs from
//! the URL bots fetch it at, and what the page says about its status and headers through meta tags
//! is read, along with how much visible text it has for the quality gate.

use lol_html::html_content::{ContentType, TextType};
use lol_html::{RewriteStrSettings, doc_text, element, rewrite_str};
use std::cell::{Cell, RefCell};

/// Names of meta tags that set the page's status: prerender.io's and Rendertron's conventions.
const STATUS_METAS: &[&str] = &["prerender-status-code", "render:status_code"];
const HEADER_META: &str = "prerender-header";

/// What to do beyond the fixed clean-up.
#[derive(Clone, Debug, Default)]
pub struct Options<'a> {
    /// Inserted as `<base href>` at the top of `<head>`, unless the page has a base of its own.
    pub base_href: Option<&'a str>,
}

/// The cleaned page and what it declares about itself.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Processed {
    pub html: String,
    /// The first status meta tag's content, of either convention, in document order.
    pub status_meta: Option<String>,
    /// Every `prerender-header` meta tag's content, in document order.
    pub header_metas: Vec<String>,
    /// Non-whitespace characters of text a reader of `<body>` sees (shadow roots included; script,
    /// style and other raw text excluded).
    pub visible_text: usize,
    /// Elements inside `<body>`.
    pub body_elements: usize,
}

#[derive(Debug, thiserror::Error)]
#[error("the rendered page could not be rewritten: {0}")]
pub struct OutputError(String);

/// Processes a serialised document.
pub fn process(html: &str, options: &Options<'_>) -> Result<Processed, OutputError> {
    let status_meta = RefCell::new(None::<String>);
    let header_metas = RefCell::new(Vec::new());
    let has_base = Cell::new(false);
    let base_added = Cell::new(false);
    let in_body = Cell::new(false);
    let visible_text = Cell::new(0usize);
    let body_elements = Cell::new(0usize);
    // The base must come before any URL in the document, so it is prepended when `<head>` opens;
    // a `<base href>` of the page's own, seen later in the head, has it removed again. Only the first
    // `<head>` gets it: a script can put more `head` elements in the body, and one base is enough
    // (the `html_output` fuzz target found the second one).
    let base_tag = options.base_href.map(base_tag);

    let rewritten = rewrite_str(
        html,
        RewriteStrSettings::new()
            .append_element_content_handler(element!("script", |el| {
                let kind = el.get_attribute("type").unwrap_or_default();
                if !kind.trim().eq_ignore_ascii_case("application/ld+json") {
                    el.remove();
                }
                Ok(())
            }))
            // Hints for scripts that are no longer there would only make crawlers fetch them.
            .append_element_content_handler(element!("link[rel]", |el| {
                let rel = el
                    .get_attribute("rel")
                    .unwrap_or_default()
                    .to_ascii_lowercase();
                let as_script = el
                    .get_attribute("as")
                    .is_some_and(|a| a.trim().eq_ignore_ascii_case("script"));
                if rel.split_ascii_whitespace().any(|r| r == "modulepreload")
                    || (rel.split_ascii_whitespace().any(|r| r == "preload") && as_script)
                {
                    el.remove();
                }
                Ok(())
            }))
            .append_element_content_handler(element!("head", |el| {
                if let Some(tag) = &base_tag
                    && !base_added.replace(true)
                {
                    el.prepend(tag, ContentType::Html);
                }
                Ok(())
            }))
            .append_element_content_handler(element!("base[href]", |_| {
                has_base.set(true);
                Ok(())
            }))
            .append_element_content_handler(element!("meta[name][content]", |el| {
                let name = el.get_attribute("name").unwrap_or_default();
                let name = name.trim();
                let content = el.get_attribute("content").unwrap_or_default();
                if STATUS_METAS.iter().any(|m| m.eq_ignore_ascii_case(name)) {
                    status_meta.borrow_mut().get_or_insert(content);
                } else if name.eq_ignore_ascii_case(HEADER_META) {
                    header_metas.borrow_mut().push(content);
                }
                Ok(())
            }))
            .append_element_content_handler(element!("body", |_| {
                in_body.set(true);
                Ok(())
            }))
            .append_element_content_handler(element!("body *", |_| {
                body_elements.set(body_elements.get() + 1);
                Ok(())
            }))
            .append_document_content_handler(doc_text!(|chunk| {
                if in_body.get() && chunk.text_type() == TextType::Data {
                    let text = chunk.as_str();
                    visible_text.set(
                        visible_text.get() + text.chars().filter(|c| !c.is_whitespace()).count(),
                    );
                }
                Ok(())
            }))
            // Chromium's serialisation is well-formed, but a page can still contain markup whose
            // parse a streaming rewriter cannot be sure of (foreign content, say): rewrite it
            // anyway rather than refuse the page.
            .with_strict(false)
            // Edge-side-include tags are markup like any other here.
            .with_enable_esi_tags(false),
    )
    .map_err(|e| OutputError(e.to_string()))?;

    let html = match (&base_tag, has_base.get()) {
        // The page brought its own base: take ours out again (it is the first one in the head).
        (Some(tag), true) => rewritten.replacen(tag.as_str(), "", 1),
        _ => rewritten,
    };
    Ok(Processed {
        html,
        status_meta: status_meta.into_inner(),
        header_metas: header_metas.into_inner(),
        visible_text: visible_text.get(),
        body_elements: body_elements.get(),
    })
}

/// Visible text of an HTML document (for the origin's own page in the quality gate).
pub fn visible_text(html: &str) -> usize {
    process(html, &Options::default()).map_or(0, |p| p.visible_text)
}

/// The `<base>` tag that puts `href` in.
pub(crate) fn base_tag(href: &str) -> String {
    format!(
        "<base href=\"{}\">",
        html_escape::encode_double_quoted_attribute(href)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(html: &str) -> Processed {
        process(html, &Options::default()).unwrap()
    }

    #[test]
    fn scripts_go_but_json_ld_stays() {
        let page = r#"<!DOCTYPE html><html><head><script src="/app.js"></script><script type="module">x()</script><script type=" Application/LD+JSON ">{"@type":"Product"}</script><link rel="modulepreload" href="/a.js"><link rel="preload" as="script" href="/b.js"><link rel="preload" as="style" href="/c.css"><link rel="stylesheet" href="/d.css"></head><body><p>hi</p><script>document.write(1)</script><script type="application/ld+json">{"@type":"Offer"}</script></body></html>"#;
        let out = run(page);
        assert!(out.html.starts_with("<!DOCTYPE html>"));
        assert!(!out.html.contains("app.js"));
        assert!(!out.html.contains("x()"));
        assert!(!out.html.contains("document.write"));
        assert!(out.html.contains(r#"{"@type":"Product"}"#));
        assert!(out.html.contains(r#"{"@type":"Offer"}"#));
        assert!(!out.html.contains("/a.js") && !out.html.contains("/b.js"));
        assert!(out.html.contains("/c.css") && out.html.contains("/d.css"));
    }

    #[test]
    fn the_first_status_meta_of_either_convention_wins() {
        let out = run(
            r#"<html><head><meta name="render:status_code" content="410"><meta name="prerender-status-code" content="404"></head><body>x</body></html>"#,
        );
        assert_eq!(out.status_meta.as_deref(), Some("410"));
        let out = run(
            r#"<html><head><meta name="Prerender-Status-Code" content="301"><meta name="prerender-header" content="Location: /a"><meta name="prerender-header" content="Location: /b"></head><body>x</body></html>"#,
        );
        assert_eq!(out.status_meta.as_deref(), Some("301"));
        assert_eq!(out.header_metas, ["Location: /a", "Location: /b"]);
        assert_eq!(run("<html><body>x</body></html>").status_meta, None);
    }

    #[test]
    fn a_base_is_added_unless_the_page_has_one() {
        let options = Options {
            base_href: Some("https://shop.example/a/\"b"),
        };
        let out = process(
            "<!DOCTYPE html><html><head><title>t</title></head><body>x</body></html>",
            &options,
        )
        .unwrap();
        assert!(
            out.html
                .contains(r#"<head><base href="https://shop.example/a/&quot;b"><title>"#),
            "{}",
            out.html
        );
        // One base however many `head` elements scripts left in the page.
        let heads = "<html><head><title>t</title></head><body><head></head>x</body></html>";
        let out = process(heads, &options).unwrap();
        assert_eq!(out.html.matches("<base").count(), 1, "{}", out.html);
        assert!(
            out.html.starts_with("<html><head><base href="),
            "{}",
            out.html
        );
        let own = r#"<html><head><title>t</title><base href="/app/"></head><body>x</body></html>"#;
        let out = process(own, &options).unwrap();
        assert_eq!(out.html, own);
    }

    #[test]
    fn visible_text_counts_the_body_and_shadow_roots_not_scripts_or_styles() {
        let out = run(
            r#"<html><head><title>Title text</title><style>p{}</style></head><body>
              <p>Hello  world</p><style>.x{color:red}</style><script type="application/ld+json">{"a":1}</script>
              <noscript>enable js</noscript><my-card><template shadowrootmode="open"><b>Shadow</b></template></my-card>
            </body></html>"#,
        );
        assert_eq!(out.visible_text, "Helloworld".len() + "Shadow".len());
        assert_eq!(out.body_elements, 7);
        assert_eq!(visible_text("<html><body>  </body></html>"), 0);
    }

    #[test]
    fn odd_markup_is_rewritten_not_refused() {
        let out = run(
            "<html><body><svg><style>a{}</style><script>x</script></svg><p>ok</p></body></html>",
        );
        assert!(out.html.contains("<p>ok</p>"));
        assert!(!out.html.contains("<script>x"));
    }
}
