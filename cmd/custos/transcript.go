package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/custos-pki/custos/ceremony"
)

func (a *app) transcriptCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "transcript", Short: "Verify records and their transcripts"}
	cmd.AddCommand(a.transcriptVerifyCmd(), a.transcriptRenderCmd())
	return cmd
}

func (a *app) transcriptVerifyCmd() *cobra.Command {
	var expectSeal string
	var receipts []string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "verify DIR... [--expect-seal SEAL] [--receipt FILE...]",
		Short: "Check records: transcript chains, seals, files, signatures and the links between them",
		Long: `Check each record directory: every transcript line chained to the one before, the seal covering every
file of the record, and every signature valid (the manifest key's, and each card's under the signing key the
manifest pins). Records given together must link, each to the seal of the one before, in the order given.
--expect-seal pins the last record's seal from the minutes. --receipt checks health-check receipts against
the records. The first bad line or file is named.`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				return usageError{fmt.Errorf("give at least one record directory")}
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			records, err := ceremony.VerifyRecords(args, expectSeal)
			if err != nil {
				return err
			}
			for _, r := range receipts {
				if err := ceremony.VerifyReceipt(r, records); err != nil {
					return err
				}
			}
			if asJSON {
				return a.printJSON(map[string]any{"records": records, "receipts": receipts})
			}
			for _, r := range records {
				fmt.Fprintf(a.stdout, "%s: %s record %s, %s, sealed %s, signed by %v\n", r.Dir, r.Flow, r.RecordID, r.Outcome, r.Seal, r.Signers)
			}
			for _, r := range receipts {
				fmt.Fprintf(a.stdout, "%s: receipt verified\n", r)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&expectSeal, "expect-seal", "", "the last record's seal from the minutes")
	cmd.Flags().StringArrayVar(&receipts, "receipt", nil, "a health-check receipt to verify (repeatable)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

func (a *app) transcriptRenderCmd() *cobra.Command {
	var out string
	cmd := &cobra.Command{
		Use:   "render DIR -o report.md",
		Short: "Render a verified record as a report for signatures",
		Long: `Verify a record and render it as Markdown: the step table with the Baseline Requirements and WebTrust
items each step evidences, the deviations, and signature lines for the operator, each custodian and each
witness. Flows write the same report as report.md into their record.`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if out == "" {
				return usageError{fmt.Errorf("-o report.md is required")}
			}
			vr, err := ceremony.VerifyRecord(args[0])
			if err != nil {
				return err
			}
			if err := ceremony.WriteReport(vr, out); err != nil {
				return err
			}
			fmt.Fprintf(a.stdout, "%s: report of %s record %s\n", out, vr.Flow, vr.RecordID)
			return nil
		},
	}
	cmd.Flags().StringVarP(&out, "output", "o", "", "where to write the report (must not exist)")
	return cmd
}
