//! A TPACKET_V2 receive ring: the kernel copies each frame into memory shared with wanlb
//! (in the context that received it, often another CPU's) and wanlb reads it in place,
//! without a syscall per frame.
//!
//! V2 rather than V3: V3 hands over whole blocks, retired by a timer of a millisecond or
//! more when traffic is light, which would add that to every ping. V2 frames are fixed-size
//! slots, each big enough for a 64 KiB GSO frame.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicU32, Ordering};

use super::fd::setsockopt;

const PACKET_RX_RING: libc::c_int = 5;
const PACKET_VERSION: libc::c_int = 10;
const TPACKET_V2: libc::c_int = 1;
const TP_STATUS_KERNEL: u32 = 0;
const TP_STATUS_USER: u32 = 1;

/// `struct tpacket_req`.
#[repr(C)]
struct TpacketReq {
    block_size: u32,
    block_nr: u32,
    frame_size: u32,
    frame_nr: u32,
}

/// Offsets in `struct tpacket2_hdr`, at the start of each slot.
const HDR_STATUS: usize = 0;
const HDR_LEN: usize = 4;
const HDR_SNAPLEN: usize = 8;
const HDR_MAC: usize = 12;

/// Room for a 64 KiB GSO frame, the slot header and the virtio-net header; a whole number of
/// pages, as the kernel requires of a block (one frame per block).
pub const FRAME_SIZE: usize = 65536 + 4096;

#[derive(Debug)]
pub struct RxRing {
    base: *mut u8,
    frames: usize,
    next: std::cell::Cell<usize>,
}

// SAFETY: the ring's memory belongs to the socket and lives until drop; one worker owns the
// socket and its ring, and moving it to that worker's thread is all that happens.
unsafe impl Send for RxRing {}

/// What a drained frame looked like to the caller.
pub enum Frame<'a> {
    /// `[virtio-net header][Ethernet frame]`, writable in place.
    Whole(&'a mut [u8]),
    /// Bigger than a slot; cut short by the kernel and skipped.
    Truncated,
}

impl RxRing {
    /// Sets up a ring of `frames` slots on `fd`, which must have PACKET_VNET_HDR set and not
    /// be bound yet.
    pub fn new(fd: &OwnedFd, frames: usize) -> io::Result<RxRing> {
        setsockopt(fd, libc::SOL_PACKET, PACKET_VERSION, &TPACKET_V2)?;
        let req = TpacketReq {
            block_size: FRAME_SIZE as u32,
            block_nr: frames as u32,
            frame_size: FRAME_SIZE as u32,
            frame_nr: frames as u32,
        };
        setsockopt(fd, libc::SOL_PACKET, PACKET_RX_RING, &req)?;
        // SAFETY: maps the ring the kernel just allocated for `fd`, its exact size; the
        // mapping is checked below and unmapped on drop.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                FRAME_SIZE * frames,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(RxRing {
            base: base.cast(),
            frames,
            next: std::cell::Cell::new(0),
        })
    }

    fn status(&self, slot: *mut u8) -> &AtomicU32 {
        // SAFETY: every slot starts with the 4-byte-aligned status word the kernel and we
        // hand the slot over with; AtomicU32 has u32's layout.
        unsafe { &*(slot.add(HDR_STATUS) as *const AtomicU32) }
    }

    /// Hands each frame the kernel has filled (at most `budget`) to `f`, in order, and gives
    /// its slot back. Returns how many were handed over.
    pub fn drain(&self, budget: usize, f: &mut dyn FnMut(Frame<'_>)) -> usize {
        let mut done = 0;
        while done < budget {
            let i = self.next.get();
            // SAFETY: i < frames, so the slot lies inside the mapping.
            let slot = unsafe { self.base.add(i * FRAME_SIZE) };
            // Acquire: the frame's bytes are visible once its status says it is ours.
            if self.status(slot).load(Ordering::Acquire) & TP_STATUS_USER == 0 {
                break;
            }
            let read = |at: usize, n: usize| -> usize {
                let mut b = [0u8; 4];
                // SAFETY: the header fields lie within the slot's first 32 bytes.
                unsafe { std::ptr::copy_nonoverlapping(slot.add(at), b.as_mut_ptr(), n) };
                if n == 2 {
                    usize::from(u16::from_ne_bytes([b[0], b[1]]))
                } else {
                    u32::from_ne_bytes(b) as usize
                }
            };
            let (len, snaplen, mac) = (read(HDR_LEN, 4), read(HDR_SNAPLEN, 4), read(HDR_MAC, 2));
            let start = mac.saturating_sub(super::vnet::LEN);
            if snaplen < len || start < 32 || mac + snaplen > FRAME_SIZE {
                f(Frame::Truncated);
            } else {
                // SAFETY: [start, mac + snaplen) lies inside this slot, which the kernel does
                // not touch until we give it back below.
                let frame = unsafe {
                    std::slice::from_raw_parts_mut(slot.add(start), mac + snaplen - start)
                };
                f(Frame::Whole(frame));
            }
            // Release: our writes to the slot are done before the kernel may reuse it.
            self.status(slot).store(TP_STATUS_KERNEL, Ordering::Release);
            self.next.set((i + 1) % self.frames);
            done += 1;
        }
        done
    }
}

impl Drop for RxRing {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping made in `new`; nothing refers to it any more.
        unsafe {
            libc::munmap(self.base.cast(), FRAME_SIZE * self.frames);
        }
    }
}
