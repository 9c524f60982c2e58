//! UF2, the USB Flashing Format (Microsoft, github.com/microsoft/uf2): the file a
//! Raspberry Pi Pico in BOOTSEL mode takes by drag-and-drop onto its `RPI-RP2` drive.
//!
//! Each 512-byte block carries 256 bytes of flash at a 256-byte aligned address, with the
//! family ID flag set and the RP2040's family ID, as the bootrom wants them (RP2040
//! datasheet 2.8.4.2: it ignores blocks of another family, and takes only 256-byte
//! payloads). Addresses come from the ELF's loadable segments at their load addresses;
//! gaps inside a 256-byte page are filled with zeros.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::elf::{Elf, Load};
use super::BoardAppError;

/// First magic number (`"UF2\n"`).
pub const MAGIC_START0: u32 = 0x0A32_4655;
/// Second magic number.
pub const MAGIC_START1: u32 = 0x9E5D_5157;
/// Final magic number.
pub const MAGIC_END: u32 = 0x0AB1_6F30;
/// Flag: the `file size` field holds a family ID.
pub const FLAG_FAMILY_ID: u32 = 0x0000_2000;
/// The RP2040's family ID.
pub const RP2040_FAMILY_ID: u32 = 0xE48B_FF56;
/// Payload bytes per block (what the RP2040 bootrom accepts).
pub const PAYLOAD: usize = 256;
/// Bytes per block.
pub const BLOCK: usize = 512;

/// One parsed block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Block {
    /// Flags.
    pub flags: u32,
    /// Flash address of the payload.
    pub addr: u32,
    /// The payload.
    pub data: Vec<u8>,
    /// This block's number.
    pub index: u32,
    /// Blocks in the file.
    pub count: u32,
    /// Family ID (with [`FLAG_FAMILY_ID`]).
    pub family: u32,
}

/// The UF2 image of `loads` for `family`.
pub fn encode(loads: &[Load], family: u32) -> Vec<u8> {
    // 256-byte pages by address; later segments overwrite earlier bytes (none overlap
    // in a linked image).
    let mut pages: BTreeMap<u64, [u8; PAYLOAD]> = BTreeMap::new();
    for load in loads {
        for (i, &byte) in load.data.iter().enumerate() {
            let addr = load.addr + i as u64;
            let page = addr - addr % PAYLOAD as u64;
            pages.entry(page).or_insert([0; PAYLOAD])[(addr - page) as usize] = byte;
        }
    }
    let count = pages.len() as u32;
    let mut out = Vec::with_capacity(pages.len() * BLOCK);
    for (index, (addr, data)) in pages.into_iter().enumerate() {
        let words = [
            MAGIC_START0,
            MAGIC_START1,
            FLAG_FAMILY_ID,
            addr as u32,
            PAYLOAD as u32,
            index as u32,
            count,
            family,
        ];
        for w in words {
            out.extend_from_slice(&w.to_le_bytes());
        }
        out.extend_from_slice(&data);
        out.resize(out.len() + (BLOCK - 32 - 4 - PAYLOAD), 0);
        out.extend_from_slice(&MAGIC_END.to_le_bytes());
    }
    out
}

/// Parses a UF2 file block by block, checking every magic number, the payload size
/// (at most 476 bytes), the block numbering and the block count.
pub fn parse(bytes: &[u8]) -> Result<Vec<Block>, String> {
    if bytes.is_empty() || bytes.len() % BLOCK != 0 {
        return Err(format!(
            "{} bytes is not a whole number of 512-byte blocks",
            bytes.len()
        ));
    }
    let word = |b: &[u8], i: usize| u32::from_le_bytes(b[4 * i..4 * i + 4].try_into().unwrap());
    let total = (bytes.len() / BLOCK) as u32;
    bytes
        .chunks(BLOCK)
        .enumerate()
        .map(|(n, b)| {
            let bad = |why: String| format!("block {n}: {why}");
            if word(b, 0) != MAGIC_START0 || word(b, 1) != MAGIC_START1 {
                return Err(bad("bad start magic".into()));
            }
            if word(b, 127) != MAGIC_END {
                return Err(bad("bad end magic".into()));
            }
            let size = word(b, 4) as usize;
            if size > 476 {
                return Err(bad(format!("payload of {size} bytes (at most 476)")));
            }
            let (index, count) = (word(b, 5), word(b, 6));
            if index != n as u32 || count != total {
                return Err(bad(format!(
                    "numbered {index} of {count}, expected {n} of {total}"
                )));
            }
            Ok(Block {
                flags: word(b, 2),
                addr: word(b, 3),
                data: b[32..32 + size].to_vec(),
                index,
                count,
                family: word(b, 7),
            })
        })
        .collect()
}

/// Writes the UF2 image of the ELF at `elf` beside it (`NAME.uf2`) for `family`,
/// through a temporary file renamed into place.
pub fn write_beside(elf: &Path, family: u32) -> Result<PathBuf, BoardAppError> {
    let image = Elf::read(elf)?;
    let out = elf.with_extension("uf2");
    let tmp = elf.with_extension("uf2.partial");
    std::fs::write(&tmp, encode(&image.loads, family)).map_err(BoardAppError::io(&tmp))?;
    std::fs::rename(&tmp, &out).map_err(BoardAppError::io(&out))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_cover_every_loaded_byte_at_its_address() {
        let loads = [
            Load {
                addr: 0x1000_0000,
                data: (0..=255u8).collect(),
            },
            // Unaligned start and a page shared with nothing else.
            Load {
                addr: 0x1000_0130,
                data: vec![0xAB; 300],
            },
        ];
        let uf2 = encode(&loads, RP2040_FAMILY_ID);
        assert_eq!(uf2.len(), 3 * BLOCK);
        let blocks = parse(&uf2).unwrap();
        let addrs: Vec<u32> = blocks.iter().map(|b| b.addr).collect();
        assert_eq!(addrs, [0x1000_0000, 0x1000_0100, 0x1000_0200]);
        for b in &blocks {
            assert_eq!(
                (b.flags, b.family, b.count, b.data.len()),
                (FLAG_FAMILY_ID, RP2040_FAMILY_ID, 3, PAYLOAD)
            );
        }
        assert_eq!(blocks[0].data, loads[0].data);
        assert_eq!(&blocks[1].data[..0x30], &[0; 0x30]);
        assert_eq!(&blocks[1].data[0x30..], &[0xAB; 0xD0]);
        assert_eq!(&blocks[2].data[..300 - 0xD0], &vec![0xAB; 300 - 0xD0][..]);
        assert_eq!(
            &blocks[2].data[300 - 0xD0..],
            &vec![0; 256 - (300 - 0xD0)][..]
        );
    }

    #[test]
    fn damaged_files_are_refused() {
        let mut uf2 = encode(
            &[Load {
                addr: 0x1000_0000,
                data: vec![1; 600],
            }],
            RP2040_FAMILY_ID,
        );
        assert!(parse(&uf2[..700]).unwrap_err().contains("512-byte"));
        uf2[BLOCK + 20] = 7; // block number of block 1
        assert!(parse(&uf2).unwrap_err().contains("block 1"));
        uf2[BLOCK + 20] = 1;
        uf2[BLOCK - 1] ^= 0xFF;
        assert!(parse(&uf2).unwrap_err().contains("end magic"));
    }
}
