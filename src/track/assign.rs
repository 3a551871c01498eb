//! The tracker's association: an optimal one-to-one assignment of boxes to boxes on IoU, gated
//! by a minimum IoU (see the module documentation of [`super`]).

use pathfinding::kuhn_munkres::kuhn_munkres;
use pathfinding::matrix::Matrix;

use crate::geometry::iou;

/// Fixed-point scale of the IoU weights given to the integer Kuhn–Munkres solver.
const IOU_SCALE: f32 = 1.0e6;

/// Optimal one-to-one matching between boxes `a` (rows) and `b` (columns): among pairs with
/// `IoU >= gate` (and `IoU > 0`), the matching that maximises `Σ (IoU − gate)`. Returns
/// `(row, column)` pairs.
pub(super) fn associate(a: &[[f32; 4]], b: &[[f32; 4]], gate: f32) -> Vec<(usize, usize)> {
    if a.is_empty() || b.is_empty() {
        return Vec::new();
    }
    let weight = |x: &[f32; 4], y: &[f32; 4]| -> i64 {
        let v = iou(x, y);
        if v > 0.0 && v >= gate {
            // +1 so that a pair exactly at the gate still counts as a match.
            ((v - gate) * IOU_SCALE) as i64 + 1
        } else {
            0
        }
    };
    let (n, m) = (a.len(), b.len());
    let mut weights = vec![0i64; n * m];
    for (i, x) in a.iter().enumerate() {
        for (j, y) in b.iter().enumerate() {
            weights[i * m + j] = weight(x, y);
        }
    }
    let at = |i: usize, j: usize| weights[i * m + j];

    // The problem splits into the connected components of the graph of admissible pairs; faces
    // that do not overlap one another make components of one track and one detection, which
    // need no solver. Each larger component goes to Kuhn–Munkres on its own.
    let mut matches = Vec::new();
    let mut row_seen = vec![false; n];
    let mut col_seen = vec![false; m];
    let (mut rows, mut cols, mut queue) = (Vec::new(), Vec::new(), Vec::new());
    for start in 0..n {
        if row_seen[start] {
            continue;
        }
        row_seen[start] = true;
        rows.clear();
        cols.clear();
        queue.clear();
        queue.push(start);
        while let Some(i) = queue.pop() {
            rows.push(i);
            for (j, col) in col_seen.iter_mut().enumerate() {
                if !*col && at(i, j) > 0 {
                    *col = true;
                    cols.push(j);
                    for (k, seen) in row_seen.iter_mut().enumerate() {
                        if !*seen && at(k, j) > 0 {
                            *seen = true;
                            queue.push(k);
                        }
                    }
                }
            }
        }
        match (rows.len(), cols.len()) {
            (_, 0) => {}
            (1, 1) => matches.push((rows[0], cols[0])),
            _ => solve(&rows, &cols, &at, &mut matches),
        }
    }
    matches
}

/// Kuhn–Munkres on the `rows` × `cols` part of the weights; pushes the pairs with a positive
/// weight.
fn solve(
    rows: &[usize],
    cols: &[usize],
    at: &impl Fn(usize, usize) -> i64,
    matches: &mut Vec<(usize, usize)>,
) {
    // The solver wants no more rows than columns.
    let transposed = rows.len() > cols.len();
    let (outer, inner) = if transposed {
        (cols, rows)
    } else {
        (rows, cols)
    };
    let pair = |o: usize, n: usize| {
        if transposed {
            (inner[n], outer[o])
        } else {
            (outer[o], inner[n])
        }
    };
    let values: Vec<i64> = (0..outer.len())
        .flat_map(|o| (0..inner.len()).map(move |n| pair(o, n)))
        .map(|(i, j)| at(i, j))
        .collect();
    let matrix = Matrix::from_vec(outer.len(), inner.len(), values).expect("sizes match");
    let (_, assignment) = kuhn_munkres(&matrix);
    matches.extend(
        assignment
            .into_iter()
            .enumerate()
            .map(|(o, n)| pair(o, n))
            .filter(|&(i, j)| at(i, j) > 0),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn association_is_optimal_not_greedy() {
        // Row 0 overlaps column 0 best (IoU 0.9), but taking that pair leaves row 1 without
        // any admissible column; the optimum pairs 0–1 and 1–0.
        let t: [[f32; 4]; 2] = [[0.0, 0.0, 100.0, 100.0], [0.0, 0.0, 100.0, 80.0]];
        let d = [[0.0, 0.0, 100.0, 90.0], [0.0, 0.0, 100.0, 140.0]];
        assert!((iou(&t[0], &d[0]) - 0.9).abs() < 1e-6);
        assert!((iou(&t[1], &d[1]) - 80.0 / 140.0).abs() < 1e-6);
        let gate = 0.6;
        assert!(iou(&t[1], &d[1]) < gate);
        let mut m = associate(&t, &d, gate);
        m.sort();
        assert_eq!(m, [(0, 1), (1, 0)]);
        // More rows than columns, and the reverse, both work (the solver wants rows ≤ columns).
        assert_eq!(associate(&t, &d[..1], gate), [(0, 0)]);
        assert_eq!(associate(&t[1..], &d, gate), [(0, 0)]);
        // Nothing admissible: nothing matched; IoU 0 never matches, even with gate 0.
        assert!(associate(&t, &[[500.0, 500.0, 600.0, 600.0]], 0.0).is_empty());
        assert!(associate(&t, &d, 0.95).is_empty());
    }
}
