#!/usr/bin/env bash
# Prints the commit of main at which STACK's last successful deployment ran, or nothing if it never
# succeeded. deploy.yml's `register-<stack>` job runs in the GitHub environment `<stack>-workflows`
# and is the last job of a stack's deploy, so GitHub's deployment record of that environment (one per
# job, with the run's commit as `sha` and the job's result as its status; docs.github.com/en/rest/
# deployments/deployments and /rest/deployments/statuses) is the record of what the stack runs.
# The order of either list is not relied on: both are sorted here by created_at.
# Needs GH_TOKEN with `deployments: read`, and GITHUB_REPOSITORY.
set -euo pipefail

stack="${1:?usage: last-deployed.sh STACK}"
: "${GITHUB_REPOSITORY:?GITHUB_REPOSITORY is required}"

gh api --paginate -X GET "repos/${GITHUB_REPOSITORY}/deployments" -f environment="${stack}-workflows" -f per_page=100 \
  --jq '.[] | "\(.created_at) \(.id) \(.sha)"' \
  | sort -r \
  | while read -r _ id sha; do
      state=$(gh api --paginate -X GET "repos/${GITHUB_REPOSITORY}/deployments/${id}/statuses" -f per_page=100 \
        --jq '.[] | "\(.created_at) \(.state)"' | sort -r | head -n 1 | cut -d' ' -f2)
      if [ "${state}" = success ]; then
        echo "${sha}"
        break
      fi
    done
