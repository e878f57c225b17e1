//! Relay out: the queue runner that every host runs over the shared queue.
