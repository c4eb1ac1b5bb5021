// Prints the Go release that built this program and the offset of goid in its runtime.g,
// read from its own DWARF: how loader/goruntime.rs's table is checked for a release.
//
//	GO111MODULE=off "$(GOTOOLCHAIN=go1.27.3 go env GOROOT)/bin/go" build -o /tmp/goid scripts/goid-offset/main.go && /tmp/goid
//
// (go run would drop the DWARF.)
package main

import (
	"debug/dwarf"
	"debug/elf"
	"fmt"
	"os"
	"runtime"
)

func main() {
	exe, err := os.Executable()
	if err != nil {
		fail(err)
	}
	f, err := elf.Open(exe)
	if err != nil {
		fail(err)
	}
	d, err := f.DWARF()
	if err != nil {
		fail(err)
	}
	r := d.Reader()
	for {
		e, err := r.Next()
		if err != nil || e == nil {
			fail(fmt.Errorf("no runtime.g in the DWARF (%v)", err))
		}
		if e.Tag != dwarf.TagStructType || e.Val(dwarf.AttrName) != "runtime.g" {
			continue
		}
		for {
			m, err := r.Next()
			if err != nil || m == nil || m.Tag == 0 {
				fail(fmt.Errorf("runtime.g has no goid (%v)", err))
			}
			if m.Tag == dwarf.TagMember && m.Val(dwarf.AttrName) == "goid" {
				fmt.Println(runtime.Version(), m.Val(dwarf.AttrDataMemberLoc))
				return
			}
		}
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, err)
	os.Exit(1)
}
