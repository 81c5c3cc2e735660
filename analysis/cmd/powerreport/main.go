// Command powerreport regenerates docs/POWER.md:
//
//	go run ./analysis/cmd/powerreport > docs/POWER.md
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/modelslot/modelslot/analysis"
)

func main() {
	var cfg analysis.PowerConfig
	flag.Int64Var(&cfg.Seed, "seed", 1, "simulation seed")
	flag.IntVar(&cfg.Rollouts, "rollouts", 200, "simulated rollouts per regression scenario")
	flag.IntVar(&cfg.AARollouts, "aa-rollouts", 3000, "simulated rollouts per A/A scenario")
	flag.IntVar(&cfg.Workers, "workers", 2, "goroutines")
	flag.Parse()
	if err := analysis.WritePowerReport(os.Stdout, cfg); err != nil {
		fmt.Fprintln(os.Stderr, "powerreport:", err)
		os.Exit(1)
	}
}
