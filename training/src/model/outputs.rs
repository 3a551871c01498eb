//! What the network computes: its outputs over all priors (and the SRN head's first stage), and
//! the largest growth a size offset may decode to.

/// Largest `w·exp(·)` growth a predicted size offset may decode to (`ln(1000/16)`, torchvision's
/// clamp): an untrained head can emit offsets whose exponential overflows, and IoU of an
/// infinite box has no useful gradient. The IoU losses decode with it, SRN refines anchors with
/// it (`srn::anchor_growth`), and the exported graph clips the same way.
pub const MAX_LOG_SCALE: f64 = 4.135_166_556_742_356;

/// The three outputs: box regressions `[N, P, 4]`, class scores `[N, P, 2]` (logits in
/// training, probabilities from `RetinaFace::infer`; in training the RetinaNet head gives one
/// sigmoid logit `[N, P, 1]` instead) and landmark regressions `[N, P, 10]`.
pub struct Outputs<T> {
    pub loc: T,
    pub conf: T,
    pub landmarks: T,
    /// The SRN head's first stage, in training (inference folds it into the three outputs).
    pub first_stage: Option<FirstStage<T>>,
}

/// First-stage outputs over all priors: box offsets `[N, P, 4]` against the static priors and
/// one face logit `[N, P, 1]`.
pub struct FirstStage<T> {
    pub loc: T,
    pub logit: T,
}
