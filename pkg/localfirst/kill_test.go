package localfirst

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/yawp/persistence-operator/internal/yjs"
)

// TestHelperEditor is the child process of TestKilledMidEditing: it edits
// the store at LOCALFIRST_KILL_PATH forever, printing each edit once Edit
// has returned (the edit is on disk).
func TestHelperEditor(t *testing.T) {
	path := os.Getenv("LOCALFIRST_KILL_PATH")
	if path == "" {
		t.Skip("helper process")
	}
	c, err := Open(path)
	if err != nil {
		fmt.Println("error", err)
		os.Exit(2)
	}
	for i := 0; ; i++ {
		tag := fmt.Sprintf("<%s.%d>", os.Getenv("LOCALFIRST_KILL_ROUND"), i)
		if err := c.Edit(func(x *yjs.Text) error { return x.Insert(x.Len(), tag, nil) }); err != nil {
			fmt.Println("error", err)
			os.Exit(2)
		}
		fmt.Println("saved", tag)
	}
}

// TestKilledMidEditing: a process editing is killed with SIGKILL at an
// arbitrary point; every edit it reported saved is there after reopening.
func TestKilledMidEditing(t *testing.T) {
	path := filepath.Join(t.TempDir(), "killed.ylf")
	for round := 0; round < 3; round++ {
		cmd := exec.Command(os.Args[0], "-test.run=^TestHelperEditor$")
		cmd.Env = append(os.Environ(), "LOCALFIRST_KILL_PATH="+path, fmt.Sprintf("LOCALFIRST_KILL_ROUND=%d", round))
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(out)
		var saved []string
		for sc.Scan() && len(saved) < 20+round*7 {
			f := strings.Fields(sc.Text())
			if len(f) == 2 && f[0] == "saved" {
				saved = append(saved, f[1])
			} else if len(f) > 0 && f[0] == "error" {
				t.Fatal(sc.Text())
			}
		}
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		c, err := Open(path)
		if err != nil {
			t.Fatalf("round %d: reopen after kill: %v", round, err)
		}
		txt := c.Text()
		for _, tag := range saved {
			if !strings.Contains(txt, tag) {
				t.Fatalf("round %d: acknowledged edit %s lost; text %q", round, tag, txt)
			}
		}
		t.Logf("round %d: %d acknowledged edits kept (%d records, %d torn bytes dropped)", round, len(saved), c.Loaded.Records, c.Loaded.Torn)
		_ = c.Close()
	}
}
