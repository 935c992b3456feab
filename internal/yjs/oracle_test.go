package yjs

import (
	"bufio"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os/exec"
	"sync"
	"testing"

	"github.com/yawp/persistence-operator/internal/testutil/nodejs"
)

// oracle drives real yjs (test/yjs/oracle.mjs) over JSON lines.
type oracle struct {
	t   testing.TB
	cmd *exec.Cmd
	in  *bufio.Writer
	out *bufio.Scanner
	id  int
	mu  sync.Mutex
}

// startOracle starts the Node oracle. Without node_modules the test fails
// with the command to run, unless -short is given.
func startOracle(t testing.TB) *oracle {
	t.Helper()
	p := nodejs.Start(t, "yjs", "oracle.mjs", 256<<20)
	o := &oracle{t: t, cmd: p.Cmd, in: bufio.NewWriter(p.In), out: p.Out}
	return o
}

type oracleResp struct {
	OK      bool            `json:"ok"`
	Error   string          `json:"error"`
	Updates []string        `json:"updates"`
	Update  string          `json:"update"`
	Text    string          `json:"text"`
	Len     int             `json:"len"`
	State   string          `json:"state"`
	SV      string          `json:"sv"`
	Pending bool            `json:"pending"`
	Delta   json.RawMessage `json:"delta"`
}

func (o *oracle) call(req map[string]any) oracleResp {
	o.t.Helper()
	o.mu.Lock()
	defer o.mu.Unlock()
	o.id++
	req["id"] = o.id
	b, _ := json.Marshal(req)
	_, _ = o.in.Write(b)
	_ = o.in.WriteByte('\n')
	if err := o.in.Flush(); err != nil {
		o.t.Fatalf("oracle write: %v", err)
	}
	if !o.out.Scan() {
		o.t.Fatalf("oracle closed: %v", o.out.Err())
	}
	var r oracleResp
	if err := json.Unmarshal(o.out.Bytes(), &r); err != nil {
		o.t.Fatalf("oracle reply: %v", err)
	}
	if !r.OK {
		o.t.Fatalf("oracle %v: %s", req["op"], r.Error)
	}
	return r
}

func b64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }

func unb64(t testing.TB, s string) []byte {
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func unb64s(t testing.TB, ss []string) [][]byte {
	out := make([][]byte, len(ss))
	for i, s := range ss {
		out[i] = unb64(t, s)
	}
	return out
}

func attrsJSON(attrs []Attr) any {
	if attrs == nil {
		return nil
	}
	out := make([][2]any, len(attrs))
	for i, a := range attrs {
		out[i] = [2]any{a.Key, a.Value}
	}
	return out
}

func hexShort(b []byte) string {
	if len(b) > 200 {
		return fmt.Sprintf("%x…(%d bytes)", b[:200], len(b))
	}
	return fmt.Sprintf("%x", b)
}
