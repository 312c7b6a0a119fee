#!/bin/bash
# Installed as iptables, iptables-save, iptables-restore and their ip6tables twins in the locally built
# kube-proxy image. On first use it points those commands at the backend (legacy or nft) that already holds
# the node's rules, with kind's own rule for choosing (its node entrypoint's select_iptables: legacy unless
# nft holds more rules), so that kube-proxy and the node agree; then it runs the command it was called as.
set -o errexit -o nounset -o pipefail

legacy=$( (iptables-legacy-save || true; ip6tables-legacy-save || true) 2>/dev/null | grep -c '^-' || true)
nft=$( (timeout 5 sh -c 'iptables-nft-save; ip6tables-nft-save' || true) 2>/dev/null | grep -c '^-' || true)
mode=nft
[ "$legacy" -ge "$nft" ] && mode=legacy
for cmd in iptables iptables-save iptables-restore ip6tables ip6tables-save ip6tables-restore; do
  ln -sf "xtables-$mode-multi" "/usr/sbin/$cmd"
done
exec "/usr/sbin/$(basename "$0")" "$@"
