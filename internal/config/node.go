package config

// DefaultNetworkNode is the network node drift dev and a default worker
// stand for.
const DefaultNetworkNode = "network"

// NodeQueue is the queue of activities that act on one network node (its
// gateway pairs); the worker on that node polls it.
func NodeQueue(node string) string { return TaskQueue + ".node." + node }
