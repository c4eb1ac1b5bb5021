// A database client in Go for the e2e tests: pgx v5 (statement cache, batches) against
// PostgreSQL, go-redis v9 (pipelines, transactions) against Redis.
// Usage: godb pgx <port> | godb goredis <port>
//
//	godb serve <http port> <pg port> <redis port> <https port>: a net/http server whose
//	/req/{id} runs a pgxpool query, a database/sql query (pgx's stdlib driver), a go-redis
//	command and an HTTP/1.1-over-TLS GET, each naming {id}; /bg/{id} has a goroutine
//	started at start-up (serving no request) run a query and a command naming {id}.
package main

import (
	"context"
	"crypto/tls"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"regexp"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	_ "github.com/jackc/pgx/v5/stdlib"
	"github.com/redis/go-redis/v9"
)

func main() {
	if len(os.Args) == 6 && os.Args[1] == "serve" {
		if err := serve(os.Args[2], os.Args[3], os.Args[4], os.Args[5]); err != nil {
			fmt.Fprintln(os.Stderr, "godb:", err)
			os.Exit(1)
		}
		return
	}
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: godb pgx|goredis <port>")
		os.Exit(2)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var err error
	switch os.Args[1] {
	case "pgx":
		err = runPgx(ctx, os.Args[2])
	case "goredis":
		err = runGoRedis(ctx, os.Args[2])
	default:
		err = fmt.Errorf("unknown mode %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "godb:", err)
		os.Exit(1)
	}
	fmt.Println("done")
}

func runPgx(ctx context.Context, port string) error {
	conn, err := pgx.Connect(ctx, "postgres://postgres@127.0.0.1:"+port+"/postgres?sslmode=disable")
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE TABLE items (id int primary key, name text)"); err != nil {
		return err
	}
	// The statement cache prepares once (a named statement), then executes by name.
	for i := 1; i <= 3; i++ {
		if _, err := conn.Exec(ctx, "INSERT INTO items VALUES ($1, $2)", i, fmt.Sprintf("secret-%d", i)); err != nil {
			return err
		}
	}
	var name string
	if err := conn.QueryRow(ctx, "SELECT name FROM items WHERE id = $1", 2).Scan(&name); err != nil {
		return err
	}
	// A batch: one pipeline of three statements before one Sync.
	b := &pgx.Batch{}
	b.Queue("SELECT count(*) FROM items")
	b.Queue("UPDATE items SET name = $1 WHERE id = $2", "renamed", 1)
	b.Queue("DELETE FROM items WHERE id = $1", 3)
	if err := conn.SendBatch(ctx, b).Close(); err != nil {
		return err
	}
	// A failing batch: the server aborts the rest of the pipeline after the error.
	b = &pgx.Batch{}
	b.Queue("SELECT 1/0")
	b.Queue("SELECT name FROM items WHERE id = $1", 1)
	if err := conn.SendBatch(ctx, b).Close(); err == nil {
		return errors.New("the failing batch did not fail")
	}
	return nil
}

func runGoRedis(ctx context.Context, port string) error {
	c := redis.NewClient(&redis.Options{Addr: "127.0.0.1:" + port, DB: 2, Protocol: 3})
	defer c.Close()
	if err := c.Set(ctx, "user:1", "secret-value", 0).Err(); err != nil {
		return err
	}
	if err := c.Get(ctx, "user:1").Err(); err != nil {
		return err
	}
	if err := c.HSet(ctx, "h:1", "f", "secret-field").Err(); err != nil {
		return err
	}
	if err := c.HGetAll(ctx, "h:1").Err(); err != nil {
		return err
	}
	// A pipeline: three commands in one write.
	if _, err := c.Pipelined(ctx, func(p redis.Pipeliner) error {
		p.Incr(ctx, "counter")
		p.Incr(ctx, "counter")
		p.Get(ctx, "counter")
		return nil
	}); err != nil {
		return err
	}
	// A transaction: MULTI ... EXEC.
	if _, err := c.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.Set(ctx, "tx:a", "1", 0)
		p.Set(ctx, "tx:b", "2", 0)
		return nil
	}); err != nil {
		return err
	}
	// A wrong-type error.
	if err := c.LPush(ctx, "user:1", "x").Err(); err == nil {
		return errors.New("LPUSH on a string did not fail")
	}
	return nil
}

// Request ids become SQL identifiers: letters, digits and underscores only.
var idRe = regexp.MustCompile(`^[a-z0-9_]+$`)

func serve(httpPort, pgPort, redisPort, httpsPort string) error {
	ctx := context.Background()
	dsn := "postgres://postgres@127.0.0.1:" + pgPort + "/postgres?sslmode=disable"
	pool, err := pgxpool.New(ctx, dsn)
	if err != nil {
		return err
	}
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		return err
	}
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:" + redisPort})
	// HTTP/1.1 only: a TLS config of its own and no HTTP/2 upgrade. A connection per
	// call: one opened before the receiver probed this program would stay unreadable.
	httpsc := &http.Client{Transport: &http.Transport{
		DisableKeepAlives: true,
		TLSClientConfig:   &tls.Config{InsecureSkipVerify: true},
		TLSNextProto:      map[string]func(string, *tls.Conn) http.RoundTripper{},
	}}
	// At start-up, in no request.
	if err := calls(ctx, pool, db, rdb, "startup"); err != nil {
		return err
	}
	// A goroutine of its own, serving no request, on the same pools.
	type job struct {
		id   string
		done chan error
	}
	jobs := make(chan job)
	go func() {
		for j := range jobs {
			j.done <- calls(context.Background(), pool, db, rdb, j.id)
		}
	}()
	http.HandleFunc("/bg/{id}", func(w http.ResponseWriter, r *http.Request) {
		id := r.PathValue("id")
		if !idRe.MatchString(id) {
			http.Error(w, "bad id", 400)
			return
		}
		j := job{id, make(chan error, 1)}
		jobs <- j
		if err := <-j.done; err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	http.HandleFunc("/req/{id}", func(w http.ResponseWriter, r *http.Request) {
		id := r.PathValue("id")
		if !idRe.MatchString(id) {
			http.Error(w, "bad id", 400)
			return
		}
		if err := calls(r.Context(), pool, db, rdb, id); err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		resp, err := httpsc.Get("https://127.0.0.1:" + httpsPort + "/users/" + id)
		if err != nil {
			http.Error(w, err.Error(), 502)
			return
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		fmt.Fprintln(w, "ok")
	})
	return http.ListenAndServe("127.0.0.1:"+httpPort, nil)
}

// One query by each client, naming id: a column alias (literals are sanitized away) and
// a redis key.
func calls(ctx context.Context, pool *pgxpool.Pool, db *sql.DB, rdb *redis.Client, id string) error {
	var n int
	if err := pool.QueryRow(ctx, "SELECT 1 AS pool_"+id).Scan(&n); err != nil {
		return fmt.Errorf("pgxpool: %w", err)
	}
	if err := db.QueryRowContext(ctx, "SELECT 2 AS sql_"+id).Scan(&n); err != nil {
		return fmt.Errorf("database/sql: %w", err)
	}
	if err := rdb.Set(ctx, "req:"+id, "v", 0).Err(); err != nil {
		return fmt.Errorf("go-redis: %w", err)
	}
	return nil
}
