package main

import (
	"strings"

	"github.com/modelslot/modelslot"
	"github.com/spf13/cobra"
)

// oneArg accepts exactly one argument; a missing one is named with an
// example ("swap: name the slot to swap into production, e.g. modelslot
// swap staging"), not cobra's "accepts 1 arg(s), received 0".
func oneArg(name, what, example string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		switch {
		case len(args) == 0:
			return modelslot.Errorf(modelslot.EINVALID, "%s: %s, e.g. %s", name, what, example)
		case len(args) > 1:
			return modelslot.Errorf(modelslot.EINVALID, "%s: one argument, got %d (%s): %s, e.g. %s", name, len(args), strings.Join(args, " "), what, example)
		}
		return nil
	}
}

// someArgs accepts one argument or more.
func someArgs(name, what, example string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) == 0 {
			return modelslot.Errorf(modelslot.EINVALID, "%s: %s, e.g. %s", name, what, example)
		}
		return nil
	}
}
