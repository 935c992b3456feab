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
// first incomplete or corrupt one (a torn last write from a crash), and
// compacts the file to one record holding the whole state (written to a
// temporary file, fsynced, renamed over, directory fsynced).
const magic = "YAWPLF1\n"

// maxRecord bounds one record (a corrupt length must not make us allocate).
const maxRecord = 256 << 20

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// ErrCorrupt is returned when a complete, checksummed record is not a valid
// update or the file is not a local store.
var ErrCorrupt = errors.New("localfirst: local store corrupt")

// store is the append-only update log.
type store struct {
	path   string
	f      *os.File
	size   int64 // bytes known good
	broken error
}

// openStore loads path into doc (creating the file if missing), compacts it
// and returns the store ready for appends. torn reports how many bytes of
// an incomplete or corrupt tail were dropped.
func openStore(path string, doc *yjs.Doc) (s *store, records int, torn int64, err error) {
	f, err := os.Open(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return nil, 0, 0, err
	default:
		records, torn, err = replay(f, doc)
		f.Close()
		if err != nil {
			return nil, 0, 0, fmt.Errorf("%s: %w", path, err)
		}
	}
	if err := compact(path, doc); err != nil {
		return nil, 0, 0, err
	}
	f, err = os.OpenFile(path, os.O_WRONLY, 0o600)
	if err != nil {
		return nil, 0, 0, err
	}
	size, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		f.Close()
		return nil, 0, 0, err
	}
	return &store{path: path, f: f, size: size}, records, torn, nil
}

func replay(f *os.File, doc *yjs.Doc) (records int, torn int64, err error) {
	st, err := f.Stat()
	if err != nil {
		return 0, 0, err
	}
	size := st.Size()
	r := bufio.NewReader(f)
	head := make([]byte, len(magic))
	if _, err := io.ReadFull(r, head); err != nil {
		if size < int64(len(magic)) {
			return 0, size, nil // torn while creating
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
		if int64(n) > size-pos-8 || n > maxRecord {
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

func (s *store) close() error { return s.f.Close() }
