#!/usr/bin/env bash
# The first deploy of one stack, run once by an administrator (docs/github-setup.md, "First deploy").
# deploy.yml cannot do it alone: its image jobs push to the stack's ECR registry, which the stack's
# first `pulumi up` creates. Run from a checkout of main's tip on origin (checked), with the stack
# account's administrator credentials, `pulumi login` to the state backend, and `gh` authenticated as
# a repository administrator; GH_REPO=ORG/REPO names the repository.
#
#   1. `pulumi up` of the stack at its pin, laid out as deploy.yml lays it out: the pin's code, the
#      stack file `cdao stack-revision --stack-file` writes (interactive: review the preview, then confirm).
#   2. Repository variables ECR_REGISTRY_<STACK> and ECR_ACCOUNT_ID_<STACK>, from the stack output
#      ecrRepositories (repository URLs <account>.dkr.ecr.<region>.amazonaws.com/<name>, the
#      `repositoryUrl` of pulumi-aws's ecr.Repository).
#   3. Deploy dispatched for the stack: images of the pin, a plan whose only infra change is the EMR
#      Serverless application's image (the step-1 `up` ran before any image was pushed), the
#      registration of workflows/, and the deployment record later runs and cdao promote read.
#
# staging and prod are held to the rule deploy.yml's resolve job applies: their pins must be what the
# stack before them ran in a successful deployment (cdao stack-revision --upstream-deployed, the record
# last-deployed.sh --at finds), checked before anything is applied. `--without-upstream` skips that check,
# for rebuilding a stack whose upstream is gone (docs/disaster-recovery.md); it says so on stderr.
set -euo pipefail

usage="usage: first-deploy.sh <stack> [--without-upstream] (a Pulumi.<stack>.yaml in environments/)"
stack="${1:?${usage}}"
shift
without_upstream=false
for option in "$@"; do
  case "${option}" in
    --without-upstream) without_upstream=true ;;
    *) echo "first-deploy.sh: unknown option '${option}'; ${usage}" >&2; exit 2 ;;
  esac
done
: "${GH_REPO:?GH_REPO=ORG/REPO is required}"
export GH_REPO

root=$(git rev-parse --show-toplevel)
head=$(git -C "${root}" rev-parse HEAD)
# Only merged code reaches a stack (dev follows main and runs this very commit): HEAD must be main's
# tip as origin has it now, asked of origin itself (git ls-remote), not a local branch or a stale
# remote-tracking ref.
if ! tip=$(git -C "${root}" ls-remote --exit-code origin refs/heads/main | cut -f1) || [ -z "${tip}" ]; then
  echo "first-deploy.sh: cannot read main's tip from the remote 'origin' (git ls-remote origin refs/heads/main); nothing applied" >&2
  exit 2
fi
if [ "${head}" != "${tip}" ]; then
  echo "first-deploy.sh: HEAD ${head} is not main's tip on origin (${tip}); run from it (git fetch origin && git switch --detach origin/main); nothing applied" >&2
  exit 2
fi
upstream=()
# The stack it is promoted from, per the stack registry (cdao-stack:promotesFrom in its file).
# A broken stack file is named on stderr and left out; the other stacks are still listed.
registry=$(uv run --project "${root}" cdao stacks --environments "${root}/environments") || true
previous=$(awk -v s="${stack}" '$1 == s { print ($3 == "-" ? "" : $3); found = 1 } END { exit !found }' <<< "${registry}") || {
  echo "first-deploy.sh: no environments/Pulumi.${stack}.yaml; ${usage}" >&2
  exit 2
}
if [ -n "${previous}" ] && [ "${without_upstream}" = true ]; then
  echo "first-deploy.sh: WARNING: ${stack}'s revision is not checked against what ${previous} deployed (--without-upstream)" >&2
elif [ -n "${previous}" ]; then
  # The commits whose upstream file holds this stack's pins; a record of the upstream at one of them.
  found=$(uv run --project "${root}" cdao stack-revision "${stack}" --commit "${head}" --repo "${root}" \
    --upstream-candidates) || exit 2
  read -ra candidates <<< "$(sed -n 's/^candidates=//p' <<< "${found}")"
  mapfile -t ran < <(GITHUB_REPOSITORY="${GH_REPO}" bash "${root}/.github/scripts/last-deployed.sh" "${previous}" \
    --at "${candidates[@]}")
  upstream=(--upstream-deployed "${ran[@]}")
fi
# The stack file the pin's code reads: the pin's own, with this checkout's promoted keys and secrets
# (docs/github-setup.md, "Which stack file a deploy runs"), as deploy.yml's resolve job writes it.
work=$(mktemp -d)
trap 'rm -rf "${work}"' EXIT
if ! decision=$(uv run --project "${root}" cdao stack-revision "${stack}" \
  --commit "${head}" --repo "${root}" "${upstream[@]}" --stack-file "${work}/Pulumi.${stack}.yaml"); then
  if [ -n "${previous}" ]; then
    echo "first-deploy.sh: nothing applied; deploy and promote ${previous} first, or pass --without-upstream to rebuild ${stack} alone" >&2
  fi
  exit 2
fi
revision=$(grep '^revision=' <<< "${decision}" | cut -d= -f2)
echo "${stack} runs ${revision}"

# The pin's tree, exported rather than checked out: the administrator's clone is left as it is.
tree="${work}/tree"
mkdir "${tree}"
git -C "${root}" archive "${revision}" | tar -x -C "${tree}"
cp "${work}/Pulumi.${stack}.yaml" "${tree}/environments/Pulumi.${stack}.yaml"
# The program tags the connector image with the commit it runs (infra/images.py), as deploy.yml does.
# This `up` creates the registry, so no image is in it yet: the EMR Serverless application starts on
# AWS's image (CDAO_IMAGES_PUSHED=false), and the deploy dispatched below pushes the stack's images
# before its `up` sets the application's.
(cd "${tree}" && uv sync --locked \
  && CDAO_REVISION_COMMIT="${revision}" CDAO_IMAGES_PUSHED=false pulumi up --stack "${stack}" --policy-pack policies)

connector=$(cd "${tree}" && pulumi stack output ecrRepositories --stack "${stack}" --json | jq -r .connector)
registry=${connector%%/*}
account=${registry%%.*}
if ! [[ "${account}" =~ ^[0-9]{12}$ ]]; then
  echo "first-deploy.sh: stack output ecrRepositories.connector = '${connector}': expected <account>.dkr.ecr.<region>.amazonaws.com/<name>" >&2
  exit 2
fi
suffix=$(tr '[:lower:]' '[:upper:]' <<< "${stack}")
gh variable set "ECR_REGISTRY_${suffix}" --body "${registry}"
gh variable set "ECR_ACCOUNT_ID_${suffix}" --body "${account}"
gh workflow run deploy.yml --ref main -f stack="${stack}"
echo "${stack}: registry ${registry} recorded; Deploy dispatched for ${stack} (Actions -> Deploy)"
