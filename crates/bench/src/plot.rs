//! A minimal SVG writer for the bench plots: a frame with linear axes, ticks
//! and labels, lines, shaded intervals and text. Written by hand because one
//! line chart does not justify a plotting crate and its dependencies.
use std::fmt::Write as _;

/// How text is anchored at its position.
#[derive(Clone, Copy)]
pub(super) enum Anchor {
    Start,
    Middle,
    End,
}

impl Anchor {
    fn name(self) -> &'static str {
        match self {
            Anchor::Start => "start",
            Anchor::Middle => "middle",
            Anchor::End => "end",
        }
    }
}

/// An SVG document being written; `finish` closes it.
pub(super) struct Svg {
    out: String,
}

impl Svg {
    pub(super) fn new(width: f64, height: f64) -> Self {
        let mut out = String::new();
        let _ = writeln!(
            out,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" font-family="sans-serif">"#
        );
        let _ = writeln!(out, r#"<rect x="0" y="0" width="{width}" height="{height}" fill="white"/>"#);
        Svg { out }
    }

    pub(super) fn rect(&mut self, x: f64, y: f64, width: f64, height: f64, fill: &str, opacity: f64) {
        let _ = writeln!(
            self.out,
            r#"<rect x="{x:.2}" y="{y:.2}" width="{width:.2}" height="{height:.2}" fill="{fill}" fill-opacity="{opacity}"/>"#
        );
    }

    pub(super) fn line(&mut self, (x1, y1): (f64, f64), (x2, y2): (f64, f64), stroke: &str, width: f64) {
        let _ = writeln!(
            self.out,
            r#"<line x1="{x1:.2}" y1="{y1:.2}" x2="{x2:.2}" y2="{y2:.2}" stroke="{stroke}" stroke-width="{width}"/>"#
        );
    }

    pub(super) fn polyline(&mut self, points: impl IntoIterator<Item = (f64, f64)>, stroke: &str, width: f64) {
        let mut coordinates = String::new();
        for (x, y) in points {
            let _ = write!(coordinates, "{x:.2},{y:.2} ");
        }
        let _ = writeln!(
            self.out,
            r#"<polyline points="{}" fill="none" stroke="{stroke}" stroke-width="{width}" stroke-linejoin="round"/>"#,
            coordinates.trim_end()
        );
    }

    /// `text` at (x, y), rotated by `degrees` around that point.
    pub(super) fn text(&mut self, (x, y): (f64, f64), text: &str, size: f64, anchor: Anchor, degrees: f64) {
        let rotate = if degrees == 0.0 { String::new() } else { format!(r#" transform="rotate({degrees} {x:.2} {y:.2})""#) };
        let _ = writeln!(
            self.out,
            r#"<text x="{x:.2}" y="{y:.2}" font-size="{size}" text-anchor="{}"{rotate}>{}</text>"#,
            anchor.name(),
            escape(text)
        );
    }

    pub(super) fn finish(mut self) -> String {
        self.out.push_str("</svg>\n");
        self.out
    }
}

/// A plot area at (left, top) of `width` x `height` pixels showing the data
/// ranges `x` and `y` (y grows upwards).
pub(super) struct Frame {
    pub left: f64,
    pub top: f64,
    pub width: f64,
    pub height: f64,
    pub x: (f64, f64),
    pub y: (f64, f64),
}

impl Frame {
    /// The pixel column of data value `x`.
    pub(super) fn px(&self, x: f64) -> f64 {
        self.left + (x - self.x.0) / (self.x.1 - self.x.0) * self.width
    }

    /// The pixel row of data value `y`.
    pub(super) fn py(&self, y: f64) -> f64 {
        self.top + self.height - (y - self.y.0) / (self.y.1 - self.y.0) * self.height
    }

    pub(super) fn bottom(&self) -> f64 {
        self.top + self.height
    }

    /// Axes along the left and bottom edges, with ticks, light grid lines and labels.
    pub(super) fn draw_axes(&self, svg: &mut Svg, x_label: &str, y_label: &str) {
        const TICK: f64 = 5.0;
        for x in ticks(self.x.0, self.x.1, 10) {
            let px = self.px(x);
            svg.line((px, self.top), (px, self.bottom()), "#e4e4e4", 1.0);
            svg.line((px, self.bottom()), (px, self.bottom() + TICK), "black", 1.0);
            svg.text((px, self.bottom() + TICK + 13.0), &tick_label(x, self.x), 12.0, Anchor::Middle, 0.0);
        }
        for y in ticks(self.y.0, self.y.1, 6) {
            let py = self.py(y);
            svg.line((self.left, py), (self.left + self.width, py), "#e4e4e4", 1.0);
            svg.line((self.left - TICK, py), (self.left, py), "black", 1.0);
            svg.text((self.left - TICK - 3.0, py + 4.0), &tick_label(y, self.y), 12.0, Anchor::End, 0.0);
        }
        svg.line((self.left, self.top), (self.left, self.bottom()), "black", 1.0);
        svg.line((self.left, self.bottom()), (self.left + self.width, self.bottom()), "black", 1.0);
        svg.text((self.left + self.width / 2.0, self.bottom() + 40.0), x_label, 13.0, Anchor::Middle, 0.0);
        svg.text((self.left - 45.0, self.top + self.height / 2.0), y_label, 13.0, Anchor::Middle, -90.0);
    }
}

/// Round tick values (1, 2 or 5 times a power of ten apart) covering
/// `[min, max]`, about `target` of them.
pub(super) fn ticks(min: f64, max: f64, target: usize) -> Vec<f64> {
    let step = tick_step(min, max, target);
    if !step.is_finite() || step <= 0.0 {
        return vec![min];
    }
    let first = (min / step).ceil() as i64;
    let last = (max / step + 1e-9).floor() as i64;
    (first..=last).map(|k| k as f64 * step).collect()
}

fn tick_step(min: f64, max: f64, target: usize) -> f64 {
    let raw = (max - min) / target.max(1) as f64;
    let magnitude = 10f64.powf(raw.log10().floor());
    let fraction = raw / magnitude;
    let nice = if fraction <= 1.0 {
        1.0
    } else if fraction <= 2.0 {
        2.0
    } else if fraction <= 5.0 {
        5.0
    } else {
        10.0
    };
    nice * magnitude
}

/// As many decimals as the tick step needs ("0.5", "10").
fn tick_label(value: f64, range: (f64, f64)) -> String {
    let step = tick_step(range.0, range.1, 10);
    let decimals = if step >= 1.0 { 0 } else { (-step.log10()).ceil() as usize };
    format!("{value:.decimals$}")
}

/// The top of an axis from 0 that shows `value`: the first round tick at or above it.
pub(super) fn axis_max(value: f64, target: usize) -> f64 {
    if value <= 0.0 || !value.is_finite() {
        return 1.0;
    }
    let step = tick_step(0.0, value, target);
    (value / step).ceil() * step
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_round_and_cover_the_range() {
        assert_eq!(ticks(0.0, 10.0, 5), [0.0, 2.0, 4.0, 6.0, 8.0, 10.0]);
        assert_eq!(ticks(0.0, 3.2, 8), [0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0]);
        assert_eq!(ticks(0.0, 25.0, 6), [0.0, 5.0, 10.0, 15.0, 20.0, 25.0]);
        assert_eq!(tick_label(0.5, (0.0, 3.2)), "0.5");
        assert_eq!(tick_label(20.0, (0.0, 25.0)), "20");
    }

    #[test]
    fn axis_max_is_the_next_round_tick() {
        assert_eq!(axis_max(22.7, 6), 25.0);
        assert_eq!(axis_max(17.0, 6), 20.0);
        assert_eq!(axis_max(0.0, 6), 1.0);
    }

    #[test]
    fn document_is_svg_with_escaped_text() {
        let mut svg = Svg::new(100.0, 50.0);
        svg.polyline([(0.0, 1.0), (2.0, 3.5)], "black", 1.0);
        svg.text((1.0, 2.0), "a < b & c", 10.0, Anchor::Start, 0.0);
        let doc = svg.finish();
        assert!(doc.starts_with("<svg "), "{doc}");
        assert!(doc.contains(r#"points="0.00,1.00 2.00,3.50""#), "{doc}");
        assert!(doc.contains(">a &lt; b &amp; c</text>"), "{doc}");
        assert!(doc.trim_end().ends_with("</svg>"));
    }
}
