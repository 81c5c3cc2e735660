// Package modelslot holds the domain of modelslot: apps, slots, deployments,
// routing rules, swaps, rollouts and verdicts, the errors they return, and the
// interfaces between the parts (Platform, Store, MetricSource). It imports
// nothing from the rest of the module; every other package points inward.
package modelslot
