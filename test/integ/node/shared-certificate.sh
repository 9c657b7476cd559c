#!/usr/bin/env bash
# Writes the integration fleet's one TLS certificate and its key into DIR (cert.pem, key.pem),
# derived from the seed on standard input: every node given the same seed writes the same bytes.
# nginx resumes a ticket only under the certificate it was issued with (the session id context
# is the certificate's digest), so the nodes must serve one certificate, and no node can hand it
# to another. An Ed25519 key (its signatures are deterministic) from SHA-256 of the seed, a fixed
# serial and fixed dates make the certificate a function of the seed alone.
set -euo pipefail
if [ $# -ne 1 ]; then
  echo "usage: shared-certificate.sh DIR < seed" >&2
  exit 2
fi
out=$1
seed=$(cat)
if [ -z "$seed" ]; then
  echo "shared-certificate.sh: the seed on standard input is empty" >&2
  exit 2
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$out"
umask 077
# PKCS#8 DER of an Ed25519 private key: this fixed prefix, then the 32-byte seed of the key.
{
  printf '\x30\x2e\x02\x01\x00\x30\x05\x06\x03\x2b\x65\x70\x04\x22\x04\x20'
  printf '%s' "$seed" | openssl dgst -sha256 -binary
} | openssl pkey -inform DER -out "$out/key.pem"
cat > "$work/ca.cnf" <<'CNF'
[ca]
default_ca = fleet
[fleet]
database = $ENV::WORK/index.txt
new_certs_dir = $ENV::WORK
serial = $ENV::WORK/serial
default_md = default
policy = any
unique_subject = no
x509_extensions = leaf
[any]
commonName = supplied
[leaf]
basicConstraints = critical, CA:FALSE
subjectAltName = DNS:ticket-keys-integ
CNF
: > "$work/index.txt"
echo 01 > "$work/serial"
openssl req -new -key "$out/key.pem" -subj /CN=ticket-keys-integ -out "$work/request.csr"
WORK=$work openssl ca -batch -selfsign -notext -config "$work/ca.cnf" -keyfile "$out/key.pem" -in "$work/request.csr" \
  -startdate 20260101000000Z -enddate 20361231235959Z -out "$out/cert.pem" 2> "$work/ca.log" || { cat "$work/ca.log" >&2; exit 1; }
chmod 644 "$out/cert.pem"
