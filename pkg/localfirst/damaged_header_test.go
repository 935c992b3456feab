package localfirst

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"testing"
)

// TestDamagedHeaderBeforeTheEndIsKept: damage that hits a record's
// header (a zeroed sector, a flipped bit in its length) instead of its
// payload, in a record that is not the last. The records after it were
// acknowledged; they must not be dropped and compacted away silently.
// Only damage to a payload was caught before. Found by review.
func TestDamagedHeaderBeforeTheEndIsKept(t *testing.T) {
	for name, damage := range map[string]func(b []byte, pos int){
		"zeroed header": func(b []byte, pos int) { copy(b[pos:pos+8], make([]byte, 8)) },
		"length bit":    func(b []byte, pos int) { b[pos+3] ^= 0x10 },
	} {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "doc.ylf")
			c := open(t, path)
			for _, s := range []string{"one ", "two ", "three ", "four"} {
				if err := c.Edit(appendText(s)); err != nil {
					t.Fatal(err)
				}
			}
			c.Close()
			b, _ := os.ReadFile(path)
			pos := len(magic)
			for i := 0; i < 2; i++ {
				pos += 8 + int(binary.LittleEndian.Uint32(b[pos:]))
			}
			damage(b, pos) // header of "two "
			if err := os.WriteFile(path, b, 0o600); err != nil {
				t.Fatal(err)
			}
			c, err := Open(path)
			if err != nil {
				t.Logf("refused (data kept on disk): %v", err)
				return
			}
			defer c.Close()
			if c.Loaded.DamagedKeptAt == "" {
				after, _ := os.ReadFile(path)
				t.Fatalf("text %q, loaded %+v: records two..four dropped, nothing kept, file compacted to %d bytes (was %d)",
					c.Text(), c.Loaded, len(after), len(b))
			}
		})
	}
}
