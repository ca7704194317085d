//! The lazy card: a test-only FUSE file system that models an SD card behind Linux's page cache
//! (ext4, data=ordered, delayed allocation, no mercy; see [`model`]), so a test can cut the
//! power ([`LazyCard::cut`]: what was not made durable is lost) and make the card fail with EIO
//! or ENOSPC. Mounted on a fresh temporary directory, served by threads of the test process.
//!
//! A power-cut harness kills (and reaps) every process using the mount, calls `cut`, and
//! starts them again: they then see exactly the durable state (direct I/O, TTL 0, and the
//! kernel's entries and inodes invalidated at the cut).
//!
//! ```ignore
//! let card = LazyCard::mount()?;          // Err(why): FUSE unusable here, call `skipped`
//! card.set_commit_interval(None);         // only fsync commits the journal (default: 5 s)
//! /* run the daemon with its spool in card.path(), SIGKILL it, wait for it */
//! card.cut();                             // the power goes
//! card.fail_fsync(true); card.set_capacity(Some(64 << 20)); card.stats();
//! ```
//!
//! # Limits: where ext4 on a real card differs
//! Harsher than ext4:
//! - Nothing writes data back on its own: Linux's flusher (dirty pages older than ~30 s, memory
//!   pressure) and ext4's `auto_da_alloc` (data flushed on rename over a file, and on close
//!   after a truncate to 0) are not modelled. Only an fsync of the file itself persists it,
//!   unless a test opts in with [`LazyCard::cut_after_writeback`].
//! - `sync_file_range` never reaches FUSE. On ext4 the pages it wrote become durable at the
//!   next journal commit (any fsync on the file system, or the 5 s timer: the commit flushes the
//!   device cache); here they stay volatile until that very file is fsynced. sled's `flush`
//!   relies on it (see tests/lazycard.rs).
//!
//! Kinder than ext4:
//! - Every successful fsync, fdatasync or fsyncdir commits the whole journal. ext4 commits only
//!   when that inode changed in the running transaction (an fdatasync after an in-place
//!   overwrite commits nothing), so here one file's fsync can make another's rename durable
//!   where ext4 might not.
//! - Each request (an fsync too) is all or nothing, and a cut tears nothing: on a real card the
//!   power can go halfway through an fsync (some of its pages written), and a sector can tear.
//! - A failed fsync loses pages and the card carries on, as ext4 does for data errors; when a
//!   failing card also loses metadata writes, ext4 aborts its journal and remounts read-only
//!   (errors=remount-ro): not modelled.
//!
//! Not there at all: hard links, symlinks, xattrs, special files, shared writable mmap (direct
//! I/O answers ENODEV), permission checks (the kernel's default: none), atime on read. Capacity
//! counts the allocated 4 KiB pages of what a reader sees plus a block per directory: no
//! metadata overhead, no reserved blocks (f_bavail = f_bfree), and space freed at once (ext4
//! frees it at the commit). `fail_writes` fails data (write, truncate, fallocate), not names.
//! flock and fcntl locks are kept by the kernel, per mount, as on a local disk.

pub mod fuse;
pub mod model;

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use fuser::{BackgroundSession, Config, INodeNo, MountOption, Notifier, SessionACL};

use model::Model;
pub use model::Stats;

/// The periodic journal commit, like ext4's `commit=5` default.
pub const DEFAULT_COMMIT_INTERVAL: Duration = Duration::from_secs(5);

#[derive(Default)]
struct Timer {
    every: Option<Duration>,
    stop: bool,
}

pub struct LazyCard {
    model: Arc<Mutex<Model>>,
    dir: tempfile::TempDir,
    session: Option<BackgroundSession>,
    notifier: Notifier,
    timer: Arc<(Mutex<Timer>, Condvar)>,
    committer: Option<JoinHandle<()>>,
}

impl LazyCard {
    /// Mounts an empty card on a fresh temporary directory. `Err(why)` when FUSE cannot be used
    /// here (no /dev/fuse, not allowed to mount): the caller reports the test as skipped.
    pub fn mount() -> Result<LazyCard, String> {
        // SAFETY: plain syscalls on a NUL-terminated path.
        let root = unsafe { libc::geteuid() } == 0;
        if !Path::new("/dev/fuse").exists() {
            if !root {
                return Err("no /dev/fuse, and not root to make it".into());
            }
            let dev = c"/dev/fuse";
            // SAFETY: mknod(2) with a NUL-terminated path; FUSE is char device 10:229.
            let rc =
                unsafe { libc::mknod(dev.as_ptr(), libc::S_IFCHR | 0o666, libc::makedev(10, 229)) };
            if rc != 0 {
                let e = std::io::Error::last_os_error();
                return Err(format!(
                    "no /dev/fuse, and mknod /dev/fuse c 10 229 failed: {e}"
                ));
            }
        }
        let dir = tempfile::Builder::new()
            .prefix("lazycard")
            .tempdir()
            .map_err(|e| format!("cannot make a mount point: {e}"))?;
        // SAFETY: getuid/getgid cannot fail.
        let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
        let model = Arc::new(Mutex::new(Model::new(uid, gid)));
        let mut config = Config::default();
        config.mount_options = vec![MountOption::FSName("lazycard".into())];
        // Root may let every user in (a daemon dropping privileges); others only themselves.
        config.acl = if root {
            SessionACL::All
        } else {
            SessionACL::Owner
        };
        config.n_threads = Some(2);
        config.clone_fd = true;
        let card = fuse::Card {
            model: model.clone(),
        };
        let session = fuser::spawn_mount(card, dir.path(), &config)
            .map_err(|e| format!("cannot mount FUSE on {}: {e}", dir.path().display()))?;
        let notifier = session.notifier();
        let timer = Arc::new((
            Mutex::new(Timer {
                every: Some(DEFAULT_COMMIT_INTERVAL),
                stop: false,
            }),
            Condvar::new(),
        ));
        let committer = {
            let (model, timer) = (model.clone(), timer.clone());
            std::thread::Builder::new()
                .name("lazycard-commit".into())
                .spawn(move || commit_periodically(&model, &timer))
                .map_err(|e| format!("cannot start the commit thread: {e}"))?
        };
        Ok(LazyCard {
            model,
            dir,
            session: Some(session),
            notifier,
            timer,
            committer: Some(committer),
        })
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    fn m(&self) -> MutexGuard<'_, Model> {
        self.model
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The power goes: every file and directory returns to its durable state. Kill and reap
    /// every process using the mount first.
    pub fn cut(&self) {
        self.cut_after_writeback(0.0, 0);
    }

    /// Like [`LazyCard::cut`], but first the kernel's writeback got to a random `share` of the
    /// dirty pages (seeded by `seed`, in no order; see `Model::writeback_some`): for code that
    /// must survive an unsynced later write reaching the card before an earlier one.
    pub fn cut_after_writeback(&self, share: f64, seed: u64) {
        let (inodes, entries) = {
            let mut m = self.m();
            let names = m.names();
            m.writeback_some(share, &mut fastrand::Rng::with_seed(seed));
            m.cut();
            names
        };
        // The TTLs are 0 already; this is the second guard: drop every entry and inode the
        // kernel may hold (an error means it held none). Not under the lock: the kernel may
        // need a FUSE thread to finish a request first.
        for (parent, name) in entries {
            let _ = self.notifier.inval_entry(INodeNo(parent), &name);
        }
        for ino in inodes {
            let _ = self.notifier.inval_inode(INodeNo(ino), 0, 0);
        }
    }

    /// WRITE, fallocate and truncate answer EIO (create, mkdir, unlink, rename still work: they
    /// only reach the journal in memory).
    pub fn fail_writes(&self, on: bool) {
        self.m().fail_writes = on;
    }

    /// FSYNC and FSYNCDIR answer EIO, and the pages they were to write are lost (see `model`).
    pub fn fail_fsync(&self, on: bool) {
        self.m().fail_fsync = on;
    }

    /// Like [`LazyCard::fail_fsync`], for the files whose name ends with `suffix` only (`None`:
    /// every file): a bad block under one file.
    pub fn fail_fsync_of(&self, suffix: Option<&str>, on: bool) {
        let mut m = self.m();
        m.fail_fsync_suffix = suffix.map(String::from);
        m.fail_fsync = on;
    }

    /// Total bytes the card holds (`None`: 32 GiB); statfs reports it, and a write that needs
    /// more answers ENOSPC.
    pub fn set_capacity(&self, bytes: Option<u64>) {
        self.m().capacity = bytes;
    }

    /// How often the journal commits on its own (`None`: only fsync commits).
    pub fn set_commit_interval(&self, every: Option<Duration>) {
        let (timer, wake) = &*self.timer;
        timer.lock().unwrap_or_else(|p| p.into_inner()).every = every;
        wake.notify_all();
    }

    /// Commits the journal now, as the periodic commit would.
    pub fn commit(&self) {
        self.m().commit();
    }

    pub fn stats(&self) -> Stats {
        self.m().stats
    }

    /// Bytes in use, as statfs counts them.
    pub fn used(&self) -> u64 {
        self.m().used()
    }
}

fn commit_periodically(model: &Mutex<Model>, timer: &(Mutex<Timer>, Condvar)) {
    let (lock, wake) = timer;
    let mut t = lock.lock().unwrap_or_else(|p| p.into_inner());
    let mut last = Instant::now();
    while !t.stop {
        let Some(every) = t.every else {
            t = wake.wait(t).unwrap_or_else(|p| p.into_inner());
            last = Instant::now();
            continue;
        };
        match every.checked_sub(last.elapsed()) {
            Some(left) if !left.is_zero() => {
                t = wake
                    .wait_timeout(t, left)
                    .unwrap_or_else(|p| p.into_inner())
                    .0;
            }
            _ => {
                drop(t);
                model.lock().unwrap_or_else(|p| p.into_inner()).commit();
                last = Instant::now();
                t = lock.lock().unwrap_or_else(|p| p.into_inner());
            }
        }
    }
}

impl Drop for LazyCard {
    fn drop(&mut self) {
        {
            let (timer, wake) = &*self.timer;
            timer.lock().unwrap_or_else(|p| p.into_inner()).stop = true;
            wake.notify_all();
        }
        if let Some(c) = self.committer.take() {
            let _ = c.join();
        }
        let Some(session) = self.session.take() else {
            return;
        };
        let path = CString::new(self.dir.path().as_os_str().as_bytes()).expect("no NUL in path");
        let dev = std::fs::metadata(self.dir.path()).map(|m| m.dev()).ok();
        // SAFETY: umount2(2) with a NUL-terminated path.
        if unsafe { libc::umount2(path.as_ptr(), 0) } == 0 {
            let _ = session.join(); // the kernel ended the connection: the threads return
            return;
        }
        // Busy (a process still has files open) or not allowed: end the connection so the
        // users get ENOTCONN and the threads return, then detach the mount.
        let aborted = dev.is_some_and(abort_connection);
        // SAFETY: as above.
        unsafe { libc::umount2(path.as_ptr(), libc::MNT_DETACH) };
        if aborted {
            let _ = session.join();
        } else {
            // fuser's own unmount (fusermount -u -z when not root); the threads may outlive us.
            eprintln!("lazycard: {} was busy; detached", self.dir.path().display());
            drop(session);
        }
    }
}

/// Aborts the FUSE connection of the mount with device number `dev` through fusectl
/// (mounting fusectl at /sys/fs/fuse/connections if need be). True when it was aborted.
fn abort_connection(dev: u64) -> bool {
    let id = (u64::from(libc::major(dev)) << 20) | u64::from(libc::minor(dev));
    let conns = Path::new("/sys/fs/fuse/connections");
    let abort = conns.join(id.to_string()).join("abort");
    if !abort.exists() {
        // SAFETY: mount(2) with NUL-terminated strings.
        unsafe {
            libc::mount(
                c"fusectl".as_ptr(),
                c"/sys/fs/fuse/connections".as_ptr(),
                c"fusectl".as_ptr(),
                0,
                std::ptr::null(),
            )
        };
    }
    std::fs::write(abort, "1").is_ok()
}
