#!/usr/bin/env bash
# Installs everything ai4lab needs on a Debian machine with Python 3.11+.
# Idempotent and cached: a second run only checks stamps.
#   scripts/install.sh          platform (venv + .[all], proxy, code-server)
#   scripts/install.sh test     the same plus test extras and Chromium
#   scripts/install.sh bench    the same as test, plus wrk (load generator)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
WITH_TEST=${1:-}
VENV=${AI4LAB_VENV:-$ROOT/.venv}
# What user accounts execute lives under the runtime prefix: as root, /opt/ai4lab (root's own
# home and pyenv's Python are private); the same rule as ai4lab.core.runtime.default_runtime_dir.
if [ "$(id -u)" = 0 ]; then RUNTIME=${AI4LAB_RUNTIME_DIR:-/opt/ai4lab}; else RUNTIME=${AI4LAB_RUNTIME_DIR:-$HOME/.cache/ai4lab}; fi
TOOLS=${AI4LAB_TOOLS_DIR:-$RUNTIME/tools}
PY=${PYTHON:-python3}
CODE_SERVER_VERSION=4.100.3
RIPGREP_CACHE=vscode-ripgrep-cache-1.15.11
RIPGREP_TARBALL=ripgrep-v13.0.0-10-x86_64-unknown-linux-musl.tar.gz

log() { printf '\033[1m[ai4lab install]\033[0m %s\n' "$*"; }
die() { printf '[ai4lab install] error: %s\n' "$*" >&2; exit 1; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else die "need root to run: $*"; fi; }
APT_UPDATED=
apt_install() {
    missing=()
    for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
    [ ${#missing[@]} -eq 0 ] && return 0
    log "apt-get install ${missing[*]}"
    if [ -z "$APT_UPDATED" ]; then as_root apt-get update -qq; APT_UPDATED=1; fi
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "${missing[@]}" >/dev/null
}

"$PY" -c 'import sys; sys.exit(sys.version_info < (3, 11))' || die "Python 3.11+ is required (found $("$PY" --version))"

# --- Python environment -------------------------------------------------------
extras="all"; case "$WITH_TEST" in test|bench) extras="all,test" ;; esac
stamp="$VENV/.ai4lab-stamp"
want="$(sha256sum pyproject.toml | cut -c1-16)-$extras"
if [ ! -x "$VENV/bin/python" ]; then
    log "creating virtual environment $VENV"
    "$PY" -m venv "$VENV" || { apt_install python3-venv; "$PY" -m venv "$VENV"; }
fi
have="$(cat "$stamp" 2>/dev/null || true)"
# an environment with the test extras also serves `make run`
if { [ "$have" != "$want" ] && [ "$have" != "$want,test" ]; } || ! "$VENV/bin/python" -c 'import ai4lab' 2>/dev/null; then
    log "pip install -e .[$extras]"
    "$VENV/bin/pip" install -q -U pip >/dev/null
    "$VENV/bin/pip" install -q -e ".[$extras]"
    echo "$want" > "$stamp"
fi

# --- rclone + FUSE: S3 / WebDAV storage mounted as storage/ in sessions and jobs ---
command -v rclone >/dev/null && command -v fusermount3 >/dev/null || apt_install rclone fuse3

# --- Node.js + configurable-http-proxy ---------------------------------------
command -v node >/dev/null && command -v npm >/dev/null || apt_install nodejs npm
mkdir -p "$RUNTIME" "$TOOLS/bin" && chmod 755 "$RUNTIME" "$TOOLS" "$TOOLS/bin"
if [ ! -x "$TOOLS/chp/node_modules/.bin/configurable-http-proxy" ]; then
    log "npm install configurable-http-proxy"
    if npm install --silent --no-audit --no-fund --prefix "$TOOLS/chp" configurable-http-proxy@5 >/dev/null 2>&1; then :
    else
        apt_install node-configurable-http-proxy
        mkdir -p "$TOOLS/chp/node_modules/.bin"
        ln -sfn "$(command -v configurable-http-proxy)" "$TOOLS/chp/node_modules/.bin/configurable-http-proxy"
    fi
fi
ln -sfn "$TOOLS/chp/node_modules/.bin/configurable-http-proxy" "$TOOLS/bin/configurable-http-proxy"

# --- the JupyterLab extension (panels + server extension) into the venv sessions run from ---
# hatch-jupyter-builder runs `npm install` + the TypeScript/labextension build during pip install;
# rebuilt only when the extension's sources change (its node_modules also serve its unit tests).
EXT=extensions/jupyterlab-ai4lab
WHEELS="$VENV/.ai4lab-wheels"
ext_stamp="$VENV/.ai4lab-labext-stamp"
ext_want=$(cd "$EXT" && find pyproject.toml package.json package-lock.json tsconfig.json install.json src style \
    jupyterlab_ai4lab jupyter-config -type f ! -path '*/labextension/*' ! -name '*.pyc' | sort | xargs sha256sum | sha256sum | cut -c1-16)
if [ "$(cat "$ext_stamp" 2>/dev/null)" != "$ext_want" ] || [ ! -d "$EXT/node_modules" ] \
        || ! ls "$WHEELS"/jupyterlab_ai4lab-*.whl >/dev/null 2>&1 \
        || ! "$VENV/bin/python" -c 'import jupyterlab_ai4lab' 2>/dev/null; then
    log "building the JupyterLab extension (npm, TypeScript, labextension)"
    "$VENV/bin/pip" install -q "hatchling>=1.21" "hatch-jupyter-builder>=0.9"
    rm -rf "$WHEELS" && mkdir -p "$WHEELS"
    # one build, as a wheel: the platform's venv and the session environment install the same file
    PATH="$VENV/bin:$PATH" "$VENV/bin/pip" wheel -q --no-deps --no-build-isolation -w "$WHEELS" "./$EXT" \
        || die "the JupyterLab extension did not build (see above)"
    "$VENV/bin/pip" install -q --force-reinstall --no-deps "$WHEELS"/jupyterlab_ai4lab-*.whl
    echo "$ext_want" > "$ext_stamp"
fi
EXT_WHEEL=$(ls "$WHEELS"/jupyterlab_ai4lab-*.whl)

# --- the session environment: what user accounts run (root only) -------------
# Sessions run as each user's own system account, which cannot execute anything below /root
# (pyenv's Python, this venv when the checkout is there). So sessions get their own environment
# under the runtime prefix, built from a Python every account can run, with a copy (not an
# editable link) of ai4lab and the Lab extension.
if [ "$(id -u)" = 0 ] && [ "${AI4LAB_ISOLATION:-auto}" != off ]; then
    USER_PY=${AI4LAB_USER_PYTHON:-/usr/bin/python3}
    [ -x "$USER_PY" ] || apt_install python3
    "$USER_PY" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
        || die "$USER_PY is older than 3.11: set AI4LAB_USER_PYTHON to a Python 3.11+ that every account can run"
    setpriv --reuid=nobody --regid=nogroup --clear-groups "$USER_PY" -c '' 2>/dev/null \
        || die "user accounts cannot run $USER_PY: set AI4LAB_USER_PYTHON to a Python outside /root"
    sess_want=$( { echo bytecode; sha256sum pyproject.toml "$EXT_WHEEL"; "$USER_PY" --version;
                   find hub spawners -type f ! -name '*.pyc' ! -path '*/__pycache__/*' | sort | xargs sha256sum; } \
                 | sha256sum | cut -c1-16)
    # one folder per version, and `session` links to the current one: sessions already running
    # keep the files they started with while a new version is built beside them
    SESSION="$RUNTIME/session-$sess_want"
    if [ "$(cat "$SESSION/.ai4lab-stamp" 2>/dev/null)" != "$sess_want" ]; then
        log "building the session environment $SESSION (from $USER_PY)"
        rm -rf "$SESSION"
        "$VENV/bin/uv" venv -q --python "$USER_PY" "$SESSION"
        # --compile-bytecode: user accounts cannot write __pycache__ here, and without .pyc files
        # every session start compiles JupyterLab's imports again (17 s instead of 2 on 2 cores)
        "$VENV/bin/uv" pip install -q --compile-bytecode --python "$SESSION/bin/python" ".[widgets,s3]" "$EXT_WHEEL" \
            || die "the session environment did not build (see above)"
        rm -rf build
        chmod -R u+rwX,go+rX,go-w "$SESSION"
        echo "$sess_want" > "$SESSION/.ai4lab-stamp"
    fi
    if [ "$(readlink "$RUNTIME/session" 2>/dev/null)" != "session-$sess_want" ]; then
        [ -L "$RUNTIME/session" ] || rm -rf "$RUNTIME/session"   # a folder from before versions
        ln -sfn "session-$sess_want" "$RUNTIME/session.new" && mv -T "$RUNTIME/session.new" "$RUNTIME/session"
        # keep the current and the previous version (sessions may still run from it)
        ls -dt "$RUNTIME"/session-* | tail -n +3 | xargs -r rm -rf
    fi
fi

# --- code-server (VS Code in the browser), recipe from ENVIRONMENT-NOTES ------
if [ "${AI4LAB_SKIP_CODE_SERVER:-}" != 1 ] && [ ! -e "$TOOLS/code-server/bin/code-server" ]; then
    log "installing code-server $CODE_SERVER_VERSION (about a minute)"
    apt_install libkrb5-dev libxkbfile-dev libsecret-1-dev build-essential pkg-config
    CS="$TOOLS/code-server"; WORK=$(mktemp -d)
    mkdir -p "$CS" "$WORK/tmp/$RIPGREP_CACHE" "$WORK/deb"
    ( cd "$WORK/deb" && apt-get download ripgrep >/dev/null 2>&1 && dpkg-deb -x ripgrep_*.deb x ) \
        || die "could not fetch the Debian ripgrep package"
    tar czf "$WORK/tmp/$RIPGREP_CACHE/$RIPGREP_TARBALL" -C "$WORK/deb/x/usr/bin" rg
    ( export TMPDIR="$WORK/tmp" npm_config_yes=true npm_config_nodedir=/usr \
             npm_config_unsafe_perm=true npm_config_cache="$WORK/npm-cache"
      npm install --silent --no-audit --no-fund --prefix "$CS" "code-server@$CODE_SERVER_VERSION" >"$WORK/npm.log" 2>&1 ) \
        || { tail -n 20 "$WORK/npm.log" >&2; die "code-server install failed"; }
    mkdir -p "$CS/bin"
    ln -sfn ../node_modules/code-server/out/node/entry.js "$CS/bin/code-server"
    rm -rf "$WORK"
fi
[ -e "$TOOLS/code-server/bin/code-server" ] && ln -sfn "$TOOLS/code-server/bin/code-server" "$TOOLS/bin/code-server"

# --- test-only: headless Chromium from Debian ---------------------------------
case "$WITH_TEST" in test|bench) command -v chromium >/dev/null || apt_install chromium ;; esac
if [ "$WITH_TEST" = bench ]; then command -v wrk >/dev/null || apt_install wrk; fi
log "ready (venv: $VENV, tools: $TOOLS/bin)"
