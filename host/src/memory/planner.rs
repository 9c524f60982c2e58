//! Places each buffer whole into one RAM region of the board, by the same rule the
//! firmware generator links by (host/src/board_app/codegen.rs calls [`membrane_region`]):
//!
//! 1. The membranes (the LIF state, kept over the timesteps of an image) go into the
//!    fast core-coupled memory (CCM, DTCM) returned by [`membrane_region`], when there
//!    is one.
//! 2. Everything else, the reserve (stack + runtime) included, goes into the profile's
//!    reserve region: the generated `memory.x` calls it `RAM`, and cortex-m-rt puts
//!    `.bss`, `.data` and the stack there. A buffer that does not fit overflows that
//!    region (and the estimate says by how much): the linker would refuse it too.

use crate::boards::{Profile, Region, RegionKind};

use super::{Buffer, BufferKind, RegionUse};

/// The region that holds `membrane_bytes` of LIF membranes on `board`: the largest fast
/// data region (CCM, DTCM) other than the reserve region that can hold them all; `None`
/// (membranes stay in the reserve region) when there is none, when there are no
/// membranes, or when the board is emulated (QEMU 7.2 models no CCM/DTCM).
pub fn membrane_region(board: &Profile, membrane_bytes: u64) -> Option<&Region> {
    if membrane_bytes == 0 || board.is_emulated() {
        return None;
    }
    let ram = board.reserve_region().map(|r| r.name.as_str());
    let mut best: Option<&Region> = None;
    for r in board.data_regions() {
        if r.kind.is_fast_data()
            && Some(r.name.as_str()) != ram
            && board.capacity_of(r) >= membrane_bytes
            && best.is_none_or(|b| r.size > b.size)
        {
            best = Some(r);
        }
    }
    best
}

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
    let at = |name: &str| regions.iter().position(|r| r.name == name);
    let ram = board
        .reserve_region()
        .and_then(|r| at(&r.name))
        .or_else(|| regions.iter().position(|r| r.kind.holds_data()));
    let membranes: u64 = buffers
        .iter()
        .filter(|b| b.kind == BufferKind::Membrane)
        .map(|b| b.bytes)
        .sum();
    let fast = membrane_region(board, membranes).and_then(|r| at(&r.name));
    for b in buffers.iter_mut() {
        let to = match (b.kind, fast) {
            (BufferKind::Membrane, Some(fast)) => Some(fast),
            _ => ram,
        };
        if let Some(i) = to {
            regions[i].used += b.bytes;
            b.region.clone_from(&regions[i].name);
        }
    }
    regions
}
