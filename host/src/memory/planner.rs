//! Places each buffer whole into one RAM region of the board.
//!
//! 1. The reserve (stack + runtime) goes into the profile's reserve region.
//! 2. Membrane buffers, largest first, go into the fast core-coupled memory (DTCM, CCM)
//!    with the most free space, when one has room.
//! 3. Every other buffer, largest first, goes into the data region with the most free
//!    space that can hold it; if none can, into the one with the most free space, which
//!    then overflows (and the estimate says by how much).
//!
//! Ties go to the region listed first in the profile, so placement is deterministic.

use crate::boards::{Profile, RegionKind};

use super::{Buffer, BufferKind, RegionUse};

/// Place `buffers` (setting their `region`) and return the use of every region of the
/// board in profile order; the flash region is charged `flash_bytes`.
pub(super) fn place(buffers: &mut [Buffer], board: &Profile, flash_bytes: u64) -> Vec<RegionUse> {
    let mut regions: Vec<RegionUse> = board
        .regions
        .iter()
        .map(|r| RegionUse {
            name: r.name.clone(),
            kind: r.kind,
            used: if r.kind == RegionKind::Flash {
                flash_bytes
            } else {
                0
            },
            capacity: board.capacity_of(r),
        })
        .collect();
    let free = |r: &RegionUse| r.capacity as i128 - r.used as i128;
    let reserve_at = board
        .reserve_region()
        .and_then(|rr| regions.iter().position(|r| r.name == rr.name))
        .or_else(|| regions.iter().position(|r| r.kind.holds_data()));

    let mut order: Vec<usize> = (0..buffers.len()).collect();
    // Stable: equal sizes keep the network's order.
    order.sort_by_key(|&i| std::cmp::Reverse(buffers[i].bytes));

    let put = |regions: &mut [RegionUse], buffer: &mut Buffer, at: usize| {
        regions[at].used += buffer.bytes;
        buffer.region.clone_from(&regions[at].name);
    };
    // The region with the most free space among `ok`, needing `bytes` if `must_fit`.
    let best =
        |regions: &[RegionUse], ok: &dyn Fn(RegionKind) -> bool, bytes: u64, must_fit: bool| {
            let mut pick: Option<usize> = None;
            for (i, r) in regions.iter().enumerate() {
                if !ok(r.kind) || (must_fit && free(r) < bytes as i128) {
                    continue;
                }
                if pick.is_none_or(|p| free(r) > free(&regions[p])) {
                    pick = Some(i);
                }
            }
            pick
        };

    for &i in &order {
        if buffers[i].kind == BufferKind::Reserve {
            if let Some(at) = reserve_at {
                put(&mut regions, &mut buffers[i], at);
            }
        }
    }
    for &i in &order {
        if buffers[i].kind == BufferKind::Membrane {
            if let Some(at) = best(&regions, &RegionKind::is_fast_data, buffers[i].bytes, true) {
                put(&mut regions, &mut buffers[i], at);
            }
        }
    }
    for &i in &order {
        if !buffers[i].region.is_empty() || buffers[i].kind == BufferKind::Reserve {
            continue;
        }
        let bytes = buffers[i].bytes;
        let at = best(&regions, &RegionKind::holds_data, bytes, true)
            .or_else(|| best(&regions, &RegionKind::holds_data, bytes, false));
        if let Some(at) = at {
            put(&mut regions, &mut buffers[i], at);
        }
    }
    regions
}
