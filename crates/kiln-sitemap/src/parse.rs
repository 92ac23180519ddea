//! Parsing one sitemap body: gzip detection, XML `<urlset>` / `<sitemapindex>`, and plain text.
//!
//! The parser is deliberately lenient where real sites are sloppy (namespace URIs, unescaped `&`,
//! whitespace before the XML declaration, trailing output after the root element) and strict
//! where leniency would be a risk (decompressed size, documents that are not sitemaps at all).

use std::io::Read as _;

use flate2::read::MultiGzDecoder;
use quick_xml::escape::resolve_predefined_entity;
use quick_xml::events::{BytesRef, BytesStart, Event};
use quick_xml::name::ResolveResult;
use quick_xml::reader::NsReader;

/// The `<loc>` entries of one sitemap, trimmed and with entities decoded but not yet validated
/// as URLs: which entries to keep depends on the root sitemap's host, which one body does not
/// tell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Document {
    /// A `<urlset>` or a plain-text sitemap: page URLs.
    UrlSet(Vec<String>),
    /// A `<sitemapindex>`: locations of further sitemaps.
    Index(Vec<String>),
}

/// Why a body is not a readable sitemap.
///
/// Each message reads as the completion of "… is not a sitemap: ".
#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    #[error("the body is empty")]
    Empty,
    #[error("the body is larger than {limit} bytes once decompressed")]
    TooLarge { limit: usize },
    #[error("invalid gzip data")]
    Gzip(#[source] std::io::Error),
    #[error("malformed XML at byte {position}")]
    Xml {
        position: u64,
        #[source]
        source: quick_xml::Error,
    },
    /// `found` is the root element as written (`<html>`) or a description of what came instead.
    #[error("expected <urlset> or <sitemapindex>, found {found}")]
    UnexpectedRoot { found: String },
    #[error("expected an XML sitemap or one URL per line, found text starting with {start:?}")]
    NotUrlList { start: String },
    #[error("a text sitemap must be UTF-8")]
    NotUtf8(#[source] std::str::Utf8Error),
}

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";

/// A server that gzips responses on the fly can compress a `.xml.gz` file a second time, and the
/// fetcher hands us the bytes as served. Two layers cover that; more is not a sitemap anyone
/// publishes, so a third layer is parsed as-is and rejected.
const MAX_GZIP_LAYERS: usize = 2;

/// How much of a non-URL first line to quote back in [`ParseError::NotUrlList`].
const EXCERPT_CHARS: usize = 40;

/// Parses one sitemap body.
///
/// Gzip is recognised by its magic bytes, because servers mislabel it in both directions (file
/// name and content type). No more than `max_decompressed` bytes are ever inflated, so a small
/// gzip bomb costs at most that much memory. A body that does not start with `<` is read as the
/// protocol's plain-text format, one URL per line.
pub fn parse(body: &[u8], max_decompressed: usize) -> Result<Document, ParseError> {
    let mut body = std::borrow::Cow::Borrowed(body);
    for _ in 0..MAX_GZIP_LAYERS {
        if !body.starts_with(&GZIP_MAGIC) {
            break;
        }
        body = gunzip(&body, max_decompressed)?.into();
    }
    if body.len() > max_decompressed {
        return Err(ParseError::TooLarge {
            limit: max_decompressed,
        });
    }

    let body = body.strip_prefix(UTF8_BOM).unwrap_or(&body);
    // Generators written in PHP and friends often emit a newline before the XML declaration.
    // Strictly that makes the document ill-formed, but crawlers accept it and so do we.
    let body = body.trim_ascii_start();
    match body.first() {
        None => Err(ParseError::Empty),
        Some(b'<') => parse_xml(body),
        Some(_) => parse_text(body),
    }
}

fn gunzip(compressed: &[u8], limit: usize) -> Result<Vec<u8>, ParseError> {
    let mut inflated = Vec::new();
    // Reading one byte past the limit is how we tell "exactly at the limit" from "over it"
    // without inflating the rest of a bomb.
    let cap = u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1);
    MultiGzDecoder::new(compressed)
        .take(cap)
        .read_to_end(&mut inflated)
        .map_err(ParseError::Gzip)?;
    if inflated.len() > limit {
        return Err(ParseError::TooLarge { limit });
    }
    Ok(inflated)
}

fn parse_text(body: &[u8]) -> Result<Document, ParseError> {
    let text = std::str::from_utf8(body).map_err(ParseError::NotUtf8)?;
    let lines: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .map(str::to_owned)
        .collect();
    // An error page or a JSON body also "is not XML"; only a body that opens with a URL is taken
    // for a URL list, so such a page is reported as what it is instead of as one bad entry.
    match lines.first() {
        Some(first) if starts_with_http_scheme(first) => Ok(Document::UrlSet(lines)),
        Some(first) => Err(ParseError::NotUrlList {
            start: first.chars().take(EXCERPT_CHARS).collect(),
        }),
        None => Err(ParseError::Empty),
    }
}

fn starts_with_http_scheme(line: &str) -> bool {
    ["http://", "https://"].iter().any(|scheme| {
        line.get(..scheme.len())
            .is_some_and(|start| start.eq_ignore_ascii_case(scheme))
    })
}

fn parse_xml(body: &[u8]) -> Result<Document, ParseError> {
    let mut reader = NsReader::from_reader(body);
    // Unescaped `&` in query strings is the most common defect in hand-rolled sitemaps. Keeping
    // it as text yields the URL the site meant instead of rejecting the whole file.
    reader.config_mut().allow_dangling_amp = true;

    loop {
        match next_event(&mut reader)? {
            Event::Start(root) => {
                let kind = root_kind(&reader, &root)?;
                return Ok(kind.document(read_locs(&mut reader, kind)?));
            }
            // `<urlset/>`: a sitemap with no entries, which is valid.
            Event::Empty(root) => return Ok(root_kind(&reader, &root)?.document(Vec::new())),
            Event::Eof => {
                return Err(ParseError::UnexpectedRoot {
                    found: "no element".to_owned(),
                });
            }
            // The declaration, a DOCTYPE, comments, processing instructions, whitespace.
            _ => {}
        }
    }
}

fn next_event<'i>(reader: &mut NsReader<&'i [u8]>) -> Result<Event<'i>, ParseError> {
    reader.read_event().map_err(|source| ParseError::Xml {
        position: reader.error_position(),
        source,
    })
}

fn root_kind(reader: &NsReader<&[u8]>, root: &BytesStart<'_>) -> Result<Kind, ParseError> {
    match sitemap_name(reader, root) {
        Some("urlset") => Ok(Kind::UrlSet),
        Some("sitemapindex") => Ok(Kind::Index),
        _ => Err(ParseError::UnexpectedRoot {
            found: format!("<{}>", root.name().as_ref()),
        }),
    }
}

/// Element depths in a sitemap: the root, its entries (`<url>` / `<sitemap>`), and their `<loc>`.
const ROOT_DEPTH: usize = 1;
const ENTRY_DEPTH: usize = 2;

/// Reads the `<loc>` of each entry, once the root element of `kind` has been opened.
fn read_locs(reader: &mut NsReader<&[u8]>, kind: Kind) -> Result<Vec<String>, ParseError> {
    let mut locs = Vec::new();
    // Number of currently open elements.
    let mut depth = ROOT_DEPTH;
    // Whether the open element at ENTRY_DEPTH is an entry of this kind of sitemap.
    let mut in_entry = false;
    // The text of the `<loc>` being read, if one is open.
    let mut loc: Option<String> = None;

    loop {
        match next_event(reader)? {
            Event::Start(start) => {
                let name = sitemap_name(reader, &start);
                if depth == ROOT_DEPTH {
                    in_entry = name == Some(kind.entry_name());
                } else if depth == ENTRY_DEPTH && in_entry && name == Some("loc") {
                    loc = Some(String::new());
                }
                depth += 1;
            }
            Event::Empty(start) => {
                // `<loc/>` is an entry with an empty location: keep it so the caller can report it.
                if depth == ENTRY_DEPTH && in_entry && sitemap_name(reader, &start) == Some("loc") {
                    locs.push(String::new());
                }
            }
            Event::End(_) => {
                depth -= 1;
                if depth == ENTRY_DEPTH
                    && let Some(text) = loc.take()
                {
                    locs.push(text.trim().to_owned());
                } else if depth == ROOT_DEPTH {
                    in_entry = false;
                } else if depth == 0 {
                    // Anything after the root element (a stray debug line, a second document)
                    // cannot add entries, and rejecting the file for it would lose the ones read.
                    return Ok(locs);
                }
            }
            Event::Text(text) => {
                if let Some(loc) = &mut loc {
                    loc.push_str(&text);
                }
            }
            Event::CData(cdata) => {
                if let Some(loc) = &mut loc {
                    loc.push_str(&cdata);
                }
            }
            Event::GeneralRef(reference) => {
                if let Some(loc) = &mut loc {
                    push_reference(loc, &reference);
                }
            }
            // A body cut off before its end tags (an origin that died mid-write) keeps the
            // entries completed before the cut; an unfinished `<loc>` is dropped rather than
            // returned half-written.
            Event::Eof => return Ok(locs),
            Event::Decl(_) | Event::PI(_) | Event::Comment(_) | Event::DocType(_) => {}
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    UrlSet,
    Index,
}

impl Kind {
    fn entry_name(self) -> &'static str {
        match self {
            Kind::UrlSet => "url",
            Kind::Index => "sitemap",
        }
    }

    fn document(self, locs: Vec<String>) -> Document {
        match self {
            Kind::UrlSet => Document::UrlSet(locs),
            Kind::Index => Document::Index(locs),
        }
    }
}

/// The local name of an element of the sitemap vocabulary, or `None` for an extension element.
///
/// Unprefixed elements count whatever their default namespace: sites get the URI wrong
/// (`https://`, `0.90`, Google's old `0.84`) or leave it out, and crawlers read them anyway.
/// Prefixed elements count only when the prefix is bound to a sitemap namespace, which is what
/// keeps `<image:loc>`, `<video:content_loc>` and friends out of the page list.
fn sitemap_name<'a>(reader: &NsReader<&[u8]>, start: &'a BytesStart<'_>) -> Option<&'a str> {
    let (namespace, local) = reader.resolver().resolve_element(start.name());
    if start.name().prefix().is_none() {
        return Some(local.into_inner());
    }
    match namespace {
        ResolveResult::Bound(namespace) if is_sitemap_namespace(namespace.as_ref()) => {
            Some(local.into_inner())
        }
        _ => None,
    }
}

fn is_sitemap_namespace(uri: &str) -> bool {
    [
        "sitemaps.org/schemas/sitemap/",
        "google.com/schemas/sitemap/",
    ]
    .iter()
    .any(|marker| uri.contains(marker))
}

/// Appends the text an entity or character reference stands for.
///
/// A reference quick-xml cannot resolve (`&nbsp;`, or `&b=2;` from an unescaped query string) is
/// kept literally: sitemaps have no DTD that could define it, so the literal text is the best
/// guess at the URL the site meant, and undefined entities are never expanded (no entity bombs).
fn push_reference(loc: &mut String, reference: &BytesRef<'_>) {
    if let Ok(Some(character)) = reference.resolve_char_ref() {
        loc.push(character);
    } else if let Some(text) = resolve_predefined_entity(reference) {
        loc.push_str(text);
    } else {
        loc.push('&');
        loc.push_str(reference);
        loc.push(';');
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;

    use flate2::Compression;
    use flate2::write::GzEncoder;

    use super::*;

    const LIMIT: usize = 1024 * 1024;

    fn gzip(body: &[u8]) -> Vec<u8> {
        let mut encoder = GzEncoder::new(Vec::new(), Compression::default());
        encoder.write_all(body).unwrap();
        encoder.finish().unwrap()
    }

    fn urls(locs: &[&str]) -> Result<Document, String> {
        Ok(Document::UrlSet(
            locs.iter().map(|loc| loc.to_string()).collect(),
        ))
    }

    fn index(locs: &[&str]) -> Result<Document, String> {
        Ok(Document::Index(
            locs.iter().map(|loc| loc.to_string()).collect(),
        ))
    }

    fn error(message: &str) -> Result<Document, String> {
        Err(message.to_owned())
    }

    fn check(name: &str, body: &[u8], limit: usize, expected: Result<Document, String>) {
        let actual = parse(body, limit).map_err(|error| error.to_string());
        assert_eq!(actual, expected, "case: {name}");
    }

    const NAMESPACED: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9"
        xmlns:image="http://www.google.com/schemas/sitemap-image/1.1"
        xmlns:news="http://www.google.com/schemas/sitemap-news/0.9"
        xmlns:video="http://www.google.com/schemas/sitemap-video/1.1"
        xmlns:xhtml="http://www.w3.org/1999/xhtml">
  <url>
    <loc>https://shop.example.com/</loc>
    <lastmod>2024-05-01</lastmod>
    <xhtml:link rel="alternate" hreflang="de" href="https://shop.example.com/de/"/>
    <image:image><image:loc>https://cdn.example.net/a.jpg</image:loc></image:image>
  </url>
  <url>
    <loc>https://shop.example.com/news/1</loc>
    <news:news><news:publication><news:name>Shop</news:name></news:publication></news:news>
    <video:video><video:content_loc>https://cdn.example.net/v.mp4</video:content_loc>
      <video:player_loc>https://cdn.example.net/player</video:player_loc></video:video>
  </url>
</urlset>"#;

    #[test]
    fn xml_sitemaps() {
        let cases: &[(&str, &str, Result<Document, String>)] = &[
            (
                "namespaced with image, news, video and xhtml extensions",
                NAMESPACED,
                urls(&[
                    "https://shop.example.com/",
                    "https://shop.example.com/news/1",
                ]),
            ),
            (
                "no namespace",
                "<urlset><url><loc>https://a.example/1</loc></url><url><loc>https://a.example/2</loc></url></urlset>",
                urls(&["https://a.example/1", "https://a.example/2"]),
            ),
            (
                "wrong default namespace is still a sitemap",
                r#"<urlset xmlns="https://www.sitemaps.org/schemas/sitemap/0.90"><url><loc>https://a.example/</loc></url></urlset>"#,
                urls(&["https://a.example/"]),
            ),
            (
                "prefixed sitemap namespace",
                r#"<sm:urlset xmlns:sm="http://www.sitemaps.org/schemas/sitemap/0.9"><sm:url><sm:loc>https://a.example/</sm:loc></sm:url></sm:urlset>"#,
                urls(&["https://a.example/"]),
            ),
            (
                "prefixed element of another namespace is not an entry",
                r#"<urlset xmlns:x="urn:other"><url><x:loc>https://a.example/x</x:loc><loc>https://a.example/</loc></url></urlset>"#,
                urls(&["https://a.example/"]),
            ),
            (
                "sitemap index",
                r#"<?xml version="1.0" encoding="UTF-8"?>
<sitemapindex xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">
  <sitemap><loc>https://a.example/s1.xml</loc><lastmod>2024-01-01</lastmod></sitemap>
  <sitemap><loc>https://a.example/s2.xml.gz</loc></sitemap>
</sitemapindex>"#,
                index(&["https://a.example/s1.xml", "https://a.example/s2.xml.gz"]),
            ),
            (
                "loc text is trimmed",
                "<urlset><url><loc>\n    https://a.example/x \t\r\n</loc></url></urlset>",
                urls(&["https://a.example/x"]),
            ),
            (
                "CDATA, alone and mixed with whitespace",
                "<urlset><url><loc><![CDATA[https://a.example/?a=1&b=2]]></loc></url>\
                 <url><loc>\n  <![CDATA[https://a.example/<c>]]>\n</loc></url></urlset>",
                urls(&["https://a.example/?a=1&b=2", "https://a.example/<c>"]),
            ),
            (
                "predefined entities and character references",
                "<urlset><url><loc>https://a.example/?a=1&amp;b=&apos;2&apos;&amp;c=&#38;&#x26;</loc></url></urlset>",
                urls(&["https://a.example/?a=1&b='2'&c=&&"]),
            ),
            (
                "unescaped and undefined ampersands are kept literally",
                "<urlset><url><loc>https://a.example/?a=1&b=2</loc></url>\
                 <url><loc>https://a.example/?x&nbsp;y</loc></url></urlset>",
                urls(&["https://a.example/?a=1&b=2", "https://a.example/?x&nbsp;y"]),
            ),
            (
                "empty urlset, self-closed",
                r#"<?xml version="1.0"?><urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9"/>"#,
                urls(&[]),
            ),
            (
                "empty urlset with end tag",
                "<urlset>\n</urlset>",
                urls(&[]),
            ),
            (
                "empty loc is kept for the caller to report",
                "<urlset><url><loc/></url><url><loc>  </loc></url></urlset>",
                urls(&["", ""]),
            ),
            (
                "loc outside an entry and entries of the other kind are ignored",
                "<urlset><loc>https://a.example/stray</loc>\
                 <sitemap><loc>https://a.example/s.xml</loc></sitemap>\
                 <url><loc>https://a.example/</loc></url></urlset>",
                urls(&["https://a.example/"]),
            ),
            (
                "whitespace before the declaration and output after the root",
                "\n\n  <?xml version=\"1.0\" encoding=\"UTF-8\"?><urlset><url><loc>https://a.example/</loc></url></urlset>\n<!-- generated in 3ms --><b>debug</i>",
                urls(&["https://a.example/"]),
            ),
            (
                "body cut off inside an entry keeps the completed entries",
                "<urlset><url><loc>https://a.example/1</loc></url><url><loc>https://a.example/2</loc></url><url><loc>https://a.exa",
                urls(&["https://a.example/1", "https://a.example/2"]),
            ),
            (
                "comments and processing instructions are skipped",
                "<?xml-stylesheet type=\"text/xsl\" href=\"/sitemap.xsl\"?><!-- hi --><urlset><url><!-- x --><loc>https://a.example/</loc></url></urlset>",
                urls(&["https://a.example/"]),
            ),
            (
                "HTML page",
                "<!DOCTYPE html>\n<html lang=\"en\"><head><title>Shop</title></head><body></body></html>",
                error("expected <urlset> or <sitemapindex>, found <html>"),
            ),
            (
                "other XML root keeps its prefix in the message",
                r#"<rss:rss xmlns:rss="urn:rss"/>"#,
                error("expected <urlset> or <sitemapindex>, found <rss:rss>"),
            ),
            (
                "urlset in an extension namespace is not a sitemap",
                r#"<x:urlset xmlns:x="urn:other"/>"#,
                error("expected <urlset> or <sitemapindex>, found <x:urlset>"),
            ),
            (
                "declaration without element",
                "<?xml version=\"1.0\"?>\n<!-- nothing -->",
                error("expected <urlset> or <sitemapindex>, found no element"),
            ),
            ("empty body", "", error("the body is empty")),
            (
                "whitespace-only body",
                " \r\n\t",
                error("the body is empty"),
            ),
        ];
        for (name, body, expected) in cases {
            check(name, body.as_bytes(), LIMIT, expected.clone());
        }
    }

    #[test]
    fn malformed_xml_is_an_error_with_position() {
        // (case, body, the error's message, the start of its source's: the XML reader's error)
        let cases: [(&str, &[u8], &str, &str); 3] = [
            (
                "mismatched end tag",
                b"<urlset><url><loc>https://a.example/</url></urlset>",
                "malformed XML at byte 36",
                "ill-formed document: expected `</loc>`, but `</url>` was found",
            ),
            (
                "unclosed tag at end of input",
                b"<urlset><url><loc>https://a.example/</loc",
                "malformed XML at byte 36",
                "",
            ),
            (
                "invalid UTF-8",
                b"<urlset><url><loc>https://a.example/\xff</loc></url></urlset>",
                "malformed XML at byte ",
                "",
            ),
        ];
        for (name, body, message_start, source_start) in cases {
            let error = parse(body, LIMIT).unwrap_err();
            assert!(
                matches!(error, ParseError::Xml { .. }),
                "case: {name}: {error:?}"
            );
            assert!(
                error.to_string().starts_with(message_start),
                "case: {name}: {error}"
            );
            let source = std::error::Error::source(&error)
                .map(ToString::to_string)
                .unwrap_or_default();
            assert!(
                !source.is_empty() && source.starts_with(source_start),
                "case: {name}: {source}"
            );
        }
    }

    #[test]
    fn text_sitemaps() {
        let cases: &[(&str, &str, Result<Document, String>)] = &[
            (
                "one URL per line, CRLF, blank lines, surrounding spaces",
                "https://a.example/1\r\n\r\n  https://a.example/2  \nHTTP://a.example/3\n",
                urls(&[
                    "https://a.example/1",
                    "https://a.example/2",
                    "HTTP://a.example/3",
                ]),
            ),
            (
                "later lines are returned as written for the caller to validate",
                "https://a.example/1\n/relative\n",
                urls(&["https://a.example/1", "/relative"]),
            ),
            (
                "error page in plain text",
                "404 Not Found: the page you requested does not exist on this server",
                error(
                    "expected an XML sitemap or one URL per line, found text starting with \
                     \"404 Not Found: the page you requested do\"",
                ),
            ),
            (
                "JSON",
                r#"{"error":"forbidden"}"#,
                error(
                    "expected an XML sitemap or one URL per line, found text starting with \
                     \"{\\\"error\\\":\\\"forbidden\\\"}\"",
                ),
            ),
        ];
        for (name, body, expected) in cases {
            check(name, body.as_bytes(), LIMIT, expected.clone());
        }

        let error = parse(b"https://a.example/\xff\n", LIMIT).unwrap_err();
        assert!(matches!(error, ParseError::NotUtf8(_)), "{error:?}");
    }

    #[test]
    fn byte_order_mark() {
        let xml = [
            UTF8_BOM,
            br#"<?xml version="1.0" encoding="UTF-8"?><urlset><url><loc>https://a.example/</loc></url></urlset>"#,
        ]
        .concat();
        check("BOM before XML", &xml, LIMIT, urls(&["https://a.example/"]));
        let text = [UTF8_BOM, b"https://a.example/\n"].concat();
        check(
            "BOM before text",
            &text,
            LIMIT,
            urls(&["https://a.example/"]),
        );
    }

    #[test]
    fn gzip_is_detected_by_magic_bytes() {
        let xml = NAMESPACED.as_bytes();
        let expected = || {
            urls(&[
                "https://shop.example.com/",
                "https://shop.example.com/news/1",
            ])
        };
        check("gzip XML", &gzip(xml), LIMIT, expected());
        check("gzip twice", &gzip(&gzip(xml)), LIMIT, expected());
        check(
            "gzip text",
            &gzip(b"https://a.example/1\nhttps://a.example/2\n"),
            LIMIT,
            urls(&["https://a.example/1", "https://a.example/2"]),
        );
        check(
            "gzip of an HTML page",
            &gzip(b"<html><body>gone</body></html>"),
            LIMIT,
            error("expected <urlset> or <sitemapindex>, found <html>"),
        );
        check(
            "decompressed size exactly at the limit",
            &gzip(xml),
            xml.len(),
            expected(),
        );

        let mut corrupt = gzip(xml);
        corrupt.truncate(corrupt.len() / 2);
        let error = parse(&corrupt, LIMIT).unwrap_err();
        assert!(matches!(error, ParseError::Gzip(_)), "{error:?}");
    }

    #[test]
    fn size_cap_applies_after_decompression() {
        // 4 MiB of zeros compress to about 4 KiB: a bomb when the cap is 64 KiB.
        let bomb = gzip(&vec![0; 4 * 1024 * 1024]);
        assert!(bomb.len() < 64 * 1024, "the bomb must be small compressed");
        check(
            "gzip bomb",
            &bomb,
            64 * 1024,
            error("the body is larger than 65536 bytes once decompressed"),
        );
        check(
            "gzip bomb inside gzip",
            &gzip(&bomb),
            64 * 1024,
            error("the body is larger than 65536 bytes once decompressed"),
        );
        check(
            "decompressed one byte over the limit",
            &gzip(NAMESPACED.as_bytes()),
            NAMESPACED.len() - 1,
            error(&format!(
                "the body is larger than {} bytes once decompressed",
                NAMESPACED.len() - 1
            )),
        );
        check(
            "uncompressed body over the limit",
            NAMESPACED.as_bytes(),
            100,
            error("the body is larger than 100 bytes once decompressed"),
        );
    }
}
