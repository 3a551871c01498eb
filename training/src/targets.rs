//! Matching priors to ground-truth faces: the per-prior training targets.
