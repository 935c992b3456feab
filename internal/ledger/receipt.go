package ledger

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
)

// A chain alone proves that its rows agree with each other, not that none
// were removed from its end or that its end was not rewritten with fresh
// hashes: whoever can change the rows can recompute them. A receipt is the
// witness kept elsewhere. Every acknowledged save hands its client the
// position and hash of the entry that recorded it ("seq:hash"), and
// verification against a receipt fails once that entry is gone or
// differs, whatever the rows say about each other.

// Receipt names one ledger entry of a document: its position and hash.
type Receipt struct {
	Seq  int64
	Hash []byte
}

// String is the receipt as handed out and taken back: "<seq>:<hex hash>".
func (r Receipt) String() string { return FormatReceipt(r.Seq, r.Hash) }

// FormatReceipt writes the receipt of entry seq with hash h.
func FormatReceipt(seq int64, h []byte) string {
	return strconv.FormatInt(seq, 10) + ":" + hex.EncodeToString(h)
}

// ParseReceipt reads "<seq>:<hex hash>": seq a positive decimal entry
// number, the hash 64 hex digits (either case).
func ParseReceipt(s string) (Receipt, error) {
	seqS, hashS, ok := strings.Cut(s, ":")
	if !ok {
		return Receipt{}, fmt.Errorf("receipt %q is not <entry>:<hash>", clip(s))
	}
	seq, err := strconv.ParseInt(seqS, 10, 64)
	if err != nil || seq < 1 || seqS[0] == '+' || (len(seqS) > 1 && seqS[0] == '0') {
		return Receipt{}, fmt.Errorf("receipt %q: the entry must be a whole number from 1", clip(s))
	}
	if len(hashS) != 2*sha256.Size {
		return Receipt{}, fmt.Errorf("receipt %q: the hash must be %d hex digits, got %d characters", clip(s), 2*sha256.Size, len(hashS))
	}
	h, err := hex.DecodeString(hashS)
	if err != nil {
		return Receipt{}, fmt.Errorf("receipt %q: the hash is not hex", clip(s))
	}
	return Receipt{Seq: seq, Hash: h}, nil
}

func clip(s string) string {
	if len(s) > 80 {
		return s[:80] + "..."
	}
	return s
}

// Receipt verdicts.
const (
	// ReceiptConfirmed: the entry is in the ledger with the receipt's hash.
	ReceiptConfirmed = "confirmed"
	// ReceiptMissing: the ledger ends before the entry: entries that were
	// acknowledged have been removed.
	ReceiptMissing = "missing"
	// ReceiptMismatch: the ledger's entry at that position has another
	// hash: the history up to it was rewritten.
	ReceiptMismatch = "mismatch"
)

// ReceiptCheck is one receipt checked against a document's rows.
type ReceiptCheck struct {
	Receipt string `json:"receipt"`
	Seq     int64  `json:"seq"`
	Verdict string `json:"verdict"`
	Detail  string `json:"detail,omitempty"`
}

// CheckReceipts checks receipts against a document's rows as stored, in
// seq order. A receipt is confirmed when the chain recomputed from the
// first entry's body through its entry's body (not the stored hashes)
// ends in the receipt's hash: the ledger up to that entry is exactly what
// it was when the receipt was handed out.
func CheckReceipts(rows []Row, receipts []Receipt) []ReceiptCheck {
	if len(receipts) == 0 {
		return nil
	}
	// The chain recomputed over the contiguous entries from 1.
	recomputed := make([][]byte, 0, len(rows))
	prev := Genesis
	stored := make(map[int64]bool, len(rows))
	var last int64
	for i, r := range rows {
		stored[r.Seq] = true
		last = max(last, r.Seq)
		if len(recomputed) == i && r.Seq == int64(i+1) {
			prev = Hash(prev, r.Body)
			recomputed = append(recomputed, prev)
		}
	}
	out := make([]ReceiptCheck, 0, len(receipts))
	for _, rc := range receipts {
		c := ReceiptCheck{Receipt: rc.String(), Seq: rc.Seq}
		switch {
		case last < rc.Seq:
			c.Verdict = ReceiptMissing
			if last == 0 {
				c.Detail = fmt.Sprintf("the ledger has no entries, and entry %d was acknowledged: the document's ledger was removed", rc.Seq)
			} else {
				c.Detail = fmt.Sprintf("the ledger ends at entry %d, and entry %d was acknowledged: entries were removed from its end (unless the receipt was mistyped: compare it with the one kept)", last, rc.Seq)
			}
		case !stored[rc.Seq]:
			c.Verdict = ReceiptMissing
			c.Detail = fmt.Sprintf("entry %d was acknowledged and is no longer in the ledger", rc.Seq)
		case rc.Seq > int64(len(recomputed)):
			c.Verdict = ReceiptMismatch
			c.Detail = fmt.Sprintf("entry %d is stored, but entry %d before it is not, so it no longer chains to the first entry", rc.Seq, len(recomputed)+1)
		case !bytes.Equal(recomputed[rc.Seq-1], rc.Hash):
			c.Verdict = ReceiptMismatch
			c.Detail = fmt.Sprintf("the ledger up to entry %d recomputes to %s, not to the acknowledged hash: it was changed after the receipt was handed out (unless the receipt was mistyped: compare it with the one kept)", rc.Seq, hex.EncodeToString(recomputed[rc.Seq-1]))
		default:
			c.Verdict = ReceiptConfirmed
		}
		out = append(out, c)
	}
	return out
}
