package client

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"time"
)

// cacheFormat and cacheVersion identify a cache file; any other file in
// its place is ignored.
const (
	cacheFormat  = "allot-client-cache"
	cacheVersion = 1
)

// cacheFile is the on-disk form of the last good assignment.
type cacheFile struct {
	Format     string     `json:"format"`
	Version    int        `json:"version"`
	Namespace  string     `json:"namespace"`
	Node       string     `json:"node"`
	Saved      time.Time  `json:"saved"`
	Assignment Assignment `json:"assignment"`
}

// cachePath is dir/<namespace>-<node>.json (the node ID path-escaped).
func (c *Client) cachePath() string {
	return filepath.Join(c.o.cacheDir, c.o.namespace+"-"+url.PathEscape(c.o.nodeID)+".json")
}

// saveCache writes a atomically (temp file + rename, mode 0600: config
// values are secrets). A failure is logged: the cache is a convenience.
func (c *Client) saveCache(a Assignment) {
	if c.o.cacheDir == "" {
		return
	}
	if err := c.writeCache(a); err != nil {
		c.log.Warn("allot: cannot write assignment cache", "path", c.cachePath(), "err", err)
	}
}

func (c *Client) writeCache(a Assignment) error {
	data, err := json.Marshal(cacheFile{
		Format: cacheFormat, Version: cacheVersion,
		Namespace: c.o.namespace, Node: c.o.nodeID,
		Saved: time.Now().UTC(), Assignment: a,
	})
	if err != nil {
		return fmt.Errorf("client: encode cache: %w", err)
	}
	if err := os.MkdirAll(c.o.cacheDir, 0o700); err != nil {
		return fmt.Errorf("client: cache dir: %w", err)
	}
	f, err := os.CreateTemp(c.o.cacheDir, ".allot-cache-*.tmp")
	if err != nil {
		return fmt.Errorf("client: cache temp file: %w", err)
	}
	tmp := f.Name()
	defer func() { _ = os.Remove(tmp) }() // no-op after the rename
	if err := f.Chmod(0o600); err != nil {
		_ = f.Close()
		return fmt.Errorf("client: cache chmod: %w", err)
	}
	if _, err := f.Write(data); err != nil {
		_ = f.Close()
		return fmt.Errorf("client: cache write: %w", err)
	}
	if err := f.Sync(); err != nil {
		_ = f.Close()
		return fmt.Errorf("client: cache sync: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("client: cache close: %w", err)
	}
	if err := os.Rename(tmp, c.cachePath()); err != nil {
		return fmt.Errorf("client: cache rename: %w", err)
	}
	return nil
}

// loadCache reads the cached assignment. A missing file is silent; a
// corrupt file, another format or another node's file is logged and
// ignored.
func (c *Client) loadCache() (Assignment, bool) {
	if c.o.cacheDir == "" {
		return Assignment{}, false
	}
	path := c.cachePath()
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return Assignment{}, false
	}
	if err != nil {
		c.log.Warn("allot: cannot read assignment cache; ignored", "path", path, "err", err)
		return Assignment{}, false
	}
	var f cacheFile
	if err := json.Unmarshal(data, &f); err != nil {
		c.log.Warn("allot: corrupt assignment cache ignored", "path", path, "err", err)
		return Assignment{}, false
	}
	if f.Format != cacheFormat || f.Version != cacheVersion || f.Namespace != c.o.namespace || f.Node != c.o.nodeID {
		c.log.Warn("allot: assignment cache of another format or node ignored", "path", path,
			"format", f.Format, "version", f.Version, "cache_ns", f.Namespace, "cache_node", f.Node)
		return Assignment{}, false
	}
	return f.Assignment, true
}
