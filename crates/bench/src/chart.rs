//! A PNG chart of the results: throughput and latency percentiles per
//! scenario as horizontal bars, labelled with an 8x8 bitmap font (no system
//! fonts needed).

use std::path::Path;

use font8x8::UnicodeFonts;

use crate::report::Measured;

const WIDTH: usize = 1000;
const ROW: usize = 34;
const LABEL: usize = 230;
const BAR: usize = WIDTH - LABEL - 150;

type Rgb = [u8; 3];
const WHITE: Rgb = [255, 255, 255];
const INK: Rgb = [30, 30, 30];
const THROUGHPUT: Rgb = [54, 110, 181];
const P50: Rgb = [120, 180, 120];
const P90: Rgb = [236, 178, 64];
const P99: Rgb = [206, 74, 58];

struct Canvas {
    pixels: Vec<u8>,
    height: usize,
}

impl Canvas {
    fn new(height: usize) -> Self {
        Self {
            pixels: WHITE.repeat(WIDTH * height),
            height,
        }
    }

    fn rect(&mut self, x: usize, y: usize, w: usize, h: usize, color: Rgb) {
        for yy in y..(y + h).min(self.height) {
            for xx in x..(x + w).min(WIDTH) {
                let i = (yy * WIDTH + xx) * 3;
                self.pixels[i..i + 3].copy_from_slice(&color);
            }
        }
    }

    /// Text at (x, y), each font pixel `scale` pixels wide.
    fn text(&mut self, x: usize, y: usize, text: &str, color: Rgb, scale: usize) {
        for (n, ch) in text.chars().enumerate() {
            let Some(glyph) = font8x8::BASIC_FONTS.get(ch) else {
                continue;
            };
            for (row, bits) in glyph.iter().enumerate() {
                for col in 0..8 {
                    if bits & (1 << col) != 0 {
                        self.rect(
                            x + (n * 8 + col) * scale,
                            y + row * scale,
                            scale,
                            scale,
                            color,
                        );
                    }
                }
            }
        }
    }
}

pub fn render(results: &[Measured], path: &Path) -> anyhow::Result<()> {
    let n = results.len();
    let height = 70 + n * ROW + 60 + n * (ROW + 10) + 40;
    let mut c = Canvas::new(height);
    c.text(10, 10, "Throughput (units per second)", INK, 2);
    let max_rate = results.iter().map(Measured::rate).fold(1.0, f64::max);
    let mut y = 45;
    for m in results {
        c.text(10, y + 8, m.name, INK, 1);
        let w = ((m.rate() / max_rate) * BAR as f64) as usize;
        c.rect(LABEL, y, w.max(1), ROW - 10, THROUGHPUT);
        c.text(LABEL + w + 8, y + 8, &format!("{:.0}/s", m.rate()), INK, 1);
        y += ROW;
    }
    y += 25;
    c.text(10, y, "Latency p50 / p90 / p99 (ms)", INK, 2);
    y += 35;
    let max_ms = results.iter().map(|m| m.p99).fold(0.001, f64::max);
    for m in results {
        c.text(10, y + 12, m.name, INK, 1);
        for (i, (value, color)) in [(m.p50, P50), (m.p90, P90), (m.p99, P99)]
            .into_iter()
            .enumerate()
        {
            let w = ((value / max_ms) * BAR as f64) as usize;
            c.rect(LABEL, y + i * 11, w.max(1), 9, color);
        }
        c.text(
            LABEL + BAR + 8,
            y + 12,
            &format!("{:.1}/{:.1}/{:.1}", m.p50, m.p90, m.p99),
            INK,
            1,
        );
        y += ROW + 10;
    }

    let file = std::fs::File::create(path)?;
    let mut encoder = png::Encoder::new(std::io::BufWriter::new(file), WIDTH as u32, height as u32);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    encoder.write_header()?.write_image_data(&c.pixels)?;
    Ok(())
}
