//go:build !(linux || darwin || freebsd || netbsd || openbsd || dragonfly)

package localfirst

import "os"

// lockStore opens path; this platform has no flock, so nothing keeps a
// second client from opening the store.
func lockStore(path string) (*os.File, error) {
	return os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
}
