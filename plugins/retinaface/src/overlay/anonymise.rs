//! Anonymising faces on a [`Canvas`]: blur and pixelate a rectangle, and a group of overlapping
//! face areas in one pass that leaves every sample outside the faces as it was.

use super::canvas::{Canvas, Rect};

impl Canvas<'_, '_> {
    /// Replaces each `block`×`block` cell of `rect` with its mean, on every plane.
    pub fn pixelate(&mut self, rect: Rect, block: usize) {
        self.for_each_plane(rect, Rect::touching_samples, |_, data, stride, s, plane| {
            let cell = (block / plane.subsampling).max(1) as i64;
            let n = plane.bytes_per_sample;
            let mut y0 = s.y0;
            while y0 < s.y1 {
                let y1 = (y0 + cell).min(s.y1);
                let mut x0 = s.x0;
                while x0 < s.x1 {
                    let x1 = (x0 + cell).min(s.x1);
                    let mut sum = [0u32; 4];
                    for y in y0..y1 {
                        for x in x0..x1 {
                            for c in 0..n {
                                sum[c] += data[y as usize * stride + x as usize * n + c] as u32;
                            }
                        }
                    }
                    let count = ((y1 - y0) * (x1 - x0)) as u32;
                    for y in y0..y1 {
                        for x in x0..x1 {
                            for c in 0..n {
                                data[y as usize * stride + x as usize * n + c] =
                                    ((sum[c] + count / 2) / count) as u8;
                            }
                        }
                    }
                    x0 = x1;
                }
                y0 = y1;
            }
        });
    }

    /// Box-blurs `rect` (two passes of radius `radius` in each direction, ≈ Gaussian), reading
    /// only pixels inside it so nothing outside leaks in or changes.
    pub fn blur(&mut self, rect: Rect, radius: usize) {
        self.for_each_plane(rect, Rect::touching_samples, |_, data, stride, s, plane| {
            let r = (radius / plane.subsampling).max(1);
            let n = plane.bytes_per_sample;
            let (w, h) = ((s.x1 - s.x0) as usize, (s.y1 - s.y0) as usize);
            let mut line = Vec::new();
            for _ in 0..2 {
                for y in 0..h {
                    let start = (s.y0 as usize + y) * stride + s.x0 as usize * n;
                    box_blur_line(&mut data[start..], n, w, n, r, &mut line);
                }
                for x in 0..w {
                    let start = s.y0 as usize * stride + (s.x0 as usize + x) * n;
                    box_blur_line(&mut data[start..], stride, h, n, r, &mut line);
                }
            }
        });
    }
}

impl Canvas<'_, '_> {
    /// Blurs or pixelates a group of overlapping areas in one pass over its bounding box, then
    /// puts back every sample outside the members, so exactly the samples that anonymising each
    /// member alone would touch change (a face's neighbourhood stays as it was).
    pub fn anonymise(&mut self, group: &Group, how: Anonymise) {
        let (subsampled, width, height) = (self.subsampled, self.width, self.height);
        let area = move |r: Rect| {
            let r = if subsampled { r.snap_even() } else { r };
            r.clip(width, height)
        };
        let bounds = area(group.bounds);
        if bounds.is_empty() {
            return;
        }
        // Per plane: the samples of the bounding box as they were, and which of them belong to a
        // member (2-D difference array: O(box + members), not O(box × members)).
        let mut saved = Vec::new();
        self.for_each_plane(
            bounds,
            Rect::touching_samples,
            |_, data, stride, s, plane| {
                let (w, h) = ((s.x1 - s.x0) as usize, (s.y1 - s.y0) as usize);
                let n = plane.bytes_per_sample;
                let mut coverage = vec![0i32; (w + 1) * (h + 1)];
                for member in &group.members {
                    let m = area(*member).touching_samples(plane.subsampling);
                    let (x0, x1) = (m.x0.clamp(s.x0, s.x1), m.x1.clamp(s.x0, s.x1));
                    let (y0, y1) = (m.y0.clamp(s.y0, s.y1), m.y1.clamp(s.y0, s.y1));
                    if x0 >= x1 || y0 >= y1 {
                        continue;
                    }
                    let at = |x: i64, y: i64| (y - s.y0) as usize * (w + 1) + (x - s.x0) as usize;
                    coverage[at(x0, y0)] += 1;
                    coverage[at(x1, y0)] -= 1;
                    coverage[at(x0, y1)] -= 1;
                    coverage[at(x1, y1)] += 1;
                }
                for y in 0..=h {
                    for x in 0..=w {
                        let mut v = coverage[y * (w + 1) + x];
                        if x > 0 {
                            v += coverage[y * (w + 1) + x - 1];
                        }
                        if y > 0 {
                            v += coverage[(y - 1) * (w + 1) + x];
                        }
                        if x > 0 && y > 0 {
                            v -= coverage[(y - 1) * (w + 1) + x - 1];
                        }
                        coverage[y * (w + 1) + x] = v;
                    }
                }
                let rows: Vec<u8> = (0..h)
                    .flat_map(|y| {
                        let start = (s.y0 as usize + y) * stride + s.x0 as usize * n;
                        data[start..start + w * n].iter().copied()
                    })
                    .collect();
                saved.push((rows, coverage));
            },
        );
        match how {
            Anonymise::Blur => self.blur(bounds, group.strength),
            Anonymise::Pixelate => self.pixelate(bounds, group.strength),
        }
        let mut saved = saved.into_iter();
        self.for_each_plane(
            bounds,
            Rect::touching_samples,
            |_, data, stride, s, plane| {
                let Some((rows, coverage)) = saved.next() else {
                    return;
                };
                let (w, h) = ((s.x1 - s.x0) as usize, (s.y1 - s.y0) as usize);
                let n = plane.bytes_per_sample;
                for y in 0..h {
                    for x in 0..w {
                        if coverage[y * (w + 1) + x] == 0 {
                            let at = (s.y0 as usize + y) * stride + (s.x0 as usize + x) * n;
                            let from = (y * w + x) * n;
                            data[at..at + n].copy_from_slice(&rows[from..from + n]);
                        }
                    }
                }
            },
        );
    }
}

/// Moving-average blur of `len` samples of `n` components, `pitch` bytes apart, edges clamped.
fn box_blur_line(
    data: &mut [u8],
    pitch: usize,
    len: usize,
    n: usize,
    r: usize,
    line: &mut Vec<u8>,
) {
    if len < 2 {
        return;
    }
    for c in 0..n {
        line.clear();
        line.extend((0..len).map(|i| data[i * pitch + c]));
        let at = |i: isize| line[i.clamp(0, len as isize - 1) as usize] as u32;
        let width = 2 * r as u32 + 1;
        let mut sum: u32 = (-(r as isize)..=r as isize).map(at).sum();
        for i in 0..len {
            data[i * pitch + c] = ((sum + width / 2) / width) as u8;
            sum = sum + at(i as isize + r as isize + 1) - at(i as isize - r as isize);
        }
    }
}

/// Groups areas that overlap (directly or through others) and returns, per group, its bounding
/// box, its members and the largest `strength` (blur radius or block size). Groups are disjoint,
/// so anonymising them group by group ([`Canvas::anonymise`]) costs work bounded by the frame's
/// area however many faces there are: hundreds of overlapping candidates at a threshold near 0
/// would otherwise blur the same pixels hundreds of times.
pub fn merge_overlapping(areas: Vec<(Rect, usize)>) -> Vec<Group> {
    let mut groups: Vec<Group> = Vec::new();
    for (rect, strength) in areas {
        let mut group = Group {
            bounds: rect,
            members: vec![rect],
            strength,
        };
        // Absorb every group this one touches; its grown bounding box may touch groups that were
        // checked earlier, so repeat until nothing changes.
        loop {
            let before = groups.len();
            let mut i = 0;
            while i < groups.len() {
                if groups[i].bounds.intersects(&group.bounds) {
                    let other = groups.swap_remove(i);
                    group.bounds = group.bounds.union(other.bounds);
                    group.members.extend(other.members);
                    group.strength = group.strength.max(other.strength);
                } else {
                    i += 1;
                }
            }
            if groups.len() == before {
                break;
            }
        }
        groups.push(group);
    }
    groups
}

/// Areas anonymised together: see [`merge_overlapping`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    pub bounds: Rect,
    pub members: Vec<Rect>,
    pub strength: usize,
}

/// How [`Canvas::anonymise`] hides a group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Anonymise {
    Blur,
    Pixelate,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlapping_areas_group_into_disjoint_bounding_boxes() {
        let r = |x0, y0, x1, y1| Rect { x0, y0, x1, y1 };
        let summary = |groups: Vec<Group>| {
            let mut v: Vec<(Rect, usize, usize)> = groups
                .into_iter()
                .map(|g| (g.bounds, g.members.len(), g.strength))
                .collect();
            v.sort_by_key(|(r, _, _)| (r.x0, r.y0));
            v
        };
        // A chain: a touches c, c touches b; d stays alone.
        let groups = merge_overlapping(vec![
            (r(0, 0, 10, 10), 2),
            (r(20, 0, 30, 10), 3),
            (r(8, 5, 22, 8), 5),
            (r(50, 50, 60, 60), 1),
        ]);
        assert_eq!(
            summary(groups),
            vec![(r(0, 0, 30, 10), 3, 5), (r(50, 50, 60, 60), 1, 1)]
        );
        // Touching edges (half-open rectangles) do not overlap.
        assert_eq!(
            merge_overlapping(vec![(r(0, 0, 10, 10), 1), (r(10, 0, 20, 10), 1)]).len(),
            2
        );
        // A bounding box grown by one merge can swallow a group met earlier in the list.
        let groups = merge_overlapping(vec![
            (r(0, 20, 5, 25), 1),
            (r(0, 0, 10, 10), 1),
            (r(8, 8, 12, 30), 1),
        ]);
        assert_eq!(summary(groups), vec![(r(0, 0, 12, 30), 3, 1)]);
        // 500 heavily overlapping areas become one group.
        let many = (0..500).map(|i| (r(i, i, i + 40, i + 40), 2)).collect();
        assert_eq!(
            summary(merge_overlapping(many)),
            vec![(r(0, 0, 539, 539), 500, 2)]
        );
    }

    #[test]
    fn blur_line_averages_and_keeps_flat_areas() {
        let mut data = vec![10u8; 8];
        let mut line = Vec::new();
        box_blur_line(&mut data, 1, 8, 1, 2, &mut line);
        assert_eq!(data, vec![10; 8]);
        let mut data = vec![0, 0, 0, 250, 0, 0, 0];
        box_blur_line(&mut data, 1, 7, 1, 1, &mut line);
        assert_eq!(data, vec![0, 0, 83, 83, 83, 0, 0]);
    }
}
