//! The only module that calls libc directly: what rustix cannot do for us without
//! allocating (`getcwd` into a buffer), libc's own stdio/dirent objects, `dlsym`, `errno`.

use core::ffi::{CStr, c_char, c_int};
use core::sync::atomic::{AtomicPtr, Ordering};

/// Borrow a C string handed to a hook. `None` for NULL (the caller answers `EFAULT`).
///
/// # Safety
/// `p` is NULL or points to a NUL-terminated string that outlives the returned borrow (the
/// C API contract of every function we interpose).
pub unsafe fn cstr<'a>(p: *const c_char) -> Option<&'a CStr> {
    // SAFETY: per this function's contract.
    (!p.is_null()).then(|| unsafe { CStr::from_ptr(p) })
}

pub fn set_errno(e: c_int) {
    // SAFETY: `__errno_location` returns this thread's errno, always valid to write.
    unsafe { *libc::__errno_location() = e };
}

/// An environment variable, without allocating or locking (safe before `main` too).
pub fn getenv(name: &CStr) -> Option<&'static [u8]> {
    // SAFETY: `name` is NUL-terminated; glibc's getenv returns NULL or a pointer to an
    // environment string. glibc never frees those (setenv keeps its copies; unsetenv and
    // clearenv drop only pointers; `exec` keeps our own variables with setenv): only a string
    // a program handed to putenv is the program's to reuse, as for any getenv caller.
    let p = unsafe { libc::getenv(name.as_ptr()) };
    // SAFETY: non-NULL results are NUL-terminated strings.
    (!p.is_null()).then(|| unsafe { CStr::from_ptr(p) }.to_bytes())
}

/// The current directory into `buf`, by the raw system call: glibc's `getcwd` falls back
/// to a walk with `opendir` and `malloc` when the kernel says `ENAMETOOLONG`, which a hook
/// (perhaps in a signal handler) must never do. `Err(errno)`: `ERANGE` if `buf` is too
/// small, `ENAMETOOLONG` deeper than `PATH_MAX`, `ENOENT` if deleted.
pub fn getcwd(buf: &mut [u8]) -> Result<&[u8], i32> {
    // SAFETY: the kernel writes at most `buf.len()` bytes (the path and its NUL) into `buf`.
    let r = unsafe { libc::syscall(libc::SYS_getcwd, buf.as_mut_ptr(), buf.len()) };
    if r < 0 {
        return Err(std::io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(libc::EIO));
    }
    let len = buf.iter().position(|&b| b == 0).ok_or(libc::ERANGE)?;
    // "(unreachable)/..." outside the process's root: not a path we can judge.
    if buf.first() != Some(&b'/') {
        return Err(libc::ENOENT);
    }
    Ok(&buf[..len])
}

/// The calling thread's name (`comm`), for log lines.
pub fn thread_name(buf: &mut [u8; 16]) -> &[u8] {
    // SAFETY: PR_GET_NAME writes at most 16 bytes, NUL included, into `buf`.
    let r = unsafe { libc::prctl(libc::PR_GET_NAME, buf.as_mut_ptr()) };
    if r != 0 {
        return b"?";
    }
    let len = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    &buf[..len]
}

/// Wrap a descriptor we opened in a `FILE*`; NULL (with errno) on failure, `fd` then closed.
pub fn fdopen(fd: c_int, mode: &CStr) -> *mut libc::FILE {
    // SAFETY: `fd` is an open descriptor we own and hand over; `mode` is NUL-terminated.
    let f = unsafe { libc::fdopen(fd, mode.as_ptr()) };
    if f.is_null() {
        close_keep_errno(fd);
    }
    f
}

/// Wrap a directory descriptor we opened in a `DIR*`; NULL (with errno) on failure.
pub fn fdopendir(fd: c_int) -> *mut libc::DIR {
    // SAFETY: `fd` is an open directory descriptor we own and hand over.
    let d = unsafe { libc::fdopendir(fd) };
    if d.is_null() {
        close_keep_errno(fd);
    }
    d
}

fn close_keep_errno(fd: c_int) {
    // SAFETY: `__errno_location` is always valid; `fd` is ours to close.
    unsafe {
        let saved = *libc::__errno_location();
        libc::close(fd);
        *libc::__errno_location() = saved;
    }
}

/// `fclose`, for `freopen`'s failure path (which must close the stream it was given).
///
/// # Safety
/// `stream` is a valid `FILE*` the caller gave up.
pub unsafe fn fclose(stream: *mut libc::FILE) {
    // SAFETY: per this function's contract.
    unsafe { libc::fclose(stream) };
}

/// The next definition of `name` after ours (glibc's), looked up once into `cache`.
pub(crate) fn next_symbol(name: &CStr, cache: &AtomicPtr<libc::c_void>) -> *mut libc::c_void {
    let mut f = cache.load(Ordering::Acquire);
    if f.is_null() {
        // SAFETY: RTLD_NEXT lookup of a NUL-terminated symbol name.
        f = unsafe { libc::dlsym(libc::RTLD_NEXT, name.as_ptr()) };
        cache.store(f, Ordering::Release);
    }
    f
}

type FreopenFn = unsafe extern "C" fn(*const c_char, *const c_char, *mut libc::FILE) -> *mut libc::FILE;
static REAL_FREOPEN: AtomicPtr<libc::c_void> = AtomicPtr::new(core::ptr::null_mut());
type FopenFn = unsafe extern "C" fn(*const c_char, *const c_char) -> *mut libc::FILE;
static REAL_FOPEN: AtomicPtr<libc::c_void> = AtomicPtr::new(core::ptr::null_mut());

/// glibc's own `freopen` (ours shadows the name). `dlsym` only runs on the first call.
///
/// # Safety
/// Same contract as C `freopen`.
pub unsafe fn real_freopen(path: *const c_char, mode: &CStr, stream: *mut libc::FILE) -> *mut libc::FILE {
    let f = next_symbol(c"freopen", &REAL_FREOPEN);
    if f.is_null() {
        set_errno(libc::ENOSYS);
        return core::ptr::null_mut();
    }
    // SAFETY: `f` is libc's `freopen`, whose signature is `FreopenFn`.
    let real: FreopenFn = unsafe { core::mem::transmute::<*mut libc::c_void, FreopenFn>(f) };
    // SAFETY: arguments as the caller's contract.
    unsafe { real(path, mode.as_ptr(), stream) }
}

/// glibc's own `fopen`, for modes `fdopen` cannot honour (`,ccs=`).
pub fn real_fopen(path: &CStr, mode: &CStr) -> *mut libc::FILE {
    let f = next_symbol(c"fopen", &REAL_FOPEN);
    if f.is_null() {
        set_errno(libc::ENOSYS);
        return core::ptr::null_mut();
    }
    // SAFETY: `f` is libc's `fopen`, whose signature is `FopenFn`.
    let real: FopenFn = unsafe { core::mem::transmute::<*mut libc::c_void, FopenFn>(f) };
    // SAFETY: two NUL-terminated strings, as fopen requires.
    unsafe { real(path.as_ptr(), mode.as_ptr()) }
}

/// Refusing to start: the one time the shim may write to fd 2, then `_exit` (no atexit
/// handlers of a half-started server).
pub fn refuse_to_start(message: &[u8]) -> ! {
    // SAFETY: writing a valid buffer to fd 2; `_exit` never returns.
    unsafe {
        libc::write(2, message.as_ptr().cast(), message.len());
        libc::_exit(1)
    }
}

/// Is this thread running on an alternate signal stack (`sigaltstack`, `SS_ONSTACK`)?
pub fn on_alternate_signal_stack() -> bool {
    let mut old = empty_stack();
    // SAFETY: a query only (no new stack given); `old` is a valid, writable stack_t.
    let r = unsafe { libc::sigaltstack(core::ptr::null(), &mut old) };
    r == 0 && old.ss_flags & libc::SS_ONSTACK != 0
}

fn empty_stack() -> libc::stack_t {
    libc::stack_t {
        ss_sp: core::ptr::null_mut(),
        ss_flags: 0,
        ss_size: 0,
    }
}

/// Secure-execution mode (setuid, setgid, file capabilities), as ld.so decides it.
pub fn secure_execution() -> bool {
    // SAFETY: getauxval reads the auxiliary vector the kernel gave this process; no state.
    unsafe { libc::getauxval(libc::AT_SECURE) != 0 }
}

/// The program interpreter the main program names (`PT_INTERP`: the dynamic loader running
/// it), read from its program headers in memory (`AT_PHDR`): no system call, no lock, so it
/// may be called after a `fork()` from a threaded parent. ld.so run as a program
/// (`ld.so PROG`) points `AT_PHDR` at PROG's headers before PROG runs.
pub fn program_interpreter() -> Option<&'static CStr> {
    // SAFETY: as above.
    let (phdr, phnum) = unsafe { (libc::getauxval(libc::AT_PHDR), libc::getauxval(libc::AT_PHNUM)) };
    if phdr == 0 || phnum == 0 || phnum > 4096 {
        return None;
    }
    // SAFETY: the kernel's AT_PHDR/AT_PHNUM describe the main program's program headers,
    // mapped (read-only) for the life of the process; 64-bit targets only (exec.rs).
    let headers = unsafe { core::slice::from_raw_parts(phdr as *const libc::Elf64_Phdr, phnum as usize) };
    // The load bias: where PT_PHDR says the headers are, against where they are (a
    // non-PIE program without PT_PHDR is loaded at its link addresses).
    let bias = headers
        .iter()
        .find(|h| h.p_type == libc::PT_PHDR)
        .map_or(0, |h| (phdr as usize).wrapping_sub(h.p_vaddr as usize));
    let interp = headers.iter().find(|h| h.p_type == libc::PT_INTERP)?;
    let at = bias.wrapping_add(interp.p_vaddr as usize) as *const u8;
    // SAFETY: PT_INTERP lies in the program's first loadable segment, mapped for the life of
    // the process; `p_filesz` bytes, of which the last is its NUL (checked below).
    let bytes = unsafe { core::slice::from_raw_parts(at, interp.p_filesz as usize) };
    CStr::from_bytes_until_nul(bytes).ok()
}

/// The 16 random bytes the kernel gave this process at exec (`AT_RANDOM`), with no system
/// call. Zero if absent (then the caches still work, with a guessable key). Only through
/// [`seed`].
fn at_random() -> [u64; 2] {
    // SAFETY: as above.
    let p = unsafe { libc::getauxval(libc::AT_RANDOM) } as *const [u8; 16];
    if p.is_null() {
        return [0, 0];
    }
    // SAFETY: AT_RANDOM points to 16 bytes on the initial stack, valid for the whole life of
    // the process; read unaligned since nothing promises alignment.
    let b = unsafe { core::ptr::read_unaligned(p) };
    let (lo, hi) = b.split_at(8);
    [
        u64::from_ne_bytes(lo.try_into().unwrap_or_default()),
        u64::from_ne_bytes(hi.try_into().unwrap_or_default()),
    ]
}

/// A 128-bit key for one use (`domain`) derived from [`at_random`] by SipHash-2-4 keyed with
/// it: glibc takes its stack canary and pointer guard from the same bytes, so a table whose
/// tags leak (the shared owner cache is readable by every worker) must not be keyed by them
/// raw. Recovering the key from outputs is breaking SipHash as a PRF. Called once per use.
pub fn seed(domain: &[u8]) -> [u64; 2] {
    let key = at_random();
    [sip24(key, domain, 0), sip24(key, domain, 1)]
}

/// SipHash-2-4 of `msg` followed by the byte `tail` (so one domain gives two outputs).
fn sip24([k0, k1]: [u64; 2], msg: &[u8], tail: u8) -> u64 {
    let mut v = [
        k0 ^ 0x736f_6d65_7073_6575,
        k1 ^ 0x646f_7261_6e64_6f6d,
        k0 ^ 0x6c79_6765_6e65_7261,
        k1 ^ 0x7465_6462_7974_6573,
    ];
    let round = |v: &mut [u64; 4]| {
        v[0] = v[0].wrapping_add(v[1]);
        v[1] = v[1].rotate_left(13) ^ v[0];
        v[0] = v[0].rotate_left(32);
        v[2] = v[2].wrapping_add(v[3]);
        v[3] = v[3].rotate_left(16) ^ v[2];
        v[0] = v[0].wrapping_add(v[3]);
        v[3] = v[3].rotate_left(21) ^ v[0];
        v[2] = v[2].wrapping_add(v[1]);
        v[1] = v[1].rotate_left(17) ^ v[2];
        v[2] = v[2].rotate_left(32);
    };
    let compress = |v: &mut [u64; 4], m: u64| {
        v[3] ^= m;
        round(v);
        round(v);
        v[0] ^= m;
    };
    let len = msg.len() + 1;
    let mut word = [0u8; 8];
    let mut n = 0;
    for &b in msg.iter().chain(core::iter::once(&tail)) {
        word[n] = b;
        n += 1;
        if n == 8 {
            compress(&mut v, u64::from_le_bytes(word));
            n = 0;
        }
    }
    word[n..].fill(0);
    word[7] = len as u8;
    compress(&mut v, u64::from_le_bytes(word));
    v[2] ^= 0xff;
    for _ in 0..4 {
        round(&mut v);
    }
    v[0] ^ v[1] ^ v[2] ^ v[3]
}

/// Types the guard keeps in a [`Mapped`] region: valid for any bytes, with no drop.
///
/// # Safety
/// Only for types made of integers and byte arrays (any bit pattern is a value of them).
pub unsafe trait Zeroable {}

// SAFETY: two `usize`s and a byte array (`toctou_policy::path::PathBuf`) plus byte arrays.
unsafe impl Zeroable for crate::scratch::LongPath {}
// SAFETY: `#[repr(C, align(64))]`, eight `AtomicU64`s (all zeroes: an empty bucket).
unsafe impl Zeroable for toctou_policy::owner_cache::Bucket {}

/// A fresh zeroed read-write anonymous mapping of `len` bytes (at least 1), `SHARED` for
/// [`SharedRegion`] or `PRIVATE` for [`Mapped`]: the pointer and the length mapped.
fn map_anon(len: usize, sharing: rustix::mm::MapFlags) -> Option<(core::ptr::NonNull<u8>, usize)> {
    debug_assert!(sharing == rustix::mm::MapFlags::SHARED || sharing == rustix::mm::MapFlags::PRIVATE);
    let len = len.max(1);
    // SAFETY: a fresh anonymous mapping at an address the kernel picks (no `FIXED`): it
    // aliases nothing in this process.
    let p = unsafe {
        rustix::mm::mmap_anonymous(
            core::ptr::null_mut(),
            len,
            rustix::mm::ProtFlags::READ | rustix::mm::ProtFlags::WRITE,
            sharing,
        )
    }
    .ok()?;
    Some((core::ptr::NonNull::new(p.cast())?, len))
}

/// A shared anonymous mapping (`MAP_SHARED|MAP_ANONYMOUS`), zeroed, never unmapped: made
/// before a server's master forks, it is the same memory in every worker (no
/// `MADV_DONTFORK`: inherited on purpose). Typed views of it are `&'static`.
pub struct SharedRegion {
    ptr: core::ptr::NonNull<u8>,
    len: usize,
}

// SAFETY: the region is only ever viewed as atomics (`Zeroable` types made of them), which
// any thread may share.
unsafe impl Sync for SharedRegion {}
// SAFETY: as above; the pointer is to a mapping that lives as long as the process.
unsafe impl Send for SharedRegion {}

impl SharedRegion {
    pub fn new(len: usize) -> Option<SharedRegion> {
        let (ptr, len) = map_anon(len, rustix::mm::MapFlags::SHARED)?;
        Some(SharedRegion { ptr, len })
    }

    /// `n` values of `T` from byte `offset`; `None` if they do not fit or are misaligned.
    pub fn slice<T: Zeroable + Sync>(&self, offset: usize, n: usize) -> Option<&'static [T]> {
        let end = n.checked_mul(core::mem::size_of::<T>())?.checked_add(offset)?;
        if end > self.len || !offset.is_multiple_of(core::mem::align_of::<T>()) {
            return None;
        }
        // SAFETY: in bounds and aligned (mmap is page-aligned); zeroed at first and only
        // ever written through atomics, so every byte pattern other processes leave is a
        // `T` (`Zeroable`); never unmapped, so `'static`; shared references only (`Sync`).
        Some(unsafe { core::slice::from_raw_parts(self.ptr.as_ptr().add(offset).cast::<T>(), n) })
    }

    /// Replace the region, in this process only, by private zeroed memory at the same
    /// address: from then on nothing another process writes is seen here, nor the reverse.
    pub fn make_private(&self) -> bool {
        // SAFETY: MAP_FIXED over exactly our own mapping. Views of it stay valid (the same
        // addresses stay mapped, readable and writable); their atomics read zero from then on,
        // as if another process had cleared them, which they must already expect.
        unsafe {
            rustix::mm::mmap_anonymous(
                self.ptr.as_ptr().cast(),
                self.len,
                rustix::mm::ProtFlags::READ | rustix::mm::ProtFlags::WRITE,
                rustix::mm::MapFlags::PRIVATE | rustix::mm::MapFlags::FIXED,
            )
        }
        .is_ok_and(|p| p == self.ptr.as_ptr().cast())
    }
}

/// The ids of a `set*uid` call, by its arity.
pub enum Ids {
    One(libc::uid_t),
    Two(libc::uid_t, libc::uid_t),
    Three(libc::uid_t, libc::uid_t, libc::uid_t),
}

type SetId1 = unsafe extern "C" fn(libc::uid_t) -> c_int;
type SetId2 = unsafe extern "C" fn(libc::uid_t, libc::uid_t) -> c_int;
type SetId3 = unsafe extern "C" fn(libc::uid_t, libc::uid_t, libc::uid_t) -> c_int;

/// libc's own `name` (`setuid`, `seteuid`, `setreuid`, `setresuid`: ours shadow them);
/// -1 with `ENOSYS` if it cannot be found.
pub fn real_set_id(name: &CStr, cache: &AtomicPtr<libc::c_void>, ids: Ids) -> c_int {
    let f = next_symbol(name, cache);
    if f.is_null() {
        set_errno(libc::ENOSYS);
        return -1;
    }
    // SAFETY (each arm): `f` is libc's function of that name, whose C signature takes as
    // many `uid_t`s as the caller's `Ids` holds (the hooks pair each name with its arity)
    // and returns `int`; the arguments are plain integers.
    unsafe {
        match ids {
            Ids::One(a) => core::mem::transmute::<*mut libc::c_void, SetId1>(f)(a),
            Ids::Two(a, b) => core::mem::transmute::<*mut libc::c_void, SetId2>(f)(a, b),
            Ids::Three(a, b, c) => core::mem::transmute::<*mut libc::c_void, SetId3>(f)(a, b, c),
        }
    }
}

/// The file this library was loaded from, as the dynamic loader names it.
pub fn own_library_path() -> Option<&'static CStr> {
    let mut info = core::mem::MaybeUninit::<libc::Dl_info>::zeroed();
    let here = own_library_path as *const libc::c_void;
    // SAFETY: dladdr fills `info` for an address inside a loaded object; it does not
    // allocate, and the loader's lock it takes is recursive (safe inside our constructor).
    let found = unsafe { libc::dladdr(here, info.as_mut_ptr()) } != 0;
    // SAFETY: initialised by dladdr when it succeeded (zeroed otherwise).
    let info = unsafe { info.assume_init() };
    if !found || info.dli_fname.is_null() {
        return None;
    }
    // SAFETY: dli_fname is the loader's NUL-terminated name of a loaded object, which this
    // library (we are running its code) keeps loaded.
    Some(unsafe { CStr::from_ptr(info.dli_fname) })
}

/// Leave an inaccessible mapping of an empty memfd named `name` in the address space, so
/// that `/proc/PID/maps` shows `/memfd:NAME (deleted)` for the life of the process and of
/// its forks: how `toctou-guard status` learns which configuration and mode a process
/// really loaded (nginx overwrites its environment with its process title). Best effort: a
/// failure changes nothing else. The descriptor is closed before returning.
pub fn announce(name: &CStr) {
    let Ok(fd) = rustix::fs::memfd_create(name, rustix::fs::MemfdFlags::CLOEXEC) else {
        return;
    };
    // SAFETY: a new PROT_NONE mapping at an address the kernel chooses (no MAP_FIXED), so it
    // overlaps no existing mapping; nothing ever reads or writes it, and it is never unmapped.
    let _ = unsafe {
        rustix::mm::mmap(
            core::ptr::null_mut(),
            1,
            rustix::mm::ProtFlags::empty(),
            rustix::mm::MapFlags::PRIVATE,
            &fd,
            0,
        )
    };
}

/// `len` zeroed bytes of their own mapping, for the rare path longer than the stack buffers
/// (a preload library may run on a 16 KiB thread stack or a signal handler's alternate
/// stack, so `PATH_MAX` buffers cannot live there). `mmap` is a system call: no allocator,
/// no lock, safe in a signal handler and across `fork`. Unmapped on drop.
pub struct Mapped {
    ptr: core::ptr::NonNull<u8>,
    len: usize,
}

impl Mapped {
    pub fn zeroed(len: usize) -> Option<Mapped> {
        let (ptr, len) = map_anon(len, rustix::mm::MapFlags::PRIVATE)?;
        Some(Mapped { ptr, len })
    }

    /// The mapping as bytes.
    pub fn bytes_mut(&mut self) -> &mut [u8] {
        // SAFETY: `len` initialised (zeroed by mmap) bytes, exclusively ours for the borrow.
        unsafe { core::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }

    /// The mapping as a `T`, or `None` if it does not fit.
    pub fn as_mut<T: Zeroable>(&mut self) -> Option<&mut T> {
        if core::mem::size_of::<T>() > self.len {
            return None;
        }
        // SAFETY: page-aligned (mmap), large enough, initialised (zeroed, then only ever
        // written as a `T`), exclusively ours for the borrow of `self`; any bytes are a `T`
        // (`Zeroable`).
        Some(unsafe { &mut *self.ptr.as_ptr().cast::<T>() })
    }
}

impl Drop for Mapped {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly the mapping made in `zeroed`, no longer borrowed.
        let _ = unsafe { rustix::mm::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

/// A file's bytes mapped read-only and private (`MAP_PRIVATE`, `PROT_READ`): the compiled
/// configuration, shared through the page cache by every process that maps it, so each one
/// pays only for the pages its lookups touch. `toctou-guard compile` replaces the file by
/// `rename` (a new inode) and never writes an existing one, so the mapped bytes never change
/// under us and never shrink (a truncation would raise SIGBUS on access).
pub struct MappedFile {
    ptr: core::ptr::NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping is read-only and never written through or unmapped while a `&[u8]`
// of it is alive (unmapped only on drop, which needs the last owner); reading it from any
// thread is as safe as reading an immutable slice.
unsafe impl Send for MappedFile {}
// SAFETY: as above: only `&[u8]` reads are handed out.
unsafe impl Sync for MappedFile {}

impl MappedFile {
    pub fn map(fd: &std::os::fd::OwnedFd, len: usize) -> Result<MappedFile, rustix::io::Errno> {
        if len == 0 {
            return Err(rustix::io::Errno::INVAL);
        }
        // SAFETY: a new read-only private mapping of `len` bytes of the file at an address the
        // kernel chooses (no MAP_FIXED): it aliases no Rust object.
        let p = unsafe {
            rustix::mm::mmap(
                core::ptr::null_mut(),
                len,
                rustix::mm::ProtFlags::READ,
                rustix::mm::MapFlags::PRIVATE,
                fd,
                0,
            )
        }?;
        Ok(MappedFile {
            ptr: core::ptr::NonNull::new(p.cast()).ok_or(rustix::io::Errno::INVAL)?,
            len,
        })
    }
}

impl toctou_policy::image::Bytes for MappedFile {
    fn bytes(&self) -> &[u8] {
        // SAFETY: `len` readable bytes mapped in `map`, never written, alive until drop.
        unsafe { core::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for MappedFile {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly the mapping made in `map`; no borrow of it outlives self.
        let _ = unsafe { rustix::mm::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

/// This thread's errno.
pub fn errno() -> c_int {
    // SAFETY: `__errno_location` returns this thread's errno, always valid to read.
    unsafe { *libc::__errno_location() }
}

/// A hook's failure: set errno to `e`, return `value` (-1, NULL...).
pub fn fail<T>(e: rustix::io::Errno, value: T) -> T {
    set_errno(e.raw_os_error());
    value
}

type DlopenFn = unsafe extern "C" fn(*const c_char, c_int) -> *mut libc::c_void;
static REAL_DLOPEN: AtomicPtr<libc::c_void> = AtomicPtr::new(core::ptr::null_mut());
type DlmopenFn = unsafe extern "C" fn(libc::Lmid_t, *const c_char, c_int) -> *mut libc::c_void;
static REAL_DLMOPEN: AtomicPtr<libc::c_void> = AtomicPtr::new(core::ptr::null_mut());

/// glibc's own `dlopen` (ours shadows the name). NULL when it cannot be found; `dlerror`
/// then says why (it is `dlsym`'s error).
///
/// # Safety
/// Same contract as C `dlopen`.
pub unsafe fn real_dlopen(file: *const c_char, mode: c_int) -> *mut libc::c_void {
    let f = next_symbol(c"dlopen", &REAL_DLOPEN);
    if f.is_null() {
        return core::ptr::null_mut();
    }
    // SAFETY: `f` is libc's `dlopen`, whose signature is `DlopenFn`.
    let real: DlopenFn = unsafe { core::mem::transmute::<*mut libc::c_void, DlopenFn>(f) };
    // SAFETY: arguments as the caller's contract.
    unsafe { real(file, mode) }
}

/// glibc's own `dlmopen`, as [`real_dlopen`].
///
/// # Safety
/// Same contract as C `dlmopen`.
pub unsafe fn real_dlmopen(lmid: libc::Lmid_t, file: *const c_char, mode: c_int) -> *mut libc::c_void {
    let f = next_symbol(c"dlmopen", &REAL_DLMOPEN);
    if f.is_null() {
        return core::ptr::null_mut();
    }
    // SAFETY: `f` is libc's `dlmopen`, whose signature is `DlmopenFn`.
    let real: DlmopenFn = unsafe { core::mem::transmute::<*mut libc::c_void, DlmopenFn>(f) };
    // SAFETY: arguments as the caller's contract.
    unsafe { real(lmid, file, mode) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sip24_matches_the_reference_vectors() {
        // The SipHash paper's key 00..0f; messages 00..n-1, the last byte passed as `tail`.
        let key = [0x0706_0504_0302_0100, 0x0f0e_0d0c_0b0a_0908];
        let msg: [u8; 15] = core::array::from_fn(|i| i as u8);
        assert_eq!(sip24(key, &[], 0), 0x74f8_39c5_93dc_67fd);
        assert_eq!(sip24(key, &msg[..14], 14), 0xa129_ca61_49be_45e5);
        assert_eq!(sip24(key, &msg[..7], 7), 0x93f5_f579_9a93_2462);
    }

    #[test]
    fn seeds_differ_by_domain_and_hide_at_random() {
        let (a, b) = (seed(b"one"), seed(b"two"));
        assert_ne!(a, b);
        assert_ne!(a[0], a[1]);
        assert_ne!(a, at_random());
    }
}
