// goamqp: the Go RabbitMQ client of the e2e tests (github.com/rabbitmq/amqp091-go).
//
//	goamqp publish PORT TRACEPARENT   declare queue go.tasks, publish two messages to it (one
//	                                  with message-id and a traceparent header) through the
//	                                  default exchange, one in confirm mode, then exit
//	goamqp consume PORT               consume go.tasks with manual acks: ack the first, nack
//	                                  the second (no requeue); then basic.get on an empty queue
package main

import (
	"context"
	"fmt"
	"os"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

func die(what string, err error) {
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", what, err)
		os.Exit(1)
	}
}

func main() {
	if len(os.Args) < 3 {
		fmt.Fprintln(os.Stderr, "usage: goamqp publish|consume PORT [TRACEPARENT]")
		os.Exit(2)
	}
	conn, err := amqp.Dial("amqp://guest:guest@127.0.0.1:" + os.Args[2] + "/")
	die("dial", err)
	defer conn.Close()
	ch, err := conn.Channel()
	die("channel", err)
	_, err = ch.QueueDeclare("go.tasks", false, false, false, false, nil)
	die("declare", err)
	_, err = ch.QueueDeclare("go.empty", false, false, false, false, nil)
	die("declare", err)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	switch os.Args[1] {
	case "publish":
		err = ch.PublishWithContext(ctx, "", "go.tasks", false, false, amqp.Publishing{
			MessageId: "go-1",
			Headers:   amqp.Table{"traceparent": os.Args[3], "app": "go"},
			Body:      []byte("hello from go"),
		})
		die("publish", err)
		die("confirm", ch.Confirm(false))
		dc, err := ch.PublishWithDeferredConfirmWithContext(ctx, "", "go.tasks", false, false,
			amqp.Publishing{Body: []byte("confirmed")})
		die("publish", err)
		ok, err := dc.WaitContext(ctx)
		die("wait confirm", err)
		fmt.Println("published", ok)
	case "consume":
		die("qos", ch.Qos(1, 0, false))
		msgs, err := ch.Consume("go.tasks", "", false, false, false, false, nil)
		die("consume", err)
		for i := 0; i < 2; i++ {
			select {
			case m := <-msgs:
				if i == 0 {
					die("ack", m.Ack(false))
				} else {
					die("nack", m.Nack(false, false))
				}
				fmt.Println("got", m.DeliveryTag, m.MessageId, len(m.Body))
			case <-ctx.Done():
				die("consume", ctx.Err())
			}
		}
		_, ok, err := ch.Get("go.empty", true)
		die("get", err)
		fmt.Println("empty", !ok)
	}
	die("close", ch.Close())
}
