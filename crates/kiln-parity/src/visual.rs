//! The screenshots' comparison: decoding both, padding them to one size, counting the pixels that
//! differ and drawing the diff picture.

use crate::ParityError;
use crate::pixelmatch::{self, Picture, WHITE, pack};
use image::codecs::png::{CompressionType, FilterType, PngEncoder};
use image::{DynamicImage, ExtendedColorType, ImageEncoder, ImageFormat};
use kiln_core::parity::{PageCapture, ParityImage, VisualDiff};

/// The largest area, in pixels, two screenshots may span together (2²⁵, some 33.5 million: a
/// 1920-pixel-wide page over 17,000 pixels long). A comparison holds up to about 16 bytes per pixel
/// of it, so this bounds one at some 540 MB, however odd the two screenshots' shapes.
pub const MAX_AREA: u64 = 1 << 25;

/// Compares the two screenshots over the larger of their widths and of their heights, a pixel
/// outside one picture counting as white, and draws the diff picture (a PNG of that area).
pub fn visual_diff(
    live: &PageCapture,
    snapshot: &PageCapture,
) -> Result<(VisualDiff, Vec<u8>), ParityError> {
    let live_image = decode(&live.png, ParityImage::Live)?;
    let snapshot_image = decode(&snapshot.png, ParityImage::Snapshot)?;
    let width = live_image.width().max(snapshot_image.width());
    let height = live_image.height().max(snapshot_image.height());
    let area = u64::from(width) * u64::from(height);
    if area > MAX_AREA {
        return Err(ParityError::TooLarge { width, height });
    }

    // Both fit in `MAX_AREA`, so in `usize` too.
    let (columns, rows) = (width as usize, height as usize);
    let live_picture = padded(live_image, columns, rows);
    let snapshot_picture = padded(snapshot_image, columns, rows);
    let outcome = pixelmatch::diff(
        &live_picture,
        &snapshot_picture,
        pixelmatch::Options::default(),
    );

    let mut diff_png = Vec::new();
    // Fast deflate. On the 1366 × 6000 page of `examples/compare_speed.rs` the default level
    // doubled the whole comparison (0.2 s to 0.4 s) for a diff picture a tenth the size (2.7 MB to
    // 0.3 MB). The screenshots stored beside it take megabytes too: not worth the time.
    PngEncoder::new_with_quality(&mut diff_png, CompressionType::Fast, FilterType::Adaptive)
        .write_image(&outcome.rgb, width, height, ExtendedColorType::Rgb8)
        .map_err(ParityError::Encode)?;

    let visual = VisualDiff {
        width,
        height,
        differing_pixels: outcome.differing,
        // Areas up to `MAX_AREA` are exact in an `f64`.
        score: if area == 0 {
            0.0
        } else {
            outcome.differing as f64 / area as f64
        },
        live_height: live.facts.height,
        snapshot_height: snapshot.facts.height,
    };
    Ok((visual, diff_png))
}

fn decode(png: &[u8], side: ParityImage) -> Result<DynamicImage, ParityError> {
    image::load_from_memory_with_format(png, ImageFormat::Png)
        .map_err(|source| ParityError::NotPng { side, source })
}

/// The image as a `width` × `height` picture: its pixels at the top left, flattened onto white,
/// and white beyond them. Flattening onto white is what a browser shows behind a transparent page,
/// and it lets the comparison treat every pixel as opaque. The image is taken by value so that it
/// is freed as soon as it is copied.
fn padded(image: DynamicImage, width: usize, height: usize) -> Picture {
    let mut pixels = vec![WHITE; width * height];
    let image_width = image.width() as usize;
    let rgb = |p: &[u8]| pack([p[0], p[1], p[2]]);
    let rgba = |p: &[u8]| pack(on_white([p[0], p[1], p[2], p[3]]));
    // Screenshots are RGB or RGBA; anything else is converted first.
    match image {
        DynamicImage::ImageRgb8(image) => {
            copy_rows(&mut pixels, width, &image, image_width, 3, rgb)
        }
        DynamicImage::ImageRgba8(image) => {
            copy_rows(&mut pixels, width, &image, image_width, 4, rgba)
        }
        other => copy_rows(
            &mut pixels,
            width,
            &other.into_rgba8(),
            image_width,
            4,
            rgba,
        ),
    }
    Picture {
        width,
        height,
        pixels,
    }
}

/// Copies the rows of `source`, an image `source_width` pixels wide, to the top left of `pixels`,
/// `width` a row, packing each pixel's `bytes_per_pixel` bytes with `pack`.
fn copy_rows(
    pixels: &mut [u32],
    width: usize,
    source: &[u8],
    source_width: usize,
    bytes_per_pixel: usize,
    pack: impl Fn(&[u8]) -> u32,
) {
    // A PNG is at least one pixel wide; this only keeps `chunks_exact` from a zero size.
    if width == 0 || source_width == 0 {
        return;
    }
    let source_rows = source.chunks_exact(source_width * bytes_per_pixel);
    for (row, source) in pixels.chunks_exact_mut(width).zip(source_rows) {
        for (pixel, bytes) in row.iter_mut().zip(source.chunks_exact(bytes_per_pixel)) {
            *pixel = pack(bytes);
        }
    }
}

/// The colour a pixel shows over white.
fn on_white([r, g, b, a]: [u8; 4]) -> [u8; 3] {
    if a == u8::MAX {
        return [r, g, b];
    }
    let blend = |c: u8| {
        let (c, a) = (u32::from(c), u32::from(a));
        // A weighted mean of `c` and 255, so at most 255: the cast loses nothing.
        ((c * a + 255 * (255 - a) + 127) / 255) as u8
    };
    [blend(r), blend(g), blend(b)]
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use image::{ImageBuffer, Rgb, Rgba};
    use kiln_core::parity::PageFacts;

    /// A PNG of `width` × `height` pixels of the given colours.
    pub(crate) fn png(width: u32, height: u32, colour: impl Fn(u32, u32) -> [u8; 3]) -> Vec<u8> {
        let image = ImageBuffer::from_fn(width, height, |x, y| Rgb(colour(x, y)));
        let mut png = Vec::new();
        PngEncoder::new(&mut png)
            .write_image(image.as_raw(), width, height, ExtendedColorType::Rgb8)
            .unwrap();
        png
    }

    fn capture(png: Vec<u8>, height: u32) -> PageCapture {
        PageCapture {
            png,
            facts: PageFacts {
                height,
                ..PageFacts::default()
            },
        }
    }

    const WHITE_RGB: [u8; 3] = [255; 3];
    const BLACK_RGB: [u8; 3] = [0; 3];

    fn white(width: u32, height: u32) -> Vec<u8> {
        png(width, height, |_, _| WHITE_RGB)
    }

    /// White, with a black rectangle over `columns` × `rows`.
    fn with_rectangle(
        width: u32,
        height: u32,
        columns: std::ops::Range<u32>,
        rows: std::ops::Range<u32>,
    ) -> Vec<u8> {
        png(width, height, |x, y| {
            if columns.contains(&x) && rows.contains(&y) {
                BLACK_RGB
            } else {
                WHITE_RGB
            }
        })
    }

    fn pixel(png: &[u8], x: u32, y: u32) -> [u8; 3] {
        image::load_from_memory(png)
            .unwrap()
            .to_rgb8()
            .get_pixel(x, y)
            .0
    }

    #[test]
    fn identical_pictures_score_zero() {
        let page = png(50, 40, |x, y| {
            if (x / 5 + y / 3) % 2 == 0 {
                [20, 40, 200]
            } else {
                WHITE_RGB
            }
        });

        let (visual, diff_png) =
            visual_diff(&capture(page.clone(), 40), &capture(page, 40)).unwrap();

        assert_eq!(
            visual,
            VisualDiff {
                width: 50,
                height: 40,
                differing_pixels: 0,
                score: 0.0,
                live_height: 40,
                snapshot_height: 40,
            }
        );
        // The blue fades to a light grey, the white stays white.
        let blue = brightness_faded([20, 40, 200]);
        assert_eq!(pixel(&diff_png, 0, 0), [blue; 3]);
        assert_eq!(pixel(&diff_png, 5, 0), WHITE_RGB);
    }

    fn brightness_faded([r, g, b]: [u8; 3]) -> u8 {
        let y =
            f64::from(r) * 0.298_895_31 + f64::from(g) * 0.586_622_47 + f64::from(b) * 0.114_482_23;
        (255.0 + (y - 255.0) * 0.1).round() as u8
    }

    #[test]
    fn a_rectangle_counts_exactly_its_pixels() {
        let live = capture(white(100, 80), 80);
        let snapshot = capture(with_rectangle(100, 80, 30..42, 10..17), 80);

        let (visual, diff_png) = visual_diff(&live, &snapshot).unwrap();

        assert_eq!(visual.differing_pixels, 12 * 7);
        assert_eq!(visual.score, 84.0 / 8000.0);
        assert_eq!(pixel(&diff_png, 30, 10), [255, 0, 0]);
        assert_eq!(pixel(&diff_png, 41, 16), [255, 0, 0]);
        assert_eq!(pixel(&diff_png, 29, 10), WHITE_RGB);
    }

    #[test]
    fn the_smaller_picture_is_padded_with_white() {
        // The live page is wider and taller; its extra area is white but for an 8 × 3 block.
        let live = capture(with_rectangle(30, 50, 20..28, 40..43), 50);
        let snapshot = capture(white(20, 35), 35);

        let (visual, diff_png) = visual_diff(&live, &snapshot).unwrap();

        assert_eq!((visual.width, visual.height), (30, 50));
        assert_eq!(visual.differing_pixels, 24);
        assert_eq!(visual.score, 24.0 / 1500.0);
        assert_eq!((visual.live_height, visual.snapshot_height), (50, 35));
        let diff = image::load_from_memory(&diff_png).unwrap();
        assert_eq!((diff.width(), diff.height()), (30, 50));

        // And the other way round: the taller snapshot's extra block counts too.
        let (visual, _) = visual_diff(
            &capture(white(20, 10), 10),
            &capture(with_rectangle(20, 30, 0..20, 25..30), 30),
        )
        .unwrap();
        assert_eq!(visual.differing_pixels, 100);
    }

    #[test]
    fn transparent_pixels_show_as_white() {
        let image = ImageBuffer::from_fn(6, 4, |x, _| {
            if x < 3 {
                Rgba([0, 0, 0, 0])
            } else {
                Rgba([255, 255, 255, 255])
            }
        });
        let mut transparent = Vec::new();
        PngEncoder::new(&mut transparent)
            .write_image(image.as_raw(), 6, 4, ExtendedColorType::Rgba8)
            .unwrap();

        let (visual, _) = visual_diff(&capture(transparent, 4), &capture(white(6, 4), 4)).unwrap();

        assert_eq!(visual.differing_pixels, 0);
        assert_eq!(on_white([0, 0, 0, 128]), [127; 3]);
        assert_eq!(on_white([10, 20, 30, 255]), [10, 20, 30]);
    }

    #[test]
    fn a_screenshot_that_is_not_a_png_is_an_error() {
        let check = |live: &[u8], snapshot: &[u8], expected: ParityImage| {
            let error = visual_diff(&capture(live.to_vec(), 1), &capture(snapshot.to_vec(), 1))
                .unwrap_err();
            assert!(
                matches!(error, ParityError::NotPng { side, .. } if side == expected),
                "{error:?}"
            );
        };
        let good = white(2, 2);
        check(b"", &good, ParityImage::Live);
        check(b"<html>not a picture</html>", &good, ParityImage::Live);
        // A JPEG's first bytes.
        check(
            &good,
            &[0xFF, 0xD8, 0xFF, 0xE0, 0, 0x10],
            ParityImage::Snapshot,
        );
        // A PNG cut short.
        check(&good, &good[..good.len() / 2], ParityImage::Snapshot);
    }

    #[test]
    fn an_area_too_large_is_refused_before_it_is_allocated() {
        // 5,793 × 5,793 is just over `MAX_AREA`; the pictures themselves are tiny.
        const _: () = assert!(5793 * 5793 > MAX_AREA && 5792 * 5792 <= MAX_AREA);
        let wide = white(5793, 1);
        let tall = white(1, 5793);

        let error = visual_diff(&capture(wide, 1), &capture(tall, 5793)).unwrap_err();

        assert!(
            matches!(
                error,
                ParityError::TooLarge {
                    width: 5793,
                    height: 5793
                }
            ),
            "{error:?}"
        );
    }
}
