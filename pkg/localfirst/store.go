package localfirst

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/yawp/persistence-operator/internal/yjs"
)

// The local store is one append-only file:
//
//	"YAWPLF1\n"                              magic
//	record*: uint32 LE length | uint32 LE CRC-32C(payload) | payload
//
// Each payload is a Yjs v1 update. Every update the document takes, local
// or remote, is appended and fsynced before it is acted on (a local edit
// is sent only once it is on disk). Open replays the records, stops at the
// first incomplete or corrupt one (a torn last write from a crash; a
// damaged record before the end is kept aside, see loaded.keptAt), and
// compacts the file to one record holding the whole state (written to a
// temporary file, fsynced, renamed over, directory fsynced). An exclusive
// lock on path+".lock" keeps a second client from opening it meanwhile.
const magic = "YAWPLF1\n"

// maxRecord bounds one record (a corrupt length must not make us allocate).
const maxRecord = 256 << 20

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// ErrCorrupt is returned when a complete, checksummed record is not a valid
// update or the file is not a local store.
var ErrCorrupt = errors.New("localfirst: local store corrupt")

// ErrInUse is returned by Open when another client, in this process or
// another, has the local store open: two writers of one file would lose
// each other's edits (the second compacts the file from under the first).
var ErrInUse = errors.New("localfirst: local store is open in another client")

// store is the append-only update log.
type store struct {
	path   string
	f      *os.File
	lock   *os.File // holds an exclusive lock on path+".lock" while open
	size   int64    // bytes known good
	broken error
}

// loaded is what openStore found on disk.
type loaded struct {
	records int
	torn    int64
	// keptAt names a copy of the file as found, made when a damaged
	// record sat before the file's end (not a torn last write): the
	// records after it could not be read, and compaction would
	// otherwise have destroyed them.
	keptAt string
}

// openStore loads path into doc (creating the file if missing), compacts it
// and returns the store ready for appends.
func openStore(path string, doc *yjs.Doc) (s *store, ld loaded, err error) {
	lock, err := lockStore(path + ".lock")
	if err != nil {
		return nil, ld, err
	}
	s, ld, err = openLocked(path, lock, doc)
	if err != nil {
		lock.Close()
	}
	return s, ld, err
}

// openLocked is openStore for a caller that holds the lock already.
func openLocked(path string, lock *os.File, doc *yjs.Doc) (s *store, ld loaded, err error) {
	f, err := os.Open(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return nil, ld, err
	default:
		var midFile bool
		ld.records, ld.torn, midFile, err = replay(f, doc)
		f.Close()
		if err != nil {
			return nil, ld, fmt.Errorf("%s: %w", path, err)
		}
		if midFile {
			ld.keptAt = fmt.Sprintf("%s.damaged-%d", path, time.Now().UnixNano())
			if err := os.Link(path, ld.keptAt); err != nil {
				return nil, ld, fmt.Errorf("%s: keeping the damaged store: %w", path, err)
			}
		}
	}
	if err := compact(path, doc); err != nil {
		return nil, ld, err
	}
	f, err = os.OpenFile(path, os.O_WRONLY, 0o600)
	if err != nil {
		return nil, ld, err
	}
	size, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		f.Close()
		return nil, ld, err
	}
	return &store{path: path, f: f, lock: lock, size: size}, ld, nil
}

// replay applies path's records to doc. It stops at the first record it
// cannot read: a torn last write (a crash mid-append) is dropped
// (torn bytes), but a damaged record with more of the file after it is
// not a torn write, and midFile says so.
func replay(f *os.File, doc *yjs.Doc) (records int, torn int64, midFile bool, err error) {
	records, torn, err = replayRecords(f, doc)
	if err == nil && torn > 0 {
		// A torn write is the last record; anything after the record
		// that stopped the replay means damage in the middle.
		midFile = tornIsNotLast(f, torn)
	}
	return records, torn, midFile, err
}

// tornIsNotLast reports whether the unreadable tail of f (its last torn
// bytes) holds a complete, checksummed record after its start: then it
// is not one torn last write but damage before the end (in a record's
// payload, or in its header, whose length cannot be trusted).
func tornIsNotLast(f *os.File, torn int64) bool {
	st, err := f.Stat()
	if err != nil || torn > st.Size() {
		return false
	}
	tail := make([]byte, torn)
	if _, err := f.ReadAt(tail, st.Size()-torn); err != nil {
		return true // cannot tell: keep the file
	}
	for off := 1; off+8 < len(tail); off++ {
		n := int(binary.LittleEndian.Uint32(tail[off:]))
		if n == 0 || n > len(tail)-off-8 {
			continue
		}
		if crc32.Checksum(tail[off+8:off+8+n], crcTable) == binary.LittleEndian.Uint32(tail[off+4:]) {
			return true
		}
	}
	return false
}

func replayRecords(f *os.File, doc *yjs.Doc) (records int, torn int64, err error) {
	st, err := f.Stat()
	if err != nil {
		return 0, 0, err
	}
	size := st.Size()
	r := bufio.NewReader(f)
	head := make([]byte, len(magic))
	if n, err := io.ReadFull(r, head); err != nil {
		if size < int64(len(magic)) && string(head[:n]) == magic[:n] {
			return 0, size, nil // torn while creating
		}
		if size < int64(len(magic)) {
			// Some other (short) file: compacting would overwrite it.
			return 0, 0, fmt.Errorf("%w: not a local store (bad magic)", ErrCorrupt)
		}
		return 0, 0, err
	}
	if string(head) != magic {
		return 0, 0, fmt.Errorf("%w: not a local store (bad magic)", ErrCorrupt)
	}
	pos := int64(len(magic))
	var hdr [8]byte
	for {
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			return records, size - pos, nil
		}
		n := binary.LittleEndian.Uint32(hdr[:4])
		sum := binary.LittleEndian.Uint32(hdr[4:])
		if n == 0 || int64(n) > size-pos-8 || n > maxRecord {
			// No record is empty: a zero header is a torn write's
			// zero-filled tail (the file grew, its data never landed).
			return records, size - pos, nil
		}
		payload := make([]byte, n)
		if _, err := io.ReadFull(r, payload); err != nil {
			return records, size - pos, nil
		}
		if crc32.Checksum(payload, crcTable) != sum {
			return records, size - pos, nil
		}
		if err := doc.ApplyUpdate(payload); err != nil {
			return records, 0, fmt.Errorf("%w: record at byte %d: %v", ErrCorrupt, pos, err)
		}
		records++
		pos += 8 + int64(n)
	}
}

func appendRecord(dst, payload []byte) []byte {
	var hdr [8]byte
	binary.LittleEndian.PutUint32(hdr[:4], uint32(len(payload)))
	binary.LittleEndian.PutUint32(hdr[4:], crc32.Checksum(payload, crcTable))
	return append(append(dst, hdr[:]...), payload...)
}

func compact(path string, doc *yjs.Doc) error {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, filepath.Base(path)+".compact-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	buf := appendRecord([]byte(magic), doc.EncodeStateAsUpdate(nil))
	if _, err := tmp.Write(buf); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return err
	}
	return syncDir(dir)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// append writes one update durably.
func (s *store) append(update []byte) error {
	if len(update) > maxRecord {
		return fmt.Errorf("localfirst: update of %d bytes over the record limit", len(update))
	}
	if s.broken != nil {
		return s.broken
	}
	rec := appendRecord(nil, update)
	_, err := s.f.WriteAt(rec, s.size)
	if err == nil {
		err = s.f.Sync()
	}
	if err != nil {
		// Cut a partial record so that later appends stay readable.
		if terr := s.f.Truncate(s.size); terr != nil {
			s.broken = fmt.Errorf("localfirst: local store unusable after a failed write: %v", terr)
		}
		return err
	}
	s.size += int64(len(rec))
	return nil
}

func (s *store) close() error {
	err := s.f.Close()
	if lerr := s.lock.Close(); err == nil {
		err = lerr
	}
	return err
}
