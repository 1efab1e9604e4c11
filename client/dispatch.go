package client

import "slices"

// dispatch calls the OnChange callbacks for every queued change, in order,
// on this one goroutine. After the callbacks of a change return, the
// groups it dropped stop being reported as held, and a beat is sent at once
// so a waiting node gets a released capped group without delay. On stop it
// delivers what is still queued, then returns.
func (c *Client) dispatch() {
	defer close(c.dispatchDone)
	for {
		batch, listeners := c.takeQueue()
		if len(batch) == 0 {
			select {
			case <-c.wakeDispatch:
				continue
			case <-c.dispatchStop:
				if batch, listeners = c.takeQueue(); len(batch) == 0 {
					return
				}
			}
		}
		for _, ch := range batch {
			for _, fn := range listeners {
				c.call(fn, ch)
			}
			c.mu.Lock()
			released := slices.ContainsFunc(c.delivered, func(g string) bool { return !ch.new.Holds(g) })
			c.delivered = ch.new.Names()
			c.deliveredCapped = c.deliveredCapped[:0]
			for _, g := range ch.new.Groups {
				if g.MaxNodes > 0 {
					c.deliveredCapped = append(c.deliveredCapped, g.Name)
				}
			}
			for g := range c.voided {
				if !slices.Contains(c.delivered, g) {
					delete(c.voided, g) // the drop is delivered
				}
			}
			c.mu.Unlock()
			if released {
				signal(c.wakeBeat)
			}
		}
	}
}

func (c *Client) takeQueue() ([]change, []func(old, new Assignment)) {
	c.mu.Lock()
	defer c.mu.Unlock()
	q := c.queue
	c.queue = nil
	return q, c.listeners
}

// call runs one callback; a panic is logged, not fatal to the dispatcher.
func (c *Client) call(fn func(old, new Assignment), ch change) {
	defer func() {
		if r := recover(); r != nil {
			c.log.Error("allot: OnChange callback panicked", "panic", r, "epoch", ch.new.Epoch)
		}
	}()
	fn(ch.old, ch.new)
}
