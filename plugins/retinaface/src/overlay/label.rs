//! Labels (track ID and score), rasterised with `ab_glyph` from a TrueType font (DejaVu Sans from Debian's
//! fonts-dejavu-core by default).

use ab_glyph::{Font, FontArc, PxScale, ScaleFont, point};

use super::canvas::{Argb, Canvas, Rect};

pub const DEFAULT_FONT: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";

/// Loads a font file; the error says which file and why.
pub fn load_font(path: &str) -> Result<FontArc, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read font '{path}': {e}"))?;
    FontArc::try_from_vec(bytes)
        .map_err(|e| format!("'{path}' is not a TrueType/OpenType font: {e}"))
}

/// A face's label: the person's name when `retinafaceidentify` named it (`Alice #3` with the
/// track ID), else `#ID score` for a tracked face, the score alone otherwise, the ID alone when
/// the producer gave no score; `None` when there is nothing to write.
pub fn text(id: Option<u64>, score: Option<f64>, name: Option<&str>) -> Option<String> {
    if let Some(name) = name {
        return Some(match id {
            Some(id) => format!("{name} #{id}"),
            None => name.to_string(),
        });
    }
    match (id, score) {
        (Some(id), Some(score)) => Some(format!("#{id} {score:.2}")),
        (Some(id), None) => Some(format!("#{id}")),
        (None, Some(score)) => Some(format!("{score:.2}")),
        (None, None) => None,
    }
}

/// Text coverage mask: `(width, height, coverage)`.
fn rasterise(font: &FontArc, text: &str, size: f32) -> (usize, usize, Vec<f32>) {
    let scaled = font.as_scaled(PxScale::from(size));
    let width = text
        .chars()
        .map(|c| scaled.h_advance(scaled.glyph_id(c)))
        .sum::<f32>()
        .ceil() as usize
        + 1;
    let height = (scaled.ascent() - scaled.descent()).ceil() as usize + 1;
    let mut mask = vec![0.0f32; width * height];
    let mut x = 0.0;
    for c in text.chars() {
        let glyph = scaled.scaled_glyph(c);
        let advance = scaled.h_advance(glyph.id);
        let glyph = glyph
            .id
            .with_scale_and_position(size, point(x, scaled.ascent()));
        x += advance;
        let Some(outlined) = font.outline_glyph(glyph) else {
            continue;
        };
        let bounds = outlined.px_bounds();
        outlined.draw(|gx, gy, coverage| {
            let (px, py) = (
                bounds.min.x as i64 + gx as i64,
                bounds.min.y as i64 + gy as i64,
            );
            if px >= 0 && py >= 0 && (px as usize) < width && (py as usize) < height {
                let m = &mut mask[py as usize * width + px as usize];
                *m = m.max(coverage);
            }
        });
    }
    (width, height, mask)
}

/// Draws `text` on a bar of `bar` colour just above `face` (inside the frame when there is no
/// room above), in `text_color`.
pub fn draw(
    canvas: &mut Canvas,
    font: &FontArc,
    face: Rect,
    text: &str,
    size: f32,
    bar: Argb,
    text_color: Argb,
) {
    let (w, h, mask) = rasterise(font, text, size);
    let pad = 2;
    let bar_h = h as i64 + 2 * pad;
    let y0 = if face.y0 >= bar_h {
        face.y0 - bar_h
    } else {
        face.y0
    };
    let bar_rect = Rect {
        x0: face.x0,
        y0,
        x1: face.x0 + w as i64 + 2 * pad,
        y1: y0 + bar_h,
    };
    canvas.fill(bar_rect, bar);
    canvas.paint_mask(face.x0 + pad, y0 + pad, w, h, &mask, text_color);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_text_shows_the_track_id_when_there_is_one() {
        assert_eq!(
            text(Some(12), Some(0.987), None).as_deref(),
            Some("#12 0.99")
        );
        assert_eq!(text(None, Some(0.5), None).as_deref(), Some("0.50"));
        assert_eq!(text(Some(3), None, None).as_deref(), Some("#3"));
        assert_eq!(text(None, None, None), None);
    }

    #[test]
    fn a_named_face_is_labelled_with_its_name() {
        let alice = Some("Alice");
        assert_eq!(text(Some(3), Some(0.9), alice).as_deref(), Some("Alice #3"));
        assert_eq!(text(None, Some(0.9), alice).as_deref(), Some("Alice"));
    }

    #[test]
    fn digits_rasterise_to_ink() {
        let Ok(font) = load_font(DEFAULT_FONT) else {
            panic!("{DEFAULT_FONT} missing: run scripts/setup.sh (fonts-dejavu-core)");
        };
        let (w, h, mask) = rasterise(&font, "0.98", 16.0);
        assert!(w > 20 && w < 60 && h > 12 && h < 30, "{w}x{h}");
        let ink = mask.iter().filter(|c| **c > 0.5).count();
        assert!(
            ink > 20 && ink < w * h / 2,
            "{ink} inked pixels of {}",
            w * h
        );
        assert!(
            load_font("/nonexistent.ttf")
                .unwrap_err()
                .contains("cannot read font")
        );
    }
}
