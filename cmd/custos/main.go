// Command custos is the production front end: it parses flags, prompts on the terminal and prints, and
// calls the flows in package ceremony, which hold all the logic. It links no card emulator.
//
// Invoked as age-plugin-yubikey (a link made by make install-age-plugin), it is custos's age plugin
// for the stock age CLI instead.
package main

import (
	"io"
	"os"
	"path/filepath"

	"github.com/custos-pki/custos/card"
	"github.com/custos-pki/custos/internal/hygiene"
)

func main() {
	if filepath.Base(os.Args[0]) == card.PluginBinary {
		os.Exit(runPlugin(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
	}
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

// run executes one command line and returns the exit status: 0 success, 1 failure, 2 usage or ambiguity.
func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	a := &app{stdin: stdin, stdout: stdout, stderr: stderr, openTTY: func() (*os.File, error) {
		return os.OpenFile("/dev/tty", os.O_RDWR, 0)
	}}
	return a.execute(args)
}

// runPlugin serves the age plugin protocol on the cards, through piv-go, one connection per card.
func runPlugin(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	hygiene.Apply() // the plugin handles PINs and file keys: the same process hygiene as custos
	return card.RunPlugin(args, stdin, stdout, stderr, os.Getenv, card.PIVOpener(os.Getenv))
}
