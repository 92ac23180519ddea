//! Compares the two captures of a parity check — the live page as a person sees it and the snapshot
//! bots are served — into a [`ParityReport`] and a picture of where they differ.
//!
//! Three comparisons make the report:
//! - the screenshots, pixel by pixel, with a tolerance for colour noise and antialiasing
//!   ([`visual_diff`], after mapbox's `pixelmatch`); it also draws the diff picture;
//! - the text a reader sees, line by line, as multisets ([`text_diff`]);
//! - what a crawler reads: title, description, canonical link, headings, links and JSON-LD
//!   ([`field_diffs`]).
//!
//! Architecture Invariant: this crate is pure functions from bytes and strings to a report. It does
//! no IO, reads no clock and spawns nothing; the worker loads the pages and stores what comes out.

mod fields;
mod multiset;
mod pixelmatch;
mod text;
mod visual;

pub use fields::field_diffs;
pub use text::text_diff;
pub use visual::{MAX_AREA, visual_diff};

use kiln_core::parity::{PageCapture, ParityImage, ParityReport};

/// What comparing a live page with its snapshot gives: the report and the diff picture.
#[derive(Clone, Debug, PartialEq)]
pub struct Comparison {
    pub report: ParityReport,
    /// A PNG of the compared area: the live page faded to light grey, pixels that differ in red and
    /// differences put down to antialiasing in yellow.
    pub diff_png: Vec<u8>,
}

/// Why two captures could not be compared.
#[derive(Debug, thiserror::Error)]
pub enum ParityError {
    /// A screenshot is not a PNG this crate can decode.
    #[error("the {} screenshot is not a readable PNG", side.as_str())]
    NotPng {
        /// [`ParityImage::Live`] or [`ParityImage::Snapshot`].
        side: ParityImage,
        #[source]
        source: image::ImageError,
    },
    /// The two screenshots together span more than [`MAX_AREA`] pixels.
    #[error(
        "the screenshots span {width}×{height} pixels, more than the {MAX_AREA} a comparison allows"
    )]
    TooLarge { width: u32, height: u32 },
    /// The diff picture could not be encoded.
    #[error("failed to encode the diff picture")]
    Encode(#[source] image::ImageError),
}

/// Compares a live page with its snapshot: the screenshots, the visible text and the fields a
/// crawler reads.
pub fn compare(live: &PageCapture, snapshot: &PageCapture) -> Result<Comparison, ParityError> {
    let (visual, diff_png) = visual_diff(live, snapshot)?;
    let report = ParityReport {
        visual,
        text: text_diff(&live.facts, &snapshot.facts),
        fields: field_diffs(&live.facts, &snapshot.facts),
    };
    Ok(Comparison { report, diff_png })
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiln_core::parity::PageFacts;

    #[test]
    fn compare_puts_the_three_parts_together() {
        let live = PageCapture {
            png: visual::tests::png(4, 3, |_, _| [255, 255, 255]),
            facts: PageFacts {
                text: "Welcome\nPrices".into(),
                canonical: Some("https://example.com/".into()),
                height: 3,
                ..PageFacts::default()
            },
        };
        let snapshot = PageCapture {
            png: visual::tests::png(
                4,
                3,
                |x, _| if x == 0 { [0, 0, 0] } else { [255, 255, 255] },
            ),
            facts: PageFacts {
                text: "Welcome".into(),
                height: 3,
                ..PageFacts::default()
            },
        };

        let comparison = compare(&live, &snapshot).unwrap();

        assert_eq!(comparison.report.visual.differing_pixels, 3);
        assert_eq!(comparison.report.text.missing, ["Prices"]);
        let fields: Vec<&str> = comparison
            .report
            .fields
            .iter()
            .map(|f| f.field.as_str())
            .collect();
        assert_eq!(fields, ["canonical"]);
        let diff = image::load_from_memory(&comparison.diff_png).unwrap();
        assert_eq!((diff.width(), diff.height()), (4, 3));
    }

    #[test]
    fn an_error_names_the_side_that_failed() {
        let good = PageCapture {
            png: visual::tests::png(1, 1, |_, _| [0, 0, 0]),
            ..PageCapture::default()
        };
        let bad = PageCapture {
            png: b"GIF89a".to_vec(),
            ..PageCapture::default()
        };

        let error = compare(&good, &bad).unwrap_err();

        assert!(matches!(
            error,
            ParityError::NotPng {
                side: ParityImage::Snapshot,
                ..
            }
        ));
        assert_eq!(
            error.to_string(),
            "the snapshot screenshot is not a readable PNG"
        );
    }
}
