// Package pcsctest holds the tests that drive the virtual cards of package sim through the real
// PC/SC stack: a private pcscd with the vpcd driver, started once per test process by
// testenv.RunWithSim, and clients no one here wrote (piv-go, yubico-piv-tool, OpenSC, ykman). They
// live apart from package sim because the harness imports sim, and a test process has one sim.
package pcsctest
