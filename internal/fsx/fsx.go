// Package fsx writes custos's outputs the one way they may be written: atomically (temporary file,
// fsync, rename), never over an existing path, files 0600 and directories 0700. A flow builds its whole
// output directory under a temporary name and renames it into place at the end, so an abort leaves
// nothing half-written.
package fsx

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// ErrExists is returned when an output path already exists.
var ErrExists = errors.New("already exists")

// WriteFile writes data to path atomically with mode 0600, refusing to replace anything at path.
func WriteFile(path string, data []byte) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	tmp := f.Name()
	ok := false
	defer func() {
		if !ok {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if err := f.Chmod(0o600); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if _, err := f.Write(data); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := renameNoReplace(tmp, path); err != nil {
		return err
	}
	ok = true
	return syncDir(dir)
}

// CheckNew returns an error naming path when something already exists there.
func CheckNew(path string) error {
	if _, err := os.Lstat(path); err == nil {
		return fmt.Errorf("%s %w; choose a new path (custos never overwrites)", path, ErrExists)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

// Dir is an output directory being built under a temporary name beside its final path.
type Dir struct {
	final string
	tmp   string
}

// NewDir starts an output directory that will appear at path when committed. path must not exist.
func NewDir(path string) (*Dir, error) {
	path = filepath.Clean(path)
	if err := CheckNew(path); err != nil {
		return nil, err
	}
	tmp, err := os.MkdirTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return nil, fmt.Errorf("create %s: %w", path, err)
	}
	if err := os.Chmod(tmp, 0o700); err != nil {
		os.RemoveAll(tmp)
		return nil, err
	}
	return &Dir{final: path, tmp: tmp}, nil
}

// Path returns where rel will be once the directory is committed.
func (d *Dir) Path(rel string) string { return filepath.Join(d.final, rel) }

// TempPath returns where rel is while the directory is being built.
func (d *Dir) TempPath(rel string) string { return filepath.Join(d.tmp, rel) }

// WriteFile writes rel (which may name a subdirectory, created 0700) inside the directory.
func (d *Dir) WriteFile(rel string, data []byte) error {
	p := d.TempPath(rel)
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		return err
	}
	return WriteFile(p, data)
}

// Commit fsyncs the directory tree and renames it into place, refusing to replace anything.
func (d *Dir) Commit() error {
	err := filepath.WalkDir(d.tmp, func(p string, e fs.DirEntry, err error) error {
		if err != nil || !e.IsDir() {
			return err
		}
		return syncDir(p)
	})
	if err != nil {
		return err
	}
	if err := renameNoReplace(d.tmp, d.final); err != nil {
		return err
	}
	d.tmp = ""
	return syncDir(filepath.Dir(d.final))
}

// Abort removes the directory if it was not committed. It is safe to defer.
func (d *Dir) Abort() {
	if d.tmp != "" {
		os.RemoveAll(d.tmp)
		d.tmp = ""
	}
}

func renameNoReplace(from, to string) error {
	err := unix.Renameat2(unix.AT_FDCWD, from, unix.AT_FDCWD, to, unix.RENAME_NOREPLACE)
	if errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("%s %w; choose a new path (custos never overwrites)", to, ErrExists)
	}
	if err != nil {
		return fmt.Errorf("rename into %s: %w", to, err)
	}
	return nil
}

func syncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}
