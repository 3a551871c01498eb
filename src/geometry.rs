//! Box geometry, once for the core, the plugin, the trainer and the tests: corner boxes
//! `[x_min, y_min, x_max, y_max]`, their overlap (IoU, plain and with the reference's pixel
//! convention) and the centre form the tracker's filter works in.

use std::ops::{Add, Mul, Sub};

/// A coordinate type boxes come in: `f32` in the core and trainer, `f64` in buffer metadata.
pub trait Coord:
    Copy + PartialOrd + Add<Output = Self> + Sub<Output = Self> + Mul<Output = Self>
{
    const ZERO: Self;
    const ONE: Self;
    const HALF: Self;
    fn div(self, other: Self) -> Self;
    fn max_of(self, other: Self) -> Self {
        if other > self { other } else { self }
    }
    fn min_of(self, other: Self) -> Self {
        if other < self { other } else { self }
    }
}

impl Coord for f32 {
    const ZERO: Self = 0.0;
    const ONE: Self = 1.0;
    const HALF: Self = 0.5;
    fn div(self, other: Self) -> Self {
        self / other
    }
}

impl Coord for f64 {
    const ZERO: Self = 0.0;
    const ONE: Self = 1.0;
    const HALF: Self = 0.5;
    fn div(self, other: Self) -> Self {
        self / other
    }
}

/// Intersection over union of two corner boxes; 0 when their union is empty. Boxes of
/// negative size count as empty.
pub fn iou<T: Coord>(a: &[T; 4], b: &[T; 4]) -> T {
    overlap(a, b, T::ZERO)
}

/// IoU in pixel units with the reference's inclusive `+1` convention for widths and heights
/// (biubug6's `py_cpu_nms`): what NMS compares.
pub fn pixel_iou<T: Coord>(a: &[T; 4], b: &[T; 4]) -> T {
    overlap(a, b, T::ONE)
}

fn overlap<T: Coord>(a: &[T; 4], b: &[T; 4], extra: T) -> T {
    let side = |lo: T, hi: T| (hi - lo + extra).max_of(T::ZERO);
    let area = |r: &[T; 4]| side(r[0], r[2]) * side(r[1], r[3]);
    let inter =
        side(a[0].max_of(b[0]), a[2].min_of(b[2])) * side(a[1].max_of(b[1]), a[3].min_of(b[3]));
    let union = area(a) + area(b) - inter;
    if union > T::ZERO {
        inter.div(union)
    } else {
        T::ZERO
    }
}

/// Corner box → centre form `[cx, cy, w, h]`.
pub fn corners_to_centre<T: Coord>(b: [T; 4]) -> [T; 4] {
    [
        (b[0] + b[2]) * T::HALF,
        (b[1] + b[3]) * T::HALF,
        b[2] - b[0],
        b[3] - b[1],
    ]
}

/// Centre form `[cx, cy, w, h]` → corner box.
pub fn centre_to_corners<T: Coord>(s: [T; 4]) -> [T; 4] {
    let (hw, hh) = (s[2] * T::HALF, s[3] * T::HALF);
    [s[0] - hw, s[1] - hh, s[0] + hw, s[1] + hh]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iou_of_hand_computed_boxes() {
        // Two 10×10 boxes overlapping in a 5×10 strip: 50 / 150.
        let (a, b) = ([0.0f32, 0.0, 10.0, 10.0], [5.0f32, 0.0, 15.0, 10.0]);
        assert!((iou(&a, &b) - 1.0 / 3.0).abs() < 1e-6);
        assert_eq!(iou(&a, &a), 1.0);
        assert_eq!(iou(&a, &[20.0, 20.0, 30.0, 30.0]), 0.0, "apart");
        assert_eq!(iou(&[0.0f64; 4], &[0.0; 4]), 0.0, "empty boxes");
        let (c, d) = ([0.0f64, 0.0, 10.0, 10.0], [5.0f64, 0.0, 15.0, 10.0]);
        assert!((iou(&c, &d) - 1.0 / 3.0).abs() < 1e-12, "the same in f64");
    }

    #[test]
    fn pixel_iou_counts_both_ends() {
        // [0, 9] × [0, 9] is 10×10 pixels; [5, 14] × [0, 9] overlaps it in 5×10: 50 / 150.
        let (a, b) = ([0.0f32, 0.0, 9.0, 9.0], [5.0f32, 0.0, 14.0, 9.0]);
        assert!((pixel_iou(&a, &b) - 1.0 / 3.0).abs() < 1e-6);
    }

    #[test]
    fn centre_form_round_trips() {
        let b = [10.0f32, 20.0, 50.0, 100.0];
        assert_eq!(corners_to_centre(b), [30.0, 60.0, 40.0, 80.0]);
        assert_eq!(centre_to_corners(corners_to_centre(b)), b);
    }
}
