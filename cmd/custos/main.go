// Command custos is the production front end: it parses flags, prompts on the terminal and prints, and
// calls the flows in package ceremony, which hold all the logic. It links no card emulator.
package main

import (
	"io"
	"os"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

// run executes one command line and returns the exit status: 0 success, 1 failure, 2 usage or ambiguity.
func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	a := &app{stdin: stdin, stdout: stdout, stderr: stderr, openTTY: func() (*os.File, error) {
		return os.OpenFile("/dev/tty", os.O_RDWR, 0)
	}}
	return a.execute(args)
}
