#!/usr/bin/env bash
# Installs the Debian packages custos builds and tests with, when any is missing. Idempotent: a machine
# that has them all is left untouched and apt is not called.
set -euo pipefail

packages=(
  gcc pkg-config libc6-dev          # cgo: piv-go (PC/SC) and miekg/pkcs11 need it; never silently off
  pcscd libpcsclite-dev vsmartcard-vpcd   # the real PC/SC stack the virtual YubiKeys plug into
  softhsm2 opencryptoki             # two independent PKCS#11 implementations
  openssl age xxd                   # third-party clients that keep formats honest (xxd: docs/format.md recipes)
  yubico-piv-tool opensc yubikey-manager
  util-linux procps iproute2        # unshare, nsenter, ps, ss: the sim's namespaces and leak checks
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "install-deps: missing Debian packages: ${missing[*]}; run 'make deps' as root or install them with apt-get" >&2
    exit 1
  fi
  echo "install-deps: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# The vsmartcard-vpcd package installs a system-wide reader (TCP 35963-35964 on every interface) for the
# host's pcscd. That lets any process on the network pose as a smart card to every PC/SC client on this
# machine, so custos removes it: custos-sim runs its own pcscd with its own reader configuration instead.
if [ -e /etc/reader.conf.d/vpcd ]; then
  echo "install-deps: removing /etc/reader.conf.d/vpcd (a system-wide virtual reader any process could pose as a card through)" >&2
  rm -f /etc/reader.conf.d/vpcd
fi

exit 0
