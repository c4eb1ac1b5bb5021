// A Go HTTP server (goroutine per request, goroutines moving between threads) whose
// /proxy/<port>/<path> calls GET /<path> on 127.0.0.1:<port>: go run . PORT
package main

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
)

func main() {
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	http.HandleFunc("/proxy/", func(w http.ResponseWriter, r *http.Request) {
		port, path, _ := strings.Cut(strings.TrimPrefix(r.URL.Path, "/proxy/"), "/")
		resp, err := client.Get(fmt.Sprintf("http://127.0.0.1:%s/%s", port, path))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		w.WriteHeader(resp.StatusCode)
		io.Copy(w, resp.Body)
	})
	if err := http.ListenAndServe("127.0.0.1:"+os.Args[1], nil); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
