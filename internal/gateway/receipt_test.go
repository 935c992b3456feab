package gateway

import (
	"bytes"
	"errors"
	"fmt"
	"net/url"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// buildYawpctl builds the real yawpctl binary for a test, and returns a
// function that runs it.
func buildYawpctl(t *testing.T) func(args ...string) (string, error) {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "yawpctl")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/yawp/persistence-operator/cmd/yawpctl").CombinedOutput(); err != nil {
		t.Fatalf("go build yawpctl: %v\n%s", err, out)
	}
	return func(args ...string) (string, error) {
		var buf bytes.Buffer
		cmd := exec.Command(bin, args...)
		cmd.Stdout, cmd.Stderr = &buf, &buf
		err := cmd.Run()
		return buf.String(), err
	}
}

// Every save's answer carries a receipt, and a receipt catches what the
// hash chain alone cannot: entries removed from the ledger's end, or its
// end rewritten with fresh hashes, by someone who can change the rows
// (a superuser who disables the append-only trigger).
func TestReceiptsCatchARewrittenOrTruncatedLedger(t *testing.T) {
	f := setup(t)
	yawpctl := buildYawpctl(t)
	alice := token(t, "school-a", "alice", time.Hour, false)
	op := token(t, "ops", "oncall", time.Hour, true)
	var receipts []string
	save := func(r resp) {
		t.Helper()
		if r.status/100 != 2 {
			t.Fatalf("save: %d %s", r.status, r.raw)
		}
		rc, _ := r.body["receipt"].(string)
		if want := fmt.Sprintf("%v:%v", r.body["ledger_seq"], r.body["ledger_hash"]); rc != want {
			t.Fatalf("receipt %q, want ledger_seq:ledger_hash %q", rc, want)
		}
		receipts = append(receipts, rc)
	}
	save(f.do("POST", "/v1/documents", alice, map[string]any{"id": "rc-1", "content": "first"}))
	save(f.do("PUT", "/v1/documents/rc-1", alice, map[string]any{"content": "second"}, "If-Match", `"1"`, "Idempotency-Key", "k2"))
	save(f.do("PUT", "/v1/documents/rc-1", alice, map[string]any{"content": "third"}, "If-Match", `"2"`))
	// A retry is answered with the same receipt.
	if r := f.do("PUT", "/v1/documents/rc-1", alice, map[string]any{"content": "second"}, "If-Match", `"1"`, "Idempotency-Key", "k2"); r.body["receipt"] != receipts[1] {
		t.Fatalf("replayed save's receipt %v, first answer's %s", r.body["receipt"], receipts[1])
	}

	verify := func(rcs ...string) resp {
		t.Helper()
		q := url.Values{"receipt": rcs}
		return f.do("GET", "/v1/documents/rc-1/evidence/verify?"+q.Encode(), op, nil)
	}
	verdicts := func(r resp) string {
		t.Helper()
		if r.status != 200 {
			t.Fatalf("verify: %d %s", r.status, r.raw)
		}
		var v []string
		list, _ := r.body["receipts"].([]any)
		for _, c := range list {
			v = append(v, c.(map[string]any)["verdict"].(string))
		}
		return fmt.Sprintf("ok=%v %s", r.body["ok"], strings.Join(v, ","))
	}
	r := verify(receipts...)
	if got := verdicts(r); got != "ok=true confirmed,confirmed,confirmed" || r.body["receipt"] != receipts[2] {
		t.Fatalf("intact ledger: %s, head receipt %v (want %s)", got, r.body["receipt"], receipts[2])
	}
	// The evidence support staff read names the head receipt too.
	if ev := f.do("GET", "/v1/documents/rc-1/evidence", alice, nil); ev.body["chain"].(map[string]any)["receipt"] != receipts[2] {
		t.Errorf("evidence chain: %s", ev.raw)
	}
	out, err := yawpctl("evidence", "verify", "rc-1", "--gateway", f.url, "--token", op, "--receipt", receipts[0], "--receipt", receipts[2])
	if err != nil || !strings.Contains(out, "receipt "+receipts[2]+": confirmed") || !strings.Contains(out, "receipt of the head, to keep: "+receipts[2]) {
		t.Fatalf("yawpctl on an intact ledger: %v\n%s", err, out)
	}

	// Bad receipts are refused, and only operators may verify.
	h := receipts[0][strings.IndexByte(receipts[0], ':')+1:]
	for _, bad := range [][]string{{"1"}, {"1:" + h[:10]}, {"0:" + h}, {"1:" + strings.Repeat("z", 64)}, make([]string, 101)} {
		if r := verify(bad...); r.status != 400 || r.body["code"] != "invalid_request" {
			t.Errorf("receipt %.40q: %d %s", bad, r.status, r.raw)
		}
	}
	if r := f.do("GET", "/v1/documents/rc-1/evidence/verify?receipt="+url.QueryEscape(receipts[0]), alice, nil); r.status != 403 {
		t.Errorf("a student verified: %d", r.status)
	}
	if out, err := yawpctl("evidence", "verify", "rc-1", "--gateway", f.url, "--token", op, "--receipt", "3:nothex"); exitStatus(err) != 2 || !strings.Contains(out, "hash") {
		t.Errorf("yawpctl took a malformed receipt, or did not exit 2 (wrong usage): %v\n%s", err, out)
	}

	superuser := func(sqls ...string) {
		t.Helper()
		for _, s := range append(append([]string{`ALTER TABLE save_ledger DISABLE TRIGGER save_ledger_no_update`}, sqls...),
			`ALTER TABLE save_ledger ENABLE TRIGGER save_ledger_no_update`) {
			if _, err := f.pool.Exec(t.Context(), s); err != nil {
				t.Fatal(s, err)
			}
		}
	}
	// The last entry rewritten with a hash that chains: the chain alone
	// is intact; the receipt for it is not.
	superuser(`UPDATE save_ledger SET body = replace(body, '"alice"', '"mallory"') WHERE doc_id = 'rc-1' AND seq = 3`,
		`UPDATE save_ledger SET hash = sha256(prev_hash || convert_to(body, 'UTF8')) WHERE doc_id = 'rc-1' AND seq = 3`)
	if got := verdicts(verify()); got != "ok=true " {
		t.Fatalf("the forgery should pass the chain check alone: %s", got)
	}
	if got := verdicts(verify(receipts...)); got != "ok=false confirmed,confirmed,mismatch" {
		t.Errorf("rewritten head: %s", got)
	}
	// The last entry removed.
	superuser(`DELETE FROM save_ledger WHERE doc_id = 'rc-1' AND seq = 3`)
	if got := verdicts(verify()); got != "ok=true " {
		t.Fatalf("the truncated chain should pass the chain check alone: %s", got)
	}
	if got := verdicts(verify(receipts...)); got != "ok=false confirmed,confirmed,missing" {
		t.Errorf("truncated: %s", got)
	}
	out, err = yawpctl("evidence", "verify", "rc-1", "--gateway", f.url, "--token", op, "--receipt", receipts[1], "--receipt", receipts[2])
	if exitStatus(err) != 3 || !strings.Contains(out, "receipt "+receipts[1]+": confirmed") ||
		!strings.Contains(out, "receipt "+receipts[2]+": MISSING: the ledger ends at entry 2, and entry 3 was acknowledged") {
		t.Errorf("yawpctl on a truncated ledger (want exit status 3, a failed check): %v\n%s", err, out)
	}
}

// exitStatus is the exit status of a command run by exec, 0 for nil and
// -1 when it did not exit.
func exitStatus(err error) int {
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ee):
		return ee.ExitCode()
	}
	return -1
}
