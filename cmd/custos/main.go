// Command custos is the production front end: it parses flags, prompts on the terminal and calls the
// flows in package ceremony. It holds no flow logic of its own.
package main

import "os"

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int { return 0 }
