//! Enumeration of canonical SNASNet cells: every connection matrix over an op set,
//! normalised by the validity rules (dead nodes zeroed) and de-duplicated up to the
//! one graph isomorphism the cell has (swapping nodes 1 and 2 when no edge joins
//! them), so no architecture is scored twice.

use std::collections::BTreeSet;

use crate::arch::{Cell, Op, FORWARD_PAIRS};

/// Swap nodes 1 and 2 (only meaningful when no edge joins them).
fn swap_middle(cell: &Cell) -> Cell {
    let perm = [0usize, 2, 1, 3];
    let mut out = Cell::EMPTY;
    for i in 0..4 {
        for j in 0..4 {
            out.ops[perm[i]][perm[j]] = cell.ops[i][j];
        }
    }
    out
}

/// The canonical representative of `cell`'s isomorphism class (assumes it is validated).
pub fn canonical(cell: &Cell) -> Cell {
    if cell.ops[1][2] == Op::Zero && cell.ops[2][1] == Op::Zero {
        let swapped = swap_middle(cell);
        if swapped < *cell {
            return swapped;
        }
    }
    *cell
}

/// Every distinct canonical cell whose edges use `ops` (zero is always allowed).
/// With `backward`, each of the pairs (1,2), (1,3), (2,3) may instead carry a
/// backward edge (later node's previous value into the earlier node).
pub fn enumerate(ops: &[Op], backward: bool) -> Vec<Cell> {
    let mut choices: Vec<Op> = vec![Op::Zero];
    choices.extend(ops.iter().copied().filter(|&o| o != Op::Zero));
    choices.dedup();
    let k = choices.len();
    let mut seen = BTreeSet::new();
    // Each forward pair takes an op; pairs not touching the input may be backward.
    let directions: usize = if backward { 1 << 3 } else { 1 };
    let total = k.pow(FORWARD_PAIRS.len() as u32);
    for dir in 0..directions {
        for code in 0..total {
            let mut c = code;
            let mut cell = Cell::EMPTY;
            let mut back_idx = 0;
            for &(i, j) in FORWARD_PAIRS.iter() {
                let op = choices[c % k];
                c /= k;
                if i == 0 {
                    cell.ops[i][j] = op;
                } else {
                    let is_back = dir >> back_idx & 1 == 1;
                    back_idx += 1;
                    if is_back {
                        cell.ops[j][i] = op;
                    } else {
                        cell.ops[i][j] = op;
                    }
                }
            }
            if let Ok(valid) = cell.validated() {
                seen.insert(canonical(&valid));
            }
        }
    }
    seen.into_iter().collect()
}

/// Number of convolution edges (a cheap proxy of a cell's cost).
pub fn conv_edges(cell: &Cell) -> usize {
    cell.edges()
        .iter()
        .filter(|e| e.op.kernel().is_some())
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_canonical_cells_are_valid_distinct_and_fixed_points() {
        let cells = enumerate(&Op::ALL, false);
        assert!(!cells.is_empty());
        for c in &cells {
            assert_eq!(c.validated().unwrap(), *c, "{c}");
            assert_eq!(canonical(c), *c);
            assert_ne!(c.ops[0][3], Op::Zero);
        }
        let distinct: BTreeSet<_> = cells.iter().collect();
        assert_eq!(distinct.len(), cells.len());
        // Of the 5^6 raw matrices, dead nodes and the 1<->2 symmetry leave exactly the
        // 7,012 the README states.
        assert_eq!(cells.len(), 7012);
    }

    #[test]
    fn the_shipped_op_set_has_174_cells() {
        let space = crate::search::space::SearchSpace::shipped();
        assert_eq!(enumerate(&space.ops, space.backward).len(), 174);
    }

    #[test]
    fn symmetric_cells_collapse() {
        // 0->1 conv3, 1->3 skip versus 0->2 conv3, 2->3 skip: the same graph.
        let a = Cell::forward([
            Op::Conv3x3,
            Op::Zero,
            Op::Zero,
            Op::Skip,
            Op::Skip,
            Op::Zero,
        ]);
        let b = Cell::forward([
            Op::Zero,
            Op::Conv3x3,
            Op::Zero,
            Op::Skip,
            Op::Zero,
            Op::Skip,
        ]);
        assert_eq!(
            canonical(&a.validated().unwrap()),
            canonical(&b.validated().unwrap())
        );
    }

    #[test]
    fn op_subset_and_backward_variants() {
        let only_conv = enumerate(&[Op::Conv3x3], false);
        // op03 must be conv3; nodes 1 and 2 either unused, chained or parallel.
        assert!(only_conv
            .iter()
            .all(|c| c.edges().iter().all(|e| e.op == Op::Conv3x3)));
        let with_back = enumerate(&[Op::Conv3x3], true);
        assert!(with_back.len() > only_conv.len());
        assert!(with_back.iter().any(|c| c.has_backward()));
    }
}
