package syncer

import (
	"crypto/subtle"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/yawp/persistence-operator/internal/contract"
	"github.com/yawp/persistence-operator/internal/ledger"
	"github.com/yawp/persistence-operator/internal/store"
)

// Internal API paths, under contract.PathInternal.
const (
	PathApply     = contract.PathInternal + "apply"
	PathList      = contract.PathInternal + "list"
	PathDocuments = contract.PathInternal + "documents/"
)

// Handler serves the internal API of eng. token authenticates callers;
// with an empty token every internal call is refused (503).
func Handler(eng *store.Engine, token string) http.Handler {
	mux := http.NewServeMux()
	ok := func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusOK)
		_, _ = io.WriteString(w, "ok\n")
	}
	mux.HandleFunc("GET "+contract.PathHealthz, ok)
	mux.HandleFunc("GET "+contract.PathReadyz, func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-eng.Fenced():
			http.Error(w, "fenced", http.StatusServiceUnavailable)
		default:
			ok(w, r)
		}
	})
	auth := func(h http.HandlerFunc) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			if token == "" {
				WriteError(w, &store.Error{Status: http.StatusServiceUnavailable, Code: "internal_api_disabled",
					Message: "no internal token configured (" + contract.EnvInternalToken + " or " + contract.EnvTokenKey + ")"})
				return
			}
			got, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
			if subtle.ConstantTimeCompare([]byte(got), []byte(token)) != 1 {
				WriteError(w, &store.Error{Status: http.StatusUnauthorized, Code: "unauthenticated", Message: "bad internal token"})
				return
			}
			h(w, r)
		}
	}
	mux.HandleFunc("POST "+PathApply, auth(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		var req store.Request
		defer func() { requestDuration.WithLabelValues(requestKind(req.Kind)).Observe(time.Since(start).Seconds()) }()
		// A Yjs update travels base64-encoded (4/3 of its size) beside the
		// request's other fields.
		dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 2*contract.MaxUpdateBytes))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&req); err != nil {
			WriteError(w, &store.Error{Status: http.StatusBadRequest, Code: store.CodeInvalidRequest, Message: "bad request body: " + err.Error()})
			return
		}
		res, err := eng.Submit(r.Context(), req)
		if err != nil {
			WriteError(w, err)
			return
		}
		WriteJSON(w, http.StatusOK, res)
	}))
	mux.HandleFunc("POST "+PathApplyBatch, auth(serveApplyBatch(eng)))
	mux.HandleFunc("GET "+PathList, auth(func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		limit, _ := strconv.Atoi(q.Get("limit"))
		out, err := eng.List(r.Context(), q.Get("tenant"), q.Get("after"), limit)
		if err != nil {
			WriteError(w, err)
			return
		}
		WriteJSON(w, http.StatusOK, out)
	}))
	mux.HandleFunc("GET "+PathDocuments+"{doc}", auth(func(w http.ResponseWriter, r *http.Request) {
		d, err := eng.Read(r.Context(), r.URL.Query().Get("tenant"), r.PathValue("doc"))
		reply(w, d, err)
	}))
	mux.HandleFunc("GET "+PathDocuments+"{doc}/revisions/{rev}", auth(func(w http.ResponseWriter, r *http.Request) {
		rev, err := strconv.ParseInt(r.PathValue("rev"), 10, 64)
		if err != nil {
			WriteError(w, &store.Error{Status: http.StatusBadRequest, Code: store.CodeInvalidRequest, Message: "revision must be an integer"})
			return
		}
		out, err := eng.ReadRevision(r.Context(), r.URL.Query().Get("tenant"), r.PathValue("doc"), rev)
		reply(w, out, err)
	}))
	mux.HandleFunc("GET "+PathDocuments+"{doc}/preserved/{id}", auth(func(w http.ResponseWriter, r *http.Request) {
		id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
		if err != nil {
			WriteError(w, &store.Error{Status: http.StatusBadRequest, Code: store.CodeInvalidRequest, Message: "preserved ID must be an integer"})
			return
		}
		out, err := eng.ReadPreserved(r.Context(), r.URL.Query().Get("tenant"), r.PathValue("doc"), id)
		reply(w, out, err)
	}))
	mux.HandleFunc("GET "+PathDocuments+"{doc}/evidence", auth(func(w http.ResponseWriter, r *http.Request) {
		q, err := EvidenceQueryFrom(r.URL.Query())
		if err != nil {
			WriteError(w, err)
			return
		}
		q.Doc = r.PathValue("doc")
		out, err := eng.Evidence(r.Context(), q)
		reply(w, out, err)
	}))
	mux.HandleFunc("GET "+PathDocuments+"{doc}/verify", auth(func(w http.ResponseWriter, r *http.Request) {
		receipts, err := ReceiptsFrom(r.URL.Query())
		if err != nil {
			WriteError(w, err)
			return
		}
		out, err := eng.VerifyLedger(r.Context(), r.PathValue("doc"), receipts...)
		reply(w, out, err)
	}))
	registerSync(mux, eng, auth)
	return mux
}

// EvidenceQueryFrom parses evidence query parameters (tenant, request,
// revision, client, user, since).
func EvidenceQueryFrom(v map[string][]string) (store.EvidenceQuery, error) {
	get := func(k string) string {
		if s := v[k]; len(s) > 0 {
			return s[0]
		}
		return ""
	}
	q := store.EvidenceQuery{Tenant: get("tenant"), Request: get("request"), User: get("user")}
	bad := func(m string) error {
		return &store.Error{Status: http.StatusBadRequest, Code: store.CodeInvalidRequest, Message: m}
	}
	if s := get("revision"); s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n < 1 {
			return q, bad("revision must be a positive integer")
		}
		q.Revision = n
	}
	if s := get("client"); s != "" {
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil || n == 0 {
			return q, bad("client must be a positive integer (a Yjs client ID)")
		}
		q.Client = n
	}
	if s := get("since"); s != "" {
		t, err := time.Parse(time.RFC3339, s)
		if err != nil {
			return q, bad("since must be an RFC 3339 time")
		}
		q.Since = t
	}
	return q, nil
}

// MaxReceipts is how many receipts one verification takes.
const MaxReceipts = contract.MaxReceipts

// ReceiptsFrom parses the receipt parameters of a verification: each
// "<ledger_seq>:<ledger_hash>" as a save's answer gave them.
func ReceiptsFrom(v map[string][]string) ([]ledger.Receipt, error) {
	in := v["receipt"]
	if len(in) > MaxReceipts {
		return nil, &store.Error{Status: http.StatusBadRequest, Code: store.CodeInvalidRequest,
			Message: fmt.Sprintf("at most %d receipts per verification, got %d", MaxReceipts, len(in))}
	}
	out := make([]ledger.Receipt, 0, len(in))
	for _, s := range in {
		rc, err := ledger.ParseReceipt(s)
		if err != nil {
			return nil, &store.Error{Status: http.StatusBadRequest, Code: store.CodeInvalidRequest, Message: err.Error()}
		}
		out = append(out, rc)
	}
	return out, nil
}

func reply(w http.ResponseWriter, v any, err error) {
	if err != nil {
		WriteError(w, err)
		return
	}
	WriteJSON(w, http.StatusOK, v)
}

// WriteJSON writes v as JSON with status.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// WriteError writes err as {"code", "message"} with its status.
func WriteError(w http.ResponseWriter, err error) {
	e := errorOf(err)
	WriteJSON(w, e.Status, e)
}
