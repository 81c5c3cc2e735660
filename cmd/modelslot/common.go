package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/modelslot/modelslot"
	"github.com/modelslot/modelslot/api"
	"github.com/modelslot/modelslot/client"
	"github.com/modelslot/modelslot/config"
	"github.com/spf13/cobra"
)

// clientFlags are the flags of every command that talks to a daemon.
type clientFlags struct {
	server string
	token  string
	data   string
	app    string
	output string
}

func (f *clientFlags) register(cmd *cobra.Command) {
	fl := cmd.PersistentFlags()
	fl.StringVar(&f.server, "server", "", "admin address of the daemon (default $MODELSLOT_SERVER or "+config.DefaultAdmin+")")
	fl.StringVar(&f.token, "token", "", "admin token (default $MODELSLOT_TOKEN, else read from <data>/admin.token)")
	fl.StringVar(&f.data, "data", "", "the daemon's data directory, to read the admin token from (default $MODELSLOT_DATA or "+config.DefaultData+")")
	fl.StringVar(&f.app, "app", "default", "app name")
	fl.StringVarP(&f.output, "output", "o", "table", "output format: table or json")
}

func (f *clientFlags) client() (*client.Client, error) {
	if f.output != "table" && f.output != "json" {
		return nil, modelslot.Errorf(modelslot.EINVALID, "--output %q is not valid: use table or json", f.output)
	}
	server := firstNonEmpty(f.server, os.Getenv("MODELSLOT_SERVER"), config.DefaultAdmin)
	token := firstNonEmpty(f.token, os.Getenv("MODELSLOT_TOKEN"))
	if token == "" {
		dir := firstNonEmpty(f.data, os.Getenv("MODELSLOT_DATA"), config.DefaultData)
		b, err := os.ReadFile(filepath.Join(dir, api.TokenFile))
		if err != nil {
			return nil, modelslot.Errorf(modelslot.EUNAUTHORIZED, "no admin token: pass --token or set MODELSLOT_TOKEN, or point --data at the daemon's data directory (could not read %s: %v)", filepath.Join(dir, api.TokenFile), unwrapPathErr(err))
		}
		token = strings.TrimSpace(string(b))
	}
	c := client.New(server, token)
	c.Actor = "cli"
	if u, err := user.Current(); err == nil {
		c.Actor = "cli:" + u.Username
	}
	return c, nil
}

func unwrapPathErr(err error) error {
	if pe, ok := err.(*os.PathError); ok {
		return pe.Err
	}
	return err
}

func firstNonEmpty(vs ...string) string {
	for _, v := range vs {
		if v != "" {
			return v
		}
	}
	return ""
}

func (f *clientFlags) json() bool { return f.output == "json" }

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func newTable(w io.Writer) *tabwriter.Writer {
	return tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
}

// parseAssignments reads "staging=10 canary=5" into rules.
func parseAssignments(args []string, what string) ([]modelslot.TrafficRule, error) {
	var rules []modelslot.TrafficRule
	for _, a := range args {
		for _, part := range strings.Split(a, ",") {
			if part == "" {
				continue
			}
			name, val, ok := strings.Cut(part, "=")
			if !ok || name == "" {
				return nil, modelslot.Errorf(modelslot.EINVALID, "%s: %q is not SLOT=PERCENT, e.g. staging=10", what, part)
			}
			p, err := strconv.ParseFloat(strings.TrimSuffix(val, "%"), 64)
			if err != nil {
				return nil, modelslot.Errorf(modelslot.EINVALID, "%s: %q: %q is not a number", what, part, val)
			}
			rules = append(rules, modelslot.TrafficRule{Slot: name, Percent: p})
		}
	}
	return rules, nil
}

// parseKV reads repeated K=V flags.
func parseKV(kvs []string, flag string) (map[string]string, error) {
	if len(kvs) == 0 {
		return nil, nil
	}
	m := map[string]string{}
	for _, kv := range kvs {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, modelslot.Errorf(modelslot.EINVALID, "--%s %q is not KEY=VALUE", flag, kv)
		}
		m[k] = v
	}
	return m, nil
}

func pct(p float64) string { return strconv.FormatFloat(p, 'f', -1, 64) + "%" }

func println(w io.Writer, format string, args ...any) { fmt.Fprintf(w, format+"\n", args...) }
