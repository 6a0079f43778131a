//! Just enough eBPF to run wanlb's kernel fast path: an assembler for the instructions it
//! uses, and the `bpf(2)` commands that create maps, load programs and attach them with TCX
//! links. Hand-assembled rather than compiled from C so that building wanlb needs no clang,
//! no libbpf and no object files.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};

use super::fd::own;

pub const R0: u8 = 0;
pub const R1: u8 = 1;
pub const R2: u8 = 2;
pub const R3: u8 = 3;
pub const R4: u8 = 4;
pub const R5: u8 = 5;
pub const R6: u8 = 6;
pub const R7: u8 = 7;
pub const R8: u8 = 8;
pub const R9: u8 = 9;
/// The read-only frame pointer; the stack is the 512 bytes below it.
pub const R10: u8 = 10;

/// Operand sizes of loads and stores.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Size {
    B = 0x10,
    H = 0x08,
    W = 0x00,
    DW = 0x18,
}

/// Conditional jumps, unsigned where it matters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cond {
    Eq = 0x10,
    Gt = 0x20,
    Ne = 0x50,
    Lt = 0xa0,
    Le = 0xb0,
}

/// Helper functions, by their numbers in `enum bpf_func_id`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Helper {
    MapLookupElem = 1,
    KtimeGetNs = 5,
    L3CsumReplace = 10,
    L4CsumReplace = 11,
    Redirect = 23,
    SkbPullData = 39,
    RedirectNeigh = 152,
    CheckMtu = 163,
}

const CLASS_LD: u8 = 0x00;
const CLASS_LDX: u8 = 0x01;
const CLASS_STX: u8 = 0x03;
const CLASS_ALU: u8 = 0x04;
const CLASS_JMP: u8 = 0x05;
const CLASS_ALU64: u8 = 0x07;
const MODE_IMM: u8 = 0x00;
const MODE_MEM: u8 = 0x60;
const SRC_X: u8 = 0x08;
const ALU_ADD: u8 = 0x00;
const ALU_OR: u8 = 0x40;
const ALU_AND: u8 = 0x50;
const ALU_LSH: u8 = 0x60;
const ALU_MOV: u8 = 0xb0;
const ALU_END: u8 = 0xd0;
/// With ALU_END: convert to big-endian (a swap on little-endian machines).
const END_TO_BE: u8 = 0x08;
const JMP_JA: u8 = 0x00;
const JMP_CALL: u8 = 0x80;
const JMP_EXIT: u8 = 0x90;
/// `src_reg` of a 64-bit immediate load that names a map by descriptor.
const PSEUDO_MAP_FD: u8 = 1;

/// One 8-byte instruction, laid out as `struct bpf_insn`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C)]
pub struct Insn {
    code: u8,
    regs: u8,
    off: i16,
    imm: i32,
}

impl Insn {
    fn new(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
        Insn {
            code,
            regs: (src << 4) | dst,
            off,
            imm,
        }
    }

    pub fn to_bytes(self) -> [u8; 8] {
        let mut b = [0u8; 8];
        b[0] = self.code;
        b[1] = self.regs;
        b[2..4].copy_from_slice(&self.off.to_le_bytes());
        b[4..8].copy_from_slice(&self.imm.to_le_bytes());
        b
    }
}

/// A jump target, bound to a position with [`Asm::bind`].
#[derive(Clone, Copy, Debug)]
pub struct Label(usize);

/// Builds a program, resolving forward jumps when it is finished.
#[derive(Debug, Default)]
pub struct Asm {
    insns: Vec<Insn>,
    labels: Vec<Option<usize>>,
    jumps: Vec<(usize, Label)>,
}

impl Asm {
    pub fn label(&mut self) -> Label {
        self.labels.push(None);
        Label(self.labels.len() - 1)
    }

    pub fn bind(&mut self, l: Label) {
        self.labels[l.0] = Some(self.insns.len());
    }

    fn emit(&mut self, i: Insn) -> &mut Self {
        self.insns.push(i);
        self
    }

    pub fn mov(&mut self, dst: u8, src: u8) -> &mut Self {
        self.emit(Insn::new(CLASS_ALU64 | ALU_MOV | SRC_X, dst, src, 0, 0))
    }

    pub fn mov_imm(&mut self, dst: u8, imm: i32) -> &mut Self {
        self.emit(Insn::new(CLASS_ALU64 | ALU_MOV, dst, 0, 0, imm))
    }

    pub fn add(&mut self, dst: u8, src: u8) -> &mut Self {
        self.emit(Insn::new(CLASS_ALU64 | ALU_ADD | SRC_X, dst, src, 0, 0))
    }

    pub fn add_imm(&mut self, dst: u8, imm: i32) -> &mut Self {
        self.emit(Insn::new(CLASS_ALU64 | ALU_ADD, dst, 0, 0, imm))
    }

    pub fn and_imm(&mut self, dst: u8, imm: i32) -> &mut Self {
        self.emit(Insn::new(CLASS_ALU64 | ALU_AND, dst, 0, 0, imm))
    }

    pub fn or_imm(&mut self, dst: u8, imm: i32) -> &mut Self {
        self.emit(Insn::new(CLASS_ALU64 | ALU_OR, dst, 0, 0, imm))
    }

    pub fn lsh_imm(&mut self, dst: u8, imm: i32) -> &mut Self {
        self.emit(Insn::new(CLASS_ALU64 | ALU_LSH, dst, 0, 0, imm))
    }

    /// `dst = be16(dst)`: the low 16 bits byte-swapped (on a little-endian machine), zero
    /// extended.
    pub fn be16(&mut self, dst: u8) -> &mut Self {
        self.emit(Insn::new(CLASS_ALU | ALU_END | END_TO_BE, dst, 0, 0, 16))
    }

    /// `dst = *(size *)(src + off)`
    pub fn load(&mut self, size: Size, dst: u8, src: u8, off: i16) -> &mut Self {
        self.emit(Insn::new(
            CLASS_LDX | MODE_MEM | size as u8,
            dst,
            src,
            off,
            0,
        ))
    }

    /// `*(size *)(dst + off) = src`
    pub fn store(&mut self, size: Size, dst: u8, off: i16, src: u8) -> &mut Self {
        self.emit(Insn::new(
            CLASS_STX | MODE_MEM | size as u8,
            dst,
            src,
            off,
            0,
        ))
    }

    pub fn jump_if_imm(&mut self, cond: Cond, dst: u8, imm: i32, to: Label) -> &mut Self {
        self.jumps.push((self.insns.len(), to));
        self.emit(Insn::new(CLASS_JMP | cond as u8, dst, 0, 0, imm))
    }

    pub fn jump_if(&mut self, cond: Cond, dst: u8, src: u8, to: Label) -> &mut Self {
        self.jumps.push((self.insns.len(), to));
        self.emit(Insn::new(CLASS_JMP | cond as u8 | SRC_X, dst, src, 0, 0))
    }

    pub fn jump(&mut self, to: Label) -> &mut Self {
        self.jumps.push((self.insns.len(), to));
        self.emit(Insn::new(CLASS_JMP | JMP_JA, 0, 0, 0, 0))
    }

    pub fn call(&mut self, helper: Helper) -> &mut Self {
        self.emit(Insn::new(CLASS_JMP | JMP_CALL, 0, 0, 0, helper as i32))
    }

    pub fn exit(&mut self) -> &mut Self {
        self.emit(Insn::new(CLASS_JMP | JMP_EXIT, 0, 0, 0, 0))
    }

    /// `dst = map` (a two-slot instruction the kernel turns into the map's address).
    pub fn load_map(&mut self, dst: u8, map: &Map) -> &mut Self {
        let code = CLASS_LD | MODE_IMM | Size::DW as u8;
        self.emit(Insn::new(code, dst, PSEUDO_MAP_FD, 0, map.fd.as_raw_fd()));
        self.emit(Insn::new(0, 0, 0, 0, 0))
    }

    /// The instructions, jumps resolved. Panics on an unbound label or a jump too far: both
    /// are mistakes in the program's source, not in its input.
    pub fn finish(mut self) -> Vec<Insn> {
        for &(at, label) in &self.jumps {
            let target = self.labels[label.0].expect("jump to an unbound label");
            let off = target as isize - (at as isize + 1);
            self.insns[at].off = i16::try_from(off).expect("jump out of range");
        }
        self.insns
    }
}

const BPF_MAP_CREATE: libc::c_long = 0;
const BPF_MAP_LOOKUP_ELEM: libc::c_long = 1;
const BPF_MAP_UPDATE_ELEM: libc::c_long = 2;
const BPF_MAP_DELETE_ELEM: libc::c_long = 3;
const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_TEST_RUN: libc::c_long = 10;
const BPF_LINK_CREATE: libc::c_long = 28;
const BPF_PROG_TYPE_SCHED_CLS: u32 = 3;
/// `enum bpf_attach_type`: TCX (Linux 6.6) attaches through a link, so the program detaches
/// itself when wanlb exits, however it exits.
const BPF_TCX_INGRESS: u32 = 46;

pub const MAP_HASH: u32 = 1;
pub const MAP_ARRAY: u32 = 2;
pub const MAP_PERCPU_ARRAY: u32 = 6;
/// Hash maps allocate entries as they are added instead of all up front.
pub const MAP_NO_PREALLOC: u32 = 1;

/// `union bpf_attr`, as bytes: each command fills the fields it uses and leaves the rest 0.
struct Attr([u64; 16]);

impl Attr {
    fn new() -> Attr {
        Attr([0; 16])
    }

    fn u32_at(&mut self, off: usize, v: u32) -> &mut Self {
        let word = &mut self.0[off / 8];
        let shift = (off % 8) * 8;
        *word = (*word & !(0xffff_ffffu64 << shift)) | (u64::from(v) << shift);
        self
    }

    fn u64_at(&mut self, off: usize, v: u64) -> &mut Self {
        self.0[off / 8] = v;
        self
    }

    fn call(&mut self, cmd: libc::c_long) -> io::Result<libc::c_int> {
        // SAFETY: `self.0` is a zero-filled `union bpf_attr` of the size passed, whose pointer
        // fields (set by the callers) point to buffers that outlive the call.
        let ret = unsafe {
            libc::syscall(
                libc::SYS_bpf,
                cmd,
                self.0.as_mut_ptr(),
                std::mem::size_of_val(&self.0),
            )
        };
        if ret < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(ret as libc::c_int)
        }
    }
}

fn name_bytes(name: &str) -> [u64; 2] {
    let mut b = [0u8; 16];
    for (d, s) in b.iter_mut().zip(name.bytes().take(15)) {
        *d = s;
    }
    [
        u64::from_le_bytes(b[..8].try_into().expect("8 bytes")),
        u64::from_le_bytes(b[8..].try_into().expect("8 bytes")),
    ]
}

/// A BPF map, freed when the last descriptor (ours, or a loaded program's reference) goes.
#[derive(Debug)]
pub struct Map {
    fd: OwnedFd,
    key_size: usize,
    /// What a lookup or update moves: the value, or for a per-CPU map one value (rounded
    /// up to 8 bytes) per possible CPU.
    buffer_size: usize,
}

impl Map {
    pub fn create(
        name: &str,
        kind: u32,
        key_size: usize,
        value_size: usize,
        max_entries: u32,
        flags: u32,
    ) -> io::Result<Map> {
        let mut a = Attr::new();
        a.u32_at(0, kind)
            .u32_at(4, key_size as u32)
            .u32_at(8, value_size as u32)
            .u32_at(12, max_entries)
            .u32_at(16, flags);
        let [n0, n1] = name_bytes(name);
        // map_name starts at byte 28, not 8-aligned: write it 4 bytes at a time
        for (i, chunk) in [n0 as u32, (n0 >> 32) as u32, n1 as u32, (n1 >> 32) as u32]
            .into_iter()
            .enumerate()
        {
            a.u32_at(28 + 4 * i, chunk);
        }
        let buffer_size = if kind == MAP_PERCPU_ARRAY {
            value_size.next_multiple_of(8) * possible_cpus()?
        } else {
            value_size
        };
        Ok(Map {
            fd: own(a.call(BPF_MAP_CREATE)?)?,
            key_size,
            buffer_size,
        })
    }

    /// The size of the value buffer [`Map::lookup`] and [`Map::update`] take.
    pub fn buffer_size(&self) -> usize {
        self.buffer_size
    }

    /// The kernel reads the key and reads or writes the whole value buffer: both sizes are
    /// checked here, so a wrong one is a panic rather than memory out of bounds.
    fn elem_attr(&self, key: &[u8], value: Option<&[u8]>) -> Attr {
        assert_eq!(key.len(), self.key_size, "map key of the wrong size");
        if let Some(v) = value {
            assert_eq!(v.len(), self.buffer_size, "map value of the wrong size");
        }
        let mut a = Attr::new();
        a.u32_at(0, self.fd.as_raw_fd() as u32)
            .u64_at(8, key.as_ptr() as u64)
            .u64_at(16, value.map_or(0, |v| v.as_ptr() as u64));
        a
    }

    pub fn update(&self, key: &[u8], value: &[u8]) -> io::Result<()> {
        self.elem_attr(key, Some(value))
            .call(BPF_MAP_UPDATE_ELEM)
            .map(drop)
    }

    /// Reads the value under `key` into `value` (of [`Map::buffer_size`] bytes); false if
    /// there is none.
    pub fn lookup(&self, key: &[u8], value: &mut [u8]) -> io::Result<bool> {
        match self.elem_attr(key, Some(value)).call(BPF_MAP_LOOKUP_ELEM) {
            Ok(_) => Ok(true),
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(false),
            Err(e) => Err(e),
        }
    }

    pub fn delete(&self, key: &[u8]) -> io::Result<()> {
        match self.elem_attr(key, None).call(BPF_MAP_DELETE_ELEM) {
            Err(e) if e.raw_os_error() != Some(libc::ENOENT) => Err(e),
            _ => Ok(()),
        }
    }
}

/// How many values a per-CPU map holds: one per possible CPU ("0-3,6" is 5).
fn possible_cpus() -> io::Result<usize> {
    let text = std::fs::read_to_string("/sys/devices/system/cpu/possible")?;
    Ok(count_cpus(text.trim()))
}

fn count_cpus(list: &str) -> usize {
    list.split(',')
        .filter_map(|part| {
            let (first, last) = part.split_once('-').unwrap_or((part, part));
            Some(last.parse::<usize>().ok()? + 1 - first.parse::<usize>().ok()?)
        })
        .sum::<usize>()
        .max(1)
}

/// A loaded traffic-control program.
#[derive(Debug)]
pub struct Program {
    fd: OwnedFd,
}

impl Program {
    /// Loads `insns` as a `sched_cls` program. On refusal the error carries the verifier's
    /// log, which names the instruction it objects to.
    pub fn load_tc(name: &str, insns: &[Insn]) -> io::Result<Program> {
        let code: Vec<u8> = insns.iter().flat_map(|i| i.to_bytes()).collect();
        let license = c"Dual MIT/GPL";
        let mut a = Attr::new();
        a.u32_at(0, BPF_PROG_TYPE_SCHED_CLS)
            .u32_at(4, insns.len() as u32)
            .u64_at(8, code.as_ptr() as u64)
            .u64_at(16, license.as_ptr() as u64);
        let [n0, n1] = name_bytes(name);
        a.u64_at(48, n0).u64_at(56, n1);
        if let Ok(fd) = a.call(BPF_PROG_LOAD) {
            return Ok(Program { fd: own(fd)? });
        }
        // Refused: load again with the verifier's log on, to say why.
        let mut log = vec![0u8; 1 << 20];
        a.u32_at(24, 1)
            .u32_at(28, log.len() as u32)
            .u64_at(32, log.as_mut_ptr() as u64);
        match a.call(BPF_PROG_LOAD) {
            Ok(fd) => Ok(Program { fd: own(fd)? }),
            Err(e) => {
                let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
                let text = String::from_utf8_lossy(&log[..end]);
                let tail: Vec<&str> = text.lines().rev().take(12).collect();
                let tail: Vec<&str> = tail.into_iter().rev().collect();
                Err(io::Error::new(
                    e.kind(),
                    format!(
                        "the kernel refused BPF program {name}: {e}\n{}",
                        tail.join("\n")
                    ),
                ))
            }
        }
    }

    /// Runs the program once on `frame` (an Ethernet frame, handed to it by the current
    /// namespace's loopback device but marked as arrived on `ingress_ifindex`) without
    /// sending anything: its return value and the frame as the program left it.
    pub fn test_run(&self, frame: &[u8], ingress_ifindex: u32) -> io::Result<(i32, Vec<u8>)> {
        let mut out = vec![0u8; frame.len() + 256];
        // struct __sk_buff (192 bytes): only ingress_ifindex set
        let mut ctx = [0u8; 192];
        ctx[36..40].copy_from_slice(&ingress_ifindex.to_le_bytes());
        let mut a = Attr::new();
        a.u32_at(0, self.fd.as_raw_fd() as u32)
            .u32_at(8, frame.len() as u32)
            .u32_at(12, out.len() as u32)
            .u64_at(16, frame.as_ptr() as u64)
            .u64_at(24, out.as_mut_ptr() as u64)
            .u32_at(32, 1)
            .u32_at(40, ctx.len() as u32)
            .u64_at(48, ctx.as_ptr() as u64);
        a.call(BPF_PROG_TEST_RUN)?;
        let retval = (a.0[0] >> 32) as u32 as i32;
        let len = (a.0[1] >> 32) as usize;
        out.truncate(len);
        Ok((retval, out))
    }

    /// Runs the program on every packet `ifindex` receives, before the IP stack and
    /// netfilter, until the returned link is dropped.
    pub fn attach_ingress(&self, ifindex: u32) -> io::Result<Link> {
        let mut a = Attr::new();
        a.u32_at(0, self.fd.as_raw_fd() as u32)
            .u32_at(4, ifindex)
            .u32_at(8, BPF_TCX_INGRESS);
        Ok(Link {
            _fd: own(a.call(BPF_LINK_CREATE)?)?,
        })
    }
}

/// An attached program; closing it detaches the program.
#[derive(Debug)]
pub struct Link {
    _fd: OwnedFd,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instructions_encode_as_the_kernel_reads_them() {
        let mut a = Asm::default();
        let out = a.label();
        a.mov_imm(R0, -1)
            .load(Size::W, R2, R1, 76)
            .store(Size::H, R10, -8, R3)
            .be16(R2)
            .jump_if_imm(Cond::Ne, R2, 0x45, out)
            .call(Helper::Redirect);
        a.bind(out);
        a.exit();
        let bytes: Vec<[u8; 8]> = a.finish().into_iter().map(Insn::to_bytes).collect();
        assert_eq!(
            bytes,
            [
                [0xb7, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff], // r0 = -1
                [0x61, 0x12, 0x4c, 0x00, 0x00, 0x00, 0x00, 0x00], // r2 = *(u32 *)(r1 + 76)
                [0x6b, 0x3a, 0xf8, 0xff, 0x00, 0x00, 0x00, 0x00], // *(u16 *)(r10 - 8) = r3
                [0xdc, 0x02, 0x00, 0x00, 0x10, 0x00, 0x00, 0x00], // r2 = be16 r2
                [0x55, 0x02, 0x01, 0x00, 0x45, 0x00, 0x00, 0x00], // if r2 != 0x45 goto +1
                [0x85, 0x00, 0x00, 0x00, 0x17, 0x00, 0x00, 0x00], // call bpf_redirect
                [0x95, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00], // exit
            ]
        );
    }

    #[test]
    fn cpu_lists_count_every_cpu_in_them() {
        assert_eq!(count_cpus("0"), 1);
        assert_eq!(count_cpus("0-1"), 2);
        assert_eq!(count_cpus("0-3,6"), 5);
        assert_eq!(count_cpus("0,2-3"), 3);
    }

    #[test]
    fn attr_fields_land_at_their_byte_offsets() {
        let mut a = Attr::new();
        a.u32_at(4, 0x1122_3344).u32_at(28, 7).u64_at(8, 9);
        assert_eq!(a.0[0], 0x1122_3344_0000_0000);
        assert_eq!(a.0[1], 9);
        assert_eq!(a.0[3], 7 << 32);
    }
}
