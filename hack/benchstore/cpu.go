package main

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// CPU accounting from /proc (Linux), so a run can say what a save cost in
// CPU time, which a shared machine's load disturbs much less than rates.

// clockTick is the unit of /proc/<pid>/stat's times (USER_HZ, 100 on
// every Linux this runs on).
const clockTick = 10 * time.Millisecond

// procTimes returns a process's parent pid, its own CPU time and that of
// its reaped children, or ok false if it is gone.
func procTimes(pid int) (ppid int, self, children time.Duration, ok bool) {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return 0, 0, 0, false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')') // the command name may hold spaces
	if i < 0 {
		return 0, 0, 0, false
	}
	f := strings.Fields(s[i+1:])
	// After the name: state ppid pgrp session tty tpgid flags minflt
	// cminflt majflt cmajflt utime stime cutime cstime ...
	if len(f) < 15 {
		return 0, 0, 0, false
	}
	n := func(k int) time.Duration { v, _ := strconv.ParseInt(f[k], 10, 64); return time.Duration(v) * clockTick }
	ppid, _ = strconv.Atoi(f[1])
	return ppid, n(11) + n(12), n(13) + n(14), true
}

// serverCPU is the CPU time a PostgreSQL server has used so far: the
// postmaster's, its live processes' and those it has reaped (backends of
// closed connections), so a backend that exits between two readings is
// still counted.
func serverCPU(postmaster int) time.Duration {
	_, self, reaped, ok := procTimes(postmaster)
	if !ok {
		return 0
	}
	total := self + reaped
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == postmaster {
			continue
		}
		if ppid, self, _, ok := procTimes(pid); ok && ppid == postmaster {
			total += self
		}
	}
	return total
}

// selfCPU is this process's CPU time so far (the store and the writers
// that load it).
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
