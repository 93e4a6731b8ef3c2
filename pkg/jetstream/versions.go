package jetstream

import (
	"context"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"
)

// VersionsBucket maps each projection to the version readers use, e.g.
// history -> history_v2. A rebuild builds a new version beside the live one
// and switches this key when it has caught up; readers and projectors watch
// it and follow.
const VersionsBucket = "CHAT_PROJECTIONS"

// Versions is the registry of live projection versions.
type Versions struct {
	kv jetstream.KeyValue
}

// Versions opens the registry, creating it if needed.
func (l *Log) Versions(ctx context.Context, replicas int) (*Versions, error) {
	if replicas == 0 {
		replicas = 1
	}
	cfg := jetstream.KeyValueConfig{Bucket: VersionsBucket, Description: "jetchat live projection versions", History: 5, Storage: jetstream.FileStorage, Replicas: replicas}
	kv, err := retry(ctx, func(ctx context.Context) (jetstream.KeyValue, error) {
		kv, err := l.js.CreateKeyValue(ctx, cfg)
		if errors.Is(err, jetstream.ErrBucketExists) {
			return l.js.KeyValue(ctx, VersionsBucket)
		}
		return kv, err
	})
	if err != nil {
		return nil, fmt.Errorf("projection versions: %w", err)
	}
	return &Versions{kv: kv}, nil
}

// Live returns the projection's live version, or def if none was set yet
// (which it then records, so every reader agrees). It retries while the
// bucket cannot answer (a new R3 bucket electing its leader answers "no
// responders" for a moment), until ctx ends.
func (v *Versions) Live(ctx context.Context, projection, def string) (string, error) {
	e, err := retry(ctx, func(ctx context.Context) (jetstream.KeyValueEntry, error) {
		e, err := v.kv.Get(ctx, projection)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			return nil, nil
		}
		return e, err
	})
	if err != nil {
		return "", fmt.Errorf("live version: %w", err)
	}
	if e != nil {
		return string(e.Value()), nil
	}
	if _, err := retry(ctx, func(ctx context.Context) (uint64, error) {
		rev, err := v.kv.Create(ctx, projection, []byte(def))
		if errors.Is(err, jetstream.ErrKeyExists) {
			return 0, nil
		}
		return rev, err
	}); err != nil {
		return "", fmt.Errorf("record live version: %w", err)
	}
	return v.Live(ctx, projection, def)
}

// Switch makes version live if the live version is still from (compare and
// set: two rebuilds cannot both win).
func (v *Versions) Switch(ctx context.Context, projection, from, to string) error {
	e, err := v.kv.Get(ctx, projection)
	if err != nil {
		return fmt.Errorf("live version: %w", err)
	}
	if string(e.Value()) != from {
		return fmt.Errorf("live version of %s is %s, not %s: another rebuild switched it", projection, e.Value(), from)
	}
	if _, err := v.kv.Update(ctx, projection, []byte(to), e.Revision()); err != nil {
		return fmt.Errorf("switch %s to %s: %w", projection, to, err)
	}
	return nil
}

// Watch calls fn with the projection's live version now and after every
// switch, until ctx ends.
func (v *Versions) Watch(ctx context.Context, projection string, fn func(version string)) error {
	w, err := v.kv.Watch(ctx, projection)
	if err != nil {
		return fmt.Errorf("watch %s: %w", projection, err)
	}
	go func() {
		defer w.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case e, ok := <-w.Updates():
				if !ok {
					return
				}
				if e != nil && e.Operation() == jetstream.KeyValuePut {
					fn(string(e.Value()))
				}
			}
		}
	}()
	return nil
}
