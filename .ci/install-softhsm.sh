#!/usr/bin/env bash
# Install SoftHSM2 (the PKCS#11 token the key-provider tests use) unless it is already there.
# Idempotent; needs root (CI runs as root). Prints the module path on success.
set -euo pipefail

find_module() {
    for candidate in /usr/lib/softhsm/libsofthsm2.so /usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so \
                     /usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so /usr/local/lib/softhsm/libsofthsm2.so; do
        if [ -f "$candidate" ]; then
            echo "$candidate"
            return 0
        fi
    done
    return 1
}

if ! module=$(find_module) || ! command -v softhsm2-util >/dev/null 2>&1; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq softhsm2 >/dev/null
    module=$(find_module)
fi
echo "softhsm2: $module"
