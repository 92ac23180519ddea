//! Pixel comparison with a tolerance for antialiasing: a port of mapbox's `pixelmatch`
//! (github.com/mapbox/pixelmatch, ISC licence, © Mapbox), which implements two papers:
//! "Measuring perceived color difference using YIQ NTSC transmission color space in mobile
//! applications" (Y. Kotsarenko, F. Ramos, 2010) for the colour distance, and "Anti-aliased pixel
//! and intensity slope detector" (V. Vyšniauskas, 2009) for telling antialiasing from change.
//!
//! Why a port and not a crate: the crate named `pixelmatch` has had one release (2021) and is tied
//! to `image` 0.23; `blazediff`, the maintained one, is large for what we use (a cdylib crate type,
//! an always-built N-API build script, a 3,000-line SIMD diff module) and has moved through six
//! major versions; `dify` and `agent-image-diff` are command-line tools. The algorithm is a hundred
//! lines, and owning it lets it work on the padded, alpha-flattened pixels this crate builds anyway.
//!
//! Differences from the original, all because screenshots are opaque: pixels are flattened onto
//! white before they get here (see [`Picture`]), so the original's blending of translucent pixels
//! with a checkerboard is left out; and the options are only the two a parity check varies.

/// The largest squared YIQ distance two colours can have (pixelmatch's constant).
const MAX_YIQ_DELTA: f64 = 35215.0;

/// How much of the live picture shows through in the diff picture (pixelmatch's `alpha`).
const FADE: f64 = 0.1;

const RED: [u8; 3] = [255, 0, 0];
const YELLOW: [u8; 3] = [255, 255, 0];

/// Opaque pixels packed as `0x00BBGGRR`, row by row.
pub(crate) struct Picture {
    pub width: usize,
    pub height: usize,
    pub pixels: Vec<u32>,
}

pub(crate) const WHITE: u32 = 0x00FF_FFFF;

pub(crate) fn pack([r, g, b]: [u8; 3]) -> u32 {
    u32::from(r) | u32::from(g) << 8 | u32::from(b) << 16
}

fn channels(pixel: u32) -> [f64; 3] {
    let [r, g, b, _] = pixel.to_le_bytes();
    [f64::from(r), f64::from(g), f64::from(b)]
}

#[derive(Clone, Copy, Debug)]
pub(crate) struct Options {
    /// Colour distance tolerated, from 0 (none) to 1 (any), on pixelmatch's scale.
    pub threshold: f64,
    /// Whether a difference at an antialiased pixel of either picture is left uncounted.
    pub detect_antialiasing: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            threshold: 0.1,
            detect_antialiasing: true,
        }
    }
}

pub(crate) struct Outcome {
    /// Pixels that differ beyond the threshold and are not antialiasing.
    pub differing: u64,
    /// The diff picture, RGB8, the size of the pictures compared.
    pub rgb: Vec<u8>,
}

/// Compares two pictures of the same size.
pub(crate) fn diff(live: &Picture, snapshot: &Picture, options: Options) -> Outcome {
    assert_eq!(
        (live.width, live.height),
        (snapshot.width, snapshot.height),
        "pictures of one size"
    );
    assert_eq!(
        live.pixels.len(),
        live.width * live.height,
        "a whole live picture"
    );
    assert_eq!(
        snapshot.pixels.len(),
        snapshot.width * snapshot.height,
        "a whole snapshot picture"
    );

    let max_delta = MAX_YIQ_DELTA * options.threshold * options.threshold;
    let mut differing = 0;
    let mut rgb = vec![0; live.pixels.len() * 3];
    let pairs = live.pixels.iter().zip(&snapshot.pixels);
    for (i, ((&a, &b), out)) in pairs.zip(rgb.chunks_exact_mut(3)).enumerate() {
        let colour = if a == b || colour_delta(a, b).abs() <= max_delta {
            faded(a)
        } else {
            let (x, y) = (i % live.width, i / live.width);
            if options.detect_antialiasing
                && (antialiased(live, snapshot, x, y) || antialiased(snapshot, live, x, y))
            {
                YELLOW
            } else {
                differing += 1;
                RED
            }
        };
        out.copy_from_slice(&colour);
    }
    Outcome { differing, rgb }
}

/// The pixel's brightness, blended with white so that only a tenth of its darkness shows.
fn faded(pixel: u32) -> [u8; 3] {
    let value = 255.0 + (brightness(channels(pixel)) - 255.0) * FADE;
    // Brightness lies in 0..=255, and so does its blend with white: the cast cannot saturate.
    let value = value.round() as u8;
    [value; 3]
}

fn brightness([r, g, b]: [f64; 3]) -> f64 {
    r * 0.298_895_31 + g * 0.586_622_47 + b * 0.114_482_23
}

/// The squared YIQ distance between two colours, negative when `a` is the brighter.
fn colour_delta(a: u32, b: u32) -> f64 {
    let ([r1, g1, b1], [r2, g2, b2]) = (channels(a), channels(b));
    let (dr, dg, db) = (r1 - r2, g1 - g2, b1 - b2);
    let y = brightness([dr, dg, db]);
    let i = dr * 0.595_977_99 - dg * 0.274_176_10 - db * 0.321_801_89;
    let q = dr * 0.211_470_17 - dg * 0.522_617_11 + db * 0.311_146_94;
    let delta = 0.5053 * y * y + 0.299 * i * i + 0.1957 * q * q;
    if y > 0.0 { -delta } else { delta }
}

/// Whether the pixel at (`x1`, `y1`) of `picture` is likely part of antialiasing: it has both a
/// darker and a brighter neighbour, few neighbours equal to it, and its darkest or brightest
/// neighbour sits in a flat area in both pictures.
fn antialiased(picture: &Picture, other: &Picture, x1: usize, y1: usize) -> bool {
    let (x0, y0) = (x1.saturating_sub(1), y1.saturating_sub(1));
    let (x2, y2) = (
        (x1 + 1).min(picture.width - 1),
        (y1 + 1).min(picture.height - 1),
    );
    let centre = picture.pixels[y1 * picture.width + x1];
    let centre_brightness = brightness(channels(centre));
    let on_border = x1 == x0 || x1 == x2 || y1 == y0 || y1 == y2;
    let mut zeroes = u32::from(on_border);
    let (mut min, mut max) = (0.0, 0.0);
    let (mut darkest, mut brightest) = ((0, 0), (0, 0));

    // The original's order (columns, then rows within them): ties keep the first extreme found.
    for x in x0..=x2 {
        for y in y0..=y2 {
            if (x, y) == (x1, y1) {
                continue;
            }
            let neighbour = picture.pixels[y * picture.width + x];
            let delta = centre_brightness - brightness(channels(neighbour));
            if delta == 0.0 {
                zeroes += 1;
                // Three or more equal neighbours: a flat area, not an edge's blend.
                if zeroes > 2 {
                    return false;
                }
            } else if delta < min {
                min = delta;
                darkest = (x, y);
            } else if delta > max {
                max = delta;
                brightest = (x, y);
            }
        }
    }

    // Without both a darker and a brighter neighbour it is no slope between two areas.
    if min == 0.0 || max == 0.0 {
        return false;
    }
    let flat_in_both = |(x, y)| has_many_siblings(picture, x, y) && has_many_siblings(other, x, y);
    flat_in_both(darkest) || flat_in_both(brightest)
}

/// Whether the pixel at (`x1`, `y1`) has three or more neighbours of exactly its colour.
fn has_many_siblings(picture: &Picture, x1: usize, y1: usize) -> bool {
    let (x0, y0) = (x1.saturating_sub(1), y1.saturating_sub(1));
    let (x2, y2) = (
        (x1 + 1).min(picture.width - 1),
        (y1 + 1).min(picture.height - 1),
    );
    let centre = picture.pixels[y1 * picture.width + x1];
    let on_border = x1 == x0 || x1 == x2 || y1 == y0 || y1 == y2;
    let mut zeroes = u32::from(on_border);
    for x in x0..=x2 {
        for y in y0..=y2 {
            if (x, y) != (x1, y1) && picture.pixels[y * picture.width + x] == centre {
                zeroes += 1;
                if zeroes > 2 {
                    return true;
                }
            }
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn picture(width: usize, height: usize, colour: impl Fn(usize, usize) -> [u8; 3]) -> Picture {
        let pixels = (0..height).flat_map(|y| (0..width).map(move |x| (x, y)));
        Picture {
            width,
            height,
            pixels: pixels.map(|(x, y)| pack(colour(x, y))).collect(),
        }
    }

    /// A dark area under the line `y = slope·x + offset`, its edge antialiased the way a
    /// rasteriser does it: each pixel's grey is the share of it the area covers (16×16 samples).
    fn sloped_edge(width: usize, height: usize, slope: f64, offset: f64) -> Picture {
        picture(width, height, |x, y| {
            let samples = 16;
            let covered = (0..samples * samples)
                .filter(|s| {
                    let sx = x as f64 + (f64::from(s % samples) + 0.5) / f64::from(samples);
                    let sy = y as f64 + (f64::from(s / samples) + 0.5) / f64::from(samples);
                    sy > slope * sx + offset
                })
                .count();
            let grey = 255.0 * (1.0 - covered as f64 / f64::from(samples * samples));
            [grey.round() as u8; 3]
        })
    }

    fn count(live: &Picture, snapshot: &Picture, options: Options) -> u64 {
        diff(live, snapshot, options).differing
    }

    #[test]
    fn colour_delta_is_signed_by_brightness_and_zero_for_equal_colours() {
        let (white, black) = (pack([255; 3]), pack([0; 3]));
        assert_eq!(colour_delta(white, white), 0.0);
        // Black against white differs in brightness alone: 0.5053 · 255².
        assert!((colour_delta(black, white) - 32_857.1).abs() < 0.1);
        assert_eq!(colour_delta(white, black), -colour_delta(black, white));
        assert!(colour_delta(black, white) < MAX_YIQ_DELTA);
    }

    #[test]
    fn differences_under_the_threshold_are_not_counted() {
        let white = picture(8, 8, |_, _| [255; 3]);
        let near_white = picture(8, 8, |_, _| [247, 250, 252]);
        let pink = picture(8, 8, |_, _| [255, 200, 200]);

        assert_eq!(count(&white, &near_white, Options::default()), 0);
        assert_eq!(count(&white, &pink, Options::default()), 64);
        assert_eq!(
            count(
                &white,
                &near_white,
                Options {
                    threshold: 0.0,
                    ..Options::default()
                }
            ),
            64
        );
    }

    #[test]
    fn a_shifted_antialiased_edge_is_not_counted() {
        // The same edge a third of a pixel lower: every difference is in the blended band.
        let live = sloped_edge(120, 60, 0.3, 12.0);
        let snapshot = sloped_edge(120, 60, 0.3, 12.33);

        let without_detection = count(
            &live,
            &snapshot,
            Options {
                detect_antialiasing: false,
                ..Options::default()
            },
        );
        let with_detection = count(&live, &snapshot, Options::default());

        assert!(
            without_detection >= 60,
            "the edge's pixels differ: {without_detection}"
        );
        assert!(
            with_detection * 10 <= without_detection,
            "antialiasing is tolerated: {with_detection} of {without_detection} counted"
        );
    }

    #[test]
    fn a_moved_solid_shape_is_counted_in_full() {
        // A hard-edged block two pixels to the right: its old and new columns differ, and no
        // pixel there is a blend, so antialiasing detection must not hide them.
        let block = |left: usize| {
            picture(40, 20, move |x, y| {
                if (left..left + 10).contains(&x) && (5..15).contains(&y) {
                    [0; 3]
                } else {
                    [255; 3]
                }
            })
        };
        assert_eq!(
            count(&block(10), &block(12), Options::default()),
            2 * 2 * 10
        );
    }

    #[test]
    fn the_diff_picture_fades_equal_pixels_and_marks_differences() {
        let live = picture(3, 1, |x, _| [[255; 3], [0; 3], [0; 3]][x]);
        let snapshot = picture(3, 1, |x, _| [[255; 3], [0; 3], [255; 3]][x]);

        let outcome = diff(
            &live,
            &snapshot,
            Options {
                detect_antialiasing: false,
                ..Options::default()
            },
        );

        // White stays white; black fades to 255 - 25.5, rounded; the differing pixel is red.
        assert_eq!(outcome.rgb, [255, 255, 255, 230, 230, 230, 255, 0, 0]);
        assert_eq!(outcome.differing, 1);
    }
}
