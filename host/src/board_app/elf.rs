//! Reads what the device path needs from a 32-bit little-endian ARM ELF: allocated
//! sections (name, address, load address, size, whether they occupy file bytes) and
//! symbol addresses. Written here instead of parsing `arm-none-eabi-size -A`, so sizes
//! need no external tool and the load address of `.data` (its copy in flash) is exact.

use std::path::Path;

use super::BoardAppError;

const SHT_SYMTAB: u32 = 2;
const SHT_NOBITS: u32 = 8;
const SHF_WRITE: u32 = 1;
const SHF_ALLOC: u32 = 2;
const PT_LOAD: u32 = 1;

/// One allocated section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Section {
    /// Name, e.g. `.text`.
    pub name: String,
    /// Run-time address (VMA).
    pub addr: u64,
    /// Load address (LMA): where its initial bytes are stored; equal to `addr` except
    /// for initialised RAM data (`.data`), whose initial image lives in flash.
    pub load_addr: u64,
    /// Size in bytes.
    pub size: u64,
    /// True if the section has initial contents in the image (not `NOBITS`: `.bss`,
    /// `.uninit` and NOLOAD sections have none).
    pub has_bits: bool,
    /// True for writable sections.
    pub writable: bool,
}

/// The parts of an ELF the size report and the instruction counter use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Elf {
    /// Allocated sections of non-zero size, in file order.
    pub sections: Vec<Section>,
    /// Symbols with a name: `(name, value)`; Thumb function values have bit 0 set.
    pub symbols: Vec<(String, u64)>,
    /// The bytes a programmer writes: every `PT_LOAD` segment with file contents, at its
    /// physical (load) address, in file order.
    pub loads: Vec<Load>,
}

/// The file contents of one loadable segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Load {
    /// Physical (load) address.
    pub addr: u64,
    /// The segment's bytes in the file (`p_filesz` of them).
    pub data: Vec<u8>,
}

struct Reader<'a> {
    b: &'a [u8],
}

impl Reader<'_> {
    fn u16(&self, at: usize) -> Option<u16> {
        Some(u16::from_le_bytes(self.b.get(at..at + 2)?.try_into().ok()?))
    }
    fn u32(&self, at: usize) -> Option<u32> {
        Some(u32::from_le_bytes(self.b.get(at..at + 4)?.try_into().ok()?))
    }
    fn cstr(&self, at: usize) -> Option<String> {
        let rest = self.b.get(at..)?;
        let end = rest.iter().position(|&c| c == 0)?;
        Some(String::from_utf8_lossy(&rest[..end]).into_owned())
    }
}

struct Shdr {
    name: u32,
    kind: u32,
    flags: u32,
    addr: u32,
    offset: u32,
    size: u32,
    link: u32,
    entsize: u32,
}

impl Elf {
    /// Reads and parses the file at `path`.
    pub fn read(path: &Path) -> Result<Elf, BoardAppError> {
        let bytes = std::fs::read(path).map_err(BoardAppError::io(path))?;
        Elf::parse(&bytes).map_err(|why| BoardAppError::Elf {
            path: path.to_path_buf(),
            why,
        })
    }

    /// Parses an ELF image.
    pub fn parse(bytes: &[u8]) -> Result<Elf, String> {
        let r = Reader { b: bytes };
        if bytes.get(..4) != Some(b"\x7fELF") {
            return Err("no ELF magic".into());
        }
        if bytes[4] != 1 || bytes[5] != 1 {
            return Err("not ELFCLASS32 little endian".into());
        }
        let short = || "truncated header".to_string();
        let machine = r.u16(18).ok_or_else(short)?;
        if machine != 40 {
            return Err(format!("e_machine {machine}, expected 40 (ARM)"));
        }
        let (phoff, shoff) = (
            r.u32(28).ok_or_else(short)? as usize,
            r.u32(32).ok_or_else(short)? as usize,
        );
        let (phentsize, phnum) = (
            r.u16(42).ok_or_else(short)? as usize,
            r.u16(44).ok_or_else(short)? as usize,
        );
        let (shentsize, shnum, shstrndx) = (
            r.u16(46).ok_or_else(short)? as usize,
            r.u16(48).ok_or_else(short)? as usize,
            r.u16(50).ok_or_else(short)? as usize,
        );
        let shdr = |i: usize| -> Option<Shdr> {
            let at = shoff + i * shentsize;
            Some(Shdr {
                name: r.u32(at)?,
                kind: r.u32(at + 4)?,
                flags: r.u32(at + 8)?,
                addr: r.u32(at + 12)?,
                offset: r.u32(at + 16)?,
                size: r.u32(at + 20)?,
                link: r.u32(at + 24)?,
                entsize: r.u32(at + 36)?,
            })
        };
        let headers: Vec<Shdr> = (0..shnum)
            .map(|i| shdr(i).ok_or_else(|| format!("section header {i} out of the file")))
            .collect::<Result<_, _>>()?;
        // Load segments map a run-time address to its load address (for `.data`).
        let mut segments = Vec::new();
        let mut loads = Vec::new();
        for i in 0..phnum {
            let at = phoff + i * phentsize;
            let out_of_file = || format!("program header {i} out of the file");
            let ph = (|| Some((r.u32(at)?, r.u32(at + 8)?, r.u32(at + 12)?, r.u32(at + 20)?)))()
                .ok_or_else(out_of_file)?;
            if ph.0 == PT_LOAD {
                segments.push((ph.1 as u64, ph.2 as u64, ph.3 as u64));
                let (offset, filesz) = (
                    r.u32(at + 4).ok_or_else(out_of_file)? as usize,
                    r.u32(at + 16).ok_or_else(out_of_file)? as usize,
                );
                if filesz > 0 {
                    let data = bytes
                        .get(offset..offset + filesz)
                        .ok_or_else(|| format!("segment {i}'s bytes lie outside the file"))?;
                    loads.push(Load {
                        addr: ph.2 as u64,
                        data: data.to_vec(),
                    });
                }
            }
        }
        let strtab = headers.get(shstrndx).ok_or("no section name table")?.offset as usize;
        let mut sections = Vec::new();
        let mut symbols = Vec::new();
        for h in &headers {
            let name = r.cstr(strtab + h.name as usize).unwrap_or_default();
            if h.flags & SHF_ALLOC != 0 && h.size > 0 {
                let addr = h.addr as u64;
                let load_addr = segments
                    .iter()
                    .find(|(vaddr, _, memsz)| addr >= *vaddr && addr < vaddr + memsz)
                    .map_or(addr, |(vaddr, paddr, _)| paddr + (addr - vaddr));
                sections.push(Section {
                    name,
                    addr,
                    load_addr,
                    size: h.size as u64,
                    has_bits: h.kind != SHT_NOBITS,
                    writable: h.flags & SHF_WRITE != 0,
                });
            } else if h.kind == SHT_SYMTAB {
                let names = headers
                    .get(h.link as usize)
                    .ok_or("symbol table without names")?
                    .offset as usize;
                let entsize = (h.entsize as usize).max(16);
                for i in 0..h.size as usize / entsize {
                    let at = h.offset as usize + i * entsize;
                    let (Some(n), Some(value)) = (r.u32(at), r.u32(at + 4)) else {
                        return Err(format!("symbol {i} out of the file"));
                    };
                    if let Some(sym) = r.cstr(names + n as usize).filter(|s| !s.is_empty()) {
                        symbols.push((sym, value as u64));
                    }
                }
            }
        }
        Ok(Elf {
            sections,
            symbols,
            loads,
        })
    }

    /// The address of symbol `name` (Thumb bit cleared), if present.
    pub fn symbol(&self, name: &str) -> Option<u64> {
        self.symbols
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v & !1)
    }

    /// The size of section `name`, 0 if absent.
    pub fn section_size(&self, name: &str) -> u64 {
        self.sections
            .iter()
            .filter(|s| s.name == name)
            .map(|s| s.size)
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_non_arm_files() {
        assert!(Elf::parse(b"not an elf").unwrap_err().contains("magic"));
        // This test binary itself is a 64-bit host ELF.
        let me = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        if me.starts_with(b"\x7fELF") {
            assert!(Elf::parse(&me).unwrap_err().contains("ELFCLASS32"));
        }
    }
}
