#!/usr/bin/env bash
# Fill the chart cache the platform tests read ($CDAO_CHART_CACHE, layout in
# tests/platform/support/chart_cache.py) with every chart the stacks pin, as
# tests/platform/support/chart_pins.py lists them (or the pin lines in the file given as $1):
# `helm pull --untar` of each chart, the plain upstream copies of its templated CRDs at their tag
# (crds-upstream/, tests/platform/upstream/templated-crds.yaml), and the release tag of each remote
# kustomize source (manifests/). Nothing is rendered: charts such as aws-load-balancer-controller
# (`required` clusterName) and linkerd-control-plane (`required` identity issuer certificate) fail
# `helm template` with their default values. Each chart is assembled aside and moved into the cache
# whole, so a failure leaves no partial chart. Needs helm (on GitHub's Ubuntu runners) and git.
set -euo pipefail
: "${CDAO_CHART_CACHE:?set CDAO_CHART_CACHE to the cache folder}"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

if [ $# -gt 0 ]; then
  cp "$1" "$tmp/pins"
else
  uv run python tests/platform/support/chart_pins.py >"$tmp/pins"
fi

# Reads from a file, not a pipe, so that a failing step stops the script (set -e) in this shell.
while read -r chart repo version kind crd_repo crd_tag crd_paths; do
  target="$CDAO_CHART_CACHE/$chart/$version"
  [ -d "$target" ] && continue
  stage="$tmp/stage"
  rm -rf "$stage" "$tmp/src" && mkdir -p "$stage"
  if [ "$kind" = git ]; then
    git clone --quiet --depth 1 --branch "$version" "$repo" "$tmp/src"
    mkdir -p "$stage/$chart" && cp -r "$tmp/src/manifests" "$stage/$chart/"
  else
    helm pull "$chart" --repo "$repo" --version "$version" --untar --untardir "$stage"
    if [ -n "${crd_repo:-}" ]; then
      git clone --quiet --depth 1 --branch "$crd_tag" "$crd_repo" "$tmp/src"
      mkdir -p "$stage/$chart/crds-upstream"
      for glob in $crd_paths; do
        found=0
        for file in "$tmp/src"/$glob; do
          [ -f "$file" ] || continue
          found=1
          # The tests read CRDs from *.yaml files (linkerd's is upstream test data named .golden).
          name="$(basename "$file")"
          cp "$file" "$stage/$chart/crds-upstream/${name%.yaml}.yaml"
        done
        if [ "$found" = 0 ]; then
          echo "fill-chart-cache: no file matches $glob in $crd_repo at $crd_tag ($chart $version)" >&2
          exit 1
        fi
      done
    fi
  fi
  mkdir -p "$(dirname "$target")"
  mv "$stage/$chart" "$target"
done <"$tmp/pins"
