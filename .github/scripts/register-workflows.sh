#!/usr/bin/env bash
# Registers workflows/ to one Flyte domain, in every Flyte project of the stack, at the stack's revision.
# Called by deploy.yml's register-<stack> job after `pulumi up` of the stack, from the checkout of the
# revision (the working directory: its workflows/ and its locked environment); the Flyte projects come
# from this script's own checkout, whose stack file the run deploys. Inputs come from the environment:
#   STACK, FLYTE_DOMAIN, REVISION (the commit the stack runs: the version of every registered entity),
#   IMAGE (the task image, plugins/Dockerfile's tasks target, built for REVISION, in the stack's registry),
#   FLYTE_PLATFORM_URL, FLYTE_CREDENTIALS_CLIENT_ID, FLYTE_CREDENTIALS_CLIENT_SECRET (flytekit's own
#   variable names, read by pyflyte and by cdao flyte-projects), CDAO_DEFAULT_BUCKET (the stack's
#   userdata bucket: the SDK's default bucket and each project-domain's raw output location).
set -euo pipefail

: "${STACK:?STACK is required}" "${FLYTE_DOMAIN:?FLYTE_DOMAIN is required}" "${REVISION:?REVISION is required}"
: "${IMAGE:?IMAGE is required (the task image tagged with REVISION)}"
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

summary="${GITHUB_STEP_SUMMARY:-/dev/stderr}"

# The first deploy of a stack creates the cluster before Flyte exists; its endpoint is set on the
# GitHub environment once Argo CD has synced Flyte (docs/github-setup.md). Until then the job fails:
# its success is the record that the stack runs the revision (last-deployed.sh), which promotion reads.
if [ -z "${FLYTE_PLATFORM_URL:-}" ]; then
  msg="variable FLYTE_ENDPOINT is not set on the ${STACK}-workflows environment: set it once Argo CD has synced Flyte, then re-run this job (docs/github-setup.md, first deploy)"
  echo "::error title=Flyte registration impossible::${msg}"
  echo "Flyte registration for ${STACK} failed: ${msg}" >> "${summary}"
  exit 2
fi
# The stack's real AWS values, which workflows/ refuses to register without (workflows/_platform.py).
: "${CDAO_AWS_REGION:?CDAO_AWS_REGION is required}" "${CDAO_SAGEMAKER_ROLE_ARN:?CDAO_SAGEMAKER_ROLE_ARN is required}"
: "${CDAO_DEFAULT_BUCKET:?CDAO_DEFAULT_BUCKET is required}"
export CDAO_AWS_REGION CDAO_SAGEMAKER_ROLE_ARN CDAO_DEFAULT_BUCKET
if [ ! -f workflows/__init__.py ]; then
  echo "::error::workflows/ is not a Python package (no workflows/__init__.py); pyflyte register needs one"
  exit 1
fi

if [ -n "${FLYTE_CREDENTIALS_CLIENT_ID:-}" ]; then
  : "${FLYTE_CREDENTIALS_CLIENT_SECRET:?secret FLYTE_CLIENT_SECRET is required on the environment when FLYTE_CLIENT_ID is set}"
  export FLYTE_CREDENTIALS_AUTH_MODE=basic
fi

# Before anything of a project-domain is registered (production's schedules start on activation), its
# executions' raw output location becomes s3://<userdata>/data/<project>/<domain>, the only part of the
# bucket its task role may write (cdao_cli/flyte_projects.py).
projects=$(uv run --project "${here}/../.." cdao flyte-projects --stack "${STACK}" \
  --domain "${FLYTE_DOMAIN}" --set-raw-data-prefix "${CDAO_DEFAULT_BUCKET}")
for project in ${projects}; do
  echo "registering workflows/ to ${project}/${FLYTE_DOMAIN} at ${REVISION}"
  # --copy auto ships only the modules the workflows import; the image carries the SDK itself.
  # Production's launch plans (the nightly schedule) must be active to run at all.
  activate=()
  if [ "${FLYTE_DOMAIN}" = "production" ]; then activate=(--activate-launchplans); fi
  uv run pyflyte register workflows \
    --project "${project}" \
    --domain "${FLYTE_DOMAIN}" \
    --version "${REVISION}" \
    --image "${IMAGE}" \
    --copy auto \
    "${activate[@]}"
  echo "registered workflows/ to ${project}/${FLYTE_DOMAIN} (version ${REVISION})" >> "${summary}"
done
