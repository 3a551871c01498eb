//! PNG line charts (loss curves, precision-recall curves).
