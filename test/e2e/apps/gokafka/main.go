// gokafka: the Go Kafka client of the e2e tests (github.com/twmb/franz-go/pkg/kgo).
//
//	gokafka BOOTSTRAP TOPIC PARTITION N GROUP
//
// Producer (client id e2e-go-producer): N records to TOPIC/PARTITION in one Produce request
// (the records are buffered within the linger, then flushed), then one more record in a
// second request; prints `sent PARTITION OFFSET` per record. Consumer (client id
// e2e-go-consumer, consumer group GROUP, from the earliest offset, no auto-commit): polls until
// it has the N+1 records of PARTITION, commits, leaves the group; prints `consumed PARTITION
// OFFSET` per record.
package main

import (
	"context"
	"fmt"
	"os"
	"sort"
	"strconv"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

func die(what string, err error) {
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", what, err)
		os.Exit(1)
	}
}

func main() {
	if len(os.Args) != 6 {
		fmt.Fprintln(os.Stderr, "usage: gokafka BOOTSTRAP TOPIC PARTITION N GROUP")
		os.Exit(2)
	}
	bootstrap, topic, group := os.Args[1], os.Args[2], os.Args[5]
	part, err := strconv.Atoi(os.Args[3])
	die("partition", err)
	n, err := strconv.Atoi(os.Args[4])
	die("count", err)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	prod, err := kgo.NewClient(kgo.SeedBrokers(bootstrap), kgo.ClientID("e2e-go-producer"),
		kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.ProducerLinger(500*time.Millisecond),
		kgo.ProducerBatchCompression(kgo.NoCompression()))
	die("producer", err)
	var sent []int64
	produce := func(from, to int) {
		recs := make([]*kgo.Record, 0, to-from)
		for i := from; i < to; i++ {
			recs = append(recs, &kgo.Record{Topic: topic, Partition: int32(part), Key: []byte("k"),
				Value: []byte(fmt.Sprintf("shipment %d", i))})
		}
		for _, r := range prod.ProduceSync(ctx, recs...) {
			die("produce", r.Err)
			sent = append(sent, r.Record.Offset)
		}
	}
	produce(0, n)
	produce(n, n+1)
	prod.Close()
	for _, o := range sent {
		fmt.Println("sent", part, o)
	}

	cons, err := kgo.NewClient(kgo.SeedBrokers(bootstrap), kgo.ClientID("e2e-go-consumer"),
		kgo.ConsumerGroup(group), kgo.ConsumeTopics(topic), kgo.DisableAutoCommit(),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxWait(100*time.Millisecond))
	die("consumer", err)
	var got []int64
	for len(got) < n+1 {
		fs := cons.PollFetches(ctx)
		if ctx.Err() != nil {
			die("poll", ctx.Err())
		}
		fs.EachError(func(t string, p int32, err error) { die("fetch "+t, err) })
		fs.EachRecord(func(r *kgo.Record) {
			if r.Partition == int32(part) {
				got = append(got, r.Offset)
			}
		})
	}
	die("commit", cons.CommitUncommittedOffsets(ctx))
	cons.Close()
	sort.Slice(got, func(i, j int) bool { return got[i] < got[j] })
	for _, o := range got {
		fmt.Println("consumed", part, o)
	}
}
