// A Go net/http server whose handler for /work/<port>/<grpc port>/<id> makes one call on a
// pooled http.Client, a fan-out of two calls from new goroutines, all to
// 127.0.0.1:<port>/users/<id>-{a,b1,b2}, and one grpc-go unary call (demo.Shop/Get with
// <id>) on a ClientConn every request shares (one HTTP/2 connection, streams written by
// its writer goroutine), over TLS when GOFANOUT_GRPC_TLS is set. ROUTER picks the
// handler's router: mux (net/http's) or gin.
//
//	gofanout PORT [mux|gin]
package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"

	"github.com/gin-gonic/gin"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
)

var client = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}

// rawCodec sends the bytes as they are: no generated code needed.
type rawCodec struct{}

func (rawCodec) Marshal(v any) ([]byte, error) { return *(v.(*[]byte)), nil }
func (rawCodec) Unmarshal(data []byte, v any) error {
	*(v.(*[]byte)) = append([]byte(nil), data...)
	return nil
}
func (rawCodec) Name() string { return "proto" }

var (
	connsMu sync.Mutex
	conns   = map[string]*grpc.ClientConn{}
)

// shared is the one ClientConn for addr.
func shared(addr string) (*grpc.ClientConn, error) {
	connsMu.Lock()
	defer connsMu.Unlock()
	if c, ok := conns[addr]; ok {
		return c, nil
	}
	creds := insecure.NewCredentials()
	if os.Getenv("GOFANOUT_GRPC_TLS") != "" { // gogrpc's self-signed certificate
		creds = credentials.NewTLS(&tls.Config{InsecureSkipVerify: true})
	}
	c, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds),
		grpc.WithDefaultCallOptions(grpc.ForceCodec(rawCodec{})))
	if err == nil {
		conns[addr] = c
	}
	return c, err
}

func get(url string) error {
	resp, err := client.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, err = io.Copy(io.Discard, resp.Body)
	return err
}

func unary(ctx context.Context, grpcPort, id string) error {
	conn, err := shared("127.0.0.1:" + grpcPort)
	if err != nil {
		return err
	}
	in, out := []byte(id), []byte(nil)
	return conn.Invoke(ctx, "/demo.Shop/Get", &in, &out)
}

// work makes the request's calls; the error of the first that failed.
func work(ctx context.Context, rest string) error {
	parts := strings.SplitN(rest, "/", 3)
	if len(parts) != 3 {
		return fmt.Errorf("want /work/<port>/<grpc port>/<id>")
	}
	port, grpcPort, id := parts[0], parts[1], parts[2]
	base := fmt.Sprintf("http://127.0.0.1:%s/users/%s-", port, id)
	errs := make([]error, 4)
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
	errs[3] = unary(ctx, grpcPort, id)
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

func main() {
	router := "mux"
	if len(os.Args) > 2 {
		router = os.Args[2]
	}
	var h http.Handler
	switch router {
	case "mux":
		m := http.NewServeMux()
		m.HandleFunc("/work/", func(w http.ResponseWriter, r *http.Request) {
			if err := work(r.Context(), strings.TrimPrefix(r.URL.Path, "/work/")); err != nil {
				http.Error(w, err.Error(), http.StatusBadGateway)
				return
			}
			io.WriteString(w, "ok\n")
		})
		h = m
	case "gin":
		gin.SetMode(gin.ReleaseMode)
		g := gin.New()
		g.GET("/work/*rest", func(c *gin.Context) {
			if err := work(c.Request.Context(), strings.TrimPrefix(c.Param("rest"), "/")); err != nil {
				c.String(http.StatusBadGateway, err.Error())
				return
			}
			c.String(http.StatusOK, "ok\n")
		})
		h = g
	default:
		fmt.Fprintln(os.Stderr, "router: mux or gin")
		os.Exit(2)
	}
	if err := http.ListenAndServe("127.0.0.1:"+os.Args[1], h); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
