package main

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"

	"golang.org/x/sys/unix"
)

// machine describes where the bench ran.
type machine struct {
	CPU        string `json:"cpu"`
	Cores      int    `json:"cores"`
	Memory     string `json:"memory"`
	Kernel     string `json:"kernel"`
	OS         string `json:"os"`
	Filesystem string `json:"filesystem"` // of the directory holding the stores and the ALS
	Go         string `json:"go"`
	Registry   string `json:"registry"`
}

// describeMachine returns what the report says about the machine; work is the directory
// holding the stores and the Additional Layer Store.
func describeMachine(work string) machine {
	m := machine{
		CPU:        firstField("/proc/cpuinfo", "model name", ":"),
		Cores:      runtime.NumCPU(),
		OS:         strings.Trim(firstField("/etc/os-release", "PRETTY_NAME", "="), `"`),
		Go:         runtime.Version(),
		Filesystem: filesystemType(work),
	}
	if kb := firstField("/proc/meminfo", "MemTotal", ":"); kb != "" {
		var n int64
		if _, err := fmt.Sscanf(kb, "%d kB", &n); err == nil {
			m.Memory = fmt.Sprintf("%.1f GiB", float64(n)/(1<<20))
		}
	}
	var uts unix.Utsname
	if unix.Uname(&uts) == nil {
		m.Kernel = unix.ByteSliceToString(uts.Release[:]) + " " +
			unix.ByteSliceToString(uts.Machine[:])
	}
	if out, err := exec.Command("docker-registry", "--version").Output(); err == nil {
		m.Registry = strings.TrimSpace(string(out))
	}
	return m
}

// firstField returns the value of the first line of path that starts with key, after sep.
func firstField(path, key, sep string) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), sep)
		if ok && strings.TrimSpace(k) == key {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// filesystemType names the file system dir is on, as mount(8) would.
func filesystemType(dir string) string {
	var st unix.Statfs_t
	if unix.Statfs(dir, &st) != nil {
		return ""
	}
	names := map[int64]string{
		unix.EXT4_SUPER_MAGIC: "ext4", unix.XFS_SUPER_MAGIC: "xfs", unix.TMPFS_MAGIC: "tmpfs",
		unix.BTRFS_SUPER_MAGIC: "btrfs", unix.OVERLAYFS_SUPER_MAGIC: "overlay",
	}
	if n, ok := names[int64(st.Type)]; ok {
		return n
	}
	return fmt.Sprintf("0x%x", st.Type)
}
