#!/usr/bin/env bash
# Refreshes the student page's renderers in xedullm/server/web/static/vendor/ from npm:
# markdown-it (Markdown), KaTeX (math, with its fonts, mhchem and copy-tex) and highlight.js
# (code). The page must work with no internet, so these files are committed and shipped in the
# wheel; nothing is loaded from elsewhere at run time.
#
# Usage: bash scripts/vendor-web.sh      (change a version below, run, test, commit the result)
#
# Only prebuilt browser files are copied. markdown-it's browser build already contains its
# dependencies (entities, linkify-it, mdurl, punycode.js, uc.micro), fixed when markdown-it was
# published, so pinning markdown-it pins them; their licenses are copied too.
set -euo pipefail
cd "$(dirname "$0")/.."

MARKDOWN_IT=15.0.3
KATEX=0.19.1
HIGHLIGHT_JS=11.12.0   # the @highlightjs/cdn-assets package: highlight.js built for browsers

dest=xedullm/server/web/static/vendor
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

(cd "$work" && npm init -y >/dev/null &&
  npm install --no-audit --no-fund --ignore-scripts --loglevel=error \
    "markdown-it@$MARKDOWN_IT" "katex@$KATEX" "@highlightjs/cdn-assets@$HIGHLIGHT_JS" >/dev/null)
nm="$work/node_modules"

rm -rf "$dest"
mkdir -p "$dest/katex/fonts" "$dest/licenses"

# The .js names matter: the server maps .js to a JavaScript type on every OS, and browsers
# refuse modules of any other type. Source maps are not shipped, so their comment goes too
# (otherwise developer tools ask the teacher's server for a missing file).
sed '/^\/\/# sourceMappingURL=/d' "$nm/markdown-it/dist/browser/markdown-it.esm.min.mjs" \
  > "$dest/markdown-it.min.js"
cp "$nm/@highlightjs/cdn-assets/es/highlight.min.js" "$dest/highlight.min.js"
cp "$nm/@highlightjs/cdn-assets/styles/github-dark.min.css" "$dest/highlight-github-dark.min.css"
cp "$nm/katex/dist/katex.min.js" "$dest/katex/"
# Only the .woff2 fonts are shipped (every browser that runs the page reads them): drop the
# .woff/.ttf fallbacks from the stylesheet, so it names no file we do not serve.
sed -E 's/,url\(fonts\/[A-Za-z0-9_-]+\.woff\) format\("woff"\),url\(fonts\/[A-Za-z0-9_-]+\.ttf\) format\("truetype"\)//g' \
  "$nm/katex/dist/katex.min.css" > "$dest/katex/katex.min.css"
cp "$nm/katex/dist/contrib/mhchem.min.js" "$nm/katex/dist/contrib/copy-tex.min.js" "$dest/katex/"
# Every browser the page supports reads WOFF2, so the CSS never asks for the other formats.
cp "$nm"/katex/dist/fonts/*.woff2 "$dest/katex/fonts/"

{
  echo "# Vendored renderers / 第三方渲染库"
  echo
  echo "Written by scripts/vendor-web.sh; do not edit by hand. 由 scripts/vendor-web.sh 生成，请勿手改。"
  echo
  echo "| package | version | license | file in licenses/ |"
  echo "|---|---|---|---|"
} > "$dest/README.md"
# name in licenses/, npm package, and whether markdown-it's build carries it inside.
while read -r name pkg bundled; do
  license_file="$(find "$nm/$pkg" -maxdepth 1 -iname 'licen[cs]e*' | head -n 1)"
  [ -n "$license_file" ] || { echo "no license file in $pkg" >&2; exit 1; }
  cp "$license_file" "$dest/licenses/$name.txt"
  read -r version license < <(node -e \
    'const p = require(process.argv[1]); console.log(p.version, p.license)' "$nm/$pkg/package.json")
  [ "$bundled" = yes ] && version="inside markdown-it $MARKDOWN_IT"
  echo "| $pkg | $version | $license | $name.txt |" >> "$dest/README.md"
done <<'PACKAGES'
markdown-it markdown-it no
entities entities yes
linkify-it linkify-it yes
mdurl mdurl yes
punycode.js punycode.js yes
uc.micro uc.micro yes
katex katex no
highlight.js @highlightjs/cdn-assets no
PACKAGES

echo "vendored into $dest:"
du -sh "$dest"
