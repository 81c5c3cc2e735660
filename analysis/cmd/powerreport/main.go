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
	seed := flag.Int64("seed", 1, "simulation seed")
	flag.Parse()
	if err := analysis.WritePowerReport(os.Stdout, *seed); err != nil {
		fmt.Fprintln(os.Stderr, "powerreport:", err)
		os.Exit(1)
	}
}
