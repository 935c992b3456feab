package syncer

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"

	"github.com/yawp/persistence-operator/internal/contract"
	"github.com/yawp/persistence-operator/internal/dataplane"
	"github.com/yawp/persistence-operator/internal/store"
)

// Internal API paths for the sync gateway (internal/gateway's
// syncws.Backend): who owns a document, and a tenant's stage.
const (
	// PathStage answers GET ?tenant= with the tenant's dataplane.SaveStage.
	PathStage = contract.PathInternal + "stage"
	// pathOwnerSuffix follows PathDocuments+{doc}: GET answers
	// {"tenant": "..."}, "" when the document does not exist yet.
	pathOwnerSuffix = "/owner"
	// pathSinceSuffix follows PathDocuments+{doc}: POST {"state_vector"}
	// answers YjsSince (read-only: nothing is recorded).
	pathSinceSuffix = "/yjs-since"
)

// YjsSince is the body and answer of the yjs-since endpoint.
type YjsSince struct {
	StateVector []byte `json:"state_vector,omitempty"`
	Update      []byte `json:"update,omitempty"`
	// Tenant (answer only) owns the document; "" when it does not exist.
	Tenant string `json:"tenant,omitempty"`
}

// Owner is the answer of the document-owner endpoint.
type Owner struct {
	Tenant string `json:"tenant"`
}

// registerSync adds the sync gateway's endpoints to the internal API.
func registerSync(mux *http.ServeMux, eng *store.Engine, auth func(http.HandlerFunc) http.HandlerFunc) {
	mux.HandleFunc("GET "+PathStage, auth(func(w http.ResponseWriter, r *http.Request) {
		t := r.URL.Query().Get(qTenant)
		if t == "" {
			WriteError(w, &store.Error{Status: http.StatusBadRequest, Code: store.CodeInvalidRequest, Message: "tenant is required"})
			return
		}
		st, err := eng.TenantStage(r.Context(), t)
		reply(w, st, err)
	}))
	mux.HandleFunc("GET "+PathDocuments+"{doc}"+pathOwnerSuffix, auth(func(w http.ResponseWriter, r *http.Request) {
		t, err := eng.DocumentTenant(r.Context(), r.PathValue("doc"))
		reply(w, Owner{Tenant: t}, err)
	}))
	mux.HandleFunc("POST "+PathDocuments+"{doc}"+pathSinceSuffix, auth(func(w http.ResponseWriter, r *http.Request) {
		var in YjsSince
		if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20)).Decode(&in); err != nil {
			WriteError(w, &store.Error{Status: http.StatusBadRequest, Code: store.CodeInvalidRequest, Message: "bad request body: " + err.Error()})
			return
		}
		u, sv, tenant, err := eng.YjsSince(r.Context(), r.PathValue("doc"), in.StateVector)
		reply(w, YjsSince{StateVector: sv, Update: u, Tenant: tenant}, err)
	}))
}

// YjsSince returns what doc's Yjs representation holds beyond sv, and its
// state vector (both nil without a Yjs representation).
func (c *Client) YjsSince(ctx context.Context, doc string, sv []byte) (YjsSince, error) {
	var out YjsSince
	err := c.do(ctx, http.MethodPost, PathDocuments+url.PathEscape(doc)+pathSinceSuffix, nil, YjsSince{StateVector: sv}, &out)
	return out, err
}

// Stage returns a tenant's current (stage, epoch).
func (c *Client) Stage(ctx context.Context, tenant string) (dataplane.SaveStage, error) {
	var out dataplane.SaveStage
	err := c.do(ctx, http.MethodGet, PathStage, url.Values{qTenant: {tenant}}, nil, &out)
	return out, err
}

// DocumentTenant returns the tenant owning doc ("" if it does not exist).
func (c *Client) DocumentTenant(ctx context.Context, doc string) (string, error) {
	var out Owner
	err := c.do(ctx, http.MethodGet, PathDocuments+url.PathEscape(doc)+pathOwnerSuffix, nil, nil, &out)
	return out.Tenant, err
}
