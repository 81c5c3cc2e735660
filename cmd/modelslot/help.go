package main

import (
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// Help groups flags: those of every command that talks to the daemon
// (--server, --token, --app, --output...) are listed on the top-level
// help too, and the Azure flags get their own section, only on the
// commands that work on Azure.

const (
	// flagGroupKey annotates a flag with its help section.
	flagGroupKey = "modelslot/group"
	groupAzure   = "azure"
	// noAzureKey marks a command that refuses --platform azure, so its
	// help does not list the Azure flags it inherits.
	noAzureKey = "modelslot/no-azure"
)

func init() {
	cobra.AddTemplateFunc("flagGroup", flagGroup)
	cobra.AddTemplateFunc("azureFlags", azureFlagsHelp)
	cobra.AddTemplateFunc("rootGlobalFlags", rootGlobalFlags)
}

// markGroup puts the named flags of fs in a help section.
func markGroup(fs *pflag.FlagSet, group string, names ...string) {
	for _, n := range names {
		fs.SetAnnotation(n, flagGroupKey, []string{group})
	}
}

func groupOf(f *pflag.Flag) string {
	if g := f.Annotations[flagGroupKey]; len(g) > 0 {
		return g[0]
	}
	return ""
}

// flagGroup renders the visible flags of fs in group ("": no group).
func flagGroup(fs *pflag.FlagSet, group string) string {
	out := pflag.NewFlagSet("", pflag.ContinueOnError)
	fs.VisitAll(func(f *pflag.Flag) {
		if !f.Hidden && groupOf(f) == group {
			out.AddFlag(f)
		}
	})
	return strings.TrimRight(out.FlagUsages(), " \n")
}

// azureFlagsHelp renders the Azure flags a command takes, local or
// inherited ("" on commands that refuse Azure).
func azureFlagsHelp(cmd *cobra.Command) string {
	for c := cmd; c != nil; c = c.Parent() {
		if c.Annotations[noAzureKey] != "" {
			return ""
		}
	}
	all := pflag.NewFlagSet("", pflag.ContinueOnError)
	all.AddFlagSet(cmd.LocalFlags())
	all.AddFlagSet(cmd.InheritedFlags())
	return flagGroup(all, groupAzure)
}

// rootGlobalFlags lists, on the top-level help, the flags that every
// command managing slots and rollouts takes.
func rootGlobalFlags() string {
	var f clientFlags
	c := &cobra.Command{Use: "x"}
	f.register(c)
	return flagGroup(c.PersistentFlags(), "")
}

func noAzure(cmd *cobra.Command) *cobra.Command {
	if cmd.Annotations == nil {
		cmd.Annotations = map[string]string{}
	}
	cmd.Annotations[noAzureKey] = "yes"
	return cmd
}

const usageTemplate = `Usage:{{if .Runnable}}
  {{.UseLine}}{{end}}{{if .HasAvailableSubCommands}}
  {{.CommandPath}} [command]{{end}}{{if gt (len .Aliases) 0}}

Aliases:
  {{.NameAndAliases}}{{end}}{{if .HasExample}}

Examples:
{{.Example}}{{end}}{{if .HasAvailableSubCommands}}

Available Commands:{{range .Commands}}{{if (or .IsAvailableCommand (eq .Name "help"))}}
  {{rpad .Name .NamePadding }} {{.Short}}{{end}}{{end}}{{end}}{{$local := flagGroup .LocalFlags ""}}{{if $local}}

Flags:
{{$local}}{{end}}{{$global := flagGroup .InheritedFlags ""}}{{if $global}}

Global Flags:
{{$global}}{{end}}{{if not .HasParent}}

Global Flags (of every command that manages slots, traffic and rollouts):
{{rootGlobalFlags}}{{end}}{{$az := azureFlags .}}{{if $az}}

Azure Flags (with --platform azure; see docs/AZURE.md):
{{$az}}{{end}}{{if .HasAvailableSubCommands}}

Use "{{.CommandPath}} [command] --help" for more information about a command.{{end}}
`
