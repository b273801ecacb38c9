#!/usr/bin/env bash
# Fill the chart cache the platform tests read ($CDAO_CHART_CACHE, layout in
# tests/platform/support/chart_cache.py) with every chart the stacks pin: `helm pull --untar` of each
# chart, plus its templated CRDs rendered by `helm template --include-crds` (crds-upstream/), and the
# release tag of each remote kustomize source (manifests/). Needs helm (on GitHub's Ubuntu runners)
# and git.
set -euo pipefail
: "${CDAO_CHART_CACHE:?set CDAO_CHART_CACHE to the cache folder}"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

uv run python tests/platform/support/chart_pins.py | while read -r chart repo version kind; do
  target="$CDAO_CHART_CACHE/$chart/$version"
  [ -d "$target" ] && continue
  mkdir -p "$(dirname "$target")"
  if [ "$kind" = git ]; then
    git clone --quiet --depth 1 --branch "$version" "$repo" "$tmp/$chart"
    mkdir -p "$target" && cp -r "$tmp/$chart/manifests" "$target/"
  else
    helm pull "$chart" --repo "$repo" --version "$version" --untar --untardir "$tmp"
    mv "$tmp/$chart" "$target"
    mkdir -p "$target/crds-upstream"
    # Charts that template their CRDs install them by default or behind crds.enabled.
    helm template "$chart" "$target" --include-crds --set crds.enabled=true \
      >"$target/crds-upstream/rendered.yaml"
  fi
  rm -rf "${tmp:?}/$chart"
done
