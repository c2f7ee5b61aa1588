module github.com/custos-pki/custos

go 1.26.0

require (
	github.com/miekg/pkcs11 v1.1.2
	golang.org/x/sys v0.50.0
)
