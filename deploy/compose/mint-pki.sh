#!/bin/sh
# One-shot PKI for the docker-compose demo, run by the "pki" service with the gateway image.
# Nothing is committed: every `docker compose up` on a fresh volume mints a new mesh CA.
# PKI_DIR and EGW_CLI exist so the test suite can run this same script outside a container.
set -eu
PKI_DIR="${PKI_DIR:-/pki}"
EGW_CLI="${EGW_CLI:-/app/bin/egress-gateway.js}"
egw() { node "$EGW_CLI" "$@"; }
cd "$PKI_DIR"
if [ ! -f ca/ca-key.pem ]; then
  # Istio's cacerts layout: the same files can back istiod (kubectl create secret generic cacerts).
  egw pki init --dir ca --trust-domain cluster.local
fi
# The gateway's SVID: the identity the client sidecars' secure-naming check expects.
egw pki issue --ca-dir ca --spiffe-id spiffe://cluster.local/ns/bookinfo/sa/bigip-proxy --out gateway --ttl 720h
# Workload SVIDs as istio-agent presents them: leaf + intermediate + root.
egw pki issue --ca-dir ca --spiffe-id spiffe://cluster.local/ns/bookinfo/sa/productpage --out productpage --include-root
egw pki issue --ca-dir ca --spiffe-id spiffe://cluster.local/ns/sm-apigw-a/sa/default --out sm-apigw-a --include-root
# The external web server's certificate (any CA would do; this one keeps the demo self-contained).
egw pki issue --ca-dir ca --spiffe-id spiffe://external.example/web --dns web.external.example --out web --ttl 720h
# In the container this runs as root, because a fresh named volume is root-owned: hand it all to
# uid 1000 (the gateway and the Envoy sidecars). Keys stay 0600; certificates and directories
# are world-readable so the curl apps can read the mesh root.
if [ "$(id -u)" = 0 ]; then chown -R 1000:1000 "$PKI_DIR"; fi
chmod 755 "$PKI_DIR" "$PKI_DIR"/*
echo "demo PKI ready in $PKI_DIR"
