package main

import (
	"context"
	"errors"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sync"
	"syscall"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"
)

// store is the state every node of the mount shares.
type store struct {
	backing string // the mirrored directory, absolute
	b       *behaviour

	inoMu sync.Mutex
	// inos gives each path and file type its own inode number, so that a node always stands for
	// one path (the paths in the counters are exact even for hard links in the backing
	// directory) and a path that changes type gets a new inode.
	inos    map[inoKey]uint64
	nextIno uint64
}

// inoKey identifies a node: a path relative to the mount root and its file type bits.
type inoKey struct {
	rel  string
	mode uint32
}

// newStore returns the state for a mount of backing.
func newStore(backing string, b *behaviour) *store {
	return &store{backing: backing, b: b, inos: map[inoKey]uint64{}, nextIno: 2}
}

// ino returns the inode number of rel with the file type bits of mode.
func (s *store) ino(rel string, mode uint32) uint64 {
	key := inoKey{rel: rel, mode: mode & syscall.S_IFMT}
	s.inoMu.Lock()
	defer s.inoMu.Unlock()
	ino, ok := s.inos[key]
	if !ok {
		ino = s.nextIno
		s.nextIno++
		s.inos[key] = ino
	}
	return ino
}

// path returns the backing path of rel.
func (s *store) path(rel string) string {
	return filepath.Join(s.backing, filepath.FromSlash(rel))
}

// isEntry reports whether rel is an Additional Layer Store entry: a directory holding diff,
// info and blob, which is what c/storage checks before it uses one.
func (s *store) isEntry(rel string) bool {
	var st syscall.Stat_t
	if syscall.Lstat(s.path(rel), &st) != nil || st.Mode&syscall.S_IFMT != syscall.S_IFDIR {
		return false
	}
	for _, name := range []string{"diff", "info", "blob"} {
		if syscall.Lstat(s.path(joinRel(rel, name)), &st) != nil {
			return false
		}
	}
	return true
}

// joinRel returns the path of name in the directory rel, both relative to the mount root.
func joinRel(rel, name string) string {
	if rel == "." {
		return name
	}
	return rel + "/" + name
}

// node is a file, directory or symlink of the mount, standing for the same path in the backing
// directory. It reads through to the backing directory, counts and fault-injects through
// store.b, turns "use" creation and entry rmdir into reference counting, and refuses every
// other change with EROFS.
type node struct {
	gofs.Inode
	s   *store
	rel string // the path relative to the mount root, "." for the root
}

// The node answers these requests itself; go-fuse's defaults would make some of the write
// requests succeed silently.
var (
	_ gofs.NodeLookuper       = (*node)(nil)
	_ gofs.NodeGetattrer      = (*node)(nil)
	_ gofs.NodeAccesser       = (*node)(nil)
	_ gofs.NodeOpener         = (*node)(nil)
	_ gofs.NodeReader         = (*node)(nil)
	_ gofs.NodeReaddirer      = (*node)(nil)
	_ gofs.NodeReadlinker     = (*node)(nil)
	_ gofs.NodeGetxattrer     = (*node)(nil)
	_ gofs.NodeListxattrer    = (*node)(nil)
	_ gofs.NodeStatfser       = (*node)(nil)
	_ gofs.NodeCreater        = (*node)(nil)
	_ gofs.NodeMknoder        = (*node)(nil)
	_ gofs.NodeRmdirer        = (*node)(nil)
	_ gofs.NodeUnlinker       = (*node)(nil)
	_ gofs.NodeMkdirer        = (*node)(nil)
	_ gofs.NodeSymlinker      = (*node)(nil)
	_ gofs.NodeLinker         = (*node)(nil)
	_ gofs.NodeRenamer        = (*node)(nil)
	_ gofs.NodeSetattrer      = (*node)(nil)
	_ gofs.NodeSetxattrer     = (*node)(nil)
	_ gofs.NodeRemovexattrer  = (*node)(nil)
	_ gofs.NodeWriter         = (*node)(nil)
	_ gofs.NodeAllocater      = (*node)(nil)
	_ gofs.NodeCopyFileRanger = (*node)(nil)
	_ gofs.NodeTmpfiler       = (*node)(nil)
)

// newRoot returns the root node of a mount of s.
func newRoot(s *store) *node {
	return &node{s: s, rel: "."}
}

// Lookup answers the lookup of name in n.
func (n *node) Lookup(ctx context.Context, name string, out *fuse.EntryOut,
) (*gofs.Inode, syscall.Errno) {
	rel := joinRel(n.rel, name)
	var st syscall.Stat_t
	errno := n.s.b.serve("lookup", rel, func() syscall.Errno {
		return errnoOf(syscall.Lstat(n.s.path(rel), &st))
	})
	if errno != 0 {
		return nil, errno
	}
	mode := st.Mode & syscall.S_IFMT
	attr := gofs.StableAttr{Mode: mode, Ino: n.s.ino(rel, mode)}
	out.FromStat(&st)
	out.Ino = attr.Ino
	return n.NewInode(ctx, &node{s: n.s, rel: rel}, attr), 0
}

// Getattr answers stat of n.
func (n *node) Getattr(ctx context.Context, f gofs.FileHandle, out *fuse.AttrOut,
) syscall.Errno {
	var st syscall.Stat_t
	errno := n.s.b.serve("getattr", n.rel, func() syscall.Errno {
		return errnoOf(syscall.Lstat(n.s.path(n.rel), &st))
	})
	if errno != 0 {
		return errno
	}
	out.FromStat(&st)
	out.Ino = n.StableAttr().Ino
	return 0
}

// Access answers access(2) on n; the kernel asks it because the mount does no permission
// checks of its own.
func (n *node) Access(ctx context.Context, mask uint32) syscall.Errno {
	return n.s.b.serve("access", n.rel, func() syscall.Errno {
		if mask&unix.W_OK != 0 {
			return syscall.EROFS
		}
		return errnoOf(unix.Faccessat(unix.AT_FDCWD, n.s.path(n.rel), mask,
			unix.AT_SYMLINK_NOFOLLOW))
	})
}

// handle is an open regular file of the mount.
type handle struct {
	f *os.File
}

var _ gofs.FileReleaser = (*handle)(nil)

// Release closes the backing file when the kernel drops the last reference to the handle.
func (h *handle) Release(ctx context.Context) syscall.Errno {
	return errnoOf(h.f.Close())
}

// Open answers open of n for reading; opening for writing or truncating answers EROFS. The
// kernel drops its cached pages of n at each open, so reads reach the file system again.
func (n *node) Open(ctx context.Context, flags uint32,
) (gofs.FileHandle, uint32, syscall.Errno) {
	var h *handle
	errno := n.s.b.serve("open", n.rel, func() syscall.Errno {
		if flags&syscall.O_ACCMODE != syscall.O_RDONLY || flags&syscall.O_TRUNC != 0 {
			return syscall.EROFS
		}
		f, err := os.OpenFile(n.s.path(n.rel), os.O_RDONLY|syscall.O_NOFOLLOW, 0)
		if err != nil {
			return errnoOf(err)
		}
		h = &handle{f: f}
		return 0
	})
	if errno != 0 {
		return nil, 0, errno
	}
	return h, 0, 0
}

// Read answers a read of n through the handle Open returned.
func (n *node) Read(ctx context.Context, f gofs.FileHandle, dest []byte, off int64,
) (fuse.ReadResult, syscall.Errno) {
	h, ok := f.(*handle)
	if !ok {
		return nil, syscall.EBADF
	}
	var got int
	errno := n.s.b.serve("read", n.rel, func() syscall.Errno {
		var err error
		got, err = h.f.ReadAt(dest, off)
		if errors.Is(err, io.EOF) {
			return 0
		}
		return errnoOf(err)
	})
	if errno != 0 {
		return nil, errno
	}
	return fuse.ReadResultData(dest[:got]), 0
}

// Readdir answers the listing of n, which is read from the backing directory when the kernel
// first reads the open directory.
func (n *node) Readdir(ctx context.Context) (gofs.DirStream, syscall.Errno) {
	var list []fuse.DirEntry
	errno := n.s.b.serve("readdir", n.rel, func() syscall.Errno {
		entries, err := os.ReadDir(n.s.path(n.rel))
		if err != nil {
			return errnoOf(err)
		}
		list = make([]fuse.DirEntry, 0, len(entries)+2)
		list = append(list,
			fuse.DirEntry{Name: ".", Mode: syscall.S_IFDIR, Ino: n.StableAttr().Ino},
			fuse.DirEntry{Name: "..", Mode: syscall.S_IFDIR, Ino: n.parentIno()})
		for _, e := range entries {
			mode := typeBits(e.Type())
			list = append(list, fuse.DirEntry{
				Name: e.Name(),
				Mode: mode,
				Ino:  n.s.ino(joinRel(n.rel, e.Name()), mode),
			})
		}
		return 0
	})
	if errno != 0 {
		return nil, errno
	}
	return gofs.NewListDirStream(list), 0
}

// parentIno returns the inode number of n's parent directory; the root is its own parent.
func (n *node) parentIno() uint64 {
	if n.rel == "." {
		return n.StableAttr().Ino
	}
	parent := path.Dir(n.rel)
	if parent == "." {
		return 1
	}
	return n.s.ino(parent, syscall.S_IFDIR)
}

// typeBits returns the S_IF* bits for the file type in t.
func typeBits(t fs.FileMode) uint32 {
	switch {
	case t&fs.ModeDir != 0:
		return syscall.S_IFDIR
	case t&fs.ModeSymlink != 0:
		return syscall.S_IFLNK
	case t&fs.ModeNamedPipe != 0:
		return syscall.S_IFIFO
	case t&fs.ModeSocket != 0:
		return syscall.S_IFSOCK
	case t&fs.ModeCharDevice != 0:
		return syscall.S_IFCHR
	case t&fs.ModeDevice != 0:
		return syscall.S_IFBLK
	default:
		return syscall.S_IFREG
	}
}

// Readlink answers readlink of n.
func (n *node) Readlink(ctx context.Context) ([]byte, syscall.Errno) {
	var target string
	errno := n.s.b.serve("readlink", n.rel, func() syscall.Errno {
		var err error
		target, err = os.Readlink(n.s.path(n.rel))
		return errnoOf(err)
	})
	if errno != 0 {
		return nil, errno
	}
	return []byte(target), 0
}

// Getxattr answers getxattr of attr on n. An attribute n lacks answers ENODATA, which
// overlayfs relies on when it probes its lower directories.
func (n *node) Getxattr(ctx context.Context, attr string, dest []byte) (uint32, syscall.Errno) {
	var size int
	errno := n.s.b.serve("getxattr", n.rel, func() syscall.Errno {
		var err error
		size, err = unix.Lgetxattr(n.s.path(n.rel), attr, dest)
		return errnoOf(err)
	})
	if errno != 0 {
		return 0, errno
	}
	return uint32(size), 0
}

// Listxattr answers listxattr of n.
func (n *node) Listxattr(ctx context.Context, dest []byte) (uint32, syscall.Errno) {
	var size int
	errno := n.s.b.serve("listxattr", n.rel, func() syscall.Errno {
		var err error
		size, err = unix.Llistxattr(n.s.path(n.rel), dest)
		return errnoOf(err)
	})
	if errno != 0 {
		return 0, errno
	}
	return uint32(size), 0
}

// Statfs answers statfs with the backing file system's numbers.
func (n *node) Statfs(ctx context.Context, out *fuse.StatfsOut) syscall.Errno {
	return n.s.b.serve("statfs", n.rel, func() syscall.Errno {
		var st syscall.Statfs_t
		if err := syscall.Statfs(n.s.backing, &st); err != nil {
			return errnoOf(err)
		}
		out.FromStatfsT(&st)
		return 0
	})
}

// notifyUse answers the creation of name in n: a "use" file in an entry is c/storage telling
// the store it uses the entry, which a store that counts references answers with ENOENT.
func (n *node) notifyUse(op, name string) syscall.Errno {
	n.s.b.count(op, joinRel(n.rel, name))
	if name == "use" && n.s.isEntry(n.rel) {
		n.s.b.use(n.rel)
		return syscall.ENOENT
	}
	return syscall.EROFS
}

// Create answers open(O_CREAT) of a missing name in n; see notifyUse.
func (n *node) Create(ctx context.Context, name string, flags, mode uint32,
	out *fuse.EntryOut,
) (*gofs.Inode, gofs.FileHandle, uint32, syscall.Errno) {
	return nil, nil, 0, n.notifyUse("create", name)
}

// Mknod answers mknod in n, which a kernel without atomic open sends instead of Create for a
// regular file; see notifyUse.
func (n *node) Mknod(ctx context.Context, name string, mode, dev uint32, out *fuse.EntryOut,
) (*gofs.Inode, syscall.Errno) {
	if mode&syscall.S_IFMT != syscall.S_IFREG {
		n.s.b.count("mknod", joinRel(n.rel, name))
		return nil, syscall.EROFS
	}
	return nil, n.notifyUse("mknod", name)
}

// Rmdir answers rmdir of name in n: on an entry it is c/storage releasing the entry, which a
// store that counts references answers with ENOENT.
func (n *node) Rmdir(ctx context.Context, name string) syscall.Errno {
	rel := joinRel(n.rel, name)
	n.s.b.count("rmdir", rel)
	if n.s.isEntry(rel) {
		n.s.b.release(rel)
		return syscall.ENOENT
	}
	return syscall.EROFS
}

// refuse counts a request that would change the mount and answers EROFS.
func (n *node) refuse(op, rel string) syscall.Errno {
	n.s.b.count(op, rel)
	return syscall.EROFS
}

// Unlink refuses to remove name from n.
func (n *node) Unlink(ctx context.Context, name string) syscall.Errno {
	return n.refuse("unlink", joinRel(n.rel, name))
}

// Mkdir refuses to create a directory in n.
func (n *node) Mkdir(ctx context.Context, name string, mode uint32, out *fuse.EntryOut,
) (*gofs.Inode, syscall.Errno) {
	return nil, n.refuse("mkdir", joinRel(n.rel, name))
}

// Symlink refuses to create a symlink in n.
func (n *node) Symlink(ctx context.Context, target, name string, out *fuse.EntryOut,
) (*gofs.Inode, syscall.Errno) {
	return nil, n.refuse("symlink", joinRel(n.rel, name))
}

// Link refuses to create a hard link in n.
func (n *node) Link(ctx context.Context, target gofs.InodeEmbedder, name string,
	out *fuse.EntryOut,
) (*gofs.Inode, syscall.Errno) {
	return nil, n.refuse("link", joinRel(n.rel, name))
}

// Rename refuses to move name out of n.
func (n *node) Rename(ctx context.Context, name string, newParent gofs.InodeEmbedder,
	newName string, flags uint32,
) syscall.Errno {
	return n.refuse("rename", joinRel(n.rel, name))
}

// Setattr refuses chmod, chown, truncate and utimes of n.
func (n *node) Setattr(ctx context.Context, f gofs.FileHandle, in *fuse.SetAttrIn,
	out *fuse.AttrOut,
) syscall.Errno {
	return n.refuse("setattr", n.rel)
}

// Setxattr refuses to set an extended attribute of n.
func (n *node) Setxattr(ctx context.Context, attr string, data []byte, flags uint32,
) syscall.Errno {
	return n.refuse("setxattr", n.rel)
}

// Removexattr refuses to remove an extended attribute of n.
func (n *node) Removexattr(ctx context.Context, attr string) syscall.Errno {
	return n.refuse("removexattr", n.rel)
}

// Write refuses to write to n; Open never hands out a writable handle, so it is not reached.
func (n *node) Write(ctx context.Context, f gofs.FileHandle, data []byte, off int64,
) (uint32, syscall.Errno) {
	return 0, n.refuse("write", n.rel)
}

// Allocate refuses fallocate on n.
func (n *node) Allocate(ctx context.Context, f gofs.FileHandle, off, size uint64, mode uint32,
) syscall.Errno {
	return n.refuse("allocate", n.rel)
}

// CopyFileRange refuses copy_file_range into the mount.
func (n *node) CopyFileRange(ctx context.Context, fhIn gofs.FileHandle, offIn uint64,
	out *gofs.Inode, fhOut gofs.FileHandle, offOut, length, flags uint64,
) (uint32, syscall.Errno) {
	return 0, n.refuse("copyfilerange", n.rel)
}

// Tmpfile refuses open(O_TMPFILE) in n.
func (n *node) Tmpfile(ctx context.Context, flags, mode uint32, out *fuse.EntryOut,
) (*gofs.Inode, gofs.FileHandle, uint32, syscall.Errno) {
	return nil, nil, 0, n.refuse("tmpfile", n.rel)
}
