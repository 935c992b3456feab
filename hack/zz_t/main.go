package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/yawp/persistence-operator/internal/migrations"
	"github.com/yawp/persistence-operator/internal/pgharness"
	"github.com/yawp/persistence-operator/internal/store"
	"github.com/yawp/persistence-operator/internal/store/storebench"
)

func main() {
	ctx := context.Background()
	srv, err := pgharness.Start(ctx, pgharness.Options{Fsync: true})
	if err != nil {
		panic(err)
	}
	defer srv.Stop()
	dsn, _ := srv.CreateDatabase(ctx, "b")
	pcfg, _ := pgxpool.ParseConfig(dsn)
	pcfg.MaxConns = 16
	pool, _ := pgxpool.NewWithConfig(ctx, pcfg)
	migrations.Up(ctx, pool)
	eng, err := store.Open(ctx, store.Config{Pool: pool, DSN: dsn, Shard: 0, Shards: 1, Rollout: "b/b", Holder: "b", Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		panic(err)
	}
	st, err := storebench.Run(ctx, eng, os.Args[1], "x", 64, 5*time.Second, 0)
	fmt.Println(st.PerSecond(), st.Saves, st.Batches, err)
	fmt.Println("per batch: rt1", store.Timing[0]/time.Duration(st.Batches), "apply", store.Timing[1]/time.Duration(st.Batches), "rt2+commit", store.Timing[2]/time.Duration(st.Batches))
	eng.Close()
}
