package yjs

import (
	"encoding/json"
	"unsafe"
)

// Content ref numbers, the low five bits of a struct's info byte.
const (
	refGC      = 0
	refDeleted = 1
	refJSON    = 2
	refBinary  = 3
	refString  = 4
	refEmbed   = 5
	refFormat  = 6
	refType    = 7
	refAny     = 8
	refDoc     = 9
	refSkip    = 10
)

// ContentKindName names a content ref number for inspection output.
func ContentKindName(ref uint8) string {
	switch ref {
	case refGC:
		return "GC"
	case refDeleted:
		return "Deleted"
	case refJSON:
		return "JSON"
	case refBinary:
		return "Binary"
	case refString:
		return "String"
	case refEmbed:
		return "Embed"
	case refFormat:
		return "Format"
	case refType:
		return "Type"
	case refAny:
		return "Any"
	case refDoc:
		return "Doc"
	case refSkip:
		return "Skip"
	}
	return "Unknown"
}

// Content is what an Item holds. Every Yjs content type is implemented and
// round-trips through decode and encode without loss.
type Content interface {
	// Ref is the content's ref number in the wire format.
	Ref() uint8
	// Len is the number of clock ticks (and, if countable, positions) the
	// content occupies.
	Len() int
	// Countable reports whether the content counts toward a sequence's length.
	Countable() bool
	// splice keeps the first offset units in the receiver and returns the rest.
	splice(offset int) Content
	// mergeWith appends right to the receiver if the content kind allows it.
	mergeWith(right Content) bool
	// write encodes the content, skipping the first offset units.
	write(e *encoder, offset int)
}

// ContentDeleted stands for deleted content whose value was garbage collected.
type ContentDeleted struct{ N int }

func (c *ContentDeleted) Ref() uint8      { return refDeleted }
func (c *ContentDeleted) Len() int        { return c.N }
func (c *ContentDeleted) Countable() bool { return false }
func (c *ContentDeleted) splice(off int) Content {
	r := &ContentDeleted{c.N - off}
	c.N = off
	return r
}
func (c *ContentDeleted) mergeWith(r Content) bool {
	c.N += r.(*ContentDeleted).N
	return true
}
func (c *ContentDeleted) write(e *encoder, off int) { e.writeVarUint(uint64(c.N - off)) }

// ContentJSON is the legacy JSON content: each element is one JSON text
// ("undefined" stands for the JavaScript undefined value).
type ContentJSON struct{ Values []string }

func (c *ContentJSON) Ref() uint8      { return refJSON }
func (c *ContentJSON) Len() int        { return len(c.Values) }
func (c *ContentJSON) Countable() bool { return true }
func (c *ContentJSON) splice(off int) Content {
	r := &ContentJSON{append([]string(nil), c.Values[off:]...)}
	c.Values = c.Values[:off:off]
	return r
}
func (c *ContentJSON) mergeWith(r Content) bool {
	c.Values = append(c.Values, r.(*ContentJSON).Values...)
	return true
}
func (c *ContentJSON) write(e *encoder, off int) {
	e.writeVarUint(uint64(len(c.Values) - off))
	for _, v := range c.Values[off:] {
		e.writeVarString(v)
	}
}

// ContentBinary is one binary blob.
type ContentBinary struct{ Data []byte }

func (c *ContentBinary) Ref() uint8              { return refBinary }
func (c *ContentBinary) Len() int                { return 1 }
func (c *ContentBinary) Countable() bool         { return true }
func (c *ContentBinary) splice(int) Content      { panic("yjs: binary content cannot be split") }
func (c *ContentBinary) mergeWith(Content) bool  { return false }
func (c *ContentBinary) write(e *encoder, _ int) { e.writeVarBytes(c.Data) }

// ContentString is text, held as UTF-16 code units like JavaScript strings.
//
// Split halves share their backing array, and the left half keeps the
// capacity that holds the right half, so merging them back is a reslice.
// own records that no other piece refers to the array past len(s): only
// then may s be appended to in place. room counts the units of the array
// right before s that no other piece refers to either: space to prepend
// in place.
type ContentString struct {
	s    []uint16
	room int32
	own  bool
}

func (c *ContentString) Ref() uint8      { return refString }
func (c *ContentString) Len() int        { return len(c.s) }
func (c *ContentString) Countable() bool { return true }

// String returns the text as a Go string (lone surrogates become U+FFFD).
func (c *ContentString) String() string { return fromUTF16(c.s) }

// UTF16 returns the text's code units. The caller must not modify them.
func (c *ContentString) UTF16() []uint16 { return c.s[:len(c.s):len(c.s)] }

func (c *ContentString) splice(off int) Content {
	r := &ContentString{s: c.s[off:], own: c.own}
	c.s = c.s[:off]
	c.own = false
	// Like yjs, never leave half a surrogate pair on either side.
	if off > 0 && isHighSurrogate(c.s[off-1]) {
		c.s[off-1] = 0xfffd
		if len(r.s) > 0 {
			r.s[0] = 0xfffd
		}
	}
	return r
}

// grow makes room for n more code units at the end of s, returning the
// extended slice (the new units are to be overwritten by the caller).
func (c *ContentString) grow(n int) []uint16 {
	l := len(c.s)
	if c.own && cap(c.s)-l >= n {
		c.s = c.s[:l+n]
		return c.s[l:]
	}
	// A copy, grown as append grows; capping s keeps append from
	// writing into an array other pieces may share.
	c.s = append(c.s[:l:l], make([]uint16, n)...)
	c.room = 0
	c.own = true
	return c.s[l:]
}

// appendUnits appends u to the text.
func (c *ContentString) appendUnits(u []uint16) {
	l := len(c.s)
	if c.own && cap(c.s)-l >= len(u) {
		c.s = append(c.s, u...)
		return
	}
	c.s = append(c.s[:l:l], u...)
	c.room = 0
	c.own = true
}

func (c *ContentString) mergeWith(r Content) bool {
	rc := r.(*ContentString)
	c.extend(rc.s, rc.own)
	return true
}

// extend appends u. If u lies right after s in s's array (the two were
// split apart), that is a reslice, and uOwn tells whether u's holder owned
// the rest of the array.
func (c *ContentString) extend(u []uint16, uOwn bool) {
	l, n := len(c.s), len(u)
	if n == 0 {
		return
	}
	if cap(c.s)-l >= n && &c.s[:l+1][l] == &u[0] {
		c.s = c.s[:l+n]
		c.own = uOwn
		return
	}
	c.appendUnits(u)
}

// prepend puts u in front of the text.
func (c *ContentString) prepend(u []uint16) {
	n, l := len(u), len(c.s)
	if l == 0 {
		c.s, c.room, c.own = u, 0, false
		return
	}
	if cap(u)-n >= l && &u[:n+1][n] == &c.s[0] {
		c.s, c.room = u[:n+l], 0
		return
	}
	if int(c.room) >= n {
		// The room lies in s's own allocation, so stepping back into it
		// stays inside that object.
		start := (*uint16)(unsafe.Add(unsafe.Pointer(unsafe.SliceData(c.s)), -2*n))
		ns := unsafe.Slice(start, n+cap(c.s))
		copy(ns, u)
		c.s = ns[:n+l]
		c.room -= int32(n)
		return
	}
	// Copy, leaving room in front: text deleted backwards keeps coming.
	front := min(max(n+l, 16), 1<<20)
	ns := make([]uint16, front+n+l)
	copy(ns[front:], u)
	copy(ns[front+n:], c.s)
	c.s, c.room, c.own = ns[front:], int32(front), true
}

// cutTail drops the units from off on and returns them; like splice, it
// does not leave half a surrogate pair on either side.
func (c *ContentString) cutTail(off int) []uint16 {
	tail := c.s[off:]
	c.s = c.s[:off]
	c.own = false
	if off > 0 && isHighSurrogate(c.s[off-1]) {
		c.s[off-1] = 0xfffd
		if len(tail) > 0 {
			tail[0] = 0xfffd
		}
	}
	return tail
}

// cutHead drops the first n units (n < Len) and returns them; like
// splice, it does not leave half a surrogate pair on either side.
func (c *ContentString) cutHead(n int) []uint16 {
	head := c.s[:n]
	if n > 0 && isHighSurrogate(head[n-1]) {
		head[n-1] = 0xfffd
		c.s[n] = 0xfffd
	}
	c.s, c.room = c.s[n:], 0
	return head
}
func (c *ContentString) write(e *encoder, off int) { e.writeUTF16(c.s[off:]) }

func isHighSurrogate(u uint16) bool { return u >= 0xd800 && u <= 0xdbff }

// ContentEmbed is a rich-text embed, kept as its JSON text.
type ContentEmbed struct{ JSON string }

func (c *ContentEmbed) Ref() uint8              { return refEmbed }
func (c *ContentEmbed) Len() int                { return 1 }
func (c *ContentEmbed) Countable() bool         { return true }
func (c *ContentEmbed) splice(int) Content      { panic("yjs: embed content cannot be split") }
func (c *ContentEmbed) mergeWith(Content) bool  { return false }
func (c *ContentEmbed) write(e *encoder, _ int) { e.writeVarString(c.JSON) }

// ContentFormat is a rich-text formatting marker: from here on, attribute
// Key has the JSON value Value ("null" ends the attribute).
type ContentFormat struct {
	Key   string
	Value string
	v     *fmtVal // identity of the decoded value, as JavaScript sees it
}

func (c *ContentFormat) Ref() uint8             { return refFormat }
func (c *ContentFormat) Len() int               { return 1 }
func (c *ContentFormat) Countable() bool        { return false }
func (c *ContentFormat) splice(int) Content     { panic("yjs: format content cannot be split") }
func (c *ContentFormat) mergeWith(Content) bool { return false }
func (c *ContentFormat) write(e *encoder, _ int) {
	e.writeVarString(c.Key)
	e.writeVarString(c.Value)
}

// isNull reports whether the value is JSON null (the attribute ends).
// jsonNull is the JSON value that ends a formatting attribute.
const jsonNull = "null"

func (c *ContentFormat) isNull() bool { return c.Value == jsonNull }

// ContentType holds a nested shared type.
type ContentType struct{ Type *Type }

func (c *ContentType) Ref() uint8             { return refType }
func (c *ContentType) Len() int               { return 1 }
func (c *ContentType) Countable() bool        { return true }
func (c *ContentType) splice(int) Content     { panic("yjs: type content cannot be split") }
func (c *ContentType) mergeWith(Content) bool { return false }
func (c *ContentType) write(e *encoder, _ int) {
	e.writeVarUint(uint64(c.Type.Kind))
	if c.Type.Kind == KindXMLElement || c.Type.Kind == KindXMLHook {
		e.writeVarString(c.Type.NodeName)
	}
}

// ContentAny holds lib0 Any values, each kept in its encoded form.
type ContentAny struct{ Values [][]byte }

func (c *ContentAny) Ref() uint8      { return refAny }
func (c *ContentAny) Len() int        { return len(c.Values) }
func (c *ContentAny) Countable() bool { return true }
func (c *ContentAny) splice(off int) Content {
	r := &ContentAny{append([][]byte(nil), c.Values[off:]...)}
	c.Values = c.Values[:off:off]
	return r
}
func (c *ContentAny) mergeWith(r Content) bool {
	c.Values = append(c.Values, r.(*ContentAny).Values...)
	return true
}
func (c *ContentAny) write(e *encoder, off int) {
	e.writeVarUint(uint64(len(c.Values) - off))
	for _, v := range c.Values[off:] {
		e.buf = append(e.buf, v...)
	}
}

// ContentDoc is a subdocument reference: its guid and encoded options.
type ContentDoc struct {
	GUID string
	Opts []byte
}

func (c *ContentDoc) Ref() uint8             { return refDoc }
func (c *ContentDoc) Len() int               { return 1 }
func (c *ContentDoc) Countable() bool        { return true }
func (c *ContentDoc) splice(int) Content     { panic("yjs: doc content cannot be split") }
func (c *ContentDoc) mergeWith(Content) bool { return false }
func (c *ContentDoc) write(e *encoder, _ int) {
	e.writeVarString(c.GUID)
	e.buf = append(e.buf, c.Opts...)
}

// readContent reads the content of an item whose info byte is info.
func readContent(d *decoder, info byte, doc *Doc) Content {
	switch info & 0x1f {
	case refDeleted:
		n := d.readVarUint()
		if n == 0 || n > maxSafeInteger {
			d.fail("bad deleted length")
			return nil
		}
		return &ContentDeleted{int(n)}
	case refJSON:
		n := d.readCount(1)
		if n == 0 {
			d.fail("empty JSON content")
			return nil
		}
		vs := make([]string, 0, n)
		for i := 0; i < n && d.err == nil; i++ {
			vs = append(vs, d.readVarString())
		}
		return &ContentJSON{vs}
	case refBinary:
		return &ContentBinary{append([]byte(nil), d.readVarBytes()...)}
	case refString:
		s := d.readVarBytes()
		if d.err != nil {
			return nil
		}
		u := toUTF16(string(s))
		if len(u) == 0 {
			d.fail("empty string content")
			return nil
		}
		return &ContentString{s: u}
	case refEmbed:
		return &ContentEmbed{d.readVarString()}
	case refFormat:
		k := d.readVarString()
		v := d.readVarString()
		return &ContentFormat{Key: k, Value: v}
	case refType:
		kind := d.readVarUint()
		if d.err != nil {
			return nil
		}
		if kind > uint64(KindXMLText) {
			d.fail("unknown type ref")
			return nil
		}
		t := &Type{doc: doc, Kind: TypeKind(kind)}
		if t.Kind == KindXMLElement || t.Kind == KindXMLHook {
			t.NodeName = d.readVarString()
		}
		return &ContentType{t}
	case refAny:
		n := d.readCount(1)
		if n == 0 {
			d.fail("empty any content")
			return nil
		}
		vs := make([][]byte, 0, n)
		for i := 0; i < n && d.err == nil; i++ {
			vs = append(vs, d.readAnyRaw())
		}
		return &ContentAny{vs}
	case refDoc:
		g := d.readVarString()
		o := d.readAnyRaw()
		return &ContentDoc{g, o}
	}
	d.fail("unknown content ref")
	return nil
}

// jsonText encodes v the way JSON.stringify would for plain values.
func jsonText(v any) (string, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return "", err
	}
	return string(b), nil
}
