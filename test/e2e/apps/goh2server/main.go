// An HTTP/2 server over TLS (net/http, Go's default) whose handler calls a backend over
// plain HTTP/1 on a pooled http.Client, and a client for it driving many streams at once
// on ONE connection. Standard library only; a self-signed certificate made at start.
//
//	goh2server server PORT BACKEND_PORT   serves /work/<id>: waits 30 ms (so the streams
//	                                      overlap), GETs 127.0.0.1:BACKEND_PORT/users/<id>
//	                                      /echo/<id>: waits 30 ms, answers
//	goh2server front PORT H2PORT          an HTTP/1 server: /front/<id> GETs
//	                                      https://127.0.0.1:H2PORT/echo/<id> on one
//	                                      shared http.Client (HTTP/2, one TLS
//	                                      connection); /stats: JSON of the protocols
//	                                      and connections its calls used
//	goh2server client PORT PREFIX N       one connection, N requests at once to
//	                                      /work/<PREFIX><i>; even i carry a traceparent
//	                                      (trace 4b..<i>, parent 00f0..<i>, sampled); prints
//	                                      one JSON line: the protocol, connections used,
//	                                      and the traceparent sent per id
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
	"net/http/httptrace"
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

var backend = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}

func serve(port, back string) error {
	mux := http.NewServeMux()
	mux.HandleFunc("/work/", func(w http.ResponseWriter, r *http.Request) {
		id := strings.TrimPrefix(r.URL.Path, "/work/")
		time.Sleep(30 * time.Millisecond)
		resp, err := backend.Get(fmt.Sprintf("http://127.0.0.1:%s/users/%s", back, id))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		io.WriteString(w, r.Proto+"\n")
	})
	mux.HandleFunc("/echo/", func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(30 * time.Millisecond)
		io.WriteString(w, r.Proto+"\n")
	})
	srv := &http.Server{
		Addr:      "127.0.0.1:" + port,
		Handler:   mux,
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert()}},
	}
	return srv.ListenAndServeTLS("", "")
}

// front: an HTTP/1 server whose handler calls the HTTP/2 server over TLS.
func front(port, h2port string) error {
	client := &http.Client{Transport: &http.Transport{
		TLSClientConfig:   &tls.Config{InsecureSkipVerify: true},
		ForceAttemptHTTP2: true,
	}}
	var mu sync.Mutex
	conns := map[string]bool{}
	protos := map[string]bool{}
	mux := http.NewServeMux()
	mux.HandleFunc("/front/", func(w http.ResponseWriter, r *http.Request) {
		id := strings.TrimPrefix(r.URL.Path, "/front/")
		trace := &httptrace.ClientTrace{GotConn: func(c httptrace.GotConnInfo) {
			mu.Lock()
			conns[c.Conn.LocalAddr().String()] = true
			mu.Unlock()
		}}
		req, _ := http.NewRequest("GET", "https://127.0.0.1:"+h2port+"/echo/"+id, nil)
		req = req.WithContext(httptrace.WithClientTrace(r.Context(), trace))
		resp, err := client.Do(req)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		mu.Lock()
		protos[resp.Proto] = true
		mu.Unlock()
		io.WriteString(w, resp.Proto+"\n")
	})
	mux.HandleFunc("/stats", func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		var ps []string
		for p := range protos {
			ps = append(ps, p)
		}
		json.NewEncoder(w).Encode(map[string]any{"protos": ps, "connections": len(conns)})
	})
	return http.ListenAndServe("127.0.0.1:"+port, mux)
}

func traceparent(i int) string {
	return fmt.Sprintf("00-4b%030x-00f0%012x-01", i+1, i+1)
}

func drive(port, prefix string, n int) error {
	tr := &http.Transport{
		TLSClientConfig:   &tls.Config{InsecureSkipVerify: true},
		ForceAttemptHTTP2: true,
	}
	client := &http.Client{Transport: tr}
	base := "https://127.0.0.1:" + port + "/work/"
	var mu sync.Mutex
	conns := map[string]bool{}
	protos := map[string]bool{}
	sent := map[string]string{}
	get := func(id, tp string) error {
		trace := &httptrace.ClientTrace{GotConn: func(c httptrace.GotConnInfo) {
			mu.Lock()
			conns[c.Conn.LocalAddr().String()] = true
			mu.Unlock()
		}}
		req, _ := http.NewRequest("GET", base+id, nil)
		req = req.WithContext(httptrace.WithClientTrace(req.Context(), trace))
		if tp != "" {
			req.Header.Set("traceparent", tp)
		}
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		io.Copy(io.Discard, resp.Body)
		if resp.StatusCode != 200 {
			return fmt.Errorf("%s: status %d", id, resp.StatusCode)
		}
		mu.Lock()
		protos[resp.Proto] = true
		mu.Unlock()
		return nil
	}
	// The connection first, so that every request below shares it.
	if err := get(prefix+"warm", ""); err != nil {
		return err
	}
	errs := make(chan error, n)
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		id, tp := prefix+strconv.Itoa(i), ""
		if i%2 == 0 {
			tp = traceparent(i)
		}
		if tp != "" {
			sent[id] = tp
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- get(id, tp)
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			return err
		}
	}
	var ps []string
	for p := range protos {
		ps = append(ps, p)
	}
	return json.NewEncoder(os.Stdout).Encode(map[string]any{
		"protos": ps, "connections": len(conns), "traceparents": sent,
	})
}

func main() {
	var err error
	switch {
	case len(os.Args) == 4 && os.Args[1] == "server":
		err = serve(os.Args[2], os.Args[3])
	case len(os.Args) == 4 && os.Args[1] == "front":
		err = front(os.Args[2], os.Args[3])
	case len(os.Args) == 5 && os.Args[1] == "client":
		n, _ := strconv.Atoi(os.Args[4])
		err = drive(os.Args[2], os.Args[3], n)
	default:
		err = fmt.Errorf("usage: goh2server server PORT BACKEND_PORT | front PORT H2PORT | client PORT PREFIX N")
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
