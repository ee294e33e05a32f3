#!/usr/bin/env bash
# System packages the runtimes need and pip cannot provide: Java 17 for TorchServe.
set -euo pipefail

java_major() { java -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -1; }

if ! command -v java >/dev/null || [ "$(java_major)" -lt 17 ]; then
  echo "Java 17 not found: installing openjdk-17-jre-headless with apt-get" >&2
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq openjdk-17-jre-headless >/dev/null
fi
