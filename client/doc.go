// Package client is what a node embeds to join an allot pool: it beats, follows
// its assignment through pub/sub and beat replies, serves lock-free reads of the
// current config, keeps the last good assignment on disk, and shares each
// group's quota with the other holders.
package client
