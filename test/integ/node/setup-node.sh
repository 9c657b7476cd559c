#!/usr/bin/env bash
# User data of the integration fleet's nodes (Amazon Linux 2023, arm64): nginx serving the
# fleet's one certificate with tickets on and no session cache. The user data defines before it
# CERTIFICATE_SEED_SECRET, AWS_REGION and NODE_CONFIG_FILE, and writes shared-certificate.sh and
# ticket-keys-integ.conf beside it (test/integ/integ.ticket-key-rotation.ts).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# dnf can run out of a t4g.nano's 512 MiB: swap for the install only. It is gone before the node
# is onboarded, so no ticket key (on tmpfs, which may swap) can ever reach the disk through it.
swap=/swapfile-install
fallocate -l 1G "$swap"
chmod 600 "$swap"
mkswap "$swap" > /dev/null
swapon "$swap"
# aws-cfn-bootstrap: the cfn-signal that the user data's exit trap runs.
dnf install -y nginx aws-cfn-bootstrap
swapoff "$swap"
rm -f "$swap"
aws secretsmanager get-secret-value --region "$AWS_REGION" --secret-id "$CERTIFICATE_SEED_SECRET" --query SecretString --output text \
  | bash "$here/shared-certificate.sh" /etc/nginx/tls
install -m 644 "$here/ticket-keys-integ.conf" "$NODE_CONFIG_FILE"
nginx -t
systemctl enable --now nginx
