#!/usr/bin/env bash
# Installs what the benchmark needs, each only when missing: nginx with the echo module and wrk
# from Debian, and LiteLLM (pinned) in its own venv under bench/.peers/litellm (ignored by git).
#   bash bench/setup.sh              # everything
#   bash bench/setup.sh --no-litellm # what `make bench-quick` needs
set -euo pipefail
cd "$(dirname "$0")"

LITELLM_VERSION="${LITELLM_VERSION:-1.108.7}"  # the version the performance issue measured
PY="${PY:-python3}"
with_litellm=1
[ "${1:-}" = "--no-litellm" ] && with_litellm=0

# pip here may warn about extra index folders that do not exist; keep its output to real news.
quiet_pip() { "$@" 2>&1 | { grep -v '^WARNING: Location' || true; }; return "${PIPESTATUS[0]}"; }

need_apt=0
command -v nginx >/dev/null 2>&1 || need_apt=1
[ -e /usr/lib/nginx/modules/ngx_http_echo_module.so ] || need_apt=1
command -v wrk >/dev/null 2>&1 || need_apt=1
if [ "$need_apt" = 1 ]; then
    echo "bench: installing nginx, libnginx-mod-http-echo and wrk from Debian"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # No recommends: the bench runs its own nginx instances, not the system service.
    apt-get install -y -qq --no-install-recommends nginx libnginx-mod-http-echo wrk >/dev/null
    # If the package started the system nginx (port 80), stop it: nothing here uses it.
    if [ -s /run/nginx.pid ]; then nginx -s quit 2>/dev/null || true; fi
fi

peer=.peers/litellm
if [ "$with_litellm" = 1 ]; then
    if ! "$peer/bin/python" -c "import importlib.metadata as m, sys; sys.exit(m.version('litellm') != '$LITELLM_VERSION')" 2>/dev/null \
        || [ ! -x "$peer/bin/litellm" ]; then
        echo "bench: installing litellm[proxy]==$LITELLM_VERSION into bench/$peer"
        rm -rf "$peer"
        mkdir -p .peers
        "$PY" -m venv "$peer"
        quiet_pip "$peer/bin/pip" install --quiet --upgrade pip
        quiet_pip "$peer/bin/pip" install --quiet "litellm[proxy]==$LITELLM_VERSION" uvloop
    fi
fi
echo "bench: nginx $(nginx -v 2>&1 | sed 's/.*nginx\///'), $(wrk -v 2>&1 | head -1 | cut -d' ' -f1-2)$([ "$with_litellm" = 1 ] && echo ", litellm $LITELLM_VERSION") ready"
