// Package loadgen is the workload generator behind `yawpctl loadgen`: a
// seeded, repeatable load of N tenants (schools) with M documents each,
// driven through the gateway the way the real editors drive it, and an
// audit at the end that checks the invariants a student would notice.
//
// The workload mixes
//   - legacy clients: GET, then PUT with If-Match (the revision read) and an
//     Idempotency-Key, retried with the same key on network errors;
//   - local-first clients (pkg/localfirst, a durable store per document
//     under a temporary directory), used for a document only while its
//     cohort's protocol is local-first, as the editor switches at the flip;
//     some of them go offline for an episode (edits while disconnected,
//     reconnect later);
//   - out-of-band writes: the legacy row changed directly in PostgreSQL,
//     as a legacy writer bypassing the gateway would (only with a database
//     URL).
//
// Every acknowledged save is recorded: a legacy save by its document,
// revision, content hash and idempotency key; a local-first edit by its
// document, Yjs client and clock once the server's state vector covered it
// (Flush). The audit then checks (a) every acknowledged save is present,
// (b) the legacy row equals the Yjs text for every document that has a
// Yjs representation, (c) every document's ledger chain verifies, also
// against the receipt of its last acknowledged legacy save (so entries cut
// from the chain's end, or its end rewritten, are caught), and every
// acknowledged save appears in its evidence timeline.
//
// It owns no table: it talks to the gateway, and with a database URL reads
// the document tables and writes the out-of-band changes a legacy writer
// would (SeedLegacy, outOfBand). It must never be imported by the
// services.
package loadgen
