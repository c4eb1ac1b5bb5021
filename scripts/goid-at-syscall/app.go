// 64 goroutines writing on loopback connections, each with the length 1000 + its goid.
package main

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"runtime"
	"strconv"
	"sync"
)

func goid() int {
	b := make([]byte, 64)
	b = b[:runtime.Stack(b, false)]
	f := bytes.Fields(b)
	n, _ := strconv.Atoi(string(f[1]))
	return n
}

func main() {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go io.Copy(io.Discard, c)
		}
	}()
	var wg sync.WaitGroup
	writes := 0
	var mu sync.Mutex
	for i := 0; i < 64; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, _ := net.Dial("tcp", ln.Addr().String())
			buf := make([]byte, 1000+goid())
			for k := 0; k < 2000; k++ {
				c.Write(buf)
				if k%7 == 0 {
					runtime.Gosched()
				}
			}
			mu.Lock()
			writes += 2000
			mu.Unlock()
			c.Close()
		}()
	}
	wg.Wait()
	fmt.Println("writes", writes)
}
