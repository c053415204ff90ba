//! The global allocator of the static musl builds (the release binaries): a pool that
//! keeps freed small blocks on per-size free lists and hands them out again, over musl's
//! own allocator for everything larger.
//!
//! Why (measured on the static x86_64 musl build, docs/benchmarks.md, 2026-12-01):
//! musl's allocator (mallocng) is slow per call, and it hands emptied groups of blocks
//! back to the kernel right away and maps them again on the next allocation (clap's
//! vectors of a few KiB, grown and freed while it builds the command tree, each cost an
//! mmap, an munmap and fresh page faults). On the boot path that costs more than the
//! work. The previous answer, never freeing blocks of up to 1 KiB, made memory grow with
//! the work (`status` with 1,034 entries: 13.4 MB peak RSS). Instructions (callgrind) and
//! page faults of `enable --all --no-verify`, peak RSS of `status` with 1,034 entries:
//!
//! | allocator | instructions | page faults | `status` RSS |
//! | --- | ---: | ---: | ---: |
//! | musl's own | 1.58 M | 261 | 3.6 MB |
//! | small blocks never freed (before) | 1.16 M | 261 | 13.4 MB |
//! | mimalloc | 1.16 M | 170 | 15.1 MB |
//! | this pool | 0.94 M | 145 | 3.8 MB |
//!
//! In time (one private binfmt_misc instance, medians of 150 runs each, same run) the pool
//! was the fastest: 1.84 ms against 2.44 (never freed), 2.28 (musl) and 2.39 (mimalloc);
//! `inspect --no-cache` of 1,000 references: 1.4–1.7 s and 6.1 MB against 2.4–2.8 s and
//! 22.4 MB (never freed).
//! mimalloc's fewer page faults do not make up for its start-up work, and it holds 15–17
//! MB for `status` (target: 8 MB).
//!
//! Design: size classes of 16-byte steps up to 256 bytes, 128-byte steps up to 1 KiB,
//! then powers of two up to 32 KiB; fresh blocks are cut from 256 KiB chunks mapped with
//! MAP_POPULATE (one call instead of a page fault per page: 204 -> 145 faults); a freed
//! block goes on its class's free list (the link lives in the block). Chunks are never returned: what the
//! pool holds is bounded by the peak of live blocks, not by the total ever allocated.
//! Larger blocks go to musl. One spin lock guards the pool (archctl's threads rarely
//! allocate at the same time).
#![cfg(target_env = "musl")]

use std::{
    alloc::{GlobalAlloc, Layout, System},
    cell::UnsafeCell,
    sync::atomic::{AtomicBool, Ordering},
};

/// Blocks up to this size (and alignment up to 16) come from the pool.
const MAX: usize = 32 * 1024;
/// 16 classes of 16-byte steps (16..=256), 6 of 128-byte steps (384..=1024), then 5
/// powers of two (2 KiB..=32 KiB).
const CLASSES: usize = 27;
/// Fresh blocks are cut from chunks of this size (address space: only the pages that
/// blocks use are ever touched).
const CHUNK: usize = 256 * 1024;

/// The class of a block, or None for blocks left to the system allocator.
#[inline]
fn class(layout: Layout) -> Option<usize> {
    let size = layout.size();
    if size > MAX || layout.align() > 16 {
        return None;
    }
    Some(if size <= 256 {
        size.max(1).div_ceil(16) - 1
    } else if size <= 1024 {
        16 + (size - 257) / 128
    } else {
        // 1025..=2048 -> 22, ..., 16385..=32768 -> 26
        22 + (size.next_power_of_two().trailing_zeros() as usize - 11)
    })
}

/// The size of the blocks of class `c` (a multiple of 16).
#[inline]
fn class_size(c: usize) -> usize {
    match c {
        0..16 => (c + 1) * 16,
        16..22 => 384 + (c - 16) * 128,
        _ => 2048 << (c - 22),
    }
}

/// A fresh chunk, its pages mapped in one go (MAP_POPULATE): a page fault costs ~6 µs in
/// the VMs measured, and the boot path touches most of its first chunk. Null on failure.
fn new_chunk() -> *mut u8 {
    // SAFETY: a fresh anonymous private mapping; no existing memory is affected.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            CHUNK,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_POPULATE,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        std::ptr::null_mut()
    } else {
        p.cast()
    }
}

struct State {
    free: [*mut u8; CLASSES],
    bump: *mut u8,
    end: *mut u8,
}

pub struct Pool {
    lock: AtomicBool,
    state: UnsafeCell<State>,
}

// SAFETY: `state` is only touched with `lock` held.
unsafe impl Sync for Pool {}

impl Pool {
    const fn new() -> Pool {
        Pool {
            lock: AtomicBool::new(false),
            state: UnsafeCell::new(State {
                free: [std::ptr::null_mut(); CLASSES],
                bump: std::ptr::null_mut(),
                end: std::ptr::null_mut(),
            }),
        }
    }

    fn with<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        let mut spins = 0u32;
        while self
            .lock
            .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            spins += 1;
            if spins < 64 {
                std::hint::spin_loop();
            } else {
                std::thread::yield_now();
            }
        }
        // SAFETY: the lock is held, so this is the only reference.
        let r = f(unsafe { &mut *self.state.get() });
        self.lock.store(false, Ordering::Release);
        r
    }
}

// SAFETY: blocks of a class are 16-aligned (chunks are, and every class size is a
// multiple of 16) and at least as large as any layout of the class; a block is never
// handed out twice while live, and only blocks of the same class go back to its free
// list. Everything else goes to the system allocator with the caller's layout.
//
// `inline(never)`: with LTO the pool was otherwise inlined into every allocation site
// (+1 MB of code, more page faults at start-up).
unsafe impl GlobalAlloc for Pool {
    #[inline(never)]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let Some(c) = class(layout) else {
            // SAFETY: forwarded with the caller's layout.
            return unsafe { System.alloc(layout) };
        };
        let size = class_size(c);
        self.with(|s| {
            let head = s.free[c];
            if !head.is_null() {
                // SAFETY: a free block holds the next free block's address.
                s.free[c] = unsafe { *(head as *mut *mut u8) };
                return head;
            }
            if (s.end as usize) - (s.bump as usize) < size {
                let chunk = new_chunk();
                if chunk.is_null() {
                    return chunk;
                }
                s.bump = chunk;
                // SAFETY: one past the end of the chunk.
                s.end = unsafe { chunk.add(CHUNK) };
            }
            let p = s.bump;
            // SAFETY: within the chunk (checked above).
            s.bump = unsafe { p.add(size) };
            p
        })
    }

    #[inline(never)]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        let Some(c) = class(layout) else {
            // SAFETY: ptr came from System with this layout.
            return unsafe { System.dealloc(ptr, layout) };
        };
        self.with(|s| {
            // SAFETY: the block is at least 16 bytes and 16-aligned, and no longer used
            // by the caller.
            unsafe { *(ptr as *mut *mut u8) = s.free[c] };
            s.free[c] = ptr;
        })
    }

    #[inline(never)]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller guarantees a valid size for this alignment.
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        match (class(layout), class(new_layout)) {
            (Some(a), Some(b)) if a == b => ptr,
            // SAFETY: ptr came from System with this layout.
            (None, None) => unsafe { System.realloc(ptr, layout, new_size) },
            _ => {
                // SAFETY: a fresh block, the old bytes copied, the old one freed.
                unsafe {
                    let new = self.alloc(new_layout);
                    if !new.is_null() {
                        std::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size));
                        self.dealloc(ptr, layout);
                    }
                    new
                }
            }
        }
    }
}

#[global_allocator]
static ALLOCATOR: Pool = Pool::new();
