package yjs

import (
	"encoding/binary"
	"math"
	"slices"
	"unicode/utf16"
	"unicode/utf8"
)

// This file implements the subset of lib0's binary encoding that the Yjs v1
// update format uses: unsigned and signed variable-length integers, length
// prefixed strings and byte arrays, and lib0 "Any" values.

// maxSafeInteger is the largest integer a JavaScript number represents
// exactly; lib0 refuses larger variable-length integers and so do we.
const maxSafeInteger = 1<<53 - 1

// maxAnyDepth bounds the nesting of Any and JSON values we accept, so hostile
// input cannot exhaust the stack.
const maxAnyDepth = 64

// decoder reads lib0 encoded values from a byte slice. The first failure is
// kept in err; later reads return zero values, so callers check err at
// convenient points instead of after every read.
type decoder struct {
	buf []byte
	pos int
	err error
}

func newDecoder(b []byte) *decoder { return &decoder{buf: b} }

func (d *decoder) remaining() int { return len(d.buf) - d.pos }

func (d *decoder) fail(what string) {
	if d.err == nil {
		d.err = malformed("%s at byte %d", what, d.pos)
	}
}

func (d *decoder) readUint8() byte {
	if d.err != nil {
		return 0
	}
	if d.pos >= len(d.buf) {
		d.fail("unexpected end of input")
		return 0
	}
	b := d.buf[d.pos]
	d.pos++
	return b
}

func (d *decoder) readVarUint() uint64 {
	if d.err != nil {
		return 0
	}
	var n uint64
	var shift uint
	for {
		if d.pos >= len(d.buf) {
			d.fail("unexpected end of input in varuint")
			return 0
		}
		b := d.buf[d.pos]
		d.pos++
		n |= uint64(b&0x7f) << shift
		if n > maxSafeInteger || shift > 56 {
			d.fail("varuint out of range")
			return 0
		}
		if b < 0x80 {
			return n
		}
		shift += 7
	}
}

// readLen reads a varuint used as a count of things that each take at least
// minBytes bytes of the remaining input, so that a hostile count cannot make
// us allocate more than the input justifies.
func (d *decoder) readCount(minBytes int) int {
	n := d.readVarUint()
	if d.err != nil {
		return 0
	}
	if minBytes > 0 && n > uint64(d.remaining()/minBytes) {
		d.fail("count exceeds remaining input")
		return 0
	}
	return int(n)
}

// readVarInt reads lib0's signed varint: the first byte holds a continuation
// bit, a sign bit and six value bits.
func (d *decoder) readVarInt() int64 {
	b := d.readUint8()
	if d.err != nil {
		return 0
	}
	n := uint64(b & 0x3f)
	neg := b&0x40 != 0
	shift := uint(6)
	for b&0x80 != 0 {
		b = d.readUint8()
		if d.err != nil {
			return 0
		}
		n |= uint64(b&0x7f) << shift
		if n > maxSafeInteger || shift > 56 {
			d.fail("varint out of range")
			return 0
		}
		shift += 7
	}
	if neg {
		return -int64(n)
	}
	return int64(n)
}

func (d *decoder) readBytes(n int) []byte {
	if d.err != nil {
		return nil
	}
	if n < 0 || n > d.remaining() {
		d.fail("length exceeds remaining input")
		return nil
	}
	b := d.buf[d.pos : d.pos+n : d.pos+n]
	d.pos += n
	return b
}

func (d *decoder) readVarBytes() []byte {
	n := d.readVarUint()
	if d.err != nil {
		return nil
	}
	if n > uint64(d.remaining()) {
		d.fail("length exceeds remaining input")
		return nil
	}
	return d.readBytes(int(n))
}

// readVarString returns the raw UTF-8 bytes of a length-prefixed string as a
// Go string (invalid UTF-8 is kept as is so it re-encodes unchanged).
func (d *decoder) readVarString() string { return string(d.readVarBytes()) }

// skipAny validates one lib0 Any value and returns its encoded bytes.
func (d *decoder) readAnyRaw() []byte {
	start := d.pos
	d.skipAny(0)
	if d.err != nil {
		return nil
	}
	return d.buf[start:d.pos:d.pos]
}

func (d *decoder) skipAny(depth int) {
	if depth > maxAnyDepth {
		d.fail("any value nested too deeply")
		return
	}
	t := d.readUint8()
	if d.err != nil {
		return
	}
	switch t {
	case 127, 126, 121, 120: // undefined, null, false, true
	case 125: // integer
		d.readVarInt()
	case 124: // float32
		d.readBytes(4)
	case 123, 122: // float64, bigint64
		d.readBytes(8)
	case 119: // string
		d.readVarBytes()
	case 118: // object
		n := d.readCount(2)
		for i := 0; i < n && d.err == nil; i++ {
			d.readVarBytes()
			d.skipAny(depth + 1)
		}
	case 117: // array
		n := d.readCount(1)
		for i := 0; i < n && d.err == nil; i++ {
			d.skipAny(depth + 1)
		}
	case 116: // Uint8Array
		d.readVarBytes()
	default:
		d.fail("unknown any type tag")
	}
}

// Undefined is the JavaScript undefined value inside decoded Any values.
type Undefined struct{}

// BigInt is a 64-bit JavaScript bigint inside decoded Any values.
type BigInt int64

// AnyEntry is one key of a decoded Any object, in encoded order.
type AnyEntry struct {
	Key   string
	Value any
}

// DecodeAny decodes one lib0 Any value. Objects decode to []AnyEntry (to
// keep key order), arrays to []any, integers to int64, float32 and float64
// to float64, bigints to BigInt, binary to []byte, null to nil and undefined
// to Undefined{}.
func DecodeAny(b []byte) (any, error) {
	d := newDecoder(b)
	v := d.readAny(0)
	if d.err != nil {
		return nil, d.err
	}
	return v, nil
}

func (d *decoder) readAny(depth int) any {
	if depth > maxAnyDepth {
		d.fail("any value nested too deeply")
		return nil
	}
	t := d.readUint8()
	if d.err != nil {
		return nil
	}
	switch t {
	case 127:
		return Undefined{}
	case 126:
		return nil
	case 125:
		return d.readVarInt()
	case 124:
		b := d.readBytes(4)
		if d.err != nil {
			return nil
		}
		return float64(math.Float32frombits(binary.BigEndian.Uint32(b)))
	case 123:
		b := d.readBytes(8)
		if d.err != nil {
			return nil
		}
		return math.Float64frombits(binary.BigEndian.Uint64(b))
	case 122:
		b := d.readBytes(8)
		if d.err != nil {
			return nil
		}
		return BigInt(int64(binary.BigEndian.Uint64(b)))
	case 121:
		return false
	case 120:
		return true
	case 119:
		return d.readVarString()
	case 118:
		n := d.readCount(2)
		obj := make([]AnyEntry, 0, n)
		for i := 0; i < n && d.err == nil; i++ {
			k := d.readVarString()
			v := d.readAny(depth + 1)
			obj = append(obj, AnyEntry{k, v})
		}
		return obj
	case 117:
		n := d.readCount(1)
		arr := make([]any, 0, n)
		for i := 0; i < n && d.err == nil; i++ {
			arr = append(arr, d.readAny(depth+1))
		}
		return arr
	case 116:
		return append([]byte(nil), d.readVarBytes()...)
	}
	d.fail("unknown any type tag")
	return nil
}

// encoder appends lib0 encoded values to a byte slice.
type encoder struct{ buf []byte }

func (e *encoder) writeUint8(b byte) { e.buf = append(e.buf, b) }

func (e *encoder) writeVarUint(n uint64) {
	for n > 0x7f {
		e.buf = append(e.buf, 0x80|byte(n&0x7f))
		n >>= 7
	}
	e.buf = append(e.buf, byte(n))
}

func (e *encoder) writeVarBytes(b []byte) {
	e.writeVarUint(uint64(len(b)))
	e.buf = append(e.buf, b...)
}

func (e *encoder) writeVarString(s string) {
	e.writeVarUint(uint64(len(s)))
	e.buf = append(e.buf, s...)
}

// writeUTF16 writes UTF-16 code units as a length-prefixed UTF-8 string the
// way JavaScript's TextEncoder does: lone surrogates become U+FFFD.
func (e *encoder) writeUTF16(s []uint16) {
	n := utf8Len(s)
	e.writeVarUint(uint64(n))
	e.buf = appendUTF8(e.buf, s)
}

func utf8Len(s []uint16) int {
	n := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c < 0x80:
			n++
		case c < 0x800:
			n += 2
		case c >= 0xd800 && c < 0xdc00 && i+1 < len(s) && s[i+1] >= 0xdc00 && s[i+1] < 0xe000:
			n += 4
			i++
		default:
			n += 3
		}
	}
	return n
}

func appendUTF8(dst []byte, s []uint16) []byte {
	dst = slices.Grow(dst, len(s))
	for i := 0; i < len(s); {
		if s[i] < 0x80 {
			// A run of ASCII, into room already there: four units at a
			// time while all four are ASCII, then one by one.
			n := len(dst)
			out := dst[n:cap(dst)]
			k := 0
			for i+4 <= len(s) && k+4 <= len(out) {
				v := uint64(s[i]) | uint64(s[i+1])<<16 | uint64(s[i+2])<<32 | uint64(s[i+3])<<48
				if v&0xff80_ff80_ff80_ff80 != 0 {
					break
				}
				binary.LittleEndian.PutUint32(out[k:], uint32(v&0x7f|v>>8&0x7f00|v>>16&0x7f_0000|v>>24&0x7f00_0000))
				i, k = i+4, k+4
			}
			for i < len(s) && k < len(out) && s[i] < 0x80 {
				out[k] = byte(s[i])
				i, k = i+1, k+1
			}
			dst = dst[:n+k]
			if i < len(s) && s[i] < 0x80 { // out of room: non-ASCII before took more than a byte
				dst = slices.Grow(dst, len(s)-i)
			}
			continue
		}
		c := s[i]
		r := rune(c)
		if c >= 0xd800 && c < 0xe000 {
			if c < 0xdc00 && i+1 < len(s) && s[i+1] >= 0xdc00 && s[i+1] < 0xe000 {
				r = utf16.DecodeRune(r, rune(s[i+1]))
				i++
			} else {
				r = utf8.RuneError
			}
		}
		dst = utf8.AppendRune(dst, r)
		i++
	}
	return dst
}

// toUTF16 converts UTF-8 to UTF-16 code units; invalid bytes become U+FFFD.
// utf16Len returns the number of UTF-16 code units toUTF16(s) holds.
func utf16Len(s string) int {
	n := 0
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			for _, r := range s[i:] {
				n++
				if r >= 0x10000 {
					n++
				}
			}
			return n
		}
		n++
	}
	return n
}

// putUTF16 writes toUTF16(s) into dst, which has exactly its length.
func putUTF16(dst []uint16, s string) {
	i := 0
	for ; i < len(s) && s[i] < 0x80; i++ {
		dst[i] = uint16(s[i])
	}
	if i == len(s) {
		return
	}
	j := i
	for _, r := range s[i:] {
		if r >= 0x10000 {
			a, b := utf16.EncodeRune(r)
			dst[j], dst[j+1] = uint16(a), uint16(b)
			j += 2
		} else {
			dst[j] = uint16(r)
			j++
		}
	}
}

func toUTF16(s string) []uint16 {
	ascii := true
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			ascii = false
			break
		}
	}
	out := make([]uint16, 0, len(s))
	if ascii {
		for i := 0; i < len(s); i++ {
			out = append(out, uint16(s[i]))
		}
		return out
	}
	for _, r := range s {
		if r >= 0x10000 {
			a, b := utf16.EncodeRune(r)
			out = append(out, uint16(a), uint16(b))
		} else {
			out = append(out, uint16(r))
		}
	}
	return out
}

// fromUTF16 converts UTF-16 code units to a Go string; lone surrogates
// become U+FFFD.
func fromUTF16(s []uint16) string { return string(appendUTF8(nil, s)) }

// UTF16Len returns the length of s in UTF-16 code units, the unit Y.Text
// indexes count in.
func UTF16Len(s string) int {
	n := 0
	for _, r := range s {
		if r >= 0x10000 {
			n += 2
		} else {
			n++
		}
	}
	return n
}
