#!/bin/sh
# Renders nginx/kiln.conf.template for the container and runs nginx in the foreground.
set -eu
runtime=/var/run/kiln-edge
mkdir -p "$runtime" "$KILN_EDGE_CERT_DIR"
sed -e "s|\${KILN_EDGE_LISTEN}|$KILN_EDGE_LISTEN|g" -e "s|\${KILN_GATEWAY_ADDR}|$KILN_GATEWAY_ADDR|g" \
    -e "s|\${KILN_EDGE_TLS_LISTEN}|$KILN_EDGE_TLS_LISTEN|g" -e "s|\${KILN_EDGE_CERT_DIR}|$KILN_EDGE_CERT_DIR|g" \
    -e "s|\${KILN_NGINX_DIR}|/etc/kiln/nginx|g" -e "s|\${KILN_EDGE_RUNTIME_DIR}|$runtime|g" \
    /etc/kiln/nginx/kiln.conf.template > "$runtime/nginx.conf"
exec nginx -p "$runtime" -c "$runtime/nginx.conf" -e stderr -g 'daemon off;'
