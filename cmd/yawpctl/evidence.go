package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/yawp/persistence-operator/internal/auth"
	"github.com/yawp/persistence-operator/internal/contract"
	"github.com/yawp/persistence-operator/internal/ledger"
	"github.com/yawp/persistence-operator/internal/store"
)

// EnvGatewayURL and EnvToken let `yawpctl evidence` find the gateway.
const (
	envGatewayURL = "YAWP_GATEWAY_URL"
	envToken      = "YAWP_TOKEN"
)

// maxAnswer bounds the gateway's answer read into memory. A whole
// document's evidence lists every ledger entry (about 1 KiB each, one per
// Yjs update a student's editor sent), and the gateway relays a syncer's
// answer of up to 256 MiB: a smaller bound here left a long-edited
// document's evidence unreadable.
const maxAnswer = 256 << 20

func newEvidenceCommand() *cobra.Command {
	var gw, token, request, client, user, since string
	var revision int64
	var asJSON bool
	get := func(path string, q url.Values, out any) error {
		if gw == "" {
			return usageError(fmt.Errorf("no gateway: pass --gateway or set %s", envGatewayURL))
		}
		if !strings.HasPrefix(gw, "http://") && !strings.HasPrefix(gw, "https://") {
			return usageError(fmt.Errorf("--gateway %q: a URL such as http://%s (http:// or https://)", gw, strings.TrimPrefix(gw, "//")))
		}
		if token == "" {
			return usageError(fmt.Errorf("no token: pass --token or set %s (yawpctl token mints one)", envToken))
		}
		u := strings.TrimRight(gw, "/") + path
		if len(q) > 0 {
			u += "?" + q.Encode()
		}
		req, err := http.NewRequest(http.MethodGet, u, nil)
		if err != nil {
			return err
		}
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := (&http.Client{Timeout: 30 * time.Second}).Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		raw, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer+1))
		if err != nil {
			return err
		}
		if len(raw) > maxAnswer {
			// Cut short, it would not decode ("unexpected end of JSON
			// input"), which says nothing of why.
			return fmt.Errorf("the gateway's answer is over %d MiB: narrow it with --since or a subject (--request, --revision, --client, --user)", maxAnswer>>20)
		}
		if resp.StatusCode != http.StatusOK {
			refusal := &gatewayRefusal{status: resp.StatusCode, statusText: resp.Status}
			var e store.Error
			if json.Unmarshal(raw, &e) == nil && e.Code != "" {
				refusal.code, refusal.message = e.Code, e.Message
			}
			return refusal
		}
		return json.Unmarshal(raw, out)
	}
	cmd := &cobra.Command{
		Use:   "evidence DOC",
		Short: "Show a document's save evidence: timeline and verdict with proof",
		Long: `Asks the gateway what happened to a document's saves and prints the verdict
(synced, saved-locally-not-synced, overwritten-preserved, rejected,
never-persisted), its proof and the ledger timeline. Narrow it to one
subject with --request (an Idempotency-Key or request ID), --revision,
--client (a Yjs client ID) or --user.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			q := url.Values{}
			for k, v := range map[string]string{"request": request, "client": client, "user": user, "since": since} {
				if v != "" {
					q.Set(k, v)
				}
			}
			// Checked here as --revision is: a malformed value is wrong
			// usage (exit 2), not a gateway's refusal (exit 1).
			if client != "" {
				if n, err := strconv.ParseUint(client, 10, 64); err != nil || n == 0 {
					return usageError(fmt.Errorf("--client %q: a Yjs client ID, a whole number from 1", client))
				}
			}
			if since != "" {
				if _, err := time.Parse(time.RFC3339, since); err != nil {
					return usageError(fmt.Errorf("--since %q: an RFC 3339 time such as 2026-11-27T09:00:00Z", since))
				}
			}
			if cmd.Flags().Changed("revision") {
				if revision < 1 {
					return usageError(fmt.Errorf("--revision %d: revisions count from 1", revision))
				}
				q.Set("revision", strconv.FormatInt(revision, 10))
			}
			path := contract.PathDocuments + "/" + url.PathEscape(args[0]) + "/evidence"
			out := cmd.OutOrStdout()
			if asJSON {
				// The gateway's answer as it is, indented: decoded
				// into this CLI's types first, an older yawpctl than
				// the gateway dropped the fields it did not know.
				var raw json.RawMessage
				if err := get(path, q, &raw); err != nil {
					return err
				}
				return printJSON(out, raw)
			}
			var ev store.Evidence
			if err := get(path, q, &ev); err != nil {
				return err
			}
			return printEvidence(out, ev)
		},
	}
	var receipts []string
	verify := &cobra.Command{
		Use:   "verify DOC",
		Short: "Check a document's ledger hash chain, and receipts against it (operator token required)",
		Long: `Checks a document's ledger hash chain. A chain shows that its entries agree
with each other; it cannot show that entries were removed from its end, or
that its end was rewritten with fresh hashes. Receipts can: every save's
answer carries one ("receipt": "<ledger_seq>:<ledger_hash>"), and so does
the evidence of a document (its head). Each --receipt is confirmed only if
the ledger from its first entry up to the receipt's still hashes to it.

Exit status: 0 verified; 3 the chain is broken, a receipt is not confirmed,
or the document has no ledger entries; 1 the gateway could not be asked;
2 wrong usage (a malformed receipt, no gateway or token).`,
		Example: `  yawpctl evidence verify essay-1
  yawpctl evidence verify essay-1 --receipt 12:3f5c...e0 --receipt 40:9a1b...77`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(receipts) > contract.MaxReceipts {
				return usageError(fmt.Errorf("%d receipts: at most %d per verification (run it again for the rest)", len(receipts), contract.MaxReceipts))
			}
			q := url.Values{}
			for _, r := range receipts {
				if _, err := ledger.ParseReceipt(r); err != nil {
					return usageError(err)
				}
				q.Add("receipt", r)
			}
			// The answer as the gateway gave it (--json prints it as it
			// is: decoded into this CLI's types first, an older yawpctl
			// than the gateway dropped the fields it did not know), and
			// decoded for the exit status.
			var raw json.RawMessage
			if err := get(contract.PathDocuments+"/"+url.PathEscape(args[0])+"/evidence/verify", q, &raw); err != nil {
				return withOperatorTokenToMint(err, token)
			}
			var rep store.VerifyReport
			if err := json.Unmarshal(raw, &rep); err != nil {
				return fmt.Errorf("the gateway's verification answer: %w", err)
			}
			out := cmd.OutOrStdout()
			switch {
			case asJSON:
				if err := printJSON(out, raw); err != nil {
					return err
				}
			case rep.OK && rep.Entries == 0:
				// Nothing to print: "chain intact, 0 entries" read as
				// verified (the error below says what happened).
			default:
				printVerify(out, rep)
			}
			if !rep.OK {
				return checkFailed(verifyFailure(rep))
			}
			if rep.Entries == 0 {
				// An intact chain of nothing: a mistyped ID read as
				// verified.
				return checkFailed(fmt.Errorf("no ledger entries for %s: nothing was verified (is the document ID right?)", rep.Doc))
			}
			return nil
		},
	}
	verify.Flags().StringArrayVar(&receipts, "receipt", nil, "a receipt to check, <ledger_seq>:<ledger_hash> (repeatable)")
	verify.Flags().BoolVar(&asJSON, "json", false, "print the full JSON answer")
	for _, c := range []*cobra.Command{cmd, verify} {
		c.Flags().StringVar(&gw, "gateway", os.Getenv(envGatewayURL), "gateway URL (env "+envGatewayURL+")")
		c.Flags().StringVar(&token, "token", os.Getenv(envToken), "bearer token (env "+envToken+")")
	}
	cmd.Flags().StringVar(&request, "request", "", "only this request (Idempotency-Key or request ID)")
	cmd.Flags().Int64Var(&revision, "revision", 0, "only this revision")
	cmd.Flags().StringVar(&client, "client", "", "only this Yjs client ID")
	cmd.Flags().StringVar(&user, "user", "", "only this user")
	cmd.Flags().StringVar(&since, "since", "", "only entries since this RFC 3339 time")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the full JSON answer")
	cmd.AddCommand(verify)
	return cmd
}

// gatewayRefusal is the gateway's answer other than 200: its error code
// and message when it gave them.
type gatewayRefusal struct {
	status        int
	statusText    string
	code, message string
}

func (e *gatewayRefusal) Error() string {
	if e.code == "" {
		return "gateway answered " + e.statusText
	}
	return e.code + ": " + e.message
}

// withOperatorTokenToMint adds to the gateway's refusal of a token
// without the operator flag ("forbidden: operator token required") which
// token to mint, and how: `yawpctl token` for the same tenant and user
// with --operator, signed with the gateway's token key. Other errors are
// returned as they are.
func withOperatorTokenToMint(err error, token string) error {
	var r *gatewayRefusal
	if !errors.As(err, &r) || r.status != http.StatusForbidden || r.code != "forbidden" {
		return err
	}
	tenant, user, whose := "ops", "NAME", "is not an operator token"
	if c, cerr := auth.Unverified(token); cerr == nil {
		tenant, user = c.Tenant, c.User
		whose = fmt.Sprintf("is %s's, of %s, without the operator flag", c.User, c.Tenant)
	}
	return fmt.Errorf("%w. The token given (--token or %s) %s, which evidence verify needs. "+
		"Mint an operator token with the gateway's token key (the key in the Secret the rollout's spec.gateway.tokenSecretRef names; under make dev, bin/dev/token-key): "+
		"yawpctl token --tenant %s --user %s --operator --key-file FILE (or set %s instead of --key-file)",
		err, envToken, whose, tenant, user, contract.EnvTokenKey)
}

// printEvidence writes an evidence answer for people: verdict and
// proof, the chain, the findings and the timeline.
func printEvidence(out io.Writer, ev store.Evidence) error {
	subject := ev.Subject
	if subject == "" {
		subject = "whole document"
	}
	fmt.Fprintf(out, "document %s (%s)\n", ev.Doc, subject)
	if !ev.Exists {
		// Only the JSON said so: a document deleted outside the
		// gateway read as "synced" and nothing more.
		fmt.Fprintln(out, "no such document for this token's school now (never created, deleted, or another school's); what follows is the ledger's record of the ID")
	}
	fmt.Fprintf(out, "verdict: %s\n  %s\n", ev.Verdict, ev.Proof.Summary)
	if ev.Proof.Hash != "" {
		fmt.Fprintf(out, "  proof: ledger entries %v, hash %s\n", ev.Proof.Entries, ev.Proof.Hash)
	}
	if ev.Proof.PreservedAt != "" {
		fmt.Fprintf(out, "  preserved content: %s\n", ev.Proof.PreservedAt)
	}
	if ev.Proof.LastSeen != nil {
		fmt.Fprintf(out, "  last seen: %s\n", ev.Proof.LastSeen.Format(time.RFC3339))
	}
	if ev.Proof.Reason != "" {
		fmt.Fprintf(out, "  reason: %s\n", ev.Proof.Reason)
	}
	chain := "intact"
	if !ev.Chain.OK {
		chain = fmt.Sprintf("BROKEN (%d problems)", len(ev.Chain.Problems))
	}
	fmt.Fprintf(out, "ledger chain: %s, %d entries\n", chain, ev.Chain.Entries)
	if ev.Chain.Receipt != "" && ev.Chain.OK {
		// Not of a broken chain: the receipt would vouch for a ledger
		// already altered, and one recomputed from altered entries is
		// a mismatch from the start (evidence verify prints none either).
		fmt.Fprintf(out, "ledger head receipt: %s (keep it to check later that nothing up to here was removed or rewritten: yawpctl evidence verify %s --receipt ...)\n", ev.Chain.Receipt, ev.Doc)
	}
	if len(ev.Findings) > 1 {
		fmt.Fprintln(out, "findings:")
		for _, f := range ev.Findings {
			fmt.Fprintf(out, "  %-26s %s\n", f.Verdict, f.Summary)
		}
	}
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SEQ\tAT\tKIND\tOUTCOME\tSTAGE/EPOCH\tUSER\tREV\tREQUEST\tHASH")
	for _, t := range ev.Timeline {
		req := t.IdempotencyKey
		if req == "" {
			req = t.RequestID
		}
		outcome := t.Outcome
		if t.Code != "" {
			outcome = t.Code
		}
		// An entry outside the document's chain (seq 0: another school's
		// ID, or an ID no document holds), or refused before any stage or
		// revision applied, shows "-" there, not "0" and "/0".
		seq, stage, rev := "-", "-", "-"
		if t.Seq > 0 {
			seq = strconv.FormatInt(t.Seq, 10)
		}
		if t.Stage != "" {
			stage = fmt.Sprintf("%s/%d", t.Stage, t.Epoch)
		}
		if t.Revision > 0 {
			rev = strconv.FormatInt(t.Revision, 10)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%.12s\n", seq, t.At.Format(time.RFC3339), t.Kind, outcome, stage, t.User, rev, req, t.Hash)
	}
	return tw.Flush()
}

func printVerify(out io.Writer, rep store.VerifyReport) {
	if len(rep.Problems) == 0 {
		fmt.Fprintf(out, "ledger of %s: chain intact, %d entries, head %s\n", rep.Doc, rep.Entries, rep.Head)
	} else {
		fmt.Fprintf(out, "ledger of %s: chain BROKEN\n", rep.Doc)
		for _, p := range rep.Problems {
			fmt.Fprintf(out, "  entry %d: %s\n", p.Seq, p.Problem)
		}
	}
	for _, c := range rep.Receipts {
		if c.Verdict == ledger.ReceiptConfirmed {
			fmt.Fprintf(out, "receipt %s: confirmed\n", c.Receipt)
			continue
		}
		fmt.Fprintf(out, "receipt %s: %s: %s\n", c.Receipt, strings.ToUpper(c.Verdict), c.Detail)
	}
	if rep.OK && rep.Receipt != "" {
		fmt.Fprintf(out, "receipt of the head, to keep: %s\n", rep.Receipt)
	}
}

// printJSON writes v as indented JSON, as every --json and -o json prints.
func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// verifyFailure says what failed in a verification that is not OK: an
// intact chain with a receipt it does not confirm is not a broken ledger.
func verifyFailure(rep store.VerifyReport) error {
	var why []string
	if len(rep.Problems) > 0 {
		why = append(why, fmt.Sprintf("the hash chain is broken (%d problems)", len(rep.Problems)))
	}
	unconfirmed := 0
	for _, c := range rep.Receipts {
		if c.Verdict != ledger.ReceiptConfirmed {
			unconfirmed++
		}
	}
	if unconfirmed > 0 {
		why = append(why, fmt.Sprintf("%d of %d receipts not confirmed", unconfirmed, len(rep.Receipts)))
	}
	if len(why) == 0 {
		why = append(why, "failed verification")
	}
	return fmt.Errorf("ledger of %s: %s", rep.Doc, strings.Join(why, "; "))
}
