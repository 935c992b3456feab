package localfirst_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"time"

	"github.com/yawp/persistence-operator/pkg/localfirst"
)

// An editor outside this module uses the package's names only (Text, not
// the engine's internal type): this example compiles in an external test
// package that imports nothing internal, and runs offline.
func ExampleClient_Edit() {
	dir, err := os.MkdirTemp("", "essay")
	if err != nil {
		log.Fatal(err)
	}
	defer func() { _ = os.RemoveAll(dir) }()
	c, err := localfirst.Open(filepath.Join(dir, "essay.ylf"))
	if err != nil {
		log.Fatal(err)
	}
	defer func() { _ = c.Close() }()
	// Kept on disk before Edit returns, whether or not a server is reachable.
	if err := c.Edit(func(t *localfirst.Text) error { return t.Insert(t.Len(), "Draft one. ", nil) }); err != nil {
		log.Fatal(err)
	}
	clients := func(sv localfirst.StateVector) int { return len(sv) }
	ctx, cancel := context.WithTimeout(context.Background(), time.Millisecond)
	defer cancel()
	fmt.Printf("%q, %d client(s) in the state vector, flushed offline: %v\n", c.Text(), clients(c.StateVector()), c.Flush(ctx) == nil)
	// Output: "Draft one. ", 1 client(s) in the state vector, flushed offline: false
}
