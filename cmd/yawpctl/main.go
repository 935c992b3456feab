// Command yawpctl is the admin and support CLI of the persistence operator:
// document inspection (decode and merge Yjs updates, print text) and trace
// replay today; evidence look-up and token minting join as command groups.
package main

import (
	"fmt"
	"os"
)

func main() {
	if err := newRootCommand().Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "yawpctl:", err)
		os.Exit(1)
	}
}
