#!/bin/sh
# Renders nginx/kiln.conf.template for the container and runs nginx in the foreground (under tini).
# The substitution is the same as scripts/lib.sh's start_edge: exactly the template's six variables,
# so nginx's own $variables are left alone. KILN_EDGE_WORKER_PROCESSES (default `auto`, one per CPU
# the machine has) sets nginx's worker processes: in a container limited to fewer CPUs than its node
# has, set it to the limit.
set -eu
runtime=${KILN_EDGE_RUNTIME_DIR:-/var/run/kiln-edge}
mkdir -p "$runtime" "$KILN_EDGE_CERT_DIR"
# The template logs to files in the runtime directory; in a container the logs belong on stdout and
# stderr, where `docker logs` and Kubernetes collect them (the JSON access log included).
ln -sf /dev/stdout "$runtime/access.log"
ln -sf /dev/stderr "$runtime/error.log"
sed -e "s|\${KILN_EDGE_LISTEN}|$KILN_EDGE_LISTEN|g" -e "s|\${KILN_GATEWAY_ADDR}|$KILN_GATEWAY_ADDR|g" \
    -e "s|\${KILN_EDGE_TLS_LISTEN}|$KILN_EDGE_TLS_LISTEN|g" -e "s|\${KILN_EDGE_CERT_DIR}|$KILN_EDGE_CERT_DIR|g" \
    -e "s|\${KILN_NGINX_DIR}|/etc/kiln/nginx|g" -e "s|\${KILN_EDGE_RUNTIME_DIR}|$runtime|g" \
    -e "s|^worker_processes auto;|worker_processes ${KILN_EDGE_WORKER_PROCESSES:-auto};|" \
    /etc/kiln/nginx/kiln.conf.template > "$runtime/nginx.conf"
exec nginx -p "$runtime" -c "$runtime/nginx.conf" -e stderr -g 'daemon off;'
