// gRPC with grpc-go (the module the collector itself is built with), no generated code:
// messages are raw bytes through a codec of our own.
//
//	gogrpc server PORT [tls]       serves demo.Shop: Get (unary; "fail" ends with
//	                               NOT_FOUND), Blob (unary; a reply of the size the request
//	                               names), List (server streaming: 3 messages, 50 ms apart)
//	                               With GOGRPC_BACKEND=<port>, Get first GETs
//	                               127.0.0.1:<port>/users/<item> over HTTP/1.
//	gogrpc client ADDR N [tls]     on ONE connection, concurrently: N Get, N Blob of 256 KiB;
//	                               then one List and one failing Get; prints one JSON line
package main

import (
	"context"
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
	"net"
	"net/http"
	"os"
	"strconv"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
)

type rawCodec struct{}

func (rawCodec) Marshal(v any) ([]byte, error) { return *(v.(*[]byte)), nil }
func (rawCodec) Unmarshal(data []byte, v any) error {
	*(v.(*[]byte)) = append([]byte(nil), data...)
	return nil
}
func (rawCodec) Name() string { return "proto" }

const blobSize = 256 * 1024

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

var shop = grpc.ServiceDesc{
	ServiceName: "demo.Shop",
	HandlerType: (*any)(nil),
	Methods: []grpc.MethodDesc{
		{MethodName: "Get", Handler: func(_ any, _ context.Context, dec func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
			var in []byte
			if err := dec(&in); err != nil {
				return nil, err
			}
			if string(in) == "fail" {
				return nil, status.Error(codes.NotFound, "no such item")
			}
			if back := os.Getenv("GOGRPC_BACKEND"); back != "" {
				// A call out from the handler (test_42): GET 127.0.0.1:<port>/users/<item>.
				resp, err := backend.Get("http://127.0.0.1:" + back + "/users/" + string(in))
				if err != nil {
					return nil, status.Error(codes.Unavailable, err.Error())
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
			out := []byte("item:" + string(in))
			return &out, nil
		}},
		{MethodName: "Blob", Handler: func(_ any, _ context.Context, dec func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
			var in []byte
			if err := dec(&in); err != nil {
				return nil, err
			}
			n, _ := strconv.Atoi(string(in))
			out := make([]byte, n)
			return &out, nil
		}},
	},
	Streams: []grpc.StreamDesc{{StreamName: "List", ServerStreams: true, Handler: func(_ any, s grpc.ServerStream) error {
		var in []byte
		if err := s.RecvMsg(&in); err != nil {
			return err
		}
		for i := 0; i < 3; i++ {
			time.Sleep(50 * time.Millisecond)
			out := []byte(fmt.Sprintf("part%d", i))
			if err := s.SendMsg(&out); err != nil {
				return err
			}
		}
		return nil
	}}},
}

func serve(port string, useTLS bool) {
	opts := []grpc.ServerOption{grpc.ForceServerCodec(rawCodec{})}
	if useTLS {
		opts = append(opts, grpc.Creds(credentials.NewTLS(&tls.Config{Certificates: []tls.Certificate{cert()}})))
	}
	s := grpc.NewServer(opts...)
	s.RegisterService(&shop, struct{}{})
	l, err := net.Listen("tcp", "127.0.0.1:"+port)
	if err != nil {
		panic(err)
	}
	panic(s.Serve(l))
}

func client(addr string, n int, useTLS bool) {
	creds := insecure.NewCredentials()
	if useTLS {
		creds = credentials.NewTLS(&tls.Config{InsecureSkipVerify: true})
	}
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds),
		grpc.WithDefaultCallOptions(grpc.ForceCodec(rawCodec{}), grpc.MaxCallRecvMsgSize(64<<20)))
	if err != nil {
		panic(err)
	}
	defer conn.Close()
	ctx := context.Background()
	call := func(method string, req string) ([]byte, codes.Code) {
		in, out := []byte(req), []byte(nil)
		err := conn.Invoke(ctx, "/demo.Shop/"+method, &in, &out)
		return out, status.Code(err)
	}
	// One call first: the others then share its connection.
	if _, c := call("Get", "first"); c != codes.OK {
		panic(c)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	gets, blobs := 1, 0
	for i := 0; i < n; i++ {
		wg.Add(2)
		go func(i int) {
			defer wg.Done()
			if _, c := call("Get", fmt.Sprintf("id%d", i)); c == codes.OK {
				mu.Lock()
				gets++
				mu.Unlock()
			}
		}(i)
		go func() {
			defer wg.Done()
			if out, c := call("Blob", strconv.Itoa(blobSize)); c == codes.OK && len(out) == blobSize {
				mu.Lock()
				blobs++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	st, err := conn.NewStream(ctx, &grpc.StreamDesc{ServerStreams: true}, "/demo.Shop/List")
	if err != nil {
		panic(err)
	}
	in := []byte("all")
	if err := st.SendMsg(&in); err != nil {
		panic(err)
	}
	st.CloseSend()
	parts := 0
	for {
		var out []byte
		if err := st.RecvMsg(&out); err == io.EOF {
			break
		} else if err != nil {
			panic(err)
		}
		parts++
	}
	_, failed := call("Get", "fail")
	out, _ := json.Marshal(map[string]any{"pid": os.Getpid(), "gets": gets, "blobs": blobs, "parts": parts,
		"failed": int(failed)})
	fmt.Println(string(out))
}

func main() {
	useTLS := len(os.Args) > 3 && os.Args[len(os.Args)-1] == "tls"
	switch os.Args[1] {
	case "server":
		serve(os.Args[2], useTLS)
	case "client":
		n, _ := strconv.Atoi(os.Args[3])
		client(os.Args[2], n, useTLS)
	}
}
