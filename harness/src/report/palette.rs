//! Colours for plots: the Okabe–Ito palette, safe for the common kinds of
//! colour blindness (Okabe & Ito, "Color Universal Design", 2008), without its
//! yellow, which is too light on white. A plot that needs more colours than
//! these should be split into small multiples, not given lookalikes.

use plotters::style::RGBColor;
use settings::Platform;

/// Seven distinct colours, darkest contrast first.
pub const OKABE_ITO: [RGBColor; 7] = [
    RGBColor(0, 114, 178),   // blue
    RGBColor(213, 94, 0),    // vermillion
    RGBColor(0, 158, 115),   // bluish green
    RGBColor(204, 121, 167), // reddish purple
    RGBColor(230, 159, 0),   // orange
    RGBColor(86, 180, 233),  // sky blue
    RGBColor(0, 0, 0),       // black
];

/// The i-th colour; past seven they repeat, which a caller avoids by splitting its plot.
pub fn pick(i: usize) -> RGBColor {
    OKABE_ITO[i % OKABE_ITO.len()]
}

/// lichess in blue, chess.com in vermillion.
pub fn provider(platform: Platform) -> RGBColor {
    match platform {
        Platform::Lichess => OKABE_ITO[0],
        Platform::ChessCom => OKABE_ITO[1],
    }
}
