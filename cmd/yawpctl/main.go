// Command yawpctl is the admin and support CLI of the persistence operator:
// document inspection (decode and merge Yjs updates, print text) and trace
// replay today; evidence look-up and token minting join as command groups.
package main

import (
	"fmt"
	"os"
)

func main() {
	os.Exit(run(os.Args[1:]))
}

// run executes yawpctl with args and returns its exit status (exitcode.go),
// having printed any error to standard error.
func run(args []string) int {
	root := newRootCommand()
	root.SetArgs(args)
	cmd, err := root.ExecuteC()
	if err == nil {
		return exitOK
	}
	code := exitCode(err)
	fmt.Fprintln(os.Stderr, "yawpctl:", err)
	if code == exitUsage && cmd != nil {
		fmt.Fprintf(os.Stderr, "Run '%s --help' for usage.\n", cmd.CommandPath())
	}
	return code
}
