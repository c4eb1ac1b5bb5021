// Standard library only, so every Go release from 1.18 builds it (test_40b, goruntime.rs,
// bench_go.py; test/e2e/apps/gofanout adds grpc-go and Gin). A Go net/http server whose
// handler for /work/<port>/<id> makes one call on a pooled http.Client and then a fan-out
// of two calls from new goroutines, all to 127.0.0.1:<port>/users/<id>-{a,b1,b2} (?linger=<ms>: the handler returns that long after
// its response is sent): go run . PORT
package main

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

var client = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}

func get(url string) error {
	resp, err := client.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, err = io.Copy(io.Discard, resp.Body)
	return err
}

func main() {
	http.HandleFunc("/work/", func(w http.ResponseWriter, r *http.Request) {
		port, id, _ := strings.Cut(strings.TrimPrefix(r.URL.Path, "/work/"), "/")
		base := fmt.Sprintf("http://127.0.0.1:%s/users/%s-", port, id)
		errs := make([]error, 3)
		errs[0] = get(base + "a")
		var wg sync.WaitGroup
		for i, leg := range []string{"b1", "b2"} {
			wg.Add(1)
			go func(i int, leg string) {
				defer wg.Done()
				errs[i+1] = get(base + leg)
			}(i, leg)
		}
		wg.Wait()
		for _, err := range errs {
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadGateway)
				return
			}
		}
		ms, err := strconv.Atoi(r.URL.Query().Get("linger"))
		if err == nil {
			w.Header().Set("Content-Length", "3") // the response is whole once flushed
		}
		io.WriteString(w, "ok\n")
		if err == nil {
			// The response out, the handler lingers: a client's next keep-alive request
			// arrives while net/http's background read watches the connection, which
			// takes its first byte.
			w.(http.Flusher).Flush()
			time.Sleep(time.Duration(ms) * time.Millisecond)
		}
	})
	if err := http.ListenAndServe("127.0.0.1:"+os.Args[1], nil); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
