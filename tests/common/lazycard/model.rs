//! The lazy card's model, plain Rust: an in-memory file system like ext4 with `data=ordered` and
//! delayed allocation, as seen through the page cache, and what a power cut leaves of it.
//!
//! Two views of every inode: `now` (what a reader sees) and `disk` (what survives a cut).
//! - File data is kept in 4 KiB pages. A write dirties pages in `now`; only a successful fsync
//!   (or fdatasync) of that file copies its dirty pages and its size to `disk`. Nothing else
//!   writes data back: no flusher thread, no `auto_da_alloc` (the harshest ext4).
//! - Metadata is journaled: namespace (create, mkdir, unlink, rmdir, rename), link counts, mode,
//!   owner, times, and the on-disk size a truncate, `set_len` or fallocate sets (ext4's
//!   `i_disksize`; a plain write past the end does not move it). A journal commit makes ALL of
//!   it durable at once, in order by construction: `disk` takes a snapshot of `now`'s metadata.
//!   Commits happen on every successful fsync or fsyncdir, and when the caller says (the
//!   periodic commit lives in the FUSE layer). A file whose create was committed but whose
//!   data never synced comes back empty (or with its older durable content): ext4's
//!   zero-length file.
//! - A failed fsync (see [`Model::fail_fsync`]) marks the pages it was to write clean without
//!   making them durable and commits nothing: a reader still sees them until a cut, and a later
//!   successful fsync does not write them ("fsyncgate"); what a later sync extends over them
//!   reads as zeros (ext4's unwritten extents) or as their older durable content.
//! - `cut` throws `now` away and starts again from `disk`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ffi::{OsStr, OsString};
use std::sync::Arc;
use std::time::SystemTime;

pub const PAGE: u64 = 4096;
pub const ROOT: u64 = 1;
/// Card size when no capacity is set: 32 GiB.
pub const DEFAULT_CAPACITY: u64 = 32 << 30;
const NAME_MAX: usize = 255;
const MAX_INODES: u64 = 1 << 20;

/// An errno (`libc::ENOENT`, ...).
pub type Errno = i32;
pub type Res<T> = Result<T, Errno>;
type Page = Arc<[u8; PAGE as usize]>;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    File,
    Dir,
}

/// Counters since the card was made.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Successful fsync/fdatasync/fsyncdir calls.
    pub fsyncs: u64,
    /// fsync/fsyncdir calls answered EIO by [`Model::fail_fsync`].
    pub failed_fsyncs: u64,
    /// Journal commits (by fsync, fsyncdir or the periodic commit).
    pub commits: u64,
    /// Successful writes and the bytes they carried.
    pub writes: u64,
    pub bytes_written: u64,
    pub cuts: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attr {
    pub ino: u64,
    pub kind: Kind,
    pub size: u64,
    /// Allocated 512-byte blocks.
    pub blocks: u64,
    pub perm: u16,
    pub nlink: u32,
    pub uid: u32,
    pub gid: u32,
    pub atime: SystemTime,
    pub mtime: SystemTime,
    pub ctime: SystemTime,
}

/// A file's bytes: `size`, and the allocated pages (absent pages read as zeros). Invariant:
/// no page lies past `size`, and bytes past `size` in the last page are zero.
#[derive(Clone, Default)]
struct Data {
    size: u64,
    pages: BTreeMap<u64, Page>,
}

impl Data {
    fn read(&self, off: u64, len: u64) -> Vec<u8> {
        let end = self.size.min(off.saturating_add(len));
        if off >= end {
            return Vec::new();
        }
        let mut out = vec![0; end.saturating_sub(off) as usize];
        for (&p, page) in self.pages.range(off / PAGE..end.div_ceil(PAGE)) {
            let (from, to) = ((p * PAGE).max(off), ((p + 1) * PAGE).min(end));
            out[(from - off) as usize..(to - off) as usize]
                .copy_from_slice(&page[(from - p * PAGE) as usize..(to - p * PAGE) as usize]);
        }
        out
    }

    /// Shrinks (or grows, sparse) to `size`, dropping pages past it and zeroing the last one's
    /// tail.
    fn truncate(&mut self, size: u64) {
        self.pages.retain(|&p, _| p * PAGE < size);
        let tail = (size % PAGE) as usize;
        if tail != 0 {
            if let Some(page) = self.pages.get_mut(&(size / PAGE)) {
                Arc::make_mut(page)[tail..].fill(0);
            }
        }
        self.size = size;
    }
}

#[derive(Clone)]
struct Node {
    kind: Kind,
    perm: u16,
    uid: u32,
    gid: u32,
    /// Directory entries naming it (files: 1 or 0), 2 + subdirectories for a directory.
    nlink: u32,
    /// A directory's parent (its own for the root).
    parent: u64,
    atime: SystemTime,
    mtime: SystemTime,
    ctime: SystemTime,
    entries: BTreeMap<OsString, u64>,
    data: Data,
    // Bookkeeping of the `now` view only:
    /// Pages written since this file's last sync.
    dirty: BTreeSet<u64>,
    /// The size the on-disk inode gets at the next commit (ext4's i_disksize).
    disksize: u64,
    /// The smallest size truncated to since the last commit: the commit frees the durable
    /// blocks past it.
    trunc_low: Option<u64>,
}

impl Node {
    fn new(kind: Kind, perm: u16, uid: u32, gid: u32, parent: u64) -> Node {
        let t = SystemTime::now();
        Node {
            kind,
            perm,
            uid,
            gid,
            nlink: if kind == Kind::Dir { 2 } else { 1 },
            parent,
            atime: t,
            mtime: t,
            ctime: t,
            entries: BTreeMap::new(),
            data: Data::default(),
            dirty: BTreeSet::new(),
            disksize: 0,
            trunc_low: None,
        }
    }

    fn touch(&mut self) {
        let t = SystemTime::now();
        self.mtime = t;
        self.ctime = t;
    }
}

struct Handle {
    ino: u64,
    listing: Vec<(u64, Kind, OsString)>,
}

pub struct Model {
    now: HashMap<u64, Node>,
    disk: HashMap<u64, Node>,
    handles: HashMap<u64, Handle>,
    next_ino: u64,
    next_fh: u64,
    /// WRITE, fallocate and size changes answer EIO.
    pub fail_writes: bool,
    /// FSYNC and FSYNCDIR answer EIO; see the module's doc.
    pub fail_fsync: bool,
    /// With `fail_fsync`: only files named with this ending fail (a bad block under one file).
    pub fail_fsync_suffix: Option<String>,
    /// Bytes the card holds; `None`: [`DEFAULT_CAPACITY`].
    pub capacity: Option<u64>,
    pub stats: Stats,
}

impl Default for Model {
    fn default() -> Self {
        Model::new(0, 0)
    }
}

impl Model {
    /// An empty card (root directory owned by uid:gid), already durable.
    pub fn new(uid: u32, gid: u32) -> Model {
        let root = Node::new(Kind::Dir, 0o755, uid, gid, ROOT);
        let now = HashMap::from([(ROOT, root)]);
        Model {
            disk: now.clone(),
            now,
            handles: HashMap::new(),
            next_ino: ROOT + 1,
            next_fh: 1,
            fail_writes: false,
            fail_fsync: false,
            fail_fsync_suffix: None,
            capacity: None,
            stats: Stats::default(),
        }
    }

    fn node(&self, ino: u64) -> Res<&Node> {
        self.now.get(&ino).ok_or(libc::ENOENT)
    }

    fn node_mut(&mut self, ino: u64) -> Res<&mut Node> {
        self.now.get_mut(&ino).ok_or(libc::ENOENT)
    }

    fn file_mut(&mut self, ino: u64) -> Res<&mut Node> {
        let node = self.node_mut(ino)?;
        match node.kind {
            Kind::File => Ok(node),
            Kind::Dir => Err(libc::EISDIR),
        }
    }

    fn dir(&self, ino: u64) -> Res<&Node> {
        let node = self.node(ino)?;
        match node.kind {
            Kind::Dir => Ok(node),
            Kind::File => Err(libc::ENOTDIR),
        }
    }

    fn child(&self, parent: u64, name: &OsStr) -> Res<u64> {
        if name.len() > NAME_MAX {
            return Err(libc::ENAMETOOLONG);
        }
        self.dir(parent)?
            .entries
            .get(name)
            .copied()
            .ok_or(libc::ENOENT)
    }

    pub fn capacity(&self) -> u64 {
        self.capacity.unwrap_or(DEFAULT_CAPACITY)
    }

    /// Bytes in use now: allocated file pages (open unlinked files too) and a block per directory.
    pub fn used(&self) -> u64 {
        let pages = self.now.values().map(|n| match n.kind {
            Kind::File => n.data.pages.len() as u64,
            Kind::Dir => 1,
        });
        pages.sum::<u64>() * PAGE
    }

    fn room_for(&self, pages: u64) -> Res<()> {
        match self.used() + pages * PAGE <= self.capacity() {
            true => Ok(()),
            false => Err(libc::ENOSPC),
        }
    }

    /// (total blocks, free blocks, inodes, free inodes), in [`PAGE`]-sized blocks.
    pub fn statfs(&self) -> (u64, u64, u64, u64) {
        let total = self.capacity() / PAGE;
        let free = self.capacity().saturating_sub(self.used()) / PAGE;
        let inodes = self.now.len() as u64;
        (total, free, MAX_INODES, MAX_INODES.saturating_sub(inodes))
    }

    pub fn getattr(&self, ino: u64) -> Res<Attr> {
        let n = self.node(ino)?;
        let (size, blocks) = match n.kind {
            Kind::File => (n.data.size, n.data.pages.len() as u64 * (PAGE / 512)),
            Kind::Dir => (PAGE, PAGE / 512),
        };
        Ok(Attr {
            ino,
            kind: n.kind,
            size,
            blocks,
            perm: n.perm,
            nlink: n.nlink,
            uid: n.uid,
            gid: n.gid,
            atime: n.atime,
            mtime: n.mtime,
            ctime: n.ctime,
        })
    }

    pub fn lookup(&self, parent: u64, name: &OsStr) -> Res<Attr> {
        self.getattr(self.child(parent, name)?)
    }

    /// create, mknod and mkdir.
    pub fn make(&mut self, parent: u64, name: &OsStr, kind: Kind, perm: u16) -> Res<Attr> {
        let (uid, gid) = self.dir(parent).map(|d| (d.uid, d.gid))?;
        self.make_as(parent, name, kind, perm, uid, gid)
    }

    pub fn make_as(
        &mut self,
        parent: u64,
        name: &OsStr,
        kind: Kind,
        perm: u16,
        uid: u32,
        gid: u32,
    ) -> Res<Attr> {
        match self.child(parent, name) {
            Ok(_) => return Err(libc::EEXIST),
            Err(libc::ENOENT) => {}
            Err(e) => return Err(e),
        }
        if kind == Kind::Dir {
            self.room_for(1)?;
        }
        let ino = self.next_ino;
        self.next_ino += 1;
        self.now
            .insert(ino, Node::new(kind, perm & 0o7777, uid, gid, parent));
        let dir = self.node_mut(parent)?;
        dir.entries.insert(name.to_owned(), ino);
        dir.nlink += u32::from(kind == Kind::Dir);
        dir.touch();
        self.getattr(ino)
    }

    /// unlink: a file's name goes; the file itself when no handle has it open.
    pub fn unlink(&mut self, parent: u64, name: &OsStr) -> Res<()> {
        match self.node(self.child(parent, name)?)?.kind {
            Kind::File => self.detach(parent, name),
            Kind::Dir => Err(libc::EISDIR),
        }
    }

    pub fn rmdir(&mut self, parent: u64, name: &OsStr) -> Res<()> {
        let dir = self.dir(self.child(parent, name)?)?;
        match dir.entries.is_empty() {
            true => self.detach(parent, name),
            false => Err(libc::ENOTEMPTY),
        }
    }

    /// Removes the entry `parent/name` (which exists) and drops what it named if nothing else
    /// holds it.
    fn detach(&mut self, parent: u64, name: &OsStr) -> Res<()> {
        let dir = self.node_mut(parent)?;
        let ino = dir.entries.remove(name).ok_or(libc::ENOENT)?;
        dir.touch();
        let node = self.node_mut(ino)?;
        node.ctime = SystemTime::now();
        let is_dir = node.kind == Kind::Dir;
        node.nlink = if is_dir { 0 } else { node.nlink - 1 };
        if is_dir {
            self.node_mut(parent)?.nlink -= 1;
        }
        self.reap(ino);
        Ok(())
    }

    /// Forgets an inode that no entry names and no handle holds.
    fn reap(&mut self, ino: u64) {
        let orphan = self.now.get(&ino).is_some_and(|n| n.nlink == 0);
        if orphan && ino != ROOT && !self.handles.values().any(|h| h.ino == ino) {
            self.now.remove(&ino);
        }
    }

    /// rename(2), replacing an existing target atomically; `noreplace`: RENAME_NOREPLACE.
    pub fn rename(
        &mut self,
        parent: u64,
        name: &OsStr,
        new_parent: u64,
        new_name: &OsStr,
        noreplace: bool,
    ) -> Res<()> {
        let src = self.child(parent, name)?;
        let kind = self.node(src)?.kind;
        if new_name.len() > NAME_MAX {
            return Err(libc::ENAMETOOLONG);
        }
        if kind == Kind::Dir {
            // Not into itself or below it.
            let mut at = new_parent;
            while at != ROOT {
                if at == src {
                    return Err(libc::EINVAL);
                }
                at = self.node(at)?.parent;
            }
        }
        if let Some(&dst) = self.dir(new_parent)?.entries.get(new_name) {
            if dst == src {
                return Ok(());
            }
            if noreplace {
                return Err(libc::EEXIST);
            }
            let target = self.node(dst)?;
            match (kind, target.kind) {
                (Kind::Dir, Kind::File) => return Err(libc::ENOTDIR),
                (Kind::File, Kind::Dir) => return Err(libc::EISDIR),
                (Kind::Dir, Kind::Dir) if !target.entries.is_empty() => {
                    return Err(libc::ENOTEMPTY)
                }
                _ => self.detach(new_parent, new_name)?,
            }
        }
        self.node_mut(parent)?.entries.remove(name);
        self.node_mut(parent)?.touch();
        let to = self.node_mut(new_parent)?;
        to.entries.insert(new_name.to_owned(), src);
        to.touch();
        let node = self.node_mut(src)?;
        node.ctime = SystemTime::now();
        if kind == Kind::Dir && parent != new_parent {
            node.parent = new_parent;
            self.node_mut(parent)?.nlink -= 1;
            self.node_mut(new_parent)?.nlink += 1;
        }
        Ok(())
    }

    /// chmod, chown, utimes (journaled metadata).
    pub fn set_meta(
        &mut self,
        ino: u64,
        perm: Option<u16>,
        owner: (Option<u32>, Option<u32>),
        atime: Option<SystemTime>,
        mtime: Option<SystemTime>,
    ) -> Res<()> {
        let n = self.node_mut(ino)?;
        n.perm = perm.map_or(n.perm, |p| p & 0o7777);
        n.uid = owner.0.unwrap_or(n.uid);
        n.gid = owner.1.unwrap_or(n.gid);
        n.atime = atime.unwrap_or(n.atime);
        n.mtime = mtime.unwrap_or(n.mtime);
        n.ctime = SystemTime::now();
        Ok(())
    }

    /// truncate/ftruncate/set_len: journaled, like ext4's i_disksize (the next commit frees the
    /// durable blocks past a shrink and gives the on-disk inode this size).
    pub fn set_size(&mut self, ino: u64, size: u64) -> Res<()> {
        let fail = self.fail_writes;
        let n = self.file_mut(ino)?;
        if fail {
            return Err(libc::EIO);
        }
        if size < n.data.size {
            n.dirty.retain(|&p| p * PAGE < size);
            n.trunc_low = Some(n.trunc_low.map_or(size, |low| low.min(size)));
        }
        n.data.truncate(size);
        n.disksize = size;
        n.touch();
        Ok(())
    }

    /// fallocate: mode 0 or FALLOC_FL_KEEP_SIZE (allocates zeroed pages; a grown size is
    /// journaled like a truncate up); other modes answer EOPNOTSUPP.
    pub fn fallocate(&mut self, ino: u64, off: u64, len: u64, mode: i32) -> Res<()> {
        if mode & !libc::FALLOC_FL_KEEP_SIZE != 0 {
            return Err(libc::EOPNOTSUPP);
        }
        if len == 0 {
            return Err(libc::EINVAL);
        }
        let end = off.checked_add(len).ok_or(libc::EFBIG)?;
        let n = self.node(ino)?;
        let missing = (off / PAGE..end.div_ceil(PAGE))
            .filter(|p| !n.data.pages.contains_key(p))
            .count();
        self.room_for(missing as u64)?;
        let fail = self.fail_writes;
        let n = self.file_mut(ino)?;
        if fail {
            return Err(libc::EIO);
        }
        let grow = mode == 0 && end > n.data.size;
        if grow {
            n.data.size = end;
            n.disksize = n.disksize.max(end);
        }
        let last = n.data.size.div_ceil(PAGE);
        for p in off / PAGE..end.div_ceil(PAGE).min(last) {
            n.data.pages.entry(p).or_insert_with(zero_page);
        }
        n.ctime = SystemTime::now();
        Ok(())
    }

    pub fn read(&self, ino: u64, off: u64, len: u64) -> Res<Vec<u8>> {
        let n = self.node(ino)?;
        match n.kind {
            Kind::File => Ok(n.data.read(off, len)),
            Kind::Dir => Err(libc::EISDIR),
        }
    }

    /// pwrite: into the page cache (dirty pages); past the end, the gap reads as zeros.
    pub fn write(&mut self, ino: u64, off: u64, buf: &[u8]) -> Res<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let end = off.checked_add(buf.len() as u64).ok_or(libc::EFBIG)?;
        let n = self.node(ino)?;
        let missing = (off / PAGE..end.div_ceil(PAGE))
            .filter(|p| !n.data.pages.contains_key(p))
            .count();
        self.room_for(missing as u64)?;
        let fail = self.fail_writes;
        let n = self.file_mut(ino)?;
        if fail {
            return Err(libc::EIO);
        }
        for p in off / PAGE..end.div_ceil(PAGE) {
            let (from, to) = ((p * PAGE).max(off), ((p + 1) * PAGE).min(end));
            let page = n.data.pages.entry(p).or_insert_with(zero_page);
            Arc::make_mut(page)[(from - p * PAGE) as usize..(to - p * PAGE) as usize]
                .copy_from_slice(&buf[(from - off) as usize..(to - off) as usize]);
            n.dirty.insert(p);
        }
        n.data.size = n.data.size.max(end);
        n.touch();
        self.stats.writes += 1;
        self.stats.bytes_written += buf.len() as u64;
        Ok(buf.len())
    }

    /// fsync/fdatasync of a file, fsyncdir of a directory: the journal commits, then a file's
    /// dirty pages and size become durable. Under [`Model::fail_fsync`]: EIO, the file's dirty
    /// pages are marked clean without being written, and nothing commits.
    pub fn fsync(&mut self, ino: u64) -> Res<()> {
        let fail = self.fail_fsync
            && self.fail_fsync_suffix.as_deref().is_none_or(|end| {
                self.now.values().any(|n| {
                    n.entries
                        .iter()
                        .any(|(name, &i)| i == ino && name.to_string_lossy().ends_with(end))
                })
            });
        let n = self.node_mut(ino)?;
        if fail {
            n.dirty.clear();
            self.stats.failed_fsyncs += 1;
            return Err(libc::EIO);
        }
        self.commit();
        let Model { now, disk, .. } = self;
        let n = now.get_mut(&ino).ok_or(libc::ENOENT)?;
        if n.kind == Kind::File {
            let dirty = std::mem::take(&mut n.dirty);
            n.disksize = n.data.size;
            // An unlinked file's data goes nowhere: the commit dropped its inode.
            if let Some(d) = disk.get_mut(&ino) {
                for p in dirty {
                    if let Some(page) = n.data.pages.get(&p) {
                        d.data.pages.insert(p, page.clone());
                    }
                }
                d.data.size = n.data.size;
            }
        }
        self.stats.fsyncs += 1;
        Ok(())
    }

    /// A journal commit: all metadata of `now` (see the module's doc) becomes durable.
    pub fn commit(&mut self) {
        let mut old = std::mem::take(&mut self.disk);
        for (&ino, n) in self.now.iter_mut() {
            if n.nlink == 0 {
                continue; // unlinked, kept only while open: orphan cleanup at mount drops it
            }
            let mut d = match old.remove(&ino) {
                Some(d) if d.kind == n.kind => d,
                _ => Node {
                    data: Data::default(),
                    entries: BTreeMap::new(),
                    dirty: BTreeSet::new(),
                    ..n.clone()
                },
            };
            d.perm = n.perm;
            d.uid = n.uid;
            d.gid = n.gid;
            d.nlink = n.nlink;
            d.parent = n.parent;
            d.atime = n.atime;
            d.mtime = n.mtime;
            d.ctime = n.ctime;
            match n.kind {
                Kind::Dir => d.entries.clone_from(&n.entries),
                Kind::File => {
                    if let Some(low) = n.trunc_low.take() {
                        d.data.truncate(low.min(d.data.size));
                    }
                    d.data.size = n.disksize;
                }
            }
            self.disk.insert(ino, d);
        }
        self.stats.commits += 1;
    }

    /// The power goes: everything returns to its durable state, every handle is gone.
    pub fn cut(&mut self) {
        self.now = self.disk.clone();
        for n in self.now.values_mut() {
            n.dirty.clear();
            n.disksize = n.data.size;
            n.trunc_low = None;
        }
        self.handles.clear();
        self.stats.cuts += 1;
    }

    /// The kernel's background writeback got to some dirty pages before the power went: each
    /// with probability `share`, drawn from `rng`, becomes durable as if written back and then
    /// recorded by a journal commit (its file's durable size grows to cover it), in no order.
    /// Only files whose inode is durable; no metadata commits. Not in the default [`Model::cut`]:
    /// a caller opts in to catch code that relies on the order of writes it never synced.
    pub fn writeback_some(&mut self, share: f64, rng: &mut fastrand::Rng) {
        let Model { now, disk, .. } = self;
        for (ino, n) in now.iter_mut() {
            let Some(d) = disk.get_mut(ino).filter(|d| d.kind == Kind::File) else {
                continue;
            };
            n.dirty.retain(|&p| {
                let Some(page) = n.data.pages.get(&p).filter(|_| rng.f64() < share) else {
                    return true;
                };
                d.data.pages.insert(p, page.clone());
                d.data.size = d.data.size.max(n.data.size.min((p + 1) * PAGE));
                false
            });
        }
    }

    /// Every inode and every (directory, name) of the `now` view: what a cut may change.
    pub fn names(&self) -> (Vec<u64>, Vec<(u64, OsString)>) {
        let inodes = self.now.keys().copied().collect();
        let entries = self
            .now
            .iter()
            .flat_map(|(&dir, n)| n.entries.keys().map(move |name| (dir, name.clone())));
        (inodes, entries.collect())
    }

    /// open and opendir: a handle that keeps an unlinked file readable until released.
    pub fn open(&mut self, ino: u64) -> Res<u64> {
        self.node(ino)?;
        let fh = self.next_fh;
        self.next_fh += 1;
        let listing = Vec::new();
        self.handles.insert(fh, Handle { ino, listing });
        Ok(fh)
    }

    /// release and releasedir (a handle from before a cut is already gone: ignored).
    pub fn release(&mut self, fh: u64) {
        if let Some(h) = self.handles.remove(&fh) {
            self.reap(h.ino);
        }
    }

    /// readdir from `offset`: entries with the offset of the next one. The listing is taken at
    /// offset 0 and kept with the handle, so a directory changing meanwhile skips nothing.
    pub fn readdir(&mut self, fh: u64, ino: u64, offset: u64) -> Res<Vec<(u64, Kind, OsString)>> {
        if !self.handles.contains_key(&fh) {
            return Err(libc::EBADF);
        }
        if offset == 0 {
            let dir = self.dir(ino)?;
            let mut listing = vec![
                (ino, Kind::Dir, OsString::from(".")),
                (dir.parent, Kind::Dir, OsString::from("..")),
            ];
            for (name, &child) in &dir.entries {
                listing.push((child, self.node(child)?.kind, name.clone()));
            }
            self.handles.insert(fh, Handle { ino, listing });
        }
        let listing = &self.handles.get(&fh).ok_or(libc::EBADF)?.listing;
        Ok(listing.iter().skip(offset as usize).cloned().collect())
    }
}

fn zero_page() -> Page {
    Arc::new([0; PAGE as usize])
}
