//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly

package localfirst

import (
	"errors"
	"fmt"
	"os"
	"syscall"
)

// lockStore takes an exclusive, non-blocking lock on path (created if
// missing); closing the file releases it, as does the process's end.
func lockStore(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("%w: %s", ErrInUse, path)
		}
		return nil, fmt.Errorf("localfirst: locking %s: %w", path, err)
	}
	return f, nil
}
