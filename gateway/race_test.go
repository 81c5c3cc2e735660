//go:build race

package gateway

// raceEnabled: the race detector's shadow memory grows the process's
// resident size several times over what the gateway itself holds.
const raceEnabled = true
