//! On the static musl builds: musl's allocator hands emptied groups of small blocks back
//! to the kernel right away and maps them again on the next allocation, and in this
//! short-lived process (on the boot path) those page faults cost more than the work. So
//! small blocks are simply never freed; anything larger than `KEEP` (response bodies,
//! download chunks) is freed as usual, which bounds what a long run can hold on to.
use std::alloc::{GlobalAlloc, Layout, System};

const KEEP: usize = 1024;

pub struct KeepSmall;

// SAFETY: every call goes to the system allocator; not freeing a block is always
// sound.
unsafe impl GlobalAlloc for KeepSmall {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded with the caller's layout.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as above.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if layout.size() > KEEP {
            // SAFETY: ptr came from System with this layout.
            unsafe { System.dealloc(ptr, layout) }
        }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if layout.size() > KEEP {
            // SAFETY: ptr came from System with this layout.
            return unsafe { System.realloc(ptr, layout, new_size) };
        }
        // SAFETY: a fresh block of the new size, the old bytes copied, the old block
        // kept (see above).
        unsafe {
            let new = System.alloc(Layout::from_size_align_unchecked(new_size, layout.align()));
            if !new.is_null() {
                std::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size));
            }
            new
        }
    }
}

#[global_allocator]
static ALLOCATOR: KeepSmall = KeepSmall;
