// HTTPS over Go's crypto/tls (statically linked: no libssl), HTTP/2 by ALPN.
//
//	gotls server PORT              serves /users/{id} (200) and /status/{code}
//	gotls client BASE N PATH...    N rounds of GETs of each PATH, all concurrently on one
//	                               HTTP/2 connection; prints one JSON line
//	gotls client1 BASE PATH...     the same, one at a time over HTTP/1.1
package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

func cert() tls.Certificate {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "localhost"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		DNSNames:     []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		panic(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

func serve(port string) {
	mux := http.NewServeMux()
	mux.HandleFunc("/users/", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "user %s (%s)\n", strings.TrimPrefix(r.URL.Path, "/users/"), r.Proto)
	})
	mux.HandleFunc("/status/", func(w http.ResponseWriter, r *http.Request) {
		code, _ := strconv.Atoi(strings.TrimPrefix(r.URL.Path, "/status/"))
		w.WriteHeader(code)
	})
	srv := &http.Server{
		Addr:      "127.0.0.1:" + port,
		Handler:   mux,
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert()}},
	}
	if err := srv.ListenAndServeTLS("", ""); err != nil {
		panic(err)
	}
}

func client(base string, rounds int, paths []string, h2 bool) {
	tr := &http.Transport{
		TLSClientConfig:   &tls.Config{InsecureSkipVerify: true},
		ForceAttemptHTTP2: h2,
	}
	if !h2 {
		tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
	}
	c := &http.Client{Transport: tr}
	get := func(p string) (int, string) {
		resp, err := c.Get(base + p)
		if err != nil {
			panic(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode, resp.Proto
	}
	// One request first, so the others reuse its connection.
	codes := []int{}
	proto := ""
	var mu sync.Mutex
	code, proto := get(paths[0])
	codes = append(codes, code)
	var wg sync.WaitGroup
	for r := 0; r < rounds; r++ {
		for i, p := range paths {
			if r == 0 && i == 0 {
				continue
			}
			if !h2 {
				code, _ := get(p)
				codes = append(codes, code)
				continue
			}
			wg.Add(1)
			go func(p string) {
				defer wg.Done()
				code, _ := get(p)
				mu.Lock()
				codes = append(codes, code)
				mu.Unlock()
			}(p)
		}
	}
	wg.Wait()
	out, _ := json.Marshal(map[string]any{"pid": os.Getpid(), "proto": proto, "codes": codes})
	fmt.Println(string(out))
}

func main() {
	switch os.Args[1] {
	case "server":
		serve(os.Args[2])
	case "client":
		n, _ := strconv.Atoi(os.Args[3])
		client(os.Args[2], n, os.Args[4:], true)
	case "client1":
		client(os.Args[2], 1, os.Args[3:], false)
	}
}
