package yjs

// TypeKind is the type ref number of a shared type in the wire format.
type TypeKind uint8

// Shared type kinds, numbered as in the wire format.
const (
	KindArray       TypeKind = 0
	KindMap         TypeKind = 1
	KindText        TypeKind = 2
	KindXMLElement  TypeKind = 3
	KindXMLFragment TypeKind = 4
	KindXMLHook     TypeKind = 5
	KindXMLText     TypeKind = 6
	// KindUnknown marks a root type no one has asked for by kind yet.
	KindUnknown TypeKind = 255
)

func (k TypeKind) String() string {
	switch k {
	case KindArray:
		return "Array"
	case KindMap:
		return "Map"
	case KindText:
		return "Text"
	case KindXMLElement:
		return "XmlElement"
	case KindXMLFragment:
		return "XmlFragment"
	case KindXMLHook:
		return "XmlHook"
	case KindXMLText:
		return "XmlText"
	}
	return "Unknown"
}

// Type is a shared type: a root type of a document or one nested in an
// item. It holds a sequence of items (start, linked by Left/Right) and a map
// of keyed items; the engine interprets text and keeps everything else.
type Type struct {
	doc      *Doc
	item     *Item // nil for root types
	name     string
	Kind     TypeKind
	NodeName string // XmlElement node name or XmlHook hook name

	start  *Item
	keys   map[string]*Item
	length int // visible countable length of the sequence

	hasFormatting bool
	index         *seqIndex
}

// Name returns a root type's key ("" for nested types).
func (t *Type) Name() string { return t.name }

// Len returns the number of visible countable positions of the sequence.
func (t *Type) Len() int { return t.length }

func (t *Type) isText() bool { return t.Kind == KindText || t.Kind == KindXMLText }

func (t *Type) mapGet(key string) *Item {
	if t.keys == nil {
		return nil
	}
	return t.keys[key]
}

func (t *Type) mapSet(key string, it *Item) {
	if t.keys == nil {
		t.keys = make(map[string]*Item)
	}
	t.keys[key] = it
}

func (t *Type) seqIndex() *seqIndex {
	if t.index == nil {
		t.index = buildSeqIndex(t.start)
	}
	return t.index
}

// HoldsText reports whether the type's sequence holds text content.
func (t *Type) HoldsText() bool {
	if t.isText() {
		return true
	}
	for it := t.start; it != nil; it = it.Right {
		if _, ok := it.Content.(*ContentString); ok {
			return true
		}
	}
	return false
}
