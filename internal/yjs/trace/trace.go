// Package trace loads editing traces (the josephg/editing-traces format
// described in shared/traces/README.md) and replays them on the Yjs engine:
// sequential traces on one document, concurrent traces with one replica per
// agent exchanging Yjs updates.
package trace

import (
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/yawp/persistence-operator/internal/yjs"
)

// Patch is one edit: at Pos (in code points) delete Del code points, then
// insert Ins.
type Patch struct {
	Pos int
	Del int
	Ins string
}

// UnmarshalJSON reads a patch written as [pos, delCount, insText].
func (p *Patch) UnmarshalJSON(b []byte) error {
	var raw []json.RawMessage
	if err := json.Unmarshal(b, &raw); err != nil {
		return err
	}
	if len(raw) < 2 || len(raw) > 3 {
		return fmt.Errorf("trace: patch must be [pos, del, ins], got %s", b)
	}
	if err := json.Unmarshal(raw[0], &p.Pos); err != nil {
		return err
	}
	if err := json.Unmarshal(raw[1], &p.Del); err != nil {
		return err
	}
	if len(raw) == 3 {
		return json.Unmarshal(raw[2], &p.Ins)
	}
	return nil
}

// Txn is one transaction of a trace.
type Txn struct {
	Patches []Patch `json:"patches"`
	Parents []int   `json:"parents"`
	Agent   int     `json:"agent"`
}

// Trace is a whole editing trace.
type Trace struct {
	Kind         string `json:"kind"`
	NumAgents    int    `json:"numAgents"`
	StartContent string `json:"startContent"`
	EndContent   string `json:"endContent"`
	Txns         []Txn  `json:"txns"`
}

// Concurrent reports whether the trace has several agents.
func (t *Trace) Concurrent() bool { return t.Kind == "concurrent" }

// Load reads a trace file, gzip-compressed or plain JSON.
func Load(path string) (*Trace, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var r io.Reader = f
	var magic [2]byte
	if n, _ := io.ReadFull(f, magic[:]); n == 2 && magic[0] == 0x1f && magic[1] == 0x8b {
		if _, err := f.Seek(0, io.SeekStart); err != nil {
			return nil, err
		}
		gz, err := gzip.NewReader(f)
		if err != nil {
			return nil, err
		}
		defer gz.Close()
		r = gz
	} else if _, err := f.Seek(0, io.SeekStart); err != nil {
		return nil, err
	}
	var t Trace
	if err := json.NewDecoder(r).Decode(&t); err != nil {
		return nil, fmt.Errorf("trace %s: %w", path, err)
	}
	if t.Txns == nil {
		// Any JSON object decodes (an evidence answer, a config file),
		// and a trace of nothing matches its empty endContent: the
		// replay's check would pass a file that is no trace at all.
		return nil, fmt.Errorf("trace %s: not an editing trace (no \"txns\")", path)
	}
	if t.Concurrent() && t.NumAgents < 1 {
		return nil, fmt.Errorf("trace %s: concurrent trace without numAgents", path)
	}
	return &t, nil
}

// Result is the outcome of a replay.
type Result struct {
	File         string  `json:"file,omitempty"`
	Kind         string  `json:"kind"`
	Transactions int     `json:"transactions"`
	Patches      int     `json:"patches"`
	Millis       float64 `json:"ms"`
	FinalLength  int     `json:"finalLength"`
	SHA256       string  `json:"sha256"`
	MatchesEnd   bool    `json:"matchesEnd"`
	UpdateBytes  int     `json:"updateBytes"`
}

// editor applies code-point positioned patches to a Y.Text, converting to
// UTF-16 indexes only once text outside the BMP has appeared.
type editor struct {
	text   *yjs.Text
	astral bool
}

func hasAstral(s string) bool {
	for _, r := range s {
		if r >= 0x10000 {
			return true
		}
	}
	return false
}

func (e *editor) utf16Index(cp int) int {
	if !e.astral {
		return cp
	}
	s := e.text.String()
	i, n := 0, 0
	for n < cp && i < len(s) {
		r, size := utf8.DecodeRuneInString(s[i:])
		i += size
		n++
		if r >= 0x10000 {
			cp++ // counts as two UTF-16 units
		}
	}
	return cp
}

func (e *editor) apply(p Patch) error {
	if p.Del > 0 {
		start := e.utf16Index(p.Pos)
		end := e.utf16Index(p.Pos + p.Del)
		if err := e.text.Delete(start, end-start); err != nil {
			return fmt.Errorf("delete(%d,%d): %w", p.Pos, p.Del, err)
		}
	}
	if p.Ins != "" {
		if hasAstral(p.Ins) {
			e.astral = true
		}
		if err := e.text.Insert(e.utf16Index(p.Pos), p.Ins, nil); err != nil {
			return fmt.Errorf("insert(%d): %w", p.Pos, err)
		}
	}
	return nil
}

func (e *editor) applyTxn(doc *yjs.Doc, t Txn) error {
	return doc.Transact(func(*yjs.Transaction) error {
		for _, p := range t.Patches {
			if err := e.apply(p); err != nil {
				return err
			}
		}
		return nil
	})
}

// ReplaySequential applies every transaction locally on one document and
// returns it.
func ReplaySequential(t *Trace) (*yjs.Doc, error) {
	doc := yjs.NewDoc(yjs.Options{ClientID: 1})
	e := &editor{text: doc.GetText("text"), astral: hasAstral(t.StartContent)}
	if t.StartContent != "" {
		if err := e.text.Insert(0, t.StartContent, nil); err != nil {
			return nil, err
		}
	}
	for i, tx := range t.Txns {
		if err := e.applyTxn(doc, tx); err != nil {
			return nil, fmt.Errorf("txn %d: %w", i, err)
		}
	}
	return doc, nil
}

// ReplayConcurrent gives every agent its own replica. Each transaction is
// made on its agent's replica at the version its parents name: first the
// replica receives, as Yjs updates, the other agents' transactions that
// version includes. At the end one replica receives everything and is
// returned.
func ReplayConcurrent(t *Trace) (*yjs.Doc, error) {
	n := t.NumAgents
	// version vectors: how many transactions of each agent a version holds
	seq := make([]int, len(t.Txns))
	count := make([]int, n)
	vv := make([][]int, len(t.Txns))
	for i, tx := range t.Txns {
		if tx.Agent < 0 || tx.Agent >= n {
			return nil, fmt.Errorf("txn %d: agent %d out of range", i, tx.Agent)
		}
		v := make([]int, n)
		for _, p := range tx.Parents {
			if p < 0 || p >= i {
				return nil, fmt.Errorf("txn %d: parent %d is not an earlier transaction", i, p)
			}
			for a, k := range vv[p] {
				v[a] = max(v[a], k)
			}
		}
		if v[tx.Agent] != count[tx.Agent] {
			return nil, fmt.Errorf("txn %d: agent %d's transactions are not a chain", i, tx.Agent)
		}
		seq[i] = count[tx.Agent]
		count[tx.Agent]++
		v[tx.Agent] = count[tx.Agent]
		vv[i] = v
	}
	byAgent := make([][][]byte, n) // updates of each agent in order
	docs := make([]*yjs.Doc, n)
	eds := make([]*editor, n)
	known := make([][]int, n)
	var last []byte
	for a := range docs {
		docs[a] = yjs.NewDoc(yjs.Options{ClientID: uint64(a + 1)})
		eds[a] = &editor{text: docs[a].GetText("text")}
		known[a] = make([]int, n)
		docs[a].OnUpdate(func(u []byte) { last = u })
	}
	if t.StartContent != "" {
		return nil, fmt.Errorf("concurrent traces with startContent are not supported")
	}
	for i, tx := range t.Txns {
		a := tx.Agent
		want := vv[i]
		for b := 0; b < n; b++ {
			if b == a {
				continue
			}
			for known[a][b] < want[b] {
				if err := docs[a].ApplyUpdate(byAgent[b][known[a][b]]); err != nil {
					return nil, fmt.Errorf("txn %d: %w", i, err)
				}
				known[a][b]++
			}
		}
		last = nil
		if err := eds[a].applyTxn(docs[a], tx); err != nil {
			return nil, fmt.Errorf("txn %d: %w", i, err)
		}
		known[a][a]++
		if last == nil {
			last = emptyUpdate
		}
		byAgent[a] = append(byAgent[a], last)
	}
	final := docs[0]
	for b := 1; b < n; b++ {
		for k := known[0][b]; k < len(byAgent[b]); k++ {
			if err := final.ApplyUpdate(byAgent[b][k]); err != nil {
				return nil, err
			}
		}
	}
	if final.HasPending() {
		return nil, final.PendingError()
	}
	return final, nil
}

var emptyUpdate = []byte{0, 0}

// Replay replays t and reports the outcome.
func Replay(t *Trace) (*Result, *yjs.Doc, error) {
	start := time.Now()
	var doc *yjs.Doc
	var err error
	if t.Concurrent() {
		doc, err = ReplayConcurrent(t)
	} else {
		doc, err = ReplaySequential(t)
	}
	el := time.Since(start)
	if err != nil {
		return nil, nil, err
	}
	text := doc.GetText("text").String()
	sum := sha256.Sum256([]byte(text))
	kind := t.Kind
	if kind == "" {
		kind = "sequential"
	}
	patches := 0
	for _, tx := range t.Txns {
		patches += len(tx.Patches)
	}
	return &Result{
		Kind:         kind,
		Transactions: len(t.Txns),
		Patches:      patches,
		Millis:       float64(el.Microseconds()) / 1000,
		FinalLength:  utf8.RuneCountInString(text),
		SHA256:       hex.EncodeToString(sum[:]),
		MatchesEnd:   text == t.EndContent,
		UpdateBytes:  len(doc.EncodeStateAsUpdate(nil)),
	}, doc, nil
}

// Diff describes where two texts first differ, for error messages.
func Diff(got, want string) string {
	i := 0
	for i < len(got) && i < len(want) && got[i] == want[i] {
		i++
	}
	ctx := func(s string) string {
		lo, hi := max(0, i-20), min(len(s), i+20)
		return strings.ReplaceAll(s[lo:hi], "\n", "⏎")
	}
	return fmt.Sprintf("first difference at byte %d: got %q, want %q (lengths %d, %d)", i, ctx(got), ctx(want), len(got), len(want))
}
