package syncws

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/yawp/persistence-operator/internal/auth"
	"github.com/yawp/persistence-operator/internal/contract"
	"github.com/yawp/persistence-operator/internal/yjs"
)

// MemoryBackend is an in-memory Backend over internal/yjs documents, for
// tests, demos and benchmarks of the protocol without a database. It is
// "durable" in the sense that ApplyUpdate has integrated the update before
// it returns. It also serves as the Authenticator's DocumentTenant.
type MemoryBackend struct {
	// DefaultProtocol is what Protocol answers when Protocols has no entry
	// for the document's tenant (default contract.ProtocolLocalFirst).
	DefaultProtocol string
	// MaxDocBytes bounds the bytes of updates a document accepts (0: no
	// bound); over it ApplyUpdate fails with ErrTooLarge.
	MaxDocBytes int

	mu        sync.Mutex
	docs      map[string]*memDoc
	protocols map[string]string
	announced []Announcement
	rejected  []Rejection
}

type memDoc struct {
	mu     sync.Mutex
	tenant string
	doc    *yjs.Doc
	bytes  int
}

// Announcement is a state vector a client announced.
type Announcement struct {
	Session Session
	SV      yjs.StateVector
	At      time.Time
}

// Rejection is a refusal recorded by Reject.
type Rejection struct {
	Session Session
	Code    int
	Reason  string
	Msg     []byte
}

// NewMemoryBackend returns an empty MemoryBackend.
func NewMemoryBackend() *MemoryBackend {
	return &MemoryBackend{docs: map[string]*memDoc{}, protocols: map[string]string{}}
}

// CreateDocument creates docID in tenant (no-op if it exists).
func (m *MemoryBackend) CreateDocument(docID, tenant string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.docs[docID] == nil {
		m.docs[docID] = &memDoc{tenant: tenant, doc: yjs.NewDoc(yjs.Options{ClientID: 1})}
	}
}

// SetProtocol sets the protocol of a tenant's documents.
func (m *MemoryBackend) SetProtocol(tenant, protocol string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.protocols[tenant] = protocol
}

func (m *MemoryBackend) get(docID string) *memDoc {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.docs[docID]
}

func (m *MemoryBackend) getOrCreate(s Session) *memDoc {
	m.mu.Lock()
	defer m.mu.Unlock()
	d := m.docs[s.DocID]
	if d == nil {
		d = &memDoc{tenant: s.Tenant, doc: yjs.NewDoc(yjs.Options{ClientID: 1})}
		m.docs[s.DocID] = d
	}
	return d
}

// DocumentTenant implements Authenticator's half.
func (m *MemoryBackend) DocumentTenant(_ context.Context, docID string) (string, error) {
	if d := m.get(docID); d != nil {
		return d.tenant, nil
	}
	return "", nil
}

// Protocol implements Backend.
func (m *MemoryBackend) Protocol(_ context.Context, s Session) (string, error) {
	tenant := s.DocTenant
	if tenant == "" {
		tenant = s.Tenant
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if p, ok := m.protocols[tenant]; ok {
		return p, nil
	}
	if m.DefaultProtocol != "" {
		return m.DefaultProtocol, nil
	}
	return contract.ProtocolLocalFirst, nil
}

// AnnounceStateVector implements Backend.
func (m *MemoryBackend) AnnounceStateVector(_ context.Context, s Session, sv []byte) error {
	v, err := yjs.DecodeStateVector(sv)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrMalformedUpdate, err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.announced = append(m.announced, Announcement{Session: s, SV: v, At: time.Now()})
	return nil
}

// SyncStep1 implements Backend.
func (m *MemoryBackend) SyncStep1(_ context.Context, s Session, clientSV []byte) ([]byte, []byte, error) {
	sv, err := yjs.DecodeStateVector(clientSV)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %v", ErrMalformedUpdate, err)
	}
	d := m.get(s.DocID)
	if d == nil {
		empty := yjs.NewDoc(yjs.Options{ClientID: 1})
		return empty.EncodeStateAsUpdate(nil), empty.EncodeStateVector(), nil
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.doc.EncodeStateAsUpdate(sv), d.doc.EncodeStateVector(), nil
}

// ApplyUpdate implements Backend.
func (m *MemoryBackend) ApplyUpdate(_ context.Context, s Session, update []byte) ([]byte, error) {
	if _, err := yjs.DecodeUpdate(update); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformedUpdate, err)
	}
	d := m.getOrCreate(s)
	d.mu.Lock()
	defer d.mu.Unlock()
	if m.MaxDocBytes > 0 && d.bytes+len(update) > m.MaxDocBytes {
		return nil, fmt.Errorf("%w: document over %d bytes", ErrTooLarge, m.MaxDocBytes)
	}
	if err := d.doc.ApplyUpdate(update); err != nil {
		if errors.Is(err, yjs.ErrMalformed) {
			return nil, fmt.Errorf("%w: %v", ErrMalformedUpdate, err)
		}
		return nil, err
	}
	d.bytes += len(update)
	return update, nil
}

// Reject implements Backend.
func (m *MemoryBackend) Reject(_ context.Context, s Session, code int, reason string, msg []byte) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.rejected = append(m.rejected, Rejection{Session: s, Code: code, Reason: reason, Msg: append([]byte(nil), msg...)})
}

// Text returns the string of a document's root Y.Text contract.YjsTextName.
func (m *MemoryBackend) Text(docID string) string {
	d := m.get(docID)
	if d == nil {
		return ""
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.doc.GetText(contract.YjsTextName).String()
}

// StateVector returns a document's state vector.
func (m *MemoryBackend) StateVector(docID string) yjs.StateVector {
	d := m.get(docID)
	if d == nil {
		return yjs.StateVector{}
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.doc.StateVector()
}

// Announcements returns the state vectors announced so far.
func (m *MemoryBackend) Announcements() []Announcement {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]Announcement(nil), m.announced...)
}

// Rejections returns the refusals recorded so far.
func (m *MemoryBackend) Rejections() []Rejection {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]Rejection(nil), m.rejected...)
}

// TokenAuth authenticates the gateway's HMAC tokens (internal/auth) and
// looks document tenants up with Tenants.
type TokenAuth struct {
	Key     []byte
	Tenants interface {
		DocumentTenant(ctx context.Context, docID string) (string, error)
	}
	// Now defaults to time.Now.
	Now func() time.Time
}

// Authenticate implements Authenticator.
func (a TokenAuth) Authenticate(_ context.Context, token string) (Principal, time.Duration, error) {
	now := time.Now
	if a.Now != nil {
		now = a.Now
	}
	at := now()
	c, err := auth.Verify(a.Key, token, at)
	if err != nil {
		return Principal{}, 0, err
	}
	return Principal{Tenant: c.Tenant, User: c.User}, time.Unix(c.Expiry, 0).Sub(at), nil
}

// DocumentTenant implements Authenticator.
func (a TokenAuth) DocumentTenant(ctx context.Context, docID string) (string, error) {
	return a.Tenants.DocumentTenant(ctx, docID)
}
