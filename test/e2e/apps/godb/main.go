// A database client in Go for the e2e tests: pgx v5 (statement cache, batches) against
// PostgreSQL, go-redis v9 (pipelines, transactions) against Redis.
// Usage: godb pgx <port> | godb goredis <port>
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/redis/go-redis/v9"
)

func main() {
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
