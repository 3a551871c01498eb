//! The tracker's motion model: a constant-velocity Kalman filter on a box's centre and size,
//! run as four independent 2-state filters (see the module documentation of [`super`]).

use crate::geometry::centre_to_corners;

/// Smallest width and height, in pixels, of a track's box (predicted, filtered or output).
pub const MIN_SIZE: f32 = 1.0;

/// ByteTrack's (and SORT's) process/measurement noise weights, relative to the box size.
const STD_WEIGHT_POSITION: f32 = 1.0 / 20.0;
const STD_WEIGHT_VELOCITY: f32 = 1.0 / 160.0;

/// One coordinate's constant-velocity filter: state `(p, v)`, covariance `[[pp, pv], [pv, vv]]`.
#[derive(Debug, Clone, Copy)]
pub(super) struct Axis {
    p: f32,
    pub(super) v: f32,
    pp: f32,
    pv: f32,
    vv: f32,
}

impl Axis {
    fn new(z: f32, scale: f32) -> Self {
        let sp = 2.0 * STD_WEIGHT_POSITION * scale;
        let sv = 10.0 * STD_WEIGHT_VELOCITY * scale;
        Self {
            p: z,
            v: 0.0,
            pp: sp * sp,
            pv: 0.0,
            vv: sv * sv,
        }
    }

    /// `x ← F x`, `P ← F P Fᵀ + Q` with `F = [[1, 1], [0, 1]]`.
    fn predict(&mut self, scale: f32) {
        let qp = STD_WEIGHT_POSITION * scale;
        let qv = STD_WEIGHT_VELOCITY * scale;
        self.p += self.v;
        self.pp += 2.0 * self.pv + self.vv + qp * qp;
        self.pv += self.vv;
        self.vv += qv * qv;
    }

    /// Measurement of `p` with variance `r2`.
    fn update(&mut self, z: f32, r2: f32) {
        let s = self.pp + r2;
        let (kp, kv) = (self.pp / s, self.pv / s);
        let y = z - self.p;
        self.p += kp * y;
        self.v += kv * y;
        // (I − K H) P, written so that it stays symmetric and positive.
        let (pp, pv, vv) = (self.pp, self.pv, self.vv);
        self.pp = pp * r2 / s;
        self.pv = pv * r2 / s;
        self.vv = vv - pv * kv;
    }

    pub(super) fn is_finite(&self) -> bool {
        [self.p, self.v, self.pp, self.pv, self.vv]
            .iter()
            .all(|x| x.is_finite())
    }
}

/// The Kalman filter on `(cx, cy, w, h)`.
#[derive(Debug, Clone, Copy)]
pub(super) struct BoxFilter {
    pub(super) axes: [Axis; 4],
}

impl BoxFilter {
    pub(super) fn new(z: [f32; 4]) -> Self {
        let scales = noise_scales(z);
        Self {
            axes: std::array::from_fn(|i| Axis::new(z[i], scales[i])),
        }
    }

    pub(super) fn state(&self) -> [f32; 4] {
        self.axes.map(|a| a.p)
    }

    pub(super) fn predict(&mut self) {
        let scales = noise_scales(self.state());
        for (a, s) in self.axes.iter_mut().zip(scales) {
            a.predict(s);
        }
        self.clamp_size();
    }

    pub(super) fn update(&mut self, z: [f32; 4]) {
        // Measurement noise from the predicted box, as ByteTrack's `project`.
        let scales = noise_scales(self.state());
        for ((a, z), s) in self.axes.iter_mut().zip(z).zip(scales) {
            let r = STD_WEIGHT_POSITION * s;
            a.update(z, r * r);
        }
        self.clamp_size();
    }

    fn clamp_size(&mut self) {
        for a in &mut self.axes[2..] {
            if a.p < MIN_SIZE {
                a.p = MIN_SIZE;
                a.v = a.v.max(0.0);
            }
        }
    }

    /// Lost tracks keep moving but stop growing or shrinking (ByteTrack zeroes the height
    /// velocity of tracks that are not tracked).
    pub(super) fn freeze_size(&mut self) {
        self.axes[2].v = 0.0;
        self.axes[3].v = 0.0;
    }

    pub(super) fn bbox(&self) -> [f32; 4] {
        centre_to_corners(self.state())
    }

    pub(super) fn is_finite(&self) -> bool {
        self.axes.iter().all(Axis::is_finite)
    }
}

/// Noise standard deviations scale with the width for `cx`, `w` and the height for `cy`, `h`.
fn noise_scales(xywh: [f32; 4]) -> [f32; 4] {
    let (w, h) = (xywh[2].max(MIN_SIZE), xywh[3].max(MIN_SIZE));
    [w, h, w, h]
}
