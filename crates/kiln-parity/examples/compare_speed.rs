//! How long `kiln_parity::compare` takes on two full-length mobile screenshots (1366 × 6000), so
//! a change to the pixel loop can be measured. Run it optimised:
//!
//! ```text
//! cargo run --release -p kiln-parity --example compare_speed
//! ```

use image::codecs::png::PngEncoder;
use image::{ExtendedColorType, ImageBuffer, ImageEncoder, Rgb};
use kiln_core::parity::{PageCapture, PageFacts};
use std::time::{Duration, Instant};

const WIDTH: u32 = 1366;
const HEIGHT: u32 = 6000;
const RUNS: usize = 5;

/// A page-like picture: a white page with rows of dark "text" runs, grey blocks and a coloured
/// banner; `shift` moves the text a pixel and `extra` adds a block the other picture lacks.
fn page(shift: u32, extra: bool) -> Vec<u8> {
    let image = ImageBuffer::from_fn(WIDTH, HEIGHT, |x, y| {
        let line = (y + shift) % 24;
        let word = (x / 7 + y / 24) % 9;
        if y < 120 {
            Rgb([30, 90, 200])
        } else if extra && (2000..2400).contains(&y) && (100..900).contains(&x) {
            Rgb([240, 60, 60])
        } else if (y / 600) % 3 == 2 && (200..1100).contains(&x) {
            Rgb([235, 235, 235])
        } else if (6..16).contains(&line) && word < 7 && (60..1300).contains(&x) {
            let ink = 40 + ((x * 31 + y * 17) % 50) as u8;
            Rgb([ink, ink, ink])
        } else {
            Rgb([255, 255, 255])
        }
    });
    let mut png = Vec::new();
    PngEncoder::new(&mut png)
        .write_image(image.as_raw(), WIDTH, HEIGHT, ExtendedColorType::Rgb8)
        .expect("an in-memory PNG encodes");
    png
}

fn main() {
    let facts = PageFacts {
        height: HEIGHT,
        ..PageFacts::default()
    };
    let live = PageCapture {
        png: page(0, false),
        facts: facts.clone(),
    };
    let snapshot = PageCapture {
        png: page(1, true),
        facts,
    };

    let mut decoding: Vec<Duration> = Vec::with_capacity(RUNS);
    for _ in 0..RUNS {
        let start = Instant::now();
        for png in [&live.png, &snapshot.png] {
            image::load_from_memory(png).expect("the pictures decode");
        }
        decoding.push(start.elapsed());
    }
    decoding.sort();

    let mut times: Vec<Duration> = Vec::with_capacity(RUNS);
    let mut differing = 0;
    let mut diff_bytes = 0;
    for _ in 0..RUNS {
        let start = Instant::now();
        let comparison = kiln_parity::compare(&live, &snapshot).expect("the pictures compare");
        times.push(start.elapsed());
        differing = comparison.report.visual.differing_pixels;
        diff_bytes = comparison.diff_png.len();
    }
    times.sort();

    println!(
        "{WIDTH}×{HEIGHT}: compare took {:?} at best, {:?} median over {RUNS} runs \
         ({differing} differing pixels, PNGs of {} and {} KiB, diff PNG {} KiB); \
         decoding the two PNGs alone takes {:?} of it",
        times[0],
        times[RUNS / 2],
        live.png.len() / 1024,
        snapshot.png.len() / 1024,
        diff_bytes / 1024,
        decoding[RUNS / 2],
    );
}
