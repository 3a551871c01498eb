//! Prior (anchor) boxes in the biubug6 Pytorch_Retinaface layout.

use crate::contract::PriorConfig;

/// One prior box, centre and size normalised to the input tensor size (0..1).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Prior {
    pub cx: f32,
    pub cy: f32,
    pub w: f32,
    pub h: f32,
}

/// Generates priors for an input of `height` × `width` pixels.
///
/// Order: feature level (steps ascending as configured) → row → column → min size → aspect
/// ratio, which is the order in which the network's heads flatten their outputs. An anchor of
/// size `s` and ratio `r` (width / height) is `s·√r` wide and `s/√r` high: the area of the
/// square anchor, reshaped.
pub fn generate(config: &PriorConfig, height: usize, width: usize) -> Vec<Prior> {
    let mut priors = Vec::with_capacity(count(config, height, width));
    for (step, min_sizes) in config.steps.iter().zip(&config.min_sizes) {
        let step = *step as usize;
        let rows = height.div_ceil(step);
        let cols = width.div_ceil(step);
        for row in 0..rows {
            for col in 0..cols {
                for &size in min_sizes {
                    for &ratio in &config.aspect_ratios {
                        // Exactly `size` for the square anchor, whatever sqrt rounds to.
                        let r = if ratio == 1.0 { 1.0 } else { ratio.sqrt() };
                        priors.push(Prior {
                            cx: (col as f32 + 0.5) * step as f32 / width as f32,
                            cy: (row as f32 + 0.5) * step as f32 / height as f32,
                            w: size * r / width as f32,
                            h: size / r / height as f32,
                        });
                    }
                }
            }
        }
    }
    priors
}

/// Number of priors [`generate`] yields, without building them.
pub fn count(config: &PriorConfig, height: usize, width: usize) -> usize {
    config
        .steps
        .iter()
        .zip(&config.min_sizes)
        .map(|(step, sizes)| {
            let step = *step as usize;
            height.div_ceil(step) * width.div_ceil(step) * sizes.len() * config.aspect_ratios.len()
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn published_layout_has_16800_priors_at_640() {
        let config = PriorConfig::default();
        let priors = generate(&config, 640, 640);
        assert_eq!(priors.len(), 16_800);
        assert_eq!(count(&config, 640, 640), 16_800);
    }

    #[test]
    fn first_priors_follow_level_row_col_size_order() {
        let config = PriorConfig::default();
        let p = generate(&config, 640, 640);
        // Level 0 (step 8), cell (0,0): sizes 16 then 32.
        assert_eq!(
            p[0],
            Prior {
                cx: 4.0 / 640.0,
                cy: 4.0 / 640.0,
                w: 16.0 / 640.0,
                h: 16.0 / 640.0
            }
        );
        assert_eq!(p[1].w, 32.0 / 640.0);
        // Next column of the same row.
        assert_eq!(p[2].cx, 12.0 / 640.0);
        assert_eq!(p[2].cy, 4.0 / 640.0);
        // Second row starts after 80 columns × 2 sizes.
        assert_eq!(p[160].cx, 4.0 / 640.0);
        assert_eq!(p[160].cy, 12.0 / 640.0);
        // Level 1 (step 16) starts after 80×80×2 priors, with size 64.
        let l1 = &p[12_800];
        assert_eq!((l1.cx, l1.w), (8.0 / 640.0, 64.0 / 640.0));
        // Last prior: step 32, cell (19,19), size 512.
        let last = p.last().unwrap();
        assert_eq!(
            (last.cx, last.cy, last.w),
            (624.0 / 640.0, 624.0 / 640.0, 512.0 / 640.0)
        );
    }

    #[test]
    fn non_multiple_sizes_round_cells_up() {
        let config = PriorConfig::default();
        // 360 rows: 45 (step 8), 23 (step 16), 12 (step 32); 641 cols: 81, 41, 21.
        assert_eq!(count(&config, 360, 641), (45 * 81 + 23 * 41 + 12 * 21) * 2);
        let p = generate(&config, 360, 641);
        assert_eq!(p.len(), count(&config, 360, 641));
        assert!((p[0].h - 16.0 / 360.0).abs() < 1e-7);
    }

    #[test]
    fn aspect_ratios_follow_each_size() {
        let config = PriorConfig {
            steps: vec![16],
            min_sizes: vec![vec![32.0, 64.0]],
            aspect_ratios: vec![0.5, 1.0, 2.0],
            ..Default::default()
        };
        // 32×32 input: 2×2 cells × 2 sizes × 3 ratios.
        assert_eq!(count(&config, 32, 32), 24);
        let p = generate(&config, 32, 32);
        assert_eq!(p.len(), 24);
        // Cell (0,0), size 32: ratio 0.5 is 32·√0.5 = 22.627 wide, 32/√0.5 = 45.255 high.
        let px = |v: f32| v * 32.0;
        assert!((px(p[0].w) - 22.627_417).abs() < 1e-3, "{:?}", p[0]);
        assert!((px(p[0].h) - 45.254_834).abs() < 1e-3, "{:?}", p[0]);
        assert_eq!((px(p[1].w), px(p[1].h)), (32.0, 32.0));
        assert!((px(p[2].w) - 45.254_834).abs() < 1e-3 && (px(p[2].h) - 22.627_417).abs() < 1e-3);
        // Then size 64, same cell; the next cell starts after 2 × 3 anchors.
        assert_eq!((px(p[4].w), p[4].cx), (64.0, 0.25));
        assert_eq!(p[6].cx, 0.75);
        assert_eq!(p[6].cy, 0.25);
    }
}
