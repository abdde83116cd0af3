#!/usr/bin/env bash
# Updates the vendored xterm.js files in web/vendor/ from npm (no node_modules left
# behind). The page is served from the binary, so these built files are committed.
#   web/update-vendor.sh            # the versions pinned below
#   XTERM=6.0.0 FIT=0.11.0 web/update-vendor.sh
set -euo pipefail
XTERM="${XTERM:-6.0.0}"
FIT="${FIT:-0.11.0}"
here="$(cd "$(dirname "$0")" && pwd)"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
cd "$tmp"
npm pack --silent "@xterm/xterm@$XTERM" "@xterm/addon-fit@$FIT" >/dev/null
mkdir xterm fit
tar xzf "xterm-xterm-$XTERM.tgz" -C xterm
tar xzf "xterm-addon-fit-$FIT.tgz" -C fit
out="$here/vendor"
mkdir -p "$out"
# The ES-module builds (the page imports them); source maps are left out (size).
sed '/^\/\/# sourceMappingURL=/d' xterm/package/lib/xterm.mjs > "$out/xterm.mjs"
sed '/^\/\/# sourceMappingURL=/d' fit/package/lib/addon-fit.mjs > "$out/addon-fit.mjs"
cp xterm/package/css/xterm.css "$out/xterm.css"
cp xterm/package/LICENSE "$out/LICENSE.xterm"
cp fit/package/LICENSE "$out/LICENSE.addon-fit"
printf '@xterm/xterm %s\n@xterm/addon-fit %s\n' "$XTERM" "$FIT" > "$out/VERSIONS"
echo "web/vendor: @xterm/xterm $XTERM, @xterm/addon-fit $FIT"
