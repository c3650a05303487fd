// sysinfo is drift's porting example: a program on module versions of
// 2016-2018 that does not build for linux/loong64 (bolt v1.3.1 lacks
// bolt_loong64.go; x/sys of September 2018 has no loong64 tables).
// `drift demo port` ports it and runs it under qemu-loongarch64-static.
package main

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/boltdb/bolt"
	"golang.org/x/sys/unix"
)

func main() {
	for _, f := range facts() {
		fmt.Println(f)
	}
}

func facts() []string {
	return []string{kernel(), roundtrip()}
}

// kernel names the kernel through x/sys.
func kernel() string {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return "kernel: " + err.Error()
	}
	n := 0
	for n < len(u.Sysname) && u.Sysname[n] != 0 {
		n++
	}
	return "kernel: " + string(u.Sysname[:n])
}

// roundtrip writes a value to a bolt file and reads it back.
func roundtrip() string {
	db, err := bolt.Open(filepath.Join(os.TempDir(), "sysinfo.db"), 0o600, nil)
	if err != nil {
		return "bolt: " + err.Error()
	}
	defer db.Close()
	var got []byte
	err = db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists([]byte("facts"))
		if err != nil {
			return err
		}
		if err := b.Put([]byte("answer"), []byte("42")); err != nil {
			return err
		}
		got = append(got, b.Get([]byte("answer"))...)
		return nil
	})
	if err != nil {
		return "bolt: " + err.Error()
	}
	return "bolt roundtrip: " + string(got)
}
