#!/usr/bin/env bash
# System packages the runtimes need and pip cannot provide: Java 17 for TorchServe, Prometheus
# (with promtool) for `make monitor` and its tests, nginx with its njs module for the gateway
# (the spec's access:) and its tests.
set -euo pipefail

SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
apt_install() {
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

java_major() { java -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -1; }

if ! command -v java >/dev/null || [ "$(java_major)" -lt 17 ]; then
  echo "Java 17 not found: installing openjdk-17-jre-headless with apt-get" >&2
  apt_install openjdk-17-jre-headless
fi
if ! command -v prometheus >/dev/null || ! command -v promtool >/dev/null; then
  echo "Prometheus not found: installing Debian's prometheus package with apt-get" >&2
  apt_install prometheus
fi
if ! command -v nginx >/dev/null && [ ! -x /usr/sbin/nginx ] || [ ! -e /usr/lib/nginx/modules/ngx_http_js_module.so ]; then
  echo "nginx with njs not found: installing nginx-light and libnginx-mod-http-js with apt-get" >&2
  apt_install nginx-light libnginx-mod-http-js
fi
