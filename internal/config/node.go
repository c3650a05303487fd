package config

// DefaultNetworkNode is the network node drift dev and a default worker
// stand for.
const DefaultNetworkNode = "network"
