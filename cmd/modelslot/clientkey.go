package main

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"

	"github.com/modelslot/modelslot"
	"github.com/spf13/cobra"
)

func init() { commands = append(commands, newClientKeyCmd) }

func newClientKeyCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "client-key",
		Short: "Client keys that may use the gateway (docs/SECURITY.md)",
	}
	var (
		apps []string
		rpm  float64
	)
	newCmd := &cobra.Command{
		Use:   "new NAME [--app APP]... [--rpm N]",
		Short: "Make a client key: prints the key once and the entry for the client keys file",
		Long: `Make a random client key (256 bits). The key is printed once, for the
client; the entry printed under it holds only its SHA-256, for the client keys
file (gateway.clientKeysFile, or --client-keys of serve) or the config's
gateway.clientKeys. The daemon re-reads the file when it changes and on SIGHUP.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			name := args[0]
			if name == "" || strings.ContainsAny(name, " \t\n:\"'#") {
				return modelslot.Errorf(modelslot.EINVALID, "client key name %q is not valid: use letters, digits, '-', '_' and '.'", name)
			}
			for _, a := range apps {
				if err := modelslot.ValidateName("app", a); err != nil {
					return err
				}
			}
			if rpm < 0 {
				return modelslot.Errorf(modelslot.EINVALID, "--rpm %g must not be negative", rpm)
			}
			raw := make([]byte, 32)
			if _, err := rand.Read(raw); err != nil {
				return err
			}
			key := "msk-" + hex.EncodeToString(raw)
			sum := sha256.Sum256([]byte(key))
			w := cmd.OutOrStdout()
			fmt.Fprintf(w, "key (shown once; give it to the client, as 'Authorization: Bearer <key>'):\n  %s\n", key)
			fmt.Fprintf(w, "entry for the client keys file (under clientKeys:):\n  - name: %s\n    sha256: %s\n", name, hex.EncodeToString(sum[:]))
			if len(apps) > 0 {
				fmt.Fprintf(w, "    apps: [%s]\n", strings.Join(apps, ", "))
			}
			if rpm > 0 {
				fmt.Fprintf(w, "    requestsPerMinute: %s\n", strconv.FormatFloat(rpm, 'g', -1, 64))
			}
			return nil
		},
	}
	newCmd.Flags().StringArrayVar(&apps, "app", nil, "an app the key may call (repeatable; default every app)")
	newCmd.Flags().Float64Var(&rpm, "rpm", 0, "requests per minute the key may send (default no limit)")
	cmd.AddCommand(newCmd)
	return cmd
}
