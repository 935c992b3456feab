package main

import (
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/yawp/persistence-operator/internal/yjs"
)

func newDocCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "doc",
		Short: "Inspect Yjs documents and updates",
	}
	cmd.AddCommand(newDocTextCommand(), newDocInspectCommand(), newDocMergeCommand())
	return cmd
}

func readUpdate(path string) ([]byte, error) {
	if path == "-" {
		return io.ReadAll(os.Stdin)
	}
	return os.ReadFile(path)
}

func newDocTextCommand() *cobra.Command {
	var typeName string
	c := &cobra.Command{
		Use:   "text [--type NAME] UPDATE...",
		Short: "Apply v1 update files in order and print a text type",
		Long: `Applies the given Yjs v1 update files in the order given (an update whose
dependencies arrive in a later file waits for them) and prints the text of the
named root type: by default the only root type holding text, else "t". Exits
non-zero when operations are still pending at the end.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			doc := yjs.NewDoc(yjs.Options{})
			for _, p := range args {
				u, err := readUpdate(p)
				if err != nil {
					return err
				}
				if err := doc.ApplyUpdate(u); err != nil {
					return fmt.Errorf("%s: %w", p, err)
				}
			}
			if err := doc.PendingError(); err != nil {
				return fmt.Errorf("%w (supply the missing updates)", err)
			}
			name := typeName
			if name == "" {
				name = defaultTextType(doc)
			}
			fmt.Fprint(cmd.OutOrStdout(), doc.GetText(name).String())
			if !strings.HasSuffix(doc.GetText(name).String(), "\n") {
				fmt.Fprintln(cmd.OutOrStdout())
			}
			return nil
		},
	}
	c.Flags().StringVar(&typeName, "type", "", "root type to print (default: the only text type, else \"t\")")
	return c
}

// defaultTextType picks the only root type whose sequence holds text.
func defaultTextType(doc *yjs.Doc) string {
	var found []string
	for _, n := range doc.RootNames() {
		if doc.Get(n).HoldsText() {
			found = append(found, n)
		}
	}
	if len(found) == 1 {
		return found[0]
	}
	return "t"
}

type clientInfo struct {
	Client  uint64      `json:"client"`
	Structs int         `json:"structs"`
	Ranges  []yjs.Range `json:"ranges"`
	Skipped []yjs.Range `json:"skipped,omitempty"`
}

type inspectOut struct {
	Bytes        int               `json:"bytes"`
	Clients      []clientInfo      `json:"clients"`
	DeleteSet    []clientDels      `json:"deleteSet"`
	ContentTypes map[string]int    `json:"contentTypes"`
	RootTypes    []string          `json:"rootTypes"`
	StateVector  map[string]uint64 `json:"stateVector"`
}

type clientDels struct {
	Client uint64      `json:"client"`
	Ranges []yjs.Range `json:"ranges"`
}

func addRange(rs []yjs.Range, clock, n uint64) []yjs.Range {
	if k := len(rs); k > 0 && rs[k-1].End() == clock {
		rs[k-1].Len += n
		return rs
	}
	return append(rs, yjs.Range{Clock: clock, Len: n})
}

func newDocInspectCommand() *cobra.Command {
	var output string
	c := &cobra.Command{
		Use:   "inspect UPDATE",
		Short: "Print an update's clients, clock ranges, delete set and content types",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			u, err := readUpdate(args[0])
			if err != nil {
				return err
			}
			dec, err := yjs.DecodeUpdate(u)
			if err != nil {
				return fmt.Errorf("%s: %w", args[0], err)
			}
			out := inspectOut{Bytes: len(u), ContentTypes: map[string]int{}, StateVector: map[string]uint64{}}
			byClient := map[uint64]*clientInfo{}
			var order []uint64
			roots := map[string]bool{}
			for _, s := range dec.Structs {
				ci := byClient[s.ID.Client]
				if ci == nil {
					ci = &clientInfo{Client: s.ID.Client}
					byClient[s.ID.Client] = ci
					order = append(order, s.ID.Client)
				}
				if s.IsSkip() {
					ci.Skipped = addRange(ci.Skipped, s.ID.Clock, uint64(s.Len))
					continue
				}
				ci.Structs++
				ci.Ranges = addRange(ci.Ranges, s.ID.Clock, uint64(s.Len))
				name := yjs.ContentKindName(s.Ref())
				if ct, ok := s.Content.(*yjs.ContentType); ok {
					name = "Type:" + ct.Type.Kind.String()
				}
				out.ContentTypes[name]++
				if k, ok := s.ParentKey(); ok {
					roots[k] = true
				}
			}
			for _, c := range order {
				out.Clients = append(out.Clients, *byClient[c])
			}
			var dclients []uint64
			for c := range dec.DeleteSet {
				dclients = append(dclients, c)
			}
			sort.Slice(dclients, func(i, j int) bool { return dclients[i] < dclients[j] })
			for _, c := range dclients {
				out.DeleteSet = append(out.DeleteSet, clientDels{c, dec.DeleteSet[c]})
			}
			for r := range roots {
				out.RootTypes = append(out.RootTypes, r)
			}
			sort.Strings(out.RootTypes)
			svb, err := yjs.EncodeStateVectorFromUpdate(u)
			if err != nil {
				return err
			}
			sv, err := yjs.DecodeStateVector(svb)
			if err != nil {
				return err
			}
			for c, k := range sv {
				out.StateVector[fmt.Sprint(c)] = k
			}
			w := cmd.OutOrStdout()
			switch output {
			case "json":
				return printJSON(w, out)
			case "table", "":
				return printInspectTable(w, out)
			default:
				return usageError(fmt.Errorf("unknown output format %q (table or json)", output))
			}
		},
	}
	c.Flags().StringVarP(&output, "output", "o", "table", "output format: table or json")
	return c
}

func fmtRanges(rs []yjs.Range) string {
	if len(rs) == 0 {
		return "-"
	}
	parts := make([]string, len(rs))
	for i, r := range rs {
		parts[i] = fmt.Sprintf("[%d,%d)", r.Clock, r.End())
	}
	return strings.Join(parts, " ")
}

func printInspectTable(w io.Writer, out inspectOut) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "update\t%d bytes\n", out.Bytes)
	fmt.Fprintf(tw, "root types\t%s\n\n", strings.Join(out.RootTypes, ", "))
	fmt.Fprintln(tw, "CLIENT\tSTRUCTS\tCLOCK RANGES\tSKIPPED")
	for _, c := range out.Clients {
		fmt.Fprintf(tw, "%d\t%d\t%s\t%s\n", c.Client, c.Structs, fmtRanges(c.Ranges), fmtRanges(c.Skipped))
	}
	fmt.Fprintln(tw, "\nDELETED CLIENT\tRANGES")
	for _, d := range out.DeleteSet {
		fmt.Fprintf(tw, "%d\t%s\n", d.Client, fmtRanges(d.Ranges))
	}
	fmt.Fprintln(tw, "\nCONTENT\tSTRUCTS")
	var kinds []string
	for k := range out.ContentTypes {
		kinds = append(kinds, k)
	}
	sort.Strings(kinds)
	for _, k := range kinds {
		fmt.Fprintf(tw, "%s\t%d\n", k, out.ContentTypes[k])
	}
	return tw.Flush()
}

func newDocMergeCommand() *cobra.Command {
	var outPath string
	c := &cobra.Command{
		Use:   "merge -o OUT UPDATE...",
		Short: "Merge v1 update files into one update without loading a document",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var ups [][]byte
			for _, p := range args {
				u, err := readUpdate(p)
				if err != nil {
					return err
				}
				ups = append(ups, u)
			}
			m, err := yjs.MergeUpdates(ups...)
			if err != nil {
				return err
			}
			if outPath == "" || outPath == "-" {
				_, err = cmd.OutOrStdout().Write(m)
				return err
			}
			return os.WriteFile(outPath, m, 0o644)
		},
	}
	c.Flags().StringVarP(&outPath, "output", "o", "-", "file to write the merged update to (- for stdout)")
	return c
}
