package ledger

import (
	"bytes"
	"strings"
	"testing"
)

func TestParseReceipt(t *testing.T) {
	rows := chain(3)
	want := Receipt{Seq: 3, Hash: rows[2].Hash}
	for _, s := range []string{want.String(), strings.ToUpper(want.String())} {
		got, err := ParseReceipt(s)
		if err != nil || got.Seq != 3 || !bytes.Equal(got.Hash, want.Hash) {
			t.Errorf("ParseReceipt(%q) = %+v, %v", s, got, err)
		}
	}
	h := want.String()[2:]
	for _, bad := range []string{"", "3", h, "0:" + h, "-1:" + h, "+3:" + h, "03:" + h, "x:" + h,
		"3:" + h[:63], "3:" + h + "00", "3:" + strings.Repeat("g", 64), "3: " + h[1:], "9223372036854775808:" + h} {
		if r, err := ParseReceipt(bad); err == nil {
			t.Errorf("ParseReceipt(%q) = %+v, want an error", bad, r)
		}
	}
}

// A consistent rewrite of the chain's end, or its removal, passes Verify;
// the receipts handed out for those entries do not.
func TestCheckReceipts(t *testing.T) {
	orig := chain(5)
	receipts := make([]Receipt, len(orig))
	for i, r := range orig {
		receipts[i] = Receipt{Seq: r.Seq, Hash: r.Hash}
	}
	verdicts := func(rows []Row) string {
		var v []string
		for _, c := range CheckReceipts(rows, receipts) {
			v = append(v, map[string]string{ReceiptConfirmed: "ok", ReceiptMissing: "gone", ReceiptMismatch: "diff"}[c.Verdict])
			if c.Verdict != ReceiptConfirmed && c.Detail == "" {
				t.Errorf("receipt %s: %s without a detail", c.Receipt, c.Verdict)
			}
		}
		return strings.Join(v, ",")
	}
	if got := verdicts(chain(5)); got != "ok,ok,ok,ok,ok" {
		t.Errorf("intact: %s", got)
	}
	if CheckReceipts(chain(5), nil) != nil {
		t.Error("no receipts, yet checks")
	}
	// The last two entries removed: the chain that is left is intact.
	if got := verdicts(chain(5)[:3]); got != "ok,ok,ok,gone,gone" || len(Verify("d", chain(5)[:3])) != 0 {
		t.Errorf("tail removed: %s", got)
	}
	if got := verdicts(nil); got != "gone,gone,gone,gone,gone" {
		t.Errorf("ledger removed: %s", got)
	}
	// Entry 4 rewritten and 4-5 re-hashed: intact to Verify.
	forged := chain(5)
	prev := forged[2].Hash
	for i := 3; i < 5; i++ {
		forged[i].Body = bytes.Replace(forged[i].Body, []byte(`"t"`), []byte(`"x"`), 1)
		forged[i].PrevHash, forged[i].Hash = prev, Hash(prev, forged[i].Body)
		prev = forged[i].Hash
	}
	if p := Verify("d", forged); len(p) != 0 {
		t.Fatalf("the forgery should be consistent: %v", p)
	}
	if got := verdicts(forged); got != "ok,ok,ok,diff,diff" {
		t.Errorf("rewritten and re-hashed: %s", got)
	}
	// A body changed under its stored hash: that entry and the ones
	// after it no longer recompute to their receipts.
	edited := chain(5)
	edited[1].Body = bytes.Replace(edited[1].Body, []byte(`"t"`), []byte(`"x"`), 1)
	if got := verdicts(edited); got != "ok,diff,diff,diff,diff" {
		t.Errorf("body edited: %s", got)
	}
	// Entry 2 removed from the middle.
	gap := append(chain(5)[:1:1], chain(5)[2:]...)
	if got := verdicts(gap); got != "ok,gone,diff,diff,diff" {
		t.Errorf("entry 2 removed: %s", got)
	}
}
